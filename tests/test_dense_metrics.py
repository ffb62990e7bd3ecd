"""Tests of trainer.dense_metrics: hand-worked cases of the official rules (computed on paper in
the comments; the rules are in ../shared/docs/dense.md, outside the repository), the vectorised
mAP against the loop reference, and the self-check on ActivityNet's sample submission."""
import json
import warnings

import numpy as np
import pytest

from tests.conftest import ANNOTATIONS, need
from trainer import dense_metrics as D

UNAV_T = D.THRESHOLDS["unav"]  # 0.1 ... 0.9, 9 values
ANET_T = D.THRESHOLDS["anet"]  # 0.5 ... 0.95, 10 values
SAMPLE = ANNOTATIONS / "activitynet" / "sample_detection_prediction.json"
BOTH = (D.detection_map, D.detection_map_reference)


def dets(rows, scores=None):
    """rows: (video, label, start, end)."""
    video, label, start, end = zip(*rows)
    return D.Detections(np.array(video, dtype=object), np.array(label), np.c_[start, end], scores)


def check(result, ap_by_class, thresholds):
    """ap_by_class: (K, n_t) expected AP; mAP and Avg follow from it."""
    ap = np.asarray(ap_by_class, dtype=np.float64)
    np.testing.assert_allclose(result.ap, ap, atol=1e-12)
    np.testing.assert_allclose(result.mAP, ap.mean(0), atol=1e-12)
    assert result.average == pytest.approx(ap.mean(0).mean(), abs=1e-12)
    np.testing.assert_array_equal(result.thresholds, thresholds)


def test_thresholds_are_the_official_floats():
    assert UNAV_T[2] == 0.30000000000000004 and UNAV_T[6] == 0.7000000000000001
    assert ANET_T[0] == 0.5 and ANET_T[8] == 0.8999999999999999 and len(ANET_T) == 10


# ----------------------------------------------------------------------------- hand-worked
@pytest.mark.parametrize("score_map", BOTH)
def test_tiou_exactly_at_a_threshold_fails_and_just_above_passes(score_map):
    gt = dets([("v", 0, 0.0, 10.0)])
    # [0, 3] on [0, 10]: tIoU = 3 / 10 = 0.3 (the double just below 0.3) < 0.30000000000000004:
    # a TP at t = 0.1, 0.2 only, so AP = [1, 1, 0, ..., 0] and Avg = 2 / 9
    exact = score_map(gt, dets([("v", 0, 0.0, 3.0)], [0.9]), UNAV_T, "unav")
    check(exact, [[1, 1, 0, 0, 0, 0, 0, 0, 0]], UNAV_T)
    assert exact.average == pytest.approx(2 / 9)
    # [0, 3.000001]: tIoU 0.3000001 > t = 0.3 -> a TP at 0.1, 0.2, 0.3: Avg = 3 / 9
    above = score_map(gt, dets([("v", 0, 0.0, 3.000001)], [0.9]), UNAV_T, "unav")
    check(above, [[1, 1, 1, 0, 0, 0, 0, 0, 0]], UNAV_T)
    # 7 / 10 = 0.7 fails t = 0.7000000000000001, but ActivityNet's 0.5 is exact: [0, 5] passes it
    check(score_map(gt, dets([("v", 0, 0.0, 7.0)], [0.9]), UNAV_T, "unav"),
          [[1, 1, 1, 1, 1, 1, 0, 0, 0]], UNAV_T)
    gt_named = dets([("v", "a", 0.0, 10.0)])
    check(score_map(gt_named, dets([("v", "a", 0.0, 5.0)], [0.9]), ANET_T, "anet"),
          [[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]], ANET_T)


