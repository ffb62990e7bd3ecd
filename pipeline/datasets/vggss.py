"""VGG-SS (Chen et al., CVPR 2021): sound source localisation, T = 10.

Layout under --root: `vggss.json` (list of {file, class, bbox: [[xmin, ymin, xmax, ymax], ...]}
normalised), `vggss_test.csv` (the same ids, CRLF; checked against the json when present);
videos `VGGSS/<file>.mp4`. Every annotated entry is split "test" (VGG-SS is a test set).
Optional, not official: `vggsound_train.txt` (setting `vggss_train_list`), one VGGSound id a
line with an optional `,class`: unannotated training clips (split "train", no boxes), for the
self-supervised localisation loss.

The annotated frame is the middle second's frame: second T // 2 = 5 (the frame nearest 5.5 s).
Targets per clip: boxes (B, 4) float64, the file's values exactly (float32 would move a pixel of
the official int(224 * c) where 224 * c is whole; B = most boxes of an entry in the file, 7 in the
real one; zero-padded), every coordinate clipped to [0, 1]; box_count () int8; frame_index () int16;
class_index () int16 (in vocab.VGGSS_CLASSES, -1 where unknown: train clips without a class);
tokens (2,) int32 = [t_frame, class].
Quirks counted: garbage_coordinates (boxes with a coordinate outside [0, 1], e.g. -2.9e16:
clipped), degenerate_boxes (zero area after clipping: kept, they fill no pixel), test_csv_ids_not_in_json,
json_ids_not_in_test_csv, train_ids_also_in_test (dropped from train).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from ..vocab import SERIALISERS, VGGSS_CLASSES
from .common import Clip, Dataset, DatasetError, Invalid, JsonList, is_number, nonempty, read_text

T = 10
FRAME = T // 2


def clean_boxes(boxes: list, quirks: Counter) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    quirks["garbage_coordinates"] += int(((b < 0) | (b > 1)).any(axis=1).sum())
    b = np.clip(b, 0.0, 1.0)
    quirks["degenerate_boxes"] += int(((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).sum())
    return b


def class_index(name: str | None, where: str) -> int:
    if name is None:
        return -1
    if name not in VGGSS_CLASSES:
        raise DatasetError(f"{where}: VGG-SS class {name!r} is not one of the 221 in pipeline/vocab.py")
    return VGGSS_CLASSES.index(name)


def box_list(value: list) -> list:
    """The bbox of an entry as it is, once checked: a list of [xmin, ymin, xmax, ymax] numbers."""
    for box in value:
        if not isinstance(box, list) or len(box) != 4:
            raise Invalid(f"{json.dumps(box)} is not 4 numbers")
        if not all(map(is_number, box)):
            raise Invalid(f"{json.dumps(box)} holds a value that is not a number")
    return value


def clip(root: Path, cfg: DatasetsConfig, file: str, split: str, cls: int, boxes: np.ndarray, n_max: int) -> Clip:
    padded = np.zeros((n_max, 4), np.float64)
    padded[: len(boxes)] = boxes
    targets = {"boxes": padded, "box_count": np.int8(len(boxes)), "frame_index": np.int16(FRAME),
               "class_index": np.int16(cls),
               "tokens": SERIALISERS["vggss"][0]({"frame_index": FRAME, "class_index": cls})}
    return Clip(file, str(root / cfg.vggss_videos.format(file=file)), (split,), targets)


def read_train_list(path: Path) -> list[tuple[str, str | None, str]]:
    """(file, class or None, FILE:LINE) per line."""
    rows = []
    for n, line in enumerate(re.split(r"\r\n|\r|\n", read_text(path, "VGG-SS training list")), 1):
        file, _, cls = line.strip().partition(",")
        if file:
            rows.append((file.strip(), cls.strip() or None, f"{path}:{n}"))
    return rows


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, quirks = root / cfg.vggss_annotations, Counter()
    entries = JsonList(folder / "vggss.json", "VGG-SS vggss.json", "file")
    if not len(entries):
        raise DatasetError(f"{entries.path}: no entries")
    files = [entries.value(k, "file", (str,), nonempty, "an id") for k in range(len(entries))]
    classes = [entries.value(k, "class", (str,), VGGSS_CLASSES.index,
                             "one of the 221 VGG-SS classes in pipeline/vocab.py") for k in range(len(entries))]
    boxes = [clean_boxes(entries.value(k, "bbox", (list,), box_list, "a list of [xmin, ymin, xmax, ymax] boxes"),
                         quirks) for k in range(len(entries))]
    n_max = max(len(b) for b in boxes)
    if (folder / "vggss_test.csv").is_file():
        text = read_text(folder / "vggss_test.csv", "VGG-SS test list")
        listed = {x.strip() for x in text.splitlines() if x.strip()}
        quirks["test_csv_ids_not_in_json"] = len(listed - set(files))
        quirks["json_ids_not_in_test_csv"] = len(set(files) - listed)
    clips = [clip(root, cfg, f, "test", c, b, n_max) for f, c, b in zip(files, classes, boxes)]
    train = folder / cfg.vggss_train_list
    if train.is_file():
        rows = read_train_list(train)
        tested, empty = set(files), np.zeros((0, 4), np.float32)
        quirks["train_ids_also_in_test"] = sum(f in tested for f, _, _ in rows)
        clips += [clip(root, cfg, f, "train", class_index(c, where), empty, n_max)
                  for f, c, where in rows if f not in tested]
    return Dataset("vggss", T, clips, VGGSS_CLASSES, quirks)
