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
vocab.S4_CLASSES), tokens (1,) int32.
Quirks counted: masks_missing (expected, absent), train_masks_ignored (train masks beyond
frame 1: the official code never reads them).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from ..vocab import S4_CLASSES, SERIALISERS
from .common import Clip, Dataset, DatasetError, Row, field, read_csv, read_image, resize_nearest, split_field

T = 5


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
        if cat not in S4_CLASSES:
            raise DatasetError(f"{row.where()}: {name}: category {cat!r} is not one of the 23 S4 categories")
        rel = f"{split}/{cat}/{name}"
        frames = [str(data / "visual_frames" / rel / f"{name}_{k}.png") for k in range(1, T + 1)]
        masks = [data / "gt_masks" / rel / f"{name}_{k}.png" for k in range(1, T + 1)]
        valid = mask_flags(masks, [split != "train" or k == 0 for k in range(T)], quirks)
        cls = S4_CLASSES.index(cat)
        targets = {"mask_valid": valid, "class_index": np.int16(cls),
                   "tokens": SERIALISERS["avs-s4"][0]({"class_index": cls})}
        source = {"frames": frames, "audio": str(data / "audio_wav" / split / cat / f"{name}.wav")}
        clips.append(Clip(name, source, (split,), targets,
                          lambda q, m=masks, v=valid: binary_masks(m, v, size)))
    return Dataset("avs-s4", T, clips, S4_CLASSES, quirks, dense_shapes={"masks": ((T, size, size), "uint8")},
                   dense_key=f"mask_size={size}")