@pytest.mark.parametrize("score_map", BOTH)
def test_duplicate_gt_unav_drops_it_activitynet_keeps_it(score_map):
    # GT of one class in video v: G1 [0, 10], G2 [0.0005, 10.0005] (both ends within 1e-3 s of
    # G1: a duplicate), G3 [20, 30]. Predictions: p1 [0, 10] 0.9, p2 [0, 10] 0.8, p3 [20, 30] 0.7.
    rows = [(0.0, 10.0), (0.0005, 10.0005), (20.0, 30.0)]
    pred_rows = [(0.0, 10.0), (0.0, 10.0), (20.0, 30.0)]
    scores = [0.9, 0.8, 0.7]
    # unav: G2 dropped, npos 2. p1 takes G1 (tIoU 1); p2's only GT above 0 is G1, taken: FP;
    # p3 takes G3. TP FP TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; envelope 1, 2/3, 2/3
    # -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 at every threshold.
    unav = score_map(dets([("v", 3, *r) for r in rows]), dets([("v", 3, *r) for r in pred_rows], scores),
                     UNAV_T, "unav")
    check(unav, [[5 / 6] * 9], UNAV_T)
    assert unav.npos.tolist() == [2] and unav.classes.tolist() == [3]
    # activitynet: npos 3. p2 takes G2 (tIoU 9.9995 / 10.0005 = 0.9998 >= 0.95): TP TP TP, AP 1
    anet = score_map(dets([("v", "x", *r) for r in rows]),
                     dets([("v", "x", *r) for r in pred_rows], scores), ANET_T, "anet")
    check(anet, [[1.0] * 10], ANET_T)
    assert anet.npos.tolist() == [3]


@pytest.mark.parametrize("score_map", BOTH)
def test_duplicates_compare_with_kept_instances_only(score_map):
    # A [0, 10], B [0.0008, 10] (dup of A: dropped), C [0.0016, 10] (within 1e-3 of B but not of
    # A, and B was dropped: kept), D [0, 10] of another label (kept). npos: label 0 -> 2, 1 -> 1
    gt = dets([("v", 0, 0.0, 10.0), ("v", 0, 0.0008, 10.0), ("v", 0, 0.0016, 10.0), ("v", 1, 0.0, 10.0)])
    preds = dets([("v", 0, 0.0, 10.0), ("v", 1, 0.0, 10.0)], [0.9, 0.8])
    result = score_map(gt, preds, UNAV_T, "unav")
    assert result.npos.tolist() == [2, 1]
    # label 0: one TP of two GT -> AP 1/2; label 1: AP 1
    check(result, [[0.5] * 9, [1.0] * 9], UNAV_T)


@pytest.mark.parametrize("score_map", BOTH)
def test_zero_length_segments(score_map):
    gt = dets([("v", 0, 5.0, 5.0)])
    # an identical zero-length prediction: tIoU 0 / 0 = NaN, `NaN < t` is False -> a TP, AP 1
    check(score_map(gt, dets([("v", 0, 5.0, 5.0)], [0.9]), UNAV_T, "unav"), [[1.0] * 9], UNAV_T)
    # p1 [4, 6] 0.95 contains the point but tIoU = 0 / 2 = 0: FP; then p2 [5, 5] 0.9: TP.
    # FP TP: precision 0, 1/2 at recall 0, 1 -> AP = 1 * 1/2
    two = dets([("v", 0, 4.0, 6.0), ("v", 0, 5.0, 5.0)], [0.95, 0.9])
    check(score_map(gt, two, UNAV_T, "unav"), [[0.5] * 9], UNAV_T)
    # the official formula gives 0 / 0 for ANY zero-length pair in the same video and class,
    # so [7, 7] matches the GT at 5 s too (mirrored, documented in the module)
    check(score_map(gt, dets([("v", 0, 7.0, 7.0)], [0.9]), UNAV_T, "unav"), [[1.0] * 9], UNAV_T)


@pytest.mark.parametrize("score_map", BOTH)
def test_predictions_for_videos_without_gt_are_false_positives(score_map):
    gt = dets([("a", 0, 0.0, 10.0)])
    # b has no GT: its 0.9 prediction is a FP ranked first, then a's TP -> AP = 1 * 1/2
    preds = dets([("b", 0, 0.0, 10.0), ("a", 0, 0.0, 10.0)], [0.9, 0.8])
    check(score_map(gt, preds, UNAV_T, "unav"), [[0.5] * 9], UNAV_T)
    # ranked last it costs nothing: TP then FP, recall reaches 1 at precision 1 -> AP 1
    preds_low = dets([("b", 0, 0.0, 10.0), ("a", 0, 0.0, 10.0)], [0.7, 0.8])
    check(score_map(gt, preds_low, UNAV_T, "unav"), [[1.0] * 9], UNAV_T)


