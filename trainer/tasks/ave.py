"""AVE: one token per segment, 28 event classes + background (index 28), per-segment CE.

valid_ids: the 29 token ids in class order, background last; `labels` (B, T) are positions in it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.model import ModelConfig, TokenHead

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
    """Per-segment CE, the mean over the real segments (all of them without `frame_valid`)."""
    logits, labels = outputs["class_logits"], batch["labels"]
    if "frame_valid" in outputs:
        valid = outputs["frame_valid"]
        return F.cross_entropy(logits[valid], labels[valid])
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


def decode(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """labels (B, T): class index per segment (28 = background)."""
    return {"labels": outputs["class_logits"].argmax(-1)}
