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
(index into attrs["answers"], the answer list = the 41 fixed answers plus any other found in
the files, appended), tokens (Q, 1) int32 = the answer token; attrs["question_text"]: the
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
from ..vocab import AVQA_ANSWERS, AVQA_TYPES, VOCAB
from .common import SPLITS, Clip, Dataset, DatasetError, Invalid, JsonList, json_type, nonempty

T = 60
HOLE = re.compile(r"<[^>]*>")


def fill(content: str, values: list, quirks: Counter) -> str:
    """The question with the template values put into its <...> placeholders, in order."""
    quirks["template_mismatch"] += len(HOLE.findall(content)) != len(values)
    it = iter(values)
    return HOLE.sub(lambda m: str(next(it, m.group(0))), content).strip()


def question_type(raw: str) -> int:
    """The `type` field, a string holding a JSON list ["Group", "Kind"] -> index in AVQA_TYPES."""
    try:
        parts = json.loads(raw)
    except json.JSONDecodeError as err:
        raise Invalid(f"not JSON ({err.msg})") from None
    if not isinstance(parts, list) or not all(isinstance(x, str) for x in parts):
        raise Invalid("not a list of strings")
    if "/".join(parts) not in AVQA_TYPES:
        raise Invalid(f"{'/'.join(parts)!r} is not one of {', '.join(AVQA_TYPES)}")
    return AVQA_TYPES.index("/".join(parts))


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
    video_id (str), question_id (int), type (index in AVQA_TYPES), content, values, anser."""
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
    extra = sorted({q["anser"] for _, q in rows} - set(AVQA_ANSWERS))
    answers, vocab = AVQA_ANSWERS + extra, VOCAB.extended(extra)
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
        "tokens": vocab.class_ids([q["anser"] for _, q in rows])[:, None],
        "text": [fill(q["content"], q["values"], quirks) for _, q in rows],
    }
    attrs = {"answers": answers, "question_types": AVQA_TYPES, "question_splits": list(SPLITS)}
    return Dataset("music-avqa", T, clips, answers, quirks, attrs=attrs, questions=questions, vocab=vocab)
