"""MUSIC-AVQA: one answer token. The question's CLIP embedding is the prompt; a query made from
it is decoded over the memory and scored against the answer tokens (valid_ids, in answer
order); `answer` (B,) is a position in valid_ids. CE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer import metrics as M
from trainer.model import ModelConfig, TokenHead
from trainer.tasks.spec import FULL, Benchmark, PaperTable, joint_row, rows


class Head(nn.Module):
    uses_patches = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.query = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, feats: dict[str, Tensor], tokens: TokenHead, vocab_emb: Tensor,
                valid_ids: Tensor) -> dict[str, Tensor]:
        q = self.query(feats["prompt"])[:, None]  # (B, 1, D)
        out = tokens.score(tokens.decode(q, feats), vocab_emb, valid_ids)
        return {k: x[:, 0] for k, x in out.items()}  # class_logits (B, K), token_logits (B, V)


def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    return F.cross_entropy(outputs["class_logits"], batch["answer"])


def decode(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """answer (B,): position in valid_ids."""
    return {"answer": outputs["class_logits"].argmax(-1)}


def predict(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """answer (N,) int16, a position in the store's answer list; question_index (N,) its row."""
    return {"answer": decode(outputs)["answer"].to(torch.int16), "question_index": batch["sample_index"]}


def score(preds: dict, fs, chance: bool) -> dict:
    """Accuracy per official question type, group and overall; chance: each type's majority answer."""
    q = preds["question_index"]
    types = np.asarray(fs.attrs["question_types"], dtype=object)[fs.shared("question_type")[q]]
    gt = fs.shared("question_answer")[q].astype(np.int64)
    prior = np.empty_like(gt)
    for t in set(types):
        kind = types == t
        prior[kind] = np.bincount(gt[kind]).argmax()
    return {"n": len(q), "metrics": M.avqa_accuracy(preds["answer"].astype(np.int64), gt, types),
            "chance": M.avqa_accuracy(prior, gt, types), "per_class": {}}


MUSIC_AVQA = Benchmark(
    name="music-avqa", head="avqa", targets=(), losses={FULL: loss}, predict=predict,
    pred_keys=("answer", "question_index"), score=score,
    metric_keys=(*M.AVQA_TYPES, "Audio", "Visual", "Audio-Visual", "All"), select="All",
    headline=("All", "Audio", "Visual", "Audio-Visual"), table=PaperTable("IV", "MUSIC-AVQA", 2, 4),
    rows=rows(("Audio · Counting", "Audio/Counting", 72.23), ("Audio · Comparative", "Audio/Comparative", 78.26),
              ("Audio · Avg", "Audio", 72.60),
              ("Visual · Counting", "Visual/Counting", 75.93), ("Visual · Location", "Visual/Location", 73.38),
              ("Visual · Avg", "Visual", 75.61),
              ("AV · Existential", "Audio-Visual/Existential", 79.00),
              ("AV · Counting", "Audio-Visual/Counting", 77.07),
              ("AV · Location", "Audio-Visual/Location", 76.27),
              ("AV · Comparative", "Audio-Visual/Comparative", 76.89),
              ("AV · Temporal", "Audio-Visual/Temporal", 75.65), ("AV · Avg", "Audio-Visual", 76.96),
              ("All", "All", 76.42)),
    joint_rows=(joint_row("MUSIC-AVQA · AV", "Audio-Visual", 71.94, 76.96),
                joint_row("MUSIC-AVQA · All", "All", 75.32, 76.42)),
    questions=True, bars="accuracy per question type and group", demo_weight=8)
