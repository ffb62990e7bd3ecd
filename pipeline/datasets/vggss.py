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
class_index () int16 (in CLASSES, -1 where unknown: train clips without a class).
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
from .common import Adapter, Clip, Dataset, DatasetError, Invalid, JsonList, is_number, nonempty, read_text

T = 10
FRAME = T // 2
_NAMES = """
air conditioning noise | air horn | airplane | airplane flyby | alarm clock ringing |
alligators, crocodiles hissing | baby crying | baby laughter | baltimore oriole calling | barn
swallow calling | bathroom ventilation fan running | beat boxing | bird chirping, tweeting |
bird squawking | bird wings flapping | black capped chickadee calling | blowtorch igniting |
bull bellowing | canary calling | cap gun shooting | car engine idling | car engine knocking |
car engine starting | car passing by | cat caterwauling | cat growling | cat hissing | cat
meowing | cat purring | cattle mooing | cattle, bovinae cowbell | chainsawing trees | cheetah
chirrup | chicken clucking | chicken crowing | child singing | child speech, kid speaking |
children shouting | chimpanzee pant-hooting | chinchilla barking | chipmunk chirping | church
bell ringing | civil defense siren | cow lowing | coyote howling | cricket chirping | crow
cawing | cuckoo bird calling | dinosaurs bellowing | disc scratching | dog barking | dog baying
| dog bow-wow | dog growling | dog howling | dog whimpering | donkey, ass braying | driving
buses | driving motorcycle | driving snowmobile | eagle screaming | electric grinder grinding |
electric shaver, electric razor shaving | elephant trumpeting | eletric blender running | elk
bugling | engine accelerating, revving, vroom | female singing | female speech, woman speaking |
fire truck siren | fireworks banging | fly, housefly buzzing | forging swords | fox barking |
francolin calling | gibbon howling | goat bleating | hair dryer drying | hedge trimmer running |
helicopter | horse clip-clop | ice cream truck, ice cream van | lathe spinning | lawn mowing |
lighting firecrackers | lions growling | lions roaring | lip smacking | machine gun shooting |
magpie calling | male singing | male speech, man speaking | missile launch | motorboat,
speedboat acceleration | mouse squeaking | mynah bird singing | ocean burbling | opening or
closing car electric windows | opening or closing drawers | orchestra | otter growling | owl
hooting | parrot talking | penguins braying | people babbling | people battle cry | people belly
laughing | people booing | people burping | people cheering | people coughing | people crowd |
people eating apple | people eating crisps | people eating noodle | people finger snapping |
people gargling | people giggling | people hiccup | people humming | people marching | people
nose blowing | people screaming | people shuffling | people slurping | people sneezing | people
sniggering | people sobbing | people whispering | people whistling | pheasant crowing | pigeon,
dove cooing | playing accordion | playing acoustic guitar | playing banjo | playing bass drum |
playing bass guitar | playing bassoon | playing bongo | playing bugle | playing castanets |
playing cello | playing clarinet | playing congas | playing cornet | playing cymbal | playing
didgeridoo | playing djembe | playing double bass | playing drum kit | playing electric guitar |
playing electronic organ | playing erhu | playing flute | playing french horn | playing
glockenspiel | playing gong | playing guiro | playing hammond organ | playing harmonica |
playing harp | playing harpsichord | playing mandolin | playing oboe | playing piano | playing
saxophone | playing shofar | playing snare drum | playing steel guitar, slide guitar | playing
steelpan | playing table tennis | playing tambourine | playing theremin | playing timbales |
playing trombone | playing trumpet | playing tympani | playing ukulele | playing violin, fiddle
| playing washboard | playing zither | police car (siren) | popping popcorn | race car, auto
racing | railroad car, train wagon | reversing beeps | rowboat, canoe, kayak rowing | sea lion
barking | sharpen knife | sheep bleating | singing bowl | singing choir | skateboarding |
skidding | slot machine | smoke detector beeping | snake hissing | snake rattling | splashing
water | squishing water | subway, metro, underground | tap dancing | tapping guitar | telephone
bell ringing | toilet flushing | tractor digging | train horning | train wheels squealing |
train whistling | turkey gobbling | typing on computer keyboard | typing on typewriter | using
sewing machines | vacuum cleaner cleaning floors | warbler chirping | waterfall burbling | whale
calling | wind chime | wood thrush calling | woodpecker pecking tree | yodelling"""
CLASSES = [n.strip() for n in " ".join(_NAMES.split()).split("|")]   # sorted; 221
SYNTH_CLASSES = [  # many: contrastive batches then rarely pair a class twice
    "playing cello", "dog barking", "helicopter", "cat meowing", "playing piano", "church bell ringing", "airplane",
    "baby crying", "chicken crowing", "cow lowing", "crow cawing", "driving motorcycle", "alarm clock ringing",
    "coyote howling",
]
SILENT = ("chair", "lamp", "bookshelf", "window")   # the synthetic copy's silent things: on screen, never heard
HALVES = ((0, 2), (1, 3), (0, 1), (2, 3))   # left, right, top, bottom: quadrant cells


