"""Tests of trainer.metrics: hand-worked cases for the easy-to-get-wrong rules, and each
vectorised metric against a slow loop-based reference written from the official rules
(../shared/docs/benchmarks.md, outside the repository)."""
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer import metrics as M

# ----------------------------------------------------------------------------- references


def ref_ave(pred, gt):
    hits = [p == g for row_p, row_g in zip(pred, gt) for p, g in zip(row_p, row_g)]
    return sum(hits) / len(hits)


def ref_clip_f1(counts):
    """counts: per class (tp, fp, fn) of one clip."""
    f1 = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in counts if tp + fp > 0 or tp + fn > 0]
    return sum(f1) / len(f1) if f1 else 1.0


def ref_segment_counts(p, g):
    tp = sum(1 for a, b in zip(p, g) if a and b)
    fp = sum(1 for a, b in zip(p, g) if a and not b)
    fn = sum(1 for a, b in zip(p, g) if not a and b)
    return tp, fp, fn


def ref_events(seq):
    """Maximal runs of 1s as (start, end) with end exclusive."""
    events, start = [], None
    for t, on in enumerate(list(seq) + [0]):
        if on and start is None:
            start = t
        if not on and start is not None:
            events.append((start, t))
            start = None
    return events


def ref_iou(a, b):
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def ref_event_counts(p, g):
    pe, ge = ref_events(p), ref_events(g)
    tp = sum(1 for x in pe if any(ref_iou(x, y) >= 0.5 for y in ge))
    fn = sum(1 for y in ge if not any(ref_iou(x, y) >= 0.5 for x in pe))
    return tp, len(pe) - tp, fn


def ref_llp(pa, pv, ga, gv):
    n_clips, n_classes, _ = pa.shape
    out = {}
    for level, counter in (("segment", ref_segment_counts), ("event", ref_event_counts)):
        per_clip = {"audio": [], "visual": [], "av": [], "event_avg": []}
        for n in range(n_clips):
            rows = {"audio": [], "visual": [], "av": [], "event_avg": []}
            for c in range(n_classes):
                a = counter(pa[n, c], ga[n, c])
                v = counter(pv[n, c], gv[n, c])
                av = counter(pa[n, c] * pv[n, c], ga[n, c] * gv[n, c])
                rows["audio"].append(a)
                rows["visual"].append(v)
                rows["av"].append(av)
                rows["event_avg"].append(tuple(x + y for x, y in zip(a, v)))
            for k in rows:
                per_clip[k].append(ref_clip_f1(rows[k]))
        for k, vals in per_clip.items():
            out[f"{level}_{k}"] = sum(vals) / len(vals)
        out[f"{level}_type_avg"] = (
            out[f"{level}_audio"] + out[f"{level}_visual"] + out[f"{level}_av"]) / 3
    return out


def ref_resize(heat):
    """The official resize: cv2, INTER_LINEAR, one 2-D map at a time, in the map's dtype."""
    return cv2.resize(heat, dsize=(224, 224), interpolation=cv2.INTER_LINEAR)


def torch_resize(heat):
    """torch's bilinear resize (half-pixel centres), which avu used before: same formula,
    other rounding."""
    h = torch.from_numpy(np.ascontiguousarray(heat))[None, None]
    return F.interpolate(h, size=(224, 224), mode="bilinear", align_corners=False)[0, 0].numpy()


