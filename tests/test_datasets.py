"""The adapters on the REAL annotation files (no media needed) and the real AVSBench masks."""

import re
import shutil

import numpy as np
import pytest

from pipeline import synth, vocab
from pipeline.config import DatasetsConfig
from pipeline.datasets import ADAPTERS, prompts, DatasetError, load_dataset, present
from pipeline.datasets.avs_s4 import binary_mask
from pipeline.datasets.avss import CLASSES as AVSS_CLASSES
from pipeline.datasets.avss import PALETTE, colour_to_classes
from pipeline.datasets.music_avqa import QUESTION_TYPES

from .conftest import ANNOTATIONS, REPO, SAMPLES, need


def _sizes(ds) -> dict[str, int]:
    return {s: len(ds.split(s)) for s in ds.split_names()}


def _row(ds, clip_id):
    return next(c for c in ds.clips if c.clip_id == clip_id)


def test_the_ten_adapters_are_one_dict():
    assert list(ADAPTERS) == ["ave", "llp", "vggss", "avs-s4", "avs-ms3", "avss", "music-avqa", "unav100",
                             "activitynet", "desed"]
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("avqa", ANNOTATIONS)


def test_every_table_of_a_benchmark_is_read_from_its_adapter():
    for name, a in ADAPTERS.items():
        assert a.name == name and prompts()[name] == a.prompt, name
        assert vocab.CLASSES[name] is a.classes, name
        assert synth.CLASSES[name] is a.synth_classes and a.demo_clips > 0, name
        assert not a.classes or {vocab.key(n) for n in a.synth_classes} <= {vocab.key(n) for n in a.classes}, name
    assert vocab.TASKS == tuple(ADAPTERS) == tuple(prompts()) and len(set(prompts().values())) == 10


def test_a_benchmark_is_named_only_in_its_adapter_and_the_adapter_list():
    """The quoted name of a benchmark ("avss") appears in pipeline/ and cli.py only in its own
    adapter module and in pipeline/datasets/__init__.py (S4's module also serves MS3)."""
    files = sorted([*(REPO / "pipeline").rglob("*.py"), REPO / "cli.py"])
    home = {name: {f"pipeline/datasets/{a.load.__module__.rsplit('.', 1)[1]}.py", "pipeline/datasets/__init__.py"}
            for name, a in ADAPTERS.items()}
    for name in ADAPTERS:
        found = {str(f.relative_to(REPO)) for f in files if re.search(f"[\"']{re.escape(name)}[\"']", f.read_text())}
        assert found <= home[name], (name, sorted(found - home[name]))
        assert home[name] <= found, name


def test_ave_rows_splits_and_quirks():
    ds = load_dataset("ave", need(ANNOTATIONS / "ave"))
    assert len(ds.clips) == 4143 and _sizes(ds) == {"train": 3339, "val": 402, "test": 402} and ds.T == 10
    assert len({c.clip_id for c in ds.clips}) == 4143                     # a sample is a row
    assert dict(ds.quirks) == {"header_lines": 0, "rows_sharing_a_video": 91, "videos_with_several_rows": 45,
                               "rows_all_background": 1, "rows_in_no_split": 0}
    c = _row(ds, "1_MH3m4AwEcRY")                                          # Church bell&MH3m4AwEcRY&good&6&8
    assert c.targets["labels"].tolist() == [28] * 6 + [0, 0] + [28, 28] and c.targets["video_label"] == 0
    assert c.source.endswith("AVE/MH3m4AwEcRY.mp4")
    empty = next(c for c in ds.clips if c.clip_id.endswith("_VWi2ENBuTbw"))  # start = end
    assert (empty.targets["labels"] == 28).all() and set(c.targets) == {"labels", "video_label"}
    assert empty.targets["video_label"] == 28          # no event segment: a background-only clip (weak AVE)


