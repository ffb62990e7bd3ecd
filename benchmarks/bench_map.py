"""What the dense metric and post-processing cost: the vectorised mAP and Soft-NMS against their
loop references, in one run.

    python benchmarks/bench_map.py                 # a split the size of UnAV-100 test
    python benchmarks/bench_map.py --videos 500 --nms-candidates 5000

The split: --videos videos of 10-60 s, on average 2.72 GT events each (Poisson 2.65, at least
one; UnAV-100 test has 5,900 in 2,167 videos) over --classes classes, and --preds predictions per
video: half are jittered copies of a GT event of the video (its class, higher scores), half
random segments of random classes. Scored with rule "unav" at the 9 UnAV-100 thresholds, with
detection_map (median of --repeats) and once with detection_map_reference (they must agree).
Soft-NMS: one video's --nms-candidates candidates over the same classes, then over 5 classes as a
trained model's concentrate (UniAV's input: every point's class scores above 0.001, up to 2,000
per pyramid level), sigma 0.4, top 100, median of --repeats runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.dense_metrics import THRESHOLDS, Detections, detection_map, detection_map_reference  # noqa: E402
from trainer.dense_post import soft_nms, soft_nms_reference  # noqa: E402


def fake_split(rng: np.random.Generator, videos: int, classes: int, preds: int
               ) -> tuple[Detections, Detections]:
    duration = rng.uniform(10, 60, videos)
    n_gt = np.maximum(rng.poisson(2.65, videos), 1)
    g_vid = np.repeat(np.arange(videos), n_gt)
    g_len = rng.uniform(0.05, 0.6, len(g_vid)) * duration[g_vid]
    g_start = rng.uniform(0, 1, len(g_vid)) * (duration[g_vid] - g_len)
    g_label = rng.integers(0, classes, len(g_vid))
    gt = Detections(np.array([f"v{i:05d}" for i in g_vid], dtype=object), g_label,
                    np.c_[g_start, g_start + g_len])

    near = preds // 2
    first = np.cumsum(n_gt) - n_gt  # each video's first GT row
    pick = first[:, None] + (rng.random((videos, near)) * n_gt[:, None]).astype(int)  # (V, near)
    pick = pick.ravel()
    jitter = rng.normal(0, 0.15, (len(pick), 2)) * g_len[pick, None]
    near_seg = np.sort(gt.segment[pick] + jitter, axis=1)
    p_vid = np.r_[g_vid[pick], np.repeat(np.arange(videos), preds - near)]
    r_len = rng.uniform(0.02, 0.8, len(p_vid) - len(pick)) * duration[p_vid[len(pick):]]
    r_start = rng.uniform(0, 1, len(r_len)) * (duration[p_vid[len(pick):]] - r_len)
    seg = np.r_[near_seg, np.c_[r_start, r_start + r_len]]
    seg = np.clip(seg, 0, duration[p_vid, None])
    label = np.r_[g_label[pick], rng.integers(0, classes, len(r_len))]
    score = np.r_[rng.uniform(0.3, 1, len(pick)), rng.uniform(0, 0.6, len(r_len))]
    return gt, Detections(np.array([f"v{i:05d}" for i in p_vid], dtype=object), label, seg, score)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=2167)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--preds", type=int, default=100)
    ap.add_argument("--nms-candidates", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    thresholds = THRESHOLDS["unav"]

    gt, preds = fake_split(rng, args.videos, args.classes, args.preds)
    print(f"mAP: {args.videos} videos, {len(gt)} GT events ({len(gt) / args.videos:.2f} a video), "
          f"{len(preds)} predictions, {args.classes} classes, {len(thresholds)} thresholds")
    fast_s = [timed(lambda: detection_map(gt, preds, thresholds, "unav")) for _ in range(args.repeats)]
    fast = fast_s[0][1]
    ref_s, ref = timed(lambda: detection_map_reference(gt, preds, thresholds, "unav"))
    assert np.allclose(fast.ap, ref.ap, atol=1e-12), "fast and reference disagree"
    fast_t = statistics.median(t for t, _ in fast_s)
    print(f"  Avg mAP {fast.average:.4f} (both versions; mAP@0.5 {fast.mAP[4]:.4f})")
    print(f"  {'detection_map':26s}{fast_t:10.3f} s   (median of {args.repeats})")
    print(f"  {'detection_map_reference':26s}{ref_s:10.3f} s")
    print(f"  {'ratio reference / fast':26s}{ref_s / fast_t:10.1f}x")

    for n_cls in (args.classes, 5):  # spread over every class, or concentrated as a trained model's
        bench_soft_nms(rng, args.nms_candidates, n_cls, args.repeats, args.videos)


def bench_soft_nms(rng: np.random.Generator, n: int, n_cls: int, repeats: int, videos: int) -> None:
    start = rng.uniform(0, 240, n)  # a 60 s clip in 0.25 s steps, UniAV's unit
    segs = np.c_[start, start + rng.exponential(20, n)]
    scores = rng.uniform(0.001, 1, n) ** 2
    labels = rng.integers(0, n_cls, n)
    kw = dict(sigma=0.4, min_score=0.001, max_per_class=100, top_k=100)
    nms_fast = statistics.median(timed(lambda: soft_nms(segs, scores, labels, **kw))[0]
                                 for _ in range(repeats))
    nms_ref = statistics.median(timed(lambda: soft_nms_reference(segs, scores, labels, **kw))[0]
                                for _ in range(repeats))
    a, b = soft_nms(segs, scores, labels, **kw), soft_nms_reference(segs, scores, labels, **kw)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], rtol=1e-12), "soft_nms disagrees"
    print(f"Soft-NMS: {n} candidates over {n_cls} classes -> top {kw['top_k']} (median of {repeats})")
    print(f"  {'soft_nms':26s}{nms_fast * 1e3:10.2f} ms")
    print(f"  {'soft_nms_reference':26s}{nms_ref * 1e3:10.2f} ms")
    print(f"  {'ratio reference / fast':26s}{nms_ref / nms_fast:10.1f}x")
    print(f"  a split of {videos} videos: {nms_fast * videos:.1f} s fast, {nms_ref * videos:.1f} s loop")

if __name__ == "__main__":
    main()
