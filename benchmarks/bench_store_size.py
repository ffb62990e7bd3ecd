"""Store size per minute of video at a 1 s and a 0.25 s feature step (issue 16), with a real
CLIP model's shapes (ViT-L-14, grid 8 by default), through the real extraction path.

    python benchmarks/bench_store_size.py                         # ViT-L-14, 10 s clips, CPU
    python benchmarks/bench_store_size.py --seconds 60 --device cuda
    python benchmarks/bench_store_size.py --without-patches      # stores as the dense benchmarks' (no patches)

Each clip is extracted into an any-length store (T = 0, as the dense benchmarks' are; `avu
extract --videos` in this process: run_extract, workers=0) once per hop with random-weight
encoders (open_clip builds ViT-L-14 from its config; nothing is downloaded). Printed per clip
and hop: the steps, each feature array's chunk bytes on disk against its raw float16 bytes (steps
x the per-step shape x 2), the rest of the store (metadata, records, small arrays: per store,
not per minute), and the feature bytes per minute of video, then the ratio 0.25 s / 1 s.

Per minute is the clip's feature bytes x 60 / its seconds. The feature arrays are chunked 10 s
along time (store.TIME_CHUNK) and a clip writes only the chunks it reaches, so a clip whose
length is a multiple of 10 s is made of whole chunks like a minute's, and the per-minute figure
is a sum of the same kind of chunk (compressed one by one) whatever the clip's length; a clip
that is no multiple of 10 s leaves a NaN tail in its last chunk, which makes per minute look
cheaper than it is.

The clips (generated, 160 x 120, 25 fps):
  moving    ffmpeg's testsrc2 (every frame differs) with pink noise: every step's features differ
  timecode  pipeline/timecode.py: one grey level and one tone a second, so the four 0.25 s steps
            of a second see the same frame (identical CLIP rows, which zstd finds again) and
            almost the same sound: the favourable case (a static shot), as bench_hop's clip was

Random weights give other numbers than pretrained ones, and zstd packs them differently: the
shapes (and so the raw bytes) are exact, the compression ratio is only indicative.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ExtractConfig  # noqa: E402
from pipeline.extract import run_extract  # noqa: E402
from pipeline.store import TIME_CHUNK, FeatureStore  # noqa: E402
from pipeline.timecode import write_clip  # noqa: E402

FEATURES = ("audio", "visual", "patches")
SIZE = (160, 120)


def moving_clip(path: Path, seconds: float, size: tuple[int, int] = SIZE) -> Path:
    """testsrc2 video (moving pattern and counter: every frame differs) and seeded pink noise."""
    import ffmpeg

    w, h = size
    video = ffmpeg.input(f"testsrc2=size={w}x{h}:rate=25", f="lavfi", t=seconds)
    audio = ffmpeg.input("anoisesrc=color=pink:sample_rate=44100:amplitude=0.3:seed=1", f="lavfi", t=seconds)
    (ffmpeg.output(video, audio, str(path), vcodec="libx264", pix_fmt="yuv420p", crf=18, acodec="aac",
                   audio_bitrate="128k").overwrite_output().run(capture_stdout=True, capture_stderr=True))
    return path


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(video: Path, out: Path, base: ExtractConfig, hop: float) -> dict:
    cfg = ExtractConfig(**{**base.__dict__, "hop": {"videos": hop}})
    t = time.perf_counter()
    summary = run_extract([video], [video.stem], out, cfg)
    seconds = time.perf_counter() - t
    if summary.done != 1 or summary.failed:
        raise RuntimeError(f"{video}: extraction failed: {summary.failed}")
    fs = FeatureStore(out)
    steps = int(fs.group["length"][0])
    arrays = {}
    for name in [n for n in FEATURES if n in fs.feature_arrays]:
        per_step = int(np.prod(fs.group[name].shape[2:]))        # (N, time, ...) -> elements a step
        arrays[name] = (folder_bytes(out / name / "c"), steps * per_step * 2, per_step)   # its chunks
    rest = folder_bytes(out) - sum(stored for stored, _, _ in arrays.values())
    return {"steps": steps, "arrays": arrays, "rest": rest, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each generated clip (a multiple of "
                    f"{TIME_CHUNK} s: whole time chunks)")
    ap.add_argument("--clips", nargs="+", default=["moving", "timecode"], choices=["moving", "timecode"])
    ap.add_argument("--clip-model", default="ViT-L-14-quickgelu")
    ap.add_argument("--patch-grid", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--without-patches", action="store_true", help="stores without patch tokens (the setting "
                    "patches; the dense benchmarks' default)")
    args = ap.parse_args()
    if args.seconds % TIME_CHUNK:
        print(f"warning: {args.seconds:g} s is no multiple of {TIME_CHUNK} s: the last chunk's NaN tail "
              f"makes per minute look cheaper")

    base = ExtractConfig(T=0, clip_model=args.clip_model, patch_grid=args.patch_grid, random_weights=True,
                         workers=0, device=args.device, precision=args.precision,
                         patches={"videos": not args.without_patches})
    print(f"CLIP {args.clip_model} (random weights), patch grid {args.patch_grid}, {args.device}, "
          f"{args.precision}, {'no patches, ' if args.without_patches else ''}{os.cpu_count()} cores, torch {torch.__version__}; clips {args.seconds:g} s, "
          f"{SIZE[0]}x{SIZE[1]}, 25 fps; zstd level {base.compression_level}")
    tmp = Path(tempfile.mkdtemp(prefix="avu-bench-store-size-"))
    try:
        per_minute = {}
        for kind in args.clips:
            video = tmp / f"{kind}.mp4"
            if kind == "moving":
                moving_clip(video, args.seconds)
            else:
                write_clip(video, args.seconds, 25.0, SIZE)
            for hop in (1.0, 0.25):
                m = measure(video, tmp / f"{kind}-{hop}.zarr", base, hop)
                feature = sum(stored for stored, _, _ in m["arrays"].values())
                raw = sum(r for _, r, _ in m["arrays"].values())
                per_minute[kind, hop] = (feature * 60 / args.seconds, raw * 60 / args.seconds)
                print(f"\n{kind} clip, hop {hop:g} s: {m['steps']} steps, extracted in {m['seconds']:.0f} s")
                print(f"  {'array':<8} {'per step':>9} {'stored MB':>10} {'raw MB':>8} {'raw/stored':>10}")
                for name, (stored, r, per_step) in m["arrays"].items():
                    print(f"  {name:<8} {per_step:>9} {stored / 1e6:>10.3f} {r / 1e6:>8.3f} {r / stored:>10.2f}")
                print(f"  {'features':<8} {'':>9} {feature / 1e6:>10.3f} {raw / 1e6:>8.3f} {raw / feature:>10.2f}")
                print(f"  rest of the store (metadata, records, small arrays; per store): {m['rest'] / 1e3:.1f} kB")
        print(f"\nfeature MB per minute of video (raw float16 in brackets)")
        print(f"  {'clip':<9} {'hop 1 s':>16} {'hop 0.25 s':>17} {'ratio':>6}")
        for kind in args.clips:
            (one, one_raw), (quarter, quarter_raw) = per_minute[kind, 1.0], per_minute[kind, 0.25]
            print(f"  {kind:<9} {one / 1e6:>7.2f} ({one_raw / 1e6:>6.2f}) {quarter / 1e6:>8.2f} ({quarter_raw / 1e6:>6.2f}) "
                  f"{quarter / one:>6.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