def ref_ciou(heat, boxes, resize=ref_resize):
    """One sample, straight from the official rule, in the map's dtype (NaN for 0 / 0)."""
    neg = -resize(heat)
    low, high = neg.min(), neg.max()
    norm = neg if high - low == 0 else (neg - low) / (high - low)  # a flat map is left as is
    pred = 1 - norm
    median = np.sort(pred.ravel())[224 * 224 // 2]
    pred[pred > median] = 1  # above the median -> 1, then everything below 1 -> 0
    pred[pred < 1] = 0
    on = pred >= 0.5
    gt = np.zeros((224, 224), bool)
    for box in boxes:
        x0, y0, x1, y1 = (int(224 * max(float(c), 0)) for c in box)
        gt[y0:y1, x0:x1] = True
    inter, denom = int((on & gt).sum()), int(gt.sum() + (on & ~gt).sum())
    return inter / denom if denom else float("nan")


def ref_ssl_summary(cious):
    """cIoU and AUC (trapezoid rule over x = 0.05 i, i = 0..20), NaN failing every threshold."""
    x = [0.05 * i for i in range(21)]
    success = [sum(1 for c in cious if c >= t) / len(cious) for t in x]
    auc = sum((x[i + 1] - x[i]) * (success[i + 1] + success[i]) / 2 for i in range(20))
    return {"ciou": sum(1 for c in cious if c >= 0.5) / len(cious), "auc": auc}


def ref_avs(logits, gt, valid):
    """Per-video (mIoU, F-score) lists, one frame and one threshold at a time; the sigmoid in
    the logits' dtype (float64 stays), the F arithmetic in float32, as the official code."""
    thresholds = [float(t) for t in torch.linspace(0, 1 - 1e-10, 255)]  # float32 values
    mious, fscores = [], []
    for v in range(len(logits)):
        ious, curves = [], []
        for f in range(logits.shape[1]):
            if not valid[v, f]:
                continue
            prob = torch.sigmoid(torch.as_tensor(logits[v, f])).numpy()
            g = gt[v, f] > 0
            pred = prob > 0.5
            if g.sum() == 0:
                ious.append((~pred & ~g).sum() / g.size)
                continue
            ious.append((pred & g).sum() / (pred | g).sum())
            curve = []
            for thr in thresholds:
                on = prob >= thr  # a float64 prob meets the float32 value widened, exactly
                tp = np.float32((on & g).sum())
                p = tp / np.float32(on.sum()) if on.sum() else np.float32(0)
                r = tp / np.float32(g.sum())
                curve.append(np.float32(1.3) * p * r / (np.float32(0.3) * p + r) if p + r > 0 else 0.0)
            curves.append(curve)
        mious.append(sum(ious) / len(ious))
        if curves:
            mean_curve = [sum(c[k] for c in curves) / len(curves) for k in range(255)]
            fscores.append(max(mean_curve))
        else:
            fscores.append(0.0)
    return mious, fscores


def ref_avss(pred, gt, num_classes):
    iou_sum = [0.0] * num_classes
    f_sum = [0.0] * num_classes
    count = [0] * num_classes
    for f in range(len(pred)):
        for c in range(num_classes):
            p, g = pred[f] == c, gt[f] == c
            inter, union = (p & g).sum(), (p | g).sum()
            if union > 0:
                count[c] += 1
                iou_sum[c] += inter / union
            if inter > 0:
                prec, rec = inter / p.sum(), inter / g.sum()
                f_sum[c] += 1.3 * prec * rec / (0.3 * prec + rec)
    miou = [s / n if n else 0.0 for s, n in zip(iou_sum, count)]
    fscore = [s / n if n else 0.0 for s, n in zip(f_sum, count)]
    return {"miou": sum(miou) / num_classes, "fscore": sum(fscore) / num_classes}


OFFICIAL_AVQA = {"Audio": ("Counting", "Comparative"), "Visual": ("Counting", "Location"),
                 "Audio-Visual": ("Existential", "Counting", "Location", "Comparative", "Temporal")}


def ref_avqa(pred, gt, types):
    """The official test's tally: one list per official type, groups summed from their types'
    lists, overall over every question."""
    lists = {f"{g}/{k}": [] for g, kinds in OFFICIAL_AVQA.items() for k in kinds}
    for p, g, t in zip(pred, gt, types):
        if t in lists:
            lists[t].append(p == g)
    out = {t: sum(hits) / len(hits) for t, hits in lists.items() if hits}
    for group, kinds in OFFICIAL_AVQA.items():
        hits = [h for k in kinds for h in lists[f"{group}/{k}"]]
        if hits:
            out[group] = sum(hits) / len(hits)
    out["All"] = sum(p == g for p, g in zip(pred, gt)) / len(gt)
    return out


# ----------------------------------------------------------------------------- AVE


def test_ave_counts_background_segments():
    gt = np.array([[28, 28, 3, 3]])
    assert M.ave_accuracy(np.array([[28, 0, 3, 28]]), gt) == 0.5


def test_ave_matches_reference():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 29, (20, 10))
    pred = np.where(rng.random((20, 10)) < 0.6, gt, rng.integers(0, 29, (20, 10)))
    assert M.ave_accuracy(pred, gt) == pytest.approx(ref_ave(pred, gt))


