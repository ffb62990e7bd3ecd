"""The feature store: one Zarr v3 group per dataset. The only module that imports zarr.

Layout (N clips, T segments, P patches, D CLIP width):
    audio       (N, T, 128)   float16   VGGish embedding of second t
    visual      (N, T, D)     float16   CLIP [CLS] of the frame of second t (projected)
    patches     (N, T, P, D)  float16   CLIP patch tokens (projected, pooled to the grid)
    length      (N,)          int16     seconds of real content (the rest is padding)
    audio_length  (N,)        int16     seconds of real audio from second 0 (-1: not recorded)
    visual_length (N,)        int16     seconds of real picture from second 0 (decode.py)
    status      (N,)          int8      0 pending, 1 done, 2 failed
Per-clip arrays are chunked one clip per chunk, so parallel workers never share a chunk.
Workers write the feature chunks of their clips; only the driver writes `length`, `status`
and the attributes, and it marks a clip done after its worker returned, that is after all
of the clip's arrays were written. Zarr's local store writes each chunk atomically, so a
killed run leaves every chunk whole.
Attributes: clip_ids, sources, splits, failures ({clip_id: reason}) and provenance
(avu version, encoders with weight hashes or "random", fps, sample rate, T, patch grid, config).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

PENDING, DONE, FAILED = 0, 1, 2
SMALL = ("length", "audio_length", "visual_length", "status")   # written by the driver only
MODALITY_LENGTHS = ("audio_length", "visual_length")


class StoreError(RuntimeError):
    """The store is missing, incomplete, or was made with other settings."""


def create(
    path: Path,
    clip_ids: list[str],
    arrays: dict[str, tuple[tuple[int, ...], str]],
    attrs: dict,
    compression_level: int = 3,
) -> "FeatureStore":
    """A new store with per-clip arrays `{name: (shape after the clip axis, dtype)}`."""
    n = len(clip_ids)
    if n == 0:
        raise StoreError(f"{path}: no clips to store")
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    codec = ZstdCodec(level=compression_level)
    for name, (tail, dtype) in arrays.items():
        group.create_array(name, shape=(n, *tail), chunks=(1, *tail), dtype=dtype,
                           compressors=codec, fill_value=0)
    group.create_array("length", shape=(n,), chunks=(n,), dtype="int16", fill_value=0)
    for name in MODALITY_LENGTHS:
        group.create_array(name, shape=(n,), chunks=(n,), dtype="int16", fill_value=-1)
    group.create_array("status", shape=(n,), chunks=(n,), dtype="int8", fill_value=PENDING)
    group.attrs.update({"clip_ids": list(clip_ids), "failures": {}, **attrs})
    return FeatureStore(path, mode="r+")


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
            raise StoreError(f"{self.path}: no avu feature store here") from None
        self._ids: list[str] | None = None

    # -- metadata
    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    @property
    def clip_ids(self) -> list[str]:
        if self._ids is None:
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
    def random_weights(self) -> bool:
        return bool(self.group.attrs.get("random_weights", False))

    @property
    def failures(self) -> dict[str, str]:
        return dict(self.group.attrs.get("failures", {}))

    def status(self) -> np.ndarray:
        return self.group["status"][:]

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
        """Array `name` for the clip indices given (an int, a slice or a sequence)."""
        arr = self.group[name]
        if isinstance(indices, (int, np.integer, slice)):
            return arr[indices]
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.zeros((0, *arr.shape[1:]), arr.dtype)
        return arr.get_orthogonal_selection((indices,) + (slice(None),) * (arr.ndim - 1))

    def clip(self, i: int) -> dict[str, np.ndarray]:
        """Every per-clip array of clip `i`."""
        return {name: self.group[name][i] for name in self.arrays if name != "status"}

    # -- writing (workers: write_clip; driver: the rest)
    def write_clip(self, i: int, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            if name in SMALL:
                raise StoreError(f"{name} is written by the driver only")
            self.group[name][i] = value

    def mark_done(self, indices: list[int], lengths: list[int], audio_lengths: list[int] | None = None,
                  visual_lengths: list[int] | None = None) -> None:
        if not indices:
            return
        for name, values in zip(MODALITY_LENGTHS, (audio_lengths, visual_lengths)):
            if values is not None:
                if name not in self.group:       # a store made before they were recorded: -1 = not known
                    self.group.create_array(name, shape=(len(self),), chunks=(len(self),), dtype="int16",
                                            fill_value=-1)
                column = self.group[name][:]
                column[indices] = values
                self.group[name][:] = column
        length, status = self.group["length"][:], self.group["status"][:]
        length[indices], status[indices] = lengths, DONE
        self.group["length"][:] = length        # lengths before status: done implies length
        self.group["status"][:] = status
        failures = self.failures
        if any(self.clip_ids[i] in failures for i in indices):
            for i in indices:
                failures.pop(self.clip_ids[i], None)
            self.group.attrs["failures"] = failures

    def mark_failed(self, reasons: dict[int, str]) -> None:
        if not reasons:
            return
        status = self.group["status"][:]
        status[list(reasons)] = FAILED
        failures = self.failures
        failures.update({self.clip_ids[i]: msg for i, msg in reasons.items()})
        self.group.attrs["failures"] = failures
        self.group["status"][:] = status

    def put(self, name: str, values: np.ndarray, per_clip: bool = True) -> None:
        """Write a whole array from the driver (targets, ground truth, text embeddings),
        replacing one of the same name. Per-clip arrays (first axis = clips) live at the top
        level, chunked one clip per chunk; other arrays under `shared/`."""
        values = np.asarray(values)
        if per_clip and (values.ndim == 0 or len(values) != len(self)):
            raise StoreError(f"{name}: per-clip array needs {len(self)} rows, got shape {values.shape}")
        key = name if per_clip else f"shared/{name}"
        arr = self.group.create_array(key, shape=values.shape, dtype=values.dtype, overwrite=True,
                                      chunks=(1, *values.shape[1:]) if per_clip else values.shape,
                                      compressors=ZstdCodec(level=3), fill_value=0)
        arr[...] = values

    def shared(self, name: str) -> np.ndarray:
        """A non-per-clip array written with put(per_clip=False), e.g. text embeddings."""
        return self.group[f"shared/{name}"][...]

    def set_attrs(self, **values) -> None:
        self.group.attrs.update(values)
