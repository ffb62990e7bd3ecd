"""Tests of trainer.metrics: hand-worked cases for the easy-to-get-wrong rules, and each
vectorised metric against a slow loop-based reference written from docs/benchmarks.md."""
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


def ref_ciou(heat, boxes):
    """One sample, straight from the doc's words (normalising h itself, not 1 - norm(-h))."""
    h = torch.as_tensor(heat, dtype=torch.float32)[None, None]
    h = F.interpolate(h, size=(224, 224), mode="bilinear", align_corners=False)[0, 0].numpy()
    if h.max() != h.min():
        h = (h - h.min()) / (h.max() - h.min())
    thr = np.sort(h.ravel())[224 * 224 // 2]
    pred = (h > thr) | (h >= 1)  # above the median -> 1, then everything below 1 -> 0
    gt = np.zeros((224, 224), bool)
    for box in boxes:
        x0, y0, x1, y1 = (int(224 * max(c, 0)) for c in box)
        gt[y0:y1, x0:x1] = True
    denom = gt.sum() + (pred & ~gt).sum()
    return (pred & gt).sum() / denom if denom else 0.0


def ref_avs(logits, gt, valid):
    """Per-video (mIoU, F-score) lists, one frame and one threshold at a time."""
    thresholds = [float(t) for t in torch.linspace(0, 1 - 1e-10, 255)]
    mious, fscores = [], []
    for v in range(len(logits)):
        ious, curves = [], []
        for f in range(logits.shape[1]):
            if not valid[v, f]:
                continue
            prob = torch.sigmoid(torch.as_tensor(logits[v, f], dtype=torch.float32)).numpy()
            g = gt[v, f] > 0
            pred = prob > 0.5
            if g.sum() == 0:
                ious.append((~pred & ~g).sum() / g.size)
                continue
            ious.append((pred & g).sum() / (pred | g).sum())
            curve = []
            for thr in thresholds:
                on = prob >= np.float32(thr)
                tp = (on & g).sum()
                p = tp / on.sum() if on.sum() else 0.0
                r = tp / g.sum()
                curve.append(1.3 * p * r / (0.3 * p + r) if p + r > 0 else 0.0)
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


def ref_avqa(pred, gt, types):
    out = {}
    for key_of in (lambda t: t, lambda t: t.split("/")[0]):
        right, total = {}, {}
        for p, g, t in zip(pred, gt, types):
            k = key_of(t)
            total[k] = total.get(k, 0) + 1
            right[k] = right.get(k, 0) + (p == g)
        out |= {k: right[k] / total[k] for k in total}
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
    boxes = [[[0.0, 0.0, 0.5, 0.5]], [[0.0, 0.0, 0.5, 0.5]]]
    heat = np.stack([np.zeros((7, 7)), np.full((7, 7), -0.2)]).astype(np.float32)
    assert M.ssl_ciou(heat, boxes).tolist() == [0.25, 0.0]
    # garbage coordinates clip to 0, zero-area boxes fill nothing
    box = [[-2.9e16, 0.0, 0.5, 0.5], [0.3, 0.3, 0.3, 0.9]]
    assert M.ssl_ciou(heat[:1], [box])[0] == 0.25


def test_ssl_summary_by_hand():
    s = M.ssl_summary([0.0, 0.5, 1.0, 0.49])
    assert s["ciou"] == 0.5
    # success is 1 at x = 0, 3/4 up to 0.45, 1/2 at 0.5, 1/4 from 0.55 to 1
    expected = 0.05 * ((1 + 0.75) / 2 + 8 * 0.75 + (0.75 + 0.5) / 2 + (0.5 + 0.25) / 2
                       + 9 * 0.25)
    assert s["auc"] == pytest.approx(expected)


def test_ssl_matches_reference():
    rng = np.random.default_rng(3)
    # sorting (k, corner, xy) along the corner axis gives [xmin, ymin], [xmax, ymax]
    boxes = [np.sort(rng.random((rng.integers(1, 4), 2, 2)), axis=1).reshape(-1, 4)
             for _ in range(4)]
    boxes[0][0, 0] = -2.9e16
    boxes[1][0, 2] = 1.2
    for size in (7, 14):
        heat = rng.normal(size=(4, size, size)).astype(np.float32)
        got = M.ssl_ciou(heat, boxes, chunk=3)
        assert got == pytest.approx([ref_ciou(h, b) for h, b in zip(heat, boxes)], abs=1e-12)


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


def test_avs_matches_reference():
    rng = np.random.default_rng(4)
    logits = (rng.normal(size=(4, 5, 12, 12)) * 4).astype(np.float32)
    logits[0, 0, 0, :3] = [30.0, 0.0, 1e-9]  # probabilities 1.0 and 0.5 exactly
    gt = rng.random((4, 5, 12, 12)) < 0.3
    gt[1, :2] = False
    gt[2] = False  # a video with no sounding frame
    valid = rng.random((4, 5)) < 0.8
    valid[:, 0] = True
    mious, fscores = ref_avs(logits, gt, valid)
    assert M.avs_miou(logits, gt, valid) == pytest.approx(mious, abs=1e-6)
    assert M.avs_fscore(logits, gt, valid) == pytest.approx(fscores, abs=1e-6)


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


def test_avqa_matches_reference():
    rng = np.random.default_rng(6)
    kinds = ["Audio/Counting", "Audio/Comparative", "Visual/Counting", "Visual/Location",
             "Audio-Visual/Existential", "Audio-Visual/Temporal"]
    types = [kinds[i] for i in rng.integers(0, len(kinds), 200)]
    gt = rng.integers(0, 5, 200).tolist()
    pred = [g if rng.random() < 0.7 else int(rng.integers(0, 5)) for g in gt]
    assert M.avqa_accuracy(pred, gt, types) == pytest.approx(ref_avqa(pred, gt, types))
