"""Stores without patch tokens (the setting `patches`; the dense benchmarks by default): stage one
leaves the patches array out and the other features are those of a store with patches, bit for
bit; stage two trains a patch-less store beside one that reads patches, takes the patch
statistics from the stores that hold them, and refuses a head that reads patches on a store
without them."""

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from pipeline.config import ConfigError
from pipeline.extract import feature_patches, run_extract
from pipeline.store import FeatureStore, StoreError

from .conftest import SAMPLES, need, tiny_config
from .fake_stores import make_dense_store, make_store

LLP = SAMPLES / "llp" / "BjCEufrlXm4.mp4"
WAV = SAMPLES / "audio" / "torchvggish_test.wav"


def test_the_patches_setting_is_checked_and_a_benchmark_defaults_to_its_adapter():
    from pipeline.datasets import ADAPTERS

    assert feature_patches(tiny_config()) is True                       # --videos
    assert feature_patches(tiny_config(patches={"videos": False})) is False
    for name, adapter in ADAPTERS.items():
        assert feature_patches(tiny_config(), name) is adapter.patches
    assert [n for n, a in ADAPTERS.items() if not a.patches] == ["unav100", "activitynet", "desed"]
    assert feature_patches(tiny_config(patches={"unav100": True}), "unav100") is True
    assert feature_patches(tiny_config(patches={"llp": False}), "llp") is False
    assert feature_patches(tiny_config(patches={"llp": False}), "ave") is True
    with pytest.raises(ConfigError, match="unknown key.*unav.*valid keys.*videos"):
        feature_patches(tiny_config(patches={"unav": False}))
    with pytest.raises(ConfigError, match="patches.ave: expected true or false"):
        feature_patches(tiny_config(patches={"ave": 0}), "ave")
    with pytest.raises(ConfigError, match="expected a mapping"):
        feature_patches(tiny_config(patches=False))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A .wav and the LLP video extracted as UnAV-100 (any length, 0.25 s steps) twice: with the
    adapter's default (no patches) and with patches.unav100 = true."""
    root = tmp_path_factory.mktemp("nopatch")
    clips, ids = [need(WAV), need(LLP)], ["wav", "llp"]
    without = run_extract(clips, ids, root / "without.zarr", tiny_config(T=0), task="unav100")
    with_ = run_extract(clips, ids, root / "with.zarr", tiny_config(T=0, patches={"unav100": True}), task="unav100")
    assert without.done == with_.done == 2 and not without.failed and not with_.failed
    assert without.patches is False and with_.patches is True and without.hop == 0.25
    return root / "without.zarr", root / "with.zarr"


def test_a_store_without_patches_has_none_and_the_same_other_features_bit_for_bit(pair):
    without, with_ = FeatureStore(pair[0]), FeatureStore(pair[1])
    assert not without.has_patches and with_.has_patches
    assert "patches" not in without.arrays and "checks/patches" not in without.arrays
    assert without.feature_arrays == ["audio", "visual"]
    assert without.attrs["features"]["patches"] is False and with_.attrs["features"]["patches"] is True
    assert without.attrs["patch_grid"] == with_.attrs["patch_grid"] == 4      # the grid is recorded anyway
    for name in ("audio", "visual", "length", "audio_length", "visual_length"):
        a, b = without.read(name, [0, 1]), with_.read(name, [0, 1])
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    assert np.isfinite(with_.read("patches", 1)[: int(with_.read("length", 1))].astype(np.float32)).all()
    assert without.verify() == [] and with_.verify() == []
    assert list(without.audio_only()) == [0]


def test_info_says_so_and_resuming_checks_the_setting(pair, tmp_path):
    result = CliRunner().invoke(app, ["info", str(pair[0])])
    assert result.exit_code == 0, result.output
    assert "no patch tokens stored" in " ".join(result.output.split())
    assert "no patch tokens" not in CliRunner().invoke(app, ["info", str(pair[1])]).output
    out = tmp_path / "s.zarr"
    shutil.copytree(pair[0], out)
    assert run_extract([WAV, LLP], ["wav", "llp"], out, tiny_config(T=0), task="unav100").skipped == 2
    with pytest.raises(StoreError, match="patches"):
        run_extract([WAV, LLP], ["wav", "llp"], out, tiny_config(T=0, patches={"unav100": True}), task="unav100")


