"""Tests of trainer.dense_post: UniAV's per-class Gaussian Soft-NMS on hand-worked cases (the
decayed scores worked out in the comments) and the vectorised version against the loop."""
import math

import numpy as np
import pytest

from trainer.dense_post import soft_nms, soft_nms_reference

BOTH = (soft_nms, soft_nms_reference)
EPS = 1e-6  # every length is end - start + 1e-6


def run(nms, rows, sigma, **kw):
    """rows: (start, end, score, label)."""
    s, e, sc, lab = zip(*rows)
    return nms(np.c_[s, e], np.array(sc), np.array(lab), sigma, **kw)


@pytest.mark.parametrize("nms", BOTH)
def test_two_overlapping_segments(nms):
    # A [0, 10] 0.9 is picked first. B [5, 15] 0.8: intersection 5, union 10 + 10 + 2e-6 - 5,
    # IoU = 5 / 15.000002 = 0.33333329; B *= exp(-IoU^2 / 0.5) = exp(-0.22222217) = 0.80073750
    # -> 0.8 * 0.80073750 = 0.64059. A keeps 0.9.
    segs, scores, labels = run(nms, [(0, 10, 0.9, 3), (5, 15, 0.8, 3)], sigma=0.5)
    np.testing.assert_array_equal(segs, [[0, 10], [5, 15]])
    iou = 5 / (15 + 2 * EPS)
    np.testing.assert_allclose(scores, [0.9, 0.8 * math.exp(-iou * iou / 0.5)], rtol=1e-12)
    assert scores[1] == pytest.approx(0.640590, abs=1e-6)
    assert labels.tolist() == [3, 3]


@pytest.mark.parametrize("nms", BOTH)
def test_three_segments_decay_reorders_them(nms):
    # A [0, 10] 0.9, B [4, 14] 0.8, C [8, 18] 0.7, sigma 0.5.
    # pick A. IoU(A, B) = 6 / 14.000002 = 0.42857137 -> B = 0.8 * exp(-0.36734676) = 0.55406;
    #         IoU(A, C) = 2 / 18.000002 = 0.11111110 -> C = 0.7 * exp(-0.02469135) = 0.68293.
    # pick C (0.68293 > 0.55406): IoU(C, B) = 6 / 14.000002 again -> B = 0.55406 * 0.69258 = 0.38372.
    # pick B. Out: A 0.9, C 0.68293, B 0.38372, so C now ranks above B.
    segs, scores, _ = run(nms, [(0, 10, 0.9, 0), (4, 14, 0.8, 0), (8, 18, 0.7, 0)], sigma=0.5)
    np.testing.assert_array_equal(segs, [[0, 10], [8, 18], [4, 14]])
    ab, ac = 6 / (14 + 2 * EPS), 2 / (18 + 2 * EPS)
    b = 0.8 * math.exp(-ab * ab / 0.5)
    np.testing.assert_allclose(scores, [0.9, 0.7 * math.exp(-ac * ac / 0.5), b * math.exp(-ab * ab / 0.5)],
                               rtol=1e-12)
    np.testing.assert_allclose(scores, [0.9, 0.682928, 0.383722], atol=1e-6)


@pytest.mark.parametrize("nms", BOTH)
def test_sigma_is_used_as_given(nms):
    # identical A [0, 10] 0.9 and B [0, 10] 0.85: IoU = 10 / 10.000002 = 0.9999998;
    # sigma 0.4: B = 0.85 * exp(-0.9999996 / 0.4) = 0.85 * 0.082085 = 0.069772 (not / (2 * 0.4^2))
    _, scores, _ = run(nms, [(0, 10, 0.9, 1), (0, 10, 0.85, 1)], sigma=0.4)
    assert scores[1] == pytest.approx(0.069772, abs=1e-6)


@pytest.mark.parametrize("nms", BOTH)
def test_classes_are_independent(nms):
    # the same two identical segments under different labels never decay each other
    segs, scores, labels = run(nms, [(0, 10, 0.85, 2), (0, 10, 0.9, 1)], sigma=0.4)
    np.testing.assert_array_equal(scores, [0.9, 0.85])
    assert labels.tolist() == [1, 2]


