"""`avu synth` then `avu extract --dataset X` for the seven clip-level benchmarks (the dense three,
T = 0 at 0.25 s steps, are parsed back in test_dense_datasets.py): complete stores whose targets carry
the planted audio-visual signal."""

import filecmp
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline import synth
from pipeline.config import DatasetsConfig
from pipeline.datasets import ADAPTERS, prompts, extract_dataset, load_dataset, missing_list
from pipeline.datasets.avss import CLASSES as AVSS_CLASSES
from pipeline.datasets.music_avqa import QUESTION_TYPES
from pipeline.datasets.vggss import SILENT, synth_scene
from pipeline.decode import decode
from pipeline.store import DONE, FeatureStore
from pipeline.synth import CLASSES, LOOKS, TILED, colour, generate, shape_mask, tile_texture, tone_hz
from pipeline.timecode import dominant_hz
from pipeline.vocab import key
from trainer.metrics import ssl_ciou

from .conftest import tiny_config

MASK = 32
FIXED = [name for name, a in ADAPTERS.items() if a.T > 0]     # extracted here (the dense ones need `hop`)
PER_CLIP = {  # arrays each store holds besides the features and their lengths, and nothing else
    "ave": {"labels": (10,), "video_label": ()},
    "llp": {"video_labels": (25,), "gt_audio": (25, 10), "gt_visual": (25, 10), "has_dense": ()},
    "vggss": {"boxes": None, "box_count": (), "frame_index": (), "class_index": ()},
    "avs-s4": {"masks": (5, MASK, MASK), "mask_valid": (5,), "class_index": ()},
    "avs-ms3": {"masks": (5, MASK, MASK), "mask_valid": (5,)},
    "avss": {"masks": (10, MASK, MASK), "mask_valid": (10,), "subset": (), "classes_present": (71,)},
    "music-avqa": {},
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The mini-benchmark at 2 training clips a dataset, each dataset extracted (tiny encoders)."""
    base = tmp_path_factory.mktemp("synth")
    roots = generate(base / "data", seed=0, clips=2, only=FIXED)
    out = {}
    for name, root in roots.items():
        ds = load_dataset(name, root, DatasetsConfig(avs_mask_size=MASK))
        summary, missing = extract_dataset(ds, base / f"{name}.zarr", tiny_config())
        assert not summary.failed and not missing, name
        out[name] = (FeatureStore(base / f"{name}.zarr"), ds, root)
    return out


def test_generation_is_seeded_and_deterministic(tmp_path):
    a = generate(tmp_path / "a", seed=3, clips=1, only=["ave", "avs-s4"])
    b = generate(tmp_path / "b", seed=3, clips=1, only=["ave", "avs-s4"])
    c = generate(tmp_path / "c", seed=4, clips=1, only=["avs-s4"])
    for name in a:
        files = sorted(p.relative_to(a[name]) for p in a[name].rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b[name]) for p in b[name].rglob("*") if p.is_file())
        assert all(filecmp.cmp(a[name] / f, b[name] / f, shallow=False) for f in files), name
    assert (a["avs-s4"] / "Single-source" / "s4_meta_data.csv").read_text() != \
        (c["avs-s4"] / "Single-source" / "s4_meta_data.csv").read_text()


def test_videos_encoded_in_the_background_equal_serial_ones_and_failures_surface(tmp_path, monkeypatch):
    a = generate(tmp_path / "a", seed=3, clips=3, only=["vggss"])["vggss"]      # 3 + 1 videos, 2 threads
    monkeypatch.setattr(synth._Encoders, "__enter__", lambda self: self)        # never active: serial
    b = generate(tmp_path / "b", seed=3, clips=3, only=["vggss"])["vggss"]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == 4
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
    monkeypatch.undo()

    def broken(path, frames, audio, fps=None):
        raise RuntimeError(f"ffmpeg failed on {path.name}")

    monkeypatch.setattr(synth, "_encode_mp4", broken)
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        generate(tmp_path / "c", seed=3, clips=3, only=["vggss"])
    assert not (tmp_path / "c" / "vggss").exists()         # never renamed: no half-written dataset


@pytest.mark.parametrize("name", FIXED)
def test_every_dataset_extracts_to_a_complete_store(stores, name):
    fs, ds, _ = stores[name]
    attrs = fs.attrs
    assert np.all(fs.status() == DONE) and attrs["dataset"] == name and attrs["T"] == ds.T
    assert set(attrs["splits"]) == ({"train", "test"} if name == "vggss" else {"train", "val", "test"})
    assert sorted({i for idx in attrs["splits"].values() for i in idx}) == list(range(len(fs)))
    assert attrs["vocab"]["tokens"] == list(ds.vocab.tokens) and attrs["targets_fingerprint"]
    assert fs.read("visual", [0]).shape == (1, ds.T, 64) and fs.read("audio", [0]).shape == (1, ds.T, 128)
    for array, tail in PER_CLIP[name].items():
        tail = tail if tail is not None else ds.clips[0].targets[array].shape
        assert fs.group[array].shape == (len(fs), *tail), array
    features = {"audio", "visual", "patches"}
    assert set(fs.per_clip_arrays()) - features == set(PER_CLIP[name])
    vocab_emb, task_emb = fs.shared("vocab_emb"), fs.shared("task_emb")
    assert vocab_emb.shape == (len(ds.vocab), 64) and task_emb.shape == (len(ADAPTERS), 64)
    assert np.allclose(np.linalg.norm(vocab_emb, axis=1), 1, atol=1e-3)
    if ds.classes:
        assert fs.shared("valid_ids").tolist() == ds.vocab.class_ids(ds.classes).tolist()
    assert attrs["prompt_names"] == list(ADAPTERS) and attrs["task_prompts"] == prompts()
    assert not missing_list(fs.path).exists()


def test_prompt_rows_are_found_by_name(stores):
    """task_emb row k is the prompt of attrs["prompt_names"][k], from one batch of all prompts."""
    from pipeline.datasets import _text_encoder

    fs = stores["avss"][0]
    names = fs.attrs["prompt_names"]
    again = _text_encoder(tiny_config())([fs.attrs["task_prompts"][n] for n in names])
    assert np.array_equal(fs.shared("task_emb"), again.astype(np.float32))
    assert not np.array_equal(again[names.index("avss")], again[names.index("avs-s4")])


def test_looks_tell_the_classes_of_a_dataset_apart():
    for name, names in CLASSES.items():
        if not ADAPTERS[name].synth_tiles:                     # VGG-SS draws tiles
            assert len({tuple(colour(LOOKS[key(n)])) for n in names}) == len(names), name
    assert len({tuple(tile_texture(LOOKS[k])) for k in TILED}) == len(TILED)


def test_vggss_scenes_a_flat_heatmap_fails_and_the_right_half_passes():
    """Sounding: one class in two tiles of one half; silent: SILENT things only. Under the
    official top-50 % rule a flat heatmap keeps every pixel and must score cIoU < 0.5, while a
    map that is high on the sounding half scores >= 0.5."""
    rng = np.random.default_rng(0)
    for _ in range(12):
        cls, objs = synth_scene(rng)
        heard = [o for o in objs if o.audible.any()]
        assert {o.name for o in heard} == {cls} and len(heard) == 2
        assert all(o.name in SILENT for o in objs if not o.audible.any())
        boxes = [np.array([o.box() for o in heard])]
        inside = np.array([[any(b[0] <= (c + .5) / 4 <= b[2] and b[1] <= (r + .5) / 4 <= b[3] for b in boxes[0])
                            for c in range(4)] for r in range(4)], np.float32)
        flat, right = ssl_ciou(np.ones((1, 4, 4), np.float32), boxes), ssl_ciou(inside[None] + 0.01 * rng.random((1, 4, 4)), boxes)
        assert flat[0] < 0.5 <= right[0], (flat, right)


def test_ave_labels_are_the_seconds_both_seen_and_heard(stores):
    fs, ds, _ = stores["ave"]
    for clip in ds.clips:
        if clip.targets["video_label"] == 28:           # the all-background row: no event, no class
            assert (clip.targets["labels"] == 28).all()
            continue
        decoded = decode(clip.source, 10)
        cls = ds.classes[int(clip.targets["video_label"])]
        look = LOOKS[key(cls)]
        pixels = shape_mask(look, 0.5, 0.5, 0.13)                 # the object's size, anywhere
        hz = tone_hz(look)
        for t, label in enumerate(clip.targets["labels"]):
            seen = (np.abs(decoded.frames[t].astype(int) - colour(look)).sum(-1) < 60).sum() > 0.5 * pixels.sum()
            piece = decoded.audio[t * 16000 + 2000 : (t + 1) * 16000 - 2000]
            heard = np.abs(piece).max() > 0.1 and abs(dominant_hz(piece, 16000) - hz) < 15
            assert (seen and heard) == (label != 28), (clip.clip_id, t)
    assert ds.quirks["header_lines"] == 1 and ds.quirks["rows_all_background"] == 1
    assert ds.quirks["videos_with_several_rows"] == 1           # two rows, one source


def test_segmentation_masks_are_the_sounding_objects(stores):
    fs, ds, root = stores["avs-s4"]
    valid = fs.read("mask_valid", slice(None))
    for i, clip in enumerate(ds.clips):
        assert valid[i].tolist() == ([1, 0, 0, 0, 0] if clip.splits == ("train",) else [1] * 5)
        masks = fs.read("masks", i)
        assert masks[valid[i] == 1].any(axis=(1, 2)).all() and set(np.unique(masks)) <= {0, 1}
    fs, ds, _ = stores["avss"]
    masks, present = fs.read("masks", slice(None)), fs.read("classes_present", slice(None))
    allowed = {0} | {AVSS_CLASSES.index(n) for n in CLASSES["avss"]}
    assert set(np.unique(masks).tolist()) <= allowed and present.any(axis=1).all()
    subsets = fs.read("subset", slice(None))
    assert set(subsets.tolist()) == {0, 1, 2} and ds.quirks["unmatched_pixels"] == 0
    assert fs.read("length", slice(None)).tolist() == [10 if s == 2 else 5 for s in subsets]   # v1: 5 s
    assert not masks[subsets != 2][:, 5:].any()                # padded frames are background
    fs, ds, _ = stores["avs-ms3"]
    assert fs.read("masks", slice(None)).any() and fs.read("mask_valid", slice(None)).all()


def test_vggss_llp_and_avqa_targets(stores):
    fs, ds, _ = stores["vggss"]
    boxes, count = fs.read("boxes", slice(None)), fs.read("box_count", slice(None))
    test = fs.split("test")
    assert (count[test] >= 1).all() and (count[fs.split("train")] == 0).all() and 0 <= boxes.min() <= boxes.max() <= 1
    assert ds.quirks["garbage_coordinates"] == 1 and ds.quirks["degenerate_boxes"] == 1
    assert set(fs.read("frame_index", slice(None)).tolist()) == {5}
    fs, ds, _ = stores["llp"]
    has = fs.read("has_dense", slice(None))
    assert has[fs.split("train")].sum() == 0 and has[fs.split("test")].all()
    assert ds.quirks["fractional_filenames"] == 1 and ds.quirks["eval_audio_unmatched_files"] == 1
    for i in np.flatnonzero(has):                              # the weak labels are the dense events' classes
        dense = fs.read("gt_audio", i) | fs.read("gt_visual", i)
        assert (fs.read("video_labels", i) == dense.any(axis=1)).all()
    fs, ds, _ = stores["music-avqa"]
    types, split = fs.shared("question_type"), fs.shared("question_split")
    for s in range(3):
        assert set(types[split == s].tolist()) == set(range(len(QUESTION_TYPES)))   # all 9 types in every split
    clip, answer = fs.shared("question_clip"), fs.shared("question_answer")
    assert clip.max() < len(fs) and answer.max() < len(fs.attrs["answers"])
    assert fs.shared("question_emb").shape == (len(types), 64) and len(fs.attrs["question_text"]) == len(types)
    assert "question_tokens" not in fs.group["shared"]


def test_rerun_skips_done_clips_and_written_targets(stores):
    fs, ds, _ = stores["avss"]
    before = (fs.attrs["targets_fingerprint"], fs.read("masks", slice(None)).copy())
    summary, _ = extract_dataset(ds, fs.path, tiny_config())
    assert summary.done == 0 and summary.skipped == len(fs)
    assert fs.attrs["targets_fingerprint"] == before[0] and np.array_equal(fs.read("masks", slice(None)), before[1])
    assert fs.attrs["quirks"]["v1s_masks_not_trained"] == ds.quirks["v1s_masks_not_trained"]


def test_missing_videos_are_listed_and_the_rest_extracted(stores, tmp_path):
    _, _, root = stores["llp"]
    shutil.copytree(root, tmp_path / "llp")
    victim = sorted((tmp_path / "llp" / "LLP").glob("*.mp4"))[0]
    victim.unlink()
    ds = load_dataset("llp", tmp_path / "llp")
    summary, missing = extract_dataset(ds, tmp_path / "llp.zarr", tiny_config())
    assert len(missing) == 1 and summary.done == len(ds.clips) - 1
    listing = missing_list(tmp_path / "llp.zarr").read_text()
    assert victim.name in listing and FeatureStore(tmp_path / "llp.zarr").attrs["missing"] == 1


def test_cli_synth_and_extract_dataset(stores, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "syn"), "--clips", "1"])
    assert result.exit_code == 0, result.output
    assert all((tmp_path / "syn" / name).is_dir() for name in ADAPTERS) and "--dataset music-avqa" in result.output
    args = ["extract", "--dataset", "avs-ms3", "--root", str(tmp_path / "syn" / "avs-ms3"), "--out",
            str(tmp_path / "ms3.zarr"), "--random-weights", "workers=0", "clip_model=avu-tiny-clip",
            "patch_grid=4", f"avs_mask_size={MASK}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "avs-ms3" in result.output and "T = 5" in result.output and "RANDOM" in result.output
    assert FeatureStore(tmp_path / "ms3.zarr").group["masks"].shape[1:] == (5, MASK, MASK)
    both = runner.invoke(app, ["extract", "--videos", str(tmp_path), "--dataset", "ave", "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "either" in both.output
    bad = runner.invoke(app, args[:7] + ["avs_mask_sise=3"])
    assert bad.exit_code == 2 and "avs_mask_sise" in bad.output


def test_cli_synth_one_dataset_with_short_dense_clips(tmp_path):
    import json

    from pipeline.datasets import unav100

    runner = CliRunner()
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--clips", "2", "--dataset", "unav100",
                                 "--dense-longest", "12"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unav100"] and "--dataset unav100" in result.output
    videos = json.loads((tmp_path / "unav100" / unav100.FILE).read_text())["database"].values()
    assert videos and all(10 <= v["duration"] <= 12 for v in videos)
    for args, words in ((["--dataset", "unav"], ["unknown dataset unav", "unav100"]),
                        (["--dense-longest", "5"], ["outside 10-60 s"])):
        bad = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), *args])
        assert bad.exit_code == 2 and all(w in bad.output for w in words), bad.output
        assert not (tmp_path / "x").exists()