@pytest.mark.parametrize("score_map", BOTH)
def test_class_without_predictions_scores_zero_and_is_averaged(score_map):
    gt = dets([("v", 0, 0.0, 10.0), ("v", 1, 20.0, 30.0)])
    result = score_map(gt, dets([("v", 0, 0.0, 10.0)], [0.9]), UNAV_T, "unav")
    check(result, [[1.0] * 9, [0.0] * 9], UNAV_T)  # mAP 1/2 at every threshold
    assert result.average == pytest.approx(0.5)
    table = result.by_threshold()
    assert table["0.30"] == pytest.approx(0.5) and table["avg"] == result.average


@pytest.mark.parametrize("score_map", BOTH)
def test_greedy_matching_never_reassigns(score_map):
    # G1 [0, 10], G2 [8, 18]. p1 [2, 12] 0.9: tIoU 8/12 = 0.667 with G1, 4/14 = 0.286 with G2;
    # p2 [0, 10] 0.8: tIoU 1 with G1, 2/18 = 0.111 with G2.
    # t = 0.1: p1 takes G1, p2 takes G2 (0.111): AP 1.
    # t = 0.2 .. 0.6: p1 takes G1, p2 is left with G2 (0.111 < t): TP FP, AP 1/2.
    # t = 0.7 .. 0.9: p1 fails G1 (0.667 < t): FP; p2 takes G1: FP TP, AP = 1/2 * 1/2 = 1/4.
    gt = dets([("v", 0, 0.0, 10.0), ("v", 0, 8.0, 18.0)])
    preds = dets([("v", 0, 2.0, 12.0), ("v", 0, 0.0, 10.0)], [0.9, 0.8])
    result = score_map(gt, preds, UNAV_T, "unav")
    check(result, [[1, .5, .5, .5, .5, .5, .25, .25, .25]], UNAV_T)
    assert result.average == pytest.approx(4.25 / 9)


def test_unav_ignores_ids_without_gt_and_warns():
    gt = dets([("v", 0, 0.0, 10.0), ("v", 5, 20.0, 30.0)])
    preds = dets([("v", 0, 0.0, 10.0), ("v", 5, 20.0, 30.0), ("v", 1, 20.0, 30.0), ("v", 9, 0.0, 10.0)],
                 [0.5, 0.4, 0.9, 0.8])
    for score_map in BOTH:
        with pytest.warns(UserWarning, match=r"\[1, 9\].*pool ids \[1\]"):
            result = score_map(gt, preds, UNAV_T, "unav")
        check(result, [[1.0] * 9, [1.0] * 9], UNAV_T)  # ids 1 and 9 change nothing
        assert result.classes.tolist() == [0, 5]


def test_activitynet_unknown_name_is_a_clear_error():
    gt = dets([("v", "Skiing", 0.0, 10.0)])
    preds = dets([("v", "Skiing", 0.0, 10.0), ("v", "Surfing", 0.0, 10.0)], [0.9, 0.8])
    for score_map in BOTH:
        with pytest.raises(ValueError, match="'Surfing'"):
            score_map(gt, preds, ANET_T, "anet")


def test_bad_calls_fail_clearly():
    gt = dets([("v", 0, 0.0, 10.0)])
    with pytest.raises(ValueError, match="unknown mAP rule"):
        D.detection_map(gt, gt, UNAV_T, "voc")
    with pytest.raises(ValueError, match="finite score"):
        D.detection_map(gt, gt, UNAV_T, "unav")  # GT carries no scores
    with pytest.raises(ValueError, match="integer class ids"):
        D.detection_map(dets([("v", "a", 0.0, 1.0)]), dets([("v", "a", 0.0, 1.0)], [1.0]), UNAV_T, "unav")
    with pytest.raises(ValueError, match="start <= end.*row 1"):
        dets([("v", 0, 0.0, 1.0), ("v", 0, 3.0, 2.0)])