def test_ave_splits_from_the_derived_csv_and_a_header_line(tmp_path):
    src = need(ANNOTATIONS / "ave")
    (tmp_path / "Annotations.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\n"
                                              + (src / "Annotations.txt").read_text())
    shutil.copy(src / "DERIVED_ave_splits.csv", tmp_path)
    via_csv, via_h5 = load_dataset("ave", tmp_path), load_dataset("ave", src)
    assert via_csv.quirks["header_lines"] == 1
    assert [(c.clip_id, c.splits) for c in via_csv.clips] == [(c.clip_id, c.splits) for c in via_h5.clips]


def test_llp_splits_dense_labels_and_quirks():
    ds = load_dataset("llp", need(ANNOTATIONS / "llp"))
    assert _sizes(ds) == {"train": 10000, "val": 649, "test": 1200}
    q = ds.quirks
    assert q["fractional_filenames"] == 5
    assert (q["eval_audio_unmatched_files"], q["eval_visual_unmatched_files"]) == (8, 7)
    assert (q["eval_audio_empty_rows"], q["eval_visual_empty_rows"]) == (6, 0)
    assert q["val_clips_without_audio_rows"] + q["test_clips_without_audio_rows"] == 9
    assert (q["val_clips_without_visual_rows"], q["test_clips_without_visual_rows"]) == (70, 121)
    c = _row(ds, "4YdbENYcIyE_23_33")                         # audio 0-4 and visual 0-10 Baby_cry_infant_cry
    assert c.splits == ("test",) and c.targets["has_dense"] == 1
    assert c.targets["gt_audio"][22].tolist() == [1] * 4 + [0] * 6 and c.targets["gt_visual"][22].all()
    assert c.targets["video_labels"][22] == 1
    frac = _row(ds, "ApKgnUPayqU_8.5_18.5")
    assert frac.source.endswith("LLP/ApKgnUPayqU.mp4") and frac.targets["has_dense"] == 0
    assert not frac.targets["gt_audio"].any()
    assert set(c.targets) == {"video_labels", "gt_audio", "gt_visual", "has_dense"}


def test_vggss_boxes_are_clipped_and_counted():
    ds = load_dataset("vggss", need(ANNOTATIONS / "vggss"))
    assert _sizes(ds) == {"test": 5158} and ds.quirks["garbage_coordinates"] == 12
    assert ds.quirks["degenerate_boxes"] == 18 and ds.quirks["test_csv_ids_not_in_json"] == 0
    boxes = np.stack([c.targets["boxes"] for c in ds.clips])
    counts = np.array([c.targets["box_count"] for c in ds.clips])
    assert boxes.shape == (5158, 7, 4) and boxes.min() >= 0 and boxes.max() <= 1
    assert counts.min() == 1 and counts.max() == 7 and counts.sum() == 5941
    c = _row(ds, "Db6Hjt0x28k_000056")                        # ymax was -2.88e16
    assert c.targets["boxes"][0].tolist() == pytest.approx([0.384375, 0.859375, 0.696875, 0.0])
    assert {int(c.targets["frame_index"]) for c in ds.clips} == {5}


def test_vggss_optional_training_list(tmp_path):
    shutil.copy(need(ANNOTATIONS / "vggss" / "vggss.json"), tmp_path)
    (tmp_path / "vggsound_train.txt").write_text("aaaaaaaaaaa_000010,playing cello\nbbbbbbbbbbb_000020\n"
                                                 "zpWuikVorYg_000032\n")
    ds = load_dataset("vggss", tmp_path)
    train = ds.split("train")
    assert [c.clip_id for c in train] == ["aaaaaaaaaaa_000010", "bbbbbbbbbbb_000020"]
    assert [int(c.targets["class_index"]) for c in train][1] == -1 and train[0].targets["box_count"] == 0
    assert ds.quirks["train_ids_also_in_test"] == 1


