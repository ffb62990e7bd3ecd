"""What a 0.25 s feature step costs against 1 s: extraction time and store size, same clips, same run.

Both stores are any-length (T = 0, as the dense benchmarks' are), extracted in this process
(workers=0) with random-weight encoders; the ratio 0.25 s / 1 s is printed beside each pair.
Decoding alone is timed too, with both decoders, so that the cost of the extra frames is
visible apart from the encoders' (4x the frames through CLIP, 4x the examples through VGGish).

    python benchmarks/bench_hop.py --videos ../shared/data/samples/llp ../shared/data/samples/ave

The clips: one generated 60 s clip (pipeline/timecode.py, 320x240, 25 fps) and the given real
videos (--videos; files or folders), each once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ExtractConfig  # noqa: E402
from pipeline.decode import decode  # noqa: E402
from pipeline.extract import list_videos, load_encoders, resolve_weights, run_extract  # noqa: E402
from pipeline.timecode import write_clip  # noqa: E402


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", nargs="*", default=[], help="real videos (files or folders) besides the 60 s clip")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the generated clip")
    ap.add_argument("--clip-model", default="avu-tiny-clip")
    ap.add_argument("--patch-grid", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--repeats", type=int, default=1, help="extractions per hop (the best is shown)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="avu-bench-hop-"))
    try:
        clips = tmp / "clips"
        clips.mkdir()
        write_clip(clips / "generated.mp4", args.seconds, 25.0, (320, 240))
        for s in args.videos:
            for f in list_videos(Path(s)) if Path(s).is_dir() else [Path(s)]:
                (clips / f.name).symlink_to(f.resolve())
        paths = list_videos(clips)
        ids = [p.stem for p in paths]
        base = ExtractConfig(T=0, clip_model=args.clip_model, patch_grid=args.patch_grid, random_weights=True,
                             workers=0, device=args.device, precision=args.precision)
        load_encoders(resolve_weights(base, args.device)[0])          # built once, outside the timings
        seconds = sum(decode(p, 600, 16000, pad=False).length for p in paths)
        print(f"{len(paths)} clips ({seconds} s of video: {', '.join(p.name for p in paths)}), CLIP "
              f"{args.clip_model} (random weights), patch grid {args.patch_grid}, {args.device}, {args.precision}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}")

        rows = {}
        for hop in (1.0, 0.25):
            for backend in ("decord", "ffmpeg"):
                times = []
                for _ in range(2):                      # the best of two: the first also reads the files in
                    t = time.perf_counter()
                    steps = sum(decode(p, int(600 / hop), 16000, backend, pad=False, hop=hop).length for p in paths)
                    times.append(time.perf_counter() - t)
                rows.setdefault(f"decode only, {backend}", []).append(min(times))
            best = float("inf")
            for r in range(args.repeats):
                out = tmp / f"hop{hop}-{r}.zarr"
                cfg = ExtractConfig(**{**base.__dict__, "hop": {"videos": hop}})
                t = time.perf_counter()
                summary = run_extract(paths, ids, out, cfg)
                best = min(best, time.perf_counter() - t)
                assert summary.done == len(paths) and not summary.failed
            rows.setdefault("extract (decode + encode + write)", []).append(best)
            rows.setdefault("store size (MB)", []).append(store_bytes(out) / 1e6)
            rows.setdefault("feature steps", []).append(steps)
        print(f"{'':<40} {'hop 1 s':>10} {'hop 0.25 s':>11} {'ratio':>7}")
        for name, (one, quarter) in rows.items():
            unit = "" if name.startswith(("store", "feature")) else " s"
            print(f"{name:<40} {one:>8.2f}{unit:2} {quarter:>9.2f}{unit:2} {quarter / one:>7.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
