"""What the store's integrity checks cost: the previous layout (zstd only, no records) against
the current one (zstd + CRC32C in every chunk, per-clip (bytes, CRC-32) records) in one run.

    python benchmarks/bench_store.py                       # 200 clips, T 10, ViT-B widths, 4 x 4 patches
    python benchmarks/bench_store.py --clips 400 --grid 16 --width 768   # ViT-L-14 shapes

Both stores get the same random float16 features, written clip by clip as a worker does
(write_clip, then the driver's mark_done in batches of 8). Printed, for each layout: the write
time a clip, the quick check (one stat a chunk, what training runs at open), the full verify
(every chunk read, CRC-32 compared; `avu info --verify`), and the median time to read a batch of
64 clips' patches; then the ratios current / previous.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.store import FeatureStore, create  # noqa: E402


def previous_layout(path: Path, ids: list[str], arrays: dict) -> zarr.Group:
    """The store as 2482e6c made it: zstd only, fill 0, no records."""
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    for name, (tail, dtype) in arrays.items():
        group.create_array(name, shape=(len(ids), *tail), chunks=(1, *tail), dtype=dtype,
                           compressors=ZstdCodec(level=3), fill_value=0)
    group.attrs["clip_ids"] = ids
    return group


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--reads", type=int, default=5)
    args = ap.parse_args()
    n, T, P, D = args.clips, args.T, args.grid ** 2, args.width
    arrays = {"audio": ((T, 128), "float16"), "visual": ((T, D), "float16"), "patches": ((T, P, D), "float16")}
    ids = [f"clip{i:05d}" for i in range(n)]
    rng = np.random.default_rng(0)
    values = [{name: rng.standard_normal(tail).astype(dtype)
               for name, (tail, dtype) in arrays.items()} for _ in range(n)]
    mb = sum(v.nbytes for v in values[0].values()) / 2 ** 20
    print(f"{n} clips, T {T}, {P} patches of width {D}: {mb:.2f} MB of features a clip")
    batch = np.sort(rng.choice(n, size=min(64, n), replace=False))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = previous_layout(Path(tmp) / "previous.zarr", ids, arrays)

        def write_old():
            for i, v in enumerate(values):
                for name, x in v.items():
                    old[name][i] = x

        def read_old():
            old["patches"].get_orthogonal_selection((batch, slice(None), slice(None), slice(None)))

        results["previous"] = {"write ms a clip": timed(write_old) / n * 1e3, "quick check s": float("nan"),
                               "verify s": float("nan"),
                               "read 64 patches ms": statistics.median(timed(read_old) for _ in range(args.reads)) * 1e3}

        fs = create(Path(tmp) / "current.zarr", ids, arrays, {})

        def write_new():
            pending = []
            for i, v in enumerate(values):
                pending.append((i, fs.write_clip(i, v)))
                if len(pending) == 8 or i == n - 1:
                    fs.mark_done([j for j, _ in pending], [T] * len(pending), [c for _, c in pending])
                    pending.clear()

        def read_new():
            fs.read("patches", batch)

        write = timed(write_new)
        fs = FeatureStore(fs.path)
        damage = []
        quick = timed(lambda: damage.extend(fs.check()))
        full = timed(lambda: damage.extend(fs.verify()))
        assert not damage, damage
        results["current"] = {"write ms a clip": write / n * 1e3, "quick check s": quick, "verify s": full,
                              "read 64 patches ms": statistics.median(timed(read_new) for _ in range(args.reads)) * 1e3}
    keys = list(results["current"])
    print(f"{'':10s}" + "".join(f"{k:>22s}" for k in keys))
    for name, r in results.items():
        print(f"{name:10s}" + "".join(f"{r[k]:22.3f}" for k in keys))
    print(f"{'ratio':10s}" + "".join(f"{results['current'][k] / results['previous'][k]:22.2f}x"
                                     if k in ("write ms a clip", "read 64 patches ms") else f"{'':>23s}" for k in keys))


if __name__ == "__main__":
    main()
