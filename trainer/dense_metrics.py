"""The official detection mAP at temporal-IoU thresholds (UnAV-100, DESED, ActivityNet 1.3).

The rules are the ones UnAV/UniAV's `libs/utils/metrics.py` and ActivityNet's
`Evaluation/eval_detection.py` apply (step by step in ../shared/docs/dense.md). Every number is a
fraction; reports multiply by 100. Two rules:

- "unav" (UnAV, UniAV; also used for DESED): duplicate ground truth within a video is dropped
  (same label, both ends within 1e-3 s of an earlier kept instance), labels are integer ids and
  the scored classes are the ids that have ground truth. The caller has already chosen the split.
- "anet": no de-duplication, labels are names, classes in order of first appearance in
  the ground truth, and a predicted name without ground truth is an error (the official code
  crashes with a KeyError there).

Where the official code is arbitrary we are deterministic, and say so:
- Ties in score: numpy's `argsort()[::-1]` is not stable. We sort by descending score and keep the
  input order among equal scores.
- Ties in tIoU between ground-truth instances: same, we visit the earlier instance first. A NaN
  tIoU (0 / 0: a zero-length prediction against a zero-length ground truth in the same video, at
  any position) sorts first in the official code's reversed argsort and `NaN < t` is false, so it
  is a match; we do the same.
- Rule "unav", a predicted id with no ground truth in the split: the official code leaves such an
  id unmapped while it remaps the GT ids to 0..K-1, so an id p < K is pooled with the p-th GT
  class (a collision) and any other id is never scored. Only the second case is a rule; we ignore
  every such prediction and warn, naming the ids that would have collided officially. With every
  class present (UnAV-100 test, DESED public, ActivityNet validation) the two agree.

detection_map is vectorised: per (video, class) pair the k-th prediction of every pair is matched
at once, for all thresholds. detection_map_reference follows the steps literally, one prediction
and one threshold at a time; the tests hold the two equal.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

THRESHOLDS = {"unav": np.linspace(0.1, 0.9, 9), "anet": np.linspace(0.5, 0.95, 10)}
RULES = tuple(THRESHOLDS)
DUPLICATE_TOL = 1e-3  # seconds, UnAV/UniAV's remove_duplicate_annotations


@dataclass
class Detections:
    """Segments of many videos, one row each: ground truth (score unused) or predictions."""

    video: np.ndarray  # (N,) video ids
    label: np.ndarray  # (N,) int64 class ids (rule "unav") or names (rule "anet")
    segment: np.ndarray  # (N, 2) float64 [start, end] seconds
    score: np.ndarray | None = None  # (N,) float64; None for ground truth (stored as NaN)

    def __post_init__(self) -> None:
        self.video = np.asarray(self.video, dtype=object).reshape(-1)
        label = np.asarray(self.label)
        self.label = label.astype(object) if label.dtype.kind == "U" else label.reshape(-1)
        self.segment = np.asarray(self.segment, dtype=np.float64).reshape(-1, 2)
        n = len(self.video)
        self.score = (np.full(n, np.nan) if self.score is None
                      else np.asarray(self.score, dtype=np.float64).reshape(-1))
        if not len(self.label) == len(self.segment) == len(self.score) == n:
            raise ValueError(f"Detections: video, label, segment and score need one row each, got "
                             f"{n}, {len(self.label)}, {len(self.segment)}, {len(self.score)}")
        bad = ~np.isfinite(self.segment).all(1) | (self.segment[:, 1] < self.segment[:, 0])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"Detections: {int(bad.sum())} segments are not finite with start <= "
                             f"end, the first is row {i} (video {self.video[i]!r}): "
                             f"{self.segment[i].tolist()}")

    def __len__(self) -> int:
        return len(self.video)


@dataclass(frozen=True)
class DenseMAP:
    """mAP per threshold, its mean over thresholds (the papers' "Avg") and AP per class."""

    thresholds: np.ndarray  # (n_t,)
    mAP: np.ndarray  # (n_t,) mean AP over the scored classes
    average: float  # mean of mAP over the thresholds
    classes: np.ndarray  # (K,) the scored classes: sorted ids ("unav") or names ("anet")
    ap: np.ndarray  # (K, n_t)
    npos: np.ndarray  # (K,) ground-truth instances per class (after de-duplication)

    def by_threshold(self) -> dict[str, float]:
        """{"0.10": mAP, ..., "avg": average}, the layout of the papers' tables."""
        return {f"{t:.2f}": float(m) for t, m in zip(self.thresholds, self.mAP)} | {"avg": self.average}


# ----------------------------------------------------------------------------- shared checks
def _check_inputs(gt: Detections, preds: Detections, thresholds, rule: str) -> np.ndarray:
    """Validate the call; warn about (unav) or reject (activitynet) labels without GT."""
    if rule not in RULES:
        raise ValueError(f"unknown mAP rule {rule!r}: use one of {RULES}")
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if len(thresholds) == 0 or not np.isfinite(thresholds).all():
        raise ValueError(f"need at least one finite tIoU threshold, got {thresholds.tolist()}")
    if len(gt) == 0:
        raise ValueError("no ground truth: the mAP has no class to score")
    if not np.isfinite(preds.score).all():
        raise ValueError("every prediction needs a finite score")
    if rule == "unav":
        for name, d in (("ground truth", gt), ("predictions", preds)):
            if len(d) and d.label.dtype.kind not in "iu":
                raise ValueError(f'rule "unav" matches integer class ids; the {name} labels are '
                                 f"{d.label.dtype} (names belong to rule \"anet\")")
        gt_ids = np.unique(gt.label)
        extra = np.setdiff1d(np.unique(preds.label), gt_ids)
        if len(extra):
            collide = extra[(extra >= 0) & (extra < len(gt_ids))]
            warnings.warn(f"predicted class ids {extra.tolist()[:20]} have no ground truth here: "
                          f"their {int(np.isin(preds.label, extra).sum())} predictions are not "
                          f"scored (UnAV/UniAV's code would pool ids {collide.tolist()[:20]} with "
                          f"the GT class at that sorted position)", stacklevel=3)
    else:
        known = set(gt.label.tolist())
        unknown = sorted({str(x) for x in preds.label.tolist() if x not in known})
        if unknown:
            raise ValueError(f"predicted labels {unknown[:10]} ({len(unknown)} in all) are not "
                             f"among the {len(known)} ground-truth classes; ActivityNet's "
                             f"evaluation stops here (KeyError)")
    return thresholds


def _classes(gt: Detections, rule: str) -> np.ndarray:
    """Scored classes: sorted ids (UnAV remaps them to 0..K-1), or names in first-appearance order."""
    if rule == "unav":
        return np.unique(gt.label).astype(np.int64)
    return np.array(list(dict.fromkeys(gt.label.tolist())), dtype=object)


# ----------------------------------------------------------------------------- fast version
def _keep_unique_fast(video: np.ndarray, label: np.ndarray, seg: np.ndarray,
                      tol: float = DUPLICATE_TOL) -> np.ndarray:
    """(N,) bool: False for an instance within tol of an EARLIER KEPT one (same video, label)."""
    n = len(video)
    order = np.lexsort((np.arange(n), label, video))
    v, lab, s = video[order], label[order], seg[order]
    later, earlier = [], []
    d = 1  # compare each instance with the one d places before it in its (video, label) group
    while d < n:
        same = (v[d:] == v[:-d]) & (lab[d:] == lab[:-d])
        if not same.any():
            break
        near = same & (np.abs(s[d:, 0] - s[:-d, 0]) <= tol) & (np.abs(s[d:, 1] - s[:-d, 1]) <= tol)
        later.append(order[d:][near])
        earlier.append(order[:-d][near])
        d += 1
    keep = np.ones(n, dtype=bool)
    later = np.concatenate(later) if later else np.zeros(0, np.int64)
    if not len(later):
        return keep
    earlier = np.concatenate(earlier)
    by_later = np.argsort(later, kind="stable")
    later, earlier = later[by_later], earlier[by_later]
    starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]])
    # ascending order: an earlier instance's fate is settled before a later one looks at it
    for a, b in zip(starts, np.r_[starts[1:], len(later)]):
        keep[later[a]] = not keep[earlier[a:b]].any()
    return keep