def test_music_avqa_questions_types_and_templates():
    ds = load_dataset("music-avqa", need(ANNOTATIONS / "music_avqa"))
    q = ds.questions
    split = np.asarray(q["split"])
    assert (split == 1).sum() == 4568 and (split == 2).sum() == 9129 and ds.T == 60
    assert sorted(set(q["type"].tolist())) == list(range(9)) and len(QUESTION_TYPES) == 9
    assert ds.quirks["split_files_missing"] == 1 and ds.quirks["template_mismatch"] == 0
    assert not any("<" in t for t in q["text"])
    k = next(i for i, (s, qid) in enumerate(zip(split, q["id"])) if s == 1 and qid == 7)
    assert q["text"][k] == "Is the ukulele in the video always playing?" and ds.classes[q["answer"][k]] == "yes"
    assert len(ds.classes) == 41 and len(ds.clips) == len(set(q["clip_id"])) and "tokens" not in q
    both = [c for c in ds.clips if c.splits == ("val", "test")]
    assert len(both) == 2296                                  # a video can be in two splits


def test_music_avqa_old_json_duplicates_are_dropped_and_counted():
    ds = load_dataset("music-avqa", need(ANNOTATIONS / "music_avqa"), DatasetsConfig(music_avqa_annotations="json"))
    assert ds.quirks["duplicate_question_ids"] == 55 + 27 == ds.quirks["duplicate_question_ids_conflicting"]


def test_real_avsbench_masks_decode_to_their_foreground():
    from PIL import Image

    for name, values in (("s4/0.png", {0, 45}), ("ms3/1.png", {0, 9, 41})):
        path = need(SAMPLES / "avsbench" / name)
        grey = np.asarray(Image.open(path))
        assert set(np.unique(grey).tolist()) == values
        mask = binary_mask(path, 224)
        assert mask.shape == (224, 224) and set(np.unique(mask).tolist()) == {0, 1}
        assert abs(mask.mean() - (grey > 0).mean()) < 0.01      # nearest resize keeps the foreground share
    rgb = np.asarray(Image.open(need(SAMPLES / "avsbench" / "avss" / "0.png")).convert("RGB"))
    classes, unmatched = colour_to_classes(rgb)
    assert unmatched == 0 and classes.max() < len(AVSS_CLASSES)
    assert {AVSS_CLASSES[k] for k in np.unique(classes)} == {"background", "clarinet"}
    assert (classes > 0).sum() == (rgb.sum(-1) > 0).sum()
    assert np.array_equal(PALETTE[classes], rgb)              # decoding inverts the palette


def test_missing_media_are_reported_not_fatal():
    ds = load_dataset("ave", need(ANNOTATIONS / "ave"))
    there, missing = present(ds)
    assert not there and len(missing) == 4143                 # no AVE videos in the annotation folder


def test_real_annotations_with_one_real_video_make_a_store(tmp_path):
    """The AVE adapter on its real files and the real sample clip: that row is extracted, the
    other 4142 are listed as missing."""
    from pipeline.datasets import extract_dataset, missing_list
    from pipeline.store import FeatureStore

    from .conftest import tiny_config

    for f in ("Annotations.txt", "train_order.h5", "val_order.h5", "test_order.h5"):
        (tmp_path / f).symlink_to(need(ANNOTATIONS / "ave" / f))
    (tmp_path / "AVE").mkdir()
    (tmp_path / "AVE" / "-67UNKFmRLk.mp4").symlink_to(need(SAMPLES / "ave" / "-67UNKFmRLk.mp4"))
    ds = load_dataset("ave", tmp_path)
    summary, missing = extract_dataset(ds, tmp_path / "ave.zarr", tiny_config())
    fs = FeatureStore(tmp_path / "ave.zarr")
    assert summary.done == 1 and len(missing) == 4142 and fs.clip_ids == ["1409_-67UNKFmRLk"]
    assert fs.read("labels", 0).tolist() == [28] * 7 + [7] * 3             # Violin, fiddle 7-10
    assert sum(map(len, fs.attrs["splits"].values())) == 1 and fs.attrs["missing"] == 4142
    assert len(missing_list(tmp_path / "ave.zarr").read_text().splitlines()) == 4142
    assert fs.attrs["quirks"]["rows_all_background"] == 1 and fs.shared("vocab_emb").shape[0] == len(ds.vocab)
