import json

import numpy as np
import pytest

from pipeline.vocab import (AVE_CLASSES, AVQA_ANSWERS, CLASSES, PAD, SERIALISERS, TASKS, VGGSS_CLASSES, VOCAB, key,
                            runs)

from .conftest import ANNOTATIONS, need


def test_one_vocabulary_with_every_class_answer_time_task_and_modality():
    assert VOCAB.tokens[0] == PAD and len(set(VOCAB.tokens)) == len(VOCAB) == len(VOCAB.phrases)
    assert all(VOCAB.phrases) and len(VGGSS_CLASSES) == 221
    for t in [*(f"<{t}>" for t in TASKS), *(f"t{s}" for s in range(60)), "<audio>", "<visual>", "<audio-visual>"]:
        assert t in VOCAB.index
    for task, names in CLASSES.items():
        ids = VOCAB.valid_ids(task)
        assert len(ids) == len(names) == len(set(ids.tolist())), task
    # the same concept spelled by two benchmarks is one token
    assert VOCAB.class_ids(["Vacuum_cleaner"]) == VOCAB.class_ids(["vacuum-cleaner"])
    assert VOCAB.valid_ids("ave")[28] == VOCAB.valid_ids("avss")[0] == VOCAB.id("background")


def test_class_lists_match_the_real_files():
    rows = need(ANNOTATIONS / "ave" / "Annotations.txt").read_text().splitlines()
    assert list(dict.fromkeys(r.split("&")[0] for r in rows)) == AVE_CLASSES     # numbered by first appearance
    entries = json.loads(need(ANNOTATIONS / "vggss" / "vggss.json").read_text())
    assert sorted({e["class"] for e in entries}) == VGGSS_CLASSES
    answers = set()
    for split in ("val", "test"):
        answers |= {e["anser"] for e in json.loads((ANNOTATIONS / "music_avqa" / "json_update" / f"avqa-{split}.json").read_text())}
    assert sorted(answers) == AVQA_ANSWERS
    idx = json.loads(need(ANNOTATIONS / "avsbench" / "label2idx.json").read_text())
    assert [n for n, _ in sorted(idx.items(), key=lambda kv: kv[1])] == CLASSES["avss"]


def test_extended_vocabulary_keeps_every_id():
    bigger = VOCAB.extended(["banjo", "theremin", "Theremin"])
    assert bigger.tokens[: len(VOCAB)] == VOCAB.tokens and bigger.tokens[len(VOCAB):] == ("theremin",)
    assert bigger.sha != VOCAB.sha and bigger.as_attrs()["tokens"][-1] == "theremin"


def _random_targets(rng) -> dict[str, dict]:
    dense = (rng.random((2, 25, 10)) < 0.3).astype(np.uint8)
    return {
        "ave": {"labels": rng.integers(0, 29, 10).astype(np.int16)},
        "llp": {"video_labels": (rng.random(25) < 0.2).astype(np.uint8)},
        "llp-events": {"gt_audio": dense[0], "gt_visual": dense[1]},
        "vggss": {"frame_index": int(rng.integers(0, 10)), "class_index": int(rng.integers(-1, 221))},
        "avs-s4": {"class_index": int(rng.integers(0, 23))},
        "avss": {"classes_present": np.r_[0, (rng.random(70) < 0.05)].astype(np.uint8)},
        "music-avqa": {"answer": int(rng.integers(0, 41))},
    }


@pytest.mark.parametrize("task", list(SERIALISERS))
def test_every_task_round_trips_targets_tokens_targets(task):
    to_tokens, from_tokens = SERIALISERS[task]
    rng = np.random.default_rng(0)
    valid = set(VOCAB.valid_ids({"llp-events": "llp"}.get(task, task)).tolist())
    for _ in range(200):
        target = _random_targets(rng)[task]
        tokens = to_tokens(target)
        assert tokens.dtype == np.int32 and tokens.ndim == 1
        other = {VOCAB.id(PAD), VOCAB.id("<audio>"), VOCAB.id("<visual>"), *range(VOCAB.time(0), VOCAB.time(59) + 1)}
        classes = [t for t in tokens.tolist() if t not in other]
        assert set(classes) <= valid                           # only the task's own class tokens
        back = from_tokens(tokens)
        assert back.keys() == target.keys()
        for name in target:
            assert np.array_equal(np.asarray(back[name]), np.asarray(target[name])), (task, name)


def test_event_tokens_read_as_modality_class_first_last():
    gt_a = np.zeros((25, 10), np.uint8)
    gt_a[3, 2:5] = gt_a[3, 7:10] = 1                            # Dog heard twice
    tokens = SERIALISERS["llp-events"][0]({"gt_audio": gt_a, "gt_visual": np.zeros_like(gt_a)})
    words = [VOCAB.tokens[t] for t in tokens]
    assert words == ["<audio>", "dog", "t2", "t4", "<audio>", "dog", "t7", "t9"]
    assert runs(gt_a[3]) == [(2, 4), (7, 9)] and key("Violin, fiddle") == key("Violin_fiddle")
