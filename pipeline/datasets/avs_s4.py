"""AVSBench S4 (Zhou et al., ECCV 2022): single sound source segmentation, T = 5.

Layout under --root (setting `avs_s4_folder`, default `Single-source/`): `s4_meta_data.csv`
(comma-separated, headed: name, start_time, category, split; read by column name, the clip
name also as the first column), frames
`s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png`, audio
`s4_data/audio_wav/{split}/{category}/{name}.wav`, masks
`s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png`: train has only mask 1, val and
test have 5. Frame k is second k - 1.

Targets per clip: masks (5, S, S) uint8 in {0, 1} (S = `avs_mask_size`; a mask is any value
> 0, the real ones hold {0, 45}; resized nearest), mask_valid (5,) uint8 (frames with a ground
truth: train frame 1 only; a missing file is 0), class_index () int16 (category in
CLASSES).
Quirks counted: masks_missing (expected, absent), train_masks_ignored (train masks beyond
frame 1: the official code never reads them).

The synthetic AVSBench scenes (`scene`, `sounding_pixels`) serve S4, MS3 and AVSS.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .common import (Adapter, Clip, Dataset, DatasetError, Row, field, read_csv, read_image, resize_nearest,
                     split_field)

T = 5
CLASSES = [  # AVSBench-object single-source categories (folder names)
    "ambulance_siren", "baby_laughter", "cap_gun_shooting", "cat_meowing", "chainsawing_trees",
    "coyote_howling", "dog_barking", "driving_buses", "female_singing", "helicopter",
    "horse_clip-clop", "lawn_mowing", "lions_roaring", "male_speech", "mynah_bird_singing",
    "playing_acoustic_guitar", "playing_glockenspiel", "playing_piano", "playing_tabla",
    "playing_ukulele", "playing_violin", "race_car", "typing_on_computer_keyboard",
]
SYNTH_CLASSES = ["playing_violin", "dog_barking", "helicopter", "cat_meowing", "playing_piano",
                 "playing_acoustic_guitar"]   # MS3's synthetic copy draws them too


def binary_mask(path: Path, size: int) -> np.ndarray:
    """A grey (or palette) mask PNG -> (size, size) uint8 {0, 1}: any nonzero pixel is sounding."""
    grey = read_image(path, lambda im: im.convert("L") if im.mode not in ("L", "P", "1") else im)
    return resize_nearest((grey > 0).astype(np.uint8), size)


def binary_masks(paths: list[Path], valid: np.ndarray, size: int) -> dict[str, np.ndarray]:
    masks = np.zeros((len(paths), size, size), np.uint8)
    for k, p in enumerate(paths):
        if valid[k]:
            masks[k] = binary_mask(p, size)
    return {"masks": masks}


def mask_flags(paths: list[Path], expected: list[bool], quirks: Counter) -> np.ndarray:
    exists = np.array([p.is_file() for p in paths])
    quirks["masks_missing"] += int((np.array(expected) & ~exists).sum())
    if not all(expected):
        quirks["train_masks_ignored"] += int((~np.array(expected) & exists).sum())
    return (np.array(expected) & exists).astype(np.uint8)


def name_of(row: Row) -> str:
    """The clip name: column `name`, else the first column (as the official loader reads it)."""
    name = row.get("name") or next(iter(row.values()))
    if not name:
        raise DatasetError(f"{row.where()}: the clip name (column {'name' if 'name' in row else 1}) is empty")
    return name


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, size = root / cfg.avs_s4_folder, cfg.avs_mask_size
    quirks = Counter(masks_missing=0, train_masks_ignored=0)
    data, clips = folder / "s4_data", []
    for row in read_csv(folder / "s4_meta_data.csv", columns=("category", "split")):
        name, cat, split = name_of(row), field(row, "category"), split_field(row)
        if cat not in CLASSES:
            raise DatasetError(f"{row.where()}: {name}: category {cat!r} is not one of the 23 S4 categories")
        rel = f"{split}/{cat}/{name}"
        frames = [str(data / "visual_frames" / rel / f"{name}_{k}.png") for k in range(1, T + 1)]
        masks = [data / "gt_masks" / rel / f"{name}_{k}.png" for k in range(1, T + 1)]
        valid = mask_flags(masks, [split != "train" or k == 0 for k in range(T)], quirks)
        cls = CLASSES.index(cat)
        targets = {"mask_valid": valid, "class_index": np.int16(cls)}
        source = {"frames": frames, "audio": str(data / "audio_wav" / split / cat / f"{name}.wav")}
        clips.append(Clip(name, source, (split,), targets,
                          lambda q, m=masks, v=valid: binary_masks(m, v, size)))
    return Dataset(ADAPTER.name, T, clips, CLASSES, quirks, dense_shapes={"masks": ((T, size, size), "uint8")},
                   dense_key=f"mask_size={size}")


def scene(rng: np.random.Generator, classes: list[str], T: int, n_sounding: int, n_silent: int,
          changing: bool) -> list:
    """Objects in distinct quadrants (big enough to span 2 x 2 cells of a 4 x 4 patch grid);
    the first n_sounding sound (all the time, or over a random run when `changing`)."""
    from ..synth import Obj, quadrants, random_run, run

    names = rng.choice(classes, n_sounding + n_silent, replace=False)
    objs = []
    places = quadrants(rng, list(rng.permutation(4)[:len(names)]))
    for k, (name, (x, y, r)) in enumerate(zip(names, places)):
        heard = (random_run(rng, T, 1) if changing else run(T, 0, T)) if k < n_sounding else run(T, 0, 0)
        objs.append(Obj(str(name), x, y, r, run(T, 0, T), heard, 0.25))
    return objs


def sounding_pixels(objs: list, masks: np.ndarray, values) -> np.ndarray:
    """(T, S, S) uint8: each sounding object's pixels set to its value, 0 elsewhere."""
    out = np.zeros(masks.shape[:1] + masks.shape[2:], np.uint8)
    for k, o in enumerate(objs):
        for t in np.flatnonzero(o.audible):
            out[t][masks[t, k]] = values[k]
    return out


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy: one sounding and one silent object a clip; train has mask 1 only."""
    from ..synth import background, render, split_sizes, write_csv, write_image, write_wav, youtube_id

    rows, data = [], out / "Single-source" / "s4_data"
    for split, count in split_sizes(clips).items():
        for k in range(count):
            objs = scene(rng, SYNTH_CLASSES, 5, 1, 1, changing=False)
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


ADAPTER = Adapter(
    name="avs-s4", T=T, classes=CLASSES, load=load,
    prompt="Segment the object that makes the sound.",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=40,
)
