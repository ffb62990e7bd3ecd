"""Stage one driver: decode -> CLIP + VGGish -> Zarr, clip batches spread over Dask workers.

A task is a handful of clips. Its worker decodes them in background threads while it encodes
the ones already decoded (frames of several clips go through CLIP together), writes each
clip's feature chunks, and returns one result per clip. A bad clip never raises out of a
task: its reason comes back and the driver records it. The driver is the only writer of
`status`, `length`, `checks/` and the attributes, and marks a clip done when its task has
returned; each clip's result carries the byte count and CRC-32 of the chunks its worker wrote,
which the driver records with it (store.py). With `repair`, the driver first verifies every
chunk of the done clips and extracts the damaged ones again (prepare_repair).

Steps: features are computed every `hop` seconds (decode.py, encoders.py): the setting `hop`
maps a benchmark (or `videos`, for --videos) to its step, a benchmark left out taking its
adapter's (feature_hop). T and max_seconds stay seconds; the store counts steps (T / hop
a clip, max_seconds / hop at most) and records attrs["hop"]. hop = 1 makes the stores it
always made, bit for bit.

T = 0 keeps every whole step of each video, up to max_seconds: the store's feature arrays
are (N, max_seconds / hop, ...) chunked along time (store.py), a clip's frames go through
CLIP in batches of clip_batch, and its audio through VGGish alone, all its steps in one call.
Nothing is cut silently: a video whose picture is longer than T (or max_seconds) is counted
and named in the summary (`cut`) and in the store's `cut` attribute. A fixed T (every
--dataset but the dense ones) makes the stores it always made.

Patches: the setting `patches` maps a benchmark (or `videos`) to whether its store holds CLIP
patch tokens, a benchmark left out taking its adapter's (feature_patches: the dense three
none, their heads read none; patches are ~98 % of a store's bytes). A store without them has
no `patches` array (nor its records), and its workers neither project, pool, copy nor write
them; its audio and visual features are those of a store with them, bit for bit.

Blocks (T = 0, decode_block > 0, the default): a video is decoded `decode_block` steps at a
time (decode.decode_blocks) and its frames go through CLIP as they come (_process_blocks), in
the very batches the whole-video path makes, so the store is the same bit for bit
(tests/test_blocks.py) while a worker holds a few blocks of frames, not a 10-minute video's
(benchmarks/bench_blocks.py). decode_block = 0 decodes each video whole first, as before.

Audio-only sources (a .wav path: DESED) have no frames: only their audio chunks are written,
their visual and patch chunks are recorded as absent (store.py) and visual_length is 0.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from . import __version__
from .config import ExtractConfig, as_dict, resolve_path
from .decode import Blocks, DecodeError, decode_source, decode_source_blocks, is_audio_only, shortfall
from .encoders import (
    CLIP_URLS, VGGISH_URL, ClipEncoder, VGGishEncoder, WeightsError, clip_preprocess,
    file_sha256, missing_weights_message, precision_dtype,
)
from .store import (
    CHECKS, DONE, FAILED, PENDING, Damage, FeatureStore, StoreError, create, damage_message, half_made,
    time_chunk_steps,
)

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg"}
# settings that change the features: a store made with other values cannot be resumed
FEATURE_KEYS = ("T", "sample_rate", "clip_model", "patch_grid", "random_weights", "precision")
ANY_LENGTH_KEYS = ("max_seconds",)           # feature settings of T = 0 stores only
FEATURE_DEFAULTS = {"precision": "fp32", "hop": 1.0, "patches": True}   # what stores made before a key existed used
VIDEOS = "videos"                            # the `hop` key of --videos


@dataclass(frozen=True)
class EncoderSpec:
    """What a worker needs to build its encoders (hashable: the per-process cache key)."""

    clip_model: str
    clip_weights: str | None      # None: random weights, seeded
    vggish_weights: str | None
    patch_grid: int
    device: str
    threads: int = 0
    seed: int = 0
    precision: str = "fp32"
    keep_freed_memory: bool = True


@dataclass
class ClipResult:
    index: int
    ok: bool
    length: int = 0
    backend: str = ""
    error: str = ""
    audio_length: int = 0
    visual_length: int = 0
    source_seconds: int = 0           # the picture's seconds in the file (> length: cut)
    checks: dict[str, tuple[int, int]] = field(default_factory=dict)   # array -> (bytes, CRC-32) written


@dataclass
class Summary:
    total: int
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    failed_before: dict[str, str] = field(default_factory=dict)
    ffmpeg_fallbacks: int = 0
    short_audio: dict[str, str] = field(default_factory=dict)     # audio padded with silence to the picture
    short_picture: dict[str, str] = field(default_factory=dict)   # picture ends before the audio
    cut: dict[str, str] = field(default_factory=dict)             # longer than T (or max_seconds): cut there
    audio_only: int = 0              # clips done now whose source has no picture (.wav)
    hop: float = 1.0                 # seconds per feature step
    patches: bool = True             # the store holds patch tokens (feature_patches)
    seconds: float = 0.0
    startup_seconds: float = 0.0     # starting workers and building their encoders
    shutdown_seconds: float = 0.0    # closing the local Dask cluster
    random_weights: bool = False
    repaired: dict[str, str] = field(default_factory=dict)   # clip id -> what was damaged (--repair)
    damaged: dict[str, str] = field(default_factory=dict)    # found by the quick check, not repaired


def list_videos(folder: Path) -> list[Path]:
    """Video files under `folder`, sorted; zero-byte files included so that they get reported."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of videos")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def clip_ids_for(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).with_suffix("").as_posix() for p in paths]


