"""Clips of any length (`avu extract T=0`): a real clip longer than 10 s made from the shared
samples, stores of clips of different lengths against a slow reference, batches padded to their
longest clip, damage in a long clip's chunks, and fixed-T stores as they were."""

import shutil
import subprocess

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from pipeline.decode import decode
from pipeline.extract import clip_ids_for, list_videos, load_encoders, resolve_weights, run_extract
from pipeline.store import TIME_CHUNK, FeatureStore, StoreError

from .conftest import SAMPLES, need, tiny_config

FEATURES = ("audio", "visual", "patches")
TINY = ["--random-weights", "workers=0", "clip_model=avu-tiny-clip", "patch_grid=4", "clip_batch=16"]
runner = CliRunner()


@pytest.fixture(scope="module")
def videos(timecode_dir, tmp_path_factory):
    """long: the LLP, AVE and LLP samples one after another (30 s, 160 x 120, 25 fps), and two
    time-coded clips of 10 s and 7.3 s."""
    parts = [need(SAMPLES / "llp" / "BjCEufrlXm4.mp4"), need(SAMPLES / "ave" / "-67UNKFmRLk.mp4"),
             need(SAMPLES / "llp" / "BjCEufrlXm4.mp4")]
    d = tmp_path_factory.mktemp("anylength")
    graph = "".join(f"[{k}:v]scale=160:120,setsar=1,fps=25[v{k}];[{k}:a]aresample=16000,"
                    f"aformat=channel_layouts=mono[a{k}];" for k in range(3))
    graph += "[v0][a0][v1][a1][v2][a2]concat=n=3:v=1:a=1[v][a]"
    cmd = ["ffmpeg", "-v", "error", "-y", *[a for p in parts for a in ("-i", str(p))], "-filter_complex", graph,
           "-map", "[v]", "-map", "[a]", str(d / "long.mp4")]
    subprocess.run(cmd, check=True, capture_output=True)
    for name in ("fps25", "fps12_short"):
        shutil.copy(timecode_dir / f"{name}.mp4", d / f"{name}.mp4")
    return d


@pytest.fixture(scope="module")
def store(videos, tmp_path_factory):
    """The three clips extracted with T=0, two a task (the long one shares its CLIP batch)."""
    out = tmp_path_factory.mktemp("s") / "any.zarr"
    paths = list_videos(videos)
    summary = run_extract(paths, clip_ids_for(paths, videos), out, tiny_config(T=0))
    assert summary.done == 3 and not summary.failed and not summary.cut
    return out


