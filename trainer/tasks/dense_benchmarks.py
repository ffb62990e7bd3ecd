"""UnAV-100, ActivityNet 1.3 and DESED: the three dense benchmarks on the dense head (dense.py).

Targets (stage one, interfaces point 3): segments (E, 2) seconds (NaN rows = padding),
segment_labels (E,) class index (-1 = padding), duration () seconds (NaN = unknown).

Predictions (eval/<split>/<name>.npz), one row per clip like every benchmark's: det_segment
(N, 100, 2) seconds, det_score (N, 100), det_label (N, 100) (-1 = no detection), each clip's
top 100 after Soft-NMS; `detections` flattens them into the video, label, score, start, end
arrays the metric reads, and `write_json` writes the official results layout for users.
Where the run held classes out (open-set), the file also holds `unseen` (K,) bool and the
scores are reported for the seen and unseen classes apart (keys "<metric>_seen", "_unseen").

Scoring: the official mAP (trainer/dense_metrics.py) at the benchmark's thresholds and rule:
UnAV-100 and DESED 0.1:0.1:0.9 with UnAV's rules (duplicate GT dropped, labels matched by
index), ActivityNet 0.5:0.05:0.95 with ActivityNet's (labels matched by name). Metric keys
"mAP@<t>" and "avg" (their mean), fractions. Chance: the better, per metric, of two input-blind
predictors on the split: (1) every clip predicts the whole clip [0, duration] for each class
the split holds, scored by the class's share of the split's events (the prior), and (2) 100
uniform random segments a clip, labels drawn from that prior, random scores (seeded). Both
break score ties with a seeded jitter of 1e-6 (the metric's sort is not stable).

ActivityNet's testing set has no labels: `avu eval --split test` scores its validation set
(Benchmark.test_split), as the official protocol and UniAV report it.

Checkpoints: UnAV-100 and ActivityNet are validated on "val" (avg); DESED has no val split
(UniAV trains on DESED validation = our "train"): it is not validated, and a DESED-only run
is evaluated with last.pt, the checkpoint UniAV evaluates (trainer/evaluate.py pick_checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.tasks import dense
from trainer.tasks.holdout import class_groups
from trainer.tasks.spec import FULL, Benchmark, PaperTable, Row, best

CHANCE_SEED = 0
RANDOM_SEGMENTS = 100


def thresholds(kind: str) -> np.ndarray:
    from trainer.dense_metrics import THRESHOLDS

    return THRESHOLDS[kind]


def threshold_key(t: float) -> str:
    """"mAP@0.5", "mAP@0.55" (the threshold to 2 decimals: 0.30000000000000004 -> 0.3)."""
    return f"mAP@{round(float(t), 2):g}"


def metric_keys(kind: str) -> tuple[str, ...]:
    base = tuple(threshold_key(t) for t in thresholds(kind)) + ("avg",)
    return base + tuple(f"{k}_{group}" for group in ("seen", "unseen") for k in base)


# ----------------------------------------------------------------------------- detections
def _names(fs, idx: np.ndarray) -> np.ndarray:
    return np.asarray(fs.clip_ids, dtype=object)[np.asarray(idx, dtype=np.int64)]


def ground_truth(fs, idx: np.ndarray):
    """The clips' events as Detections: video = clip id, label = class index."""
    from trainer.dense_metrics import Detections

    segs = fs.read("segments", idx).astype(np.float64)          # (N, E, 2)
    labels = fs.read("segment_labels", idx).astype(np.int64)    # (N, E)
    real = (labels >= 0) & np.isfinite(segs).all(-1)
    video = np.repeat(_names(fs, idx), labels.shape[1]).reshape(labels.shape)
    return Detections(video=video[real], label=labels[real], segment=segs[real],
                      score=np.ones(int(real.sum())))


def detections(preds: dict, fs):
    """The predictions file's padded rows as Detections (video = clip id, label = class index)."""
    from trainer.dense_metrics import Detections

    label = np.asarray(preds["det_label"]).astype(np.int64)
    keep = label >= 0
    video = np.repeat(_names(fs, preds["clip_index"]), label.shape[1]).reshape(label.shape)
    return Detections(video=video[keep], label=label[keep],
                      segment=np.asarray(preds["det_segment"], dtype=np.float64)[keep],
                      score=np.asarray(preds["det_score"], dtype=np.float64)[keep])


