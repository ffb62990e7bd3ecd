"""AVSBench-semantic / AVSS (Zhou et al., IJCV 2024): audio-visual semantic segmentation, T = 10.

Layout under --root (setting `avss_folder`): `metadata.csv` (headed, comma-separated; columns
uid, label in {v1s, v1m, v2}, split), `label2idx.json` (1-based, "background": 1; checked
against CLASSES when present, ours is a third-party copy), and per clip
`{label}/{uid}/frames/{i}.jpg`, `audio.wav`, `labels_rgb/{i}.png` (i from 0; v1 clips have 5
frames, v2 have 10).

Colour masks are decoded as the official code does: a pixel gets the index of the palette
colour it equals (the VOC-style bit palette of 71 colours, index 0 = black = background); a
pixel of no palette colour reads as background (counted). Decoded at full size, then resized
nearest to S = `avs_mask_size`.
Targets per clip: masks (10, S, S) uint8 class ids (frames without a PNG: 0 = background, as
the official padding), mask_valid (10,) uint8 = the PNG exists and the official ground-truth
flag is set (v1s: frame 0 only, v1m: 0-4, v2: 0-9) - the frames to train on; the official
evaluation scores all 10 frames, padded ones included. subset () int8 (0 v1s, 1 v1m, 2 v2);
classes_present (71,) uint8 (classes in the valid masks, background excluded).
Quirks counted: unmatched_pixels, masks_missing (a ground-truth frame without its PNG), v1s_masks_not_trained
(PNGs past frame 0 of v1s clips), label2idx_missing (the built-in list was used).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .avs_s4 import scene, sounding_pixels
from .common import (Adapter, Clip, Dataset, DatasetError, field, json_type, read_csv, read_image, read_json,
                     resize_nearest, split_field)

T = 10
CLASSES = [  # palette index order (label2idx.json minus 1); 0 = background
    "background", "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy",
    "bus", "car", "cat", "cello", "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck",
    "elephant", "emergency-car", "erhu", "flute", "frying-food", "girl", "goose", "guitar", "gun",
    "guzheng", "hair-dryer", "handpan", "harmonica", "harp", "helicopter", "hen", "horse",
    "keyboard", "leopard", "lion", "man", "marimba", "missile-rocket", "motorcycle", "mower",
    "parrot", "piano", "pig", "pipa", "saw", "saxophone", "sheep", "sitar", "sorna", "squirrel",
    "tabla", "tank", "tiger", "tractor", "train", "trombone", "truck", "trumpet", "tuba",
    "ukulele", "utv", "vacuum-cleaner", "violin", "wolf", "woman",
]
SYNTH_CLASSES = ["accordion", "cello", "dog", "piano", "violin", "car", "cat", "helicopter"]
SUBSETS = ("v1s", "v1m", "v2")
GT_FRAMES = {"v1s": 1, "v1m": 5, "v2": 10}          # frames with a training ground truth


def palette(n: int = len(CLASSES)) -> np.ndarray:
    """(n, 3) uint8: AVSBench's colour of class j (PASCAL VOC bit interleaving)."""
    out = np.zeros((n, 3), np.int64)
    for j in range(n):
        lab, i = j, 0
        while lab:
            for c in range(3):
                out[j, c] |= ((lab >> c) & 1) << (7 - i)
            i, lab = i + 1, lab >> 3
    return out.astype(np.uint8)


PALETTE = palette()
_CODES = PALETTE.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])


