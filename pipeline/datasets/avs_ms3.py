"""AVSBench MS3 (Zhou et al., ECCV 2022): multiple sound source segmentation, T = 5.

Layout under --root (setting `avs_ms3_folder`, default `Multi-sources/`): `ms3_meta_data.csv`
(comma-separated, headed; the clip name is the first column, as the official loader reads it,
and a `split` column), frames `ms3_data/visual_frames/{name}/{name}.mp4_{1..5}.png` (no split
folder), audio `ms3_data/audio_wav/{split}/{name}.wav`, masks
`ms3_data/gt_masks/{split}/{name}/{name}_{1..5}.png` (8-bit grey, > 0 = sounding; the real
ones hold {0, 9, 41}). Every split has 5 masks.

Targets per clip: masks (5, S, S) uint8 {0, 1}, mask_valid (5,) uint8. MS3 has no class or
answer target (no vocabulary tokens, no valid_ids).
Quirks counted: masks_missing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from . import avs_s4
from .avs_s4 import binary_masks, mask_flags, scene, sounding_pixels
from .common import Adapter, Clip, Dataset, DatasetError, read_csv, split_field

T = 5


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, quirks, size = root / cfg.avs_ms3_folder, Counter(masks_missing=0), cfg.avs_mask_size
    data, clips = folder / "ms3_data", []
    for row in read_csv(folder / "ms3_meta_data.csv", columns=("split",)):
        name, split = next(iter(row.values())), split_field(row)
        if not name:
            raise DatasetError(f"{row.where()}: the clip name (column 1) is empty")
        frames = [str(data / "visual_frames" / name / f"{name}.mp4_{k}.png") for k in range(1, T + 1)]
        masks = [data / "gt_masks" / split / name / f"{name}_{k}.png" for k in range(1, T + 1)]
        valid = mask_flags(masks, [True] * T, quirks)
        source = {"frames": frames, "audio": str(data / "audio_wav" / split / f"{name}.wav")}
        clips.append(Clip(name, source, (split,), {"mask_valid": valid},
                          lambda q, m=masks, v=valid: binary_masks(m, v, size)))
    return Dataset(ADAPTER.name, T, clips, [], quirks, dense_shapes={"masks": ((T, size, size), "uint8")},
                   dense_key=f"mask_size={size}")


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy: two objects sounding over their own runs, sometimes a silent third."""
    from ..synth import background, render, split_sizes, write_csv, write_image, write_wav, youtube_id

    rows, data = [], out / "Multi-sources" / "ms3_data"
    for split, count in split_sizes(clips).items():
        for k in range(count):
            objs = scene(rng, avs_s4.SYNTH_CLASSES, 5, 2, int(rng.integers(0, 2)), changing=True)
            name = f"{youtube_id(rng)}_{k}"
            frames, masks, audio = render(objs, 5, background(rng), rng)
            gt = sounding_pixels(objs, masks, [9, 41, 41])
            for t in range(5):
                write_image(data / "visual_frames" / name / f"{name}.mp4_{t + 1}.png", frames[t])
                write_image(data / "gt_masks" / split / name / f"{name}_{t + 1}.png", gt[t])
            write_wav(data / "audio_wav" / split / f"{name}.wav", audio)
            rows.append([name, split])
    write_csv(out / "Multi-sources" / "ms3_meta_data.csv", ["video_id", "split"], rows)


ADAPTER = Adapter(
    name="avs-ms3", T=T, classes=[], load=load,
    prompt="Segment every object that makes a sound.",
    synth=synth, synth_classes=avs_s4.SYNTH_CLASSES, demo_clips=40,
)