def feature_hop(cfg: ExtractConfig, task: str = VIDEOS) -> float:
    """Seconds per feature step of `task` (a benchmark, or "videos"): the setting `hop` where it
    names the task, else the benchmark's adapter's (Adapter.hop), else 1. Checked: known
    names, positive numbers, a whole number of audio samples a step."""
    from .config import ConfigError
    from .decode import step_samples

    hop = _by_benchmark(cfg, "hop", task, "seconds, e.g. {unav100: 0.5}", 1.0)
    if isinstance(hop, bool) or not isinstance(hop, (int, float)):
        raise ConfigError(f"hop.{task}: expected seconds (a number), got {hop!r}")
    try:
        step_samples(float(hop), cfg.sample_rate)
    except ValueError as err:
        raise ConfigError(f"hop.{task}: {err}") from None
    return float(hop)


def feature_patches(cfg: ExtractConfig, task: str = VIDEOS) -> bool:
    """Whether the store of `task` (a benchmark, or "videos") holds patch tokens: the setting
    `patches` where it names the task, else the benchmark's adapter's (Adapter.patches), else
    True. Checked: known names, true or false."""
    from .config import ConfigError

    value = _by_benchmark(cfg, "patches", task, "true/false, e.g. {llp: false}", True)
    if not isinstance(value, bool):
        raise ConfigError(f"patches.{task}: expected true or false, got {value!r}")
    return value


def _by_benchmark(cfg: ExtractConfig, setting: str, task: str, expected: str, default):
    """The value for `task` of a setting given by benchmark (hop, patches): the mapping's entry
    where it names the task, else the benchmark's adapter's attribute of the same name, else
    `default` ("videos"). The mapping is checked: a mapping, of known names."""
    from .config import ConfigError
    from .datasets import ADAPTERS

    mapping = getattr(cfg, setting)
    if not isinstance(mapping, dict):
        raise ConfigError(f"{setting}: expected a mapping of benchmark (or {VIDEOS!r}) to {expected}; "
                          f"got {mapping!r}")
    unknown = sorted(set(map(str, mapping)) - set(ADAPTERS) - {VIDEOS})
    if unknown:
        raise ConfigError(f"{setting}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join([*ADAPTERS, VIDEOS])}")
    return mapping.get(task, getattr(ADAPTERS[task], setting) if task in ADAPTERS else default)


def steps_of(seconds: int, hop: float, what: str) -> int:
    """Whole steps of `hop` in `seconds` (T must be a whole number of them; max_seconds is floored)."""
    steps = seconds / hop
    if what == "T" and abs(steps - round(steps)) > 1e-6:
        raise ValueError(f"T = {seconds} s is not a whole number of {hop:g} s steps")
    return int(round(steps)) if abs(steps - round(steps)) <= 1e-6 else int(steps)


# ----------------------------------------------------------------------------- weights


def resolve_weights(cfg: ExtractConfig, device: str, threads: int = 0) -> tuple[EncoderSpec, dict]:
    """Check the weight files before any work starts; the encoders' provenance for the store."""
    precision_dtype(cfg.precision)

    def spec_for(clip_weights: str | None, vggish_weights: str | None) -> EncoderSpec:
        return EncoderSpec(cfg.clip_model, clip_weights, vggish_weights, cfg.patch_grid, device, threads,
                           precision=cfg.precision, keep_freed_memory=cfg.keep_freed_memory)

    if cfg.random_weights:
        spec = spec_for(None, None)
        return spec, {"clip": {"model": cfg.clip_model, "weights": "random", "seed": spec.seed},
                      "vggish": {"weights": "random", "seed": spec.seed + 1}}
    clip_path, vgg_path = resolve_path(cfg.clip_weights), resolve_path(cfg.vggish_weights)
    for what, path, setting, url in (
        ("CLIP", clip_path, "clip_weights", CLIP_URLS.get(cfg.clip_model)),
        ("VGGish", vgg_path, "vggish_weights", VGGISH_URL),
    ):
        if path.is_file():
            continue
        if cfg.download and what == "CLIP" and not url:
            continue                      # open_clip fetches it by its pretrained tag
        if not (cfg.download and url):
            raise WeightsError(missing_weights_message(f"{what} ({cfg.clip_model})" if what == "CLIP" else what,
                                                       path, setting, url))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path))
    by_tag = not clip_path.is_file()
    clip_source = cfg.clip_pretrained_tag if by_tag else str(clip_path)
    spec = spec_for(clip_source, str(vgg_path))
    clip_info = ({"weights": f"open_clip:{clip_source}"} if by_tag
                 else {"weights": clip_path.name, "sha256": file_sha256(clip_path)})
    return spec, {
        "clip": {"model": cfg.clip_model, **clip_info},
        "vggish": {"weights": vgg_path.name, "sha256": file_sha256(vgg_path)},
    }


