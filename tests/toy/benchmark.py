"""Toy, stage two: one answer a clip from the question-answering head (its task prompt as the
query), scored by accuracy, with a paper table of its own."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trainer.tasks import avqa
from trainer.tasks.spec import FULL, Benchmark, PaperTable, rows


def loss(outputs, batch):
    return F.cross_entropy(outputs["class_logits"], batch["label"].long())


def predict(outputs, batch):
    return {"label": avqa.decode(outputs)["answer"].to(torch.int16)}


def score(preds: dict, fs, chance: bool) -> dict:
    gt = fs.read("label", preds["clip_index"]).astype(np.int64)
    accuracy = lambda p: float((p == gt).mean())  # noqa: E731
    return {"n": len(gt), "metrics": {"accuracy": accuracy(preds["label"])},
            "chance": {"accuracy": accuracy(np.full_like(gt, np.bincount(gt).argmax()))}, "per_class": {}}


TOY = Benchmark(
    name="toy", head="avqa", targets=("label",), losses={FULL: loss}, predict=predict, pred_keys=("label",),
    score=score, metric_keys=("accuracy",), select="accuracy", headline=("accuracy",),
    table=PaperTable("T", "Toy", 1, 9), rows=rows(("accuracy", "accuracy", 50.0)))