# ----------------------------------------------------------------------------- LLP


def llp_clip(audio_pred=(), audio_gt=(), visual_pred=(), visual_gt=(), c=0):
    """One clip (1, 25, 10) per array, class c on at the given segments."""
    arrays = []
    for segments in (audio_pred, visual_pred, audio_gt, visual_gt):
        x = np.zeros((1, 25, 10), bool)
        x[0, c, list(segments)] = True
        arrays.append(x)
    return arrays


def test_llp_empty_clip_scores_one():
    scores = M.llp_scores(*llp_clip())
    assert all(s == 1.0 for s in scores.values())
    assert len(scores) == 10


@pytest.mark.parametrize("pred, gt", [((0, 1), (0, 1, 2, 3)), ((1, 2, 3), (0, 1, 2))])
def test_llp_event_iou_exactly_half_counts(pred, gt):
    scores = M.llp_scores(*llp_clip(audio_pred=pred, audio_gt=gt))
    assert scores["event_audio"] == 1.0


def test_llp_event_below_half_and_many_to_one():
    # IoU 2/5 < 0.5: one FP and one FN
    assert M.llp_scores(*llp_clip(audio_pred=(0, 1), audio_gt=range(5)))["event_audio"] == 0
    # [0, 5) has IoU 5/10 with the ground truth (TP), [6, 10) 4/10 (FP): F1 = 2 / 3
    pred = (0, 1, 2, 3, 4, 6, 7, 8, 9)
    scores = M.llp_scores(*llp_clip(audio_pred=pred, audio_gt=range(10)))
    assert scores["event_audio"] == pytest.approx(2 / 3)


def test_llp_event_avg_pools_counts_across_modalities():
    # audio: three 1-segment events, all right; visual: one wrong event, one missed
    pa, pv, ga, gv = llp_clip(audio_pred=(0, 2, 4), audio_gt=(0, 2, 4),
                              visual_pred=(6,), visual_gt=(8,))
    s = M.llp_scores(pa, pv, ga, gv)
    for level in ("segment", "event"):
        assert s[f"{level}_audio"] == 1.0 and s[f"{level}_visual"] == 0.0
        assert s[f"{level}_av"] == 1.0  # no audio-visual segment anywhere: empty clip
        assert s[f"{level}_type_avg"] == pytest.approx(2 / 3)
        # pooled: TP 3, FP 1, FN 1 -> 6 / 8; the mean of audio and visual would be 0.5
        assert s[f"{level}_event_avg"] == pytest.approx(0.75)


def test_llp_clip_mean_skips_classes_without_positives():
    pa, pv, ga, gv = llp_clip(audio_pred=(0, 1), audio_gt=(1,))  # class 0: F1 = 2/3
    pa[0, 5, 3] = True  # class 5: FP only, F1 0; the 23 empty classes are left out
    assert M.llp_scores(pa, pv, ga, gv)["segment_audio"] == pytest.approx(1 / 3)


def random_llp(rng, n=40):
    density = rng.choice([0, 0, 0, 0.2, 0.5, 0.9], (n, 25, 1))
    ga = rng.random((n, 25, 10)) < density
    gv = ga & (rng.random((n, 25, 10)) < 0.7)
    pa = ga ^ (rng.random((n, 25, 10)) < 0.15)
    pv = gv ^ (rng.random((n, 25, 10)) < 0.15)
    pa[:3], pv[:3], ga[:3], gv[:3] = False, False, False, False  # some empty clips
    return pa, pv, ga, gv


def test_llp_matches_reference():
    pa, pv, ga, gv = random_llp(np.random.default_rng(1))
    expected = ref_llp(pa.astype(int), pv.astype(int), ga.astype(int), gv.astype(int))
    assert M.llp_scores(pa, pv, ga, gv) == pytest.approx(expected, abs=1e-12)