def _worker_device(device: str) -> str:
    """'auto' -> the GPU of this Dask worker (one worker per GPU), else the CPU."""
    if device != "auto":
        return device
    if not torch.cuda.is_available():
        return "cpu"
    name = _worker_name
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        pass
    try:
        return f"cuda:{int(name) % torch.cuda.device_count()}"
    except (TypeError, ValueError):   # not a numbered local worker: its CUDA_VISIBLE_DEVICES decides
        return "cuda"


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_KEEP_BYTES = 1 << 30


def keep_freed_memory(limit: int = HEAP_KEEP_BYTES) -> bool:
    """Let glibc keep freed blocks of up to `limit` bytes in this process's heap.

    A batch of 80 VGGish examples allocates and frees activations of 30-125 MB in every layer.
    glibc serves blocks over 32 MB with mmap and unmaps them on free, and Dask's workers
    return freed memory to the system beyond 64 KB (MALLOC_TRIM_THRESHOLD_), so every batch
    page-faults its activations in again: ~20 ms of kernel time a clip, 35-45 ms in a Dask
    worker (BENCHMARKS.md). The process keeps its peak heap instead. Returns False where the C
    library is not glibc (nothing is changed there)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, limit) and libc.mallopt(_M_TRIM_THRESHOLD, limit))
    except (OSError, AttributeError):
        return False


@lru_cache(maxsize=2)
def load_encoders(spec: EncoderSpec) -> tuple[ClipEncoder, VGGishEncoder]:
    """Built once per process (worker), never per clip."""
    if spec.keep_freed_memory:
        keep_freed_memory()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = _worker_device(spec.device)
    torch.manual_seed(spec.seed)            # random weights are identical in every worker and run
    clip = ClipEncoder(spec.clip_model, spec.clip_weights, device, spec.patch_grid, spec.precision)
    torch.manual_seed(spec.seed + 1)
    return clip, VGGishEncoder(spec.vggish_weights, device, spec.precision)


# ----------------------------------------------------------------------------- the task


def _encode_frames(clip: ClipEncoder, frames: list[np.ndarray], batch: int = 0,
                   patches: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames of several clips -> (cls, patches) float16, rows in order; `batch` > 0: preprocessed
    and encoded that many at a time, else all at once. patches=False: (cls, None), the patch
    tokens neither projected, pooled nor copied."""
    step = batch or max(len(f) for f in frames)
    pixels = torch.cat([
        clip_preprocess(torch.from_numpy(f[k:k + step]).to(clip.device), clip.image_size, clip.mean, clip.std)
        for f in frames for k in range(0, len(f), step)
    ])                                                                    # (frames, 3, S, S)
    parts = [clip.encode_frames(pixels[k:k + step], patches) for k in range(0, len(pixels), step)] if batch else \
        [clip.encode_frames(pixels, patches)]
    return (torch.cat([c for c, _ in parts]).half().cpu().numpy(),
            torch.cat([p for _, p in parts]).half().cpu().numpy() if patches else None)


def _split(decoded: list, audio: list[np.ndarray], cls: np.ndarray | None, patches: np.ndarray | None) -> list[dict]:
    """Per-clip feature dicts: the frames' rows in order of the clips that have a picture (no
    `patches` where `patches` is None)."""
    out, start = [], 0
    for d, a in zip(decoded, audio):
        values = {"audio": a}
        if not d.audio_only:
            values["visual"] = cls[start:start + d.steps]
            if patches is not None:
                values["patches"] = patches[start:start + d.steps]
            start += d.steps
        out.append(values)
    return out


def _encode(clip: ClipEncoder, vggish: VGGishEncoder, decoded: list, T: int, sr: int, hop: float = 1.0,
            patches: bool = True) -> list[dict]:
    """Clips of T steps: the frames of all of them through CLIP together, their audio through
    VGGish together (every step of every clip in one call). Audio-only clips skip CLIP."""
    video = [d.frames for d in decoded if not d.audio_only]
    cls, patches = _encode_frames(clip, video, patches=patches) if video else (None, None)
    audio = vggish(torch.from_numpy(np.stack([d.audio for d in decoded])), T, sr, hop=hop)   # (n, T, 128)
    return _split(decoded, list(audio.half().cpu().numpy()), cls, patches)


def _encode_seconds(clip: ClipEncoder, vggish: VGGishEncoder, decoded: list, sr: int, batch: int,
                    hop: float = 1.0, patches: bool = True) -> list[dict]:
    """Clips of their own lengths (T = 0): frames preprocessed and encoded `batch` at a time (a
    600 s clip is 600 frames), each clip's audio through VGGish alone, all its steps in one call
    (no padding to the longest)."""
    video = [d.frames for d in decoded if not d.audio_only]
    cls, patches = _encode_frames(clip, video, batch, patches) if video else (None, None)
    return _split(decoded, _audio_seconds(vggish, decoded, sr, hop), cls, patches)


