"""Extraction benchmark: the avu pipeline against a sequential baseline on the same clips.

Baseline: one process, one clip at a time: decode, encode, write (the same decoder, encoders
and store code, no Dask, no decode threads, no cross-clip batching). Pipeline: `run_extract`
with Dask workers, decode threads and batched encoding, Dask start-up included. Also printed:
decode-only and encode-only throughput, so the bound is visible.

    python benchmarks/bench_extract.py --clips 32 --clip-model avu-tiny-clip
    python benchmarks/bench_extract.py --clips 48 --videos ../shared/data/samples/llp ../shared/data/samples/ave

By default the clips are generated (pipeline/timecode.py: flat frames that show the second, a
tone): cheap to decode, ~33 ms a clip on one core. `--videos` cycles real files (or the videos
in folders) instead: the LLP and AVE samples take ~120 ms a clip to decode (frames and audio),
as real benchmark videos do, so decoding is a larger part of the work.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from pipeline.decode import decode  # noqa: E402
from pipeline.extract import (_encode, clip_dims, clip_ids_for, list_videos, load_encoders,  # noqa: E402
                              resolve_weights, run_extract)
from pipeline.store import create  # noqa: E402
from pipeline.timecode import write_clip  # noqa: E402


def cycle_videos(folder: Path, n: int, sources: list[str]) -> list[Path]:
    """n links named clip000.<ext>, ... to the given videos (files, or the videos in folders), in turn."""
    files = []
    for s in sources:
        files += list_videos(Path(s)) if Path(s).is_dir() else [Path(s)]
    if not files:
        raise SystemExit(f"no videos in {sources}")
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        src = files[k % len(files)].resolve()
        (folder / f"clip{k:03d}{src.suffix}").symlink_to(src)
    return list_videos(folder)


def make_clips(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    rates = [25.0, 30000 / 1001, 30.0, 24.0]
    for k in range(n):
        p = folder / f"clip{k:03d}.mp4"
        if not p.exists():
            write_clip(p, 10.0, rates[k % 4], size)
    return list_videos(folder)


def baseline(paths: list[Path], out: Path, cfg: ExtractConfig) -> tuple[float, float]:
    """One process, one clip at a time: decode, encode, write. Timed from building the encoders,
    as the pipeline is timed from starting its workers; returns (total, encoder build) seconds."""
    start = time.perf_counter()
    load_encoders.cache_clear()
    spec, _ = resolve_weights(cfg, "cpu")
    clip, vggish = load_encoders(spec)
    t_load = time.perf_counter() - start
    D, P = clip_dims(cfg.clip_model, cfg.patch_grid)
    store = create(out, clip_ids_for(paths, paths[0].parent), {
        "audio": ((cfg.T, 128), "float16"), "visual": ((cfg.T, D), "float16"),
        "patches": ((cfg.T, P, D), "float16")}, {})
    for i, p in enumerate(paths):
        d = decode(p, cfg.T, cfg.sample_rate, cfg.decoder)
        store.write_clip(i, _encode(clip, vggish, [d], cfg.T, cfg.sample_rate)[0])
        store.mark_done([i], [d.length])
    return time.perf_counter() - start, t_load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--clip-model", default="avu-tiny-clip")
    ap.add_argument("--patch-grid", type=int, default=4)
    ap.add_argument("--size", type=int, nargs=2, default=(320, 240), help="frame size of the generated clips")
    ap.add_argument("--videos", nargs="+", help="real videos (files or folders) to cycle instead of generated clips")
    ap.add_argument("--workers", type=int, default=ExtractConfig.workers)
    ap.add_argument("--clips-per-task", type=int, default=ExtractConfig.clips_per_task)
    ap.add_argument("--clip-batch", type=int, default=ExtractConfig.clip_batch)
    ap.add_argument("--precision", default=ExtractConfig.precision, help="fp32 | bf16 | fp16, on both sides")
    ap.add_argument("--release-freed-memory", action="store_true",
                    help="the pipeline's workers return freed memory to the system (keep_freed_memory=false)")
    ap.add_argument("--no-pin", action="store_true", help="the pipeline's workers are not bound to cores (pin_workers=false)")
    args = ap.parse_args()

    cfg = ExtractConfig(clip_model=args.clip_model, patch_grid=args.patch_grid, random_weights=True,
                        workers=args.workers, clips_per_task=args.clips_per_task, clip_batch=args.clip_batch,
                        precision=args.precision)
    pipe_cfg = dataclasses.replace(cfg, keep_freed_memory=not args.release_freed_memory, pin_workers=not args.no_pin)
    tmp = Path(tempfile.mkdtemp(prefix="avu-bench-"))
    try:
        if args.videos:
            paths = cycle_videos(tmp / "videos", args.clips, args.videos)
            what = f"{len(paths)} clips cycling {', '.join(sorted({p.resolve().name for p in paths}))}"
        else:
            paths = make_clips(tmp / "videos", args.clips, tuple(args.size))
            what = f"{len(paths)} generated clips of 10 s, {args.size[0]}x{args.size[1]}"
        n = len(paths)
        print(f"{what}, CLIP {args.clip_model} (random weights), "
              f"patch grid {args.patch_grid}, encoders in {args.precision} (both sides), {os.cpu_count()} cores, "
              f"torch {torch.__version__}")

        t = time.perf_counter()
        decoded = [decode(p, cfg.T, cfg.sample_rate) for p in paths]
        t_decode = time.perf_counter() - t
        clip, vggish = load_encoders(resolve_weights(cfg, "cpu")[0])
        _encode(clip, vggish, decoded[:2], cfg.T, cfg.sample_rate)           # warm-up
        per = max(1, args.clip_batch // cfg.T)
        t = time.perf_counter()
        for k in range(0, n, per):
            _encode(clip, vggish, decoded[k:k + per], cfg.T, cfg.sample_rate)
        t_encode = time.perf_counter() - t
        del decoded

        t_base, t_load = baseline(paths, tmp / "baseline.zarr", cfg)
        t = time.perf_counter()
        summary = run_extract(paths, clip_ids_for(paths, tmp / "videos"), tmp / "pipeline.zarr", pipe_cfg)
        t_pipe = time.perf_counter() - t
        assert summary.done == n and not summary.failed

        after = n / (t_pipe - summary.startup_seconds)
        steady = n / (t_pipe - summary.startup_seconds - summary.shutdown_seconds)
        base_steady = n / (t_base - t_load)
        engine = f"{args.workers} Dask workers" if args.workers else "in this process"
        rows = [("decode only (1 process, sequential)", n / t_decode),
                (f"encode only (1 process, {per} clips per batch)", n / t_encode),
                ("baseline: sequential decode-encode-write", n / t_base),
                ("baseline without building its encoders", base_steady),
                (f"avu pipeline ({engine}), start-up included", n / t_pipe),
                (f"avu pipeline, after start-up ({summary.startup_seconds:.1f} s)", after),
                (f"avu pipeline, after start-up and shut-down ({summary.shutdown_seconds:.1f} s)", steady)]
        for name, rate in rows:
            print(f"{name:<72} {rate:7.2f} clips/s")
        print(f"{'speed-up over the baseline, start-up included':<72} {t_base / t_pipe:7.2f} x")
        print(f"{'speed-up over the baseline, after start-up':<72} {after / base_steady:7.2f} x")
        print(f"{'speed-up over the baseline, steady (start-up and shut-down left out)':<72} "
              f"{steady / base_steady:7.2f} x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
