"""AVE: one token per segment, 28 event classes + background (index 28), per-segment CE.

valid_ids: the 29 token ids in class order, background last; `labels` (B, T) are positions in it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.model import ModelConfig, TokenHead
from trainer.metrics import ave_accuracy
from trainer.tasks.spec import FULL, Benchmark, PaperTable, joint_row, rows

N_CLASSES = 29


class Head(nn.Module):
    uses_patches = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.query = nn.Linear(2 * cfg.d_model, cfg.d_model)  # one query per segment from (a_t, v_t)

    def forward(self, feats: dict[str, Tensor], tokens: TokenHead, vocab_emb: Tensor,
                valid_ids: Tensor) -> dict[str, Tensor]:
        assert len(valid_ids) == N_CLASSES, f"AVE needs {N_CLASSES} valid tokens"
        q = self.query(torch.cat([feats["audio"], feats["visual"]], dim=-1))  # (B, T, D)
        return tokens.score(tokens.decode(q, feats), vocab_emb, valid_ids)  # class_logits (B, T, 29)


def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    return F.cross_entropy(outputs["class_logits"].flatten(0, 1), batch["labels"].flatten())


def decode(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """labels (B, T): class index per segment (28 = background)."""
    return {"labels": outputs["class_logits"].argmax(-1)}


def predict(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {"labels": decode(outputs)["labels"].to(torch.int16)}


def score(preds: dict, fs, chance: bool) -> dict:
    """Accuracy over every segment of the split (official); chance: the split's majority label."""
    gt = fs.read("labels", preds["clip_index"]).astype(np.int64)
    majority = np.bincount(gt.ravel()).argmax()
    return {"n": len(gt), "metrics": {"accuracy": ave_accuracy(preds["labels"], gt)},
            "chance": {"accuracy": ave_accuracy(np.full_like(gt, majority), gt)}, "per_class": {}}


AVE = Benchmark(
    name="ave", head="ave", targets=("labels",), losses={FULL: loss},
    predict=predict, pred_keys=("labels",), score=score, metric_keys=("accuracy",), select="accuracy",
    headline=("accuracy",), table=PaperTable("II", "AVE", 1, 2),
    rows=rows(("fully-supervised", "accuracy", 78.7), supervision="full")
    + rows(("weakly-supervised", "accuracy", 74.2), supervision="weak"),
    joint_rows=(joint_row("AVE · fully", "accuracy", 77.4, 78.7, "full"),
                joint_row("AVE · weakly", "accuracy", 73.5, 74.2, "weak")))