# ----------------------------------------------------------------------------- fast == reference
def random_case(rng, n_videos, n_classes, gt_per_video, preds_per_video, named=False):
    """Segments on a coarse grid, so tIoU ties, exact-threshold values, zero lengths and
    duplicates all happen; scores on a grid too, so score ties happen (both versions break them
    the same documented way)."""
    def segments(n):
        s = rng.integers(0, 20, n) * 0.5
        return np.c_[s, s + rng.integers(0, 12, n) * 0.5]

    labels = np.array([f"c{i}" for i in range(n_classes)], dtype=object) if named else np.arange(n_classes)
    n_gt = rng.integers(1, gt_per_video + 1, n_videos)
    gt_video = np.repeat(np.arange(n_videos), n_gt).astype(str).astype(object)
    gt_seg = segments(len(gt_video))
    dup = rng.random(len(gt_video)) < 0.1  # near-copies of the previous row
    dup[0] = False
    jitter = rng.uniform(-1e-3, 1e-3, (dup.sum(), 2)) * (rng.random((dup.sum(), 1)) < 0.7)
    gt_seg[dup] = gt_seg[np.flatnonzero(dup) - 1] + jitter
    gt_seg[:, 1] = np.maximum(gt_seg[:, 1], gt_seg[:, 0])
    gt_label = labels[rng.integers(0, n_classes, len(gt_video))]
    gt_label[dup] = gt_label[np.flatnonzero(dup) - 1]
    n_pred = n_videos * preds_per_video
    pred_video = rng.integers(0, n_videos + 2, n_pred).astype(str).astype(object)  # 2 videos lack GT
    present = np.unique(gt_label)  # named: every predicted name must have GT
    pred_label = (present[rng.integers(0, len(present), n_pred)] if named
                  else labels[rng.integers(0, n_classes, n_pred)])
    pred_score = rng.integers(0, 50, n_pred) / 50 if rng.random() < 0.5 else rng.random(n_pred)
    return (D.Detections(gt_video, gt_label, gt_seg),
            D.Detections(pred_video, pred_label, segments(n_pred), pred_score))


