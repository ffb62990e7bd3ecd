"""MUSIC-AVQA: one answer token. The question's CLIP embedding is the prompt; a query made from
it is decoded over the memory and scored against the answer tokens (valid_ids, in answer
order); `answer` (B,) is a position in valid_ids. CE.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.model import ModelConfig, TokenHead


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
