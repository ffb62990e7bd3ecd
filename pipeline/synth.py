"""`avu synth`: a small, seeded mini-benchmark of all seven datasets in their official layouts.

    generate(out, seed=0, clips=16)   ->   out/<dataset>/...   (avu extract --dataset X --root out/X)

Each dataset folder holds the benchmark's own annotation files (same names, columns, quirks:
AVE's header line and start = end row, LLP's fractional filename and stray eval rows, VGG-SS's
garbage coordinate, CRLF test list, ...) and its media (mp4, or AVSBench PNG/JPG frames + wav),
so the real adapters read it unchanged. MUSIC-AVQA's train json, absent from public copies, is
written in the schema of json_update.

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
"""

from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vocab import AVSS_CLASSES, key

SIZE, FPS, SR = 112, 4, 16000
SHAPES = ("disc", "square", "triangle", "diamond", "cross", "ring")
COLOURS = np.array([(230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 210, 30), (200, 50, 220),
                    (30, 210, 210), (250, 140, 20), (245, 245, 245), (140, 70, 20), (255, 150, 200),
                    (130, 90, 255), (150, 230, 120)], np.uint8)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
CLASSES = {  # the classes each synthetic dataset uses (official spellings)
    "ave": ["Church bell", "Bark", "Helicopter", "Violin, fiddle", "Cat", "Accordion"],
    "llp": ["Speech", "Dog", "Cat", "Cello", "Banjo", "Helicopter", "Accordion", "Violin_fiddle"],
    "vggss": ["playing cello", "dog barking", "helicopter", "cat meowing", "playing piano", "church bell ringing",
              "airplane", "baby crying", "chicken crowing", "cow lowing", "crow cawing", "driving motorcycle",
              "alarm clock ringing", "coyote howling"],   # many: contrastive batches then rarely pair a class twice
    "avs-s4": ["playing_violin", "dog_barking", "helicopter", "cat_meowing", "playing_piano",
               "playing_acoustic_guitar"],
    "avss": ["accordion", "cello", "dog", "piano", "violin", "car", "cat", "helicopter"],
    "music-avqa": ["violin", "piano", "cello", "flute", "trumpet", "drum", "accordion"],
}
SILENT = ["chair", "lamp", "bookshelf", "window"]   # VGG-SS's silent things: on screen, never heard
LOOKS = {k: i for i, k in enumerate(dict.fromkeys(key(n) for names in [*CLASSES.values(), SILENT] for n in names))}
TILED = [key(n) for n in CLASSES["vggss"] + SILENT]   # the classes drawn as tiles

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
    """look -> COLOURS index such that no two classes of one dataset share a colour (greedy,
    in look order); VGG-SS draws tiles in colours of their own (tile_texture)."""
    datasets = [{key(n) for n in names} for name, names in CLASSES.items() if name != "vggss"]
    out: dict[int, int] = {}
    for k, look in LOOKS.items():
        taken = {out[LOOKS[m]] for names in datasets if k in names for m in names if LOOKS[m] in out}
        out[look] = next((c for c in range(len(COLOURS)) if c not in taken), look % len(COLOURS))
    return out


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


def tone_hz(look: int) -> float:
    return 260.0 * 1.09 ** look                           # ~1.5 semitones apart, 260 Hz to ~4 kHz


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


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    """H.264 / AAC at FPS frames per second, each second's frame held for the whole second
    (in the background inside `with _Encoders():`)."""
    if _Encoders.active is not None:
        _Encoders.active.submit(path, frames, audio)
    else:
        _encode_mp4(path, frames, audio)


