"""`avu synth`: a small, seeded mini-benchmark of all ten datasets in their official layouts.

    generate(out, seed=0, clips=16)   ->   out/<dataset>/...   (avu extract --dataset X --root out/X)

Each dataset folder holds the benchmark's own annotation files (same names, columns, quirks:
AVE's header line and start = end row, LLP's fractional filename and stray eval rows, VGG-SS's
garbage coordinate, CRLF test list, ...) and its media (mp4, or AVSBench PNG/JPG frames + wav),
so the real adapters read it unchanged. MUSIC-AVQA's train json, absent from public copies, is
written in the schema of json_update. Each benchmark's generator and the classes it draws are
in its adapter (`synth`, `synth_classes` in pipeline/datasets/<benchmark>.py); this module is
what they share: objects, their looks and sounds, rendering, writing media and tables, and
generate().

The planted signal: every class is an object with a look (a shape and a colour; in VGG-SS a
flat-coloured tile) and a sound (a tone at its own pitch, amplitude-modulated at its own rate);
the same class name has the same look and sound in every dataset (looks are assigned over the
vocabulary keys). An object is drawn in the seconds it is visible and sounds in the seconds it
is audible, so labels, segments, frames and audio agree only when aligned: AVE events are the
seconds an object is both seen and heard (the rest has silent or unseen distractors of the same
class), LLP mixes audio-only, visual-only and audio-visual events, AVSBench masks are the
pixels of the objects sounding in that frame (silent objects are on screen too), VGG-SS boxes
are the sounding tiles' boxes (silent things, never heard anywhere, fill the other half), and
MUSIC-AVQA's questions of all 9 types are answered from the instruments' positions, loudness,
onsets and the scene (indoor = dark room, outdoor = sky). Within a dataset no two classes share
a colour; VGG-SS tiles have 18 colours of their own. `clips` sets the train size per dataset
(val and test get half; MUSIC-AVQA a quarter as many videos, 60 s each, and a quarter of those
for val and test).

The dense three (UnAV-100, ActivityNet, DESED; dense_clip below) are untrimmed clips of 10-60 s,
80 % of them 10-20 s to keep the demo's extraction small (DESED: its official 10 s, one shorter),
with 2-5 events of up to 4 classes, the first two overlapping, boundaries fractional (2 decimals;
DESED 3). Their videos run at DENSE_FPS = 8 frames a second (an object is drawn in the frames whose
middle lies in its seen events) and their sound is sample-accurate. An event is audio-visual,
audio-only or visual-only, and each benchmark annotates by its own rule: UnAV-100 only the
audio-visual ones, ActivityNet the seen ones (visual-only and audio-visual), DESED the heard ones
(its files are audio-only .wav, so every sound is annotated). The unannotated kinds are the
distractors a model must learn to leave out. Looks, colours and tones are given dataset by dataset
in ADAPTERS order, so adding a dataset never changes those of the datasets before it (their files
stay bit-identical); classes new to the dense sets take tones halfway between the older ones.
"""

from __future__ import annotations

import csv
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import ADAPTERS
from .vocab import key

SIZE, FPS, SR = 112, 4, 16000
SHAPES = ("disc", "square", "triangle", "diamond", "cross", "ring")
COLOURS = np.array([(230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 210, 30), (200, 50, 220),
                    (30, 210, 210), (250, 140, 20), (245, 245, 245), (140, 70, 20), (255, 150, 200),
                    (130, 90, 255), (150, 230, 120)], np.uint8)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
CLASSES = {name: a.synth_classes for name, a in ADAPTERS.items()}   # the classes each synthetic dataset uses
SILENT = [n for a in ADAPTERS.values() for n in a.synth_silent]       # on screen, never heard anywhere
LOOKS = {k: i for i, k in enumerate(dict.fromkeys(key(n) for names in [*CLASSES.values(), SILENT] for n in names))}
TILED = [key(n) for a in ADAPTERS.values() if a.synth_tiles for n in [*a.synth_classes, *a.synth_silent]]

# ----------------------------------------------------------------------------- objects and media


