"""LLP / AVVP: HAN's multimodal MIL pooling over TPM frame features (weak, video-level labels).

Frame probabilities per modality come from the shared token head (cosine to the 25 class
tokens) plus a per-class bias of this head (a sigmoid needs one; a softmax would not).
Attention over time and over modality pools them into audio, visual and global probabilities.
Padded batches (`frame_valid`): the attention over time is a softmax over the real seconds only.
Loss (HAN): BCE(global, y) + BCE(audio, y) + BCE(visual, 0.9 y + 0.05), probabilities clamped
to [1e-7, 1 - 1e-7]; y is the video-level multi-hot. valid_ids: the 25 tokens in class order.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.model import ModelConfig, TokenHead

N_CLASSES = 25
EPS = 1e-7


class Head(nn.Module):
    uses_patches = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(N_CLASSES))
        self.frame_att = nn.Linear(cfg.d_model, N_CLASSES)
        self.av_att = nn.Linear(cfg.d_model, N_CLASSES)

    def forward(self, feats: dict[str, Tensor], tokens: TokenHead, vocab_emb: Tensor,
                valid_ids: Tensor) -> dict[str, Tensor]:
        assert len(valid_ids) == N_CLASSES, f"LLP needs {N_CLASSES} valid tokens"
        x = torch.stack([feats["audio"], feats["visual"]], dim=2)  # (B, T, 2, D)
        logits = tokens.score(x, vocab_emb, valid_ids)["class_logits"]  # (B, T, 2, C) fp32
        frame_prob = torch.sigmoid(logits + self.bias)
        att = self.frame_att(x).float()  # (B, T, 2, C)
        if "frame_valid" in feats:  # padded seconds take no part in the pooling over time
            att = att.masked_fill(~feats["frame_valid"][:, :, None, None], float("-inf"))
        frame_att = F.softmax(att, dim=1)  # over time
        av_att = F.softmax(self.av_att(x).float(), dim=2)  # over modality
        temporal_prob = frame_att * frame_prob  # (B, T, 2, C)
        return {
            "global_prob": (temporal_prob * av_att).sum((1, 2)),  # (B, C)
            "audio_prob": temporal_prob[:, :, 0].sum(1),          # (B, C)
            "visual_prob": temporal_prob[:, :, 1].sum(1),         # (B, C)
            "frame_prob": frame_prob,                             # (B, T, 2, C)
        }


def bce(prob: Tensor, target: Tensor) -> Tensor:
    """nn.BCELoss on clamped probabilities, written out so it is safe under autocast."""
    p = prob.float().clamp(EPS, 1 - EPS)
    return -(target * p.log() + (1 - target) * (1 - p).log()).mean()


def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    y = batch["video_labels"].float()
    return (bce(outputs["global_prob"], y) + bce(outputs["audio_prob"], y)
            + bce(outputs["visual_prob"], 0.9 * y + 0.05))


def decode(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """What metrics.llp_predict takes: global_prob (B, 25), frame_prob_a / _v (B, T, 25)."""
    frame_prob = outputs["frame_prob"]
    return {"global_prob": outputs["global_prob"], "frame_prob_a": frame_prob[:, :, 0],
            "frame_prob_v": frame_prob[:, :, 1]}