def test_llp_predict_matches_reference():
    rng = np.random.default_rng(2)
    glob, fa, fv = rng.random((6, 25)), rng.random((6, 10, 25)), rng.random((6, 10, 25))
    glob[0, 0], fa[0, 3, 0] = 0.5, 0.5  # the rule is >= 0.5
    pa, pv = M.llp_predict(glob, fa, fv)
    assert pa.shape == (6, 25, 10) and pa[0, 0, 3]
    for n in range(6):
        for c in range(25):
            for t in range(10):
                assert pa[n, c, t] == (glob[n, c] >= 0.5 and fa[n, t, c] >= 0.5)
                assert pv[n, c, t] == (glob[n, c] >= 0.5 and fv[n, t, c] >= 0.5)


# ----------------------------------------------------------------------------- VGG-SS


def test_ssl_median_threshold_by_hand():
    # values 0..50175 row by row: the sorted element 25088 is pixel (112, 0), so the pixels
    # strictly above it are the last 25087; the box is the bottom half, 25088 pixels
    ramp = np.arange(224 * 224, dtype=np.float32).reshape(1, 224, 224)
    ciou = M.ssl_ciou(ramp, [[[0.0, 0.5, 1.0, 1.0]]])
    assert ciou[0] == 25087 / 25088


def test_ssl_pixels_tied_at_the_max_stay_on():
    # half the map is the max: the median element is 1, nothing is above it, but the
    # pixels equal to 1 are not "below 1" and stay; the left-half box is then exact
    heat = np.zeros((1, 224, 224), np.float32)
    heat[0, :, :112] = 3.0
    assert M.ssl_ciou(heat, [[[0.0, 0.0, 0.5, 1.0]]])[0] == 1.0


def test_ssl_constant_map_and_boxes():
    # a constant map is not normalised: 1 + h >= 1 keeps all pixels when h >= 0, else none
    # (0 and -0.5 stay exactly constant through any OpenCV build's 7 x 7 -> 224 resize)
    boxes = [[[0.0, 0.0, 0.5, 0.5]], [[0.0, 0.0, 0.5, 0.5]]]
    heat = np.stack([np.zeros((7, 7)), np.full((7, 7), -0.5)]).astype(np.float32)
    assert M.ssl_ciou(heat, boxes).tolist() == [0.25, 0.0]
    # garbage coordinates clip to 0, zero-area boxes fill nothing
    box = [[-2.9e16, 0.0, 0.5, 0.5], [0.3, 0.3, 0.3, 0.9]]
    assert M.ssl_ciou(heat[:1], [box])[0] == 0.25


@pytest.mark.skipif(not cv2.ipp.useIPP(), reason="the case is IPP's rounding (pip's x86-64 OpenCV)")
def test_ssl_resizes_with_opencv_as_the_official_test():
    # OpenCV with IPP resizes a constant 4 x 4 map of 0.1 (float32) to an exactly constant
    # map: left un-normalised, 1 + 0.1 >= 1 keeps every pixel, and the top-left quarter box
    # scores 1/4. torch's bilinear gives 0.1 +- 1 ulp (4 distinct values), which min-max
    # normalisation blows up to a pattern of half the pixels.
    heat = np.full((1, 4, 4), 0.1, np.float32)
    assert np.unique(torch_resize(heat[0])).size > 1  # the case is one where the two differ
    assert M.ssl_ciou(heat, [[[0.0, 0.0, 0.5, 0.5]]])[0] == 0.25


def test_ssl_empty_against_empty_is_nan_and_fails_every_threshold():
    # sample 0: a constant negative map (no pixel on) against a zero-area box (no pixel):
    # 0 / 0 = NaN, as the official code; sample 1: a perfect prediction, ciou 1
    heat = np.stack([np.full((224, 224), -0.5), np.zeros((224, 224))]).astype(np.float32)
    heat[1, :, :112] = 3.0
    cious = M.ssl_ciou(heat, [[[0.3, 0.3, 0.3, 0.9]], [[0.0, 0.0, 0.5, 1.0]]])
    assert np.isnan(cious[0]) and cious[1] == 1.0
    # the NaN fails even ciou >= 0: the success rate is 1/2 at every x, so AUC = 1/2 (a 0
    # would pass x = 0: success 1 there and AUC 0.5 + 0.05 / 2 * 1/2 = 0.5125)
    assert M.ssl_summary(cious) == {"ciou": 0.5, "auc": pytest.approx(0.5, abs=1e-15)}
    assert M.ssl_summary(cious) == pytest.approx(ref_ssl_summary(cious.tolist()), abs=1e-15)