def _audio_seconds(vggish: VGGishEncoder, decoded: list, sr: int, hop: float) -> list[np.ndarray]:
    """Each clip's audio through VGGish alone, all its own steps in one call (float16)."""
    return [vggish(torch.from_numpy(d.audio[None]), d.steps, sr, hop=hop)[0].half().cpu().numpy() for d in decoded]


def process_clips(store_path: str, items: list[tuple[int, str]], cfg: ExtractConfig,
                  spec: EncoderSpec, hop: float = 1.0) -> list[ClipResult]:
    """Decode, encode and write the clips `items` = [(index, source)] at steps of `hop` seconds;
    never raises per clip.

    A source is a video path, an audio path (.wav) or {"frames": [...], "audio": path} (see
    decode.decode_source)."""
    clip, vggish = load_encoders(spec)
    store = FeatureStore(store_path, mode="r+")
    T = steps_of(cfg.T, hop, "T")
    patches = "patches" in store.feature_arrays        # a store made without them: CLIP's [CLS] only
    if T == 0 and cfg.decode_block > 0 and cfg.clip_batch > 0:
        return _process_blocks(store, items, cfg, clip, vggish, hop, patches)
    steps_per_batch = max(cfg.clip_batch, T)
    results, ready = [], []

    def flush() -> None:
        decoded = [d for _, d in ready]
        results.extend(_write(store, ready, lambda: (
            _encode(clip, vggish, decoded, T, cfg.sample_rate, hop, patches) if T else
            _encode_seconds(clip, vggish, decoded, cfg.sample_rate, cfg.clip_batch, hop, patches))))
        ready.clear()

    with ThreadPoolExecutor(max(1, cfg.decode_threads)) as pool:
        limit = T or steps_of(cfg.max_seconds, hop, "max_seconds")
        futures = [(i, p, pool.submit(decode_source, p, limit, cfg.sample_rate, cfg.decoder, pad=T > 0, hop=hop))
                   for i, p in items]
        for i, p, fut in futures:                 # encode what is decoded while the rest decodes
            try:
                ready.append((i, fut.result()))
            except DecodeError as err:
                results.append(ClipResult(i, False, error=str(err)))
            except Exception as err:
                results.append(ClipResult(i, False, error=f"{p}: {type(err).__name__}: {err}"))
            if sum(d.steps for _, d in ready) >= steps_per_batch:
                flush()
        if ready:
            flush()
    return results


def _write(store: FeatureStore, ready: list, encode: Callable[[], list[dict]]) -> list[ClipResult]:
    """Encode the clips `ready` = [(index, Decoded)] (encode() gives their feature dicts) and
    write them: one result each. An encoder or write failure fails these clips, not the run."""
    results = []
    try:
        for (i, d), values in zip(ready, encode()):
            checks = {**store.absent(i, [n for n in store.feature_arrays if n not in values]),
                      **store.write_clip(i, values)}
            results.append(ClipResult(i, True, d.length, d.backend, audio_length=d.audio_length,
                                      visual_length=d.visual_length, source_seconds=d.source_seconds,
                                      checks=checks))
    except Exception as err:
        results.extend(ClipResult(i, False, error=f"encode/write failed: {err}") for i, _ in ready)
    return results


# ----------------------------------------------------------------------------- clips of any length, in blocks


class _EncoderFailed(Exception):
    """CLIP failed on a batch while a clip was being decoded (_FrameBatches)."""


