"""The unified vocabulary: every benchmark's class and answer names, one token each, built from
the adapters (pipeline.datasets.ADAPTERS), in their order and each in its own class order.

Names of different benchmarks that normalise to the same key (lower case, `_`, `-` and `,`
read as spaces: LLP "Vacuum_cleaner" and AVSS "vacuum-cleaner") share one token, so the heads
see one concept once; background (AVE class 28, AVSS class 0) is one token. Every token has a
text phrase; stage one stores the CLIP text embedding of each phrase (`shared/vocab_emb`) and
the task's class tokens in its class order (`shared/valid_ids`), which is all stage two reads:
its heads score the embeddings of the valid tokens. Targets stay in the benchmarks' own arrays;
nothing is serialised to tokens.

A store keeps its vocabulary (`attrs["vocab"]`: version, sha, tokens, phrases). MUSIC-AVQA
answers found in the user's files but not in its 41 (the official code is 42-way and its
training file is not public) are appended after the fixed tokens (`Vocab.extended`), so every
other store's vocabulary stays a prefix of that one.

Version 3 added the classes of the dense benchmarks (UnAV-100, ActivityNet 1.3, DESED) after
version 2's tokens, which keep their ids; a store of version 2 holds its own vocab_emb and
valid_ids (all stage two reads), so it stays readable.
Version 2 dropped version 1's 73 tokens before the classes (<pad> <bos> <eos>, a token per
task, t0..t59, three modalities), which only the removed token serialisation used; the class
phrases' embeddings are bit-identical to version 1's rows (checked on CPU with the demo's
random-weight text tower), their ids are 73 lower. Stores of version 1 stay readable: stage two
reads only vocab_emb and valid_ids.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .datasets import ADAPTERS, music_avqa

VERSION = 3
TASKS = tuple(ADAPTERS)
AVQA_TYPES = music_avqa.QUESTION_TYPES   # where trainer/metrics.py reads them
CLASSES = {name: a.classes for name, a in ADAPTERS.items()}        # valid_ids follow each order


def key(name: str) -> str:
    """The token of a class or answer name: lower case, `_ - ,` as spaces, single spaces."""
    return " ".join(re.sub(r"[_,\-]", " ", name.lower()).split())


def phrase(name: str) -> str:
    """Readable text for CLIP: underscores as spaces ("Frying_(food)" -> "frying (food)")."""
    return " ".join(name.replace("_", " ").split()).lower()


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]
    phrases: tuple[str, ...]

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def sha(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode()).hexdigest()[:16]

    def class_ids(self, names: list[str]) -> np.ndarray:
        """Token ids of class or answer names (any benchmark's spelling)."""
        return np.array([self.index[key(n)] for n in names], dtype=np.int32)

    @cached_property
    def _task_ids(self) -> dict[str, np.ndarray]:
        return {task: self.class_ids(names) for task, names in CLASSES.items()}

    def valid_ids(self, task: str) -> np.ndarray:
        """The task's class tokens in its class order (what its head scores)."""
        return self._task_ids[task]

    def extended(self, names: list[str]) -> "Vocab":
        """This vocabulary plus class/answer names it lacks, appended (ids unchanged); itself
        when it has them all."""
        new: dict[str, str] = {}
        for n in names:
            if key(n) not in self.index:
                new.setdefault(key(n), phrase(n))
        return Vocab(self.tokens + tuple(new), self.phrases + tuple(new.values())) if new else self

    def as_attrs(self) -> dict:
        return {"version": VERSION, "sha": self.sha, "tokens": list(self.tokens), "phrases": list(self.phrases)}


def build() -> Vocab:
    seen: dict[str, str] = {}
    for names in CLASSES.values():
        for n in names:
            seen.setdefault(key(n), phrase(n))
    return Vocab(tuple(seen), tuple(seen.values()))


VOCAB = build()
