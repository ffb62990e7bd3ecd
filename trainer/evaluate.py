"""Predict and score each task on a split with the official metrics (trainer/metrics.py).

    results = evaluate(Path("runs/joint"), split="test")          # a run: best checkpoint
    results = evaluate(Path("runs/joint/eval/test/avss.npz"))     # a predictions file: rescore

One code path: `predict` gives a predictions dict, `score` turns predictions plus the store's
ground truth into metrics, whether the predictions come from the model (training's validation,
`avu eval RUN`) or from a file (`avu eval FILE.npz`). So a predictions file rescored gives the
numbers of its JSON exactly. What a benchmark predicts, how it is scored and what its chance
level is are its Benchmark's (`predict`, `score`; trainer/tasks/).

Predictions (eval/<split>/<task>.npz): the arrays of the benchmark's `predict` over the split,
plus clip_index (N,) into the store, task and split as 0-d strings. Floating-point arrays are
saved as float32. A benchmark with an `export` also writes eval/<split>/results/<task>.json
(the dense ones: the official results layout, for the official tools).

Decisions:
- Which checkpoint: "best" (overall best by mean validation selection metric; last.pt when
  no validation ran), "last", "task" (each task its own best-<task>.pt; a task without a
  validation split, VGG-SS or DESED, last.pt as UniAV), or a path.
- `--split test` scores each benchmark's `test_split`: ActivityNet's official protocol reports
  on validation (its testing set has no labels), so its eval/test JSON holds the val clips'
  numbers and says so ("scored_split": "val").
- Open-set runs (`holdout_classes` in config.yaml): the predictions carry `unseen` (K,), the
  classes held out of training; the benchmarks that can hold classes out (the dense ones, AVE,
  LLP) then also score the seen and the unseen classes separately ("<metric>_seen",
  "<metric>_unseen"), chance too; the full metrics are the official ones whatever is held out.
- chance = the best of a few trivial, input-blind predictors on THIS split, per metric (so
  it is a bar to clear, not a floor); each benchmark's score says which.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pipeline.store import FeatureStore
from trainer.data import BatchDataset, TaskStore, make_loader, open_task, split_specs, to_device
from trainer.model import AVUnified
from trainer.runtime import autocast, load_model, resolve_device, task_tensors
from trainer.tasks import BENCHMARKS
from trainer.tasks.holdout import holdout_mask, supports


# ----------------------------------------------------------------------------- predict
@torch.no_grad()
def predict(model: AVUnified, ts: TaskStore, split: str, device: torch.device, batch_size: int = 32,
            workers: int = 0, precision: str = "auto", norm: dict | None = None) -> dict[str, np.ndarray]:
    """The model's predictions for every sample of the split, in split order; `norm`: the
    training run's feature statistics (its checkpoints' "feature_norm")."""
    was_training = model.training
    model.eval()
    spec = ts.spec
    vocab, valid = task_tensors(ts, device)
    data = BatchDataset({ts.task: ts}, {ts.head: model.heads[ts.head].uses_patches})
    loader = make_loader(data, split_specs(ts.task, split, ts.n(split), batch_size), workers, 2,
                         pin=device.type == "cuda")
    parts: dict[str, list[np.ndarray]] = {}
    for batch in loader:
        batch = to_device(batch, device, norm)
        with autocast(device, precision):
            out = model(batch, ts.head, vocab, valid, **spec.head_options)
        dec = {**spec.predict(out, batch), "clip_index": batch["clip_index"]}
        for k, v in dec.items():
            parts.setdefault(k, []).append(v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------- score
def score(task: str, preds: dict[str, np.ndarray], store: FeatureStore | Path | str, chance: bool = True) -> dict:
    """{"n", "metrics", "chance", "per_class", "skipped"}: official metrics of the predictions
    against the store's ground truth (clip_index / question_index say which samples).
    chance=False skips the trivial predictors (validation: they cost as much as the model's)."""
    fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
    spec = BENCHMARKS[task]
    missing = [k for k in spec.pred_keys + ("clip_index",) if k not in preds]
    if missing:
        raise ValueError(f"{task} predictions lack {', '.join(missing)}")
    result = spec.score(preds, fs, chance)
    if not chance:
        result["chance"] = {}
    return result


# ----------------------------------------------------------------------------- files
def write(folder: Path, task: str, split: str, result: dict, preds: dict | None, random_weights: bool) -> Path:
    """eval/<split>/<task>.json (trainer/rundir.py format) and, given predictions, the .npz."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"task": task, "split": split, "n": int(result["n"]), "random_weights": bool(random_weights),
           "metrics": result["metrics"], "chance": result["chance"], "per_class": result["per_class"]}
    if result.get("skipped"):
        doc["skipped"] = int(result["skipped"])
    if result.get("scored_split"):   # the clips scored come from another split (Benchmark.test_split)
        doc["scored_split"] = result["scored_split"]
    path = folder / f"{task}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    if preds is not None:
        save = np.savez_compressed if BENCHMARKS[task].compress else np.savez
        save(folder / f"{task}.npz", task=np.array(task), split=np.array(split), **preds)
    return path


def pick_checkpoint(run: Path, which: str, task: str | None = None, validated: bool = True) -> Path:
    """`validated` False: the task was never validated (no val split: VGG-SS, DESED); "task"
    then takes last.pt, the checkpoint UniAV evaluates, not one chosen by the other tasks."""
    folder = run / "checkpoints"
    if which not in ("best", "last", "task"):
        return Path(which)
    names = {"best": ["best.pt", "last.pt"], "last": ["last.pt"],
             "task": [f"best-{task}.pt", "best.pt", "last.pt"] if validated else ["last.pt"]}[which]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{run}: no checkpoint ({' or '.join(names)} in {folder})")


def evaluate(path: Path, split: str = "test", tasks: list[str] | None = None, checkpoint: str = "best",
             device: str = "auto", batch_size: int = 32, workers: int = 0, precision: str = "auto",
             store: Path | None = None, task: str | None = None) -> dict[str, dict]:
    """Evaluate a run directory on `split` (every task it trained, or `tasks`), or rescore a
    predictions file (.npz; its task/split are read from it, its store from `store` or from the
    run directory it lies in). Writes eval/<split>/<task>.json (+ .npz for a run) and returns
    {task: result}. Tasks whose store lacks the split are skipped (result {"skipped_split": ...})."""
    path = Path(path)
    if path.suffix == ".npz":
        return {task or path.stem: rescore(path, store, task)}
    from trainer.rundir import load_run, recorded_settings

    run = load_run(path)
    settings = recorded_settings(path) if (path / "config.yaml").is_file() else {}
    val_split = settings.get("val_split", "val")
    dev = resolve_device(device)
    results, models = {}, {}
    for t in tasks or run.tasks:
        store_path = run.store_path(t)
        if store_path is None:
            raise FileNotFoundError(f"{path}: store of {t} not found ({run.stores.get(t, 'none in run.json')})")
        ts = open_task(t, store_path)
        scored = ts.spec.test_split if split == "test" else split   # ActivityNet: its labelled validation set
        if ts.n(scored) == 0:
            results[t] = {"skipped_split": scored}
            continue
        ck = pick_checkpoint(path, checkpoint, t, validated=ts.n(val_split) > 0)
        if ck not in models:
            models[ck] = load_model(ck, dev)
        model, state = models[ck]
        preds = predict(model, ts, scored, dev, batch_size, workers, precision, state.get("feature_norm"))
        unseen = holdout_mask(settings.get("holdout_classes"), ts.classes, t, int(settings.get("seed", 0)))
        if unseen is not None and supports(ts.spec.targets):   # open-set: scored seen / unseen apart
            preds["unseen"] = unseen
        results[t] = score(t, preds, store_path) | {"checkpoint": str(ck)} | (
            {"scored_split": scored} if scored != split else {})
        write(path / "eval" / split, t, split, results[t], preds, run.random_weights or ts.random_weights)
        if ts.spec.export is not None:   # dense: the official results JSON, for users (its own
            folder = path / "eval" / split / "results"   # folder: eval/<split>/*.json are eval JSONs)
            folder.mkdir(exist_ok=True)
            ts.spec.export(preds, FeatureStore(store_path), folder / f"{t}.json")
    return results


def rescore(npz: Path, store: Path | None = None, task: str | None = None) -> dict:
    """Score a predictions file against its store; the JSON goes beside it."""
    with np.load(npz) as z:
        preds = {k: z[k] for k in z.files}
    task = task or str(preds.pop("task", npz.stem))
    split = str(preds.pop("split", npz.parent.name))
    if store is None:
        from trainer.rundir import load_run

        run_dir = npz.parent.parent.parent  # <run>/eval/<split>/<task>.npz
        store = load_run(run_dir).store_path(task)
        if store is None:
            raise FileNotFoundError(f"{npz}: give the store (no run directory names one for {task})")
    fs = FeatureStore(store)
    result = score(task, preds, fs)
    write(npz.parent, task, split, result, None, fs.random_weights)
    return result
