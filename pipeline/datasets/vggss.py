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
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from ..vocab import SERIALISERS, VGGSS_CLASSES
from .common import Clip, Dataset, DatasetError, need_file

T = 10
FRAME = T // 2


def clean_boxes(boxes: list, quirks: Counter) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    quirks["garbage_coordinates"] += int(((b < 0) | (b > 1)).any(axis=1).sum())
    b = np.clip(b, 0.0, 1.0)
    quirks["degenerate_boxes"] += int(((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).sum())
    return b


def class_index(name: str | None) -> int:
    if name is None:
        return -1
    if name not in VGGSS_CLASSES:
        raise DatasetError(f"VGG-SS class {name!r} is not one of the 221 in pipeline/vocab.py")
    return VGGSS_CLASSES.index(name)


def clip(root: Path, cfg: DatasetsConfig, file: str, split: str, cls: int, boxes: np.ndarray, n_max: int) -> Clip:
    padded = np.zeros((n_max, 4), np.float64)
    padded[: len(boxes)] = boxes
    targets = {"boxes": padded, "box_count": np.int8(len(boxes)), "frame_index": np.int16(FRAME),
               "class_index": np.int16(cls),
               "tokens": SERIALISERS["vggss"][0]({"frame_index": FRAME, "class_index": cls})}
    return Clip(file, str(root / cfg.vggss_videos.format(file=file)), (split,), targets)


def read_train_list(path: Path) -> list[tuple[str, str | None]]:
    rows = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        file, _, cls = line.strip().partition(",")
        if file:
            rows.append((file.strip(), cls.strip() or None))
    return rows


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, quirks = root / cfg.vggss_annotations, Counter()
    entries = json.loads(need_file(folder / "vggss.json", "VGG-SS vggss.json").read_text())
    boxes = [clean_boxes(e["bbox"], quirks) for e in entries]
    n_max = max(len(b) for b in boxes)
    files = [e["file"] for e in entries]
    if (folder / "vggss_test.csv").is_file():
        listed = {x.strip() for x in (folder / "vggss_test.csv").read_text().splitlines() if x.strip()}
        quirks["test_csv_ids_not_in_json"] = len(listed - set(files))
        quirks["json_ids_not_in_test_csv"] = len(set(files) - listed)
    clips = [clip(root, cfg, e["file"], "test", class_index(e["class"]), b, n_max) for e, b in zip(entries, boxes)]
    train = folder / cfg.vggss_train_list
    if train.is_file():
        rows = read_train_list(train)
        tested, empty = set(files), np.zeros((0, 4), np.float32)
        quirks["train_ids_also_in_test"] = sum(f in tested for f, _ in rows)
        clips += [clip(root, cfg, f, "train", class_index(c), empty, n_max) for f, c in rows if f not in tested]
    return Dataset("vggss", T, clips, VGGSS_CLASSES, quirks)
