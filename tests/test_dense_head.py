"""The dense head (trainer/tasks/dense.py) and its benchmarks (dense_benchmarks.py) on fake dense
stores (tests/fake_stores.make_dense_store): shapes and padding, target assignment against a
loop, the losses against hand-worked values, decoding a hand-made output, a short training run
that finds planted events far above chance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.data import BatchDataset, open_task, to_device
from trainer.model import ModelConfig
from trainer.runtime import build_model, task_tensors
from trainer.tasks import BENCHMARKS, dense
from trainer.tasks import dense_benchmarks as DB

from .fake_stores import make_dense_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(d_model=16, n_heads=2, d_ff=16, visual_dim=16, n_patches=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_dense_store(tmp_path_factory.mktemp("dense"), "unav100")


def _batch(path, task="unav100", split="train", idx=(0, 1, 2, 3)):
    ts = open_task(task, path)
    raw = BatchDataset({task: ts}, {"dense": False})[{"task": task, "split": split, "indices": np.array(idx)}]
    return ts, to_device(torch.utils.data.default_convert(raw), torch.device("cpu"))


# ----------------------------------------------------------------------------- head
def test_points_levels_and_ranges():
    pts = dense.make_points(13)
    assert dense.level_lengths(13) == [13, 7, 4, 2, 1, 1]
    assert len(pts) == 28
    assert pts[13:20, 0].tolist() == [0, 2, 4, 6, 8, 10, 12] and set(pts[13:20, 3].tolist()) == {2}
    assert pts[0, 1:].tolist() == [0, 4, 1] and pts[-1, 1:].tolist() == [64, 10000, 32]


def test_head_shapes_and_padded_steps_change_nothing(store):
    """Outputs per point of every level; what lies in a clip's padded steps (the batch's longer
    clips) changes none of its real points' outputs, and its padded points are marked."""
    torch.manual_seed(0)
    ts, batch = _batch(store)
    model = build_model(ModelConfig(**TINY, T=ts.T)).eval()
    vocab, _ = task_tensors(ts, torch.device("cpu"))
    out = model(batch, "dense", vocab)
    B, T = batch["audio"].shape[:2]
    P = sum(dense.level_lengths(T))
    assert out["cls_logits"].shape == (B, P, 4) and out["offsets"].shape == (B, P, 2)
    assert (out["offsets"] >= 0).all()
    length = batch["length"]
    assert torch.equal(out["point_valid"], out["points"][:, 0][None] < length[:, None])
    short = int(length.argmin())
    assert length[short] < T
    changed = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}
    for name in ("audio", "visual"):
        changed[name][short, length[short]:] = 100.0
    again = model(changed, "dense", vocab)
    real = out["point_valid"][short]
    for key in ("cls_logits", "offsets"):
        assert torch.allclose(out[key][short][real], again[key][short][real], atol=1e-5), key


# ----------------------------------------------------------------------------- targets
def assign_reference(points, segments, labels, K, radius=dense.CENTRE_RADIUS):
    """ActionFormer's assignment, one point and one event at a time."""
    P = len(points)
    cls, reg = np.zeros((P, K)), np.zeros((P, 2))
    for p, (t, lo, hi, s) in enumerate(points.tolist()):
        cands = []
        for (a, b), c in zip(segments.tolist(), labels.tolist()):
            if c < 0 or not math.isfinite(a):
                continue
            mid = (a + b) / 2
            inside = min(t - max(mid - radius * s, a), min(mid + radius * s, b) - t) > 0
            if inside and lo <= max(t - a, b - t) <= hi:
                cands.append((b - a, c, (t - a) / s, (b - t) / s))
        if cands:
            shortest = min(c[0] for c in cands)
            for length, c, _, _ in cands:
                if length <= shortest + 1e-3:
                    cls[p, c] = 1
            first = min(cands, key=lambda c: c[0])
            reg[p] = first[2:]
    return cls, reg