@pytest.mark.parametrize("nms", BOTH)
def test_min_score_drops_decayed_and_low_segments(nms):
    rows = [(0, 10, 0.9, 0), (0, 10, 0.85, 0), (20, 30, 0.3, 0)]
    # B decays to 0.069772 (above): kept at min_score 0.001, dropped at 0.1; C (no overlap) stays
    _, scores, _ = run(nms, rows, sigma=0.4)
    np.testing.assert_allclose(scores, [0.9, 0.3, 0.069772], atol=1e-6)
    segs, scores, _ = run(nms, rows, sigma=0.4, min_score=0.1)
    np.testing.assert_array_equal(segs, [[0, 10], [20, 30]])
    # a second segment below min_score goes at the first pick even without overlap, but a
    # class's first pick is never checked (as UniAV's kernel): a lone 0.0005 survives
    _, scores, _ = run(nms, [(0, 1, 0.5, 0), (5, 6, 0.0005, 0), (0, 1, 0.0005, 4)], sigma=0.4)
    np.testing.assert_array_equal(scores, [0.5, 0.0005])


@pytest.mark.parametrize("nms", BOTH)
def test_max_per_class_and_top_k(nms):
    # class 0: 0.9, 0.8, 0.7 far apart (no decay); class 1: 0.85, 0.75
    rows = [(0, 1, 0.9, 0), (10, 11, 0.8, 0), (20, 21, 0.7, 0), (0, 1, 0.85, 1), (10, 11, 0.75, 1)]
    _, scores, labels = run(nms, rows, sigma=0.4, max_per_class=2)
    assert scores.tolist() == [0.9, 0.85, 0.8, 0.75] and labels.tolist() == [0, 1, 0, 1]
    _, scores, labels = run(nms, rows, sigma=0.4, top_k=3)
    assert scores.tolist() == [0.9, 0.85, 0.8] and labels.tolist() == [0, 1, 0]


def test_empty_and_bad_inputs():
    segs, scores, labels = soft_nms(np.zeros((0, 2)), np.zeros(0), np.zeros(0, int), 0.4)
    assert segs.shape == (0, 2) and scores.shape == labels.shape == (0,)
    with pytest.raises(ValueError, match="segments \\(N, 2\\)"):
        soft_nms(np.zeros((3, 3)), np.zeros(3), np.zeros(3, int), 0.4)
    with pytest.raises(ValueError, match="integer class ids"):
        soft_nms(np.zeros((1, 2)), np.zeros(1), np.zeros(1), 0.4)
    with pytest.raises(ValueError, match="sigma > 0"):
        soft_nms(np.zeros((1, 2)), np.zeros(1), np.zeros(1, int), 0.0)


@pytest.mark.parametrize("seed", range(30))
def test_fast_matches_reference_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n, n_cls = [(1, 1), (5, 2), (40, 3), (200, 8), (400, 20)][seed % 5]
    start = rng.uniform(0, 100, n)
    segs = np.c_[start, start + rng.exponential(8, n) * (rng.random(n) > 0.05)]  # a few zero lengths
    scores = rng.random(n) ** 3
    labels = rng.integers(0, n_cls, n) * 7  # ids need not be contiguous
    kw = dict(sigma=float(rng.choice([0.4, 0.75, 0.1])), min_score=float(rng.choice([0.001, 0.05, 0.2])),
              max_per_class=int(rng.choice([3, 100])), top_k=int(rng.choice([5, 100])))
    fast, ref = soft_nms(segs, scores, labels, **kw), soft_nms_reference(segs, scores, labels, **kw)
    np.testing.assert_array_equal(fast[0], ref[0])
    np.testing.assert_allclose(fast[1], ref[1], rtol=1e-12)
    np.testing.assert_array_equal(fast[2], ref[2])
    assert len(fast[1]) <= kw["top_k"] and np.all(np.diff(fast[1]) <= 0)


def test_random_inputs_do_decay_and_drop():
    """The random cases must exercise the decay, the drop and the caps, not pass by luck."""
    rng = np.random.default_rng(0)
    start = rng.uniform(0, 100, 400)
    segs = np.c_[start, start + rng.exponential(8, 400)]
    scores, labels = rng.random(400) ** 3, rng.integers(0, 20, 400)
    kept_segs, kept, _ = soft_nms(segs, scores, labels, 0.4, min_score=0.05, top_k=400)
    assert 0 < len(kept) < (scores >= 0.05).sum()  # some dropped by decay, not only by min_score
    original = {tuple(s): sc for s, sc in zip(segs.tolist(), scores.tolist())}
    assert sum(sc < original[tuple(s)] for s, sc in zip(kept_segs.tolist(), kept.tolist())) > 10
