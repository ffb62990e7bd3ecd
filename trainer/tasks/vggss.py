"""VGG-SS: sound source localisation, EZ-VSL style, on the middle frame (index T // 2; in a
padded batch, `frame_valid`, the middle of each clip's real seconds: length // 2).

Heatmap = cosine similarity of the frame's audio embedding to each patch embedding over the
g x g grid. Loss: symmetric contrastive CE over the audio-to-patch MAX similarity between every
audio and every clip's patches of the batch, tau = 0.03 (EZ-VSL sums both directions).
Needs batches of >= 2 clips. No token interface: nothing here is a class.

Which features: the audio as projected from VGGish (`audio_in`) and the patches after SPM's
patch self-attention, eq. 5 (`patches_visual`), i.e. the two streams before either has seen
the other, as EZ-VSL's separate encoders are. After TPM's cross-modal attention and SPM's
audio guidance every patch of a clip carries that clip's own audio (and its audio the frame),
so the contrastive loss is met by recognising the clip anywhere and the heatmap stays flat:
measured on the synthetic benchmark (192 training clips, 300 steps, VGG-SS alone), fused
features gave AUC 34.5 (a flat map: 37.5), these 48.3, with cIoU 36.5 against 57.3.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer import metrics as M
from trainer.model import ModelConfig, TokenHead
from trainer.tasks.spec import FULL, Benchmark, PaperTable, best, joint_row, rows

TAU = 0.03


class Head(nn.Module):
    uses_patches = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.grid = cfg.grid
        self.audio = nn.Linear(cfg.d_model, cfg.d_model)
        self.patch = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, feats: dict[str, Tensor], tokens: TokenHead, vocab_emb: Tensor | None = None,
                valid_ids: Tensor | None = None) -> dict[str, Tensor]:
        a, p = feats["audio_in"], feats["patches_visual"]  # (B, T, D), (B, T, M, D)
        B, T, M, _ = p.shape
        assert M == self.grid ** 2, f"{M} patches do not match the configured {self.grid}x{self.grid} grid"
        if "frame_valid" in feats:
            rows = torch.arange(B, device=a.device)
            mid = feats["frame_valid"].sum(1) // 2                       # (B,) length // 2
            a, p = a[rows, mid], p[rows, mid]                            # (B, D), (B, M, D)
        else:
            a, p = a[:, T // 2], p[:, T // 2]
        audio = F.normalize(self.audio(a).float(), dim=-1)               # (B, D)
        patch = F.normalize(self.patch(p).float(), dim=-1)               # (B, M, D)
        heatmap = torch.einsum("bd,bmd->bm", audio, patch)               # (B, M)
        return {"audio_emb": audio, "patch_emb": patch,
                "heatmap": heatmap.view(B, self.grid, self.grid)}


def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    audio, patch = outputs["audio_emb"], outputs["patch_emb"]
    sim = torch.einsum("id,jmd->ijm", audio, patch).amax(-1) / TAU  # (B audio, B clips)
    target = torch.arange(sim.shape[0], device=sim.device)
    return F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)


def decode(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """heatmap (B, g, g) of the middle frame, higher = more likely sounding (metrics.ssl_ciou)."""
    return {"heatmap": outputs["heatmap"]}


def predict(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return decode(outputs)


def centre_map(g: int) -> np.ndarray:
    """A centred Gaussian over the g x g grid, sigma 1/4 of the side."""
    yy, xx = (np.mgrid[:g, :g] + 0.5) / g - 0.5
    return np.exp(-(xx ** 2 + yy ** 2) / (2 * 0.25 ** 2)).astype(np.float32)


def score(preds: dict, fs, chance: bool) -> dict:
    """cIoU and AUC of the official test; chance: the best of a constant map (all pixels on) and
    a centred Gaussian. "undefined": samples with no box area and an empty prediction, 0 / 0
    (NaN) in the official code, failures at every threshold."""
    idx = preds["clip_index"]
    boxes, count = fs.read("boxes", idx), fs.read("box_count", idx)
    if boxes.dtype != np.float64:   # a store made before the adapter kept the file's values
        warnings.warn(f"{fs.path}: VGG-SS boxes are stored as {boxes.dtype}, not the annotation's float64: "
                      f"int(224 * c) loses a pixel where 224 * c is whole, so the ground truth can differ from "
                      f"the official one (on the synthetic vggss.json half the coordinates do; on the real one "
                      f"none). Run this store's `avu extract --dataset vggss` command again: done clips are "
                      f"skipped and the targets are rewritten in float64.", stacklevel=2)
        boxes = boxes.astype(np.float64)   # exact: the rounding happened when the store was made
    boxes = [b[:c] for b, c in zip(boxes, count)]
    heat = preds["heatmap"]                # scored in its own dtype (float32; float64 stays)
    n, g = len(heat), heat.shape[-1]
    trivial = [np.zeros((n, g, g), np.float32), np.broadcast_to(centre_map(g), (n, g, g)).copy()]
    cious = M.ssl_ciou(heat, boxes)
    return {"n": n, "metrics": M.ssl_summary(cious), "per_class": {}, "undefined": int(np.isnan(cious).sum()),
            "chance": best(*(M.ssl_summary(M.ssl_ciou(h, boxes)) for h in trivial)) if chance else {}}


VGGSS = Benchmark(
    name="vggss", head="vggss", targets=(),   # the loss is contrastive; scoring reads the (float64) boxes
    losses={FULL: loss}, predict=predict, pred_keys=("heatmap",), score=score, metric_keys=("ciou", "auc"),
    select="ciou", headline=("ciou", "auc"), table=PaperTable("III", "VGG-SS", 2, 3),
    rows=rows(("cIoU", "ciou", 39.16), ("AUC", "auc", 41.24)),
    joint_rows=(joint_row("VGG-SS · cIoU", "ciou", 38.94, 39.16), joint_row("VGG-SS · AUC", "auc", 40.80, 41.24)),
    class_tokens=False, figure="heatmap", figure_array="heatmap")
