"""The common interface of the adapters (a Clip per sample, a Dataset per benchmark) and the
few helpers several of them share. Kept apart from __init__ so that adapters can import it."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..vocab import VOCAB, Vocab

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """An annotation file is missing or says something the adapter cannot take."""


@dataclass
class Clip:
    clip_id: str                       # unique in the dataset (AVE: "<row>_<video id>")
    source: str | dict                 # a video path, or {"frames": [one image per second], "audio": wav}
    splits: tuple[str, ...]            # usually one; a MUSIC-AVQA video can be in val and test
    targets: dict[str, np.ndarray] = field(default_factory=dict)   # small arrays, same shapes in every clip
    dense: Callable[[Counter], dict[str, np.ndarray]] | None = None  # big arrays (masks), made when written


@dataclass
class Dataset:
    name: str
    T: int
    clips: list[Clip]                  # every sample the annotations name, media present or not
    classes: list[str]                 # the task's classes in index order (valid_ids follow it)
    quirks: Counter = field(default_factory=Counter)   # what was odd in the files, and how often
    attrs: dict = field(default_factory=dict)          # more store attributes (answer list, ...)
    dense_shapes: dict[str, tuple[tuple, str]] = field(default_factory=dict)  # name -> (shape, dtype)
    dense_key: str = ""                # settings the dense arrays depend on (mask size)
    questions: dict[str, list] | None = None            # MUSIC-AVQA's question table
    vocab: Vocab = VOCAB

    def split_names(self) -> list[str]:
        names = {s for c in self.clips for s in c.splits}
        return [s for s in SPLITS if s in names] + sorted(names - set(SPLITS))

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if name in c.splits]


def need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    return path


def read_csv(path: Path, delimiter: str = ",") -> list[dict]:
    """Rows of a headed CSV/TSV (CRLF or LF, BOM tolerated) as dicts, keys stripped."""
    with open(need_file(path, "annotation file"), newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    if not rows:
        raise DatasetError(f"{path}: empty file")
    head = [h.strip() for h in rows[0]]
    return [dict(zip(head, (v.strip() for v in r))) for r in rows[1:] if any(v.strip() for v in r)]


def resize_nearest(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) integer map -> (size, size), nearest neighbour (PIL NEAREST, as AVSBench's code)."""
    from PIL import Image

    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST))
