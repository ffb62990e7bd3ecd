"""UnAV-100 (Geng et al., CVPR 2023): dense audio-visual event localisation on untrimmed videos
(10-60 s), T = 0 (any length), hop 0.25 s (UniAV's step: 16 fps, stride 4).

Layout under --root (`datasets.unav100_*` in stages.yaml): `unav100_annotations.json`, ActivityNet
style: {"version", "database": {id: {"duration", "subset": train | validation | test,
"annotations": [{"segment": [start, end], "label", "label_id": 0..99}]}}} (fractional seconds;
ids are YouTube ids, some begin with "-"), and the videos `videos/<id>.mp4` (.mkv and .webm are
taken too). Splits: train, validation -> val, test (compared in lower case, as UnAV's code does).
Classes: the 100 of CLASSES in label_id order; a label that is not its label_id's class fails.

Targets per clip (common.dense_targets; E = the most events in one video, 23 in the real file):
segments (E, 2) float32 seconds (NaN rows pad), segment_labels (E,) int16 (label_id, -1 pads),
duration () float32. Only audio-visual events are annotated (the benchmark's rule).
Quirks counted (common.clean_events): duplicate_events (kept in the targets: the UnAV/UniAV
evaluation drops them from its GT itself), zero_length_events (kept), events_past_duration and
events_before_zero (clipped to [0, duration]), events_starting_past_duration, videos_without_events;
ids_starting_with_dash (their files are named with the dash). The real file has 0 of each but the
last (1,269).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .common import (Adapter, Clip, Dataset, DatasetError, Invalid, JsonTree, MediaFolder, Videos,
                     dense_clip_targets, one_of, positive, segment)

FILE = "unav100_annotations.json"
SUBSETS = {"train": "train", "validation": "val", "test": "test"}
CLASSES = [  # label_id order
    "man speaking", "woman speaking", "kid speaking", "male singing", "people laughing", "car passing by",
    "baby laughter", "wind noise", "people clapping", "people shouting", "people crowd", "female singing",
    "dog barking", "playing acoustic guitar", "people eating", "people cheering", "basketball bounce",
    "engine knocking", "playing tennis", "baby babbling", "striking bowling", "playing badminton", "cat meowing",
    "people slapping", "playing piano", "baby crying", "people burping", "orchestra", "playing drum kit",
    "playing violin", "machine gun shooting", "child singing", "people nose blowing", "playing electronic organ",
    "people sneezing", "dog howling", "skateboarding", "playing base guitar", "auto racing", "sea waves",
    "playing table tennis", "people coughing", "people whispering", "playing ukulele", "sheep bleating",
    "playing tabla", "fire truck siren", "playing volleyball", "beat boxing", "playing trumpet", "thunder",
    "playing cello", "playing harp", "hammering nails", "people running", "sailing", "telephone bell ringing",
    "frog croaking", "driving motorcycle", "playing cornet", "playing clarinet", "train wheels squealing",
    "playing flute", "playing trombone", "playing erhu", "bull bellowing", "raining", "skidding",
    "chainsawing trees", "police car siren", "playing saxophone", "fireworks banging", "driving buses",
    "tap dancing", "airplane flyby", "people whistling", "train horning", "vacuum cleaner cleaning floors",
    "playing accordion", "bird chirping", "vehicle honking", "church bell ringing", "playing snare drum",
    "playing synthesizer", "typing on computer keyboard", "singing choir", "lions roaring", "people slurping",
    "helicopter", "horse clip-clop", "water burbling", "lawn mowing", "playing banjo", "playing zither",
    "playing harmonica", "people battle cry", "people sobbing", "ambulance siren", "rope skipping",
    "hair dryer drying",
]
SYNTH_CLASSES = ["playing violin", "dog barking", "helicopter", "cat meowing", "playing piano",
                 "playing acoustic guitar", "playing cello", "church bell ringing"]


subset = one_of(SUBSETS, str.lower)      # compared in lower case, as UnAV's code does


def class_id(value: int) -> int:
    if not 0 <= value < len(CLASSES):
        raise Invalid(f"UnAV-100 has {len(CLASSES)} classes, 0..{len(CLASSES) - 1}")
    return value


def read_database(path: Path) -> Videos:
    """id -> (split, duration, [(start, end, label_id)]) in file order."""
    tree = JsonTree(path, "UnAV-100 annotation file")
    database = tree.value((), "database", (dict,))
    out = {}
    for vid in database:
        at = ("database", vid)
        split = tree.value(at, "subset", (str,), subset, "a UnAV-100 subset")
        duration = tree.value(at, "duration", (int, float), positive, "a duration in seconds")
        events = []
        for k in range(len(tree.value(at, "annotations", (list,)))):
            a = (*at, "annotations", k)
            start, end = tree.value(a, "segment", (list,), segment, "a segment")
            label = tree.value(a, "label", (str,))
            label_id = tree.value(a, "label_id", (int,), class_id, "a class id")
            if CLASSES[label_id] != label:
                raise DatasetError(f"{tree.where(a)}: label {label!r} is not class {label_id} "
                                   f"({CLASSES[label_id]!r}); label and label_id must agree")
            events.append((start, end, label_id))
        out[vid] = (split, duration, events)
    if not out:
        raise DatasetError(f"{path}: the database holds no videos")
    return out


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    database = read_database(root / cfg.unav100_annotations / FILE)
    quirks = Counter(dict.fromkeys(["duplicate_events", "zero_length_events", "events_past_duration",
                                    "events_before_zero", "events_starting_past_duration"], 0))
    targets = dense_clip_targets(database, quirks)
    quirks["videos_without_events"] = sum(not ev for _, _, ev in database.values())
    quirks["ids_starting_with_dash"] = sum(vid.startswith("-") for vid in database)
    videos = MediaFolder(root / cfg.unav100_videos)
    clips = [Clip(vid, videos.path(vid), (split,), targets[vid]) for vid, (split, _, _) in database.items()]
    return Dataset(ADAPTER.name, 0, clips, CLASSES, quirks)


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy (pipeline/synth.py dense_clip): untrimmed videos at 8 fps with
    audio-visual, audio-only and visual-only events; the JSON names only the audio-visual ones
    (UnAV-100's rule), one line, with an id beginning with "-"."""
    import json

    from ..synth import DENSE_FPS, dense_clip, dense_duration, split_sizes, write_mp4, youtube_id

    database = {}
    for split, count in split_sizes(clips).items():
        for k in range(count):
            vid = youtube_id(rng)
            vid = "-" + vid[1:] if not database else vid
            duration = dense_duration(rng)
            frames, audio, events = dense_clip(rng, SYNTH_CLASSES, duration, {"av": 0.6, "audio": 0.2, "visual": 0.2})
            write_mp4(out / "videos" / f"{vid}.mp4", frames, audio, fps=DENSE_FPS)
            annotated = [e for e in events if e.kind == "av"]
            database[vid] = {"duration": duration, "subset": {"val": "validation"}.get(split, split),
                             "annotations": [{"segment": [e.start, e.end], "label": e.name,
                                              "label_id": CLASSES.index(e.name)} for e in annotated]}
    (out / FILE).write_text(json.dumps({"version": "unav100", "database": database}))


ADAPTER = Adapter(
    name="unav100", T=0, classes=CLASSES, load=load,
    prompt="Localise every audio-visual event in the untrimmed video: when it starts, when it ends, and what it is.",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=24, demo_hop=0.5, hop=0.25, patches=False,
    class_template="An audio visual event of {}.",
)
