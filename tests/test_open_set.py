"""Open-set scoring of AVE and LLP (trainer/tasks/ave.py, llp.py score; holdout.class_groups):
the seen / unseen metrics on hand-worked predictions, the official numbers unchanged with or
without `unseen`, and a short open-set run whose eval and `avu report` show both groups.
(The dense benchmarks' open-set run: tests/test_dense_head.py.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trainer import metrics as M
from trainer.tasks import BENCHMARKS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BG = 28


class Truth:
    """The ground-truth arrays score reads, as a FeatureStore gives them (read, attrs, path)."""

    def __init__(self, path: str = "hand.zarr", classes: list[str] | None = None, **arrays):
        self.path, self.arrays = Path(path), arrays
        self.attrs = {"classes": classes} if classes else {}

    def read(self, name: str, idx) -> np.ndarray:
        return self.arrays[name][np.asarray(idx)]


def unseen(n: int, *held: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[list(held)] = True
    return mask


# ----------------------------------------------------------------------------- AVE
AVE_GT = np.array([[0, 0, BG, 2], [1, 2, 2, BG]], np.int16)
AVE_PRED = np.array([[0, 2, BG, 2], [BG, 2, 3, BG]], np.int16)


def ave_score(**extra):
    preds = {"labels": AVE_PRED, "clip_index": np.arange(2)} | extra
    return BENCHMARKS["ave"].score(preds, Truth(labels=AVE_GT), True)


def test_ave_seen_and_unseen_accuracy_by_hand():
    """Classes 0 and 1 held out. Full: 5 of 8 segments right. Unseen: the 3 segments of class
    0 or 1, one right (1/3); seen: the 5 of class 2 and background, 4 right. Chance: the
    majority label of each set, everywhere: class 2 (3 of 8), class 0 (2 of 3), class 2 (3 of 5)."""
    r = ave_score(unseen=unseen(29, 0, 1))
    assert r["metrics"] == pytest.approx({"accuracy": 5 / 8, "accuracy_seen": 4 / 5, "accuracy_unseen": 1 / 3})
    assert r["chance"] == pytest.approx({"accuracy": 3 / 8, "accuracy_seen": 3 / 5, "accuracy_unseen": 2 / 3})
    # a held-out class without a segment in the split: no unseen keys
    r = ave_score(unseen=unseen(29, 5))
    assert set(r["metrics"]) == set(r["chance"]) == {"accuracy", "accuracy_seen"}
    assert r["metrics"]["accuracy_seen"] == r["metrics"]["accuracy"]         # every segment is seen


def test_ave_without_holdout_is_the_official_accuracy_alone():
    plain = ave_score()
    assert plain == {"n": 2, "metrics": {"accuracy": 5 / 8}, "chance": {"accuracy": 3 / 8}, "per_class": {}}
    held = ave_score(unseen=unseen(29, 0, 1))
    assert {k: held["metrics"][k] for k in plain["metrics"]} == plain["metrics"]      # the same floats
    assert {k: held["chance"][k] for k in plain["chance"]} == plain["chance"]


def test_a_mask_of_the_wrong_length_is_refused_naming_the_store():
    with pytest.raises(ValueError, match=r"hand\.zarr.*`unseen` has shape \(25,\); the benchmark has 29"):
        ave_score(unseen=unseen(25, 0))


# ----------------------------------------------------------------------------- LLP
def llp_case():
    """2 clips, 3 classes, 4 seconds, audio events only (no visual ones, none predicted).
    clip 0: class 0 at [0, 1], predicted at [0]; class 2 at [2, 3], predicted so; class 1
    predicted at [3] (nothing there). clip 1: class 1 everywhere, predicted so; class 2
    predicted at [0] (nothing there)."""
    ga = np.zeros((2, 3, 4), np.uint8)
    ga[0, 0, :2] = ga[0, 2, 2:] = ga[1, 1] = 1
    pa = np.zeros((2, 3, 4), bool)
    pa[0, 0, 0] = pa[0, 2, 2:] = pa[0, 1, 3] = pa[1, 1] = pa[1, 2, 0] = True
    preds = {"global_prob": pa.any(-1).astype(np.float32), "frame_prob_a": pa.transpose(0, 2, 1).astype(np.float32),
             "frame_prob_v": np.zeros((2, 4, 3), np.float32), "clip_index": np.arange(2)}
    return preds, Truth(gt_audio=ga, gt_visual=np.zeros_like(ga), classes=["a", "b", "c"])


def test_llp_seen_and_unseen_f_scores_by_hand():
    """Class 2 held out. Segment level, audio, per clip the mean F1 over the classes present or
    predicted: full (2/3 + 0 + 1) / 3 and (1 + 0) / 2; seen (classes 0, 1): (2/3 + 0) / 2 and 1;
    unseen (class 2): 1 and 0. Visual and audio-visual: no events, none predicted, 1 a clip.
    Event level, audio: clip 0 class 0's predicted [0] has IoU 1/2 with [0, 1], a hit: seen
    (1 + 0) / 2 and 1, unseen 1 and 0."""
    preds, fs = llp_case()
    r = BENCHMARKS["llp"].score(preds | {"unseen": unseen(3, 2)}, fs, True)
    m = r["metrics"]
    assert m["segment_audio"] == pytest.approx((5 / 9 + 1 / 2) / 2)
    assert m["segment_audio_seen"] == pytest.approx(2 / 3) and m["segment_audio_unseen"] == pytest.approx(1 / 2)
    assert m["segment_visual_unseen"] == m["segment_av_seen"] == 1.0
    assert m["segment_type_avg_seen"] == pytest.approx((2 / 3 + 2) / 3)
    assert m["segment_type_avg_unseen"] == pytest.approx((1 / 2 + 2) / 3)
    assert m["segment_event_avg_seen"] == pytest.approx(2 / 3)       # audio and visual pooled: audio's
    assert m["event_audio_seen"] == pytest.approx(3 / 4) and m["event_audio_unseen"] == pytest.approx(1 / 2)
    assert set(m) == set(BENCHMARKS["llp"].metric_keys)
    # chance, segment audio. Unseen: all off scores clip 0 0 (class 2 missed), clip 1 1 (nothing
    # there) = 1/2; all on 2/3 and 0; class 2 on everywhere is all on. Seen: all off 0; all on
    # (2/3 + 0) / 2 and (0 + 1) / 2 = 5/12; class 1 (the seen classes' most frequent) on: 0 and 1/2.
    assert r["chance"]["segment_audio_unseen"] == pytest.approx(1 / 2)
    assert r["chance"]["segment_audio_seen"] == pytest.approx(1 / 2)
    assert r["chance"]["segment_visual_seen"] == 1.0 and set(r["chance"]) == set(m)
    # a held-out class without ground truth in the split: no unseen keys
    fs.arrays["gt_audio"][:, 2] = 0
    r = BENCHMARKS["llp"].score(preds | {"unseen": unseen(3, 2)}, fs, True)
    assert not any(k.endswith("_unseen") for k in r["metrics"]) and "segment_audio_seen" in r["metrics"]


def test_llp_without_holdout_is_the_official_scores_alone(tmp_path):
    from pipeline.store import FeatureStore

    from .fake_stores import make_store

    fs = FeatureStore(make_store(tmp_path, "llp", n=16))
    idx = fs.split("test")
    rng = np.random.default_rng(0)
    T, C = fs.read("gt_audio", idx).shape[2], 25
    preds = {"global_prob": rng.random((len(idx), C)).astype(np.float32), "clip_index": idx,
             "frame_prob_a": rng.random((len(idx), T, C)).astype(np.float32),
             "frame_prob_v": rng.random((len(idx), T, C)).astype(np.float32)}
    plain = BENCHMARKS["llp"].score(preds, fs, True)
    ga, gv = fs.read("gt_audio", idx), fs.read("gt_visual", idx)
    assert plain["metrics"] == M.llp_scores(*M.llp_predict(preds["global_prob"], preds["frame_prob_a"],
                                                           preds["frame_prob_v"]), ga, gv)
    held = BENCHMARKS["llp"].score(preds | {"unseen": unseen(C, *range(0, C, 3))}, fs, True)
    assert {k: held["metrics"][k] for k in plain["metrics"]} == plain["metrics"]
    assert {k: held["chance"][k] for k in plain["chance"]} == plain["chance"]
    assert held["per_class"] == plain["per_class"]
    assert set(held["metrics"]) - set(plain["metrics"]) == {
        k for k in BENCHMARKS["llp"].metric_keys if k.endswith(("_seen", "_unseen"))}


# ----------------------------------------------------------------------------- an open-set run
def test_open_set_run_scores_ave_and_llp_seen_and_unseen_and_reports_them(tmp_path):
    from cli import train_config
    from pipeline.store import FeatureStore
    from trainer import report as R
    from trainer.evaluate import evaluate, rescore
    from trainer.train import train

    from .fake_stores import make_stores
    from .test_report import cell, run_report

    stores = make_stores(tmp_path / "stores", ("ave", "llp"), n=16)
    # one class of each that the test split holds
    ave, llp = (FeatureStore(stores.format(task=t)) for t in ("ave", "llp"))
    ave_class = ave.attrs["classes"][int(ave.read("labels", ave.split("test"))[0, 0])]
    gt = ave.read("labels", ave.split("test"))
    if ave_class == "background":
        ave_class = ave.attrs["classes"][int(gt[gt != BG][0])]
    present = (llp.read("gt_audio", llp.split("test")) | llp.read("gt_visual", llp.split("test"))).any((0, 2))
    llp_class = llp.attrs["classes"][int(np.flatnonzero(present)[0])]
    cfg = train_config(["d_model=16", "n_heads=2", "d_ff=16", "batch_size=4", "workers=0", "max_steps=2",
                        "eval_every=2", f"stores={stores}", "tasks=ave,llp"])
    run = train(replace(cfg, holdout_classes=[ave_class, llp_class]), tmp_path / "run", quiet=True)
    results = evaluate(run, "test")
    a, l = results["ave"], results["llp"]
    assert {"accuracy", "accuracy_seen", "accuracy_unseen"} == set(a["metrics"]) == set(a["chance"])
    assert set(l["metrics"]) == set(l["chance"]) == set(BENCHMARKS["llp"].metric_keys)
    with np.load(run / "eval" / "test" / "ave.npz") as z:
        assert np.flatnonzero(z["unseen"]).tolist() == [ave.attrs["classes"].index(ave_class)]
    assert rescore(run / "eval" / "test" / "llp.npz") == {k: l[k] for k in ("n", "metrics", "chance", "per_class")}

    res, errors, _ = R.load_results([run], "test")
    assert not errors
    tables = {t.spec.id: t for t in R.build_tables(res, "test")}
    unseen_ave = cell(tables["II"], "fully-supervised · unseen", "run")
    assert unseen_ave.ours == pytest.approx(100 * a["metrics"]["accuracy_unseen"])
    assert unseen_ave.chance == pytest.approx(100 * a["chance"]["accuracy_unseen"]) and unseen_ave.paper is None
    assert not any(row.label.startswith("weakly-supervised ·") for row, _ in tables["II"].lines)
    unseen_llp = cell(tables["I"], "unseen · event Type@Avg", "run")
    assert unseen_llp.ours == pytest.approx(100 * l["metrics"]["event_type_avg_unseen"])
    assert unseen_llp.chance == pytest.approx(100 * l["chance"]["event_type_avg_unseen"])
    code, out, err = run_report([run], fmt="markdown")
    assert code == 0, err
    for label in ("fully-supervised · seen", "fully-supervised · unseen", "seen · segment Type@Avg",
                  "unseen · segment Type@Avg", "unseen · event Type@Avg"):
        assert f"| {label} |" in out
    assert out.count("the paper has no such numbers") == 2                  # one note a table


def test_a_run_without_holdout_shows_no_open_set_rows(tmp_path):
    from .test_report import make_run, run_report

    run = make_run(tmp_path, "plain", {"ave": {"accuracy": .7}, "llp": {k: .5 for k in BENCHMARKS["llp"].metric_keys
                                                                         if not k.endswith("seen")}})
    code, out, err = run_report([run], fmt="markdown")
    assert code == 0, err
    assert "seen ·" not in out and "no such numbers" not in out and "| fully-supervised |" in out