def _subset(d, keep: np.ndarray, classes: list[str] | None):
    """Rows `keep` of d; labels as names where `classes` is given (ActivityNet's rule)."""
    from trainer.dense_metrics import Detections

    label = d.label[keep]
    if classes is not None:
        label = np.asarray(classes, dtype=object)[label]
    return Detections(video=d.video[keep], label=label, segment=d.segment[keep], score=d.score[keep])


def clip_durations(fs, idx: np.ndarray) -> np.ndarray:
    """Annotated durations; where unknown (NaN), the clip's steps x hop."""
    duration = fs.read("duration", idx).astype(np.float64)
    steps = fs.read("length", idx).astype(np.float64) * float(fs.attrs.get("hop", 1.0))
    return np.where(np.isfinite(duration), duration, steps)


def trivial_predictions(gt, names: np.ndarray, durations: np.ndarray, n_classes: int, seed: int = CHANCE_SEED):
    """The two input-blind predictors of the module docstring, as Detections."""
    from trainer.dense_metrics import Detections

    rng = np.random.default_rng(seed)
    prior = np.bincount(gt.label, minlength=n_classes) / max(len(gt.label), 1)
    present = np.flatnonzero(prior > 0)
    n = len(names)
    whole = Detections(video=np.repeat(names, len(present)), label=np.tile(present, n),
                       segment=np.stack([np.zeros(n * len(present)), np.repeat(durations, len(present))], 1),
                       score=np.tile(prior[present], n) + 1e-6 * rng.random(n * len(present)))
    ends = np.sort(rng.random((n, RANDOM_SEGMENTS, 2)), -1) * durations[:, None, None]
    labels = rng.choice(n_classes, size=(n, RANDOM_SEGMENTS), p=prior) if len(present) else \
        np.zeros((n, RANDOM_SEGMENTS), np.int64)
    random = Detections(video=np.repeat(names, RANDOM_SEGMENTS), label=labels.ravel().astype(np.int64),
                        segment=ends.reshape(-1, 2), score=rng.random(n * RANDOM_SEGMENTS) + 1e-6 * rng.random(
                            n * RANDOM_SEGMENTS))
    return whole, random


# ----------------------------------------------------------------------------- scoring
def _map(gt, pred, kind: str, rule: str, classes: list[str] | None, group: np.ndarray | None) -> tuple[dict, object]:
    """Metrics {"mAP@t": ..., "avg": ...} of pred against gt, over the classes in `group` (a (K,)
    bool; None: all) that have events among gt."""
    from trainer.dense_metrics import detection_map

    keep_gt = np.ones(len(gt.label), bool) if group is None else group[gt.label]
    # classes without events here are scored by neither rule: their predictions are left out
    # (ActivityNet's evaluator would stop at them with a KeyError, UnAV's would mis-pool them)
    keep_pred = np.isin(pred.label, np.unique(gt.label[keep_gt]))
    result = detection_map(_subset(gt, keep_gt, classes), _subset(pred, keep_pred, classes), thresholds(kind), rule)
    metrics = {threshold_key(t): float(m) for t, m in zip(result.thresholds, result.mAP)}
    return metrics | {"avg": float(result.average)}, result