class _FrameBatches:
    """Frames of consecutive clips -> CLIP rows, in the very batches _encode_frames makes of them
    all at once: each clip's frames preprocessed `batch` at a time from its first frame, the
    pixels of the group (the clips written together) encoded `batch` rows at a time from the
    group's first, the group's last batch shorter. Holds less than a batch of the current clip's
    frames and of pixels, and the rows encoded so far (float16, as stored; no patch tokens where
    `patches` is False)."""

    def __init__(self, clip: ClipEncoder, batch: int, patches: bool = True):
        self.clip, self.batch, self.patches = clip, batch, patches
        self.frames: list[np.ndarray] = []    # the current clip's frames not yet preprocessed
        self.pixels: list[torch.Tensor] = []  # preprocessed, not yet encoded
        self.rows: list[tuple[np.ndarray, np.ndarray | None]] = []   # encoded: (cls, patches) a batch
        self.steps = 0                        # the current clip's frames so far

    def mark(self) -> tuple:
        """The state before a clip: what rollback returns to."""
        return len(self.rows), list(self.pixels)

    def rollback(self, mark: tuple) -> None:
        """Forget the current clip (it failed, or decoding starts again): the batches that held
        its frames are encoded again, with the next clip's."""
        n, pixels = mark
        del self.rows[n:]
        self.pixels, self.frames, self.steps = list(pixels), [], 0

    def add(self, frames: np.ndarray) -> None:
        """More frames of the current clip."""
        self.frames.append(frames)
        self.steps += len(frames)
        while sum(map(len, self.frames)) >= self.batch:
            self._preprocess(self.batch)

    def end_clip(self) -> int:
        """The current clip has no more frames: its last ones preprocessed. Returns its frames."""
        rest = sum(map(len, self.frames))
        if rest:
            self._preprocess(rest)
        steps, self.steps = self.steps, 0
        return steps

    def finish(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The group's last batch encoded; every row of the group, in order (None: none)."""
        if self.pixels:
            self._encode(sum(map(len, self.pixels)))
        rows, self.rows = self.rows, []
        if not rows:
            return None, None
        return (np.concatenate([c for c, _ in rows]),
                np.concatenate([p for _, p in rows]) if self.patches else None)

    def reset(self) -> None:
        self.frames, self.pixels, self.rows, self.steps = [], [], [], 0

    def _preprocess(self, n: int) -> None:
        if len(self.frames[0]) >= n:                   # within one block: a view of it
            piece, rest, later = self.frames[0][:n], self.frames[0][n:], self.frames[1:]
        else:                                          # across blocks: less than a batch copied
            joined = np.concatenate(self.frames)
            piece, rest, later = joined[:n], joined[n:], []
        self.frames = ([rest] if len(rest) else []) + later
        clip = self.clip
        try:
            pixels = clip_preprocess(torch.from_numpy(piece).to(clip.device), clip.image_size, clip.mean, clip.std)
        except Exception as err:
            raise _EncoderFailed(err) from err
        self.pixels.append(pixels)
        while sum(map(len, self.pixels)) >= self.batch:
            self._encode(self.batch)

    def _encode(self, n: int) -> None:
        pixels = torch.cat(self.pixels) if len(self.pixels) > 1 else self.pixels[0]
        try:
            cls, patches = self.clip.encode_frames(pixels[:n], self.patches)
            self.rows.append((cls.half().cpu().numpy(), patches.half().cpu().numpy() if self.patches else None))
        except Exception as err:
            raise _EncoderFailed(err) from err
        self.pixels = [pixels[n:]] if len(pixels) > n else []


class _Feed:
    """One clip's blocks, decoded in a background thread at most `depth` blocks ahead of the
    encoder: ("block", frames or None), then ("end", Decoded) or ("error", exception)."""

    def __init__(self, depth: int = 1):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.cancelled = threading.Event()
        self.decoded = None

    def produce(self, blocks: Callable[[], object]) -> None:
        """Run in a decoding thread: the clip's blocks into the queue."""
        if self.cancelled.is_set():
            return
        wrapped = Blocks(blocks())
        parts = iter(wrapped)
        try:
            for part in parts:
                if not self._put(("block", part)):
                    return
            self._put(("end", wrapped.decoded))
        except BaseException as err:  # noqa: BLE001 - the encoder's thread reports it (never waits forever)
            self._put(("error", err))
        finally:
            parts.close()                     # ends an ffmpeg left running by a cancel

    def _put(self, item) -> bool:
        while not self.cancelled.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self):
        """The blocks, in order; raises what decoding raised."""
        while True:
            kind, value = self.queue.get()
            if kind == "block":
                yield value
            elif kind == "end":
                self.decoded = value
                return
            else:
                raise value

    def cancel(self) -> None:
        self.cancelled.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return


def _process_blocks(store: FeatureStore, items: list[tuple[int, str]], cfg: ExtractConfig, clip: ClipEncoder,
                    vggish: VGGishEncoder, hop: float, patches: bool = True) -> list[ClipResult]:
    """process_clips for clips of any length (T = 0), `decode_block` steps of frames at a time:
    each video is decoded in blocks (in cfg.decode_threads background threads, a block ahead of
    the encoder) and its frames go through CLIP as they come, in the batches the whole-video
    path (_encode_seconds) makes, so the features are the same bit for bit; clips are grouped,
    their audio encoded and written as there. Memory: a few blocks of frames, a batch of pixels,
    and the features of the clips being encoded, not every frame of them."""
    limit = steps_of(cfg.max_seconds, hop, "max_seconds")
    batches, results, group = _FrameBatches(clip, cfg.clip_batch, patches), [], []

    def encode_group() -> list[dict]:
        cls, patches = batches.finish()
        decoded = [d for _, d in group]
        return _split(decoded, _audio_seconds(vggish, decoded, cfg.sample_rate, hop), cls, patches)

    def flush() -> None:
        results.extend(_write(store, group, encode_group))
        batches.reset()
        group.clear()

    feeds = [(i, p, _Feed()) for i, p in items]
    pool = ThreadPoolExecutor(max(1, cfg.decode_threads))
    try:
        for i, p, feed in feeds:
            pool.submit(feed.produce, lambda p=p: decode_source_blocks(
                p, limit, cfg.sample_rate, cfg.decoder, pad=False, hop=hop, block=cfg.decode_block))
        for i, p, feed in feeds:                # encode what is decoded while the rest decodes
            mark = batches.mark()
            try:
                for part in feed:
                    if part is None:            # decord failed midway: ffmpeg from the start
                        batches.rollback(mark)
                    else:
                        batches.add(part)
                d, feed.decoded = feed.decoded, None
                frames = 0 if d.audio_only else batches.end_clip()
                if frames != (0 if d.audio_only else d.steps):
                    raise RuntimeError(f"decoded {frames} frames for {d.steps} steps")
            except _EncoderFailed as err:       # CLIP failed: this clip and its group fail
                feed.cancel()
                results.extend(ClipResult(j, False, error=f"encode/write failed: {err}") for j, _ in [*group, (i, p)])
                batches.reset()
                group.clear()
                continue
            except DecodeError as err:
                batches.rollback(mark)
                results.append(ClipResult(i, False, error=str(err)))
                continue
            except Exception as err:
                batches.rollback(mark)
                results.append(ClipResult(i, False, error=f"{p}: {type(err).__name__}: {err}"))
                continue
            group.append((i, d))
            if sum(d.steps for _, d in group) >= cfg.clip_batch:
                flush()
        if group:
            flush()
    finally:
        for _, _, feed in feeds:
            feed.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    return results