def _encode(gt: Detections, preds: Detections, classes: np.ndarray, rule: str):
    """Integer video codes (-1: a video without GT) and class indices (-1: not scored)."""
    index: dict = {}
    for v in gt.video.tolist():
        index.setdefault(v, len(index))
    g_video = np.fromiter((index[v] for v in gt.video.tolist()), np.int64, len(gt))
    p_video = np.fromiter((index.get(v, -1) for v in preds.video.tolist()), np.int64, len(preds))
    if rule == "unav":
        g_class = np.searchsorted(classes, gt.label)
        pos = np.minimum(np.searchsorted(classes, preds.label), len(classes) - 1)
        p_class = np.where(classes[pos] == preds.label, pos, -1)
    else:
        names = {c: i for i, c in enumerate(classes.tolist())}
        g_class = np.fromiter((names[x] for x in gt.label.tolist()), np.int64, len(gt))
        p_class = np.fromiter((names[x] for x in preds.label.tolist()), np.int64, len(preds))
    return g_video, g_class.astype(np.int64), p_video, p_class.astype(np.int64)


def _true_positives(g_pair: np.ndarray, g_seg: np.ndarray, p_pair: np.ndarray, p_seg: np.ndarray,
                    p_score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(n_pred, n_t) bool. g_pair / p_pair: (video, class) pair index of each row, -1 = none.

    Pairs are independent, so the k-th prediction (by score) of every pair is matched at once;
    within a pair the greedy rule runs in score order, as the official loop does."""
    n_t = len(thresholds)
    tp = np.zeros((len(p_pair), n_t), dtype=bool)
    n_pairs = int(g_pair.max()) + 1
    g_order = np.lexsort((np.arange(len(g_pair)), g_pair))  # a pair's GT in input order
    g_counts = np.bincount(g_pair, minlength=n_pairs)
    g_slot = np.arange(len(g_pair)) - np.repeat(np.cumsum(g_counts) - g_counts, g_counts)
    width = int(g_counts.max())
    pair_seg = np.zeros((n_pairs, width, 2))
    pair_valid = np.zeros((n_pairs, width), dtype=bool)
    pair_seg[g_pair[g_order], g_slot] = g_seg[g_order]
    pair_valid[g_pair[g_order], g_slot] = True
    pair_len = pair_seg[..., 1] - pair_seg[..., 0]
    free = np.repeat(pair_valid[:, None, :], n_t, axis=1)  # (n_pairs, n_t, width)

    rows = np.flatnonzero(p_pair >= 0)
    rows = rows[np.lexsort((rows, -p_score[rows], p_pair[rows]))]  # by pair, then score
    counts = np.bincount(p_pair[rows], minlength=n_pairs)
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    for k in range(int(rank.max()) + 1 if len(rows) else 0):
        sel = rows[rank == k]  # at most one prediction per pair
        pair = p_pair[sel]
        s, e = p_seg[sel, :1], p_seg[sel, 1:]  # (m, 1)
        inter = np.clip(np.minimum(e, pair_seg[pair, :, 1]) - np.maximum(s, pair_seg[pair, :, 0]), 0, None)
        union = pair_len[pair] + (e - s) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            tiou = inter / union  # (m, width); 0 / 0 = NaN matches, as officially
        key = np.where(pair_valid[pair], np.where(np.isnan(tiou), np.inf, tiou), -np.inf)
        cand = np.where(free[pair], key[:, None, :], -np.inf)  # (m, n_t, width)
        best = cand.argmax(-1)  # the best free GT; ties: the earlier one
        hit = np.take_along_axis(cand, best[..., None], -1)[..., 0] >= thresholds
        tp[sel] = hit
        r, t = np.nonzero(hit)
        free[pair[r], t, best[r, t]] = False
    return tp


def _voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011 all-point interpolated AP, in the official code's arithmetic."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def detection_map(gt: Detections, preds: Detections, thresholds: np.ndarray, rule: str) -> DenseMAP:
    """Official mAP of preds against gt at each tIoU threshold (THRESHOLDS[rule] is the usual set)."""
    thresholds = _check_inputs(gt, preds, thresholds, rule)
    classes = _classes(gt, rule)
    n_cls, n_t = len(classes), len(thresholds)
    g_video, g_class, p_video, p_class = _encode(gt, preds, classes, rule)
    g_seg = gt.segment
    if rule == "unav":
        keep = _keep_unique_fast(g_video, g_class, g_seg)
        g_video, g_class, g_seg = g_video[keep], g_class[keep], g_seg[keep]
    npos = np.bincount(g_class, minlength=n_cls)

    pair_keys, g_pair = np.unique(g_video * n_cls + g_class, return_inverse=True)
    scored = (p_video >= 0) & (p_class >= 0)
    p_key = np.where(scored, p_video * n_cls + p_class, -1)
    pos = np.minimum(np.searchsorted(pair_keys, p_key), len(pair_keys) - 1)
    p_pair = np.where(scored & (pair_keys[pos] == p_key), pos, -1)  # -1: no GT of its class there
    tp = _true_positives(g_pair.reshape(-1), g_seg, p_pair, preds.segment, preds.score, thresholds)

    ap = np.zeros((n_t, n_cls))  # the official layout, so mAP is its row mean
    rows = np.flatnonzero(p_class >= 0)
    rows = rows[np.lexsort((rows, -preds.score[rows], p_class[rows]))]  # by class, then score
    bounds = np.searchsorted(p_class[rows], np.arange(n_cls + 1))
    for c in range(n_cls):
        hits = tp[rows[bounds[c]:bounds[c + 1]]].T.astype(np.float64)  # (n_t, P_c)
        if hits.shape[1] == 0:
            continue  # a class with GT and no predictions scores 0
        tp_cum = np.cumsum(hits, axis=1)
        fp_cum = np.cumsum(1.0 - hits, axis=1)
        recall, precision = tp_cum / npos[c], tp_cum / (tp_cum + fp_cum)
        for t in range(n_t):
            ap[t, c] = _voc_ap(precision[t], recall[t])
    m_ap = ap.mean(axis=1)
    return DenseMAP(thresholds, m_ap, float(m_ap.mean()), classes, ap.T.copy(), npos)


# ----------------------------------------------------------------------------- reference
def _tiou_reference(p: tuple[float, float], g: tuple[float, float]) -> float:
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    union = (g[1] - g[0]) + (p[1] - p[0]) - inter
    return inter / union if union != 0 else math.nan


def detection_map_reference(gt: Detections, preds: Detections, thresholds: np.ndarray,
                            rule: str) -> DenseMAP:
    """detection_map as a plain loop over the steps of dense.md: slow, obviously the rule."""
    thresholds = _check_inputs(gt, preds, thresholds, rule)
    gt_rows = [(gt.video[i], gt.label[i].item() if rule == "unav" else gt.label[i],
                float(gt.segment[i, 0]), float(gt.segment[i, 1])) for i in range(len(gt))]
    if rule == "unav":  # drop duplicates, comparing with the instances kept so far
        kept = []
        for v, lab, s, e in gt_rows:
            if not any(kv == v and kl == lab and abs(s - ks) <= DUPLICATE_TOL
                       and abs(e - ke) <= DUPLICATE_TOL for kv, kl, ks, ke in kept):
                kept.append((v, lab, s, e))
        gt_rows = kept
        classes = sorted({lab for _, lab, _, _ in gt_rows})
    else:
        classes = list(dict.fromkeys(lab for _, lab, _, _ in gt_rows))
    ap = [[0.0] * len(classes) for _ in thresholds]
    npos = []
    for c, cls in enumerate(classes):
        class_gt = [(v, s, e) for v, lab, s, e in gt_rows if lab == cls]
        npos.append(len(class_gt))
        class_preds = [(float(preds.score[i]), preds.video[i], float(preds.segment[i, 0]),
                        float(preds.segment[i, 1])) for i in range(len(preds)) if preds.label[i] == cls]
        class_preds.sort(key=lambda p: -p[0])  # Python's sort is stable: ties keep input order
        taken = [[False] * len(class_gt) for _ in thresholds]
        tp = [[0] * len(class_preds) for _ in thresholds]
        fp = [[0] * len(class_preds) for _ in thresholds]
        for j, (_, video, s, e) in enumerate(class_preds):
            same_video = [g for g, (v, _, _) in enumerate(class_gt) if v == video]
            if not same_video:
                for t in range(len(thresholds)):
                    fp[t][j] = 1
                continue
            tiou = {g: _tiou_reference((s, e), class_gt[g][1:]) for g in same_video}
            # descending tIoU, NaN first (official reversed argsort), ties: earlier GT first
            visit = sorted(same_video, key=lambda g: (not math.isnan(tiou[g]), -tiou[g], g))
            for t, thr in enumerate(thresholds):
                for g in visit:
                    if tiou[g] < thr:  # False for NaN
                        fp[t][j] = 1
                        break
                    if taken[t][g]:
                        continue
                    tp[t][j] = 1
                    taken[t][g] = True
                    break
                if tp[t][j] == 0 and fp[t][j] == 0:
                    fp[t][j] = 1
        if not class_preds:
            continue
        for t in range(len(thresholds)):
            precision, recall, n_tp, n_fp = [], [], 0, 0
            for j in range(len(class_preds)):
                n_tp, n_fp = n_tp + tp[t][j], n_fp + fp[t][j]
                precision.append(n_tp / (n_tp + n_fp))
                recall.append(n_tp / len(class_gt))
            mprec, mrec = [0.0] + precision + [0.0], [0.0] + recall + [1.0]
            for i in range(len(mprec) - 2, -1, -1):
                mprec[i] = max(mprec[i], mprec[i + 1])
            ap[t][c] = sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec))
                           if mrec[i] != mrec[i - 1])
    ap_arr = np.array(ap).T.reshape(len(classes), len(thresholds))
    m_ap = np.array([sum(row) / len(row) for row in ap])
    return DenseMAP(thresholds, m_ap, float(sum(m_ap) / len(m_ap)),
                    np.array(classes, dtype=np.int64 if rule == "unav" else object), ap_arr,
                    np.array(npos, dtype=np.int64))


# ----------------------------------------------------------------------------- files
def read_activitynet_results(path: str | Path) -> Detections:
    """Predictions (or GT given as a prediction file) from ActivityNet's submission layout:
    {"results": {video: [{"label", "score", "segment": [start, end]}]}, ...}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from e
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise ValueError(f'{path}: no "results" object; ActivityNet\'s layout is {{"version", '
                         f'"results": {{video: [{{"label", "score", "segment"}}]}}, "external_data"}}')
    video, label, segment, score = [], [], [], []
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise ValueError(f"{path}: results[{vid!r}] must be a list of segments, got "
                             f"{type(entries).__name__}")
        for k, entry in enumerate(entries):
            where = f"{path}: results[{vid!r}][{k}]"
            if not isinstance(entry, dict) or not {"label", "score", "segment"} <= entry.keys():
                raise ValueError(f'{where} needs "label", "score" and "segment", got {str(entry)[:120]}')
            seg, sc, lab = entry["segment"], entry["score"], entry["label"]
            if not (isinstance(seg, list) and len(seg) == 2 and all(_is_number(x) for x in seg)
                    and all(math.isfinite(x) for x in seg) and seg[0] <= seg[1]):
                raise ValueError(f"{where}: segment must be [start, end], finite, start <= end; "
                                 f"got {seg!r}")
            if not (_is_number(sc) and math.isfinite(sc)):
                raise ValueError(f"{where}: score must be a finite number, got {sc!r}")
            if not isinstance(lab, str) and not (isinstance(lab, int) and not isinstance(lab, bool)):
                raise ValueError(f"{where}: label must be a class name (or an integer id), got {lab!r}")
            video.append(vid)
            label.append(lab)
            segment.append(seg)
            score.append(float(sc))
    kinds = {type(x) for x in label}
    if len(kinds) > 1:
        raise ValueError(f"{path}: labels mix names and integer ids")
    labels = np.array(label, dtype=np.int64 if kinds == {int} else object)
    return Detections(np.array(video, dtype=object), labels,
                      np.array(segment, dtype=np.float64).reshape(-1, 2), np.array(score))


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def write_results_json(path: str | Path, dets: Detections, classes=None, version: str = "VERSION 1.3",
                       external_data: dict | None = None) -> None:
    """Write predictions in ActivityNet's submission layout, so the official scripts can score
    them. `classes` maps integer labels to names (ActivityNet matches names)."""
    results: dict = {}
    for v, lab, seg, sc in zip(dets.video.tolist(), dets.label.tolist(), dets.segment.tolist(),
                               dets.score.tolist()):
        name = classes[lab] if classes is not None else lab
        results.setdefault(str(v), []).append({"label": name, "score": sc, "segment": seg})
    data = {"version": version, "results": results,
            "external_data": external_data if external_data is not None else {"used": False, "details": ""}}
    Path(path).write_text(json.dumps(data), encoding="utf8")
