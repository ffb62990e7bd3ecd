"""AVSBench: a small mask decoder over the SPM patch grid (paper Fig. 3), upsampled to masks.

S4 / MS3 (mode "binary"): one logit per pixel, BCE. AVSS (mode "classes"; valid_ids = the 71
class tokens, background first): pixel embeddings scored by cosine against the class tokens' embeddings
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

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer import metrics as M
from trainer.model import ModelConfig, TokenHead
from trainer.tasks.spec import FULL, Benchmark, PaperTable, best, joint_row, rows


MODES = ("binary", "classes")   # S4 / MS3: sounding or not; AVSS: a class per pixel


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
                valid_ids: Tensor | None = None, mode: str = "binary") -> dict[str, Tensor]:
        if mode not in MODES:
            raise ValueError(f"AVS head mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "classes" and valid_ids is None:
            raise ValueError("AVS head mode 'classes' needs the class tokens (valid_ids)")
        p, a = feats["patches"], feats["spm_audio"]  # (B, T, M, D), (B, T, D)
        B, T, M, D = p.shape
        g = self.grid
        assert M == g * g, f"{M} patches do not match the configured {g}x{g} grid"
        x = p.reshape(B * T, g, g, D).permute(0, 3, 1, 2)  # (BT, D, g, g)
        x = self.up(self.patch(x) + self.audio(a).reshape(B * T, -1, 1, 1))  # (BT, c, 4g, 4g)
        if mode == "binary":
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


# ----------------------------------------------------------------------------- the benchmarks
def predict_binary(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """mask_logits (N, T, 4g, 4g) at the head's own resolution: scoring upsamples them to the
    mask size exactly as decode does (bilinear), so the file stays small and the numbers are
    those of full-size logits."""
    return {"mask_logits": outputs["mask_logits"][:, :, 0]}


def predict_classes(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """mask_classes (N, T, S, S) uint8 at the ground truth's size (the argmax must follow the upsampling)."""
    return {"mask_classes": decode(outputs, size=batch["masks"].shape[-1])["mask_classes"].to(torch.uint8)}


CHUNK = 16  # videos scored at a time (bounds memory)


def upsample_logits(logits: np.ndarray, size: int) -> Tensor:
    """(n, T, h, w) -> (n, T, size, size) by decode, which also sets the dtype (float32;
    float64 logits stay float64, as the metrics score in the logits' dtype)."""
    x = torch.from_numpy(np.ascontiguousarray(logits))
    return decode({"mask_logits": x[:, :, None]}, size=size)["mask_logits"]


def score_binary(preds: dict, fs, chance: bool) -> dict:
    """AVSBench's mIoU and F-score per video, averaged. Videos without any valid (annotated)
    frame are left out (counted in "skipped"). chance: the best of all on and all off."""
    idx, logits = preds["clip_index"], preds["mask_logits"]
    names = ("model", "all on", "all off") if chance else ("model",)
    parts = {name: ([], []) for name in names}   # per-video mIoU, F
    skipped = 0
    for i in range(0, len(idx), CHUNK):
        valid = fs.read("mask_valid", idx[i:i + CHUNK]).astype(bool)
        keep = valid.any(1)
        skipped += int((~keep).sum())
        if not keep.any():
            continue
        gt = torch.from_numpy(fs.read("masks", idx[i:i + CHUNK])[keep])
        valid = torch.from_numpy(valid[keep])
        up = upsample_logits(logits[i:i + CHUNK][keep], gt.shape[-1])
        trivial = {"model": up, "all on": torch.full_like(up, 20.0), "all off": torch.full_like(up, -20.0)}
        for name in names:
            x = trivial[name]
            parts[name][0].append(M.avs_miou(x, gt, valid))
            parts[name][1].append(M.avs_fscore(x, gt, valid))
    mean = lambda xs: float(np.concatenate(xs).mean()) if xs else 0.0  # noqa: E731
    summary = {name: {"miou": mean(m), "fscore": mean(f)} for name, (m, f) in parts.items()}
    return {"n": len(idx) - skipped, "skipped": skipped, "metrics": summary["model"],
            "chance": best(summary["all on"], summary["all off"]) if chance else {}, "per_class": {}}


