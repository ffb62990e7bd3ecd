"""ActivityNet 1.3 (Caba Heilbron et al., CVPR 2015): temporal action localisation on untrimmed
videos (up to ~10 min), T = 0 (any length), hop 0.25 s. Only what is SEEN is annotated (an action
is visual; its sound, if any, does not make an instance).

Layout under --root (`datasets.activitynet_*` in stages.yaml): the annotation folder holds one of,
in this order of preference (the Dataset's attrs["annotation_source"] says which was read):
1. "official": `activity_net.v1-3.min.json`, {"version", "taxonomy", "database": {id: {"duration",
   "subset": training | validation | testing, "annotations": [{"segment", "label"}], "url",
   "resolution"}}} (ids without "v_"; the toolkit requires version, taxonomy and database).
2. "bsn": BSN's `anet_anno_action.json` ({"v_<id>": {"duration_second", "annotations"}}) with
   `video_info_new.csv` (video, seconds, subset) and, if there, `action_name.csv` (must list
   CLASSES in order). When `sample_detection_prediction.json` is there too, the validation
   videos BSN lacks (198 of the official 4,926) come from it, without a duration.
3. "sample": only the official `sample_detection_prediction.json` ({"results": {id: [{"label",
   "score", "segment"}]}}: the validation GT with every score 1.0): validation only, no durations.
Videos: `videos/v_<id>.mp4` (the name the ActivityNet downloads use) or `videos/<id>.mp4`; .mkv and
.webm are taken too. Clip ids are the official ids (no "v_"). Splits: training -> train,
validation -> val, testing -> test (compared case-sensitively, as the toolkit does; testing has no
labels: its clips have no events, counted, and serve predictions only).
Classes: the 200 of CLASSES in action_name.csv order (evaluation matches by name).

Targets per clip (common.dense_targets; E = the most instances in one video, 23 in BSN):
segments (E, 2) float32 seconds, segment_labels (E,) int16 (-1 pads), duration () float32 (NaN
where unknown). Quirks counted (common.clean_events): duplicate_instances (21 in the validation GT;
KEPT, as ActivityNet's evaluation keeps them), zero_length_instances (3 in the validation GT; kept),
instances_past_duration (215 in BSN: CLIPPED to the duration, so the stored GT differs from the
file there; the official evaluation reads the unclipped file), instances_before_zero (clipped),
instances_starting_past_duration; testing_videos_without_labels, {training,validation}_videos_without
_instances, bsn_videos_not_in_info_csv (skipped: no subset), validation_videos_only_in_sample (BSN
+ sample), validation_videos_differing_from_sample (the two disagree on a shared video; BSN's kept).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .common import (Adapter, Clip, Dataset, DatasetError, JsonTree, MediaFolder, Videos, dense_clip_targets,
                     field, one_of, positive, read_csv, segment)

OFFICIAL, SAMPLE = "activity_net.v1-3.min.json", "sample_detection_prediction.json"
BSN_ANNOTATIONS, BSN_INFO, BSN_NAMES = "anet_anno_action.json", "video_info_new.csv", "action_name.csv"
SUBSETS = {"training": "train", "validation": "val", "testing": "test"}
CLASSES = [  # action_name.csv order
    'Applying sunscreen', 'Arm wrestling', 'Assembling bicycle', 'BMX', 'Baking cookies', 'Baton twirling',
    'Beach soccer', 'Beer pong', 'Blow-drying hair', 'Blowing leaves', 'Playing ten pins', 'Braiding hair',
    'Building sandcastles', 'Bullfighting', 'Calf roping', 'Camel ride', 'Canoeing', 'Capoeira',
    'Carving jack-o-lanterns', 'Changing car wheel', 'Cleaning sink', 'Clipping cat claws', 'Croquet',
    'Curling', 'Cutting the grass', 'Decorating the Christmas tree', 'Disc dog', 'Doing a powerbomb',
    'Doing crunches', 'Drum corps', 'Elliptical trainer', 'Doing fencing', 'Fixing the roof',
    'Fun sliding down', 'Futsal', 'Gargling mouthwash', 'Grooming dog', 'Hand car wash', 'Hanging wallpaper',
    'Having an ice cream', 'Hitting a pinata', 'Hula hoop', 'Hurling', 'Ice fishing', 'Installing carpet',
    'Kite flying', 'Kneeling', 'Knitting', 'Laying tile', 'Longboarding', 'Making a cake',
    'Making a lemonade', 'Making an omelette', 'Mooping floor', 'Painting fence', 'Painting furniture',
    'Peeling potatoes', 'Plastering', 'Playing beach volleyball', 'Playing blackjack', 'Playing congas',
    'Playing drums', 'Playing ice hockey', 'Playing pool', 'Playing rubik cube', 'Powerbocking',
    'Putting in contact lenses', 'Putting on shoes', 'Rafting', 'Raking leaves', 'Removing ice from car',
    'Riding bumper cars', 'River tubing', 'Rock-paper-scissors', 'Rollerblading', 'Roof shingle removal',
    'Rope skipping', 'Running a marathon', 'Scuba diving', 'Sharpening knives', 'Shuffleboard', 'Skiing',
    'Slacklining', 'Snow tubing', 'Snowboarding', 'Spread mulch', 'Sumo', 'Surfing', 'Swimming',
    'Swinging at the playground', 'Table soccer', 'Throwing darts', 'Trimming branches or hedges',
    'Tug of war', 'Using the monkey bar', 'Using the rowing machine', 'Wakeboarding', 'Waterskiing',
    'Waxing skis', 'Welding', 'Drinking coffee', 'Zumba', 'Doing kickboxing', 'Doing karate', 'Tango',
    'Putting on makeup', 'High jump', 'Playing bagpipes', 'Cheerleading', 'Wrapping presents', 'Cricket',
    'Clean and jerk', 'Preparing pasta', 'Bathing dog', 'Discus throw', 'Playing field hockey',
    'Grooming horse', 'Preparing salad', 'Playing harmonica', 'Playing saxophone', 'Chopping wood',
    'Washing face', 'Using the pommel horse', 'Javelin throw', 'Spinning', 'Ping-pong', 'Making a sandwich',
    'Brushing hair', 'Playing guitarra', 'Doing step aerobics', 'Drinking beer', 'Playing polo', 'Snatch',
    'Paintball', 'Long jump', 'Cleaning windows', 'Brushing teeth', 'Playing flauta',
    'Tennis serve with ball bouncing', 'Bungee jumping', 'Triple jump', 'Horseback riding',
    'Layup drill in basketball', 'Vacuuming floor', 'Cleaning shoes', 'Doing nails', 'Shot put',
    'Fixing bicycle', 'Washing hands', 'Ironing clothes', 'Using the balance beam', 'Shoveling snow',
    'Tumbling', 'Using parallel bars', 'Getting a tattoo', 'Rock climbing', 'Smoking hookah', 'Shaving',
    'Getting a piercing', 'Springboard diving', 'Playing squash', 'Playing piano', 'Dodgeball',
    'Smoking a cigarette', 'Sailing', 'Getting a haircut', 'Playing lacrosse', 'Cumbia', 'Tai chi',
    'Painting', 'Mowing the lawn', 'Shaving legs', 'Walking the dog', 'Hammer throw', 'Skateboarding',
    'Polishing shoes', 'Ballet', 'Hand washing clothes', 'Plataform diving', 'Playing violin', 'Breakdancing',
    'Windsurfing', 'Hopscotch', 'Doing motocross', 'Mixing drinks', 'Starting a campfire', 'Belly dance',
    'Removing curlers', 'Archery', 'Volleyball', 'Playing water polo', 'Playing racquetball', 'Kayaking',
    'Polishing forniture', 'Playing kickball', 'Using uneven bars', 'Washing dishes', 'Pole vault',
    'Playing accordion', 'Playing badminton',
]
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
SYNTH_CLASSES = ["Playing violin", "Playing piano", "Playing accordion", "Playing drums", "Playing saxophone",
                 "Playing bagpipes", "Walking the dog", "Vacuuming floor"]


subset = one_of(SUBSETS)                 # case-sensitive, as the toolkit compares
class_index = one_of(CLASS_INDEX, message="not one of the 200 ActivityNet 1.3 classes")


def read_instances(tree: JsonTree, at: tuple, key: str) -> list:
    """The [{"segment", "label"}] list at at[key] as (start, end, class index)."""
    out = []
    for k in range(len(tree.value(at, key, (list,)))):
        a = (*at, key, k)
        start, end = tree.value(a, "segment", (list,), segment, "a segment")
        out.append((start, end, tree.value(a, "label", (str,), class_index, "an ActivityNet class")))
    return out


def read_official(path: Path) -> Videos:
    tree = JsonTree(path, "ActivityNet annotation file")
    for key in ("version", "taxonomy"):                     # the toolkit refuses a file without them
        tree.value((), key, (str, list, dict))
    out = {}
    for vid in tree.value((), "database", (dict,)):
        at = ("database", vid)
        out[vid] = (tree.value(at, "subset", (str,), subset, "an ActivityNet subset"),
                    tree.value(at, "duration", (int, float), positive, "a duration in seconds"),
                    read_instances(tree, at, "annotations"))
    return out


def read_sample(path: Path) -> Videos:
    """The official fake submission = the validation GT: every video in val, durations unknown."""
    tree = JsonTree(path, "ActivityNet sample_detection_prediction.json")
    return {vid: ("val", math.nan, read_instances(tree, ("results",), vid))
            for vid in tree.value((), "results", (dict,))}


def check_names(path: Path) -> None:
    """BSN's action_name.csv must list our 200 classes in our order (it defines the class ids)."""
    rows = read_csv(path, columns=("action",))
    for k, row in enumerate(rows):
        name = field(row, "action")
        if k >= len(CLASSES) or name != CLASSES[k]:
            expected = repr(CLASSES[k]) if k < len(CLASSES) else "no more rows"
            raise DatasetError(f"{row.where()}: action {name!r}, expected {expected} (ActivityNet 1.3's 200 "
                               f"classes in BSN's order)")
    if len(rows) != len(CLASSES):
        raise DatasetError(f"{path}: {len(rows)} actions, expected {len(CLASSES)}")


