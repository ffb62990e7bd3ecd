"""Stores that cannot hide damage: a missing, truncated or altered chunk of a done clip is found
(`avu info`, `avu info --verify`), refused by training with the store, array and clip named,
and `avu extract --repair` makes the store equal to an undamaged one; a store whose creation
was killed is restarted by the same command."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner
from zarr.codecs import ZstdCodec

from cli import app
from pipeline.extract import clip_ids_for, list_videos, run_extract
from pipeline.store import DONE, FeatureStore, StoreError, building_path
from trainer.data import TaskData, open_task, open_tasks

from .conftest import REPO, tiny_config

runner = CliRunner()
TINY = ["--random-weights", "workers=0", "clip_model=avu-tiny-clip", "patch_grid=4", "clip_batch=16",
        "clips_per_task=1", "decode_threads=2"]   # one clip a batch: a repaired clip is encoded as before


def _walk(group, prefix=""):
    for name, arr in group.arrays():
        yield prefix + name, arr
    for name, sub in group.groups():
        yield from _walk(sub, prefix + name + "/")


def assert_same_store(a, b, attrs_differ=()):
    """Every array (records included) and every attribute (but `attrs_differ`) equal."""
    ga, gb = FeatureStore(a).group, FeatureStore(b).group
    arrays_a, arrays_b = dict(_walk(ga)), dict(_walk(gb))
    assert sorted(arrays_a) == sorted(arrays_b)
    for name, arr in arrays_a.items():
        assert np.array_equal(arr[...], arrays_b[name][...], equal_nan=True), name
    attrs_a, attrs_b = ({k: v for k, v in g.attrs.items() if k not in attrs_differ} for g in (ga, gb))
    assert attrs_a == attrs_b


def chunk_file(store, array: str, i: int):
    """Clip i's chunk of `array`, by zarr v3's default chunk key encoding (c/i/0/...)."""
    ndim = FeatureStore(store).group[array].ndim
    return store / array / "c" / str(i) / "/".join(["0"] * (ndim - 1))


def damage(store, array: str, i: int, kind: str) -> None:
    file = chunk_file(store, array, i)
    data = file.read_bytes()
    if kind == "missing":
        file.unlink()
    elif kind == "garbage":                       # same size: only reading the bytes can tell
        file.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif kind == "truncated":
        file.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":                       # one bit: zstd alone decodes it without a word
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        file.write_bytes(bytes(flipped))


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    """The synthetic AVSBench S4 set (3 clips, T = 5): features, dense masks written by the
    driver clip by clip, targets and shared/ text embeddings; extracted once, undamaged."""
    from pipeline.synth import generate

    base = tmp_path_factory.mktemp("s4")
    root = generate(base / "raw", seed=0, clips=1, only=["avs-s4"])["avs-s4"]
    clean = base / "clean" / "avs-s4.zarr"
    result = runner.invoke(app, ["extract", "--dataset", "avs-s4", "--root", str(root), "--out", str(clean), *TINY])
    assert result.exit_code == 0, result.output
    return root, clean


def extract_cmd(root, out) -> list[str]:
    return ["extract", "--dataset", "avs-s4", "--root", str(root), "--out", str(out), *TINY]


def test_a_clean_store_verifies_and_records_every_chunk(s4):
    root, clean = s4
    fs = FeatureStore(clean)
    assert len(fs.done()) == len(fs) == 3
    assert set(fs.per_clip_arrays()) >= {"audio", "visual", "patches", "masks", "mask_valid", "class_index"}
    for name in fs.per_clip_arrays():
        rec = fs.records(name)
        assert rec.shape == (3, 2) and (rec[:, 0] >= 0).all(), name      # every clip recorded
        for i in range(3):                                                 # ... as stored
            file = chunk_file(clean, name, i)
            assert rec[i, 0] == (file.stat().st_size if file.exists() else 0), (name, i)
    assert fs.records("shared/vocab_emb").shape == (1, 2)
    assert fs.check() == [] and fs.verify() == []
    info = runner.invoke(app, ["info", str(clean), "--verify"])
    assert info.exit_code == 0 and "0 damaged done clip" in info.output


@pytest.mark.parametrize("kind,array", [("missing", "audio"), ("garbage", "visual"), ("truncated", "masks"),
                                        ("flipped", "patches")])
def test_a_damaged_chunk_is_named_refused_by_training_and_repaired(s4, tmp_path, kind, array):
    root, clean = s4
    out = tmp_path / "avs-s4.zarr"
    shutil.copytree(clean, out)
    k = 1
    clip_id = FeatureStore(out).clip_ids[k]
    damage(out, array, k, kind)

    verify = runner.invoke(app, ["info", str(out), "--verify"])
    assert verify.exit_code == 1
    listed = [line for line in verify.stdout.splitlines() if "\t" in line]
    assert len(listed) == 1 and listed[0].startswith(f"{clip_id}\t{array}\t"), verify.stdout
    plain = runner.invoke(app, ["info", str(out)])                # the quick check: missing or resized
    assert plain.exit_code == (1 if kind in ("missing", "truncated") else 0), plain.output

    if kind in ("missing", "truncated"):                          # refused at open: one stat a chunk
        with pytest.raises(StoreError) as refused:
            open_tasks(["avs-s4"], str(tmp_path / "{task}.zarr"))
    else:                                                         # same size: refused at its read
        ts = open_tasks(["avs-s4"], str(tmp_path / "{task}.zarr"))["avs-s4"]
        split = next(s for s, idx in ts.samples.items() if k in ts.clip_index(idx))
        data = TaskData(ts, with_patches=True)
        with pytest.raises(StoreError) as refused:
            data.read(split, np.arange(ts.n(split)))
    message = str(refused.value)
    assert str(out) in message and repr(array) in message and repr(clip_id) in message, message

    if kind == "missing":                                         # a plain rerun says so, exit 1
        rerun = runner.invoke(app, extract_cmd(root, out))
        assert rerun.exit_code == 1 and "--repair" in rerun.output and clip_id in rerun.output, rerun.output
    repaired = runner.invoke(app, extract_cmd(root, out) + ["--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired: 1" in repaired.output and clip_id in repaired.output
    assert_same_store(out, clean)
    assert runner.invoke(app, ["info", str(out), "--verify"]).exit_code == 0


def test_damaged_shared_array_lengths_and_records_are_repaired(s4, tmp_path):
    root, clean = s4
    out = tmp_path / "avs-s4.zarr"
    shutil.copytree(clean, out)
    (out / "shared" / "task_emb" / "c" / "0" / "0").unlink()     # read as zeros before: a silent prompt
    (out / "length" / "c" / "0").unlink()                        # every length read as 0
    (out / "checks" / "masks" / "c" / "0" / "0").write_bytes(b"garbage")
    damage_ = FeatureStore(out).verify()
    found = {(d.array, d.clip_id) for d in damage_}
    ids = FeatureStore(out).clip_ids
    assert ("shared/task_emb", "") in found and {("length", c) for c in ids} <= found
    assert ("checks/masks", "") in found
    with pytest.raises(StoreError, match="length"):
        open_task("avs-s4", out)
    result = runner.invoke(app, extract_cmd(root, out) + ["--repair"])
    assert result.exit_code == 0, result.output
    assert_same_store(out, clean)


def as_old_version(src, dst) -> None:
    """The store as avu 0.1.0 wrote it: zstd chunks without a checksum, fill value 0, no
    records, no feature_arrays attribute."""
    new = FeatureStore(src).group
    old = zarr.open_group(str(dst), mode="w-", zarr_format=3)
    for name, arr in _walk(new):
        if name.startswith("checks/"):
            continue
        small = name in ("length", "status")
        a = old.create_array(name, shape=arr.shape, chunks=arr.chunks, dtype=arr.dtype, fill_value=0,
                             **({} if small else {"compressors": ZstdCodec(level=3)}))
        a[...] = arr[...]
    old.attrs.update({k: v for k, v in new.attrs.items() if k != "feature_arrays"})


def test_a_store_of_the_previous_version_opens_trains_and_is_checked(s4, tmp_path):
    root, clean = s4
    old = tmp_path / "old" / "avs-s4.zarr"
    as_old_version(clean, old)
    fs = FeatureStore(old)
    assert fs.records("audio") is None and fs.check() == [] and fs.verify() == []
    ts = open_task("avs-s4", old)
    batch = TaskData(ts, with_patches=True).read("train", np.arange(ts.n("train")))
    assert np.array_equal(batch["audio"], FeatureStore(clean).read("audio", ts.samples["train"]))

    work = tmp_path / "work" / "avs-s4.zarr"
    shutil.copytree(old, work)
    clip_id = fs.clip_ids[2]
    damage(work, "audio", 2, "missing")             # read as zeros by the previous version
    damage(work, "visual", 0, "truncated")
    quick = FeatureStore(work).check()
    assert [(d.array, d.clip_id) for d in quick] == [("audio", clip_id)] and "predates" in quick[0].reason
    assert {(d.array, d.index) for d in FeatureStore(work).verify()} == {("audio", 2), ("visual", 0)}
    with pytest.raises(StoreError, match=clip_id):
        open_task("avs-s4", work)
    with pytest.raises(StoreError) as err:          # zstd's own error, now naming the clip
        FeatureStore(work).read("visual", [0, 1])
    assert repr(FeatureStore(work).clip_ids[0]) in str(err.value) and "'visual'" in str(err.value)

    result = runner.invoke(app, extract_cmd(root, work) + ["--repair"])
    assert result.exit_code == 0, result.output
    repaired = FeatureStore(work)
    assert repaired.verify() == []
    for name in ("audio", "visual", "patches", "masks", "length", "status"):
        assert np.array_equal(repaired.read(name, slice(None)), fs.read(name, slice(None))), name
    rec = repaired.records("audio")                 # the clips extracted again are recorded now
    assert rec[2, 0] > 0 and rec[1, 0] == -1


# ----------------------------------------------------------------------------- creating a store


@pytest.fixture(scope="module")
def one_clip(timecode_dir, tmp_path_factory):
    """One short clip, and its store extracted without interruption."""
    folder = tmp_path_factory.mktemp("one")
    shutil.copy(timecode_dir / "fps12_short.mp4", folder / "short.mp4")
    clean = folder.parent / (folder.name + "-clean.zarr")
    _extract(folder, clean)
    return folder, clean


def _extract(folder, out):
    paths = list_videos(folder)
    return run_extract(paths, clip_ids_for(paths, folder), out, tiny_config())


KILL_IN_CREATE = """
import os, sys
sys.path.insert(0, {repo!r})
import zarr
from pipeline import store
made = [0]
real = zarr.Group.create_array
def create_array(self, *args, **kw):            # kill -9 before the array number `after` is made
    if made[0] == {after}:
        os._exit(9)
    made[0] += 1
    return real(self, *args, **kw)
