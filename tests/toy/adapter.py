"""Toy, stage one: which of three things is seen and heard in a clip (one label a clip), T = 4.

Layout under --root: `labels.csv` (clip, split, label; headed) and `videos/<clip>.mp4`.
Targets per clip: label () int16, the class's index in CLASSES.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.config import DatasetsConfig
from pipeline.datasets.common import Adapter, Clip, Dataset, DatasetError, field, read_csv, split_field

T = 4
CLASSES = ["Bark", "Cat", "Accordion"]   # spellings other benchmarks' synthetic copies draw


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    clips = []
    for row in read_csv(root / "labels.csv", columns=("clip", "split", "label")):
        label = field(row, "label")
        if label not in CLASSES:
            raise DatasetError(f"{row.where()}: unknown label {label!r}")
        clips.append(Clip(field(row, "clip"), str(root / "videos" / f"{row['clip']}.mp4"), (split_field(row),),
                          {"label": np.int16(CLASSES.index(label))}))
    return Dataset("toy", T, clips, CLASSES, Counter())


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """Each clip: one of the classes, seen and heard all the time, at a random place."""
    from pipeline.synth import Obj, background, render, slots, split_sizes, write_csv, write_mp4

    rows = []
    for split, count in split_sizes(clips).items():
        for k in range(count):
            name, cls = f"{split}{k:03d}", CLASSES[k % len(CLASSES)]
            (x, y), = slots(rng, 1)
            frames, _, audio = render([Obj(cls, x, y, 0.15, np.ones(T, bool), np.ones(T, bool))], T,
                                      background(rng), rng)
            write_mp4(out / "videos" / f"{name}.mp4", frames, audio)
            rows.append([name, split, cls])
    write_csv(out / "labels.csv", ["clip", "split", "label"], rows)


ADAPTER = Adapter(
    name="toy", T=T, classes=CLASSES, load=load,
    prompt="Which thing is seen and heard in the clip?",
    synth=synth, synth_classes=CLASSES, demo_clips=6,
)
