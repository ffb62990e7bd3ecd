"""Predict and score each task on a split with the official metrics (trainer/metrics.py).

    results = evaluate(Path("runs/joint"), split="test")          # a run: best checkpoint
    results = evaluate(Path("runs/joint/eval/test/avss.npz"))     # a predictions file: rescore

One code path: `predict` gives a predictions dict, `score` turns predictions plus the store's
ground truth into metrics, whether the predictions come from the model (training's validation,
`avu eval RUN`) or from a file (`avu eval FILE.npz`). So a predictions file rescored gives the
numbers of its JSON exactly.

Predictions (eval/<split>/<task>.npz; every file also has clip_index (N,) into the store,
task and split as 0-d strings):
    ave         labels (N, T) int16 (class per segment, 28 = background)
    llp         global_prob (N, 25), frame_prob_a, frame_prob_v (N, T, 25) float32
    vggss       heatmap (N, g, g) float32 (the middle frame)
    avs-s4/ms3  mask_logits (N, T, 4g, 4g) float32: the head's own resolution; scoring upsamples
                them to the mask size exactly as the head's decode does (bilinear), so the
                file stays small and the numbers are those of full-size logits
    avss        mask_classes (N, T, S, S) uint8 at the ground truth's size (the argmax must
                follow the upsampling); saved compressed
    music-avqa  answer (N,) int16 (position in the store's answer list), question_index (N,)

Decisions (the issues are silent):
- Which checkpoint: "best" (overall best by mean validation selection metric; last.pt when
  no validation ran), "last", "task" (each task its own best-<task>.pt), or a path.
- Selection metric per task (SELECT): AVE accuracy, LLP segment Type@Avg (the official code's
  choice), VGG-SS cIoU, S4/MS3/AVSS mIoU (AVSBench's), MUSIC-AVQA All.
- S4/MS3 videos without any valid (annotated) frame are left out of mIoU and F-score
  (counted in "skipped"); AVSS scores all T frames, padded ones included (official).
- LLP per_class: segment-level F1 of audio-visual events per class, TP/FP/FN pooled over the
  split's clips; a class neither present nor predicted is left out.
- chance = the best of a few trivial, input-blind predictors on THIS split, per metric (so
  it is a bar to clear, not a floor): AVE the split's majority segment label; LLP the best of
  all off, all on, and the majority event class on everywhere (both modalities); VGG-SS the
  best of a constant map (all pixels on) and a centred Gaussian (sigma 1/4 of the side); S4/MS3
  the best of all on and all off; AVSS the best of all background and all the split's most
  frequent object class; MUSIC-AVQA each question type's majority answer.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.store import FeatureStore
from trainer import checkpoint as ckpt
from trainer import metrics as M
from trainer.data import BatchDataset, TaskStore, make_loader, open_task, split_specs, to_device
from trainer.model import AVUnified, ModelConfig
from trainer.tasks import TASKS

SELECT = {"ave": "accuracy", "llp": "segment_type_avg", "vggss": "ciou", "avs-s4": "miou",
          "avs-ms3": "miou", "avss": "miou", "music-avqa": "All"}
PRED_KEYS = {"ave": ("labels",), "llp": ("global_prob", "frame_prob_a", "frame_prob_v"), "vggss": ("heatmap",),
             "avs-s4": ("mask_logits",), "avs-ms3": ("mask_logits",), "avss": ("mask_classes",),
             "music-avqa": ("answer", "question_index")}
CHUNK = 16  # videos scored at a time for the dense tasks (bounds memory)


# ----------------------------------------------------------------------------- model helpers
def build_model(mcfg: ModelConfig) -> AVUnified:
    return AVUnified(mcfg, {name: task.Head(mcfg) for name, task in TASKS.items()})


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA for "auto"/"bf16"; fp32 otherwise (CPU "auto" stays fp32)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def task_tensors(ts: TaskStore, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The store's vocabulary embeddings and valid ids on the device (what the model call takes)."""
    valid = None if ts.valid_ids is None else torch.as_tensor(ts.valid_ids, device=device)
    return torch.as_tensor(ts.vocab_emb, device=device), valid


