"""Layouts for clips of different lengths, measured in one run: disk, files, write and read cost.

    python benchmarks/bench_store_layout.py                 # 16 clips of 5..300 s, ViT-L-14 widths
    python benchmarks/bench_store_layout.py --clips 48 --max-len 600

Every layout gets the same random float16 features (audio 128, visual 768, patches 8 x 8 x 768
a second, as ViT-L-14 at patch_grid 8), written clip by clip as a worker does, with the store's
codecs (zstd 3 + CRC32C). Layouts:
- padded (the baseline): (N, longest, ...), one chunk a clip, every clip padded to the longest
  with its last second repeated (what a fixed-T store holds past a clip's end);
- time-C: (N, max_seconds, ...) chunked (1, C, ...): a clip writes only the chunks its seconds
  reach (the last one's tail is fill), chunks past them are never stored;
- flat-C: one time axis for all clips, chunked (C, ...), each clip starting at a chunk boundary
  at its offset (known only once every clip's length is: decoding all of them first).
Printed for each: bytes on disk, chunk files, write seconds, and the median time to read a
batch of 8 clips' patches padded to that batch's longest clip (and one clip alone); then each
layout's ratios to the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.store import _codecs  # noqa: E402

WIDTHS = {"audio": (128,), "visual": (768,), "patches": (64, 768)}


def disk(path: Path) -> tuple[int, int]:
    """(bytes, chunk files) under `path`, metadata excluded."""
    size = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            if name != "zarr.json":
                size += os.path.getsize(os.path.join(root, name))
                files += 1
    return size, files


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Padded:
    def __init__(self, path, lengths, max_seconds):
        self.lengths, longest = lengths, int(lengths.max())
        g = zarr.open_group(str(path), mode="w-", zarr_format=3)
        self.a = {n: g.create_array(n, shape=(len(lengths), longest, *w), chunks=(1, longest, *w), dtype="float16",
                                    compressors=_codecs(), fill_value=float("nan")) for n, w in WIDTHS.items()}

    def write(self, i, values):
        for n, x in values.items():
            pad = np.repeat(x[-1:], self.a[n].shape[1] - len(x), axis=0)
            self.a[n][i] = np.concatenate([x, pad])

    def read(self, name, idx):
        span = int(self.lengths[idx].max())
        return self.a[name].get_orthogonal_selection((idx, slice(0, span), slice(None), slice(None)))


class TimeChunked:
    def __init__(self, path, lengths, max_seconds, C):
        self.lengths, self.C = lengths, C
        g = zarr.open_group(str(path), mode="w-", zarr_format=3)
        self.a = {n: g.create_array(n, shape=(len(lengths), max_seconds, *w), chunks=(1, C, *w), dtype="float16",
                                    compressors=_codecs(), fill_value=float("nan")) for n, w in WIDTHS.items()}

    def write(self, i, values):
        for n, x in values.items():
            end = min(-(-len(x) // self.C) * self.C, self.a[n].shape[1])
            block = np.full((end, *x.shape[1:]), np.nan, x.dtype)
            block[:len(x)] = x
            self.a[n][i, :end] = block

    def read(self, name, idx):
        """As FeatureStore.read: each clip's own seconds into a zeroed batch."""
        out = np.zeros((len(idx), int(self.lengths[idx].max()), *self.a[name].shape[2:]), np.float16)
        for b, i in enumerate(idx):
            out[b, :self.lengths[i]] = self.a[name][i, :self.lengths[i]]
        return out

    def read_orthogonal(self, name, idx):
        """One orthogonal selection up to the longest, then zeros past each clip's end."""
        span = int(self.lengths[idx].max())
        x = self.a[name].get_orthogonal_selection((idx, slice(0, span), slice(None), slice(None)))
        x[np.arange(span)[None] >= self.lengths[idx][:, None]] = 0
        return x