@dataclass
class Obj:
    name: str               # class name, any benchmark's spelling
    x: float                # centre, fraction of the width / height
    y: float
    r: float                # radius, fraction of the size
    visible: np.ndarray     # (T,) bool
    audible: np.ndarray     # (T,) bool
    amp: float = 0.3
    tile: bool = False      # a flat-coloured square in its quadrant (VGG-SS), not the class's shape

    @property
    def look(self) -> int:
        return LOOKS[key(self.name)]

    def pixels(self) -> np.ndarray:
        """(SIZE, SIZE) bool: where it is drawn."""
        if self.tile:
            yy, xx = (np.mgrid[:SIZE, :SIZE] + 0.5) / SIZE
            return (abs(xx - self.x) <= self.r) & (abs(yy - self.y) <= self.r)
        return shape_mask(self.look, self.x, self.y, self.r)

    def rgb(self) -> np.ndarray:
        """(3,) uint8: its colour."""
        return tile_texture(self.look) if self.tile else colour(self.look)

    def box(self) -> list[float]:
        """[xmin, ymin, xmax, ymax] of its pixels, normalised (VGG-SS's box format)."""
        ys, xs = np.nonzero(self.pixels())
        return [xs.min() / SIZE, ys.min() / SIZE, (xs.max() + 1) / SIZE, (ys.max() + 1) / SIZE]


def shape_mask(look: int, x: float, y: float, r: float, size: int = SIZE) -> np.ndarray:
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size
    dx, dy = (xx - x) / r, (yy - y) / r
    shape = SHAPES[look % len(SHAPES)]
    if shape == "disc":
        return dx ** 2 + dy ** 2 <= 1
    if shape == "square":
        return np.maximum(abs(dx), abs(dy)) <= 0.85
    if shape == "triangle":
        return (dy <= 0.8) & (abs(dx) <= (dy + 1.0) * 0.55)
    if shape == "diamond":
        return abs(dx) + abs(dy) <= 1
    if shape == "cross":
        return ((abs(dx) <= 0.3) & (abs(dy) <= 1)) | ((abs(dy) <= 0.3) & (abs(dx) <= 1))
    return (dx ** 2 + dy ** 2 <= 1) & (dx ** 2 + dy ** 2 >= 0.3)


def colour(look: int) -> np.ndarray:
    return COLOURS[_PALETTE[look]]


def _palette() -> dict[int, int]:
    """look -> COLOURS index such that no two classes of one dataset share a colour: dataset by
    dataset (ADAPTERS order), each class not yet coloured takes the first colour its dataset's
    coloured classes leave free, in look order; so a dataset added later never recolours the
    classes of those before it. Classes drawn only as tiles (VGG-SS, tile_texture) get colour 0."""
    out: dict[int, int] = {}
    for a in ADAPTERS.values():
        if a.synth_tiles:
            continue
        looks = sorted({LOOKS[key(n)] for n in a.synth_classes})
        for look in looks:
            if look not in out:
                taken = {out[m] for m in looks if m in out}
                out[look] = next((c for c in range(len(COLOURS)) if c not in taken), look % len(COLOURS))
    return {look: out.get(look, 0) for look in LOOKS.values()}


_PALETTE = _palette()


def _tile_colours() -> dict[int, np.ndarray]:
    """look -> (3,) uint8 for the tiled classes (TILED): a hue of its own evenly spaced around
    the colour wheel, so that any part of a tile tells its class among all 18 (the shapes' 12
    colours are unique within a dataset only). Flat: stripes would alias with the encoder's
    patches and make the same tile look different in every cell."""
    import colorsys

    out = {}
    for k, name in enumerate(TILED):
        hue = (k * 7 % len(TILED)) / len(TILED)           # neighbours in the list far apart in hue
        out[LOOKS[name]] = (np.array(colorsys.hsv_to_rgb(hue, 0.9, 0.95 - 0.3 * (k % 2))) * 255).astype(np.uint8)
    return out


_TILE_COLOURS = _tile_colours()


def tile_texture(look: int) -> np.ndarray:
    """(3,) uint8: the flat colour of a tiled class's tiles."""
    return _TILE_COLOURS[look]


TONE_LOOKS = int(math.log(5000 / 260) / math.log(1.09)) + 1   # looks whose steps stay below 5 kHz: 35


def _tones() -> dict[int, float]:
    """look -> Hz. Look k < TONE_LOOKS: 260 Hz * 1.09^k (~1.5 semitones apart, up to ~4.9 kHz).
    Later looks (the dense benchmarks' new classes) take the half steps between those, dataset by
    dataset (ADAPTERS order), each the lowest free one at least 8 % from every tone its dataset
    already has; so no look's tone moves when a dataset is added, and none nears 8 kHz."""
    out = {look: 260.0 * 1.09 ** look for look in LOOKS.values() if look < TONE_LOOKS}
    free = [260.0 * 1.09 ** (m + 0.5) for m in range(TONE_LOOKS - 1)]
    for a in ADAPTERS.values():
        looks = sorted({LOOKS[key(n)] for n in a.synth_classes})
        for look in looks:
            if look in out:
                continue
            near = [out[m] for m in looks if m in out]
            hz = next((f for f in free if all(abs(math.log(f / g)) >= math.log(1.08) for g in near)), free[0])
            out[look] = hz
            free.remove(hz)
    return out


