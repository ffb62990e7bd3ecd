"""AVE (Tian et al., ECCV 2018): audio-visual event localisation, T = 10.

Layout under --root (`datasets.ave_*` in stages.yaml): `Annotations.txt` (`&`-separated
Category&VideoID&Quality&StartTime&EndTime; a header line is accepted), the split files
`{train,val,test}_order.h5` (key `order`: 0-based rows of Annotations.txt) read with h5py,
or, where they are absent, `DERIVED_ave_splits.csv` (split, order_pos, row_index, ...); videos
`AVE/<VideoID>.mp4`. A malformed row, an unknown category or a row index outside
Annotations.txt fails naming FILE:LINE (the .h5 files: FILE and the position in `order`).

A sample is a ROW: the same video can carry several rows (events), so clip ids are
`<row>_<VideoID>` and the source path repeats. Classes are the 28 of CATEGORIES (the official
numbering, by first appearance in the real file) and background = 28.
Targets per clip: labels (10,) int16 class per segment, [start, end) = the class, the rest
background (a row with start = end is all background); video_label () int16 (the class, for
weakly-supervised training; 28 for an all-background row: a background-only clip, the negative
bag weak training learns background from).
Quirks counted: header_lines, rows_all_background, rows_sharing_a_video, videos_with_several_rows,
rows_in_no_split.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .common import SPLITS, Adapter, Clip, Dataset, DatasetError, field, read_csv, read_text, split_field

T = 10
CATEGORIES = [  # numbered by first appearance in Annotations.txt; background = 28
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
]
BACKGROUND = len(CATEGORIES)
CLASSES = CATEGORIES + ["background"]
SYNTH_CLASSES = ["Church bell", "Bark", "Helicopter", "Violin, fiddle", "Cat", "Accordion"]


def read_annotations(path: Path, quirks: Counter) -> list[tuple[str, str, int, int]]:
    """(category, video id, start, end) per row, in file order. A first line whose times are
    both non-integers is a header; after it every line must be a row."""
    rows = []
    for n, line in enumerate(re.split(r"\r\n|\r|\n", read_text(path, "AVE Annotations.txt")), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.strip().split("&")]
        if len(parts) != 5:
            raise DatasetError(f"{path}:{n}: expected 5 '&'-separated fields "
                               f"(Category&VideoID&Quality&StartTime&EndTime), got {len(parts)}: {line!r}")
        if not rows and not quirks["header_lines"] and not any(map(_is_int, parts[3:])):
            quirks["header_lines"] += 1                                  # "Category&VideoID&Quality&..."
            continue
        for name, value in (("StartTime", parts[3]), ("EndTime", parts[4])):
            if not _is_int(value):
                raise DatasetError(f"{path}:{n}: {name} {value!r} is not an integer (whole seconds)")
        if parts[0] not in CATEGORIES:
            raise DatasetError(f"{path}:{n}: category {parts[0]!r} is not one of the 28 official AVE categories")
        if not parts[1]:
            raise DatasetError(f"{path}:{n}: VideoID is empty")
        rows.append((parts[0], parts[1], int(parts[3]), int(parts[4])))
    if not rows:
        raise DatasetError(f"{path}: no annotation rows")
    return rows


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def read_order(path: Path, n_rows: int) -> list[int]:
    """An official *_order.h5: dataset `order`, 1-D integers, each a 0-based row of Annotations.txt."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        order = f.get("order")
        if not isinstance(order, h5py.Dataset):
            raise DatasetError(f"{path}: no dataset 'order' (it holds: {', '.join(f) or 'nothing'})")
        if order.dtype.kind not in "iu" or order.ndim != 1:
            raise DatasetError(f"{path}: 'order' is {order.dtype} of shape {order.shape}; expected a 1-D array "
                               f"of integers (0-based rows of Annotations.txt)")
        out = [int(i) for i in order[:]]
    for pos, i in enumerate(out):
        if not 0 <= i < n_rows:
            raise DatasetError(f"{path}: order[{pos}] = {i} is not a row of Annotations.txt "
                               f"({n_rows} rows, numbered from 0)")
    return out


def read_splits(folder: Path, n_rows: int) -> dict[str, list[int]]:
    """Row indices per split: the official *_order.h5 files, else the DERIVED csv."""
    h5 = {s: folder / f"{s}_order.h5" for s in SPLITS}
    if all(p.is_file() for p in h5.values()):
        return {s: read_order(p, n_rows) for s, p in h5.items()}
    derived = folder / "DERIVED_ave_splits.csv"
    if not derived.is_file():
        raise DatasetError(f"{folder}: no {{train,val,test}}_order.h5 and no DERIVED_ave_splits.csv")
    rows = []
    for r in read_csv(derived, columns=("split", "order_pos", "row_index")):
        split, pos, i = split_field(r), field(r, "order_pos", int), field(r, "row_index", int)
        if not 0 <= i < n_rows:
            raise DatasetError(f"{r.where()}: row_index {i} is not a row of Annotations.txt "
                               f"({n_rows} rows, numbered from 0)")
        rows.append((split, pos, i))
    rows.sort(key=lambda r: r[:2])
    return {s: [i for split, _, i in rows if split == s] for s in SPLITS}


def segment_labels(cls: int, start: int, end: int) -> np.ndarray:
    labels = np.full(T, BACKGROUND, np.int16)
    labels[max(start, 0) : min(end, T)] = cls
    return labels


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, quirks = root / cfg.ave_annotations, Counter(header_lines=0)
    rows = read_annotations(folder / "Annotations.txt", quirks)
    split_of: dict[int, str] = {}
    for s, order in read_splits(folder, len(rows)).items():
        for i in order:
            split_of.setdefault(i, s)
    per_video = Counter(r[1] for r in rows)
    quirks["rows_sharing_a_video"] = sum(per_video[r[1]] > 1 for r in rows)
    quirks["videos_with_several_rows"] = sum(n > 1 for n in per_video.values())
    quirks["rows_all_background"] = sum(start >= end for _, _, start, end in rows)
    quirks["rows_in_no_split"] = len(rows) - len(split_of)
    clips = []
    for i, (cat, vid, start, end) in enumerate(rows):
        if i not in split_of:
            continue
        cls = CATEGORIES.index(cat)
        clips.append(Clip(f"{i}_{vid}", str(root / cfg.ave_videos.format(id=vid)), (split_of[i],),
                          {"labels": segment_labels(cls, start, end),
                           "video_label": np.int16(cls if start < end else BACKGROUND)}))
    return Dataset(ADAPTER.name, T, clips, CLASSES, quirks)


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy: one event per row (seen and heard in [start, end)); background
    seconds hold silent or unseen copies of the class. One video carries two rows; one row has
    start = end."""
    import h5py

    from ..synth import Obj, background, random_run, render, run, slots, split_sizes, write_mp4, youtube_id

    rows, order, n = [], {s: [] for s in split_sizes(clips)}, 0
    for split, count in split_sizes(clips).items():
        for k in range(count):
            vid, cls = youtube_id(rng), SYNTH_CLASSES[int(rng.integers(len(SYNTH_CLASSES)))]
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


ADAPTER = Adapter(
    name="ave", T=T, classes=CLASSES, load=load,
    prompt="Which event is both heard and seen in each second of the video?",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=32,
)
