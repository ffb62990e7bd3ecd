"""What stage two knows about one benchmark: a `Benchmark`, defined in the benchmark's file.

Training, evaluation, the run directory, `avu report`, its figures and the demo read a
benchmark's facts from its Benchmark and nothing else; every per-benchmark table they use is
derived from `trainer.tasks.BENCHMARKS`. Stage one's facts (files, splits, classes, prompts,
synthetic layout) are in its adapter, `pipeline/datasets/<name>.py`; the two meet in the
feature store, whose `task` attribute is the benchmark's name.

A benchmark runs on one of the model's heads (`trainer.tasks.HEADS`); several benchmarks may
share one (AVSBench S4, MS3 and AVSS share the mask decoder, in two modes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

FULL, WEAK = "full", "weak"


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's result tables (several benchmarks may add rows to one)."""
    id: str               # "I" .. "V", the order of `avu report`
    title: str
    digits: int           # decimals, as the paper prints them
    order: int            # position among the tables
    source: str = ""      # whose numbers its paper column shows ("": AV-Unified's)
    verified: bool = True  # False: nobody has read them from the paper; shown as "–", never guessed


@dataclass(frozen=True)
class Row:
    """One metric row of a paper table. paper: by column role ("" in Tables I-V, "w/o jt" /
    "joint" in Table VI), None where the paper's number is not known. supervision: the row
    takes only runs trained with it."""
    label: str
    key: str
    paper: dict[str, float | None]
    supervision: str | None = None
    note: str = ""        # printed under any table that shows the row
    optional: bool = False   # shown only where some run has a number for it (open-set rows)


def rows(*items: tuple, supervision: str | None = None) -> tuple[Row, ...]:
    """Rows of Tables I-V from (label, metric key, the paper's number)."""
    return tuple(Row(label, key, {"": paper}, supervision) for label, key, paper in items)


def joint_row(label: str, key: str, wojt: float, joint: float, supervision: str | None = None,
              note: str = "") -> Row:
    """A row of Table VI: the paper's number without and with joint training."""
    return Row(label, key, {"w/o jt": wojt, "joint": joint}, supervision, note)


@dataclass(frozen=True)
class Benchmark:
    name: str                                   # the dataset's name: its store, its eval files
    head: str                                   # the model head it runs on (HEADS)
    targets: tuple[str, ...]                    # per-sample store arrays a training batch reads
    losses: dict[str, Callable]                 # supervision -> loss(outputs, batch); FULL always
    predict: Callable[[dict, dict], dict]       # (head outputs, batch) -> prediction arrays (eval files)
    pred_keys: tuple[str, ...]                  # what a predictions file must hold (beside clip_index)
    score: Callable[[dict, object, bool], dict]  # (predictions, FeatureStore, chance) -> result
    metric_keys: tuple[str, ...]                # every key its eval JSON may hold
    select: str                                 # the validation metric checkpoints are chosen by
    headline: tuple[str, ...]                   # the metrics curves and the demo's summary show
    table: PaperTable
    rows: tuple[Row, ...]                       # its rows of `table`
    joint_rows: tuple[Row, ...] = ()            # its rows of Table VI (joint vs single-task)
    class_tokens: bool = True                   # its head scores the store's class tokens (valid_ids)
    head_options: dict = field(default_factory=dict)   # keyword arguments of its head (AVS: mode)
    questions: bool = False                     # samples are the store's questions, not its clips
    figure: str | None = None                   # prediction figure: "heatmap" | "binary" | "classes"
    figure_array: str = ""                      # the array of eval/<split>/<name>.npz drawn
    compress: bool = False                      # its predictions file is saved compressed
    per_class: str = ""                         # what its eval JSON's per_class holds (a figure)
    bars: str = ""                              # a figure of all its metrics beside the paper: title
    modality: str = ""                          # `avu predict`: what its events are (audio | visual | audio-visual)
    demo_weight: float = 1.0                    # `avu demo`: its draw weight (trainer/demo.py says why)
    class_prompts: bool = False                 # its head scores the store's class prompts (shared/class_emb):
                                                # the model call's vocab_emb is class_emb, one row a class
    test_split: str = "test"                    # the split `avu eval --split test` scores (ActivityNet: val, the
                                                # official validation set; its testing set has no labels)
    export: Callable | None = None              # (predictions, FeatureStore, path): a results file for users
                                                # beside the eval JSON (dense: the official JSON layout)

    def loss(self, supervision: str = FULL) -> Callable:
        if supervision not in self.losses:
            raise ValueError(f"{self.name}: no {supervision!r} supervision; it has {', '.join(self.losses)}")
        return self.losses[supervision]

    @property
    def supervisions(self) -> tuple[str, ...]:
        return tuple(self.losses)

    def supervision_of(self, setting: str) -> str | None:
        """The supervision a run whose `ave_supervision` is `setting` trains this benchmark with,
        where it can be trained in several ways (AVE: full or weak); None where it has one way
        only (FULL). Training (trainer/train.py) and `avu report` both ask here."""
        return setting if len(self.losses) > 1 else None


def best(*candidates: dict[str, float]) -> dict[str, float]:
    """Per metric, the best of several trivial predictors' scores (chance)."""
    return {k: max(c[k] for c in candidates) for k in candidates[0]}

