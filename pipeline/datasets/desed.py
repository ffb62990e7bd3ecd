"""DESED (Turpault et al., DCASE task 4): sound event detection in domestic clips of up to 10 s,
T = 0 (any length), hop 0.25 s. Only what is HEARD is annotated; the clips are audio.

Layout under --root (`datasets.desed_*` in stages.yaml): the tab-separated `validation.tsv` and
`public.tsv` (filename, onset, offset, event_label; seconds with 3 decimals; a row with empty
onset, offset and label marks a clip without events) and `validation_durations.tsv` (filename,
duration), either in the annotation folder itself or in DESED's own `metadata/validation/` and
`metadata/eval/` below it; the audio in DESED's layout, `audio/validation/<filename>` and
`audio/eval/public/<filename>` (`.wav`: audio-only clips, interfaces point 5). Where a video of
the same stem (.mp4, .mkv, .webm) lies beside the .wav it is taken instead (counted).
Splits (UniAV's protocol): validation -> "train" (UniAV trains on it), public -> "test"; no val.
Filenames differ by split (validation `Y<id>_30.000_40.000.wav`, public `<id>_120_130.wav`); a
clip's id is its filename without `.wav`. Durations: the durations file, else the times in the
filename (public: `_16_27` = 11 s), else unknown (NaN). Classes: the 10 of CLASSES, alphabetical.

Targets per clip (common.dense_targets; E = the most events in one clip): segments (E, 2)
float32 seconds, segment_labels (E,) int16 (-1 pads; a clip without events is all padding),
duration () float32. Quirks counted: clips_without_events (15 in validation: kept, no GT),
events_past_duration (16 in validation: clipped to the listed duration), events_before_zero,
events_starting_past_duration (clipped), duplicate_events and zero_length_events (kept),
clips_shorter_than_10_s (102), durations_from_filenames, durations_of_unknown_clips (rows of the
durations file naming no clip: ignored), clips_with_video.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .common import (VIDEO_EXTENSIONS, Adapter, Clip, Dataset, DatasetError, Event, MediaFolder,
                     dense_clip_targets, field, read_csv)

CLASSES = ["Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog", "Electric_shaver_toothbrush", "Frying",
           "Running_water", "Speech", "Vacuum_cleaner"]
SYNTH_CLASSES = ["Speech", "Dog", "Cat", "Alarm_bell_ringing", "Blender", "Dishes", "Vacuum_cleaner",
                 "Running_water"]
SPLITS = {"validation": "train", "public": "test"}          # tsv stem -> our split
METADATA = {"validation": "metadata/validation", "public": "metadata/eval"}   # DESED's folders
AUDIO = {"validation": "validation", "public": "eval/public"}
DURATIONS = "validation_durations.tsv"
FILENAME_TIMES = re.compile(r"_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)\.wav$")


def find_table(folder: Path, name: str, official: str) -> Path | None:
    for path in (folder / name, folder / official / name):
        if path.is_file():
            return path
    return None


def number(value: str) -> float:
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise ValueError
    return out


def read_events(path: Path, quirks: Counter) -> dict[str, list[Event]]:
    """filename -> its events in file order (a clip without events: an empty list)."""
    clips: dict[str, list[Event]] = {}
    for row in read_csv(path, "\t", ("filename", "onset", "offset", "event_label")):
        name = field(row, "filename")
        events = clips.setdefault(name, [])
        empty = [not row[c] for c in ("onset", "offset", "event_label")]
        if all(empty):
            quirks["empty_rows"] += 1
            continue
        if any(empty):
            raise DatasetError(f"{row.where()}: onset, offset and event_label must all be given or all be empty "
                               f"(a clip without events)")
        onset, offset = (field(row, c, number, "a time in seconds") for c in ("onset", "offset"))
        if onset > offset:
            raise DatasetError(f"{row.where()}: onset {onset:g} is after offset {offset:g}")
        label = field(row, "event_label")
        if label not in CLASSES:
            raise DatasetError(f"{row.where()}: event_label {label!r} is not one of the 10 DESED classes "
                               f"({', '.join(CLASSES)})")
        events.append((onset, offset, CLASSES.index(label)))
    return clips


def read_durations(path: Path) -> dict[str, float]:
    return {field(r, "filename"): field(r, "duration", number, "a duration in seconds")
            for r in read_csv(path, "\t", ("filename", "duration"))}


def filename_duration(name: str) -> float:
    m = FILENAME_TIMES.search(name)
    return float(m.group(2)) - float(m.group(1)) if m else math.nan


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    folder = root / cfg.desed_annotations
    quirks = Counter(dict.fromkeys(["empty_rows", "duplicate_events", "zero_length_events", "events_past_duration",
                                    "events_before_zero", "events_starting_past_duration",
                                    "durations_from_filenames", "durations_of_unknown_clips", "clips_with_video"], 0))
    tables = {s: find_table(folder, f"{s}.tsv", METADATA[s]) for s in SPLITS}
    if not any(tables.values()):
        raise DatasetError(f"{folder}: no validation.tsv or public.tsv (nor in {METADATA['validation']}/, "
                           f"{METADATA['public']}/)")
    durations_file = find_table(folder, DURATIONS, METADATA["validation"])
    durations = read_durations(durations_file) if durations_file else {}
    parsed, split_of = {}, {}
    for stem, path in tables.items():
        if path is None:
            continue
        for name, events in read_events(path, quirks).items():
            if name in split_of:
                raise DatasetError(f"{path}: {name} is also in the {split_of[name]} list")
            parsed[name], split_of[name] = events, SPLITS[stem]
    quirks["durations_of_unknown_clips"] = len(set(durations) - set(parsed))
    videos = {}
    for name, raw in parsed.items():
        duration = durations.get(name, math.nan)
        if math.isnan(duration):
            duration = filename_duration(name)
            quirks["durations_from_filenames"] += not math.isnan(duration)
        quirks["clips_shorter_than_10_s"] += duration < 10
        videos[name] = (split_of[name], duration, raw)
    targets = dense_clip_targets(videos, quirks)
    quirks["clips_without_events"] = sum(not ev for _, _, ev in videos.values())
    media = {s: MediaFolder(root / cfg.desed_audio / AUDIO[s], VIDEO_EXTENSIONS) for s in SPLITS}
    clips = []
    for name, split in split_of.items():
        stem = name[:-4] if name.endswith(".wav") else name
        folder = media["validation" if split == "train" else "public"]
        video = folder.find(stem)
        quirks["clips_with_video"] += video is not None
        clips.append(Clip(stem, video or str(folder.folder / name), (split,), targets[name]))
    return Dataset(ADAPTER.name, 0, clips, CLASSES, quirks)


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy in DESED's layout (pipeline/synth.py dense_clip, audio only): 10 s .wav
    clips, every sound annotated (DESED's rule: what is heard; there is no picture), overlapping
    between classes, 3 decimals; validation `Y<id>_<s>.000_<e>.000.wav` (train) with one clip
    without events (the empty row) and one shorter clip whose last event ends past its listed
    duration, public `<id>_<s>_<e>.wav` (test)."""
    from ..synth import dense_clip, split_sizes, write_csv, write_wav, youtube_id

    sizes = split_sizes(clips)
    durations = []
    for stem, count in (("validation", sizes["train"]), ("public", sizes["test"])):
        rows = []
        for k in range(count):
            start = int(rng.integers(0, 300))
            name = (f"Y{youtube_id(rng)}_{start}.000_{start + 10}.000.wav" if stem == "validation"
                    else f"{youtube_id(rng)}_{start}_{start + 10}.wav")
            empty, short = stem == "validation" and k == 1, stem == "validation" and k == 0
            duration = 7.25 if short else 10.0
            _, audio, events = dense_clip(rng, SYNTH_CLASSES, duration, {"audio": 1.0}, video=False,
                                          events=0 if empty else None, decimals=3, run_to_end=short)
            write_wav(out / "audio" / AUDIO[stem] / name, audio)
            marks = [[f"{e.start:.3f}", f"{e.end:.3f}", e.name] for e in sorted(events, key=lambda e: e.start)]
            if short:                     # the official quirk: the event running to the end marked past it
                last = max(range(len(marks)), key=lambda i: float(marks[i][1]))
                marks[last][1] = f"{duration + 0.115:.3f}"
            rows += [[name, *m] for m in marks] or [[name, "", "", ""]]
            if stem == "validation":
                durations.append([name, f"{duration:g}"])
        write_csv(out / METADATA[stem] / f"{stem}.tsv", ["filename", "onset", "offset", "event_label"], rows, "\t")
    write_csv(out / METADATA["validation"] / DURATIONS, ["filename", "duration"], durations, "\t")


ADAPTER = Adapter(
    name="desed", T=0, classes=CLASSES, load=load,
    prompt="Detect every sound event in the recording: when it starts, when it ends, and what it is.",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=24, demo_hop=0.5, hop=0.25, patches=False,
    class_template="A sound event of {}.",
)