# ----------------------------------------------------------------------------- the driver


def clip_dims(model_name: str, patch_grid: int) -> tuple[int, int]:
    """(joint width D, patches per frame P) from the open_clip config, without building it."""
    import open_clip

    from .encoders import register_model_configs

    register_model_configs()
    mc = open_clip.get_model_config(model_name)
    if mc is None:
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    vc = mc["vision_cfg"]
    size = vc.get("image_size", 224)
    size = size if isinstance(size, int) else size[0]
    if "patch_size" not in vc:
        raise ValueError(f"CLIP model {model_name!r} has no patch tokens: use a ViT model")
    native = size // vc["patch_size"]
    return mc["embed_dim"], (patch_grid or native) ** 2


def open_or_create(out: Path, clip_ids: list[str], sources: list[str], cfg: ExtractConfig,
                   provenance: dict, extra_attrs: dict | None = None, hop: float = 1.0,
                   patches: bool = True) -> FeatureStore:
    """The store at `out`, created if absent; refuses to mix clip lists or feature settings.
    patches=False: no `patches` array (attrs features.patches false; patch_grid still records
    the grid the CLIP model gives, which stage two's model is built with)."""
    features = {**{k: getattr(cfg, k) for k in FEATURE_KEYS + (ANY_LENGTH_KEYS if cfg.T == 0 else ())},
                "encoders": provenance, "hop": hop, "patches": patches}   # stores made before them: 1,
                                                                        # true (FEATURE_DEFAULTS)
    if (out / "zarr.json").exists() and not half_made(out):     # create() restarts a half-made one
        store = FeatureStore(out, mode="r+")
        if store.clip_ids != clip_ids:      # a group without clip_ids: StoreError (never deleted)
            raise StoreError(f"{out} holds another list of clips ({len(store)} vs {len(clip_ids)} now): "
                             f"extract into a new --out, or delete it")
        old = store.attrs.get("features", {})
        old = {**FEATURE_DEFAULTS, **old} if old else old
        if old != features:
            diff = sorted(k for k in set(old) | set(features) if old.get(k) != features.get(k))
            hint = (f"; it holds {'' if old.get('patches') else 'no '}patch tokens (the setting `patches`, by "
                    f"benchmark, chooses)" if "patches" in diff else "")
            raise StoreError(f"{out} was made with other settings ({', '.join(diff)} differ): "
                             f"extract into a new --out, or delete it{hint}")
        return store
    D, P = clip_dims(cfg.clip_model, cfg.patch_grid)
    T = steps_of(cfg.T, hop, "T")
    steps = T or steps_of(cfg.max_seconds, hop, "max_seconds")
    arrays = {"audio": ((steps, 128), "float16"), "visual": ((steps, D), "float16")}
    if patches:
        arrays["patches"] = ((steps, P, D), "float16")
    chunk = time_chunk_steps(hop)
    if cfg.T == 0:
        extra_attrs = {"max_seconds": cfg.max_seconds, "time_chunk": chunk, **(extra_attrs or {})}
    attrs = {
        "avu_version": __version__, "features": features, "random_weights": cfg.random_weights,
        "fps": 1 if hop == 1 else 1 / hop, "hop": hop, "sample_rate": cfg.sample_rate, "T": T,
        "patch_grid": int(P ** 0.5), "config": as_dict(cfg), "sources": sources,
        "audio_only": sum(map(is_audio_only, sources)), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra_attrs or {}),
    }
    return create(out, clip_ids, arrays, attrs, cfg.compression_level, 0 if cfg.T else chunk)


def _by_clip(damage: list[Damage]) -> dict[str, str]:
    """{clip id (or array, for damage not of one clip): what is damaged}."""
    out: dict[str, str] = {}
    for d in damage:
        key = d.clip_id if d.index >= 0 else d.array
        out[key] = f"{out[key]}; " if key in out else ""
        out[key] += f"{d.array}: {d.reason}" if d.index >= 0 else d.reason
    return out