def test_assignment_matches_a_loop():
    rng = np.random.default_rng(0)
    T, K, E, B = 70, 5, 6, 3
    points = dense.make_points(T)
    start = rng.uniform(-0.5, T - 2, (B, E))
    segs = np.stack([start, start + rng.uniform(0.3, 60, (B, E))], -1)
    labels = rng.integers(0, K, (B, E))
    labels[0, 4:] = -1
    segs[0, 4:] = np.nan
    segs[1, 1] = segs[1, 0]                 # two events of one extent: both classes positive
    cls, reg = dense.assign_targets(points, torch.tensor(segs, dtype=torch.float32), torch.tensor(labels), K)
    n_pos = 0
    for b in range(B):
        ref_cls, ref_reg = assign_reference(points.numpy(), segs[b], labels[b], K)
        assert np.array_equal(cls[b].numpy(), ref_cls), b
        pos = ref_cls.sum(1) > 0
        n_pos += pos.sum()
        assert np.allclose(reg[b].numpy()[pos], ref_reg[pos], atol=1e-4), b
    assert n_pos > 20 and (cls[1].sum(1) == 2).any()


# ----------------------------------------------------------------------------- losses
def test_focal_and_diou_losses_by_hand():
    logits, targets = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
    expect = [0.25 * -math.log(p[0]) * (1 - p[0]) ** 2,
              0.75 * -math.log(1 - p[1]) * p[1] ** 2,
              0.25 * -math.log(p[2]) * (1 - p[2]) ** 2]
    assert torch.allclose(dense.sigmoid_focal_loss(logits, targets), torch.tensor(expect, dtype=torch.float32))
    # pred [-1, 3] and target [-2, 2] around the point: IoU 3/5, centres 1 apart, enclosure 5
    pred, target = torch.tensor([[1.0, 3.0], [2.0, 2.0]]), torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    assert torch.allclose(dense.diou_loss(pred, target), torch.tensor([1 - 3 / 5 + (1 / 5) ** 2, 0.0]))


def test_loss_counts_real_points_only(store):
    """Changing the logits of padded points changes nothing; the loss is finite and > 0."""
    torch.manual_seed(0)
    ts, batch = _batch(store)
    model = build_model(ModelConfig(**TINY, T=ts.T))
    out = model(batch, "dense", task_tensors(ts, torch.device("cpu"))[0])
    value = dense.loss(out, batch)
    moved = dict(out, cls_logits=out["cls_logits"].masked_fill(~out["point_valid"][..., None], 30.0))
    assert torch.isfinite(value) and value > 0
    assert torch.allclose(dense.loss(moved, batch), value)


# ----------------------------------------------------------------------------- decoding
def _hand_outputs(T=16, K=3):
    points = dense.make_points(T)
    P = len(points)
    logits = torch.full((2, P, K), -20.0)
    offsets = torch.ones(2, P, 2)
    valid = points[:, 0][None] < torch.tensor([[16], [10]])
    logits[0, 5, 1] = 3.0                   # level 0, step 5: [4, 6] steps
    at = 16 + 4                             # level 1, grid 8, offsets (1.5, 2) x stride 2: [5, 12] steps
    logits[0, at, 2], offsets[0, at] = 1.0, torch.tensor([1.5, 2.0])
    logits[1, :, 0] = 5.0                   # everywhere, padded points too
    return {"cls_logits": logits, "offsets": offsets, "point_valid": valid, "points": points}


def test_decode_a_hand_made_output():
    out = _hand_outputs()
    batch = {"hop": torch.tensor([0.25, 0.5]), "length": torch.tensor([16, 10]),
             "duration": torch.tensor([2.9, math.nan])}
    dec = dense.decode(out, batch, sigma=0.4)
    assert dec["det_segment"].shape == (2, 100, 2) and dec["det_label"].dtype == torch.int16
    labels, scores, segs = dec["det_label"][0], dec["det_score"][0], dec["det_segment"][0]
    assert labels[:2].tolist() == [1, 2] and (labels[2:] == -1).all()
    assert scores[:2].tolist() == pytest.approx([1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-1))], rel=1e-5)
    assert segs[0].tolist() == pytest.approx([(4 + 0.5) * 0.25, (6 + 0.5) * 0.25])
    assert segs[1].tolist() == pytest.approx([(5 + 0.5) * 0.25, 2.9])     # clipped to the duration
    # clip 2: only real points (grid < 10) give detections; no duration: clipped to 10 steps x 0.5 s
    n = int((dec["det_label"][1] >= 0).sum())
    assert 0 < n <= 100
    centres = dec["det_segment"][1, :n].mean(1) / 0.5 - 0.5
    assert (centres < 10).all() and (dec["det_segment"][1, :n] <= 5.0).all()


