"""Dense temporal localisation (UniAV's tasks): one head, three benchmarks (UnAV-100, ActivityNet
1.3, DESED), detections in continuous seconds scored by the official mAP@tIoU.

The head (ActionFormer / UniAV style, anchor-free): the backbone's per-step TPM features
(audio and visual, fused) -> a temporal pyramid of N_LEVELS levels, each half as long as the
one before (max-pool stride 2 + a residual conv block: memory linear in length) -> at every
point of every level
- a class score from the ONE language-aware classifier the three benchmarks share: cosine
  between a projection of the point's feature and a projection of each class prompt's CLIP
  text embedding (shared/class_emb, "An audio visual event of {}." ...), times a learned scale
  (exp, initialised at 1 / 0.07 as UniAV), plus a learned bias initialised at the prior
  -log((1 - 0.01) / 0.01) (ActionFormer's cls_prior_prob; UniAV's cosine classifier has none,
  which starts every sigmoid at 0.5 and the focal loss far from its equilibrium). Any class
  with a prompt can be scored: the model call's `vocab_emb` is the store's class_emb for these
  benchmarks (trainer/data.py open_task), so held-out classes are scored zero-shot.
- distances to the event's start and end, ReLU(per-level learned scale x conv output), in
  units of the level's stride (class-agnostic, as ActionFormer; UniAV regresses per class
  for UnAV-100 and DESED).

Time axis (interfaces point 2): step k covers [k hop, (k + 1) hop) s, its feature sits at
(k + 0.5) hop. A time of t seconds is grid position t / hop - 0.5; a point of level l at
index i sits at grid position i 2^l (ActionFormer's points, no offset). Decoded boundaries go
back to seconds as (g + 0.5) hop, clipped to [0, duration].

Training targets (ActionFormer's label assignment, read from happyharrycn/actionformer_release
libs/modeling/meta_archs.py): a point is positive for an event when it lies inside the
event's centre region (centre +- CENTRE_RADIUS strides, cut to the event; ActionFormer's
radius 1.5; UniAV uses the whole event) and the larger of its two distances lies in the
level's regression range REGRESSION_RANGES (steps); among several such events the shortest
one wins (all within 1e-3 of the shortest share the class target). Losses: sigmoid focal loss
(alpha 0.25, gamma 2) over every real point and class, DIoU loss of the positives' distances;
both divided by the batch's number of positive points, plain (ActionFormer and UniAV keep an
EMA of it per task; the plain count keeps the loss a pure function of its batch, which makes
a resumed run's numbers exactly an uninterrupted one's); regression weight 1.

Decoding (UniAV's post-processing, as the shared docs' dense.md gives it): sigmoid scores of
real points > 0.001, the top 2,000 per level, segments longer than 0.05 steps, then per-class
Gaussian Soft-NMS with the benchmark's sigma and the video's top 100 (trainer/dense_post.soft_nms,
IoU in steps). Padded steps never produce detections.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.model import ModelConfig, TokenHead

N_LEVELS = 6
REGRESSION_RANGES = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))   # steps, ActionFormer's
CENTRE_RADIUS = 1.5
PRIOR = 0.01
ALPHA, GAMMA = 0.25, 2.0
PRE_NMS_SCORE, PRE_NMS_TOP, MIN_STEPS = 0.001, 2000, 0.05
TOP_K = 100          # detections kept per video (UniAV's max_seg_num)


# ----------------------------------------------------------------------------- the head
class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.value = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.value


class Conv(nn.Module):
    """Conv1d (kernel 3, same length) over (B, T, D), zero at padded steps before and after."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.conv = nn.Conv1d(d_in, d_out, 3, padding=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask[:, :, None].to(x.dtype)
        return self.conv((x * m).transpose(1, 2)).transpose(1, 2) * m


