"""`avu eval` (trainer/evaluate.py): scoring against the store, chance levels, the eval files in
the run-directory format, and rescoring a predictions file without the model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from pipeline.store import FeatureStore
from trainer import metrics as M
from trainer import report as R
from trainer.evaluate import evaluate, rescore, score
from trainer.tasks import BENCHMARKS
from trainer.rundir import load_evals, load_run, load_predictions
from cli import train_config as resolve_config
from trainer.train import train

from .fake_stores import make_stores

TASKS = tuple(BENCHMARKS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    stores = make_stores(root / "stores")
    cfg = resolve_config(["d_model=16", "n_heads=2", "d_ff=16", "mask_channels=8", "batch_size=4", "workers=0",
                          "max_steps=2", "eval_every=2", f"stores={stores}"])
    return train(cfg, root / "run", quiet=True), stores


def test_perfect_predictions_score_full_marks(run):
    _, stores = run
    store = lambda t: FeatureStore(stores.format(task=t))  # noqa: E731
    fs = store("ave")
    idx = fs.split("test")
    assert score("ave", {"labels": fs.read("labels", idx), "clip_index": idx}, fs)["metrics"] == {"accuracy": 1.0}
    fs = store("llp")
    ga, gv = fs.read("gt_audio", idx), fs.read("gt_visual", idx)
    preds = {"global_prob": (ga | gv).any(-1).astype(np.float32), "frame_prob_a": ga.transpose(0, 2, 1) * 1.0,
             "frame_prob_v": gv.transpose(0, 2, 1) * 1.0, "clip_index": idx}
    r = score("llp", preds, fs)
    official = {k for k in BENCHMARKS["llp"].metric_keys if not k.endswith(("_seen", "_unseen"))}
    assert set(r["metrics"]) == official and min(r["metrics"].values()) == 1.0   # no holdout: no split keys
    assert all(v == 1.0 for v in r["per_class"].values())
    fs = store("avs-s4")
    masks = fs.read("masks", idx)
    r = score("avs-s4", {"mask_logits": np.where(masks > 0, 20.0, -20.0).astype(np.float32), "clip_index": idx}, fs)
    assert r["metrics"]["miou"] == pytest.approx(1.0, abs=1e-6) and r["metrics"]["fscore"] == pytest.approx(1.0)
    fs = store("avss")
    masks = fs.read("masks", idx)
    r = score("avss", {"mask_classes": masks, "clip_index": idx}, fs)
    assert r["metrics"] == M.avss_scores(masks.reshape(-1, 16, 16), masks.reshape(-1, 16, 16))
    present = len(np.unique(masks))                 # every class present scores IoU 1, the rest 0
    assert r["ceiling"] == r["metrics"] and r["ceiling"]["miou"] == pytest.approx(present / 71) and present < 71
    fs = store("music-avqa")
    q = np.flatnonzero(fs.shared("question_split") == 2)
    r = score("music-avqa", {"answer": fs.shared("question_answer")[q], "question_index": q,
                             "clip_index": fs.shared("question_clip")[q]}, fs)
    assert r["metrics"]["All"] == 1.0 and r["n"] == len(q)


def test_chance_is_the_documented_trivial_predictor(run):
    _, stores = run
    fs = FeatureStore(stores.format(task="ave"))
    idx = fs.split("test")
    gt = fs.read("labels", idx)
    r = score("ave", {"labels": np.zeros_like(gt), "clip_index": idx}, fs)
    assert r["chance"]["accuracy"] == np.bincount(gt.ravel()).max() / gt.size      # the majority label
    fs = FeatureStore(stores.format(task="music-avqa"))
    q = np.flatnonzero(fs.shared("question_split") == 1)
    ans, types = fs.shared("question_answer")[q], fs.shared("question_type")[q]
    hits = sum(np.bincount(ans[types == t]).max() for t in set(types.tolist()))
    r = score("music-avqa", {"answer": ans, "question_index": q, "clip_index": q * 0}, fs)
    assert r["chance"]["All"] == hits / len(q)                                     # per-type majority
    fs = FeatureStore(stores.format(task="avs-s4"))
    idx = fs.split("test")
    masks = fs.read("masks", idx)
    r = score("avs-s4", {"mask_logits": np.zeros(masks.shape, np.float32), "clip_index": idx}, fs)
    all_on = M.avs_miou(np.full(masks.shape, 20.0, np.float32), masks).mean()
    assert r["chance"]["miou"] == pytest.approx(all_on)                            # every frame has an object


def test_eval_writes_the_run_directory_format_and_report_reads_it(run):
    path, _ = run
    results = evaluate(path, "test")
    assert set(results) == set(TASKS)
    info = load_run(path)
    evals = load_evals(info, "test")
    assert set(evals) == set(TASKS)
    for t, e in evals.items():
        # MUSIC-AVQA leaves out the types a split lacks (official); seen / unseen only in open-set runs
        keys = {k for k in BENCHMARKS[t].metric_keys if not k.endswith(("_seen", "_unseen"))}
        assert set(e.metrics) <= keys and (t == "music-avqa" or set(e.metrics) == keys), t
        assert set(e.chance) == set(e.metrics) and e.random_weights and e.n > 0
    pred = load_predictions(info, "test", "vggss")
    assert pred["heatmap"].shape == (6, 2, 2) and pred["clip_index"].tolist() == list(range(6, 12))
    assert load_predictions(info, "test", "avs-s4")["mask_logits"].shape == (3, 5, 8, 8)   # 4g: the head's own
    assert load_predictions(info, "test", "avss")["mask_classes"].shape == (3, 10, 16, 16)
    out, err = io.StringIO(), io.StringIO()
    code = R.report([path], console=Console(file=out, width=300), err_console=Console(file=err, width=300))
    assert code == 0, err.getvalue()
    assert "chance" in out.getvalue() and "RANDOM-WEIGHT FEATURES" in out.getvalue()
    # the validation split too; VGG-SS has none and is skipped
    assert evaluate(path, "val", tasks=["vggss", "ave"])["vggss"] == {"skipped_split": "val"}


def test_rescoring_the_predictions_file_gives_the_same_numbers(run):
    path, _ = run
    evaluate(path, "test", checkpoint="last")
    for t in TASKS:
        written = json.loads((path / "eval" / "test" / f"{t}.json").read_text())
        again = rescore(path / "eval" / "test" / f"{t}.npz")         # store found through run.json
        assert again["metrics"] == written["metrics"] and again["chance"] == written["chance"], t
    assert evaluate(path / "eval" / "test" / "ave.npz")["ave"]["metrics"] == written_metrics(path, "ave")


def written_metrics(path, task):
    return json.loads((path / "eval" / "test" / f"{task}.json").read_text())["metrics"]