def score_classes(preds: dict, fs, chance: bool) -> dict:
    """AVSS mIoU and F-score over all T frames, padded ones too (official). chance: the best of
    all background and all the split's most frequent object class; ceiling: the ground truth
    itself (the mean runs over all 71 classes, so a split holding few of them cannot score near 1)."""
    idx, pred = preds["clip_index"], preds["mask_classes"]
    K = M.AVSS_NUM_CLASSES
    chunks = [slice(i, i + CHUNK) for i in range(0, len(idx), CHUNK)]
    top = 0
    if chance:
        area = sum(np.bincount(fs.read("masks", idx[c]).ravel(), minlength=K)[:K] for c in chunks)
        top = int(np.argmax(area[1:])) + 1                  # the split's most frequent object class
    names = ("model", "background", "top", "oracle") if chance else ("model",)
    sums = {name: [np.zeros(K), np.zeros(K), np.zeros(K)] for name in names}
    for c in chunks:
        gt = fs.read("masks", idx[c])
        if gt.shape[-2:] != pred.shape[-2:]:
            raise ValueError(f"avss predictions are {pred.shape[-2:]}, the ground truth {gt.shape[-2:]}")
        gt = gt.reshape(-1, *gt.shape[-2:])
        trivial = {"model": pred[c].reshape(gt.shape), "background": np.zeros_like(gt), "top": np.full_like(gt, top),
                   "oracle": gt}
        for name in names:
            for total, x in zip(sums[name], M.avss_class_sums(trivial[name], gt)):
                total += x
    scores = {name: M.avss_from_sums(*s) for name, s in sums.items()}
    return {"n": len(idx), "metrics": scores["model"], "per_class": {},
            "chance": best(scores["background"], scores["top"]) if chance else {},
            "ceiling": scores["oracle"] if chance else {}}


AVSBENCH = PaperTable("V", "AVSBench", 1, 5)
_MASKS = ("masks", "mask_valid", "length")   # length: the head predicts background past it
_BINARY = dict(head="avs", targets=_MASKS, losses={FULL: loss}, predict=predict_binary, pred_keys=("mask_logits",),
               score=score_binary, metric_keys=("miou", "fscore"), select="miou", headline=("miou", "fscore"),
               table=AVSBENCH, class_tokens=False, head_options={"mode": "binary"}, figure="binary",
               figure_array="mask_logits", demo_weight=2)
S4 = Benchmark(name="avs-s4", rows=rows(("S4 · mIoU", "miou", 83.2), ("S4 · F-score", "fscore", 87.1)),
               joint_rows=(joint_row("S4 · mIoU", "miou", 82.40, 83.20),
                           joint_row("S4 · F-score", "fscore", 89.00, 87.10)), **_BINARY)
MS3 = Benchmark(name="avs-ms3", rows=rows(("MS3 · mIoU", "miou", 59.5), ("MS3 · F-score", "fscore", 69.3)),
                joint_rows=(joint_row("MS3 · mIoU", "miou", 59.30, 59.50),
                            joint_row("MS3 · F-score", "fscore", 68.40, 69.30)), **_BINARY)
AVSS = Benchmark(
    name="avss", head="avs", targets=_MASKS, losses={FULL: loss}, predict=predict_classes,
    pred_keys=("mask_classes",), score=score_classes, metric_keys=("miou", "fscore"), select="miou",
    headline=("miou", "fscore"), table=AVSBENCH,
    rows=rows(("AVSS · mIoU", "miou", 37.4), ("AVSS · F-score", "fscore", 41.9)),
    joint_rows=(joint_row("AVSS · mIoU", "miou", 37.10, 43.10, note="The paper's joint AVSS mIoU is 43.10 in "
                          "Table VI but 37.4 in Table V; both are shown as printed."),
                joint_row("AVSS · F-score", "fscore", 37.40, 41.90)),
    head_options={"mode": "classes"}, figure="classes", figure_array="mask_classes", compress=True,
    demo_weight=3)