# ----------------------------------------------------------------------------- training
def test_a_short_dense_run_finds_planted_events_far_above_chance(tmp_path):
    """UnAV-100-shaped fake store (4 classes, events carry their class's pattern, a quarter of
    the clips audio-only): 80 steps on CPU; test avg mAP far above the trivial predictors'."""
    from cli import train_config
    from trainer.evaluate import evaluate
    from trainer.train import train

    make_dense_store(tmp_path, "unav100", n=40, steps=(24, 48), signal=3.0, time_chunk=24)
    cfg = train_config(["d_model=32", "n_heads=2", "d_ff=32", "batch_size=8", "eval_batch_size=16", "workers=0",
                        "lr=2e-3", "max_steps=80", "eval_every=80", "log_every=40", "tasks=unav100",
                        f"stores={tmp_path}/{{task}}.zarr"])
    run = train(cfg, tmp_path / "run", quiet=True)
    result = evaluate(run, "test")["unav100"]
    m, chance = result["metrics"], result["chance"]
    assert set(m) == {k for k in BENCHMARKS["unav100"].metric_keys if not k.endswith("seen")}

    assert m["avg"] > chance["avg"] + 0.25 and m["mAP@0.5"] > 0.4, (m, chance)
    assert (run / "eval" / "test" / "results" / "unav100.json").is_file()


def test_three_dense_benchmarks_jointly_desed_unvalidated_takes_last_pt(tmp_path):
    """DESED has no val split: it trains, is never validated, and evaluation per task takes
    last.pt for it (UniAV's choice), best-<task>.pt for the others. ActivityNet is scored by
    class names, on its validation set under --split test; a predictions file rescored gives its JSON's numbers; the official results
    JSON lists each clip's detections by class name."""
    import json

    from cli import train_config
    from trainer.evaluate import evaluate
    from trainer.rundir import load_run, read_log
    from trainer.train import train

    for task in DB_TASKS:
        make_dense_store(tmp_path, task, n=12, steps=(16, 40))
    cfg = train_config(["d_model=16", "n_heads=2", "d_ff=16", "batch_size=4", "workers=0", "max_steps=6",
                        "eval_every=3", "log_every=3", f"tasks={','.join(DB_TASKS)}",
                        f"stores={tmp_path}/{{task}}.zarr"])
    run = train(cfg, tmp_path / "run", quiet=True)
    records, _ = read_log(load_run(run))
    assert {r["task"] for r in records if r["kind"] == "val"} == {"unav100", "activitynet"}
    assert {r["task"] for r in records if r["kind"] == "train"} == set(DB_TASKS)
    results = evaluate(run, "test", checkpoint="task")
    assert results["desed"]["checkpoint"].endswith("last.pt")
    assert results["unav100"]["checkpoint"].endswith("best-unav100.pt")
    for task in DB_TASKS:
        assert set(results[task]["metrics"]) <= set(BENCHMARKS[task].metric_keys)
        assert 0 <= results[task]["metrics"]["avg"] <= 1 and results[task]["chance"]["avg"] > 0
    assert len(results["activitynet"]["metrics"]) == 11         # 0.5:0.05:0.95 and avg
    assert results["activitynet"]["scored_split"] == "val" and "scored_split" not in results["unav100"]
    with np.load(run / "eval" / "test" / "activitynet.npz") as z:   # ActivityNet reports on validation
        assert z["clip_index"].tolist() == open_task("activitynet", tmp_path / "activitynet.zarr").samples[
            "val"].tolist()
    again = evaluate(run / "eval" / "test" / "activitynet.npz")["activitynet"]
    assert again["metrics"] == pytest.approx(results["activitynet"]["metrics"])
    doc = json.loads((run / "eval" / "test" / "results" / "activitynet.json").read_text())
    classes = open_task("activitynet", tmp_path / "activitynet.zarr").classes
    entries = [e for v in doc["results"].values() for e in v]
    assert entries and {e["label"] for e in entries} <= set(classes)
    assert all(0 <= e["segment"][0] <= e["segment"][1] for e in entries)


DB_TASKS = ("unav100", "activitynet", "desed")


