"""LLP / AVVP: HAN's multimodal MIL pooling over TPM frame features (weak, video-level labels).

Frame probabilities per modality come from the shared token head (cosine to the 25 class
tokens) plus a per-class bias of this head (a sigmoid needs one; a softmax would not).
Attention over time and over modality pools them into audio, visual and global probabilities.
Padded batches (`frame_valid`): the attention over time is a softmax over the real seconds only.
Loss (HAN): BCE(global, y) + BCE(audio, y) + BCE(visual, 0.9 y + 0.05), probabilities clamped
to [1e-7, 1 - 1e-7]; y is the video-level multi-hot. valid_ids: the 25 tokens in class order.

Open-set (`holdout_classes`): a held-out class's columns are zeroed in training (trainer/tasks/
holdout.py); it is scored through its class token, but this head's per-class bias and attention
weights of that class learn from negatives only. `score` reports every F-score over the seen
and over the unseen class columns beside the official numbers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer import metrics as M
from trainer.model import ModelConfig, TokenHead
from trainer.tasks.holdout import class_groups
from trainer.tasks.spec import FULL, Benchmark, PaperTable, Row, best, joint_row, rows

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


def predict(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return decode(outputs)


def _trivial(ga: np.ndarray, gv: np.ndarray) -> list[np.ndarray]:
    """The input-blind predictors of chance, (N, C, T) each: all off, all on, and the most
    frequent event class of (ga | gv) on everywhere."""
    counts = (ga | gv).sum((0, 2))
    trivial = [np.zeros_like(ga), np.ones_like(ga), np.zeros_like(ga)]
    trivial[2][:, counts.argmax()] = True
    return trivial


def score(preds: dict, fs, chance: bool) -> dict:
    """The official segment- and event-level F-scores. chance: the best of all off, all on, and
    the split's most frequent event class on everywhere (both modalities). per_class:
    segment-level F1 of audio-visual events per class, TP/FP/FN pooled over the split's clips;
    a class neither present nor predicted is left out.

    Open-set runs (`unseen` in preds, trainer/tasks/holdout.py) also get every metric over the
    seen (resp. the unseen) classes alone, "<metric>_seen" / "<metric>_unseen": the official
    computation on the class columns of the group only, over all clips of the split. So a
    clip's F1 is the mean over the group's classes present or predicted in it, and a clip with
    neither scores 1 (the official rule for a clip without events); the predictions are those
    of the full run (HAN's rule on all 25 classes), read at the group's columns. A group
    without a ground-truth event in the split gets no keys. Chance of a group: the same three
    predictors on its columns, the most frequent class being the group's. Because of the
    clips without events of the group, all off scores high on the unseen classes: the bar to
    clear. The full metrics are unchanged."""
    idx = preds["clip_index"]
    ga, gv = fs.read("gt_audio", idx).astype(bool), fs.read("gt_visual", idx).astype(bool)  # (N, C, T)
    pa, pv = M.llp_predict(preds["global_prob"], preds["frame_prob_a"], preds["frame_prob_v"])
    metrics = M.llp_scores(pa, pv, ga, gv)
    out_chance = best(*(M.llp_scores(p, p, ga, gv) for p in _trivial(ga, gv))) if chance else {}
    for suffix, group in class_groups(preds, ga.shape[1], f"llp predictions for {fs.path}").items():
        cols = np.flatnonzero(group)
        a, v = ga[:, cols], gv[:, cols]
        if not (a | v).any():
            continue
        metrics |= {k + suffix: s for k, s in M.llp_scores(pa[:, cols], pv[:, cols], a, v).items()}
        if chance:
            out_chance |= {k + suffix: s for k, s in
                           best(*(M.llp_scores(p, p, a, v) for p in _trivial(a, v))).items()}
    classes = list(fs.attrs.get("classes", [])) or [str(c) for c in range(ga.shape[1])]
    p, g = pa & pv, ga & gv
    tp, fp, fn = ((p & g).sum((0, 2)), (p & ~g).sum((0, 2)), (~p & g).sum((0, 2)))
    per_class = {classes[c]: float(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]))
                 for c in range(len(tp)) if tp[c] + fp[c] + fn[c] > 0}
    return {"n": len(idx), "metrics": metrics, "chance": out_chance, "per_class": per_class}


_KINDS = (("Audio", "audio"), ("Visual", "visual"), ("Audio-Visual", "av"), ("Type@Avg", "type_avg"),
          ("Event@Avg", "event_avg"))
_PAPER = {"segment": (61.6, 66.9, 59.8, 62.8, 61.5), "event": (54.8, 63.0, 52.2, 56.7, 53.9)}
_BASE_KEYS = tuple(f"{level}_{k}" for level in _PAPER for _, k in _KINDS)
_OPEN_SET_NOTE = ("seen / unseen: the F-scores over the class columns trained on / held out of training "
                  "(holdout_classes, scored zero-shot through their class tokens), all clips; the paper "
                  "has no such numbers (–).")
# open-set rows (every key has its _seen / _unseen score; the table shows the headline ones)
_OPEN_SET_ROWS = tuple(Row(f"{group} · {level} Type@Avg", f"{level}_type_avg_{group}", {"": None},
                           note=_OPEN_SET_NOTE if (group, level) == ("seen", "segment") else "", optional=True)
                       for group in ("seen", "unseen") for level in _PAPER)

LLP = Benchmark(
    name="llp", head="llp", targets=("video_labels", "gt_audio", "gt_visual"), losses={FULL: loss},
    predict=predict, pred_keys=("global_prob", "frame_prob_a", "frame_prob_v"), score=score,
    metric_keys=_BASE_KEYS + tuple(f"{k}_{group}" for group in ("seen", "unseen") for k in _BASE_KEYS),
    select="segment_type_avg",   # the official code's choice
    headline=("segment_type_avg", "event_type_avg"), table=PaperTable("I", "LLP / AVVP", 1, 1),
    per_class="per-class segment-level F1 (audio-visual)",
    rows=rows(*((f"{level} · {name}", f"{level}_{k}", p) for level, paper in _PAPER.items()
                for (name, k), p in zip(_KINDS, paper))) + _OPEN_SET_ROWS,
    joint_rows=(joint_row("LLP · segment Type@Avg", "segment_type_avg", 62.2, 62.8),
                joint_row("LLP · segment Event@Avg", "segment_event_avg", 60.9, 61.5),
                joint_row("LLP · event Type@Avg", "event_type_avg", 56.4, 56.7),
                joint_row("LLP · event Event@Avg", "event_event_avg", 53.6, 53.9)))
