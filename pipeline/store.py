"""The feature store: one Zarr v3 group per dataset. The only module that imports zarr.

Layout (N clips, T steps, P patches, D CLIP width):
    audio       (N, T, 128)   float16   VGGish embedding of step t
    visual      (N, T, D)     float16   CLIP [CLS] of the frame of step t (projected)
    patches     (N, T, P, D)  float16   CLIP patch tokens (projected, pooled to the grid); absent
                                        where extracted with patches false (has_patches)
    length      (N,)          int16     steps of real content (the rest is padding)
    audio_length  (N,)        int16     steps of real audio from step 0 (-1: not recorded)
    visual_length (N,)        int16     steps of real picture from step 0 (decode.py); 0: audio only
    status      (N,)          int8      0 pending, 1 done, 2 failed
    checks/<a>  (N, 2)        int64     per-clip array <a>: bytes and CRC-32 of each clip's chunk
Per-clip arrays are chunked one clip per chunk, so parallel workers never share a chunk.

Steps: every time axis (T, length, audio_length, visual_length, the feature rows, the time
chunks) counts feature steps of attrs["hop"] seconds (absent in stores made before it: 1, so
steps are seconds); step t covers [t * hop, (t + 1) * hop) s. `max_seconds` stays seconds.

Audio-only clips (a .wav source: DESED) have visual_length 0 and no visual or patch chunk: their
records say so (0 bytes, no chunk), so check() and verify() accept the absence, and a chunk
file that appears there is damage; a missing visual chunk of any other clip is damage as ever.
read() returns zeros for their visual and patch rows (trainer/data.py marks them invalid).

Clips of any length (`avu extract T=0`, attrs T = 0): the feature arrays are (N, max_seconds /
hop, ...) chunked (1, C, ...) along time, C = time_chunk_steps(hop) steps (TIME_CHUNK seconds;
time_chunk attribute, 0 in fixed-T stores: what says an array is chunked along time, even where
the axis is exactly one chunk long). A clip writes the ceil(length / C) chunks its steps reach, the last
one's tail left NaN; chunks past them are never written, so a clip costs its own steps (rounded
up to C), not max_seconds, and no two clips share a chunk. Their records are checks/<a> (N, K,
2): bytes and CRC-32 of each of the clip's K = ceil(max steps / C) time chunks (0: not
written). check() and verify() look at the chunks a done clip's length reaches; read()
returns, for several clips, their steps up to the longest of them, zeros past each clip's
length (benchmarks/bench_store_layout.py measured this against one padded chunk a clip and a
flat time axis: BENCHMARKS.md). Fixed-T stores (T > 0) are as before: one chunk a clip, padded
to T.
Workers write the feature chunks of their clips; only the driver writes `length`, `status`,
`checks/` and the attributes, and it marks a clip done after its worker returned, that is after
all of the clip's arrays were written. Zarr's local store writes each chunk atomically, so a
killed run leaves every chunk whole. Arrays the driver alone writes, one chunk for all clips,
are listed in SMALL.
Attributes: clip_ids, sources, splits, failures ({clip_id: reason}), cut ({clip_id: steps of
its picture}: clips longer than T or max_seconds, cut there; absent in older stores), feature_arrays
(those the workers write), time_chunk (steps a chunk of them holds along time; 0: one chunk a
clip; absent in fixed-T stores made before it), hop (seconds per step), audio_only (how many sources have no picture)
and provenance (avu version, encoders with weight hashes or "random", fps = steps per second,
sample rate, T, patch grid, config).

A done clip is provably whole:
- Every chunk carries a CRC32C of its bytes (zarr's crc32c codec), checked on every read:
  garbage, a flipped byte or a truncated file fails the read, and FeatureStore.read turns the
  failure into a StoreError naming the store, the array and the clip.
- checks/<a>[i] = (bytes, CRC-32) of clip i's stored chunk of array <a>, measured after it was
  written: by the worker for the features (returned with the clip and written by the driver
  with mark_done, before `status`), by the driver for the arrays it writes itself (put;
  write_clip of targets, recorded at the next put or set_attrs). -1 bytes: not recorded (clips
  not done; stores made before the records existed); 0: no chunk (all fill value, which zarr
  does not store). checks/shared/<s>: the same for the one chunk of shared/<s>.
- Float per-clip arrays have the fill value NaN, so a missing chunk cannot pass for data.
- check() compares the size of every chunk file of every done clip with its record (one stat
  a chunk: training and `avu info` run it at open) and sees that every done clip has a
  length; verify() also compares the bytes' CRC-32
  (`avu info --verify`, `avu extract --repair`). For clips without records (old stores) they
  can tell a missing feature chunk (a feature chunk is never all fill) and a chunk that does
  not decode, not bytes that changed but still decode, nor a missing all-zero target chunk.
A new store is built in a sibling folder (<name>.creating) and renamed into place once its
clip_ids and arrays exist, so a store is whole or absent; a half-made one of an earlier version
(a group without clip_ids that holds no data) is recognised (half_made) and restarted.
"""