def score(preds: dict, fs, chance: bool, kind: str, rule: str) -> dict:
    """Official mAP of the predictions against the store's events (module docstring); with
    `unseen` in preds, also over the seen and the unseen classes apart."""
    idx = np.asarray(preds["clip_index"])
    classes = list(fs.attrs.get("classes", []))
    K = len(classes) or int(np.asarray(preds["det_label"]).max(initial=0)) + 1
    gt = ground_truth(fs, idx)
    if not len(gt.label):
        raise ValueError(f"{fs.path}: the {len(idx)} clips scored hold no ground-truth events "
                         f"(an unlabelled split?)")
    names = classes if rule == "anet" else None
    pred = detections(preds, fs)
    if len(pred.label) and pred.label.max() >= K:
        raise ValueError(f"{fs.path}: a prediction has class {pred.label.max()}; the store has {K} classes")
    groups = {"": None} | class_groups(preds, K, str(fs.path))
    metrics, per_class = {}, {}
    for suffix, group in groups.items():
        if group is not None and not group[gt.label].any():
            continue                       # no events of this group in the split
        m, result = _map(gt, pred, kind, rule, names, group)
        metrics |= {k + suffix: v for k, v in m.items()}
        if group is None:
            ap = np.asarray(result.ap).mean(1)
            label_of = {c: c if names is None else classes.index(c) for c in result.classes}
            per_class = {(classes[label_of[c]] if classes else str(c)): float(a)
                         for c, a, n in zip(result.classes, ap, result.npos) if n > 0}
    out_chance = {}
    if chance:
        trivial = trivial_predictions(gt, _names(fs, idx), clip_durations(fs, idx), K)
        for suffix, group in groups.items():
            if suffix and not group[gt.label].any():
                continue
            scores = [_map(gt, p, kind, rule, names, group)[0] for p in trivial]
            out_chance |= {k + suffix: v for k, v in best(*scores).items()}
    return {"n": len(idx), "metrics": metrics, "chance": out_chance, "per_class": per_class}


def write_json(preds: dict, fs, path: Path) -> Path:
    """The official results layout ({"version", "results": {video: [{"label", "score",
    "segment"}]}, "external_data"}) with class names, via trainer/dense_metrics.write_results_json."""
    from trainer.dense_metrics import write_results_json

    write_results_json(Path(path), detections(preds, fs), list(fs.attrs.get("classes", [])) or None)
    return Path(path)


# ----------------------------------------------------------------------------- the benchmarks
def dense_rows(kind: str, note: str = "") -> tuple[Row, ...]:
    """mAP at each threshold and Avg (papers' numbers missing: None), then the open-set rows,
    shown only where some run has them."""
    base = [Row(f"mAP@{round(float(t), 2):g}", threshold_key(t), {"": None}) for t in thresholds(kind)]
    base.append(Row("Avg", "avg", {"": None}, note=note))
    open_set = [Row(f"{group} · {label}", f"{key}_{group}", {"": None}, optional=True)
                for group in ("seen", "unseen") for label, key in (("mAP@0.5", "mAP@0.5"), ("Avg", "avg"))]
    return tuple(base + open_set)


def _benchmark(name: str, title: str, order: int, table_id: str, kind: str, rule: str, sigma: float,
               weight: float, modality: str, test_split: str = "test", note: str = "") -> Benchmark:
    def score_it(preds: dict, fs, chance: bool) -> dict:
        return score(preds, fs, chance, kind, rule)

    return Benchmark(
        name=name, head="dense", targets=("segments", "segment_labels", "duration"), losses={FULL: dense.loss},
        predict=dense.make_predict(sigma), pred_keys=("det_segment", "det_score", "det_label"), score=score_it,
        metric_keys=metric_keys(kind), select="avg", headline=("avg", "mAP@0.5"),
        table=PaperTable(table_id, title, 2, order, source="UniAV (arXiv 2404.03179)", verified=False),
        rows=dense_rows(kind, note), test_split=test_split, class_tokens=False, class_prompts=True, per_class="per-class AP, mean over tIoU",
        export=write_json, modality=modality, demo_weight=weight)


UNAV100 = _benchmark("unav100", "UnAV-100 (dense audio-visual events, mAP@tIoU)", 7, "VII", "unav", "unav", 0.4, 1, "audio-visual")
ACTIVITYNET = _benchmark("activitynet", "ActivityNet 1.3 (temporal actions, mAP@tIoU)", 8, "VIII", "anet",
                         "anet", 0.75, 1, "visual", test_split="val",
                         note="ActivityNet 1.3 is reported on its validation set, as the official protocol and "
                              "UniAV do (the testing set has no labels); it is also the set checkpoints are "
                              "validated on.")
DESED = _benchmark("desed", "DESED (sound events, mAP@tIoU)", 9, "IX", "unav", "unav", 0.4, 1, "audio")