def prepare_repair(store: FeatureStore) -> dict[str, str]:
    """Verify every chunk of the done clips (store.verify) and make the damaged ones extracted
    again: a clip with a damaged feature chunk or length goes back to pending (this run
    re-extracts it); damaged targets or shared/ arrays of a dataset store clear its targets
    fingerprint, so that write_targets rewrites them; unreadable records (checks/) are remade
    from the chunks that decode. An unreadable `status` or `length` array is rewritten empty and
    every clip (every done clip) extracted again, the failed ones staying failed. Returns {clip
    id or array: what was damaged}."""
    repaired = {}
    try:
        store.status()
    except StoreError as err:         # which clips were done is lost
        store.reset_small("status")
        store.mark_failed({store.index(c): reason for c, reason in store.failures.items()})
        repaired["status"] = f"{err}; every clip is extracted again"
    damage = store.verify()
    records = f"{CHECKS}/"
    for name in {d.array[len(records):] for d in damage if d.array.startswith(records)}:
        store.rebuild_records(name, skip={d.index for d in damage if d.array == name})
    redo = set(store.feature_arrays) | {"length"}
    clips = {d.index for d in damage if d.index >= 0 and d.array in redo}
    if any(d.array == "length" and d.index < 0 for d in damage):
        store.reset_small("length")   # the lengths are lost: every done clip is extracted again
        clips |= {int(i) for i in store.done()}
    rest = [d for d in damage if d.array not in redo and not d.array.startswith(records)]
    if rest and "targets_fingerprint" not in store.attrs:
        raise StoreError(damage_message(store.path, rest) + "; but these arrays were not made by `avu extract` "
                         "(no targets fingerprint), so --repair cannot remake them")
    if rest:
        store.set_attrs(targets_fingerprint=None)      # extract_dataset rewrites every target
    store.mark_pending(sorted(clips))
    return {**repaired, **_by_clip(damage)}


def _batches(todo: list[int], size: int) -> list[list[int]]:
    return [todo[k : k + size] for k in range(0, len(todo), max(1, size))]