# ----------------------------------------------------------------------------- predict
@torch.no_grad()
def predict(model: AVUnified, ts: TaskStore, split: str, device: torch.device, batch_size: int = 32,
            workers: int = 0, precision: str = "auto", norm: dict | None = None) -> dict[str, np.ndarray]:
    """The model's decoded predictions for every sample of the split, in split order; `norm`:
    the training run's feature statistics (its checkpoints' "feature_norm")."""
    was_training = model.training
    model.eval()
    head = TASKS[ts.head]
    vocab, valid = task_tensors(ts, device)
    data = BatchDataset({ts.task: ts}, {ts.head: model.heads[ts.head].uses_patches})
    loader = make_loader(data, split_specs(ts.task, split, ts.n(split), batch_size), workers, 2,
                         pin=device.type == "cuda")
    parts: dict[str, list[np.ndarray]] = {}
    for batch in loader:
        batch = to_device(batch, device, norm)
        with autocast(device, precision):
            out = model(batch, ts.head, vocab, valid)
        if ts.task in ("avs-s4", "avs-ms3"):
            dec = {"mask_logits": out["mask_logits"][:, :, 0]}           # native resolution
        elif ts.task == "avss":
            size = batch["masks"].shape[-1]                                 # the ground truth's size
            dec = {"mask_classes": head.decode(out, size=size)["mask_classes"].to(torch.uint8)}
        else:
            dec = head.decode(out)
        dec["clip_index"] = batch["clip_index"]
        if ts.task == "music-avqa":
            dec["question_index"] = batch["sample_index"]
        for k, v in dec.items():
            parts.setdefault(k, []).append(v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy())
    model.train(was_training)
    preds = {k: np.concatenate(v) for k, v in parts.items()}
    if "labels" in preds:
        preds["labels"] = preds["labels"].astype(np.int16)
    if "answer" in preds:
        preds["answer"] = preds["answer"].astype(np.int16)
    return preds


# ----------------------------------------------------------------------------- score
def score(task: str, preds: dict[str, np.ndarray], store: FeatureStore | Path | str, chance: bool = True) -> dict:
    """{"n", "metrics", "chance", "per_class", "skipped"}: official metrics of the predictions
    against the store's ground truth (clip_index / question_index say which samples).
    chance=False skips the trivial predictors (validation: they cost as much as the model's)."""
    fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
    missing = [k for k in PRED_KEYS[task] + ("clip_index",) if k not in preds]
    if missing:
        raise ValueError(f"{task} predictions lack {', '.join(missing)}")
    result = SCORERS[task](preds, fs, chance)
    if not chance:
        result["chance"] = {}
    return result


def _best(*candidates: dict[str, float]) -> dict[str, float]:
    return {k: max(c[k] for c in candidates) for k in candidates[0]}


def _score_ave(preds: dict, fs: FeatureStore, chance: bool) -> dict:
    gt = fs.read("labels", preds["clip_index"]).astype(np.int64)
    majority = np.bincount(gt.ravel()).argmax()
    return {"n": len(gt), "metrics": {"accuracy": M.ave_accuracy(preds["labels"], gt)},
            "chance": {"accuracy": M.ave_accuracy(np.full_like(gt, majority), gt)}, "per_class": {}}


def _score_llp(preds: dict, fs: FeatureStore, chance: bool) -> dict:
    idx = preds["clip_index"]
    ga, gv = fs.read("gt_audio", idx).astype(bool), fs.read("gt_visual", idx).astype(bool)  # (N, C, T)
    pa, pv = M.llp_predict(preds["global_prob"], preds["frame_prob_a"], preds["frame_prob_v"])
    counts = (ga | gv).sum((0, 2))
    trivial = [np.zeros_like(ga), np.ones_like(ga), np.zeros_like(ga)]
    trivial[2][:, counts.argmax()] = True
    chance = _best(*(M.llp_scores(p, p, ga, gv) for p in trivial)) if chance else {}
    classes = list(fs.attrs.get("classes", [])) or [str(c) for c in range(ga.shape[1])]
    p, g = pa & pv, ga & gv
    tp, fp, fn = ((p & g).sum((0, 2)), (p & ~g).sum((0, 2)), (~p & g).sum((0, 2)))
    per_class = {classes[c]: float(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]))
                 for c in range(len(tp)) if tp[c] + fp[c] + fn[c] > 0}
    return {"n": len(idx), "metrics": M.llp_scores(pa, pv, ga, gv), "chance": chance, "per_class": per_class}