def _encode_mp4(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    import ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        write_wav(wav, audio)
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{SIZE}x{SIZE}", framerate=FPS)
        (ffmpeg.output(video, ffmpeg.input(str(wav)), str(path), vcodec="libx264", pix_fmt="yuv420p", crf=12,
                       preset="veryfast", g=FPS, acodec="aac", audio_bitrate="96k", map_metadata=-1,
                       fflags="+bitexact", **{"flags:v": "+bitexact", "flags:a": "+bitexact"})
         .overwrite_output()
         .run(input=np.repeat(frames, FPS, axis=0).tobytes(), capture_stdout=True, capture_stderr=True))


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


# ----------------------------------------------------------------------------- AVE


def ave(out: Path, rng, clips: int) -> None:
    """One event per row (seen and heard in [start, end)); background seconds hold silent or
    unseen copies of the class. One video carries two rows; one row has start = end."""
    import h5py

    rows, order, n = [], {s: [] for s in split_sizes(clips)}, 0
    for split, count in split_sizes(clips).items():
        for k in range(count):
            vid, cls = youtube_id(rng), CLASSES["ave"][int(rng.integers(len(CLASSES["ave"])))]
            event = run(10, 0, 0) if n == 1 else random_run(rng, 10)
            rest = ~event & (rng.random(10) < 0.5)
            seen = event | (rest & (rng.random(10) < 0.5))
            (x, y), = slots(rng, 1)
            obj = Obj(cls, x, y, 0.13, seen, event | (rest & ~seen))
            frames, _, audio = render([obj], 10, background(rng), rng)
            write_mp4(out / "AVE" / f"{vid}.mp4", frames, audio)
            on = np.flatnonzero(event)
            start, end = (int(on[0]), int(on[-1]) + 1) if on.size else (4, 4)
            rows.append(f"{cls}&{vid}&good&{start}&{end}")
            order[split].append(len(rows) - 1)
            if n == 0:                                   # the same video, a second row: its event again
                rows.append(f"{cls}&{vid}&good&{start}&{end}")
                order[split].append(len(rows) - 1)
            n += 1
    (out / "Annotations.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\n" + "\n".join(rows) + "\n")
    for split, rows_of in order.items():
        with h5py.File(out / f"{split}_order.h5", "w") as f:
            f.create_dataset("order", data=np.array(rng.permutation(rows_of), np.int64))


# ----------------------------------------------------------------------------- LLP


def llp(out: Path, rng, clips: int) -> None:
    """1-3 events a clip, each audio-only, visual-only or audio-visual over its own run."""
    tables, evals = {}, {"audio": [], "visual": []}
    for split, count in split_sizes(clips).items():
        tables[split] = []
        for k in range(count):
            start = 8.5 if (split, k) == ("train", 0) else 10 * int(rng.integers(0, 30))
            name = f"{youtube_id(rng)}_{start:g}_{start + 10:g}"
            classes = rng.choice(CLASSES["llp"], int(rng.integers(1, 4)), replace=False)
            objs = []
            for cls, (x, y) in zip(classes, slots(rng, len(classes))):
                when, kind = random_run(rng, 10), rng.choice(["audio", "visual", "both"])
                objs.append(Obj(str(cls), x, y, 0.12, when if kind != "audio" else run(10, 0, 0),
                                when if kind != "visual" else run(10, 0, 0)))
            frames, _, audio = render(objs, 10, background(rng), rng)
            write_mp4(out / "LLP" / f"{name[:11]}.mp4", frames, audio)
            tables[split].append([name, ",".join(map(str, classes))])
            for o in objs:
                for modality, on in (("audio", o.audible), ("visual", o.visible)):
                    if on.any() and split != "train":
                        hit = np.flatnonzero(on)
                        evals[modality].append([name, int(hit[0]), int(hit[-1]) + 1, o.name])
    evals["audio"] += [["zzzzzzzzzzz_0_10", 0, 4, "Dog"], [tables["test"][0][0], 9, 9, "Speech"]]   # official quirks
    names = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
    for split, rows in tables.items():
        write_csv(out / names[split], ["filename", "event_labels"], rows, "\t")
    write_csv(out / "AVVP_dataset_full.csv", ["filename", "event_labels"], sum(tables.values(), []), "\t")
    for modality, rows in evals.items():
        write_csv(out / f"AVVP_eval_{modality}.csv", ["filename", "onset", "offset", "event_labels"], rows, "\t")


# ----------------------------------------------------------------------------- VGG-SS


HALVES = ((0, 2), (1, 3), (0, 1), (2, 3))   # left, right, top, bottom: quadrant cells


def vggss_scene(rng) -> tuple[str, list[Obj]]:
    """The sounding class fills one half of the frame (left, right, top or bottom) with two
    tiles, a silent thing (SILENT: never heard anywhere) one or both quadrants of the other
    half. Real VGG-SS boxes are large and the official metric keeps the top 50 % of the
    heatmap, so a sounding region much smaller than half the frame could never reach cIoU 0.5;
    and a 4 x 4 heatmap can only cover a region whose every cell shows its class, hence
    flat-coloured tiles, not shapes. The tiles leave a margin (the boxes' union is 35 % of the
    frame): with exactly half, a flat heatmap (every pixel kept) would score cIoU 0.5 and pass."""
    cls, other = rng.choice(CLASSES["vggss"]), rng.choice(SILENT)
    half = HALVES[int(rng.integers(4))]
    rest = [c for c in range(4) if c not in half][: 1 + int(rng.random() < 0.5)]
    always, never = run(10, 0, 10), run(10, 0, 0)

    def tile(name: str, cell: int, audible: np.ndarray) -> Obj:
        return Obj(name, (cell % 2 + 0.5) / 2, (cell // 2 + 0.5) / 2, 0.21, always, audible, tile=True)

    return str(cls), [tile(str(cls), c, always) for c in half] + [tile(str(other), c, never) for c in rest]


def vggss(out: Path, rng, clips: int) -> None:
    entries, train = [], []
    for split, count in (("test", max(1, clips // 2)), ("train", clips)):
        for k in range(count):
            file = f"{youtube_id(rng)}_{int(rng.integers(0, 300)):06d}"
            cls, objs = vggss_scene(rng)
            frames, _, audio = render(objs, 10, background(rng), rng)
            write_mp4(out / "VGGSS" / f"{file}.mp4", frames, audio)
            boxes = [o.box() for o in objs if o.audible.any()]
            if split == "test":
                if k == 0:
                    boxes.append([0.5, 0.5, -2.8823037615171176e16, 0.6])   # the real file's garbage value
                entries.append({"file": file, "class": cls, "bbox": boxes})
            else:
                train.append(f"{file},{cls}")
    (out / "vggss.json").write_text(json.dumps(entries))
    (out / "vggss_test.csv").write_bytes("".join(f"{e['file']}\r\n" for e in entries).encode())
    (out / "vggsound_train.txt").write_text("\n".join(train) + "\n")


# ----------------------------------------------------------------------------- AVSBench


def avs_scene(rng, classes: list[str], T: int, n_sounding: int, n_silent: int, changing: bool) -> list[Obj]:
    """Objects in distinct quadrants (big enough to span 2 x 2 cells of a 4 x 4 patch grid);
    the first n_sounding sound (all the time, or over a random run when `changing`)."""
    names = rng.choice(classes, n_sounding + n_silent, replace=False)
    objs = []
    places = quadrants(rng, list(rng.permutation(4)[:len(names)]))
    for k, (name, (x, y, r)) in enumerate(zip(names, places)):
        heard = (random_run(rng, T, 1) if changing else run(T, 0, T)) if k < n_sounding else run(T, 0, 0)
        objs.append(Obj(str(name), x, y, r, run(T, 0, T), heard, 0.25))
    return objs


def sounding_pixels(objs: list[Obj], masks: np.ndarray, values) -> np.ndarray:
    """(T, S, S) uint8: each sounding object's pixels set to its value, 0 elsewhere."""
    out = np.zeros(masks.shape[:1] + masks.shape[2:], np.uint8)
    for k, o in enumerate(objs):
        for t in np.flatnonzero(o.audible):
            out[t][masks[t, k]] = values[k]
    return out


def avs_s4(out: Path, rng, clips: int) -> None:
    rows, data = [], out / "Single-source" / "s4_data"
    for split, count in split_sizes(clips).items():
        for k in range(count):
            objs = avs_scene(rng, CLASSES["avs-s4"], 5, 1, 1, changing=False)
            name, cat = f"{youtube_id(rng)}_{k}", objs[0].name
            frames, masks, audio = render(objs, 5, background(rng), rng)
            gt = sounding_pixels(objs, masks, [45, 45])
            rel = Path(split) / cat / name
            for t in range(5):
                write_image(data / "visual_frames" / rel / f"{name}_{t + 1}.png", frames[t])
                if split != "train" or t == 0:              # train has mask 1 only
                    write_image(data / "gt_masks" / rel / f"{name}_{t + 1}.png", gt[t])
            write_wav(data / "audio_wav" / split / cat / f"{name}.wav", audio)
            rows.append([name, int(rng.integers(0, 5)), cat, split])
    write_csv(out / "Single-source" / "s4_meta_data.csv", ["name", "start_time", "category", "split"], rows)


def avs_ms3(out: Path, rng, clips: int) -> None:
    rows, data = [], out / "Multi-sources" / "ms3_data"
    for split, count in split_sizes(clips).items():
        for k in range(count):
            objs = avs_scene(rng, CLASSES["avs-s4"], 5, 2, int(rng.integers(0, 2)), changing=True)
            name = f"{youtube_id(rng)}_{k}"
            frames, masks, audio = render(objs, 5, background(rng), rng)
            gt = sounding_pixels(objs, masks, [9, 41, 41])
            for t in range(5):
                write_image(data / "visual_frames" / name / f"{name}.mp4_{t + 1}.png", frames[t])
                write_image(data / "gt_masks" / split / name / f"{name}_{t + 1}.png", gt[t])
            write_wav(data / "audio_wav" / split / f"{name}.wav", audio)
            rows.append([name, split])
    write_csv(out / "Multi-sources" / "ms3_meta_data.csv", ["video_id", "split"], rows)


def avss(out: Path, rng, clips: int) -> None:
    from .datasets.avss import PALETTE

    rows = []
    for split, count in split_sizes(clips).items():
        for k in range(count):
            subset = ("v1s", "v1m", "v2")[len(rows) % 3]
            T = 10 if subset == "v2" else 5
            objs = avs_scene(rng, CLASSES["avss"], T, 1 if subset == "v1s" else 2, 1, changing=subset != "v1s")
            uid = f"{subset}_{youtube_id(rng)}"
            frames, masks, audio = render(objs, T, background(rng), rng)
            gt = sounding_pixels(objs, masks, [AVSS_CLASSES.index(o.name) for o in objs])
            clip = out / subset / uid
            for t in range(T):
                write_image(clip / "frames" / f"{t}.jpg", frames[t])
                if not (subset == "v1s" and split == "train" and t > 0):
                    write_image(clip / "labels_rgb" / f"{t}.png", PALETTE[gt[t]])
            write_wav(clip / "audio.wav", audio)
            rows.append([uid, subset, split, "_".join(o.name for o in objs if o.audible.any())])
    write_csv(out / "metadata.csv", ["uid", "label", "split", "a_obj"], rows)
    (out / "label2idx.json").write_text(json.dumps({n: i + 1 for i, n in enumerate(AVSS_CLASSES)}, indent=4))


# ----------------------------------------------------------------------------- MUSIC-AVQA

NUMBERS = ["zero", "one", "two", "three", "four", "five"]


def avqa_scene(rng) -> tuple[list[Obj], bool]:
    """2-3 instruments in a row (left / middle / right), each heard from its own onset, at its
    own loudness; the third, when there is one, may be silent. Indoor or outdoor."""
    n = int(rng.integers(2, 4))
    names = rng.choice(CLASSES["music-avqa"], n, replace=False)
    cols, onsets = sorted(rng.choice(3, n, replace=False)), rng.permutation([0, 10, 20])[:n]
    amps = rng.permutation([0.12, 0.25, 0.45])[:n]
    silent = n == 3 and rng.random() < 0.5
    objs = []
    for k, (name, col) in enumerate(zip(names, cols)):
        end = 60 if rng.random() < 0.7 else int(rng.integers(40, 56))   # the one starting at 0 may play throughout
        heard = run(60, 0, 0) if (silent and k == n - 1) else run(60, int(onsets[k]), end)
        objs.append(Obj(str(name), (col + 0.5) / 3, 0.6, 0.13, run(60, 0, 60), heard, float(amps[k])))
    return objs, bool(rng.random() < 0.5)


def avqa_questions(objs: list[Obj], outdoor: bool, rng) -> list[tuple[list[str], str, list[str], str]]:
    """Every instance of the 9 types that the scene answers: (type, question_content,
    templ_values, answer). About 20 a video, so a few videos give the model enough questions;
    "Is there a ..." asks of every instrument present and as many absent ones (balanced)."""
    heard = [o for o in objs if o.audible.any()]
    by_onset = sorted(heard, key=lambda o: int(np.argmax(o.audible)))
    names = {o.name for o in objs}
    absent = [str(n) for n in rng.permutation([n for n in CLASSES["music-avqa"] if n not in names])[:len(objs)]]
    loudest = max(heard, key=lambda o: o.amp)
    yes = {True: "yes", False: "no"}
    qs = [(["Audio", "Counting"], "How many musical instruments were heard throughout the video?", [],
           NUMBERS[len(heard)])]
    qs += [(["Audio", "Comparative"], "Is the <Object> louder than the <Object>?", [a.name, b.name], yes[a.amp > b.amp])
           for a in heard for b in heard if a is not b]
    qs += [(["Visual", "Counting"], "Is there a <Object> in the entire video?", [n], yes[n in names])
           for n in [o.name for o in objs] + absent]
    qs += [(["Visual", "Location"], "What kind of instrument is the <LRer> instrument? ", [side],
            (objs[0] if side == "leftest" else objs[-1]).name) for side in ("leftest", "rightest")]
    qs.append((["Visual", "Location"], "Where is the performance?", [], "outdoor" if outdoor else "indoor"))
    always = [o for o in objs if o.audible.all()]
    rest = [o for o in objs if not o.audible.all()][:max(1, len(always))]   # as many "no" as "yes"
    qs += [(["Audio-Visual", "Existential"], "Is the <Object> in the video always playing?", [o.name],
            yes[bool(o.audible.all())]) for o in always + rest]
    qs.append((["Audio-Visual", "Counting"], "How many instruments are sounding in the video?", [], NUMBERS[len(heard)]))
    qs.append((["Audio-Visual", "Location"], "Where is the <LL> instrument?", ["loudest"], position(loudest)))
    qs += [(["Audio-Visual", "Comparative"], "Is the instrument on the <LR> louder than the instrument on the <LR>?",
            [a, b], yes[(objs[0].amp > objs[-1].amp) == (a == "left")]) for a, b in (("left", "right"), ("right", "left"))]
    qs += [(["Audio-Visual", "Temporal"], "What is the <TH> instrument that comes in?", [["first", "second", "third"][k]],
            o.name) for k, o in enumerate(by_onset)]
    return qs


def position(o: Obj) -> str:
    return ("left", "middle", "right")[int(o.x * 3)]


def music_avqa(out: Path, rng, clips: int) -> None:
    qid, n = 0, 0
    train = max(1, clips // 4)
    for split, count in {"train": train, "val": max(1, train // 4), "test": max(1, train // 4)}.items():
        entries = []
        for k in range(count):
            vid = f"{n:08d}"
            objs, outdoor = avqa_scene(rng)
            bg = (150, 190, 230) if outdoor else (55, 42, 35)
            frames, _, audio = render(objs, 60, bg, rng)
            write_mp4(out / "MUSIC-AVQA" / f"{vid}.mp4", frames, audio)
            for kind, content, values, answer in avqa_questions(objs, outdoor, rng):
                entries.append({"video_id": vid, "question_id": qid, "type": json.dumps(kind),
                                "question_content": content, "templ_values": json.dumps(values),
                                "question_deleted": 0, "anser": answer})
                qid += 1
            n += 1
        path = out / "json_update" / f"avqa-{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entries))


# ----------------------------------------------------------------------------- driver

GENERATORS = {"ave": ave, "llp": llp, "vggss": vggss, "avs-s4": avs_s4, "avs-ms3": avs_ms3, "avss": avss,
              "music-avqa": music_avqa}


def generate(out: Path, seed: int = 0, clips: int = 16, only: list[str] | None = None) -> dict[str, Path]:
    """Write the mini-benchmark under `out`; returns {dataset: its --root}. Deterministic in
    `seed`; a dataset folder that exists is left as it is (delete it to regenerate)."""
    roots = {}
    for k, (name, make) in enumerate(GENERATORS.items()):
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
                make(tmp, np.random.default_rng([seed, k]), clips)
            tmp.rename(root)                                    # a dataset is there whole or not at all
        roots[name] = root
    return roots