def read_bsn(folder: Path, quirks: Counter) -> Videos:
    """BSN's files: subsets from video_info_new.csv, durations and instances from anet_anno_action.json."""
    tree = JsonTree(folder / BSN_ANNOTATIONS, "BSN anet_anno_action.json")
    if not isinstance(tree.data, dict):
        raise DatasetError(f"{tree.path}: expected a JSON object of videos, got a {type(tree.data).__name__}")
    if (folder / BSN_NAMES).is_file():
        check_names(folder / BSN_NAMES)
    out = {}
    for row in read_csv(folder / BSN_INFO, columns=("video", "subset")):
        video = field(row, "video")
        if not video.startswith("v_"):
            raise DatasetError(f"{row.where()}: video {video!r} does not begin with 'v_' (BSN's ids do)")
        if video not in tree.data:
            raise DatasetError(f"{row.where()}: video {video} is not in {tree.path}")
        if video[2:] in out:
            raise DatasetError(f"{row.where()}: video {video} is listed twice")
        out[video[2:]] = (field(row, "subset", subset, "an ActivityNet subset"),
                          tree.value((video,), "duration_second", (int, float), positive, "a duration in seconds"),
                          read_instances(tree, (video,), "annotations"))
    quirks["bsn_videos_not_in_info_csv"] = len(tree.data) - len(out)
    return out