@pytest.mark.parametrize("seed", range(40))
def test_fast_matches_reference_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    named = seed % 3 == 0
    sizes = [(1, 1, 2, 3), (3, 2, 4, 6), (8, 4, 5, 10), (20, 6, 6, 15)][seed % 4]
    gt, preds = random_case(rng, *sizes, named=named)
    rule, thresholds = ("anet", ANET_T) if named else ("unav", UNAV_T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes drawn without GT: tested above
        fast = D.detection_map(gt, preds, thresholds, rule)
        ref = D.detection_map_reference(gt, preds, thresholds, rule)
    np.testing.assert_array_equal(fast.classes, ref.classes)
    np.testing.assert_array_equal(fast.npos, ref.npos)
    np.testing.assert_allclose(fast.ap, ref.ap, atol=1e-12)
    np.testing.assert_allclose(fast.mAP, ref.mAP, atol=1e-12)
    assert fast.average == pytest.approx(ref.average, abs=1e-12)


def test_random_cases_exercise_the_rules():
    """The random cases above are only worth their name if they hit duplicates, ties and a
    spread of APs; check that on a few of them."""
    aps, dropped = [], 0
    for seed in range(8):
        gt, preds = random_case(np.random.default_rng(seed), 20, 6, 6, 15)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = D.detection_map(gt, preds, UNAV_T, "unav")
        dropped += len(gt) - r.npos.sum()
        aps.append(r.ap.ravel())
    aps = np.concatenate(aps)
    assert dropped > 0 and (aps == 0).any() and ((aps > 0) & (aps < 1)).mean() > 0.3


# ----------------------------------------------------------------------------- files, self-check
def test_self_check_on_activitynet_sample_submission():
    dets_ = D.read_activitynet_results(need(SAMPLE))
    assert len(dets_) == 7654 and len(set(dets_.video.tolist())) == 4926
    anet = D.detection_map(dets_, dets_, ANET_T, "anet")
    assert len(anet.classes) == 200 and anet.npos.sum() == 7654
    # every prediction is its own GT: AP 1 per class up to the last bit of the recall steps'
    # float sum (1 - 1.1e-16 for some classes), and mAP 1.0 at every threshold
    np.testing.assert_allclose(anet.ap, 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(anet.mAP, 1.0, rtol=0, atol=1e-15)

    # Under UnAV/UniAV's de-duplication the 21 duplicate GT instances go (npos 7633), and their
    # 21 copies in the predictions become false positives. All scores are 1.0, so where each FP
    # lands is the tie order: ours keeps the file order, which puts each FP right after its twin
    # (0.99900); numpy's reversed argsort, as the official code sorts, puts it before its twin,
    # which the file order reversed reproduces (0.99919, dense.md's "about 0.9992").
    ids = {c: i for i, c in enumerate(anet.classes.tolist())}
    as_ids = D.Detections(dets_.video, np.array([ids[x] for x in dets_.label.tolist()]),
                          dets_.segment, dets_.score)
    unav = D.detection_map(as_ids, as_ids, ANET_T, "unav")
    assert unav.npos.sum() == 7654 - 21
    assert 0.99899 < unav.average < 0.99901 and np.ptp(unav.mAP) == 0  # boundaries are all exact
    reversed_order = D.Detections(*(a[::-1] for a in
                                    (as_ids.video, as_ids.label, as_ids.segment, as_ids.score)))
    official_order = D.detection_map(as_ids, reversed_order, ANET_T, "unav").average
    assert 0.99918 < official_order < 0.99920
    ref = D.detection_map_reference(as_ids, as_ids, ANET_T, "unav")
    np.testing.assert_allclose(ref.ap, unav.ap, atol=1e-12)


def test_results_json_round_trip(tmp_path):
    preds = dets([("a", 2, 0.5, 3.25), ("b", 0, 1.0, 1.0), ("a", 1, 4.0, 9.0)], [0.9, 0.25, 0.5])
    path = tmp_path / "results.json"
    D.write_results_json(path, preds, classes=["Cat", "Dog", "Bird"])
    data = json.loads(path.read_text())
    assert set(data) == {"version", "results", "external_data"}  # what the official reader needs
    assert data["results"]["a"][0] == {"label": "Bird", "score": 0.9, "segment": [0.5, 3.25]}
    back = D.read_activitynet_results(path)
    assert back.label.tolist() == ["Bird", "Dog", "Cat"] and back.video.tolist() == ["a", "a", "b"]
    np.testing.assert_array_equal(back.segment, [[0.5, 3.25], [4.0, 9.0], [1.0, 1.0]])
    D.write_results_json(path, preds)  # integer labels stay integers
    assert D.read_activitynet_results(path).label.dtype == np.int64


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON"),
    ('{"database": {}}', 'no "results" object'),
    ('{"results": {"v": {"label": "a"}}}', r"results\['v'\] must be a list"),
    ('{"results": {"v": [{"label": "a", "segment": [0, 1]}]}}', r"results\['v'\]\[0\] needs"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [2, 1]}]}}', "start <= end"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [0]}]}}', "segment must be"),
    ('{"results": {"v": [{"label": "a", "score": "high", "segment": [0, 1]}]}}', "score must be"),
    ('{"results": {"v": [{"label": null, "score": 1, "segment": [0, 1]}]}}', "label must be"),
    ('{"results": {"v": [{"label": "a", "score": 1, "segment": [0, 1]}, '
     '{"label": 3, "score": 1, "segment": [0, 1]}]}}', "mix names and integer"),
])
def test_malformed_results_files_name_the_file_and_the_fault(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        D.read_activitynet_results(path)
    assert str(path) in str(err.value)