from __future__ import annotations

import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

PENDING, DONE, FAILED = 0, 1, 2
# written by the driver only, one chunk for all clips: name -> (dtype, fill value; -1: not recorded)
SMALL_TYPES = {"length": ("int16", 0), "audio_length": ("int16", -1), "visual_length": ("int16", -1),
               "status": ("int8", PENDING)}
SMALL = tuple(SMALL_TYPES)
MODALITY_LENGTHS = ("audio_length", "visual_length")
FEATURE_ARRAYS = ("audio", "visual", "patches")   # the workers' arrays in stores without the attribute
CHECKS = "checks"              # group of the per-clip records (bytes, CRC-32)
UNRECORDED, NO_CHUNK = -1, 0   # record values of the byte count
CHECK_ROWS = 1024              # clips per chunk of a record array: mark_done rewrites one or two
STAT_BATCH, STAT_THREADS = 4096, 8   # the quick check's stats, in parallel
TIME_CHUNK = 10                # seconds a chunk along time of an any-length store (BENCHMARKS.md)
VISUAL_ARRAYS = ("visual", "patches")   # what an audio-only clip has none of
_PROBES = ("918273645", "546372819")   # clip and time-chunk numbers in a chunk key (_chunk_file)
REPAIR_HINT = ("list them all with `avu info --verify {path}`; the same `avu extract` command with "
               "--repair re-extracts them")


class StoreError(RuntimeError):
    """The store is missing, incomplete, damaged, or was made with other settings."""


@dataclass(frozen=True)
class Damage:
    """A damaged chunk: array `array` of clip `index` (-1: an array that is not per clip)."""

    array: str
    reason: str
    index: int = -1
    clip_id: str = ""

    def __str__(self) -> str:
        where = f"clip {self.clip_id!r} (index {self.index}), " if self.index >= 0 else ""
        return f"{where}array {self.array!r}: {self.reason}"


def damage_message(path: Path, damage: list[Damage], shown: int = 3) -> str:
    """One error message naming the store and the first damaged clips and arrays."""
    clips = {d.index for d in damage if d.index >= 0}
    listed = "; ".join(str(d) for d in damage[:shown])
    more = f"; and {len(damage) - shown} more" if len(damage) > shown else ""
    return (f"{path}: damaged store ({len(damage)} damaged chunk(s), {len(clips)} done clip(s)): {listed}{more}. "
            + REPAIR_HINT.format(path=path))


def _sizes(files: list[str]) -> np.ndarray:
    """Each file's size; -1 where there is none."""
    out = np.empty(len(files), np.int64)
    for k, file in enumerate(files):
        try:
            out[k] = os.stat(file).st_size
        except FileNotFoundError:
            out[k] = -1
    return out


def time_chunk_steps(hop: float) -> int:
    """Steps in a chunk along time: TIME_CHUNK seconds' worth (10 steps at hop = 1, 40 at 0.25)."""
    return max(1, int(round(TIME_CHUNK / hop)))


def _codecs(level: int = 3) -> list:
    return [ZstdCodec(level=level), Crc32cCodec()]


def _fill(dtype) -> float | int:
    return float("nan") if np.dtype(dtype).kind in "fc" else 0


def building_path(path: Path) -> Path:
    """Where a new store at `path` is built before it is renamed into place."""
    path = Path(path)
    return path.with_name(path.name + ".creating")