def read_videos(folder: Path, quirks: Counter) -> tuple[Videos, str]:
    """(videos, which source) from the best set of files the folder holds."""
    if (folder / OFFICIAL).is_file():
        return read_official(folder / OFFICIAL), "official"
    if (folder / BSN_ANNOTATIONS).is_file() or (folder / BSN_INFO).is_file():
        videos = read_bsn(folder, quirks)
        if not (folder / SAMPLE).is_file():
            return videos, "bsn"
        quirks["validation_videos_only_in_sample"] = quirks["validation_videos_differing_from_sample"] = 0
        for vid, (split, duration, events) in read_sample(folder / SAMPLE).items():
            if vid not in videos:
                quirks["validation_videos_only_in_sample"] += 1
                videos[vid] = (split, duration, events)
            else:
                quirks["validation_videos_differing_from_sample"] += sorted(videos[vid][2]) != sorted(events)
        return videos, "bsn+sample"
    if (folder / SAMPLE).is_file():
        return read_sample(folder / SAMPLE), "sample"
    raise DatasetError(f"{folder}: no ActivityNet annotations ({OFFICIAL}; or {BSN_ANNOTATIONS} and {BSN_INFO}; "
                       f"or {SAMPLE})")


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    quirks = Counter(dict.fromkeys(["duplicate_instances", "zero_length_instances", "instances_past_duration",
                                    "instances_before_zero", "instances_starting_past_duration"], 0))
    database, source = read_videos(root / cfg.activitynet_annotations, quirks)
    targets = dense_clip_targets(database, quirks, "instances")
    quirks["testing_videos_without_labels"] = sum(s == "test" and not ev for s, _, ev in database.values())
    for name, split in (("training", "train"), ("validation", "val")):
        quirks[f"{name}_videos_without_instances"] = sum(s == split and not ev for s, _, ev in database.values())
    videos = MediaFolder(root / cfg.activitynet_videos)
    clips = [Clip(vid, videos.path(f"v_{vid}", vid), (split,), targets[vid]) for vid, (split, _, _) in database.items()]
    return Dataset(ADAPTER.name, 0, clips, CLASSES, quirks, attrs={"annotation_source": source})


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy in the official min.json layout (pipeline/synth.py dense_clip): videos
    `videos/v_<id>.mp4` at 8 fps with visual-only, audio-visual and audio-only events; only the
    first two are annotated (ActivityNet annotates what is seen). Quirks of the real GT: a
    duplicate and a zero-length instance (validation), an instance past the duration (training:
    the action runs to the end of the video, its segment 0.37 s beyond), testing without labels."""
    from ..synth import DENSE_FPS, dense_clip, dense_duration, split_sizes, write_mp4, youtube_id

    database, subsets = {}, {"train": "training", "val": "validation", "test": "testing"}
    for split, count in split_sizes(clips).items():
        for k in range(count):
            vid, duration = youtube_id(rng), dense_duration(rng)
            frames, audio, events = dense_clip(rng, SYNTH_CLASSES, duration, {"visual": 0.35, "av": 0.35, "audio": 0.3},
                                               run_to_end=(split, k) == ("train", 0))
            write_mp4(out / "videos" / f"v_{vid}.mp4", frames, audio, fps=DENSE_FPS)
            seen = [[e.start, e.end, e.name] for e in events if e.kind != "audio"]
            if (split, k) == ("train", 0):
                last = max(range(len(seen)), key=lambda i: seen[i][1])
                seen[last][1] = round(duration + 0.37, 2)
            if (split, k) == ("val", 0):
                seen += [[seen[0][0] + 0.0004, seen[0][1] - 0.0003, seen[0][2]], [1.5, 1.5, seen[0][2]]]
            database[vid] = {"subset": subsets[split], "duration": duration, "resolution": "112x112",
                             "url": f"https://www.youtube.com/watch?v={vid}",
                             "annotations": [] if split == "test" else
                             [{"segment": [s, e], "label": name} for s, e, name in seen]}
    taxonomy = [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None}] + [
        {"nodeId": CLASS_INDEX[n] + 1, "nodeName": n, "parentId": 0, "parentName": "Root"} for n in SYNTH_CLASSES]
    (out / OFFICIAL).write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database}))


ADAPTER = Adapter(
    name="activitynet", T=0, classes=CLASSES, load=load,
    prompt="Localise every action seen in the untrimmed video: when it starts, when it ends, and what it is.",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=24, demo_hop=0.5, hop=0.25, patches=False,
    class_template="A visual event of {}.",
)