def _centre_map(g: int) -> np.ndarray:
    yy, xx = (np.mgrid[:g, :g] + 0.5) / g - 0.5
    return np.exp(-(xx ** 2 + yy ** 2) / (2 * 0.25 ** 2)).astype(np.float32)


def _score_vggss(preds: dict, fs: FeatureStore, chance: bool) -> dict:
    idx = preds["clip_index"]
    boxes, count = fs.read("boxes", idx), fs.read("box_count", idx)
    if boxes.dtype != np.float64:   # a store made before the adapter kept the file's values
        warnings.warn(f"{fs.path}: VGG-SS boxes are stored as {boxes.dtype}, not the annotation's float64: "
                      f"int(224 * c) loses a pixel where 224 * c is whole, so the ground truth can differ from "
                      f"the official one (on the synthetic vggss.json half the coordinates do; on the real one "
                      f"none). Run this store's `avu extract --dataset vggss` command again: done clips are "
                      f"skipped and the targets are rewritten in float64.", stacklevel=2)
        boxes = boxes.astype(np.float64)   # exact: the rounding happened when the store was made
    boxes = [b[:c] for b, c in zip(boxes, count)]
    heat = preds["heatmap"]                # scored in its own dtype (float32; float64 stays)
    n, g = len(heat), heat.shape[-1]
    trivial = [np.zeros((n, g, g), np.float32), np.broadcast_to(_centre_map(g), (n, g, g)).copy()]
    cious = M.ssl_ciou(heat, boxes)
    # "undefined": samples with no box area and an empty prediction, 0 / 0 (NaN) in the
    # official code, failures at every threshold
    return {"n": n, "metrics": M.ssl_summary(cious), "per_class": {}, "undefined": int(np.isnan(cious).sum()),
            "chance": _best(*(M.ssl_summary(M.ssl_ciou(h, boxes)) for h in trivial)) if chance else {}}


def _upsample_logits(logits: np.ndarray, size: int) -> torch.Tensor:
    """(n, T, h, w) -> (n, T, size, size) by the avs head's decode, which also sets the dtype
    (float32; float64 logits stay float64, as the metrics score in the logits' dtype)."""
    x = torch.from_numpy(np.ascontiguousarray(logits))
    return TASKS["avs"].decode({"mask_logits": x[:, :, None]}, size=size)["mask_logits"]


def _score_binary_masks(preds: dict, fs: FeatureStore, chance: bool) -> dict:
    idx, logits = preds["clip_index"], preds["mask_logits"]
    names = ("model", "all on", "all off") if chance else ("model",)
    parts = {name: ([], []) for name in names}   # per-video mIoU, F
    skipped = 0
    for i in range(0, len(idx), CHUNK):
        valid = fs.read("mask_valid", idx[i:i + CHUNK]).astype(bool)
        keep = valid.any(1)
        skipped += int((~keep).sum())
        if not keep.any():
            continue
        gt = torch.from_numpy(fs.read("masks", idx[i:i + CHUNK])[keep])
        valid = torch.from_numpy(valid[keep])
        up = _upsample_logits(logits[i:i + CHUNK][keep], gt.shape[-1])
        trivial = {"model": up, "all on": torch.full_like(up, 20.0), "all off": torch.full_like(up, -20.0)}
        for name in names:
            x = trivial[name]
            parts[name][0].append(M.avs_miou(x, gt, valid))
            parts[name][1].append(M.avs_fscore(x, gt, valid))
    mean = lambda xs: float(np.concatenate(xs).mean()) if xs else 0.0  # noqa: E731
    summary = {name: {"miou": mean(m), "fscore": mean(f)} for name, (m, f) in parts.items()}
    return {"n": len(idx) - skipped, "skipped": skipped, "metrics": summary["model"],
            "chance": _best(summary["all on"], summary["all off"]) if chance else {}, "per_class": {}}