def test_ssl_boxes_are_scored_in_float64():
    # 224 * (9/14) is exactly 144 in float64: the box covers 144 of 224 columns; rounded to
    # float32, 9/14 falls just below and int(224 * c) gives 143
    box = np.array([[0.0, 0.0, 9 / 14, 1.0]])
    heat = np.zeros((1, 7, 7), np.float32)  # a constant 0 map keeps every pixel
    assert M.ssl_ciou(heat, [box])[0] == 144 / 224
    with pytest.warns(UserWarning, match="float32"):
        assert M.ssl_ciou(heat, [box.astype(np.float32)])[0] == 143 / 224


def test_ssl_boxes_keep_the_annotation_values(tmp_path):
    # from vggss.json through the adapter's targets to the scorer, no coordinate rounds
    from pipeline.config import DatasetsConfig
    from pipeline.datasets import vggss

    cfg = DatasetsConfig()
    folder = tmp_path / cfg.vggss_annotations
    folder.mkdir(parents=True, exist_ok=True)
    bbox = [[0.0, 0.0, 9 / 14, 1.0], [0.5, 0.5, -2.8823037615171176e16, 0.6]]
    (folder / "vggss.json").write_text(json.dumps([{"file": "a_000001", "class": vggss.CLASSES[0], "bbox": bbox}]))
    targets = vggss.load(tmp_path, cfg).clips[0].targets
    assert targets["boxes"].dtype == np.float64
    assert targets["boxes"].tolist() == [bbox[0], [0.5, 0.5, 0.0, 0.6]]
    boxes = targets["boxes"][: targets["box_count"]]
    assert M.ssl_ciou(np.zeros((1, 7, 7), np.float32), [boxes])[0] == 144 / 224


def test_ssl_float64_maps_are_scored_in_float64():
    # a ramp of steps 1e-12 above 1: float64 keeps it, and the bottom half is found (as in
    # test_ssl_median_threshold_by_hand); in float32 every value is 1.0, a constant map
    # that keeps every pixel: ciou = 1/2
    ramp = 1 + 1e-12 * np.arange(224 * 224, dtype=np.float64).reshape(1, 224, 224)
    box = [[[0.0, 0.5, 1.0, 1.0]]]
    assert M.ssl_ciou(ramp, box)[0] == 25087 / 25088
    assert M.ssl_ciou(ramp.astype(np.float32), box)[0] == 0.5
    assert M.ssl_ciou(torch.from_numpy(ramp), box)[0] == 25087 / 25088


def test_ssl_summary_by_hand():
    s = M.ssl_summary([0.0, 0.5, 1.0, 0.49])
    assert s["ciou"] == 0.5
    # success is 1 at x = 0, 3/4 up to 0.45, 1/2 at 0.5, 1/4 from 0.55 to 1
    expected = 0.05 * ((1 + 0.75) / 2 + 8 * 0.75 + (0.75 + 0.5) / 2 + (0.5 + 0.25) / 2
                       + 9 * 0.25)
    assert s["auc"] == pytest.approx(expected)


def random_heatmaps(rng, n, size, dtype):
    """Small maps of every kind that puts pixels on ties: continuous, quantised, ReLU-like,
    binary, constant (positive, zero, negative), and a NaN pixel in map n - 3 (a NaN map
    keeps no pixel, as in the official code)."""
    kinds = [
        lambda: rng.normal(size=(size, size)),
        lambda: np.round(rng.normal(size=(size, size)) * 2) / 2,
        lambda: np.maximum(rng.normal(size=(size, size)), 0),
        lambda: (rng.random((size, size)) < 0.5).astype(float),
        lambda: np.full((size, size), rng.normal()),
        lambda: np.zeros((size, size)),
        lambda: np.full((size, size), -abs(rng.normal())),
    ]
    maps = np.stack([kinds[i % len(kinds)]() for i in range(n)]).astype(dtype)
    maps[n - 3, 0, 0] = np.nan
    return maps


