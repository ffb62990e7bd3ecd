"""Stage one in blocks: peak memory and time of extracting one long video whole (decode_block=0,
every frame decoded before any is encoded) against in blocks (decode_block, ExtractConfig's
default unless --block), same clip, same run, and the two stores compared bit for bit.

    python benchmarks/bench_blocks.py                          # 300 s, 640x360, 25 fps, hop 0.25
    python benchmarks/bench_blocks.py --seconds 120 --decoder ffmpeg

Each extraction runs in a fresh process (any-length store, T = 0, workers=0, random-weight
encoders; avu-tiny-clip unless --clip-model), so that its peak resident memory (ru_maxrss) is
its own; "growth" is that peak less the resident memory once the encoders are built. Growth
also holds what does not depend on the video's length (VGGish's log-mel of up to MEL_ROWS
examples, its activations, the decoder) and freed memory glibc keeps (keep_freed_memory: up to
1 GB). So a second pair of runs traces NumPy's allocations (tracemalloc; the frames are NumPy
arrays, torch's tensors are not traced): their peak is the frames' part. The clip is generated
(ffmpeg's testsrc2 pattern, a tone) and kept in --workdir.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ExtractConfig  # noqa: E402


def make_clip(path: Path, seconds: float, size: str, fps: float) -> Path:
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        str(path)], check=True)
    return path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # KiB on Linux


def child(args) -> None:
    """One extraction in this process; prints its numbers as one JSON line."""
    import tracemalloc

    from pipeline.extract import load_encoders, resolve_weights, run_extract

    cfg = ExtractConfig(T=0, max_seconds=int(args.seconds) + 10, hop={"videos": args.hop}, decoder=args.decoder,
                        clip_model=args.clip_model, patch_grid=args.patch_grid, random_weights=True, workers=0,
                        decode_block=args.child_block, clip_batch=args.clip_batch)
    load_encoders(resolve_weights(cfg, cfg.device)[0])
    base = rss_mb()
    if args.trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    summary = run_extract([Path(args.clip)], ["long"], Path(args.out), cfg)
    seconds = time.perf_counter() - t0
    if summary.done != 1:
        raise SystemExit(f"extraction failed: {summary.failed}")
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if args.trace else 0.0
    print(json.dumps({"base_mb": base, "peak_mb": rss_mb(), "seconds": seconds, "traced_mb": traced}))


def same_store(a: Path, b: Path) -> bool:
    import numpy as np

    from pipeline.store import FeatureStore

    x, y = FeatureStore(a), FeatureStore(b)
    return all(np.array_equal(x.read(n, 0).view(np.uint16), y.read(n, 0).view(np.uint16))
               and np.array_equal(x.records(n), y.records(n)) for n in ("audio", "visual", "patches"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--hop", type=float, default=0.25)
    ap.add_argument("--block", type=int, default=ExtractConfig.decode_block, help="steps a block (decode_block)")
    ap.add_argument("--decoder", default="auto")
    ap.add_argument("--clip-model", default="avu-tiny-clip")
    ap.add_argument("--patch-grid", type=int, default=4)
    ap.add_argument("--clip-batch", type=int, default=ExtractConfig.clip_batch)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "avu_bench_blocks")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-block", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    args.workdir.mkdir(parents=True, exist_ok=True)
    clip = make_clip(args.workdir / f"long_{int(args.seconds)}s_{args.size}_{args.fps:g}fps.mp4", args.seconds,
                     args.size, args.fps)
    w, h = map(int, args.size.split("x"))
    steps = int(args.seconds / args.hop)
    print(f"{clip.name}: {steps} steps of {args.hop:g} s; its frames at {args.size}: "
          f"{steps * w * h * 3 / 2**20:.0f} MB; decoder {args.decoder}, {args.clip_model}, "
          f"clip_batch {args.clip_batch}")
    runs = {}
    for trace in (False, True):
        for name, block in (("whole", 0), ("blocks", args.block)):
            out = args.workdir / f"{name}{'_traced' if trace else ''}.zarr"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            cmd = [sys.executable, __file__, "--child", "--child-block", str(block), "--clip", str(clip),
                   "--out", str(out), "--seconds", str(args.seconds), "--hop", str(args.hop), "--decoder",
                   args.decoder, "--clip-model", args.clip_model, "--patch-grid", str(args.patch_grid),
                   "--clip-batch", str(args.clip_batch), *(["--trace"] if trace else [])]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            r = runs[name, trace] = json.loads(done.stdout.strip().splitlines()[-1])
            if trace:
                print(f"  {name:6} decode_block={block:<4} NumPy peak (tracemalloc) {r['traced_mb']:7.0f} MB")
            else:
                print(f"  {name:6} decode_block={block:<4} peak RSS {r['peak_mb']:7.0f} MB  growth "
                      f"{r['peak_mb'] - r['base_mb']:7.0f} MB  {r['seconds']:6.1f} s")
    a, b = runs["whole", False], runs["blocks", False]
    print(f"  blocks / whole: peak RSS {b['peak_mb'] / a['peak_mb']:.2f}, growth "
          f"{(b['peak_mb'] - b['base_mb']) / max(a['peak_mb'] - a['base_mb'], 1):.2f}, NumPy peak "
          f"{runs['blocks', True]['traced_mb'] / max(runs['whole', True]['traced_mb'], 1e-9):.2f}, "
          f"time {b['seconds'] / a['seconds']:.2f}")
    print(f"  stores bit-identical: {same_store(args.workdir / 'whole.zarr', args.workdir / 'blocks.zarr')}")


if __name__ == "__main__":
    main()
