"""Malformed annotation files: every adapter fails with `FILE:LINE: what is wrong` (a
DatasetError, which the CLI prints and exits 2 on), never with a raw traceback, and never
by quietly dropping or misreading a row. Each case corrupts one line of a copy of a real file
(AVSBench, whose metadata are not public, gets small files in the official layout)."""

import json
import re
import shutil

import h5py
import numpy as np
import pytest

from pipeline.config import DatasetsConfig
from pipeline.datasets import DatasetError, load_dataset
from pipeline.datasets.avs_s4 import CLASSES as S4_CLASSES

from .conftest import ANNOTATIONS, need


def copy(src_dir, dst_dir, *names):
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(need(src_dir / name), dst_dir / name)
    return dst_dir


def edit_line(path, line, old, new):
    """Replace `old` by `new` in line `line` (1-based) of a file, bytes for bytes."""
    lines = path.read_bytes().split(b"\n")
    old, new = (x.encode() if isinstance(x, str) else x for x in (old, new))
    assert old in lines[line - 1], (path, line, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_bytes(b"\n".join(lines))


def fails(name, root, where, *words, cfg=None):
    """load_dataset fails with a message that starts with `where` ("FILE:LINE:") and holds `words`."""
    with pytest.raises(DatasetError) as err:
        load_dataset(name, root, cfg)
    msg = str(err.value)
    assert msg.startswith(where), msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_read_text_counts_lines_of_any_ending_and_columns_past_a_bom(tmp_path):
    from pipeline.datasets.common import read_text

    path = tmp_path / "x.csv"
    for data, where in ((b"\xef\xbb\xbfab\xffc\n", "1:3"), (b"a,b\r\nc,d\r\n\r\nef\xc3(\r\n", "4:3"),
                        (b"a\rb\rcc\x80", "3:3"), (b"ok\n" * 5 + b"\xe2\x82", "6:1")):
        path.write_bytes(data)
        with pytest.raises(DatasetError, match=re.escape(f"{path}:{where}: not UTF-8")):
            read_text(path)
    path.write_bytes(b"\xef\xbb\xbfname\r\n\xc3\xa9t\xc3\xa9\r\n")
    assert read_text(path) == "name\r\n\u00e9t\u00e9\r\n"                  # valid UTF-8 is read as it is


# ----------------------------------------------------------------------------- AVE

AVE_FILES = ("Annotations.txt", "train_order.h5", "val_order.h5", "test_order.h5")


@pytest.fixture
def ave(tmp_path):
    return copy(ANNOTATIONS / "ave", tmp_path / "ave", *AVE_FILES)


def test_ave_annotations_bad_time_short_row_bad_bytes_unknown_category(ave):
    ann = ave / "Annotations.txt"
    original = ann.read_bytes()
    fails_edited(ann, (100, "&good&0&10", "&good&0&ten"), "ave", ave, f"{ann}:100: ", "EndTime 'ten' is not an integer")                       # Church bell&4vjDR_uDA-Q&good&0&10
    fails_edited(ann, (200, "&good&", "&"), "ave", ave, f"{ann}:200: ", "expected 5 '&'-separated fields", "got 4")                                      # a field lost
    edit_line(ann, 300, "&good&", b"&g\xe9od&")                             # Latin-1, not UTF-8
    line_300 = original.split(b"\n")[299]
    col = line_300.index(b"&good&") + 3
    fails("ave", ave, f"{ann}:300:{col}: ", "not UTF-8", r"b'\xe9'")
    ann.write_bytes(original)
    fails_edited(ann, (400, "&good&", "&good&&"), "ave", ave, f"{ann}:400: ", "got 6")
    edit_line(ann, 500, original.split(b"\n")[499].split(b"&")[0], "Church bel")
    fails("ave", ave, f"{ann}:500: ", "category 'Church bel' is not one of the 28")


def test_ave_first_row_with_a_bad_time_is_an_error_not_a_header(ave):
    """The old header test (start time not all digits) took a garbled first row for a header
    and dropped it."""
    ann = ave / "Annotations.txt"
    edit_line(ann, 1, "&good&0&10", "&good&O&10")                           # letter O, not zero
    fails("ave", ave, f"{ann}:1: ", "StartTime 'O' is not an integer")


def test_ave_order_files_missing_dataset_wrong_dtype_bad_row_not_hdf5(ave):
    val = ave / "val_order.h5"
    order = h5py.File(val, "r")["order"][:]
    with h5py.File(val, "w") as f:
        f["idx"] = order
    fails("ave", ave, f"{val}: ", "no dataset 'order'", "idx")
    with h5py.File(val, "w") as f:
        f["order"] = order.astype(np.float64) + 0.5
    fails("ave", ave, f"{val}: ", "float64", "integers")
    bad = order.copy()
    bad[7] = 4143                                                           # one past the last row
    with h5py.File(val, "w") as f:
        f["order"] = bad
    fails("ave", ave, f"{val}: ", "order[7] = 4143", "4143 rows")
    val.write_bytes(b"not an hdf5 file\n")
    fails("ave", ave, f"{val}: ", "not a readable HDF5 file")


def test_ave_derived_split_csv_bad_number_missing_column_bad_split(tmp_path):
    root = copy(ANNOTATIONS / "ave", tmp_path, "Annotations.txt", "DERIVED_ave_splits.csv")
    csv = root / "DERIVED_ave_splits.csv"
    fails_edited(csv, (500, "train,498,634,", "train,498,6x4,"), "ave", root, f"{csv}:500: ", "row_index '6x4' is not an integer")
    fails_edited(csv, (1, "order_pos", "position"), "ave", root, f"{csv}:1: ", "no column 'order_pos'", "columns: split, position, row_index")
    fails_edited(csv, (501, "train,499,", "trian,499,"), "ave", root, f"{csv}:501: ", "split 'trian' is not one of train, val, test")                         # was silently dropped
    edit_line(csv, 502, ",good,", b",g\xffod,")
    fails("ave", root, f"{csv}:502:", "not UTF-8")


# ----------------------------------------------------------------------------- LLP

LLP_FILES = ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv", "AVVP_eval_audio.csv", "AVVP_eval_visual.csv")


@pytest.fixture
def llp(tmp_path):
    return copy(ANNOTATIONS / "llp", tmp_path / "llp", *LLP_FILES)


def test_llp_eval_non_integer_time_missing_column_short_row(llp):
    audio, visual = llp / "AVVP_eval_audio.csv", llp / "AVVP_eval_visual.csv"
    fails_edited(audio, (302, "\t8\t9\t", "\t8.5\t9\t"), "llp", llp, f"{audio}:302: ", "onset '8.5' is not an integer")                           # MK0VVTjYX40_190_200 8 9 Speech
    fails_edited(audio, (1, "offset", "off"), "llp", llp, f"{audio}:1: ", "no column 'offset'", "columns: filename, onset, off, event_labels")
    fails_edited(audio, (301, "\tDog", ""), "llp", llp, f"{audio}:301: ", "3 fields", "'event_labels'")                                      # a row with 3 fields
    visual.write_bytes(visual.read_bytes().replace(b"\t", b",", 8))        # the header and 2 rows comma-separated
    fails("llp", llp, f"{visual}:1: ", "no column", "tab-separated")


def test_llp_weak_labels_missing_column_bad_bytes_unknown_class_duplicate(llp):
    train, val, test = (llp / f for f in LLP_FILES[:3])
    original = train.read_bytes()
    fails_edited(train, (1, "event_labels", "labels"), "llp", llp, f"{train}:1: ", "no column 'event_labels'")
    edit_line(train, 1000, "Speech", b"Sp\xc3ech")                        # a broken 2-byte sequence
    line = original.split(b"\n")[999]
    fails("llp", llp, f"{train}:1000:{line.index(b'Speech') + 3}: ", "not UTF-8")
    train.write_bytes(original)
    original = val.read_bytes()
    fails_edited(val, (20, "\t", "\tSpeeech,"), "llp", llp, f"{val}:20: ", "unknown LLP class 'Speeech'")
    name = test.read_text().splitlines()[50].split("\t")[0]
    with open(test, "a") as f:
        f.write(f"{name}\tSpeech\n")
    n = len(test.read_text().splitlines())
    fails("llp", llp, f"{test}:{n}: ", f"{name} is also in the test list")


def test_llp_unbalanced_quote_does_not_swallow_rows(llp):
    """csv would read everything after a stray quote as one field: hundreds of rows lost."""
    val = llp / "AVVP_val_pd.csv"
    edit_line(val, 30, "\t", '\t"')
    fails("llp", llp, f"{val}:30: ", "quoted field runs from line 30")


def test_llp_eval_bad_class_of_an_evaluated_clip(llp):
    visual = llp / "AVVP_eval_visual.csv"
    edit_line(visual, 3, "Blender", "Blendr")                               # KSRjje7GH44_60_70, a test clip
    fails("llp", llp, f"{visual}:3: ", "unknown LLP class 'Blendr'")


# ----------------------------------------------------------------------------- VGG-SS

def entry_col(text, file):
    """1-based column of the entry of `file` in the one-line vggss.json, found by text search."""
    return text.index('{"file": "%s"' % file) + 1


@pytest.fixture
def vggss(tmp_path):
    return copy(ANNOTATIONS / "vggss", tmp_path / "vggss", "vggss.json", "vggss_test.csv")


def test_vggss_json_non_numeric_box_missing_key_bad_box(vggss):
    path = vggss / "vggss.json"
    original = path.read_text()
    entries = json.loads(original)
    k, file = 1234, entries[1234]["file"]
    for change, words in ((lambda e: e["bbox"][0].__setitem__(2, "0.6x"), ['"0.6x"', "not a number"]),
                          (lambda e: e.pop("class"), ["no key 'class'", "keys: file, bbox"]),
                          (lambda e: e["bbox"].append([0.1, 0.2, 0.3]), ["is not 4 numbers"]),
                          (lambda e: e.__setitem__("class", None), ["class is null, expected a string"]),
                          (lambda e: e.__setitem__("class", "elk bugglin"), ["one of the 221 VGG-SS classes"])):
        bad = json.loads(original)
        change(bad[k])
        text = json.dumps(bad)
        path.write_text(text)
        fails("vggss", vggss, f'{path}:1:{entry_col(text, file)}: entry {k} (file "{file}"): ', *words)


def test_vggss_json_syntax_error_and_bad_bytes(vggss):
    path = vggss / "vggss.json"
    original = path.read_bytes()
    at = original.index(b"], [", 100000)                                    # between two boxes or entries
    path.write_bytes(original[:at] + b"] [" + original[at + 4:])
    fails("vggss", vggss, f"{path}:1:{at + 3}: ", "not valid JSON", "delimiter")
    at = original.index(b"playing", 200000) + 2
    path.write_bytes(original[:at] + b"\x80" + original[at + 1:])
    fails("vggss", vggss, f"{path}:1:{at + 1}: ", "not UTF-8", f"byte offset {at}")
    path.write_bytes(b'{"file": "x"}')
    fails("vggss", vggss, f"{path}: ", "expected a JSON list of entries, got an object")


def test_vggss_training_list_unknown_class_and_bad_bytes(vggss):
    train = vggss / "vggsound_train.txt"
    train.write_bytes(b"aaaaaaaaaaa_000010,playing cello\n\nbbbbbbbbbbb_000020,playing cellp\n")
    fails("vggss", vggss, f"{train}:3: ", "'playing cellp'")
    train.write_bytes(b"aaaaaaaaaaa_000010,playing cello\nbbbbbbbbbbb_000020,playing cell\xf6\n")
    fails("vggss", vggss, f"{train}:2:", "not UTF-8")
    csv = vggss / "vggss_test.csv"
    edit_line(csv, 10, "_", b"\xff")
    fails("vggss", vggss, f"{csv}:10:", "not UTF-8")


# ----------------------------------------------------------------------------- AVSBench (official layout)

def fails_edited(path, edit, name, root, where, *words, cfg=None):
    """fails() with edit_line(path, *edit) applied, and the file restored afterwards."""
    original = path.read_bytes()
    edit_line(path, *edit)
    try:
        return fails(name, root, where, *words, cfg=cfg)
    finally:
        path.write_bytes(original)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def s4_root(tmp_path, rows=None):
    rows = rows or [f"clip{k}_0,{k},{S4_CLASSES[k]},{('train', 'val', 'test')[k % 3]}" for k in range(6)]
    write(tmp_path / "Single-source" / "s4_meta_data.csv", "name,start_time,category,split\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_avs_s4_missing_column_bad_bytes_bad_split_unknown_category(tmp_path):
    root = s4_root(tmp_path)
    meta = root / "Single-source" / "s4_meta_data.csv"
    assert len(load_dataset("avs-s4", root).clips) == 6
    fails_edited(meta, (1, "category", "cat"), "avs-s4", root, f"{meta}:1: ", "no column 'category'", "columns: name, start_time, cat, split")
    fails_edited(meta, (3, ",val", ",valid"), "avs-s4", root, f"{meta}:3: ", "split 'valid' is not one of train, val, test")                                   # was taken as a fourth split
    fails_edited(meta, (5, "clip3", b"clip\xe93"), "avs-s4", root, f"{meta}:5:5: ", "not UTF-8")
    fails_edited(meta, (6, S4_CLASSES[4], "unicorn"), "avs-s4", root, f"{meta}:6: ", "category 'unicorn' is not one of the 23")
    edit_line(meta, 7, ",test", "")                                       # no split field on this row
    fails("avs-s4", root, f"{meta}:7: ", "3 fields", "'split'")


def test_avs_s4_unreadable_mask_names_the_file(tmp_path):
    from collections import Counter

    root = s4_root(tmp_path)
    ds = load_dataset("avs-s4", root, DatasetsConfig(avs_mask_size=8))
    clip = ds.split("val")[0]
    name, cat = clip.clip_id, S4_CLASSES[int(clip.targets["class_index"])]
    mask = write(root / "Single-source" / "s4_data" / "gt_masks" / "val" / cat / name / f"{name}_2.png",
                 b"\x89PNG\r\n\x1a\n" + b"\0" * 40)                       # a PNG signature, then garbage
    ds = load_dataset("avs-s4", root, DatasetsConfig(avs_mask_size=8))
    clip = next(c for c in ds.clips if c.clip_id == name)
    assert clip.targets["mask_valid"].tolist() == [0, 1, 0, 0, 0]
    with pytest.raises(DatasetError, match=re.escape(f"{mask}: not a readable image")):
        clip.dense(Counter())


def test_avs_ms3_missing_column_bad_bytes_bad_split(tmp_path):
    meta = write(tmp_path / "Multi-sources" / "ms3_meta_data.csv",
                 "video_id,split\n" + "".join(f"v{k}_1,{('train', 'val', 'test')[k % 3]}\n" for k in range(5)))
    assert [c.splits for c in load_dataset("avs-ms3", tmp_path).clips][:3] == [("train",), ("val",), ("test",)]
    fails_edited(meta, (1, "split", "subset"), "avs-ms3", tmp_path, f"{meta}:1: ", "no column 'split'", "columns: video_id, subset")
    fails_edited(meta, (3, "val", "Val"), "avs-ms3", tmp_path, f"{meta}:3: ", "split 'Val'")
    fails_edited(meta, (4, "v2", b"\xfe\xff"), "avs-ms3", tmp_path, f"{meta}:4:1: ", "not UTF-8")
    edit_line(meta, 5, "v3_1", "")
    fails("avs-ms3", tmp_path, f"{meta}:5: ", "clip name (column 1) is empty")


@pytest.fixture
def avss(tmp_path):
    root = copy(ANNOTATIONS / "avsbench", tmp_path / "avss", "label2idx.json")
    rows = [f"{s}_x{k},{s},{('train', 'val', 'test')[k % 3]},cat" for k, s in enumerate(["v1s", "v1m", "v2"] * 2)]
    write(root / "metadata.csv", "uid,label,split,a_obj\n" + "\n".join(rows) + "\n")
    return root


def test_avss_label2idx_string_index_syntax_error_bad_bytes(avss):
    path = avss / "label2idx.json"
    assert len(load_dataset("avss", avss).clips) == 6
    original = path.read_bytes()
    lines = original.decode().split("\n")
    n = next(i for i, x in enumerate(lines) if '"clarinet"' in x) + 1
    fails_edited(path, (n, "15", '"15"'), "avss", avss, f"{path}: ", "class 'clarinet' has index \"15\", a string; expected an integer")
    fails_edited(path, (n, ",", ""), "avss", avss, f"{path}:{n + 1}:5: ", "not valid JSON", "Expecting ',' delimiter")                                            # "clarinet": 15 "clipper": 16
    fails_edited(path, (n, "clarinet", b"clarin\xe9t"), "avss", avss, f"{path}:{n}:", "not UTF-8")
    edit_line(path, n, "clarinet", "clarinette")
    fails("avss", avss, f"{path}: ", "differs from CLASSES in pipeline/datasets/avss.py")


def test_avss_metadata_missing_column_bad_values_duplicate_bad_mask(avss):
    from collections import Counter

    meta = avss / "metadata.csv"
    fails_edited(meta, (1, "label", "subset"), "avss", avss, f"{meta}:1: ", "no column 'label'")
    fails_edited(meta, (3, "v1m,", "v1x,"), "avss", avss, f"{meta}:3: ", "label 'v1x' is not one of v1s, v1m, v2")
    fails_edited(meta, (4, ",test,", ",tst,"), "avss", avss, f"{meta}:4: ", "split 'tst'")
    fails_edited(meta, (5, "cat", b"c\xe0t"), "avss", avss, f"{meta}:5:", "not UTF-8")
    fails_edited(meta, (6, "v1m_x4", "v1m_x1"), "avss", avss, f"{meta}:6: ", "uid v1m_x1 appears twice (first at line 3)")
    png = write(avss / "v2" / "v2_x2" / "labels_rgb" / "3.png", b"GIF89a not a png")
    clip = next(c for c in load_dataset("avss", avss, DatasetsConfig(avs_mask_size=8)).clips if c.clip_id == "v2_x2")
    with pytest.raises(DatasetError, match=re.escape(f"{png}: not a readable image")):
        clip.dense(Counter())


# ----------------------------------------------------------------------------- MUSIC-AVQA

@pytest.fixture
def avqa(tmp_path):
    copy(ANNOTATIONS / "music_avqa" / "json_update", tmp_path / "json_update", "avqa-val.json", "avqa-test.json")
    return tmp_path


def entry_line(text, question_id):
    """Line of the "{" that opens the entry holding `"question_id": <id>,` (a text search)."""
    lines = text.split("\n")
    n = next(i for i, x in enumerate(lines) if x.strip() == f'"question_id": {question_id},')
    return next(i for i in range(n, -1, -1) if lines[i].strip() == "{") + 1


def test_music_avqa_non_integer_id_missing_key_bad_type_strings(avqa):
    path = avqa / "json_update" / "avqa-val.json"
    original = path.read_text()
    k = 2000
    qid = json.loads(original)[k]["question_id"]
    line = entry_line(original, qid)
    cases = [('"question_id": %d,' % qid, '"question_id": "%dx",' % qid, ["question_id", "is not an integer"]),
             ('"question_deleted": 0,', '"question_deleted": "no",', ["question_deleted \"no\" is not an integer"]),
             ('"question_deleted": 0,', '"question_deleted": false,', ["question_deleted is false"]),
             ('"anser": "', '"answer": "', ["no key 'anser'"]),
             ('"type": "[', '"type": "[[', ['type "[[', "is not a JSON list"]),
             ('"type": "[\\"', '"type": "[\\"Visible\\", \\"', ["'Visible/", "is not one of"]),
             ('"templ_values": "[', '"templ_values": "{', ["templ_values", "is not a JSON list"]),
             ('"video_id": "', '"video_id": ["', ["video_id is a list"])]
    for old, new, words in cases:
        lines = original.split("\n")
        at = next(i for i in range(line - 1, len(lines)) if old in lines[i])
        lines[at] = lines[at].replace(old, new, 1)
        if new.startswith('"video_id": ['):
            lines[at] = lines[at].rstrip(",") + "],"
        path.write_text("\n".join(lines))
        where = f"{path}:{line}:3: entry {k} (question_id "
        fails("music-avqa", avqa, where, *words)


def test_music_avqa_syntax_error_and_bad_bytes(avqa):
    path = avqa / "json_update" / "avqa-test.json"
    original = path.read_bytes()
    lines = original.split(b"\n")
    n = next(i for i in range(1000, len(lines)) if lines[i].strip().startswith(b'"question_content"')) + 1
    fails_edited(path, (n, b'",', b'"'), "music-avqa", avqa, f"{path}:{n + 1}:5: ", "not valid JSON", "Expecting ',' delimiter")                                         # a lost comma
    n = next(i for i in range(3000, len(lines)) if b"question_content" in lines[i]) + 1
    edit_line(path, n, b"the", b"th\xe9")
    fails("music-avqa", avqa, f"{path}:{n}:", "not UTF-8")


# ----------------------------------------------------------------------------- through the CLI

def test_cli_prints_file_and_line_and_exits_2_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    llp = copy(ANNOTATIONS / "llp", tmp_path / "llp", *LLP_FILES)
    audio = llp / "AVVP_eval_audio.csv"
    edit_line(audio, 302, "\t8\t9\t", "\t8[/b]\t9\t")                        # rich markup in the value
    result = CliRunner().invoke(app, ["extract", "--dataset", "llp", "--root", str(llp),
                                      "--out", str(tmp_path / "llp.zarr"), "--random-weights"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    printed = "".join(result.output.split())                  # rich wraps long lines
    assert "".join(f"error: {audio}:302: onset '8[/b]' is not an integer".split()) in printed, result.output
    assert "Traceback" not in result.output and not (tmp_path / "llp.zarr").exists()