def random_boxes(rng, n):
    """1 to 3 boxes per sample, every fifth degenerate (no area: with an empty prediction,
    samples 20 and 25 of random_heatmaps, 0 / 0), some with garbage coordinates."""
    out = []
    for i in range(n):
        # sorting (k, corner, xy) along the corner axis gives [xmin, ymin], [xmax, ymax]
        b = np.sort(rng.random((rng.integers(1, 4), 2, 2)), axis=1).reshape(-1, 4)
        if i % 5 == 0:
            b[:, 2] = b[:, 0]  # zero width: no ground-truth pixel at all
        if i % 7 == 1:
            b[0, 0], b[0, 3] = -2.9e16, 1.2
        out.append(b)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ssl_matches_reference(dtype):
    rng = np.random.default_rng([3, np.dtype(dtype).itemsize])
    n = 28
    boxes = random_boxes(rng, n)
    moved = 0
    for size in (4, 7, 14):
        heat = random_heatmaps(rng, n, size, dtype)
        got = M.ssl_ciou(heat, boxes, chunk=5)
        want = [ref_ciou(h, b) for h, b in zip(heat, boxes)]
        np.testing.assert_array_equal(got, want)  # exactly, NaN where 0 / 0
        assert got.dtype == np.float64 and np.isnan(got).sum() >= 2
        assert M.ssl_summary(got) == pytest.approx(ref_ssl_summary(want), abs=1e-15)
        torch_way = [ref_ciou(h, b, resize=torch_resize) for h, b in zip(heat, boxes)]
        moved += sum(not (a == b or np.isnan(a) and np.isnan(b)) for a, b in zip(want, torch_way))
    assert moved > 0  # these inputs tell the official resize from torch's


def test_ssl_follows_the_opencv_build():
    # avu equals the official code on the same OpenCV, with or without IPP (builds without it,
    # e.g. off x86-64, take OpenCV's own code, which rounds plateaus differently)
    rng = np.random.default_rng(8)
    heat, boxes = random_heatmaps(rng, 14, 4, np.float64), random_boxes(rng, 14)
    had_ipp = cv2.ipp.useIPP()
    with_ipp = M.ssl_ciou(heat, boxes)
    cv2.ipp.setUseIPP(False)
    try:
        without = M.ssl_ciou(heat, boxes)
        np.testing.assert_array_equal(without, [ref_ciou(h, b) for h, b in zip(heat, boxes)])
    finally:
        cv2.ipp.setUseIPP(had_ipp)
    np.testing.assert_array_equal(with_ipp, [ref_ciou(h, b) for h, b in zip(heat, boxes)])
    if had_ipp:  # and the build matters on these maps
        assert not np.array_equal(with_ipp, without, equal_nan=True)


def test_ssl_rejects_bad_input():
    with pytest.raises(ValueError, match="heatmaps"):
        M.ssl_ciou(np.zeros((2, 4, 4)), [[[0, 0, 1, 1]]])
    with pytest.raises(ValueError, match="sample 0.*finite"):
        M.ssl_ciou(np.zeros((1, 4, 4)), [[[0, 0, np.nan, 1]]])


# ----------------------------------------------------------------------------- AVS S4/MS3


def test_avs_empty_ground_truth_frames():
    logits = np.full((1, 2, 4, 4), -5.0, np.float32)
    gt = np.zeros((1, 2, 4, 4), bool)
    logits[0, 0, :2, :2] = 5.0  # frame 0: 4 of 16 pixels wrongly on -> 12/16
    assert M.avs_miou(logits, gt)[0] == pytest.approx((12 / 16 + 1.0) / 2)
    # no frame with a sounding object: the video scores 0, however good the prediction
    assert M.avs_fscore(logits, gt)[0] == 0.0


