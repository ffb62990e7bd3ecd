"""AVE (Tian et al., ECCV 2018): audio-visual event localisation, T = 10.

Layout under --root (`datasets.ave_*` in stages.yaml): `Annotations.txt` (`&`-separated
Category&VideoID&Quality&StartTime&EndTime; a header line is accepted), the split files
`{train,val,test}_order.h5` (key `order`: 0-based rows of Annotations.txt) read with h5py,
or, where they are absent, `DERIVED_ave_splits.csv` (split, row_index, ...); videos
`AVE/<VideoID>.mp4`.

A sample is a ROW: the same video can carry several rows (events), so clip ids are
`<row>_<VideoID>` and the source path repeats. Classes are the 28 of vocab.AVE_CLASSES (the
official numbering, by first appearance in the real file); background = 28.
Targets per clip: labels (10,) int16 class per segment, [start, end) = the class, the rest
background (a row with start = end is all background); video_label () int16 (the class, for
weakly-supervised training); tokens (10,) int32.
Quirks counted: header_lines, rows_all_background, rows_sharing_a_video, videos_with_several_rows,
rows_in_no_split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from ..vocab import AVE_CLASSES, CLASSES, SERIALISERS
from .common import SPLITS, Clip, Dataset, DatasetError, need_file, read_csv

T = 10
BACKGROUND = 28


def read_annotations(path: Path, quirks: Counter) -> list[tuple[str, str, int, int]]:
    """(category, video id, start, end) per row, in file order."""
    rows = []
    for n, line in enumerate(need_file(path, "AVE Annotations.txt").read_text(encoding="utf-8-sig").splitlines()):
        if not line.strip():
            continue
        parts = line.strip().split("&")
        if len(parts) != 5:
            raise DatasetError(f"{path}:{n + 1}: expected 5 '&'-separated fields, got {line!r}")
        if not rows and not parts[3].strip().isdigit():            # "Category&VideoID&Quality&..."
            quirks["header_lines"] += 1
            continue
        rows.append((parts[0].strip(), parts[1].strip(), int(parts[3]), int(parts[4])))
    return rows


def read_splits(folder: Path) -> dict[str, list[int]]:
    """Row indices per split: the official *_order.h5 files, else the DERIVED csv."""
    h5 = {s: folder / f"{s}_order.h5" for s in SPLITS}
    if all(p.is_file() for p in h5.values()):
        import h5py

        out = {}
        for s, p in h5.items():
            with h5py.File(p, "r") as f:
                out[s] = [int(i) for i in f["order"][:]]
        return out
    derived = folder / "DERIVED_ave_splits.csv"
    if not derived.is_file():
        raise DatasetError(f"{folder}: no {{train,val,test}}_order.h5 and no DERIVED_ave_splits.csv")
    rows = sorted(read_csv(derived), key=lambda r: (r["split"], int(r["order_pos"])))
    return {s: [int(r["row_index"]) for r in rows if r["split"] == s] for s in SPLITS}


def segment_labels(cls: int, start: int, end: int) -> np.ndarray:
    labels = np.full(T, BACKGROUND, np.int16)
    labels[max(start, 0) : min(end, T)] = cls
    return labels


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, quirks = root / cfg.ave_annotations, Counter(header_lines=0)
    rows = read_annotations(folder / "Annotations.txt", quirks)
    unknown = sorted({r[0] for r in rows} - set(AVE_CLASSES))
    if unknown:
        raise DatasetError(f"AVE categories not in the 28 official ones: {unknown}")
    split_of: dict[int, str] = {}
    for s, order in read_splits(folder).items():
        for i in order:
            if not 0 <= i < len(rows):
                raise DatasetError(f"AVE {s} split names row {i}; Annotations.txt has {len(rows)}")
            split_of.setdefault(i, s)
    per_video = Counter(r[1] for r in rows)
    quirks["rows_sharing_a_video"] = sum(per_video[r[1]] > 1 for r in rows)
    quirks["videos_with_several_rows"] = sum(n > 1 for n in per_video.values())
    quirks["rows_all_background"] = sum(start >= end for _, _, start, end in rows)
    quirks["rows_in_no_split"] = len(rows) - len(split_of)
    to_tokens = SERIALISERS["ave"][0]
    clips = []
    for i, (cat, vid, start, end) in enumerate(rows):
        if i not in split_of:
            continue
        cls = AVE_CLASSES.index(cat)
        labels = segment_labels(cls, start, end)
        clips.append(Clip(f"{i}_{vid}", str(root / cfg.ave_videos.format(id=vid)), (split_of[i],),
                          {"labels": labels, "video_label": np.int16(cls),
                           "tokens": to_tokens({"labels": labels})}))
    return Dataset("ave", T, clips, CLASSES["ave"], quirks)