def clean_boxes(boxes: list, quirks: Counter) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    quirks["garbage_coordinates"] += int(((b < 0) | (b > 1)).any(axis=1).sum())
    b = np.clip(b, 0.0, 1.0)
    quirks["degenerate_boxes"] += int(((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).sum())
    return b


def class_index(name: str | None, where: str) -> int:
    if name is None:
        return -1
    if name not in CLASSES:
        raise DatasetError(f"{where}: VGG-SS class {name!r} is not one of the 221 in pipeline/datasets/vggss.py")
    return CLASSES.index(name)


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
               "class_index": np.int16(cls)}
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
    classes = [entries.value(k, "class", (str,), CLASSES.index,
                             "one of the 221 VGG-SS classes in pipeline/datasets/vggss.py") for k in range(len(entries))]
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
    return Dataset(ADAPTER.name, T, clips, CLASSES, quirks)


def synth_scene(rng: np.random.Generator) -> tuple[str, list]:
    """The sounding class fills one half of the frame (left, right, top or bottom) with two
    tiles, a silent thing (SILENT: never heard anywhere) one or both quadrants of the other
    half. Real VGG-SS boxes are large and the official metric keeps the top 50 % of the
    heatmap, so a sounding region much smaller than half the frame could never reach cIoU 0.5;
    and a 4 x 4 heatmap can only cover a region whose every cell shows its class, hence
    flat-coloured tiles, not shapes. The tiles leave a margin (the boxes' union is 35 % of the
    frame): with exactly half, a flat heatmap (every pixel kept) would score cIoU 0.5 and pass."""
    from ..synth import Obj, run

    cls, other = rng.choice(SYNTH_CLASSES), rng.choice(SILENT)
    half = HALVES[int(rng.integers(4))]
    rest = [c for c in range(4) if c not in half][: 1 + int(rng.random() < 0.5)]
    always, never = run(10, 0, 10), run(10, 0, 0)

    def tile(name: str, cell: int, audible: np.ndarray) -> Obj:
        return Obj(name, (cell % 2 + 0.5) / 2, (cell // 2 + 0.5) / 2, 0.21, always, audible, tile=True)

    return str(cls), [tile(str(cls), c, always) for c in half] + [tile(str(other), c, never) for c in rest]


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy: the test entries (one with the real file's garbage coordinate), the
    CRLF test list and a training list of as many more clips, with classes."""
    from ..synth import background, render, write_mp4, youtube_id

    entries, train = [], []
    for split, count in (("test", max(1, clips // 2)), ("train", clips)):
        for k in range(count):
            file = f"{youtube_id(rng)}_{int(rng.integers(0, 300)):06d}"
            cls, objs = synth_scene(rng)
            frames, _, audio = render(objs, 10, background(rng), rng)
            write_mp4(out / "VGGSS" / f"{file}.mp4", frames, audio)
            boxes = [o.box() for o in objs if o.audible.any()]
            if split == "test":
                if k == 0:
                    boxes.append([0.5, 0.5, -2.8823037615171176e16, 0.6])   # the real file's garbage value
                entries.append({"file": file, "class": cls, "bbox": boxes})
            else:
                train.append(f"{file},{cls}")
    (out / "vggss.json").write_text(json.dumps(entries))
    (out / "vggss_test.csv").write_bytes("".join(f"{e['file']}\r\n" for e in entries).encode())
    (out / "vggsound_train.txt").write_text("\n".join(train) + "\n")


ADAPTER = Adapter(
    name="vggss", T=T, classes=CLASSES, load=load,
    prompt="Where in the picture is the sound coming from?",
    synth=synth, synth_classes=SYNTH_CLASSES, synth_silent=SILENT, synth_tiles=True, demo_clips=128, demo_hop=2.0,
)