def half_made(path: Path) -> bool:
    """A group without clip_ids that holds nothing but metadata: what an earlier version's
    creation left when killed (it wrote the attributes last). Nothing in it was ever done."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        return False
    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:   # unreadable metadata: not recognised, never deleted
        return False
    return "clip_ids" not in attrs and all(f == "zarr.json" for _, _, files in os.walk(path) for f in files)


def create(
    path: Path,
    clip_ids: list[str],
    arrays: dict[str, tuple[tuple[int, ...], str]],
    attrs: dict,
    compression_level: int = 3,
    time_chunk: int = 0,
) -> "FeatureStore":
    """A new store with per-clip arrays `{name: (shape after the clip axis, dtype)}` (the ones the
    workers write); with `time_chunk` > 0 they are chunked along their first axis (time) in
    chunks of that many steps (clips of any length), recorded as attribute time_chunk (0: not
    chunked along time), which FeatureStore.time_chunk reads. Built in building_path(path) and
    renamed into place whole; a leftover of a killed creation there is removed first."""
    path = Path(path)
    n = len(clip_ids)
    if n == 0:
        raise StoreError(f"{path}: no clips to store")
    if half_made(path):
        shutil.rmtree(path)
    if (path / "zarr.json").exists():
        raise StoreError(f"{path}: a store exists there already")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StoreError(f"{path}: exists and is not an avu feature store; move it away or choose another --out")
    tmp = building_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
    for name, (tail, dtype) in arrays.items():
        chunks = (1, time_chunk, *tail[1:]) if time_chunk else (1, *tail)
        group.create_array(name, shape=(n, *tail), chunks=chunks, dtype=dtype,
                           compressors=_codecs(compression_level), fill_value=_fill(dtype))
        _create_checks(group, name, n, -(-tail[0] // time_chunk) if time_chunk else 1)
    for name in SMALL:
        _create_small(group, name, n)
    group.attrs.update({"clip_ids": list(clip_ids), "failures": {}, "cut": {}, "feature_arrays": list(arrays),
                        **attrs, "time_chunk": int(time_chunk)})
    if path.is_dir():
        path.rmdir()                 # an empty folder (checked above)
    os.rename(tmp, path)             # atomic: the store appears whole or not at all
    return FeatureStore(path, mode="r+")


def _create_small(group, name: str, n: int):
    """A SMALL array: one chunk for all n clips, written by the driver only."""
    dtype, fill = SMALL_TYPES[name]
    return group.create_array(name, shape=(n,), chunks=(n,), dtype=dtype, fill_value=fill, compressors=_codecs())


def _create_checks(group, name: str, n: int, time_chunks: int = 1):
    """checks/<name>: (n, 2), or (n, time_chunks, 2) for an array chunked along time."""
    tail = (2,) if time_chunks == 1 else (time_chunks, 2)
    return group.create_array(f"{CHECKS}/{name}", shape=(n, *tail), chunks=(min(n, CHECK_ROWS), *tail),
                              dtype="int64", fill_value=UNRECORDED, compressors=_codecs(), overwrite=True)


class FeatureStore:
    """Reader (and driver-side writer) of one store. Stage two uses only this class.

    >>> fs = FeatureStore("llp.zarr")
    >>> fs.read("audio", fs.split("train")[:64])     # (64, T, 128) float16
    """

    def __init__(self, path: Path | str, mode: str = "r"):
        self.path = Path(path)
        try:
            self.group = zarr.open_group(str(self.path), mode=mode)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            tmp = building_path(self.path)
            raise StoreError(f"{self.path}: no avu feature store here" + (
                f" (its creation in {tmp} was interrupted: run the same `avu extract` command again)"
                if tmp.exists() else "")) from None
        except Exception as err:
            raise StoreError(f"{self.path}/zarr.json: unreadable ({type(err).__name__}: {err})") from None
        self._ids: list[str] | None = None
        self._chunk_keys: dict[str, tuple] = {}
        self._time_chunks: dict[str, int] = {}   # name -> time_chunk(name)
        self._pending: dict[str, dict[int, tuple[int, int]]] = {}   # driver's write_clip records, unwritten
        self._no_picture: np.ndarray | None = None   # (N,) bool: done clips without a picture (read)
        self.read_only = mode == "r"

    # -- metadata
    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    @property
    def clip_ids(self) -> list[str]:
        if self._ids is None:
            if "clip_ids" not in self.group.attrs:
                raise StoreError(f"{self.path}: a half-made store (no clip_ids: its creation was interrupted); "
                                 f"run the same `avu extract` command again to restart it" if half_made(self.path)
                                 else f"{self.path}: a Zarr group that holds data but no clip_ids: not an avu "
                                 f"feature store; move it away or choose another --out")
            self._ids = list(self.group.attrs["clip_ids"])
        return self._ids

    def __len__(self) -> int:
        return len(self.clip_ids)

    def index(self, clip_id: str) -> int:
        try:
            return self.clip_ids.index(clip_id)
        except ValueError:
            raise KeyError(f"{self.path}: no clip {clip_id!r}") from None

    @property
    def arrays(self) -> list[str]:
        return sorted(name for name, _ in self.group.arrays())

    @property
    def feature_arrays(self) -> list[str]:
        """The per-clip arrays the workers write (the others are the driver's)."""
        return list(self.group.attrs.get("feature_arrays", FEATURE_ARRAYS))

    @property
    def has_patches(self) -> bool:
        """The store holds CLIP patch tokens (extracted with patches false: none, no array; the
        grid the CLIP model gives is attrs["patch_grid"] all the same)."""
        return "patches" in self.feature_arrays

    def per_clip_arrays(self) -> list[str]:
        """Arrays chunked one clip per chunk (features and targets; not SMALL, not shared/)."""
        n = len(self)
        return [name for name, arr in sorted(self.group.arrays())
                if name not in SMALL and arr.ndim and arr.shape[0] == n and arr.chunks[0] == 1]

    def time_chunk(self, name: str) -> int:
        """Steps a chunk of `name` holds where it is chunked along time (an any-length store's
        features); 0 for every other array. Decided by what create() recorded (attribute
        time_chunk, the feature_arrays), not by the chunk's size: an axis of exactly one chunk
        (max_seconds = TIME_CHUNK) is chunked along time too, and holds clips shorter than it.
        Stores without the attribute (fixed-T ones made before it was recorded) keep the old
        rule, a chunk shorter than the axis."""
        if name not in self._time_chunks:
            arr = self.group[name]
            shaped = arr.ndim >= 2 and arr.chunks[0] == 1 and name not in SMALL
            recorded = self.group.attrs.get("time_chunk")
            if recorded is not None:      # create() records it (extract did already, for T = 0 stores)
                chunked = shaped and int(recorded) > 0 and name in self.feature_arrays
            else:                         # a store made before create() recorded it: as then
                chunked = shaped and arr.chunks[1] < arr.shape[1]
            self._time_chunks[name] = int(arr.chunks[1]) if chunked else 0
        return self._time_chunks[name]

    def time_chunks(self, name: str) -> int:
        """Chunks a clip has along time in `name` (1 where it is not chunked along time)."""
        C = self.time_chunk(name)
        return -(-self.group[name].shape[1] // C) if C else 1

    @property
    def hop(self) -> float:
        """Seconds per feature step (1 in stores made before it was recorded)."""
        return float(self.group.attrs.get("hop", 1.0))

    def audio_only(self) -> np.ndarray:
        """Indices of the done clips without a picture (visual_length 0: a .wav source)."""
        return np.flatnonzero(self._picture_missing())

    def _picture_missing(self) -> np.ndarray:
        """(N,) bool; kept by a read-only handle (training reads it at every batch), read again by others."""
        if self._no_picture is not None:
            return self._no_picture
        missing = np.zeros(len(self), bool)
        if "visual_length" in self.group:
            missing = (self._read_whole("visual_length") == 0) & (self.status() == DONE)
        if self.read_only:
            self._no_picture = missing
        return missing

    @property
    def cut(self) -> dict[str, int] | None:
        """{clip id: seconds of its picture} of the done clips longer than T (or max_seconds), cut
        there; None for a store made before avu recorded it."""
        cut = self.group.attrs.get("cut")
        return None if cut is None else dict(cut)

    @property
    def random_weights(self) -> bool:
        return bool(self.group.attrs.get("random_weights", False))

    @property
    def failures(self) -> dict[str, str]:
        return dict(self.group.attrs.get("failures", {}))

    def status(self) -> np.ndarray:
        return self._read_whole("status")

    def done(self) -> np.ndarray:
        """Indices of the clips whose arrays are all written."""
        return np.flatnonzero(self.status() == DONE)

    def split(self, name: str, done_only: bool = True) -> np.ndarray:
        """Clip indices of a split ("all" is every clip); by default only the done ones."""
        splits = self.group.attrs.get("splits", {})
        if name == "all" and name not in splits:
            idx = np.arange(len(self))
        elif name in splits:
            idx = np.asarray(splits[name], dtype=np.int64)
        else:
            raise KeyError(f"{self.path}: no split {name!r}; splits: {', '.join(splits) or 'all'}")
        return np.intersect1d(idx, self.done()) if done_only else idx

    # -- data
    def read(self, name: str, indices) -> np.ndarray:
        """Array `name` for the clip indices given (an int, a slice or a sequence). A chunk that
        does not decode (checksum, zstd) raises StoreError naming the array and the clip.

        An array chunked along time (an any-length store's features) is read up to the longest
        of these clips' lengths, zeros past each clip's length (one clip: its own steps);
        clips not done read NaN, as in every other array. Visual and patch rows of audio-only
        clips read zeros."""
        arr = self.group[name]
        try:
            if self.time_chunk(name):
                out = self._read_seconds(arr, indices)
            elif isinstance(indices, (int, np.integer, slice)):
                out = arr[indices]
            else:
                indices = np.asarray(indices, dtype=np.int64)
                if indices.size == 0:
                    return np.zeros((0, *arr.shape[1:]), arr.dtype)
                out = arr.get_orthogonal_selection((indices,) + (slice(None),) * (arr.ndim - 1))
        except IndexError:
            raise
        except Exception as err:
            raise self._read_error(name, indices, err) from None
        return self._zero_no_picture(out, indices) if name in VISUAL_ARRAYS else out

    def _zero_no_picture(self, out: np.ndarray, indices) -> np.ndarray:
        """`out` with the rows of audio-only clips zeroed (their chunks were never written: NaN)."""
        missing = self._picture_missing()[indices]
        if not np.any(missing):
            return out
        if np.ndim(missing) == 0:
            out[...] = 0
        else:
            out[np.asarray(missing)] = 0
        return out

    def _read_seconds(self, arr, indices) -> np.ndarray:
        """An array chunked along time, for `indices`, up to their longest length (read())."""
        single = isinstance(indices, (int, np.integer))
        if single or isinstance(indices, slice):
            idx = np.atleast_1d(np.arange(arr.shape[0])[indices])
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        length = self._read_whole("length")[idx].astype(np.int64)
        # clip by clip into a zeroed batch: twice as fast as one orthogonal selection up to the
        # longest and a mask past each clip's end (BENCHMARKS.md)
        out = np.zeros((len(idx), int(length.max(initial=0)), *arr.shape[2:]), arr.dtype)
        for row, (i, n) in enumerate(zip(idx.tolist(), length.tolist())):
            if n > 0:
                out[row, :n] = arr[i, :n]
            else:                                # not done: NaN, as every other array reads
                out[row] = _fill(arr.dtype)
        return out[0] if single else out

    def _chunk(self, arr, name: str, i: int, k: int) -> np.ndarray:
        """Chunk (i, k) of `name` read alone: clip i's whole chunk, or its k-th chunk along time."""
        C = self.time_chunk(name)
        return arr[i, k * C:(k + 1) * C] if C else arr[i]

    def _read_error(self, name: str, indices, err: Exception) -> StoreError:
        """Which clip of a failed read is damaged (each chunk read alone)."""
        arr = self.group[name]
        if name in SMALL or not arr.ndim or arr.chunks[0] != 1:
            return StoreError(f"{self.path}: array {name!r} is damaged ({type(err).__name__}: {err})")
        if isinstance(indices, slice):
            indices = range(*indices.indices(arr.shape[0]))
        for i in np.unique(np.atleast_1d(np.asarray(indices, dtype=np.int64))):
            for k in range(self.time_chunks(name)):
                try:
                    self._chunk(arr, name, int(i), k)
                except Exception as one:
                    return StoreError(f"{self.path}: array {name!r}, clip {self.clip_ids[i]!r} (index {i}): chunk "
                                      f"{self._chunk_file(name, int(i), k)} is damaged ({type(one).__name__}: "
                                      f"{one}); " + REPAIR_HINT.format(path=self.path))
        return StoreError(f"{self.path}: reading array {name!r} failed ({type(err).__name__}: {err})")

    def _read_whole(self, name: str) -> np.ndarray:
        arr = self.group[name]                  # KeyError where there is no such array
        try:
            return arr[...]
        except Exception as err:
            raise StoreError(f"{self.path}: array {name!r} is damaged ({type(err).__name__}: {err}); the same "
                             f"`avu extract` command with --repair remakes it") from None

    def clip(self, i: int) -> dict[str, np.ndarray]:
        """Every per-clip array of clip `i`."""
        return {name: self.read(name, i) for name in self.arrays if name != "status"}

    # -- integrity
    def _chunk_key(self, name: str) -> tuple:
        """(folder, head, middle, tail): chunk (i, k) of `name` is folder / f"{head}{i}{middle}{k}{tail}"
        (k: the chunk along the second axis); middle None for a 1-d array (f"{head}{i}{tail}"),
        tail None too for a 0-d one (folder / head)."""
        if name not in self._chunk_keys:
            arr = self.group[name]
            if arr.ndim == 0:
                self._chunk_keys[name] = (self.path / arr.path, arr.metadata.encode_chunk_key(()), None, None)
            else:                              # any chunk key encoding writes the indices in decimal
                clip, time = _PROBES
                key = arr.metadata.encode_chunk_key((int(clip),) + ((int(time),) if arr.ndim > 1 else ())
                                                    + (0,) * (arr.ndim - 2))
                head, _, rest = key.partition(clip)
                middle, _, tail = rest.partition(time) if arr.ndim > 1 else (None, "", rest)
                self._chunk_keys[name] = (self.path / arr.path, head, middle, tail)
        return self._chunk_keys[name]

    def _chunk_file(self, name: str, i: int, k: int = 0) -> Path:
        """The file holding clip i's chunk of array `name` (its k-th along time)."""
        base, head, middle, tail = self._chunk_key(name)
        if tail is None:
            return base / head
        return base / (f"{head}{i}{tail}" if middle is None else f"{head}{i}{middle}{k}{tail}")

    def _measure(self, name: str, indices, chunks: list[int] | None = None) -> np.ndarray:
        """(bytes, CRC-32) of each clip's stored chunks of `name`, (rows, K, 2) with K its chunks
        along time (1 for most arrays); (0, 0) where there is none. `chunks`: how many of each
        clip's chunks to look at (the rest are (0, 0)); all by default."""
        K = self.time_chunks(name)
        out = np.zeros((len(indices), K, 2), np.int64)
        for row, i in enumerate(indices):
            for k in range(K if chunks is None else chunks[row]):
                try:
                    data = self._chunk_file(name, int(i), k).read_bytes()
                except FileNotFoundError:
                    continue
                out[row, k] = len(data), zlib.crc32(data)
        return out

    def records(self, name: str) -> np.ndarray | None:
        """checks/<name>: (rows, 2) bytes and CRC-32 of each clip's chunk (of the one chunk of a
        shared/ array; (rows, K, 2) for an array chunked along time), or None where it has none
        (a store made before the records)."""
        self.flush_records()
        key = f"{CHECKS}/{name}"
        return self._read_whole(key) if key in self.group else None

    def _record(self, name: str, indices, values: np.ndarray) -> None:
        """Driver: store the records of clips `indices` (creating checks/<name> if absent)."""
        if not len(indices):
            return
        key = f"{CHECKS}/{name}"
        arr = self.group[key] if key in self.group else \
            _create_checks(self.group, name, 1 if name.startswith("shared/") else len(self), self.time_chunks(name))
        values = np.asarray(values, dtype=np.int64).reshape(len(indices), *arr.shape[1:])
        arr.set_orthogonal_selection((np.asarray(indices, dtype=np.int64),) + (slice(None),) * (arr.ndim - 1), values)

    def check(self, full: bool = False, indices=None, arrays=None) -> list[Damage]:
        """Damaged chunks of the done clips (or of `indices`) in the per-clip arrays (or `arrays`),
        and of the shared/ arrays. Quick (default): every chunk file is there with the byte count
        recorded when it was written (one stat a chunk), and every done clip has a length. full:
        also the CRC-32 of the bytes, and a decode of each chunk that has no record. An array
        chunked along time: the chunks a done clip's length reaches."""
        self.flush_records()
        clips = self.done() if indices is None else np.asarray(indices, dtype=np.int64)
        features = set(self.feature_arrays)
        damage: list[Damage] = []
        names = self.per_clip_arrays() if arrays is None else list(arrays)
        shared = [f"shared/{n}" for n, _ in self._shared_arrays()] if arrays is None else []
        for name in names + shared:
            try:
                rec = self.records(name)
            except StoreError as err:
                damage.append(Damage(f"{CHECKS}/{name}", f"records unreadable ({err})"))
                rec = None
            arr, per_clip = self.group[name], name in names
            rec = None if rec is None else rec.reshape(len(rec), -1, 2)      # (rows, K, 2)
            rows, ks = self._cells(name, clips) if per_clip else (np.zeros(1, np.int64),) * 2
            if not full:                        # one stat a chunk; reasons only where sizes disagree
                keep = self._suspect(name, rows, ks, rec, name in features)
                rows, ks = rows[keep], ks[keep]
            for i, k in zip(rows.tolist(), ks.tolist()):
                reason = self._check_chunk(arr, name, i, k, None if rec is None else rec[i, k], full,
                                           name in features)
                if reason:
                    damage.append(Damage(name, reason, i, self.clip_ids[i]) if per_clip else Damage(name, reason))
        if arrays is None and "length" in self.group:
            try:
                length = self._read_whole("length")
            except StoreError as err:
                return damage + [Damage("length", str(err))]
            for i in np.intersect1d(clips, self.done()):
                if length[i] <= 0:
                    damage.append(Damage("length", f"a done clip of length {length[i]} (the length chunk lost?)",
                                         int(i), self.clip_ids[i]))
        return damage

    def _cells(self, name: str, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(clip, chunk along time) of each chunk of `clips` to check: (clip, 0) for an array not
        chunked along time; else the chunks each clip's length reaches (all of them where the
        lengths are unreadable: check() reports that too)."""
        C = self.time_chunk(name)
        if not C:
            return clips, np.zeros(len(clips), np.int64)
        K = self.time_chunks(name)
        try:
            n = np.clip(-(-self._read_whole("length")[clips].astype(np.int64) // C), 0, K)
        except StoreError:
            n = np.full(len(clips), K)
        ks = np.concatenate([np.arange(m) for m in n.tolist()]) if len(clips) else np.zeros(0, np.int64)
        return np.repeat(clips, n), ks.astype(np.int64)

    def _suspect(self, name: str, rows: np.ndarray, ks: np.ndarray, rec, feature: bool) -> np.ndarray:
        """Mask of the chunks (rows[j], ks[j]) whose file's size (or absence) disagrees with the record."""
        base, head, middle, tail = self._chunk_key(name)
        prefix = f"{base}/{head}"
        if tail is None:
            files = [prefix] * len(rows)
        elif middle is None:
            files = [f"{prefix}{i}{tail}" for i in rows.tolist()]
        else:
            files = [f"{prefix}{i}{middle}{k}{tail}" for i, k in zip(rows.tolist(), ks.tolist())]
        parts = [files[k:k + STAT_BATCH] for k in range(0, len(files), STAT_BATCH)]
        if len(parts) > 1:                      # stat waits on the filesystem (network ones: ~1 ms)
            with ThreadPoolExecutor(STAT_THREADS) as pool:
                sizes = np.concatenate(list(pool.map(_sizes, parts)))
        else:
            sizes = _sizes(files)
        nbytes = rec[rows, ks, 0] if rec is not None else np.full(len(rows), UNRECORDED)
        return (((nbytes > 0) & (sizes != nbytes)) | ((nbytes == NO_CHUNK) & (sizes >= 0))
                | ((nbytes == UNRECORDED) & feature & (sizes < 0)))

    def _check_chunk(self, arr, name: str, i: int, k: int, rec, full: bool, feature: bool) -> str | None:
        """What is wrong with chunk (i, k) of `name` (None: nothing found), given its record."""
        nbytes, crc = (int(rec[0]), int(rec[1])) if rec is not None else (UNRECORDED, 0)
        file = self._chunk_file(name, i, k)
        try:
            data = file.read_bytes() if full else None
            size = len(data) if full else os.stat(file).st_size
        except FileNotFoundError:
            size = None
        reason = None
        if nbytes > 0:
            if size is None:
                reason = "chunk file missing"
            elif size != nbytes:
                reason = f"chunk file is {size} bytes, {nbytes} were written (truncated or overwritten)"
            elif full and zlib.crc32(data) != crc:
                reason = "chunk bytes changed (CRC-32 differs from the one recorded)"
        elif nbytes == NO_CHUNK:
            if size is not None:
                reason = f"a chunk file of {size} bytes where none was written"
        elif feature and size is None:       # unrecorded: a feature chunk is never all fill
            reason = "chunk file missing (no record of this clip: the store predates the records)"
        elif full and size is not None:
            try:
                self._chunk(arr, name, i, k) if arr.ndim else arr[...]
            except Exception as err:
                reason = f"chunk does not decode ({type(err).__name__}: {err})"
        return f"{reason}: {file}" if reason else None

    def rebuild_records(self, name: str, skip: set[int] = frozenset()) -> None:
        """Driver (--repair): checks/<name> remade from the chunks of the done clips (for a
        shared/ array: its one chunk) not in `skip` (those found damaged, which are written again
        and recorded then)."""
        key = f"{CHECKS}/{name}"
        if key in self.group:
            del self.group[key]
        keep = [0] if name.startswith("shared/") else [int(i) for i in self.done()]
        keep = [i for i in keep if i not in skip]
        self._record(name, keep, self._measure(name, keep))

    def verify(self) -> list[Damage]:
        """Every chunk of every done clip read and checked (check(full=True))."""
        return self.check(full=True)

    def _shared_arrays(self) -> list:
        return list(self.group["shared"].arrays()) if "shared" in self.group else []

    # -- writing (workers: write_clip; driver: the rest)
    def write_clip(self, i: int, values: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
        """Write clip i's chunks; returns each one's (bytes, CRC-32) as stored. Those of the
        feature arrays go back to the driver (mark_done records them); those of the driver's own
        arrays (targets: only the driver writes them) are kept and recorded at the next put,
        set_attrs, mark_done or check (flush_records): one write for all clips, not one each."""
        checks = {}
        for name, value in values.items():
            if name in SMALL:
                raise StoreError(f"{name} is written by the driver only")
            C = self.time_chunk(name)
            if C:
                checks[name] = self._write_seconds(name, i, value, C)
            else:
                self.group[name][i] = value
                checks[name] = tuple(int(v) for v in self._measure(name, [i])[0, 0])
        features = set(self.feature_arrays)
        for name, value in checks.items():
            if name not in features:
                self._pending.setdefault(name, {})[int(i)] = value
        return checks

    def _write_seconds(self, name: str, i: int, value: np.ndarray, C: int) -> list[list[int]]:
        """Clip i's seconds of an array chunked along time: whole chunks (the last one's tail NaN,
        so zarr never reads back a chunk written before), none past them. Their records, (K, 2)."""
        arr = self.group[name]
        if len(value) > arr.shape[1] or len(value) == 0:
            raise StoreError(f"{self.path}: {name}: clip {self.clip_ids[i]!r} has {len(value)} steps; "
                             f"the store holds 1 to {arr.shape[1]}")
        n = -(-len(value) // C)
        end = min(n * C, arr.shape[1])
        block = np.full((end, *value.shape[1:]), _fill(arr.dtype), arr.dtype)
        block[:len(value)] = value
        arr[i, :end] = block
        return self._measure(name, [i], [n])[0].tolist()

    def absent(self, i: int, names: list[str]) -> dict[str, object]:
        """Clip i has no chunk of arrays `names` (an audio-only clip's visual and patches): any
        file there removed (--repair of a stray one), and records saying so, (0, 0) one per time
        chunk, returned to the driver as write_clip's are."""
        for name in names:
            for k in range(self.time_chunks(name)):
                self._chunk_file(name, i, k).unlink(missing_ok=True)
        return {name: [[NO_CHUNK, 0]] * self.time_chunks(name) if self.time_chunk(name) else (NO_CHUNK, 0)
                for name in names}

    def flush_records(self) -> None:
        """Driver: write the records kept by write_clip."""
        pending, self._pending = self._pending, {}
        for name, rows in pending.items():
            self._record(name, list(rows), list(rows.values()))

    def mark_done(self, indices: list[int], lengths: list[int],
                  checks: list[dict[str, tuple[int, int]]] | None = None,
                  audio_lengths: list[int] | None = None, visual_lengths: list[int] | None = None,
                  source_seconds: list[int] | None = None) -> None:
        """Driver: clips done, with their lengths, their real seconds per modality, (from
        write_clip) their chunks' records and the seconds of their pictures in the files: those
        longer than their length were cut (attribute `cut`)."""
        if not indices:
            return
        self.flush_records()
        for name in sorted({n for c in checks or () for n in c}):   # records, lengths, then status
            rows = [(i, c[name]) for i, c in zip(indices, checks) if name in c]
            self._record(name, [i for i, _ in rows], [v for _, v in rows])
        for name, values in zip(MODALITY_LENGTHS, (audio_lengths, visual_lengths)):
            if values is not None:
                if name not in self.group:       # a store made before they were recorded: -1 = not known
                    _create_small(self.group, name, len(self))
                column = self._read_whole(name)
                column[indices] = values
                self.group[name][:] = column
        length, status = self._read_whole("length"), self.status()
        length[indices], status[indices] = lengths, DONE
        self.group["length"][:] = length        # lengths before status: done implies length
        self.group["status"][:] = status
        failures = self.failures
        if any(self.clip_ids[i] in failures for i in indices):
            for i in indices:
                failures.pop(self.clip_ids[i], None)
            self.group.attrs["failures"] = failures
        if source_seconds is not None:
            before = self.cut
            cut = dict(before or {})
            for i, n, seconds in zip(indices, lengths, source_seconds):
                cut.pop(self.clip_ids[i], None)
                if seconds > n:
                    cut[self.clip_ids[i]] = int(seconds)
            if cut != before:
                self.group.attrs["cut"] = cut

    def mark_pending(self, indices: list[int]) -> None:
        """Driver: clips to extract again (--repair)."""
        if not len(indices):
            return
        status = self.status()
        status[list(indices)] = PENDING
        self.group["status"][:] = status

    def reset_small(self, name: str) -> None:
        """Driver (--repair): rewrite an unreadable SMALL array with its fill value (no clip done)."""
        arr = self.group[name]
        arr[...] = np.full(arr.shape, arr.metadata.fill_value, arr.dtype)

    def mark_failed(self, reasons: dict[int, str]) -> None:
        if not reasons:
            return
        status = self.status()
        status[list(reasons)] = FAILED
        failures = self.failures
        failures.update({self.clip_ids[i]: msg for i, msg in reasons.items()})
        self.group.attrs["failures"] = failures
        self.group["status"][:] = status

    def put(self, name: str, values: np.ndarray, per_clip: bool = True) -> None:
        """Write a whole array from the driver (targets, ground truth, text embeddings),
        replacing one of the same name. Per-clip arrays (first axis = clips) live at the top
        level, chunked one clip per chunk; other arrays under `shared/`, one chunk. Both are
        recorded (checks/<name>, checks/shared/<name>)."""
        self.flush_records()
        values = np.asarray(values)
        if per_clip and (values.ndim == 0 or len(values) != len(self)):
            raise StoreError(f"{name}: per-clip array needs {len(self)} rows, got shape {values.shape}")
        key = name if per_clip else f"shared/{name}"
        arr = self.group.create_array(key, shape=values.shape, dtype=values.dtype, overwrite=True,
                                      chunks=(1, *values.shape[1:]) if per_clip else values.shape,
                                      compressors=_codecs(), fill_value=_fill(values.dtype) if per_clip else 0)
        _create_checks(self.group, key, len(self) if per_clip else 1)   # the old records go with the old array
        arr[...] = values
        self._chunk_keys.pop(key, None)
        self._time_chunks.pop(key, None)
        rows = np.arange(len(self) if per_clip else 1)
        self._record(key, rows, self._measure(key, rows))

    def shared(self, name: str) -> np.ndarray:
        """A non-per-clip array written with put(per_clip=False), e.g. text embeddings."""
        return self._read_whole(f"shared/{name}")

    def set_attrs(self, **values) -> None:
        self.flush_records()            # e.g. targets_fingerprint: set once the targets are recorded
        self.group.attrs.update(values)
