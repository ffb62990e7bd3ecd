"""UniAV's post-processing of dense predictions: per-class Gaussian Soft-NMS, then the top k.

The facts come from UniAV's `libs/utils/nms.py` (batched_nms with multiclass=True, method 2) and
the 1-D soft-NMS kernel it calls (ActionFormer's `nms_cpu.cpp`), in the order it does things,
for each class on its own:
1. pick the remaining segment with the highest (decayed) score and output it with that score;
2. multiply every other remaining score by exp(-IoU^2 / sigma) (sigma as given, not 2 sigma^2),
   IoU from lengths end - start + 1e-6;
3. drop every remaining segment whose score is now below min_score, then go to 1.
The first pick of a class is never checked against min_score (UniAV's scores were filtered at
0.001 before this); every later pick was. A class keeps its first max_per_class picks, which
are its highest final scores. All classes are then merged and the top_k by score kept.

Where the kernel is arbitrary we are deterministic: among equal scores the segment given first
wins (the kernel's own order is reshuffled by its swaps), and the merge keeps class order, then
pick order, among equal scores (torch's sort is not stable). The kernel computes in float32; we
compute in float64.

soft_nms runs all classes at once, one pick per class per step, on a (classes, segments) matrix;
soft_nms_reference is the plain loop. The tests hold them equal.
"""
from __future__ import annotations

import math

import numpy as np

LENGTH_EPS = 1e-6  # added to every length, as the kernel does


def _check(segments, scores, labels, sigma: float, min_score: float, max_per_class: int,
           top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    segments = np.asarray(segments, dtype=np.float64)
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if segments.ndim != 2 or segments.shape[1] != 2 or scores.shape != (len(segments),) \
            or labels.shape != (len(segments),):
        raise ValueError(f"soft_nms needs segments (N, 2), scores (N,) and labels (N,), got "
                         f"{segments.shape}, {scores.shape}, {labels.shape}")
    if len(labels) and labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class ids, got {labels.dtype}")
    if not (np.isfinite(segments).all() and np.isfinite(scores).all()):
        raise ValueError("segments and scores must be finite")
    if not sigma > 0 or not math.isfinite(min_score):
        raise ValueError(f"need sigma > 0 and a finite min_score, got {sigma}, {min_score}")
    if max_per_class < 1 or top_k < 1:
        raise ValueError(f"max_per_class and top_k must be >= 1, got {max_per_class}, {top_k}")
    return segments, scores, labels.astype(np.int64)


def _top_k(segments: np.ndarray, labels: np.ndarray, picks: np.ndarray, picked_scores: np.ndarray,
           top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """picks: input indices in class order, then pick order; the merge is a stable sort."""
    order = np.argsort(-picked_scores, kind="stable")[:top_k]
    picks = picks[order]
    return segments[picks], picked_scores[order], labels[picks]


def soft_nms(segments, scores, labels, sigma: float, min_score: float = 0.001,
             max_per_class: int = 100, top_k: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class Gaussian Soft-NMS of one video's candidates, then the top_k of all classes.

    segments (N, 2) in any unit (UniAV: feature steps), scores (N,), labels (N,) int.
    Returns (segments (M, 2) float64, decayed scores (M,) float64, labels (M,) int64), by
    descending score, M <= top_k."""
    segments, scores, labels = _check(segments, scores, labels, sigma, min_score, max_per_class, top_k)
    if len(segments) == 0:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64)
    classes, cls = np.unique(labels, return_inverse=True)
    cls = cls.reshape(-1)
    counts = np.bincount(cls)
    n_cls, width = len(classes), int(counts.max())
    order = np.lexsort((np.arange(len(cls)), cls))  # by class, then input order
    slot = np.arange(len(cls)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.full((n_cls, width), -1)
    index[cls[order], slot] = order
    alive = index >= 0
    score = np.where(alive, scores[np.maximum(index, 0)], -np.inf)  # (C, W) decayed scores
    start, end = segments[np.maximum(index, 0), 0], segments[np.maximum(index, 0), 1]
    length = end - start + LENGTH_EPS

    steps = min(max_per_class, width)
    picks = np.full((n_cls, steps), -1)
    picked = np.zeros((n_cls, steps))
    rows = np.arange(n_cls)
    for k in range(steps):
        best = np.where(alive, score, -np.inf).argmax(1)  # ties: the earlier input
        active = alive[rows, best]
        if not active.any():
            break
        picks[active, k] = index[rows, best][active]
        picked[active, k] = score[rows, best][active]
        alive[rows, best] = False
        b_start, b_end = start[rows, best][:, None], end[rows, best][:, None]
        inter = np.maximum(0.0, np.minimum(b_end, end) - np.maximum(b_start, start))
        iou = inter / (length[rows, best][:, None] + length - inter)
        score = score * np.exp(-(iou * iou) / sigma)
        alive &= score >= min_score
    kept = picks >= 0
    return _top_k(segments, labels, picks[kept], picked[kept], top_k)


def soft_nms_reference(segments, scores, labels, sigma: float, min_score: float = 0.001,
                       max_per_class: int = 100, top_k: int = 100
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """soft_nms as a plain loop: one class, one pick and one candidate at a time."""
    segments, scores, labels = _check(segments, scores, labels, sigma, min_score, max_per_class, top_k)
    picks, picked_scores = [], []
    for c in sorted(set(labels.tolist())):
        # [input index, start, end, current score], in input order
        remaining = [[i, float(segments[i, 0]), float(segments[i, 1]), float(scores[i])]
                     for i in range(len(labels)) if labels[i] == c]
        n_picked = 0
        while remaining and n_picked < max_per_class:
            best = max(range(len(remaining)), key=lambda j: (remaining[j][3], -remaining[j][0]))
            i, s, e, sc = remaining.pop(best)
            picks.append(i)
            picked_scores.append(sc)
            n_picked += 1
            for r in remaining:
                inter = max(0.0, min(e, r[2]) - max(s, r[1]))
                iou = inter / ((e - s + LENGTH_EPS) + (r[2] - r[1] + LENGTH_EPS) - inter)
                r[3] *= math.exp(-(iou * iou) / sigma)
            remaining = [r for r in remaining if r[3] >= min_score]
    if not picks:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64)
    return _top_k(segments, labels, np.array(picks), np.array(picked_scores), top_k)