_TONES = _tones()


def tone_hz(look: int) -> float:
    return _TONES.get(look, 260.0 * 1.09 ** (look % TONE_LOOKS))


def sound(look: int, seconds: np.ndarray, amp: float) -> np.ndarray:
    """The class's tone: its own pitch, amplitude-modulated at its own rate."""
    am = 2.0 + 1.5 * (look % 5)
    return amp * np.sin(2 * np.pi * tone_hz(look) * seconds) * (0.7 + 0.3 * np.sin(2 * np.pi * am * seconds))


def render(objs: list[Obj], T: int, background, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frames (T, S, S, 3) uint8, masks (T, n_objs, S, S) bool (pixels where each object is
    seen), audio (T * SR,) float32."""
    base = np.clip(np.asarray(background, np.float32) + rng.normal(0, 6, (SIZE, SIZE, 3)), 0, 255)
    frames = np.repeat(base[None].astype(np.uint8), T, axis=0)
    masks = np.zeros((T, len(objs), SIZE, SIZE), bool)
    t = np.arange(T * SR) / SR
    audio = rng.normal(0, 0.01, T * SR)
    for k, o in enumerate(objs):
        pixels, rgb = o.pixels(), o.rgb()
        for s in np.flatnonzero(o.visible):
            frames[s][pixels] = rgb
            masks[s, :k, pixels] = False               # drawn over earlier objects
            masks[s, k] = pixels
        on = np.repeat(o.audible.astype(np.float64), SR)
        audio += on * sound(o.look, t, o.amp)
    return frames, masks, audio.astype(np.float32)


def write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(audio, -1, 1), SR, subtype="PCM_16")


def write_image(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(array).save(path, **options)


class _Encoders:
    """While open, write_mp4 hands its ffmpeg run to one of two threads (ffmpeg works in a
    subprocess, so they overlap with the drawing, which stays in the calling thread and keeps
    the output deterministic); at most `pending` videos wait, bounding the memory."""
    active: "_Encoders | None" = None

    def __init__(self, threads: int = 2, pending: int = 4):
        from concurrent.futures import ThreadPoolExecutor

        self.pool, self.pending, self.futures = ThreadPoolExecutor(threads), pending, []

    def __enter__(self) -> "_Encoders":
        _Encoders.active = self
        return self

    def submit(self, *args) -> None:
        while len(self.futures) >= self.pending:
            self.futures.pop(0).result()
        self.futures.append(self.pool.submit(_encode_mp4, *args))

    def __exit__(self, exc_type, *exc) -> None:
        _Encoders.active = None
        try:
            if exc_type is None:                             # else the body's error is the one to see
                for f in self.futures:
                    f.result()                               # re-raises an ffmpeg failure
        finally:
            self.pool.shutdown(cancel_futures=True)


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int | None = None) -> None:
    """H.264 / AAC at FPS frames per second, each second's frame held for the whole second; with
    `fps`, `frames` are already at that rate (the dense benchmarks' DENSE_FPS). In the background
    inside `with _Encoders():`."""
    if _Encoders.active is not None:
        _Encoders.active.submit(path, frames, audio, fps)
    else:
        _encode_mp4(path, frames, audio, fps)


def _encode_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int | None = None) -> None:
    import ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = fps or FPS
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        write_wav(wav, audio)
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{SIZE}x{SIZE}", framerate=rate)
        (ffmpeg.output(video, ffmpeg.input(str(wav)), str(path), vcodec="libx264", pix_fmt="yuv420p", crf=12,
                       preset="veryfast", g=rate, acodec="aac", audio_bitrate="96k", map_metadata=-1,
                       fflags="+bitexact", **{"flags:v": "+bitexact", "flags:a": "+bitexact"})
         .overwrite_output()
         .run(input=(frames if fps else np.repeat(frames, FPS, axis=0)).tobytes(), capture_stdout=True,
              capture_stderr=True))


# ----------------------------------------------------------------------------- helpers


def youtube_id(rng) -> str:
    return "".join(rng.choice(list(ALPHABET), 11))


def run(T: int, start: int, end: int) -> np.ndarray:
    on = np.zeros(T, bool)
    on[start:end] = True
    return on


def random_run(rng, T: int, shortest: int = 2) -> np.ndarray:
    length = int(rng.integers(shortest, T + 1))
    start = int(rng.integers(0, T - length + 1))
    return run(T, start, start + length)


def slots(rng, n: int) -> list[tuple[float, float]]:
    """n distinct cells of a 3 x 3 grid (objects never overlap), centres jittered."""
    cells = rng.permutation(9)[:n]
    return [((c % 3 + 0.5) / 3 + rng.uniform(-0.03, 0.03), (c // 3 + 0.5) / 3 + rng.uniform(-0.03, 0.03)) for c in cells]


def quadrants(rng, cells: list[int], lo: float = 0.17, hi: float = 0.21) -> list[tuple[float, float, float]]:
    """(x, y, r) filling the given cells of a 2 x 2 grid (0 top left, 1 top right, 2 bottom
    left, 3 bottom right): big objects that never overlap, centres jittered."""
    return [((c % 2 + 0.5) / 2 + rng.uniform(-0.02, 0.02), (c // 2 + 0.5) / 2 + rng.uniform(-0.02, 0.02),
             float(rng.uniform(lo, hi))) for c in cells]


def background(rng) -> np.ndarray:
    return rng.integers(60, 120, 3)


def split_sizes(clips: int) -> dict[str, int]:
    return {"train": clips, "val": max(1, clips // 2), "test": max(1, clips // 2)}


def write_csv(path: Path, header: list[str], rows: list, delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


# ----------------------------------------------------------------------------- dense benchmarks
DENSE_FPS = 8              # frames per second of the dense videos: events start and end between seconds


@dataclass
class DenseEvent:
    name: str               # class name
    start: float            # seconds, as annotated (rounded to the benchmark's decimals)
    end: float
    kind: str               # "av" seen and heard, "audio" heard only, "visual" seen only


DENSE_LONGEST = 60.0       # seconds: the longest untrimmed clip; generate(dense_longest=...) sets it (the demo: 20)


def dense_duration(rng) -> float:
    """An untrimmed clip's length: 10-60 s, most of them short (80 % in 10-20 s), a multiple of
    1/DENSE_FPS s (whole frames, fractional seconds). Under a shorter DENSE_LONGEST the same draw
    is squeezed linearly into 10 s .. DENSE_LONGEST (every other draw of the set stays as it is)."""
    seconds = rng.uniform(10, 20) if rng.random() < 0.8 else rng.uniform(20, 60)
    if DENSE_LONGEST < 60:
        seconds = 10 + (seconds - 10) * (DENSE_LONGEST - 10) / 50
    return round(seconds * DENSE_FPS) / DENSE_FPS


def dense_events(rng, classes: list[str], duration: float, kinds: dict[str, float], events: int | None = None,
                 decimals: int = 2, run_to_end: bool = False) -> list[DenseEvent]:
    """2-5 events (or `events`) of up to 4 of `classes`, each 1-8 s, boundaries rounded to
    `decimals`. The first two are of the first kind (the annotated one), of different classes,
    the second starting inside the first (classes overlap); the rest draw their kind from `kinds`
    (name -> weight). Events of one class never overlap and lie 0.5 s apart. `run_to_end`: the
    first runs to the end of the clip."""
    n = int(rng.integers(2, 6)) if events is None else events
    pool = [str(c) for c in rng.choice(classes, min(4, len(classes)), replace=False)]
    names, weights = list(kinds), np.array(list(kinds.values()), float)
    out: list[DenseEvent] = []
    for _ in range(n):
        k = len(out)                                        # events placed so far
        kind = names[0] if k < 2 else str(rng.choice(names, p=weights / weights.sum()))
        for _ in range(50):
            name = pool[k] if k < 2 else pool[int(rng.integers(len(pool)))]
            length = float(rng.uniform(1.0, min(8.0, duration / 2)))
            if k == 1:
                start = out[0].start + float(rng.uniform(0.2, 0.8)) * (out[0].end - out[0].start)
            else:
                start = duration - length if (k == 0 and run_to_end) else float(rng.uniform(0, duration - length))
            start, end = round(start, decimals), round(min(start + length, duration), decimals)
            if end - start >= 0.5 and all(e.name != name or start > e.end + 0.5 or end < e.start - 0.5 for e in out):
                out.append(DenseEvent(name, start, end, kind))
                break
    return out


def render_dense(objs: list[Obj], duration: float, background, rng, video: bool = True):
    """frames (duration * DENSE_FPS, S, S, 3) uint8 (None without video) and audio (duration * SR,)
    float32. Here an Obj's `visible` is per FRAME and `audible` per SAMPLE: sample-accurate sound."""
    n_frames, n_samples = round(duration * DENSE_FPS), round(duration * SR)
    frames = None
    if video:
        base = np.clip(np.asarray(background, np.float32) + rng.normal(0, 6, (SIZE, SIZE, 3)), 0, 255)
        frames = np.repeat(base[None].astype(np.uint8), n_frames, axis=0)
    t = np.arange(n_samples) / SR
    audio = rng.normal(0, 0.01, n_samples)
    for o in objs:
        if video:
            pixels, rgb = o.pixels(), o.rgb()
            for f in np.flatnonzero(o.visible):
                frames[f][pixels] = rgb
        audio += o.audible * sound(o.look, t, o.amp)
    return frames, audio.astype(np.float32)


def dense_clip(rng, classes: list[str], duration: float, kinds: dict[str, float], video: bool = True,
               **options) -> tuple[np.ndarray | None, np.ndarray, list[DenseEvent]]:
    """One untrimmed clip: its events (dense_events; `options` go there), each class an object in
    its own cell, drawn in the frames whose middle lies in one of its seen events ("av", "visual")
    and sounding over exactly its heard ones ("av", "audio"). -> (frames, audio, events)."""
    events = dense_events(rng, classes, duration, kinds, **options)
    names = list(dict.fromkeys(e.name for e in events))
    middles = (np.arange(round(duration * DENSE_FPS)) + 0.5) / DENSE_FPS
    samples = np.arange(round(duration * SR))
    objs = []
    for name, (x, y) in zip(names, slots(rng, len(names))):
        visible, audible = np.zeros(len(middles), bool), np.zeros(len(samples), bool)
        for e in events:
            if e.name == name and e.kind in ("av", "visual"):
                visible |= (middles >= e.start) & (middles < e.end)
            if e.name == name and e.kind in ("av", "audio"):
                audible |= (samples >= round(e.start * SR)) & (samples < round(e.end * SR))
        objs.append(Obj(name, x, y, 0.12, visible, audible, amp=0.2))
    frames, audio = render_dense(objs, duration, background(rng), rng, video)
    return frames, audio, events


# ----------------------------------------------------------------------------- driver
def generate(out: Path, seed: int = 0, clips: int = 16, only: list[str] | None = None,
             dense_longest: float = 60.0) -> dict[str, Path]:
    """Write the mini-benchmark under `out`; returns {dataset: its --root}. Deterministic in
    `seed`; a dataset folder that exists is left as it is (delete it to regenerate).
    `dense_longest` (10-60 s): the longest untrimmed clip of the dense three (the demo's 20 s
    keeps their batches short; the other seven datasets do not depend on it)."""
    global DENSE_LONGEST
    check_options(only, dense_longest)
    DENSE_LONGEST, before = float(dense_longest), DENSE_LONGEST
    try:
        return _generate(out, seed, clips, only)
    finally:
        DENSE_LONGEST = before


def check_options(only: list[str] | None, dense_longest: float) -> None:
    """generate()'s `only` (names of ADAPTERS) and `dense_longest` (10-60 s); ValueError saying
    which is wrong (`avu synth` shows it as a usage error before anything is written)."""
    unknown = [d for d in only or [] if d not in ADAPTERS]
    if unknown:
        raise ValueError(f"unknown dataset {', '.join(unknown)}; known: {', '.join(ADAPTERS)}")
    if not 10 <= dense_longest <= 60:
        raise ValueError(f"dense_longest: {dense_longest:g} s is outside 10-60 s")


def _generate(out: Path, seed: int, clips: int, only: list[str] | None) -> dict[str, Path]:
    roots = {}
    for k, (name, adapter) in enumerate(ADAPTERS.items()):   # the order seeds them: dataset k gets [seed, k]
        if only and name not in only:
            continue
        root = Path(out) / name
        if not root.exists():
            tmp = root.with_name(f".{name}.partial")
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            with _Encoders():
                adapter.synth(tmp, np.random.default_rng([seed, k]), clips)
            tmp.rename(root)                                    # a dataset is there whole or not at all
        roots[name] = root
    return roots