def test_a_store_made_before_the_setting_resumes_as_a_store_with_patches(pair, tmp_path):
    out = tmp_path / "old.zarr"
    shutil.copytree(pair[1], out)
    group = FeatureStore(out, mode="r+").group
    features = dict(group.attrs["features"])
    del features["patches"]
    group.attrs["features"] = features
    assert FeatureStore(out).has_patches
    cfg = tiny_config(T=0, hop={"videos": 0.25})
    assert run_extract([WAV, LLP], ["wav", "llp"], out, cfg).skipped == 2        # --videos: patches
    with pytest.raises(StoreError, match="patches differ.*it holds patch tokens .the setting `patches`"):
        run_extract([WAV, LLP], ["wav", "llp"], out, cfg, task="unav100")     # now without


# ----------------------------------------------------------------------------- stage two
def test_a_head_that_reads_patches_is_refused_on_a_store_without_them(tmp_path):
    from trainer.data import open_task, open_tasks

    path = make_store(tmp_path, "ave", n=4, patches=False)
    with pytest.raises(StoreError, match=rf"{path}: holds no patch tokens.*the ave head \(ave\) reads them.*"
                                         r"patches.ave=true"):
        open_task("ave", path)
    llp = open_task("llp", make_store(tmp_path, "llp", n=4, patches=False))     # LLP's head reads none
    assert not llp.has_patches and llp.n_patches == 4
    make_store(tmp_path / "g3", "unav100", patches=False, G=3)
    make_store(tmp_path / "g3", "ave", n=4)
    with pytest.raises(StoreError, match="patch grid"):                 # the recorded grid is checked
        open_tasks(["ave", "unav100"], str(tmp_path / "g3" / "{task}.zarr"))


def test_patch_statistics_come_from_the_stores_that_hold_them(tmp_path):
    from trainer.data import feature_stats, open_task

    ave = open_task("ave", make_store(tmp_path / "a", "ave", n=8))
    without = open_task("unav100", make_dense_store(tmp_path / "a", "unav100", patches=False))
    with_ = open_task("unav100", make_dense_store(tmp_path / "b", "unav100"))
    both = feature_stats({"ave": ave, "unav100": without})
    alone, reference = feature_stats({"ave": ave}), feature_stats({"ave": ave, "unav100": with_})
    assert torch.equal(both["patches"]["mean"], alone["patches"]["mean"])
    assert torch.equal(both["patches"]["std"], alone["patches"]["std"])
    assert not torch.equal(reference["patches"]["mean"], alone["patches"]["mean"])   # they would count
    for name in ("audio", "visual"):           # the dense store's audio and visual count as ever
        assert torch.equal(both[name]["mean"], reference[name]["mean"]) and torch.equal(both[name]["std"],
                                                                                         reference[name]["std"])
    none = feature_stats({"unav100": without})["patches"]             # no store holds patches: as they are
    assert torch.equal(none["mean"], torch.zeros(16)) and torch.equal(none["std"], torch.ones(16))


def test_a_dense_store_without_patches_trains_beside_one_that_reads_them(tmp_path):
    from cli import train_config
    from trainer.checkpoint import load
    from trainer.data import feature_stats, open_task
    from trainer.train import train

    make_store(tmp_path, "ave", n=8)
    make_dense_store(tmp_path, "unav100", patches=False)
    cfg = train_config(["d_model=16", "n_heads=2", "d_ff=16", "batch_size=4", "workers=0", "max_steps=6",
                        "eval_every=6", "log_every=1", "tasks=ave,unav100", f"stores={tmp_path}/{{task}}.zarr"])
    torch.manual_seed(0)
    run = train(cfg, tmp_path / "run", quiet=True)
    state = load(run / "checkpoints" / "last.pt")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trained = {r["task"] for r in records if r.get("kind") == "train"}
    assert {"ave", "unav100"} <= trained
    norm = state["feature_norm"]
    alone = feature_stats({"ave": open_task("ave", tmp_path / "ave.zarr")})
    assert torch.equal(norm["patches"]["mean"], alone["patches"]["mean"])
