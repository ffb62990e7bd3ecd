"""AVSBench: a small mask decoder over the SPM patch grid (paper Fig. 3), upsampled to masks.

S4 / MS3 (valid_ids None): one logit per pixel, BCE. AVSS (valid_ids = the 71 class tokens,
background first): pixel embeddings scored by cosine against the class tokens' embeddings
(shared TokenHead projection and scale, mapped to the decoder width), per-pixel CE.
The head works at 4 g x 4 g; the loss upsamples only the valid frames (`mask_valid` (B, T):
S4 trains on the first frame only, AVSS on the real frames of padded clips) to the target
masks' size; decode upsamples to `size` (AVSBench: 224). Binary `masks` are {0, 1} (any nonzero =
sounding), AVSS `masks` are class indices. MS3's extra mask-similarity term is not used.
Frames past the clip's length (AVSS: the 5 padded frames of v1 clips, which the official
evaluation scores against an all-background mask) predict background, as the official AVSS
models do by multiplying their output with the frame flag.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.model import ModelConfig, TokenHead


def up_block(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(8, c), nn.ReLU())


class Head(nn.Module):
    uses_patches = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.mask_channels
        self.grid = cfg.grid
        self.patch = nn.Conv2d(cfg.d_model, c, 1)
        self.audio = nn.Linear(cfg.d_model, c)  # the frame's SPM audio conditions every pixel
        self.up = nn.Sequential(up_block(c), up_block(c))  # g -> 4g
        self.binary = nn.Conv2d(c, 1, 1)
        self.classes = nn.Linear(cfg.d_model, c)  # class token embeddings -> pixel space

    def forward(self, feats: dict[str, Tensor], tokens: TokenHead, vocab_emb: Tensor | None = None,
                valid_ids: Tensor | None = None) -> dict[str, Tensor]:
        p, a = feats["patches"], feats["spm_audio"]  # (B, T, M, D), (B, T, D)
        B, T, M, D = p.shape
        g = self.grid
        assert M == g * g, f"{M} patches do not match the configured {g}x{g} grid"
        x = p.reshape(B * T, g, g, D).permute(0, 3, 1, 2)  # (BT, D, g, g)
        x = self.up(self.patch(x) + self.audio(a).reshape(B * T, -1, 1, 1))  # (BT, c, 4g, 4g)
        if valid_ids is None:
            logits = self.binary(x)  # (BT, 1, 4g, 4g)
        else:
            k = F.normalize(self.classes(tokens.class_embeddings(vocab_emb, valid_ids)), dim=-1)  # (K, c)
            x = F.normalize(x.float(), dim=1)
            logits = tokens.scale() * torch.einsum("nchw,kc->nkhw", x, k)  # (BT, K, 4g, 4g)
        logits = logits.view(B, T, *logits.shape[1:])  # (B, T, K, 4g, 4g)
        if "frame_valid" in feats:
            logits = background_past_end(logits, feats["frame_valid"])
        return {"mask_logits": logits}


def background_past_end(logits: Tensor, valid: Tensor) -> Tensor:
    """Padded frames (valid (B, T) False) predict background. AVSS: every class logit x 0, as
    the official AVSS models multiply their output by the frame flag (ties go to index 0,
    background); binary: -1e4, background at every F-score threshold (a 0 would be p = 0.5)."""
    pad = ~valid[:, :, None, None, None]
    if logits.shape[2] == 1:
        return logits.masked_fill(pad, -1e4)
    return logits.masked_fill(pad, 0.0)


CHUNK_PIXELS = 2 ** 25   # full-size logit values per loss chunk (128 MB in fp32; AVSS at 224: 9 frames)


def _frame_loss_sum(logits: Tensor, masks: Tensor) -> Tensor:
    """Summed per-pixel loss of frames (n, K, h, w) against masks (n, H, W) at the masks' size."""
    up = F.interpolate(logits.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
    if up.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(up[:, 0], (masks != 0).float(), reduction="sum")
    return F.cross_entropy(up, masks.long(), reduction="sum")


def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor], chunk_pixels: int = CHUNK_PIXELS) -> Tensor:
    """Mean per-pixel BCE (binary) or CE (AVSS) over the valid frames at the masks' size.

    The full-size logits are never held for the whole batch: frames go through in chunks of
    about `chunk_pixels` logit values, each recomputed in the backward pass (checkpointing).
    AVSS at the paper's batch 64 would otherwise hold 64 x 10 x 71 x 224 x 224 fp32 values
    (9.1 GB) and as much again for their gradient. The value equals the one-shot mean."""
    valid = batch["mask_valid"].bool()  # (B, T)
    logits, masks = outputs["mask_logits"][valid], batch["masks"][valid]  # (n, K, h, w), (n, H, W)
    if len(masks) == 0:
        return outputs["mask_logits"].sum() * 0.0
    per_frame = logits.shape[1] * masks.shape[-1] * masks.shape[-2]
    step = max(1, chunk_pixels // per_frame)
    if step >= len(masks):
        total = _frame_loss_sum(logits, masks)
    else:
        from torch.utils.checkpoint import checkpoint

        total = sum(checkpoint(_frame_loss_sum, logits[i:i + step], masks[i:i + step], use_reentrant=False)
                    for i in range(0, len(masks), step))
    return total / masks.numel()


def decode(outputs: dict[str, Tensor], size: int = 224) -> dict[str, Tensor]:
    """S4 / MS3: mask_logits (B, T, size, size), pre-sigmoid (metrics.avs_miou / avs_fscore).
    AVSS: mask_classes (B, T, size, size) long (metrics.avss_class_sums)."""
    logits = outputs["mask_logits"]
    B, T = logits.shape[:2]
    # float32 (bf16 / fp16 outputs widened); float64 logits stay float64, as the metrics score them
    up = F.interpolate(logits.flatten(0, 1).to(torch.promote_types(logits.dtype, torch.float32)),
                       size=(size, size), mode="bilinear", align_corners=False).view(B, T, -1, size, size)
    if up.shape[2] == 1:
        return {"mask_logits": up[:, :, 0]}
    return {"mask_classes": up.argmax(2)}
