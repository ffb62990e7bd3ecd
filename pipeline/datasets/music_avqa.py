"""MUSIC-AVQA (Li et al., CVPR 2022): audio-visual question answering, T = 60.

Layout under --root: `json_update/avqa-{train,val,test}.json` (setting `music_avqa_annotations`;
the de-duplicated files, preferred; the train file is in no public copy, so it comes from the
user's root) and videos `MUSIC-AVQA/<video_id>.mp4`. A JSON entry: video_id, question_id,
type (a string holding a JSON list, ["Audio", "Counting"]), question_content with <...>
placeholders, templ_values (a string holding a JSON list filling them in order),
question_deleted, anser (sic).

A clip is a VIDEO (a ~60 s video has several questions; 2296 videos have questions in both
val and test, so a clip can be in two splits). Questions are a table in the store, one row each
(`shared/question_*`): clip (index of the video), id (question_id), split (index into
attrs["question_splits"]), type (index into attrs["question_types"], "Group/Kind"), answer
(index into attrs["answers"], the answer list = the 41 fixed ANSWERS plus any other found in
the files, appended: the store's vocabulary gets them too); attrs["question_text"]: the
question with its template values filled in verbatim (as the official loader does).
Quirks counted: split_files_missing, deleted_questions (question_deleted != 0: skipped),
duplicate_question_ids (kept the first) and _conflicting (different answers), template_mismatch
(placeholders != values), video_ids_not_8_digits, answers_outside_fixed_list.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import DatasetsConfig
from .common import SPLITS, Adapter, Clip, Dataset, DatasetError, Invalid, JsonList, json_type, nonempty

T = 60
ANSWERS = [  # the 41 answers of json_update val/test, sorted
    "accordion", "acoustic_guitar", "bagpipe", "banjo", "bassoon", "cello", "clarinet", "congas",
    "drum", "eight", "electric_bass", "erhu", "five", "flute", "four", "guzheng", "indoor", "left",
    "middle", "more than ten", "nine", "no", "one", "outdoor", "piano", "pipa", "right",
    "saxophone", "seven", "simultaneously", "six", "suona", "three", "trumpet", "tuba", "two",
    "ukulele", "violin", "xylophone", "yes", "zero",
]
QUESTION_TYPES = [  # "Group/Kind", the order of the paper's table
    "Audio/Counting", "Audio/Comparative", "Visual/Counting", "Visual/Location",
    "Audio-Visual/Existential", "Audio-Visual/Counting", "Audio-Visual/Location",
    "Audio-Visual/Comparative", "Audio-Visual/Temporal",
]
SYNTH_CLASSES = ["violin", "piano", "cello", "flute", "trumpet", "drum", "accordion"]   # the instruments
HOLE = re.compile(r"<[^>]*>")


def fill(content: str, values: list, quirks: Counter) -> str:
    """The question with the template values put into its <...> placeholders, in order."""
    quirks["template_mismatch"] += len(HOLE.findall(content)) != len(values)
    it = iter(values)
    return HOLE.sub(lambda m: str(next(it, m.group(0))), content).strip()


def question_type(raw: str) -> int:
    """The `type` field, a string holding a JSON list ["Group", "Kind"] -> index in QUESTION_TYPES."""
    try:
        parts = json.loads(raw)
    except json.JSONDecodeError as err:
        raise Invalid(f"not JSON ({err.msg})") from None
    if not isinstance(parts, list) or not all(isinstance(x, str) for x in parts):
        raise Invalid("not a list of strings")
    if "/".join(parts) not in QUESTION_TYPES:
        raise Invalid(f"{'/'.join(parts)!r} is not one of {', '.join(QUESTION_TYPES)}")
    return QUESTION_TYPES.index("/".join(parts))


def template_values(raw: str) -> list:
    """The `templ_values` field, a string holding a JSON list."""
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as err:
        raise Invalid(f"not JSON ({err.msg})") from None
    if not isinstance(values, list):
        raise Invalid(f"{json_type(values)}, not a list")
    return values


def read_questions(folder: Path, quirks: Counter) -> list[tuple[str, dict]]:
    """(split, question) for every kept question, train then val then test; a question holds
    video_id (str), question_id (int), type (index in QUESTION_TYPES), content, values, anser."""
    rows = []
    for split in SPLITS:
        path = folder / f"avqa-{split}.json"
        if not path.is_file():
            quirks["split_files_missing"] += 1
            continue
        entries, seen = JsonList(path, f"MUSIC-AVQA avqa-{split}.json", "question_id"), {}
        for k in range(len(entries)):
            if entries.value(k, "question_deleted", (int, str), int, "an integer", default=0):
                quirks["deleted_questions"] += 1
                continue
            q = {"question_id": entries.value(k, "question_id", (int, str), int, "an integer"),
                 "anser": entries.value(k, "anser", (str,))}
            if q["question_id"] in seen:
                quirks["duplicate_question_ids"] += 1
                quirks["duplicate_question_ids_conflicting"] += seen[q["question_id"]] != q["anser"]
                continue
            seen[q["question_id"]] = q["anser"]
            q.update(video_id=entries.value(k, "video_id", (str, int), lambda v: nonempty(str(v)), "a video id"),
                     type=entries.value(k, "type", (str,), question_type, 'a JSON list ["Group", "Kind"]'),
                     content=entries.value(k, "question_content", (str,)),
                     values=entries.value(k, "templ_values", (str,), template_values, "a JSON list"))
            rows.append((split, q))
    if not rows:
        raise DatasetError(f"{folder}: no avqa-{{train,val,test}}.json with questions")
    return rows


def load(root: Path, cfg: DatasetsConfig) -> Dataset:
    quirks = Counter(dict.fromkeys(["split_files_missing", "deleted_questions", "duplicate_question_ids",
                                    "duplicate_question_ids_conflicting", "template_mismatch"], 0))
    rows = read_questions(root / cfg.music_avqa_annotations, quirks)
    extra = sorted({q["anser"] for _, q in rows} - set(ANSWERS))
    answers = ANSWERS + extra
    quirks["answers_outside_fixed_list"] = len(extra)
    splits: dict[str, list[str]] = {}
    for split, q in rows:
        splits.setdefault(q["video_id"], [])
        if split not in splits[q["video_id"]]:
            splits[q["video_id"]].append(split)
    quirks["video_ids_not_8_digits"] = sum(not re.fullmatch(r"\d{8}", v) for v in splits)
    clips = [Clip(v, str(root / cfg.music_avqa_videos.format(id=v)), tuple(s)) for v, s in splits.items()]
    questions = {
        "clip_id": [q["video_id"] for _, q in rows],
        "id": np.array([q["question_id"] for _, q in rows], np.int64),
        "split": np.array([SPLITS.index(s) for s, _ in rows], np.int8),
        "type": np.array([q["type"] for _, q in rows], np.int8),
        "answer": np.array([answers.index(q["anser"]) for _, q in rows], np.int16),
        "text": [fill(q["content"], q["values"], quirks) for _, q in rows],
    }
    attrs = {"answers": answers, "question_types": QUESTION_TYPES, "question_splits": list(SPLITS)}
    return Dataset(ADAPTER.name, T, clips, answers, quirks, attrs=attrs, questions=questions)


NUMBERS = ["zero", "one", "two", "three", "four", "five"]


def synth_scene(rng: np.random.Generator) -> tuple[list, bool]:
    """2-3 instruments in a row (left / middle / right), each heard from its own onset, at its
    own loudness; the third, when there is one, may be silent. Indoor or outdoor."""
    from ..synth import Obj, run

    n = int(rng.integers(2, 4))
    names = rng.choice(SYNTH_CLASSES, n, replace=False)
    cols, onsets = sorted(rng.choice(3, n, replace=False)), rng.permutation([0, 10, 20])[:n]
    amps = rng.permutation([0.12, 0.25, 0.45])[:n]
    silent = n == 3 and rng.random() < 0.5
    objs = []
    for k, (name, col) in enumerate(zip(names, cols)):
        end = 60 if rng.random() < 0.7 else int(rng.integers(40, 56))   # the one starting at 0 may play throughout
        heard = run(60, 0, 0) if (silent and k == n - 1) else run(60, int(onsets[k]), end)
        objs.append(Obj(str(name), (col + 0.5) / 3, 0.6, 0.13, run(60, 0, 60), heard, float(amps[k])))
    return objs, bool(rng.random() < 0.5)


def synth_questions(objs: list, outdoor: bool, rng: np.random.Generator) -> list[tuple[list[str], str, list[str], str]]:
    """Every instance of the 9 types that the scene answers: (type, question_content,
    templ_values, answer). About 20 a video, so a few videos give the model enough questions;
    "Is there a ..." asks of every instrument present and as many absent ones (balanced)."""
    heard = [o for o in objs if o.audible.any()]
    by_onset = sorted(heard, key=lambda o: int(np.argmax(o.audible)))
    names = {o.name for o in objs}
    absent = [str(n) for n in rng.permutation([n for n in SYNTH_CLASSES if n not in names])[:len(objs)]]
    loudest = max(heard, key=lambda o: o.amp)
    yes = {True: "yes", False: "no"}
    qs = [(["Audio", "Counting"], "How many musical instruments were heard throughout the video?", [],
           NUMBERS[len(heard)])]
    qs += [(["Audio", "Comparative"], "Is the <Object> louder than the <Object>?", [a.name, b.name], yes[a.amp > b.amp])
           for a in heard for b in heard if a is not b]
    qs += [(["Visual", "Counting"], "Is there a <Object> in the entire video?", [n], yes[n in names])
           for n in [o.name for o in objs] + absent]
    qs += [(["Visual", "Location"], "What kind of instrument is the <LRer> instrument? ", [side],
            (objs[0] if side == "leftest" else objs[-1]).name) for side in ("leftest", "rightest")]
    qs.append((["Visual", "Location"], "Where is the performance?", [], "outdoor" if outdoor else "indoor"))
    always = [o for o in objs if o.audible.all()]
    rest = [o for o in objs if not o.audible.all()][:max(1, len(always))]   # as many "no" as "yes"
    qs += [(["Audio-Visual", "Existential"], "Is the <Object> in the video always playing?", [o.name],
            yes[bool(o.audible.all())]) for o in always + rest]
    qs.append((["Audio-Visual", "Counting"], "How many instruments are sounding in the video?", [], NUMBERS[len(heard)]))
    qs.append((["Audio-Visual", "Location"], "Where is the <LL> instrument?", ["loudest"], position(loudest)))
    qs += [(["Audio-Visual", "Comparative"], "Is the instrument on the <LR> louder than the instrument on the <LR>?",
            [a, b], yes[(objs[0].amp > objs[-1].amp) == (a == "left")]) for a, b in (("left", "right"), ("right", "left"))]
    qs += [(["Audio-Visual", "Temporal"], "What is the <TH> instrument that comes in?", [["first", "second", "third"][k]],
            o.name) for k, o in enumerate(by_onset)]
    return qs


def position(o) -> str:
    return ("left", "middle", "right")[int(o.x * 3)]


def synth(out: Path, rng: np.random.Generator, clips: int) -> None:
    """The synthetic copy: a quarter as many videos as `clips`, 60 s each, and a quarter of
    those for val and test; questions of all 9 types answered from the scene (indoor = dark
    room, outdoor = sky), the train json included (in the schema of json_update)."""
    from ..synth import render, write_mp4

    qid, n = 0, 0
    train = max(1, clips // 4)
    for split, count in {"train": train, "val": max(1, train // 4), "test": max(1, train // 4)}.items():
        entries = []
        for k in range(count):
            vid = f"{n:08d}"
            objs, outdoor = synth_scene(rng)
            bg = (150, 190, 230) if outdoor else (55, 42, 35)
            frames, _, audio = render(objs, 60, bg, rng)
            write_mp4(out / "MUSIC-AVQA" / f"{vid}.mp4", frames, audio)
            for kind, content, values, answer in synth_questions(objs, outdoor, rng):
                entries.append({"video_id": vid, "question_id": qid, "type": json.dumps(kind),
                                "question_content": content, "templ_values": json.dumps(values),
                                "question_deleted": 0, "anser": answer})
                qid += 1
            n += 1
        path = out / "json_update" / f"avqa-{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entries))


ADAPTER = Adapter(
    name="music-avqa", T=T, classes=ANSWERS, load=load,
    prompt="Answer the question about the sounds and sights of the music performance.",
    synth=synth, synth_classes=SYNTH_CLASSES, demo_clips=256, demo_hop=3.0,
)