def _score_avss(preds: dict, fs: FeatureStore, chance: bool) -> dict:
    idx, pred = preds["clip_index"], preds["mask_classes"]
    K = M.AVSS_NUM_CLASSES
    chunks = [slice(i, i + CHUNK) for i in range(0, len(idx), CHUNK)]
    top = 0
    if chance:
        area = sum(np.bincount(fs.read("masks", idx[c]).ravel(), minlength=K)[:K] for c in chunks)
        top = int(np.argmax(area[1:])) + 1                  # the split's most frequent object class
    names = ("model", "background", "top", "oracle") if chance else ("model",)
    sums = {name: [np.zeros(K), np.zeros(K), np.zeros(K)] for name in names}
    for c in chunks:
        gt = fs.read("masks", idx[c])
        if gt.shape[-2:] != pred.shape[-2:]:
            raise ValueError(f"avss predictions are {pred.shape[-2:]}, the ground truth {gt.shape[-2:]}")
        gt = gt.reshape(-1, *gt.shape[-2:])                 # every frame, padded ones too (official)
        trivial = {"model": pred[c].reshape(gt.shape), "background": np.zeros_like(gt), "top": np.full_like(gt, top),
                   "oracle": gt}
        for name in names:
            for total, x in zip(sums[name], M.avss_class_sums(trivial[name], gt)):
                total += x
    scores = {name: M.avss_from_sums(*s) for name, s in sums.items()}
    # ceiling: the ground truth itself. The mean runs over all 71 classes, so a split that
    # holds few of them (the synthetic one: 8) cannot score near 1
    return {"n": len(idx), "metrics": scores["model"], "per_class": {},
            "chance": _best(scores["background"], scores["top"]) if chance else {},
            "ceiling": scores["oracle"] if chance else {}}


def _score_avqa(preds: dict, fs: FeatureStore, chance: bool) -> dict:
    q = preds["question_index"]
    types = np.asarray(fs.attrs["question_types"], dtype=object)[fs.shared("question_type")[q]]
    gt = fs.shared("question_answer")[q].astype(np.int64)
    prior = np.empty_like(gt)
    for t in set(types):
        rows = types == t
        prior[rows] = np.bincount(gt[rows]).argmax()
    return {"n": len(q), "metrics": M.avqa_accuracy(preds["answer"].astype(np.int64), gt, types),
            "chance": M.avqa_accuracy(prior, gt, types), "per_class": {}}


SCORERS = {"ave": _score_ave, "llp": _score_llp, "vggss": _score_vggss, "avs-s4": _score_binary_masks,
           "avs-ms3": _score_binary_masks, "avss": _score_avss, "music-avqa": _score_avqa}


# ----------------------------------------------------------------------------- files
def write(folder: Path, task: str, split: str, result: dict, preds: dict | None, random_weights: bool) -> Path:
    """eval/<split>/<task>.json (trainer/rundir.py format) and, given predictions, the .npz."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"task": task, "split": split, "n": int(result["n"]), "random_weights": bool(random_weights),
           "metrics": result["metrics"], "chance": result["chance"], "per_class": result["per_class"]}
    if result.get("skipped"):
        doc["skipped"] = int(result["skipped"])
    path = folder / f"{task}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    if preds is not None:
        save = np.savez_compressed if task == "avss" else np.savez
        save(folder / f"{task}.npz", task=np.array(task), split=np.array(split), **preds)
    return path


def pick_checkpoint(run: Path, which: str, task: str | None = None) -> Path:
    folder = run / "checkpoints"
    if which not in ("best", "last", "task"):
        return Path(which)
    names = {"best": ["best.pt", "last.pt"], "last": ["last.pt"],
             "task": [f"best-{task}.pt", "best.pt", "last.pt"]}[which]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{run}: no checkpoint ({' or '.join(names)} in {folder})")


def load_model(path: Path, device: torch.device) -> tuple[AVUnified, dict]:
    state = ckpt.load(path)
    model = build_model(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


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
    from trainer.rundir import load_run

    run = load_run(path)
    dev = resolve_device(device)
    results, models = {}, {}
    for t in tasks or run.tasks:
        store_path = run.store_path(t)
        if store_path is None:
            raise FileNotFoundError(f"{path}: store of {t} not found ({run.stores.get(t, 'none in run.json')})")
        ts = open_task(t, store_path)
        if ts.n(split) == 0:
            results[t] = {"skipped_split": split}
            continue
        ck = pick_checkpoint(path, checkpoint, t)
        if ck not in models:
            models[ck] = load_model(ck, dev)
        model, state = models[ck]
        preds = predict(model, ts, split, dev, batch_size, workers, precision, state.get("feature_norm"))
        results[t] = score(t, preds, store_path) | {"checkpoint": str(ck)}
        write(path / "eval" / split, t, split, results[t], preds, run.random_weights or ts.random_weights)
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