# ----------------------------------------------------------------------------- open set
def test_holdout_masks_and_hidden_targets():
    from trainer.tasks.holdout import hide_classes, holdout_mask, unknown_names

    classes = ["Dog", "Cat", "Male speech, man speaking", "background"]
    assert holdout_mask(0.0, classes, "ave", 0) is None
    assert holdout_mask(["male speech man speaking"], classes, "ave", 0).tolist() == [False, False, True, False]
    frac = holdout_mask(0.5, classes, "ave", 3)
    assert frac.sum() == 2 and not frac[3]                       # background is never held out
    assert np.array_equal(frac, holdout_mask(0.5, classes, "ave", 3))
    assert unknown_names(["Dgo"], {"ave": classes}) == ["Dgo"]
    hidden = np.array([True, False, False, False])
    ave = hide_classes({"labels": torch.tensor([[0, 1, 3]]), "video_label": torch.tensor([0])}, hidden)
    assert ave["labels"].tolist() == [[3, 1, 3]] and ave["video_label"].tolist() == [3]
    llp = hide_classes({"video_labels": torch.ones(1, 4), "gt_audio": torch.ones(1, 4, 2)}, hidden)
    assert llp["video_labels"].tolist() == [[0, 1, 1, 1]] and llp["gt_audio"][0, :, 0].tolist() == [0, 1, 1, 1]
    # dense: the held-out class's events give no positive point
    points = dense.make_points(20)
    out = {"cls_logits": torch.zeros(1, len(points), 4), "points": points}
    batch = {"segments": torch.tensor([[[1.0, 3.0], [2.0, 4.5]]]), "segment_labels": torch.tensor([[0, 2]]),
             "hop": torch.tensor([0.25])}
    cls, _ = dense.batch_targets(out, hide_classes(batch, hidden))
    assert cls[..., 0].sum() == 0 and cls[..., 2].sum() > 0
    assert dense.batch_targets(out, batch)[0][..., 0].sum() > 0


def test_open_set_run_reports_seen_and_unseen_classes(tmp_path):
    from cli import train_config
    from trainer.evaluate import evaluate
    from trainer.train import train

    make_dense_store(tmp_path, "desed", n=16, steps=(16, 32))
    held = open_task("desed", tmp_path / "desed.zarr").classes[1]
    cfg = train_config(["d_model=16", "n_heads=2", "d_ff=16", "batch_size=4", "workers=0", "max_steps=3",
                        "tasks=desed", f"stores={tmp_path}/{{task}}.zarr", f"holdout_classes=[{held}]"])
    with pytest.raises(ValueError, match="no class of desed"):
        train(train_config([f"stores={tmp_path}/{{task}}.zarr", "tasks=desed", "holdout_classes=[Dgo]"]),
              tmp_path / "typo", quiet=True)
    run = train(cfg, tmp_path / "run", quiet=True)
    result = evaluate(run, "test")["desed"]
    assert {"avg", "avg_seen", "avg_unseen", "mAP@0.5_unseen"} <= set(result["metrics"])
    assert {"avg_seen", "avg_unseen"} <= set(result["chance"])
    with np.load(run / "eval" / "test" / "desed.npz") as z:
        assert z["unseen"].tolist() == [False, True, False, False]


def test_ground_truth_as_predictions_scores_full_marks_and_chance_less(store):
    """Each clip's own events as its detections: mAP 1 at every threshold, per class too;
    the trivial predictors score less. ActivityNet's rule (names) agrees."""
    from pipeline.store import FeatureStore

    fs = FeatureStore(store)
    idx = fs.split("test")
    segs, labels = fs.read("segments", idx), fs.read("segment_labels", idx).astype(np.int64)
    N, E = labels.shape
    preds = {"clip_index": idx, "det_label": np.full((N, 100), -1, np.int16),
             "det_score": np.zeros((N, 100), np.float32), "det_segment": np.zeros((N, 100, 2), np.float32)}
    preds["det_label"][:, :E] = labels
    preds["det_segment"][:, :E] = np.nan_to_num(segs)
    preds["det_score"][:, :E] = np.linspace(1, 0.5, N * E).reshape(N, E)      # no ties
    for kind, rule in (("unav", "unav"), ("anet", "anet")):
        r = DB.score(preds, fs, True, kind, rule)
        assert set(r["metrics"].values()) == {1.0}, (rule, r["metrics"])
    with pytest.raises(ValueError, match=r"unav100.zarr: `unseen` has shape \(3,\); the benchmark has 4 classes"):
        DB.score(preds | {"unseen": np.zeros(3, bool)}, fs, True, "unav", "unav")   # a mask of another store
        assert set(r["per_class"].values()) == {1.0} and set(r["per_class"]) <= set(fs.attrs["classes"])
        assert r["chance"]["avg"] < 0.9 and r["chance"].keys() == r["metrics"].keys()
    moved = dict(preds, det_segment=preds["det_segment"] + 100.0)            # far outside every event
    assert DB.score(moved, fs, False, "unav", "unav")["metrics"]["avg"] == 0.0