def test_avs_perfect_prediction_and_valid_frames():
    gt = np.zeros((2, 3, 4, 4), bool)
    gt[:, :, 1:3, 1:3] = True
    logits = np.where(gt, 20.0, -20.0).astype(np.float32)  # sigmoid(20) rounds to 1.0
    valid = np.array([[True, True, True], [True, False, False]])
    logits[1, 1:] = 20.0  # wrong, but not annotated: left out
    assert M.avs_miou(logits, gt, valid).tolist() == pytest.approx([1.0, 1.0])
    assert M.avs_fscore(logits, gt, valid).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        M.avs_miou(logits, gt, np.zeros((2, 3), bool))


def test_avs_float64_logits_are_scored_in_float64():
    # mIoU: a logit of 1e-9 is sigmoid 0.5 + 2.5e-10 in float64 (> 0.5: on) but exactly 0.5
    # in float32 (off); the frame's one sounding pixel is then hit (IoU 1) or missed (0)
    gt = np.zeros((1, 1, 2, 2), bool)
    gt[0, 0, 0, 0] = True
    logits = np.full((1, 1, 2, 2), -10.0)
    logits[0, 0, 0, 0] = 1e-9
    assert M.avs_miou(logits, gt)[0] == pytest.approx(1.0, abs=1e-6)
    assert M.avs_miou(torch.from_numpy(logits), gt)[0] == pytest.approx(1.0, abs=1e-6)
    assert M.avs_miou(logits.astype(np.float32), gt)[0] == 0.0


def test_avs_fscore_float64_probabilities_meet_float32_thresholds():
    # Two frames of 2 x 2, each with one sounding pixel (top left); other pixels at logit -10
    # pass threshold 0 only. Threshold 127 is float32 0.5 exactly.
    # frame 0: the sounding pixel at logit -4e-12: prob 0.5 - 1e-12 in float64 (fails
    #   threshold 127), exactly 0.5 in float32 (passes): F = 1 up to 126, or up to 127
    # frame 1: the sounding pixel at prob 0.501 (passes up to 127), a silent one at 0.499 (up
    #   to 126): F = 1.3 * 0.5 / (0.3 * 0.5 + 1) = 0.65 / 1.15 for 1..126, 1 at 127
    # mean curve, float32: 1 at 127; float64: (1 + 0.65 / 1.15) / 2 for 1..126, 1/2 at 127
    odds = np.log(0.501 / 0.499)
    logits = np.full((1, 2, 2, 2), -10.0)
    logits[0, 0, 0, 0], logits[0, 1, 0, 0], logits[0, 1, 0, 1] = -4e-12, odds, -odds
    gt = np.zeros((1, 2, 2, 2), bool)
    gt[0, :, 0, 0] = True
    assert M.avs_fscore(logits, gt)[0] == pytest.approx((1 + 0.65 / 1.15) / 2, abs=1e-6)
    assert M.avs_fscore(logits.astype(np.float32), gt)[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avs_matches_reference(dtype):
    rng = np.random.default_rng(4)
    logits = (rng.normal(size=(4, 5, 12, 12)) * 4).astype(dtype)
    # logits within float32's rounding of 0: probabilities that round to 0.5 in float32
    tiny = rng.random(logits.shape) < 0.3
    logits[tiny] = (rng.choice([-1, 1], tiny.sum()) * 10.0 ** rng.uniform(-13, -8, tiny.sum()))
    logits[0, 0, 0, :3] = [30.0, 0.0, 1e-9]  # probabilities 1.0 and 0.5 exactly (float32)
    gt = rng.random((4, 5, 12, 12)) < 0.3
    gt[1, :2] = False
    gt[2] = False  # a video with no sounding frame
    valid = rng.random((4, 5)) < 0.8
    valid[:, 0] = True
    mious, fscores = ref_avs(logits, gt, valid)
    assert M.avs_miou(logits, gt, valid) == pytest.approx(mious, abs=1e-6)
    assert M.avs_fscore(logits, gt, valid) == pytest.approx(fscores, abs=1e-6)
    if dtype == np.float64:  # these logits tell float64 scoring from float32 (the F-score's
        # best threshold is rarely the one they move: see the hand-worked case above)
        assert M.avs_miou(logits.astype(np.float32), gt, valid) != pytest.approx(mious, abs=1e-3)


# ----------------------------------------------------------------------------- AVSS


def test_avss_unseen_classes_count_zero():
    gt = np.array([[[0, 0], [1, 1]]])
    pred = np.array([[[0, 0], [1, 0]]])
    # class 0: IoU 2/3, F 1.3 * 2/3 / (0.3 * 2/3 + 1); class 1: IoU 1/2, F 1.3 * 1/2 / 0.8
    f0, f1 = 1.3 * (2 / 3) / (0.3 * (2 / 3) + 1), 1.3 * 0.5 / (0.3 + 0.5)
    s = M.avss_scores(pred, gt, num_classes=4)
    assert s["miou"] == pytest.approx((2 / 3 + 1 / 2) / 4)
    assert s["fscore"] == pytest.approx((f0 + f1) / 4)
    assert M.avss_scores(pred, gt)["miou"] == pytest.approx((2 / 3 + 1 / 2) / 71)


def test_avss_sums_over_frames_not_mean_of_frames():
    # class 1 is in frame 0 only, so frame 1 does not count for it; class 0 is wrongly
    # predicted in frame 0 (IoU 0, but its union is not empty) and right in frame 1
    gt = np.array([[[1, 1]], [[0, 0]]])
    pred = np.array([[[1, 0]], [[0, 0]]])
    iou_sum, _, count = M.avss_class_sums(pred, gt, num_classes=2)
    assert iou_sum.tolist() == pytest.approx([0 + 1, 1 / 2])
    assert count.tolist() == [2, 1]


def test_avss_matches_reference_and_batches_add():
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 6, (12, 8, 8))
    gt[:4] = rng.choice([0, 7, 70], (4, 8, 8))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 71, gt.shape))
    assert M.avss_scores(pred, gt) == pytest.approx(ref_avss(pred, gt, 71), abs=1e-12)
    halves = [M.avss_class_sums(pred[s], gt[s]) for s in (slice(0, 5), slice(5, None))]
    summed = [a + b for a, b in zip(*halves)]
    assert M.avss_from_sums(*summed) == pytest.approx(M.avss_scores(pred, gt), abs=1e-12)