class Flat:
    def __init__(self, path, lengths, max_seconds, C):
        self.lengths, self.C = lengths, C
        rounded = -(-lengths // C) * C
        self.start = np.concatenate([[0], np.cumsum(rounded)[:-1]])
        g = zarr.open_group(str(path), mode="w-", zarr_format=3)
        self.a = {n: g.create_array(n, shape=(int(rounded.sum()), *w), chunks=(C, *w), dtype="float16",
                                    compressors=_codecs(), fill_value=float("nan")) for n, w in WIDTHS.items()}

    def write(self, i, values):
        s = int(self.start[i])
        for n, x in values.items():
            end = -(-len(x) // self.C) * self.C
            block = np.full((end, *x.shape[1:]), np.nan, x.dtype)
            block[:len(x)] = x
            self.a[n][s:s + end] = block

    def read(self, name, idx):
        span = int(self.lengths[idx].max())
        out = np.zeros((len(idx), span, *self.a[name].shape[1:]), np.float16)
        for b, i in enumerate(idx):
            s, n = int(self.start[i]), int(self.lengths[i])
            out[b, :n] = self.a[name][s:s + n]
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--min-len", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=300)
    ap.add_argument("--max-seconds", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reads", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lengths = rng.integers(args.min_len, args.max_len + 1, args.clips)
    # one pool of random seconds; each clip takes its own slice (the same bytes in every layout)
    pool = {n: rng.standard_normal((args.max_len + args.clips, *w)).astype(np.float16) for n, w in WIDTHS.items()}
    clips = [{n: pool[n][i:i + int(L)] for n in WIDTHS} for i, L in enumerate(lengths)]
    real = sum(x.nbytes for c in clips for x in c.values())
    batches = [np.sort(rng.choice(args.clips, args.batch, replace=False)) for _ in range(args.reads)]
    print(f"{args.clips} clips of {lengths.min()}-{lengths.max()} s (mean {lengths.mean():.0f}), "
          f"max_seconds {args.max_seconds}; {real / 2**20:.0f} MB of float16 features; "
          f"batches of {args.batch}, longest in each: {[int(lengths[b].max()) for b in batches]}")
    layouts = {"padded": lambda p: Padded(p, lengths, args.max_seconds)}
    for C in (1, 10, 30):
        layouts[f"time-{C}"] = lambda p, C=C: TimeChunked(p, lengths, args.max_seconds, C)
    layouts["flat-10"] = lambda p: Flat(p, lengths, args.max_seconds, 10)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in layouts.items():
            path = Path(tmp) / f"{name}.zarr"
            store = make(path)
            write = timed(lambda: [store.write(i, c) for i, c in enumerate(clips)])
            size, files = disk(path)
            read = statistics.median(timed(lambda b=b: store.read("patches", b)) for b in batches)
            if isinstance(store, TimeChunked):
                ortho = statistics.median(timed(lambda b=b: store.read_orthogonal("patches", b)) for b in batches)
                print(f"{name}: one orthogonal selection and a mask instead: {ortho * 1e3:.0f} ms a batch")
            one = statistics.median(timed(lambda b=b: store.read("patches", b[:1])) for b in batches)
            got = store.read("patches", batches[0])
            for k, i in enumerate(batches[0]):          # every layout reads back what was written
                L = int(lengths[i])
                assert np.array_equal(got[k, :L], clips[i]["patches"]), name
                assert name == "padded" or not got[k, L:].any(), name
            rows[name] = {"disk MB": size / 2**20, "files": files, "write s": write,
                          "read batch ms": read * 1e3, "read one ms": one * 1e3}
            del store
    cols = list(rows["padded"])
    print(f"{'layout':10}" + "".join(f"{c:>15}" for c in cols))
    for name, r in rows.items():
        print(f"{name:10}" + "".join(f"{r[c]:15.1f}" if c != "files" else f"{r[c]:15d}" for c in cols))
    print("ratios to padded:")
    for name, r in rows.items():
        print(f"{name:10}" + "".join(f"{r[c] / rows['padded'][c]:15.2f}" for c in cols))


if __name__ == "__main__":
    main()