def colour_to_classes(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 -> (class map (H, W) uint8, number of pixels of no palette colour)."""
    code = rgb.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    order = np.argsort(_CODES)
    pos = np.clip(np.searchsorted(_CODES[order], code), 0, len(order) - 1)
    hit = _CODES[order][pos] == code
    return np.where(hit, order[pos], 0).astype(np.uint8), int((~hit).sum())


def class_masks(paths: list[Path], valid: np.ndarray, size: int, quirks: Counter) -> dict[str, np.ndarray]:
    masks = np.zeros((T, size, size), np.uint8)
    for k, p in enumerate(paths):
        if p.is_file():
            classes, unmatched = colour_to_classes(read_image(p, lambda im: im.convert("RGB")))
            masks[k] = resize_nearest(classes, size)
            quirks["unmatched_pixels"] += unmatched
    present = np.zeros(len(CLASSES), np.uint8)
    present[np.unique(masks[valid.astype(bool)])] = 1
    present[0] = 0
    return {"masks": masks, "classes_present": present}


def check_label2idx(path: Path, quirks: Counter) -> None:
    if not path.is_file():
        quirks["label2idx_missing"] = 1
        return
    _, table = read_json(path, "AVSS label2idx.json")
    if not isinstance(table, dict):
        raise DatasetError(f"{path}: expected a JSON object of class name -> index, got {json_type(table)}")
    for name, i in table.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise DatasetError(f"{path}: class {name!r} has index {json.dumps(i)}, {json_type(i)}; expected an integer")
    names = sorted(table.items(), key=lambda kv: kv[1])
    if [n for n, _ in names] != CLASSES or [i for _, i in names] != list(range(1, len(CLASSES) + 1)):
        raise DatasetError(f"{path}: the class list differs from CLASSES in pipeline/datasets/avss.py; update it")


def frames_of(clip_dir: Path) -> list[str]:
    n = 0
    while n < T and (clip_dir / "frames" / f"{n}.jpg").is_file():
        n += 1
    return [str(clip_dir / "frames" / f"{i}.jpg") for i in range(max(n, 1))]


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, size = root / cfg.avss_folder, cfg.avs_mask_size
    quirks = Counter(label2idx_missing=0, masks_missing=0, v1s_masks_not_trained=0, unmatched_pixels=0)
    check_label2idx(folder / "label2idx.json", quirks)
    clips, seen = [], {}
    for row in read_csv(folder / "metadata.csv", columns=("uid", "label", "split")):
        uid, subset, split = field(row, "uid"), field(row, "label"), split_field(row)
        if subset not in SUBSETS:
            raise DatasetError(f"{row.where()}: {uid}: label {subset!r} is not one of {', '.join(SUBSETS)}")
        if uid in seen:
            raise DatasetError(f"{row.where()}: uid {uid} appears twice (first at line {seen[uid]})")
        seen[uid] = row.line
        clip_dir = folder / subset / uid
        masks = [clip_dir / "labels_rgb" / f"{i}.png" for i in range(T)]
        exists = np.array([p.is_file() for p in masks])
        flag = np.arange(T) < GT_FRAMES[subset]
        quirks["masks_missing"] += int((flag & ~exists).sum())
        quirks["v1s_masks_not_trained"] += int((exists & ~flag).sum()) if subset == "v1s" else 0
        valid = (exists & flag).astype(np.uint8)
        source = {"frames": frames_of(clip_dir), "audio": str(clip_dir / "audio.wav")}
        clips.append(Clip(uid, source, (split,), {"mask_valid": valid, "subset": np.int8(SUBSETS.index(subset))},
                          lambda q, m=masks, v=valid: class_masks(m, v, size, q)))
    shapes = {"masks": ((T, size, size), "uint8"), "classes_present": ((len(CLASSES),), "uint8")}
    return Dataset(ADAPTER.name, T, clips, CLASSES, quirks, attrs={"subsets": list(SUBSETS)},
                   dense_shapes=shapes, dense_key=f"mask_size={size}")


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy: v1s, v1m and v2 clips in turn (v1s: one sounding object, masks of
    train clips for frame 0 only), colour masks in the palette."""
    from ..synth import background, render, split_sizes, write_csv, write_image, write_wav, youtube_id

    rows = []
    for split, count in split_sizes(clips).items():
        for k in range(count):
            subset = SUBSETS[len(rows) % 3]
            n_frames = 10 if subset == "v2" else 5
            objs = scene(rng, SYNTH_CLASSES, n_frames, 1 if subset == "v1s" else 2, 1, changing=subset != "v1s")
            uid = f"{subset}_{youtube_id(rng)}"
            frames, masks, audio = render(objs, n_frames, background(rng), rng)
            gt = sounding_pixels(objs, masks, [CLASSES.index(o.name) for o in objs])
            clip = out / subset / uid
            for t in range(n_frames):
                write_image(clip / "frames" / f"{t}.jpg", frames[t])
                if not (subset == "v1s" and split == "train" and t > 0):
                    write_image(clip / "labels_rgb" / f"{t}.png", PALETTE[gt[t]])
            write_wav(clip / "audio.wav", audio)
            rows.append([uid, subset, split, "_".join(o.name for o in objs if o.audible.any())])
    write_csv(out / "metadata.csv", ["uid", "label", "split", "a_obj"], rows)
    (out / "label2idx.json").write_text(json.dumps({n: i + 1 for i, n in enumerate(CLASSES)}, indent=4))


ADAPTER = Adapter(
    name="avss", T=T, classes=CLASSES, load=load,
    prompt="Segment and name every object that makes a sound.",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=40,
)