def test_T0_keeps_the_whole_video_and_a_cut_at_max_seconds_is_reported(videos, store, tmp_path):
    fs = FeatureStore(store)
    lengths = dict(zip(fs.clip_ids, fs.read("length", slice(None)).tolist()))
    assert lengths == {"fps12_short": 7, "fps25": 10, "long": 30}     # every whole second, none padded
    assert fs.attrs["T"] == 0 and fs.attrs["max_seconds"] == 600 and fs.cut == {}
    assert fs.group["patches"].shape[1] == 600 and fs.group["patches"].chunks[1] == TIME_CHUNK
    # the long clip's chunks are its 3, none past them
    assert sorted(p.name for p in (store / "visual" / "c" / str(fs.index("long"))).iterdir()) == ["0", "1", "2"]
    args = ["extract", "--videos", str(videos), "--out", str(tmp_path / "cut.zarr"), *TINY, "T=0", "max_seconds=12"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "long: picture 30 s, kept 12 s (max_seconds 12)" in result.output
    cut = FeatureStore(tmp_path / "cut.zarr")
    assert cut.cut == {"long": 30} and int(cut.read("length", cut.index("long"))) == 12
    assert cut.read("visual", cut.index("long")).shape[0] == 12
    info = runner.invoke(app, ["info", str(tmp_path / "cut.zarr")])
    assert "cut at max_seconds 12: 1 clips, e.g. long (picture 30 s)" in info.output, info.output
    assert "T 0 (each clip its own length" in info.output
    # a fixed T reports a longer video too
    fixed = run_extract([videos / "long.mp4"], ["long"], tmp_path / "t10.zarr", tiny_config(T=10))
    assert fixed.cut == {"long": "picture 30 s, kept 10 s (T 10)"}
    assert FeatureStore(tmp_path / "t10.zarr").cut == {"long": 30}


def _reference(path, cfg) -> dict[str, np.ndarray]:
    """The slow reference: the clip decoded alone, its frames through CLIP one at a time, its
    audio through VGGish alone."""
    clip, vggish = load_encoders(resolve_weights(cfg, cfg.device)[0])
    from pipeline.encoders import clip_preprocess

    d = decode(path, cfg.max_seconds, cfg.sample_rate, pad=False)
    cls, patches = zip(*[clip.encode_frames(clip_preprocess(torch.from_numpy(f[None]), clip.image_size, clip.mean,
                                                            clip.std)) for f in d.frames])
    audio = vggish(torch.from_numpy(d.audio[None]), d.length, cfg.sample_rate)[0]
    return {"audio": audio.half().numpy(), "visual": torch.cat(cls).half().numpy(),
            "patches": torch.cat(patches).half().numpy()}


def test_clips_of_different_lengths_read_back_as_each_clip_alone(videos, store):
    fs = FeatureStore(store)
    cfg = tiny_config(T=0)
    length = fs.read("length", slice(None))
    for i, clip_id in enumerate(fs.clip_ids):
        ref = _reference(videos / f"{clip_id}.mp4", cfg)
        for name in FEATURES:
            got = fs.read(name, i)
            assert got.shape == ref[name].shape and got.shape[0] == length[i], (clip_id, name)
            assert np.allclose(got.astype(np.float32), ref[name].astype(np.float32), atol=2e-3), (clip_id, name)


def test_a_batch_is_padded_to_its_longest_clip(store):
    fs = FeatureStore(store)
    short, ten, long = fs.index("fps12_short"), fs.index("fps25"), fs.index("long")
    for name in FEATURES:
        x = fs.read(name, [short, ten])
        assert x.shape[1] == 10                                           # not 30, not max_seconds
        assert np.array_equal(x[0, :7], fs.read(name, short)) and not x[0, 7:].any()
        assert np.array_equal(x[1], fs.read(name, ten))
        assert fs.read(name, [long, short]).shape[1] == 30
        assert fs.read(name, slice(None)).shape[1] == 30
    # stage two: every batch has `length`, int64, and features up to the batch's longest clip
    from trainer.data import TaskData, TaskStore

    ts = TaskStore("vggss", store, 0, fs.group["visual"].shape[-1], fs.group["patches"].shape[2],
                   np.zeros((1, 1), np.float32), None, [], True, samples={"train": np.array([short, ten, long])})
    data = TaskData(ts, with_patches=True)
    data._fs, data._prompt = fs, np.zeros(fs.group["visual"].shape[-1], np.float16)
    batch = data.read("train", [0, 1])
    assert batch["length"].dtype == np.int64 and batch["length"].tolist() == [7, 10]
    assert batch["visual"].shape[1] == batch["patches"].shape[1] == batch["audio"].shape[1] == 10


def _damage(file, kind):
    data = file.read_bytes()
    if kind == "missing":
        file.unlink()
    else:                                                  # one bit, same size
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        file.write_bytes(bytes(flipped))


@pytest.mark.parametrize("kind", ["missing", "flipped"])
def test_a_damaged_chunk_of_a_long_clip_is_found_named_and_repaired(videos, store, tmp_path, kind):
    out = tmp_path / "d.zarr"
    shutil.copytree(store, out)
    fs = FeatureStore(out)
    long = fs.index("long")
    before = fs.read("patches", long)
    _damage(out / "patches" / "c" / str(long) / "2" / "0" / "0", kind)       # seconds 20-29
    quick, full = fs.check(), fs.verify()
    assert len(full) == 1 and full[0].clip_id == "long" and full[0].array == "patches"
    assert "c/%d/2/0/0" % long in full[0].reason
    assert quick == (full if kind == "missing" else [])      # same size: only reading the bytes tells
    if kind == "flipped":
        with pytest.raises(StoreError, match="clip 'long'"):
            fs.read("patches", [long, fs.index("fps25")])
    paths = list_videos(videos)
    summary = run_extract(paths, clip_ids_for(paths, videos), out, tiny_config(T=0, repair=True))
    assert list(summary.repaired) == ["long"] and summary.done == 1
    fs = FeatureStore(out)
    assert fs.verify() == [] and np.array_equal(fs.read("patches", long), before)
    # resume: a clip left pending (as by a killed run) is extracted again, the same
    FeatureStore(out, mode="r+").mark_pending([long])
    assert run_extract(paths, clip_ids_for(paths, videos), out, tiny_config(T=0)).done == 1
    assert np.array_equal(FeatureStore(out).read("patches", long), before)


def test_a_fixed_T_store_is_as_before(timecode_dir, tmp_path):
    """One chunk a clip, (N, 2) records, reads of T seconds with the last frame repeated; one
    without the `cut` attribute (made before it existed) opens and says it is not recorded."""
    paths = list_videos(timecode_dir)
    run_extract(paths, clip_ids_for(paths, timecode_dir), tmp_path / "t.zarr", tiny_config())
    fs = FeatureStore(tmp_path / "t.zarr", mode="r+")
    assert fs.group["visual"].chunks == (1, *fs.group["visual"].shape[1:]) and fs.time_chunk("visual") == 0
    assert fs.records("visual").shape == (len(fs), 2)
    short = fs.index("fps12_short")
    x = fs.read("visual", [short])
    assert x.shape[1] == 10 and np.array_equal(x[0, 7], x[0, 6])      # padded to T as stored
    assert fs.attrs["time_chunk"] == 0
    del fs.group.attrs["cut"], fs.group.attrs["time_chunk"]      # as a store made before they were recorded
    old = FeatureStore(tmp_path / "t.zarr")
    assert old.time_chunk("visual") == 0 and np.array_equal(old.read("visual", [short]), x)
    assert old.cut is None and old.check() == [] and old.verify() == []
    info = runner.invoke(app, ["info", str(tmp_path / "t.zarr")])
    assert info.exit_code == 0 and "cut at T 10: not recorded" in info.output


def test_dask_workers_give_the_in_process_store(videos, store, tmp_path):
    """Workers write their clips' time chunks and send the (K, 2) records back to the driver."""
    paths = list_videos(videos)
    run_extract(paths, clip_ids_for(paths, videos), tmp_path / "dask.zarr",
                tiny_config(T=0, workers=2, clips_per_task=1))
    a, b = FeatureStore(store), FeatureStore(tmp_path / "dask.zarr")
    assert b.verify() == []
    for name in FEATURES:
        assert b.records(name).shape == (3, 60, 2)
        assert np.array_equal(a.records(name)[..., 0] > 0, b.records(name)[..., 0] > 0)   # the same chunks
    for name in FEATURES + ("length",):
        assert np.allclose(a.read(name, slice(None)).astype(np.float32),
                           b.read(name, slice(None)).astype(np.float32), atol=2e-3), name


def test_a_time_axis_of_exactly_one_chunk_holds_shorter_clips(timecode_dir, tmp_path):
    """max_seconds 10 at hop 1: the time axis is one chunk of 10 steps (chunk == axis). The 7 s
    clip goes into the first 7 steps of its one chunk and reads back as itself, equal to the
    same clip in a store of many chunks (max_seconds 600), alone and in a batch."""
    paths = [timecode_dir / "fps25.mp4", timecode_dir / "fps12_short.mp4"]
    ids = clip_ids_for(paths, timecode_dir)
    one = run_extract(paths, ids, tmp_path / "one.zarr", tiny_config(T=0, max_seconds=10))
    assert one.done == 2 and not one.failed, one.failed
    run_extract(paths, ids, tmp_path / "many.zarr", tiny_config(T=0))
    fs, ref = FeatureStore(tmp_path / "one.zarr"), FeatureStore(tmp_path / "many.zarr")
    assert fs.group["visual"].shape[1] == fs.group["visual"].chunks[1] == TIME_CHUNK
    assert ref.group["visual"].chunks[1] == TIME_CHUNK < ref.group["visual"].shape[1]
    assert fs.time_chunk("visual") == TIME_CHUNK and fs.records("visual").shape == (2, 2)
    short, ten = fs.index("fps12_short"), fs.index("fps25")
    assert fs.read("length", [short, ten]).tolist() == [7, 10]
    for name in FEATURES:
        alone = fs.read(name, short)
        assert alone.shape[0] == 7 and np.isfinite(alone.astype(np.float32)).all(), name
        assert np.array_equal(alone, ref.read(name, ref.index("fps12_short"))), name
        both = fs.read(name, [short, ten])
        assert np.array_equal(both, ref.read(name, [ref.index("fps12_short"), ref.index("fps25")])), name
        assert both.shape[1] == 10 and not both[0, 7:].any()
    assert fs.check() == [] and fs.verify() == []
    # a store without the attribute (made before create() recorded it) keeps the old rule: a
    # chunk shorter than the axis is chunked along time, and reads as before
    before = {name: ref.read(name, slice(None)) for name in FEATURES}
    del FeatureStore(tmp_path / "many.zarr", mode="r+").group.attrs["time_chunk"]
    old = FeatureStore(tmp_path / "many.zarr")
    assert old.time_chunk("visual") == TIME_CHUNK and old.check() == []
    assert all(np.array_equal(old.read(name, slice(None)), before[name]) for name in FEATURES)
