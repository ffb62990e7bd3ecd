import json

from pipeline.datasets import ADAPTERS, ave, music_avqa, vggss
from pipeline.vocab import CLASSES, TASKS, VOCAB, key

from .conftest import ANNOTATIONS, need


def test_one_vocabulary_of_every_class_and_answer():
    assert len(set(VOCAB.tokens)) == len(VOCAB) == len(VOCAB.phrases) == 568 and all(VOCAB.phrases)
    # built from the adapters in their order: each class's key, first spelling's phrase
    expected = dict.fromkeys(key(n) for a in ADAPTERS.values() for n in a.classes)
    assert VOCAB.tokens == tuple(expected) and TASKS == tuple(ADAPTERS) == tuple(CLASSES)
    assert not any(t.startswith("<") or t in ("t0", "t59") for t in VOCAB.tokens)   # no token layer
    for task, names in CLASSES.items():
        ids = VOCAB.valid_ids(task)
        assert len(ids) == len(names) == len(set(ids.tolist())), task
        assert [VOCAB.tokens[i] for i in ids] == [key(n) for n in names], task
    # the same concept spelled by two benchmarks is one token
    assert VOCAB.class_ids(["Vacuum_cleaner"]) == VOCAB.class_ids(["vacuum-cleaner"])
    assert VOCAB.valid_ids("ave")[28] == VOCAB.valid_ids("avss")[0] == VOCAB.index["background"]
    assert key("Violin, fiddle") == key("Violin_fiddle")
    # the dense benchmarks' classes share the tokens of the same concepts elsewhere
    assert VOCAB.class_ids(["playing violin"]) == VOCAB.class_ids(["Playing violin"]) == VOCAB.class_ids(["playing_violin"])
    assert VOCAB.class_ids(["Dog"]) == VOCAB.valid_ids("desed")[4] and VOCAB.valid_ids("unav100")[0] == VOCAB.index["man speaking"]


def test_dense_classes_come_after_version_2s_tokens():
    """Version 3 appended the dense benchmarks' new classes: version 2's 343 tokens keep their ids."""
    dense = ("unav100", "activitynet", "desed")
    before = dict.fromkeys(key(n) for name, a in ADAPTERS.items() if name not in dense for n in a.classes)
    assert VOCAB.tokens[: len(before)] == tuple(before) and len(before) == 343
    assert set(VOCAB.tokens[len(before):]) <= {key(n) for name in dense for n in ADAPTERS[name].classes}


def test_class_lists_match_the_real_files():
    rows = need(ANNOTATIONS / "ave" / "Annotations.txt").read_text().splitlines()
    assert list(dict.fromkeys(r.split("&")[0] for r in rows)) == ave.CATEGORIES     # numbered by first appearance
    entries = json.loads(need(ANNOTATIONS / "vggss" / "vggss.json").read_text())
    assert sorted({e["class"] for e in entries}) == vggss.CLASSES and len(vggss.CLASSES) == 221
    answers = set()
    for split in ("val", "test"):
        answers |= {e["anser"] for e in json.loads((ANNOTATIONS / "music_avqa" / "json_update" / f"avqa-{split}.json").read_text())}
    assert sorted(answers) == music_avqa.ANSWERS
    idx = json.loads(need(ANNOTATIONS / "avsbench" / "label2idx.json").read_text())
    assert [n for n, _ in sorted(idx.items(), key=lambda kv: kv[1])] == CLASSES["avss"]


def test_extended_vocabulary_keeps_every_id():
    bigger = VOCAB.extended(["banjo", "theremin", "Theremin"])
    assert bigger.tokens[: len(VOCAB)] == VOCAB.tokens and bigger.tokens[len(VOCAB):] == ("theremin",)
    assert bigger.sha != VOCAB.sha and bigger.as_attrs()["tokens"][-1] == "theremin"
    assert VOCAB.extended(music_avqa.ANSWERS) is VOCAB and VOCAB.as_attrs()["version"] == 3