# ----------------------------------------------------------------------------- MUSIC-AVQA


def test_avqa_groups_pool_questions():
    types = ["Audio/Counting"] + ["Audio/Comparative"] * 3 + ["Visual/Location"]
    gt = ["two", "yes", "no", "yes", "left"]
    pred = ["two", "yes", "yes", "no", "right"]
    s = M.avqa_accuracy(pred, gt, types)
    assert s["Audio/Counting"] == 1.0 and s["Audio/Comparative"] == pytest.approx(1 / 3)
    assert s["Audio"] == 0.5  # 2 of 4 questions; the mean of the two types is 2/3
    assert s["Visual"] == 0.0 and s["All"] == 0.4
    assert "Audio-Visual" not in s


def test_avqa_other_types_count_in_all_only():
    # "Audio/Location" and "Visual/Temporal" are not official types: no entry, not in their
    # groups, but in "All" (5 questions, 3 right)
    types = ["Audio/Counting", "Audio/Location", "Visual/Temporal", "Visual/Location", "Audio/Location"]
    gt = ["two", "left", "yes", "left", "right"]
    pred = ["two", "right", "yes", "left", "left"]
    s = M.avqa_accuracy(pred, gt, types)
    assert s == {"Audio/Counting": 1.0, "Visual/Location": 1.0, "Audio": 1.0, "Visual": 1.0, "All": 0.6}
    assert s == ref_avqa(pred, gt, types)


def test_avqa_matches_reference():
    rng = np.random.default_rng(6)
    kinds = ["Audio/Counting", "Audio/Comparative", "Visual/Counting", "Visual/Location",
             "Audio-Visual/Existential", "Audio-Visual/Temporal", "Audio/Temporal", "Visual/Existential"]
    types = [kinds[i] for i in rng.integers(0, len(kinds), 200)]
    gt = rng.integers(0, 5, 200).tolist()
    pred = [g if rng.random() < 0.7 else int(rng.integers(0, 5)) for g in gt]
    got = M.avqa_accuracy(pred, gt, types)
    assert got.keys() == ref_avqa(pred, gt, types).keys()
    assert got == pytest.approx(ref_avqa(pred, gt, types), abs=1e-15)