def run_extract(
    videos: list,
    clip_ids: list[str],
    out: Path,
    cfg: ExtractConfig,
    on_results: Callable[[list[ClipResult]], None] | None = None,
    extra_attrs: dict | None = None,
    task: str = VIDEOS,
) -> Summary:
    """Extract `videos` (sources: video or audio paths, or image-sequence dicts) into the store
    `out`, skipping clips already done; resumable. `extra_attrs` go into a new store's
    attributes; `task` (a benchmark, or "videos") chooses the step (feature_hop) and whether
    the store holds patch tokens (feature_patches)."""
    start = time.perf_counter()
    out = Path(out)
    hop, patches = feature_hop(cfg, task), feature_patches(cfg, task)
    if cfg.T < 0 or (cfg.T == 0 and steps_of(cfg.max_seconds, hop, "max_seconds") < 1):
        raise ValueError(f"T = {cfg.T}, max_seconds = {cfg.max_seconds}: T is the seconds a clip keeps (0: the "
                         f"whole video, up to max_seconds, which must then be at least one step, {hop:g} s)")
    steps_of(cfg.T, hop, "T")
    if cfg.decode_block < 0:
        raise ValueError(f"decode_block = {cfg.decode_block}: steps of a video decoded at a time (0: the whole video)")
    n_workers = 0 if (cfg.workers == 0 and not cfg.scheduler) else cfg.workers
    gpus = torch.cuda.device_count() if cfg.device in ("auto", "cuda") else 0
    if n_workers and gpus and not cfg.scheduler:
        n_workers = gpus                                   # one worker per GPU
    threads = cfg.threads_per_worker or (max(1, (os.cpu_count() or 1) // n_workers) if n_workers else 0)
    spec, provenance = resolve_weights(cfg, cfg.device, threads)
    sources = [v if isinstance(v, dict) else str(Path(v).resolve()) for v in videos]
    store = open_or_create(out, clip_ids, sources, cfg, provenance, extra_attrs, hop, patches)
    repaired = prepare_repair(store) if cfg.repair else {}
    # targets half-written by a killed run (fingerprint None) are rewritten whole after the clips
    rewriting = "targets_fingerprint" in store.attrs and store.attrs["targets_fingerprint"] is None
    damaged = {} if cfg.repair else _by_clip(store.check(arrays=store.feature_arrays if rewriting else None))
    status, old_failures = store.status(), store.failures
    todo = [i for i, s in enumerate(status) if s == PENDING or (s == FAILED and cfg.retry_failed)]
    summary = Summary(total=len(clip_ids), skipped=int((status == DONE).sum()),
                      random_weights=cfg.random_weights, repaired=repaired, damaged=damaged, hop=hop,
                      patches=store.has_patches)
    summary.failed_before = {store.clip_ids[i]: old_failures.get(store.clip_ids[i], "failed earlier")
                             for i, s in enumerate(status) if s == FAILED and not cfg.retry_failed}

    def record(results: list[ClipResult]) -> None:
        good = [r for r in results if r.ok]
        store.mark_done([r.index for r in good], [r.length for r in good], [r.checks for r in good],
                        audio_lengths=[r.audio_length for r in good],
                        visual_lengths=[r.visual_length for r in good],
                        source_seconds=[r.source_seconds for r in good])
        store.mark_failed({r.index: r.error for r in results if not r.ok})
        summary.done += len(good)
        summary.ffmpeg_fallbacks += sum(r.backend == "ffmpeg" for r in good)
        summary.failed.update({store.clip_ids[r.index]: r.error for r in results if not r.ok})
        for r in good:
            if r.source_seconds > r.length:
                limit = f"T {cfg.T}" if cfg.T else f"max_seconds {cfg.max_seconds}"
                what = "sound" if r.visual_length == 0 else "picture"
                summary.cut[store.clip_ids[r.index]] = (f"{what} {r.source_seconds * hop:g} s, kept "
                                                        f"{r.length * hop:g} s ({limit})")
            if r.visual_length == 0:            # audio only: no picture to compare with
                summary.audio_only += 1
                continue
            note = shortfall(r.audio_length, r.visual_length, hop)
            if note:
                uneven = summary.short_audio if r.audio_length < r.visual_length else summary.short_picture
                uneven[store.clip_ids[r.index]] = note
        if on_results:
            on_results(results)

    tasks = [[(i, sources[i]) for i in batch] for batch in _batches(todo, cfg.clips_per_task)]
    if tasks and n_workers == 0:
        t0 = time.perf_counter()
        load_encoders(spec)
        summary.startup_seconds = time.perf_counter() - t0
        for items in tasks:
            record(process_clips(str(out), items, cfg, spec, hop))
    elif tasks:
        summary.startup_seconds, summary.shutdown_seconds = _run_dask(tasks, str(out), cfg, spec, n_workers,
                                                                      gpus, record, hop)
    summary.seconds = time.perf_counter() - start
    return summary


_worker_name = None


def worker_cpus(index: int, n_workers: int, cpus: Iterable[int]) -> set[int]:
    """Worker `index`'s share of `cpus`: n_workers contiguous, equal slices (the remainder to the
    first workers). Empty when there are fewer CPUs than workers."""
    cpus = sorted(cpus)
    if len(cpus) < n_workers:
        return set()
    share, extra = divmod(len(cpus), n_workers)
    start = index * share + min(index, extra)
    return set(cpus[start : start + share + (index < extra)])


def pin_process(cpus: set[int]) -> bool:
    """Bind every thread of this process to `cpus`; threads started later inherit it. Linux only
    (False elsewhere, nothing changed)."""
    if not cpus or not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return False
    pinned = False
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
            pinned = True
        except (OSError, ValueError):     # a thread that has just ended
            pass
    return pinned


def _warm(spec: EncoderSpec, pin: tuple[int, list[int]] | None = None, dask_worker=None) -> None:
    """Build this worker's encoders (run on every worker through Client.run). With `pin` =
    (local workers, CPUs) the worker is first bound to its share of the CPUs."""
    global _worker_name
    _worker_name = getattr(dask_worker, "name", None)
    if pin and isinstance(_worker_name, int):
        pin_process(worker_cpus(_worker_name, *pin))
    load_encoders(spec)


def _run_dask(tasks, store_path: str, cfg: ExtractConfig, spec: EncoderSpec, n_workers: int,
              gpus: int, record: Callable[[list[ClipResult]], None], hop: float = 1.0) -> tuple[float, float]:
    """Run the tasks on Dask workers; returns the seconds spent starting them and closing them."""
    import logging

    import dask
    from distributed import Client, LocalCluster, as_completed

    logging.getLogger("distributed").setLevel(logging.ERROR)
    t0, cluster, saved_env = time.perf_counter(), None, dict(os.environ)
    if cfg.scheduler:
        client = Client(cfg.scheduler)
    else:
        # Dask's statistical profiler samples every thread every 10 ms: 5-8 % of this job's
        # throughput on 2 cores (BENCHMARKS.md); an existing cluster keeps its own settings
        # One malloc arena per worker: glibc gives each thread an arena whose heaps hold at most
        # 64 MB, so the encoder's activations, allocated in a Dask thread, would be mmapped and
        # page-faulted in again at every batch whatever keep_freed_memory sets (BENCHMARKS.md)
        settings = {"distributed.worker.profile.enabled": False}
        if cfg.keep_freed_memory:
            settings["distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX"] = 1
        with dask.config.set(settings):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR,
                                   resources={"GPU": 1} if gpus else None)
        client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=300)
        # every worker builds its encoders once, before any clip; local CPU workers are first bound
        # to their own share of the cores (on 2 cores: busy 96-99 % of a task's time instead of
        # 91-96 %, 5 % more clips/s; BENCHMARKS.md)
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        fits = spec.threads <= len(allowed) // max(1, n_workers)        # a share holds a worker's threads
        pin = (n_workers, allowed) if cluster is not None and cfg.pin_workers and not gpus and fits else None
        client.run(_warm, spec, pin)
        startup = time.perf_counter() - t0
        resources = {"GPU": 1} if gpus and not cfg.scheduler else None
        futures = {
            client.submit(process_clips, store_path, items, cfg, spec, hop, pure=False, resources=resources): items
            for items in tasks
        }
        for fut in as_completed(futures):
            try:
                results = fut.result()
            except Exception as err:  # the worker died (out of memory, killed): fail its clips
                results = [ClipResult(i, False, error=f"worker lost while extracting {p}: {err}")
                           for i, p in futures[fut]]
            record(results)
    finally:
        t1 = time.perf_counter()
        client.close()
        if cluster is not None:
            cluster.close()
        os.environ.clear()               # LocalCluster sets OMP_NUM_THREADS=1 in this process too
        os.environ.update(saved_env)
    return startup, time.perf_counter() - t1