class Block(nn.Module):
    """x + ReLU(conv(LayerNorm(x))), zero at padded steps."""

    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.conv = Conv(d, d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return (x + F.relu(self.conv(self.norm(x), mask))) * mask[:, :, None].to(x.dtype)


class Tower(nn.Module):
    """Two conv + LayerNorm + ReLU layers, shared by every level (UniAV's head_num_layers 3 less the last)."""

    def __init__(self, d: int):
        super().__init__()
        self.convs = nn.ModuleList(Conv(d, d) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(2))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, mask)))
        return x


def level_lengths(T: int, levels: int = N_LEVELS) -> list[int]:
    """Points per level for T steps: ceil(T / 2^l) (max-pool kernel 3, stride 2, padding 1)."""
    return [-(-T // 2 ** l) for l in range(levels)]


def make_points(T: int, device: torch.device | None = None, levels: int = N_LEVELS) -> Tensor:
    """(P, 4) float32: grid position (steps), regression range low and high (steps), stride;
    levels one after another (ActionFormer's concatenated points)."""
    parts = []
    for l, n in enumerate(level_lengths(T, levels)):
        s = 2 ** l
        lo, hi = REGRESSION_RANGES[l] if l < len(REGRESSION_RANGES) else (REGRESSION_RANGES[-1][0], 10000)
        pos = torch.arange(n, dtype=torch.float32, device=device) * s
        parts.append(torch.stack([pos, torch.full_like(pos, lo), torch.full_like(pos, hi), torch.full_like(pos, s)], 1))
    return torch.cat(parts)


class Head(nn.Module):
    uses_patches = False

    def __init__(self, cfg: ModelConfig):
        """Initialised from a stream of its own (the run's seed + a constant) inside fork_rng,
        which leaves the global RNG as it was: the heads are built before the encoder, so
        adding this head changes no other module's initial weights (runs of the other
        benchmarks keep their numbers), as trainer/data.py task_seed keeps their batches."""
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((torch.initial_seed() + zlib.crc32(b"dense head")) % 2 ** 63)
            self._build(cfg)

    def _build(self, cfg: ModelConfig) -> None:
        D = cfg.d_model
        self.fuse = nn.Linear(2 * D, D)
        self.fuse_norm = nn.LayerNorm(D)
        self.levels = nn.ModuleList(Block(D) for _ in range(N_LEVELS))
        self.cls_tower, self.reg_tower = Tower(D), Tower(D)
        self.point_proj = Conv(D, D)
        self.text_proj = nn.Linear(cfg.visual_dim, D)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.bias = nn.Parameter(torch.tensor(-math.log((1 - PRIOR) / PRIOR)))
        self.offsets = Conv(D, 2)
        self.scales = nn.ModuleList(Scale() for _ in range(N_LEVELS))

    def forward(self, feats: dict[str, Tensor], tokens: TokenHead, vocab_emb: Tensor,
                valid_ids: Tensor | None = None) -> dict[str, Tensor]:
        """vocab_emb: the class prompts' embeddings (K, visual_dim), every row a class.
        -> cls_logits (B, P, K) and offsets (B, P, 2) float32, point_valid (B, P), points (P, 4)."""
        a, v = feats["audio"], feats["visual"]
        B, T, _ = a.shape
        if "visual_valid" in feats:          # audio-only clips: no picture to fuse
            v = v * feats["visual_valid"][:, None, None].to(v.dtype)
        valid = feats.get("frame_valid")
        if valid is None:
            valid = torch.ones(B, T, dtype=torch.bool, device=a.device)
        x = self.fuse_norm(self.fuse(torch.cat([a, v], dim=-1)))
        text = F.normalize(self.text_proj(vocab_emb.to(x.dtype)).float(), dim=-1)   # (K, D)
        scale = self.logit_scale.exp().clamp(max=100.0)
        logits, offsets, masks = [], [], []
        mask = valid
        for l, block in enumerate(self.levels):
            if l:
                x = F.max_pool1d(x.transpose(1, 2), 3, 2, 1).transpose(1, 2)
                mask = mask[:, ::2]
            x = block(x, mask)
            c = self.point_proj(self.cls_tower(x, mask), mask)
            logits.append(scale * F.normalize(c.float(), dim=-1) @ text.T + self.bias)
            offsets.append(F.relu(self.scales[l](self.offsets(self.reg_tower(x, mask), mask).float())))
            masks.append(mask)
        return {"cls_logits": torch.cat(logits, 1), "offsets": torch.cat(offsets, 1),
                "point_valid": torch.cat(masks, 1), "points": make_points(T, a.device)}


# ----------------------------------------------------------------------------- targets and losses
def to_grid(seconds: Tensor, hop: Tensor) -> Tensor:
    """Seconds -> grid position in steps (the feature of step k sits at (k + 0.5) hop)."""
    return seconds / hop - 0.5


def to_seconds(grid: Tensor, hop: Tensor | float) -> Tensor:
    return (grid + 0.5) * hop


def assign_targets(points: Tensor, segments: Tensor, labels: Tensor, n_classes: int,
                   radius: float = CENTRE_RADIUS) -> tuple[Tensor, Tensor]:
    """ActionFormer's label assignment for a batch. points (P, 4) (make_points); segments
    (B, E, 2) in grid steps, labels (B, E), padding rows NaN / -1. Returns cls (B, P, K) in
    {0, 1} and reg (B, P, 2): distances to the chosen event's start and end in strides."""
    real = (labels >= 0) & torch.isfinite(segments).all(-1)                  # (B, E)
    seg = torch.where(real[..., None], segments, torch.zeros_like(segments)).float()
    pos, lo_range, hi_range, stride = (points[:, i][None, :, None] for i in range(4))   # (1, P, 1)
    start, end = seg[:, None, :, 0], seg[:, None, :, 1]                      # (B, 1, E)
    reg = torch.stack([pos - start, end - pos], -1)                           # (B, P, E, 2)
    centre = 0.5 * (start + end)
    left = pos - torch.maximum(centre - radius * stride, start)
    right = torch.minimum(centre + radius * stride, end) - pos
    inside = torch.minimum(left, right) > 0
    far = reg.amax(-1)
    ok = inside & (far >= lo_range) & (far <= hi_range) & real[:, None, :]
    lens = torch.where(ok, (end - start).expand_as(ok), torch.full_like(far, math.inf))
    shortest, which = lens.min(-1)                                            # (B, P)
    chosen = (lens <= shortest[..., None] + 1e-3) & torch.isfinite(lens)
    onehot = F.one_hot(labels.clamp(min=0).long(), n_classes).float() * real[..., None]   # (B, E, K)
    cls = (chosen.float() @ onehot).clamp(0, 1)
    reg = torch.gather(reg, 2, which[:, :, None, None].expand(-1, -1, 1, 2))[:, :, 0] / points[:, 3][None, :, None]
    return cls, reg


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = ALPHA, gamma: float = GAMMA) -> Tensor:
    """Elementwise (RetinaNet's): alpha_t (1 - p_t)^gamma BCE."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return (alpha * targets + (1 - alpha) * (1 - targets)) * ce * (1 - p_t) ** gamma


def diou_loss(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """1-D Distance-IoU loss of (N, 2) distances (left, right) >= 0 from one point:
    1 - IoU + (centre distance / enclosing length)^2."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - inter
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    return 1 - inter / union.clamp(min=eps) + (rho / enclosing.clamp(min=eps)) ** 2


def batch_targets(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The batch's events (seconds) on the grid of its store's hop, assigned to the points.
    Classes of `holdout` (batch key, (K,) bool, open-set training) are left out."""
    hop = batch["hop"].float()[:, None, None] if "hop" in batch else 1.0
    labels = batch["segment_labels"].long()
    if "holdout" in batch:
        labels = torch.where(batch["holdout"].bool()[labels.clamp(min=0)], -1, labels)
    K = outputs["cls_logits"].shape[-1]
    return assign_targets(outputs["points"], to_grid(batch["segments"].float(), hop), labels, K)


def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """Focal loss over the real points + DIoU of the positives, each / the batch's positives."""
    cls, reg = batch_targets(outputs, batch)
    valid = outputs["point_valid"]
    positive = (cls.sum(-1) > 0) & valid
    n = positive.sum().clamp(min=1).float()
    focal = sigmoid_focal_loss(outputs["cls_logits"][valid], cls[valid]).sum() / n
    if not positive.any():
        return focal + 0 * outputs["offsets"].sum()
    return focal + diou_loss(outputs["offsets"][positive], reg[positive]).sum() / n


# ----------------------------------------------------------------------------- decoding
def candidates(logits: Tensor, offsets: Tensor, valid: Tensor, points: Tensor,
               top: int = PRE_NMS_TOP) -> tuple[Tensor, Tensor, Tensor]:
    """One video's detections before NMS: per level, scores > PRE_NMS_SCORE of real points,
    its top `top`, segments longer than MIN_STEPS. -> segments (N, 2) in steps, scores, labels."""
    K = logits.shape[-1]
    segs, scores, labels = [], [], []
    for s in torch.unique_consecutive(points[:, 3]):
        at = torch.nonzero(points[:, 3] == s)[:, 0]
        prob = (torch.sigmoid(logits[at].float()) * valid[at, None]).flatten()
        keep = torch.nonzero(prob > PRE_NMS_SCORE)[:, 0]
        prob, order = prob[keep].sort(descending=True)
        keep, prob = keep[order[:top]], prob[:top]
        pt, label = at[keep // K], keep % K
        pos, stride = points[pt, 0], points[pt, 3]
        seg = torch.stack([pos - offsets[pt, 0] * stride, pos + offsets[pt, 1] * stride], -1)
        long = seg[:, 1] - seg[:, 0] > MIN_STEPS
        segs.append(seg[long]), scores.append(prob[long]), labels.append(label[long])
    return torch.cat(segs), torch.cat(scores), torch.cat(labels)


def decode(outputs: dict[str, Tensor], batch: dict[str, Tensor], sigma: float,
           top_k: int = TOP_K) -> dict[str, Tensor]:
    """Per video its top_k detections in seconds, padded: det_segment (B, top_k, 2) float32,
    det_score (B, top_k) float32, det_label (B, top_k) int16 (-1 = none)."""
    from trainer.dense_post import soft_nms

    B = outputs["cls_logits"].shape[0]
    hop = batch["hop"].float().cpu() if "hop" in batch else torch.ones(B)
    length = batch["length"].float().cpu()
    duration = batch["duration"].float().cpu() if "duration" in batch else torch.full((B,), math.nan)
    duration = torch.where(torch.isfinite(duration), duration, length * hop)   # unknown: the clip's steps
    seg_out = torch.zeros(B, top_k, 2)
    score_out = torch.zeros(B, top_k)
    label_out = torch.full((B, top_k), -1, dtype=torch.int16)
    points = outputs["points"].cpu()
    for b in range(B):
        segs, scores, labels = candidates(outputs["cls_logits"][b].cpu(), outputs["offsets"][b].float().cpu(),
                                          outputs["point_valid"][b].cpu(), points)
        segs, scores, labels = soft_nms(segs.numpy().astype(np.float64), scores.numpy().astype(np.float64),
                                        labels.numpy().astype(np.int64), sigma, min_score=PRE_NMS_SCORE,
                                        max_per_class=top_k, top_k=top_k)
        n = len(scores)
        seconds = to_seconds(torch.as_tensor(np.asarray(segs), dtype=torch.float32).reshape(-1, 2), hop[b])
        seg_out[b, :n] = seconds.clamp(min=0.0).minimum(duration[b])
        score_out[b, :n] = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
        label_out[b, :n] = torch.as_tensor(np.asarray(labels), dtype=torch.int16)
    return {"det_segment": seg_out, "det_score": score_out, "det_label": label_out}


def make_predict(sigma: float):
    def predict(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return decode(outputs, batch, sigma)
    predict.__doc__ = f"decode with Soft-NMS sigma {sigma}"
    return predict

