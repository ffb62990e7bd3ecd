"""LLP / AVVP (Tian et al., ECCV 2020): weakly-supervised audio-visual video parsing, T = 10.

Layout under --root: tab-separated `AVVP_train.csv`, `AVVP_val_pd.csv`, `AVVP_test_pd.csv`
(filename, event_labels) and the dense evaluation labels `AVVP_eval_audio.csv`,
`AVVP_eval_visual.csv` (filename, onset, offset, event_labels; integer seconds, offset
exclusive); videos `LLP/<id>.mp4`, id = filename[:11] (filenames are `<id>_<start>_<end>`,
five with fractional times).

Targets per clip: video_labels (25,) uint8 multi-hot (the only training target: weak labels);
gt_audio, gt_visual (25, 10) uint8, the official evaluation matrices (GT_av = their product),
all zero for train clips and for val/test clips without rows (legal); has_dense () uint8 (1 for
val/test). Eval rows are used as they are, as the official code does, also where their label
is not among the clip's weak labels (counted).
Quirks counted: fractional_filenames; per modality m in audio / visual: eval_m_unmatched_files
and _rows (filenames of no val/test clip: ignored), eval_m_empty_rows (onset >= offset: they
add nothing), eval_m_duplicate_rows, eval_m_rows_not_in_weak_labels, {val,test}_clips_without_m_rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .common import Adapter, Clip, Dataset, DatasetError, Row, field, read_csv

T = 10
CLASSES = [
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
    "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
    "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping",
]
SYNTH_CLASSES = ["Speech", "Dog", "Cat", "Cello", "Banjo", "Helicopter", "Accordion", "Violin_fiddle"]
FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
EVAL = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}


def class_index(name: str, row: Row) -> int:
    try:
        return CLASSES.index(name.strip())
    except ValueError:
        raise DatasetError(f"{row.where()}: unknown LLP class {name!r}") from None


def is_fractional(filename: str) -> bool:
    return any("." in part for part in filename[12:].split("_"))


def dense_labels(rows: list[Row], clips: dict[str, str], weak: dict[str, np.ndarray], modality: str,
                 quirks: Counter) -> dict[str, np.ndarray]:
    """filename -> (25, T) matrix from eval rows; rows naming no val/test clip are ignored."""
    gt = {name: np.zeros((len(CLASSES), T), np.uint8) for name in clips}
    unmatched = [r["filename"] for r in rows if r["filename"] not in clips]
    quirks[f"eval_{modality}_unmatched_files"] = len(set(unmatched))
    quirks[f"eval_{modality}_unmatched_rows"] = len(unmatched)
    quirks[f"eval_{modality}_duplicate_rows"] = len(rows) - len({tuple(r.values()) for r in rows})
    times = [(field(r, "onset", int, "an integer (seconds)"), field(r, "offset", int, "an integer (seconds)"))
             for r in rows]
    quirks[f"eval_{modality}_empty_rows"] = sum(on >= off for on, off in times)
    quirks[f"eval_{modality}_rows_not_in_weak_labels"] = 0
    for r, (on, off) in zip(rows, times):
        if r["filename"] not in clips:
            continue
        c = class_index(field(r, "event_labels"), r)
        quirks[f"eval_{modality}_rows_not_in_weak_labels"] += not weak[r["filename"]][c]
        gt[r["filename"]][c, max(on, 0) : min(off, T)] = 1
    have = {r["filename"] for r in rows}
    for split in ("val", "test"):
        quirks[f"{split}_clips_without_{modality}_rows"] = sum(n not in have for n, s in clips.items() if s == split)
    return gt


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder, quirks = root / cfg.llp_annotations, Counter()
    split_of, weak = {}, {}
    for split, file in FILES.items():
        for r in read_csv(folder / file, "\t", ("filename", "event_labels")):
            name = field(r, "filename")
            if name in split_of:
                raise DatasetError(f"{r.where()}: {name} is also in the {split_of[name]} list "
                                   f"({FILES[split_of[name]]})")
            split_of[name] = split
            weak[name] = np.zeros(len(CLASSES), np.uint8)
            labels = field(r, "event_labels", empty_ok=True).split(",")
            weak[name][[class_index(c, r) for c in labels if c.strip()]] = 1
    quirks["fractional_filenames"] = sum(map(is_fractional, split_of))
    evaluated = {n: s for n, s in split_of.items() if s in ("val", "test")}
    dense = {m: dense_labels(read_csv(folder / f, "\t", ("filename", "onset", "offset", "event_labels")),
                             evaluated, weak, m, quirks) for m, f in EVAL.items()}
    zeros = np.zeros((len(CLASSES), T), np.uint8)
    clips = []
    for name, split in split_of.items():
        targets = {"video_labels": weak[name], "gt_audio": dense["audio"].get(name, zeros),
                   "gt_visual": dense["visual"].get(name, zeros), "has_dense": np.uint8(name in evaluated)}
        clips.append(Clip(name, str(root / cfg.llp_videos.format(id=name[:11])), (split,), targets))
    return Dataset(ADAPTER.name, T, clips, CLASSES, quirks)


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy: 1-3 events a clip, each audio-only, visual-only or audio-visual over
    its own run; one fractional filename and two of the official stray eval rows."""
    from ..synth import Obj, background, random_run, render, run, slots, split_sizes, write_csv, write_mp4, youtube_id

    tables, evals = {}, {"audio": [], "visual": []}
    for split, count in split_sizes(clips).items():
        tables[split] = []
        for k in range(count):
            start = 8.5 if (split, k) == ("train", 0) else 10 * int(rng.integers(0, 30))
            name = f"{youtube_id(rng)}_{start:g}_{start + 10:g}"
            classes = rng.choice(SYNTH_CLASSES, int(rng.integers(1, 4)), replace=False)
            objs = []
            for cls, (x, y) in zip(classes, slots(rng, len(classes))):
                when, kind = random_run(rng, 10), rng.choice(["audio", "visual", "both"])
                objs.append(Obj(str(cls), x, y, 0.12, when if kind != "audio" else run(10, 0, 0),
                                when if kind != "visual" else run(10, 0, 0)))
            frames, _, audio = render(objs, 10, background(rng), rng)
            write_mp4(out / "LLP" / f"{name[:11]}.mp4", frames, audio)
            tables[split].append([name, ",".join(map(str, classes))])
            for o in objs:
                for modality, on in (("audio", o.audible), ("visual", o.visible)):
                    if on.any() and split != "train":
                        hit = np.flatnonzero(on)
                        evals[modality].append([name, int(hit[0]), int(hit[-1]) + 1, o.name])
    evals["audio"] += [["zzzzzzzzzzz_0_10", 0, 4, "Dog"], [tables["test"][0][0], 9, 9, "Speech"]]   # official quirks
    for split, rows in tables.items():
        write_csv(out / FILES[split], ["filename", "event_labels"], rows, "\t")
    write_csv(out / "AVVP_dataset_full.csv", ["filename", "event_labels"], sum(tables.values(), []), "\t")
    for modality, rows in evals.items():
        write_csv(out / EVAL[modality], ["filename", "onset", "offset", "event_labels"], rows, "\t")


ADAPTER = Adapter(
    name="llp", T=T, classes=CLASSES, load=load,
    prompt="Which events are heard, which are seen, and when?",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=48,
)