zarr.Group.create_array = create_array
os.rename = lambda *args: os._exit(9)            # or just before the new store is moved into place
store.create(store.Path({out!r}), ["short"], {{"audio": ((10, 128), "float16"), "visual": ((10, 64), "float16"),
             "patches": ((10, 16, 64), "float16")}}, {{}})
"""


@pytest.mark.parametrize("after", [0, 3, 99], ids=["first-array", "mid-arrays", "before-rename"])
def test_a_store_killed_while_created_is_restarted_by_the_same_command(one_clip, tmp_path, after):
    folder, clean = one_clip
    out = tmp_path / "s.zarr"
    killed = subprocess.run([sys.executable, "-c", KILL_IN_CREATE.format(repo=str(REPO), after=after, out=str(out))],
                            capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    assert not out.exists() and building_path(out).exists()      # nothing half-made at --out
    with pytest.raises(StoreError, match="no avu feature store"):
        FeatureStore(out)
    summary = _extract(folder, out)
    assert summary.done == 1 and not building_path(out).exists()
    assert_same_store(out, clean, attrs_differ=("created",))


def test_a_half_made_store_of_the_previous_version_is_restarted(one_clip, tmp_path):
    """avu 0.1.0 wrote the attributes (clip_ids) last: killed before, it left a group without
    them, and every later run failed with KeyError: 'clip_ids'."""
    folder, clean = one_clip
    out = tmp_path / "s.zarr"
    group = zarr.open_group(str(out), mode="w-", zarr_format=3)
    group.create_array("audio", shape=(1, 10, 128), chunks=(1, 10, 128), dtype="float16", fill_value=0)
    group.create_array("visual", shape=(1, 10, 64), chunks=(1, 10, 64), dtype="float16", fill_value=0)
    with pytest.raises(StoreError, match="half-made"):
        FeatureStore(out).clip_ids
    summary = _extract(folder, out)
    assert summary.done == 1 and np.all(FeatureStore(out).status() == DONE)
    assert np.array_equal(FeatureStore(out).read("audio", 0), FeatureStore(clean).read("audio", 0))


def test_a_group_with_data_that_is_not_a_store_is_never_deleted(one_clip, tmp_path):
    folder, _ = one_clip
    out = tmp_path / "s.zarr"
    group = zarr.open_group(str(out), mode="w-", zarr_format=3)
    group.create_array("mine", shape=(3,), dtype="float32")[:] = [1, 2, 3]
    with pytest.raises(StoreError, match="not an avu feature store"):
        _extract(folder, out)
    assert list(zarr.open_group(str(out), mode="r")["mine"][:]) == [1, 2, 3]


def test_training_refuses_a_store_whose_targets_are_half_written(tmp_path):
    """write_targets clears the fingerprint first: a run stopped there left targets half-made."""
    from .fake_stores import make_store

    path = make_store(tmp_path, "ave", n=8)
    assert open_task("ave", path).n("train") == 4
    FeatureStore(path, mode="r+").set_attrs(targets_fingerprint=None)
    with pytest.raises(StoreError, match="half-written"):
        open_task("ave", path)
