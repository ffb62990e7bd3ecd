"""Official evaluation metrics of the five benchmarks, vectorised.

Every score is a fraction in [0, 1]; reports multiply by 100. The rules were read from each
benchmark's official evaluation code; comments mark the places where that code differs from a
naive reading. How each benchmark applies them (which arrays, chance) is in its file under
trainer/tasks/.

AVE, LLP and MUSIC-AVQA take a whole split at once and return the dataset number. VGG-SS and
AVS (S4/MS3) return one score per sample or video, and AVSS returns per-class sums, so that an
evaluation loop can score batch by batch and combine the results at the end.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from pipeline.vocab import AVQA_TYPES  # the official test's 9 question types


def _tensor(x) -> torch.Tensor:
    """CPU tensor from an array, a list or a (possibly GPU) tensor."""
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _keep_float64(x: torch.Tensor) -> torch.Tensor:
    """float64 stays float64, as the official code keeps its input's dtype; any other dtype
    becomes float32, the dtype the official models give it."""
    return x if x.dtype == torch.float64 else x.float()


def _check_same_shape(*arrays) -> None:
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"shapes differ: {[a.shape for a in arrays]}")


# ----------------------------------------------------------------------------- AVE
def ave_accuracy(pred_labels, gt_labels) -> float:
    """Segment accuracy over all N x T segments, background (class 28) included."""
    pred, gt = np.asarray(pred_labels), np.asarray(gt_labels)
    _check_same_shape(pred, gt)
    return float(np.mean(pred == gt))


# ----------------------------------------------------------------------------- LLP / AVVP
def llp_predict(global_prob, frame_prob_a, frame_prob_v) -> tuple[np.ndarray, np.ndarray]:
    """HAN's prediction rule: a segment is on if its probability and its clip's are >= 0.5.

    global_prob is (N, C); frame_prob_a / frame_prob_v are (N, T, C), the model's own layout
    (HAN's frame_prob[:, :, 0] and frame_prob[:, :, 1]). Returns pred_a, pred_v as
    (N, C, T) bool, the layout llp_scores takes.
    """
    video = np.asarray(global_prob) >= 0.5  # (N, C)
    pa = (np.asarray(frame_prob_a) >= 0.5) & video[:, None, :]  # (N, T, C)
    pv = (np.asarray(frame_prob_v) >= 0.5) & video[:, None, :]
    return pa.transpose(0, 2, 1), pv.transpose(0, 2, 1)


def _segment_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, ...]:
    """TP, FP, FN per clip and class, summed over segments: each (N, C)."""
    return (pred & gt).sum(-1), (pred & ~gt).sum(-1), (~pred & gt).sum(-1)


def _run_ids(x: np.ndarray) -> np.ndarray:
    """Number the maximal runs of 1s along the last axis 1, 2, ...; 0 outside runs."""
    starts = x.copy()
    starts[..., 1:] &= ~x[..., :-1]
    return np.cumsum(starts, axis=-1) * x


def _event_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, ...]:
    """Event-level TP, FP, FN per clip and class: each (N, C).

    A predicted event is a TP if it overlaps some ground-truth event with IoU >= 0.5; a
    ground-truth event matched by no predicted event is a FN. Matching is not one to
    one: two predicted events may both count against the same ground-truth event.
    """
    runs = (pred.shape[-1] + 1) // 2  # the most runs T segments can hold
    ids = np.arange(1, runs + 1)
    in_p = (_run_ids(pred)[..., None] == ids).astype(np.int32)  # (N, C, T, R)
    in_g = (_run_ids(gt)[..., None] == ids).astype(np.int32)
    inter = np.swapaxes(in_p, -1, -2) @ in_g  # (N, C, R, R): segments shared by runs i, j
    len_p, len_g = in_p.sum(-2), in_g.sum(-2)  # (N, C, R); 0 for runs that do not exist
    # IoU >= 0.5 <=> 2 * inter >= len_p + len_g - inter: an exact integer test
    match = (inter > 0) & (3 * inter >= len_p[..., :, None] + len_g[..., None, :])
    tp = match.any(-1).sum(-1)
    fp = (len_p > 0).sum(-1) - tp
    fn = ((len_g > 0) & ~match.any(-2)).sum(-1)
    return tp, fp, fn


def _clip_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Per-clip F1 (N,): mean of per-class F1 over classes with any positive."""
    denom = 2 * tp + fp + fn  # > 0 exactly when the class is predicted or present
    counted = denom > 0
    f1 = np.where(counted, 2 * tp / np.maximum(denom, 1), 0.0)
    n = counted.sum(-1)
    # nothing predicted and nothing present: all true negatives
    return np.where(n > 0, f1.sum(-1) / np.maximum(n, 1), 1.0)


def llp_scores(pred_a, pred_v, gt_a, gt_v) -> dict[str, float]:
    """Segment- and event-level AVVP scores from binary (N, C, T) predictions and labels.

    Keys: {segment,event}_{audio,visual,av,type_avg,event_avg}. The audio-visual arrays are
    the products of the audio and visual ones. type_avg is the mean of the three dataset
    numbers; event_avg pools the audio and visual TP/FP/FN per class before the F1.
    """
    pa, pv, ga, gv = (np.asarray(x).astype(bool) for x in (pred_a, pred_v, gt_a, gt_v))
    _check_same_shape(pa, pv, ga, gv)
    scores = {}
    for level, counts in (("segment", _segment_counts), ("event", _event_counts)):
        a, v, av = counts(pa, ga), counts(pv, gv), counts(pa & pv, ga & gv)
        pooled = [ca + cv for ca, cv in zip(a, v)]
        clip = {"audio": a, "visual": v, "av": av, "event_avg": pooled}
        level_scores = {k: float(_clip_f1(*c).mean()) for k, c in clip.items()}
        level_scores["type_avg"] = (
            level_scores["audio"] + level_scores["visual"] + level_scores["av"]
        ) / 3
        scores |= {f"{level}_{k}": s for k, s in level_scores.items()}
    return scores


# ----------------------------------------------------------------------------- VGG-SS
SSL_SIZE = 224
_SSL_MEDIAN = SSL_SIZE * SSL_SIZE // 2


def _ssl_resize(heat: np.ndarray) -> np.ndarray:
    """(n, h, w) -> (n, 224*224): each map resized on its own, as the official test calls
    cv2.resize (INTER_LINEAR, in the map's dtype). Torch's bilinear interpolation is the same
    formula but rounds differently, which moves pixels across the median on plateaus and ties."""
    out = np.empty((len(heat), SSL_SIZE * SSL_SIZE), heat.dtype)
    for i, h in enumerate(heat):
        out[i] = cv2.resize(np.ascontiguousarray(h), dsize=(SSL_SIZE, SSL_SIZE),
                            interpolation=cv2.INTER_LINEAR).ravel()
    return out


def _ssl_pred_masks(heat: np.ndarray) -> np.ndarray:
    """Binary prediction (n, 224*224) from heatmaps (n, h, w): the top ~half of the pixels."""
    neg = -_ssl_resize(heat)
    # The official code min-max normalises -h and then takes 1 - it, in the map's dtype; doing
    # the same keeps its rounding (so its ties at the median) and its constant-map case, where
    # the map is left un-normalised and becomes 1 + h: all pixels on if h >= 0, else none.
    lo = neg.min(1, keepdims=True)
    span = neg.max(1, keepdims=True) - lo
    flat = span == 0
    pred = 1 - np.where(flat, neg, (neg - lo) / np.where(flat, 1, span))
    thr = np.partition(pred, _SSL_MEDIAN, axis=1)[:, _SSL_MEDIAN : _SSL_MEDIAN + 1]
    # "above the median become 1, then all below 1 become 0": pixels already >= 1 stay on
    return (pred > thr) | (pred >= 1)


def _ssl_boxes(boxes: Sequence) -> list[np.ndarray]:
    """Each sample's boxes as (k, 4) float64, the annotation's values as they are."""
    out, narrow = [], False
    for i, b in enumerate(boxes):
        b = np.asarray(b)
        narrow |= b.dtype.kind == "f" and b.dtype.itemsize < 8
        b = b.astype(np.float64).reshape(-1, 4)
        if not np.isfinite(b).all():
            raise ValueError(f"VGG-SS sample {i}: box coordinates must be finite, got {b.tolist()}")
        out.append(b)
    if narrow:
        warnings.warn("VGG-SS boxes given in float32 (or narrower): int(224 * c) of a rounded "
                      "coordinate loses a pixel where 224 * c is whole in the annotation, so the "
                      "ground truth can differ from the official one; pass the annotation's "
                      "float64 values (a store made before avu kept them in float64: run its "
                      "`avu extract --dataset vggss` command again, which skips the done clips "
                      "and rewrites the targets)", stacklevel=3)
    return out


def _ssl_gt_masks(boxes: list[np.ndarray]) -> np.ndarray:
    """Union of each sample's boxes as (n, 224*224) bool, filled [ymin:ymax, xmin:xmax]."""
    pixels = np.zeros((len(boxes), max(map(len, boxes), default=0), 4), dtype=np.int64)
    for i, b in enumerate(boxes):  # pad with [0, 0, 0, 0], which fills nothing
        # int(224 * max(c, 0)) in float64; clipping at 1 as well changes nothing, slices stop at 224
        pixels[i, : len(b)] = (SSL_SIZE * np.clip(b, 0, 1)).astype(np.int64)
    x0, y0, x1, y1 = (pixels[..., k, None] for k in range(4))  # each (n, k, 1)
    grid = np.arange(SSL_SIZE)
    rows = (grid >= y0) & (grid < y1)  # (n, k, 224)
    cols = (grid >= x0) & (grid < x1)
    return (rows[..., :, None] & cols[..., None, :]).any(1).reshape(len(boxes), -1)


def ssl_ciou(heatmaps, boxes: Sequence, chunk: int = 128) -> np.ndarray:
    """Per-sample VGG-SS cIoU (N,): |P and G| / (|G| + |P and not G|).

    heatmaps (N, h, w): higher = more likely sounding, any resolution, resized to 224 x 224 by
    cv2.resize (INTER_LINEAR) as the official test does; float64 maps are scored in float64,
    any other dtype in float32. boxes[i]: the sample's [xmin, ymin, xmax, ymax] boxes,
    normalised to [0, 1], as float64 (the annotation's values; float32 loses pixels).
    A sample with no box area and an empty prediction is 0 / 0 = NaN, as in the official code:
    ssl_summary counts it as failing every threshold, 0 included. `chunk` bounds memory only.
    """
    heat = _keep_float64(_tensor(heatmaps)).numpy()
    if heat.ndim != 3 or len(heat) != len(boxes) or 0 in heat.shape[1:]:
        raise ValueError(f"need heatmaps (N, h, w) and one box list per sample, got heatmaps "
                         f"{tuple(heat.shape)} and {len(boxes)} box lists")
    boxes = _ssl_boxes(boxes)
    out = [np.zeros(0)]
    for i in range(0, len(heat), chunk):
        pred, gt = _ssl_pred_masks(heat[i : i + chunk]), _ssl_gt_masks(boxes[i : i + chunk])
        inter = (pred & gt).sum(1)
        denom = gt.sum(1) + (pred & ~gt).sum(1)  # 0 only if inter is 0 too
        out.append(np.divide(inter, denom, out=np.full(len(denom), np.nan), where=denom > 0))
    return np.concatenate(out)


def ssl_summary(cious) -> dict[str, float]:
    """cIoU = fraction of samples with ciou >= 0.5; AUC = trapezoid area under the success
    rate (ciou >= 0.05 i) for i = 0..20 over [0, 1] (sklearn.metrics.auc's rule). A NaN
    ciou (0 / 0) fails every threshold, as in the official code."""
    cious = np.asarray(cious, dtype=np.float64)
    x = np.array([0.05 * i for i in range(21)])  # Python floats, as the official code
    success = (cious[None, :] >= x[:, None]).mean(1)  # NaN >= x is False
    auc = float(np.sum(np.diff(x) * (success[1:] + success[:-1]) / 2))
    return {"ciou": float(np.mean(cious >= 0.5)), "auc": auc}


# ----------------------------------------------------------------------------- AVS S4 / MS3
BETA2 = 0.3  # F-measure weight of precision, S4/MS3 and AVSS
# float32 as the official code, whatever the probabilities' dtype; the last one rounds to
# exactly 1.0. Official float64 probabilities meet them as float64 values (torch promotes the
# 0-d float32 threshold to the tensor's dtype), which is exact.
AVS_THRESHOLDS = torch.linspace(0, 1 - 1e-10, 255, dtype=torch.float32)


def _avs_inputs(logits, gt, valid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, gt = _keep_float64(_tensor(logits)), _tensor(gt) != 0
    if valid is None:
        valid = torch.ones(logits.shape[:2], dtype=torch.bool)
    valid = _tensor(valid).bool()
    if logits.ndim != 4 or gt.shape != logits.shape or valid.shape != logits.shape[:2]:
        raise ValueError("need logits and gt (V, F, H, W), valid (V, F)")
    if not valid.any(1).all():
        raise ValueError("every video needs at least one annotated (valid) frame")
    return logits, gt, valid


def avs_miou(logits, gt, valid=None) -> np.ndarray:
    """Per-video S4/MS3 mIoU (V,); the dataset number is the mean over videos.

    logits (V, F, H, W) are pre-sigmoid scores; gt (V, F, H, W) masks (nonzero = sounding);
    valid (V, F) marks the frames that have a ground-truth mask (default: all). Frames with
    valid False are left out of the video's mean. The sigmoid runs in the logits' dtype
    (float64 stays, others become float32), as in the official code; the IoU is float32 there
    whatever the logits (its masks are float32).
    """
    logits, gt, valid = _avs_inputs(logits, gt, valid)
    # in float32 a tiny positive logit (1e-9) gives exactly 0.5, which is not > 0.5
    pred = torch.sigmoid(logits) > 0.5
    inter = (pred & gt).sum((-2, -1))
    union = (pred | gt).sum((-2, -1))
    # an all-background frame scores the share of pixels it leaves empty, not 0 / 0
    empty = ~gt.any(-1).any(-1)
    inter = torch.where(empty, (~pred & ~gt).sum((-2, -1)), inter)
    union = torch.where(empty, gt.shape[-1] * gt.shape[-2], union)
    iou = inter.float() / (union.float() + 1e-7)  # (V, F), float32 as the official code
    return ((iou.double() * valid).sum(1) / valid.sum(1)).numpy()


def _count_at_least(n_pass: torch.Tensor, num: int) -> torch.Tensor:
    """(..., P) counts of thresholds passed per pixel -> (..., num) pixels passing each."""
    lead = n_pass.shape[:-1]
    rows = n_pass.reshape(-1, n_pass.shape[-1])
    flat = rows + torch.arange(len(rows))[:, None] * (num + 1)
    hist = torch.bincount(flat.flatten(), minlength=len(rows) * (num + 1))
    hist = hist.reshape(len(rows), num + 1)[:, 1:]
    # pixels passing threshold k are those passing more than k thresholds
    return hist.flip(-1).cumsum(-1).flip(-1).reshape(*lead, num)


def avs_fscore(logits, gt, valid=None, beta2: float = BETA2) -> np.ndarray:
    """Per-video S4/MS3 F-score (V,), official test batch size 1; dataset = mean over videos.

    Inputs as avs_miou. Per video: the F curves over 255 thresholds (prob >= thr) of the
    valid frames with a non-empty mask are averaged, then the best threshold is taken. A
    video with no such frame scores 0 and still counts in the mean. The probabilities are
    compared with the float32 thresholds in the logits' dtype (as avs_miou); precision,
    recall and F are float32, as in the official code. Intermediates are (V, F, H*W) int64:
    pass a batch of videos at a time.
    """
    logits, gt, valid = _avs_inputs(logits, gt, valid)
    prob = torch.sigmoid(logits).flatten(2)  # (V, F, P), float32 or float64
    hit = gt.flatten(2)
    # thresholds <= prob; float32 thresholds widened exactly where prob is float64
    n_pass = torch.bucketize(prob, AVS_THRESHOLDS.to(prob.dtype), right=True)
    num = len(AVS_THRESHOLDS)
    n_pred = _count_at_least(n_pass, num).float()  # (V, F, 255)
    tp = _count_at_least(torch.where(hit, n_pass, 0), num).float()
    precision = tp / (n_pred + 1e-20)
    recall = tp / (hit.sum(-1, keepdim=True).float() + 1e-20)
    f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    f = torch.where(torch.isnan(f), 0.0, f)  # precision = recall = 0
    scored = valid & hit.any(-1)  # (V, F)
    curve = (f * scored[..., None]).sum(1) / scored.sum(1, keepdim=True).clamp(min=1)
    best = torch.where(scored.any(1), curve.max(-1).values, 0.0)
    return best.double().numpy()


# ----------------------------------------------------------------------------- AVSS
AVSS_NUM_CLASSES = 71


def avss_class_sums(pred_classes, gt_classes, num_classes: int = AVSS_NUM_CLASSES
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class sums over frames of IoU and F, and the number of frames whose union > 0.

    pred_classes and gt_classes are (Nf, H, W) class maps (pred = argmax of the logits).
    Add the three arrays over batches, then call avss_from_sums. Padded frames of 5-frame
    clips are scored like real ones in the official code: pass them in to match it.
    """
    pred, gt = np.asarray(pred_classes), np.asarray(gt_classes)
    _check_same_shape(pred, gt)
    for a in (pred, gt):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"class ids must lie in [0, {num_classes})")
    nf = len(pred)
    pred, gt = pred.reshape(nf, -1), gt.reshape(nf, -1)
    offset = np.arange(nf)[:, None] * num_classes  # one bincount bin per (frame, class)

    def area(ids: np.ndarray) -> np.ndarray:
        return np.bincount(ids.ravel(), minlength=nf * num_classes).reshape(nf, num_classes)

    area_pred, area_gt = area(pred + offset), area(gt + offset)
    area_inter = area((gt + offset)[pred == gt])
    union = area_pred + area_gt - area_inter
    iou = area_inter / (union + 2.220446049250313e-16)
    with np.errstate(divide="ignore", invalid="ignore"):
        p, r = area_inter / area_pred, area_inter / area_gt
        f = (1 + BETA2) * p * r / (BETA2 * p + r)
    f = np.where(np.isnan(f), 0.0, f)  # 0 / 0: absent from the prediction or label, or no overlap
    return iou.sum(0), f.sum(0), (union > 0).sum(0)


def avss_from_sums(iou_sum, f_sum, count) -> dict[str, float]:
    """mIoU and F-score: per class sum / count (0 for a class never seen), mean over ALL
    classes."""
    count = np.asarray(count, dtype=np.float64)
    out = {}
    for name, total in (("miou", iou_sum), ("fscore", f_sum)):
        per_class = np.divide(total, count, out=np.zeros_like(count), where=count > 0)
        out[name] = float(per_class.mean())
    return out


def avss_scores(pred_classes, gt_classes, num_classes: int = AVSS_NUM_CLASSES
                ) -> dict[str, float]:
    """AVSS {"miou", "fscore"} of the given frames in one call."""
    return avss_from_sums(*avss_class_sums(pred_classes, gt_classes, num_classes))


# ----------------------------------------------------------------------------- MUSIC-AVQA
def avqa_accuracy(pred_answers: Sequence, gt_answers: Sequence, types: Sequence[str]
                  ) -> dict[str, float]:
    """Accuracy per question type ("Audio/Counting"), per group ("Audio", "Visual",
    "Audio-Visual": the group's questions pooled) and "All". Only the 9 official types
    (AVQA_TYPES) have an entry and count in their group; a question of any other type counts
    in "All" only, as in the official test. Absent types/groups are left out."""
    correct = np.array([p == g for p, g in zip(pred_answers, gt_answers, strict=True)], bool)
    types = np.array([str(t) for t in types], dtype=object)
    if len(types) != len(correct):
        raise ValueError(f"one type per question: {len(types)} types for {len(correct)} questions")
    official = np.isin(types, AVQA_TYPES)
    groups = np.array([t.split("/")[0] for t in types], dtype=object)
    out = {t: float(correct[types == t].mean()) for t in dict.fromkeys(types[official])}
    for g in dict.fromkeys(groups[official]):
        out[g] = float(correct[official & (groups == g)].mean())
    out["All"] = float(correct.mean())
    return out
