"""AVE: one token per segment, 28 event classes + background (index 28), per-segment CE.

valid_ids: the 29 token ids in class order, background last; `labels` (B, T) are positions in it.
Padded batches (`frame_valid`): the CE is the mean over the real segments.

Weakly supervised (`weak_loss`, the paper's Table II second column): trained from the clip's
`video_label` () alone, scored per segment like a full run (same Head and decode). As in the
AVE authors' weakly-supervised code (W-A+V-att, YapengTian/AVE-ECCV18): multiple-instance
learning with max pooling, each of the 29 class logits pooled over the clip's real segments,
then a softmax over the classes against the video-level class.
- Loss: CE of the pooled logits. The official code applies MultiLabelSoftMarginLoss (a sigmoid
  per class) to the softmax of the pooled scores, i.e. treats probabilities as logits (a
  probability of 1 scores sigmoid(1) = 0.73, never the target 1); with a one-hot target and a
  softmax over classes, CE is the likelihood that softmax defines.
- Background: an event clip's label says nothing about which of its segments are background
  (its pooled target only pushes its largest background logit down). The official approach
  adds background-only videos to training, labelled background (video_label = 28): negative
  bags, the only source of positive background evidence. A segment is then predicted
  background when it looks like those clips more than like any event. Without such clips in
  the training set the background logit is only ever pushed down, and a weak run (practically)
  never predicts background. Inside an event clip, max pooling gives a background segment no
  signal of its own: it is background only as far as it resembles the background-only clips
  (on the toy of tests/test_ave_weak.py, 19% of them were, against 97% of the segments of
  background-only clips and all event segments).

Open-set (`holdout_classes`): a held-out class's segments and clip label are background in
training (trainer/tasks/holdout.py), so its token is only ever a negative of the softmax;
it is scored through its class token like any other, and `score` reports the accuracy over
the seen and over the unseen classes' segments beside the official number.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.model import ModelConfig, TokenHead
from trainer.metrics import ave_accuracy
from trainer.tasks.holdout import class_groups
from trainer.tasks.spec import FULL, WEAK, Benchmark, PaperTable, Row, joint_row, rows

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


def weak_loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """Weakly supervised: CE of the class logits max-pooled over the real segments against
    `video_label` (B,) (0-27 the event, 28 a background-only clip). Reads no segment labels."""
    logits = outputs["class_logits"].float()  # (B, T, 29)
    if "frame_valid" in outputs:
        logits = logits.masked_fill(~outputs["frame_valid"][:, :, None], float("-inf"))
    return F.cross_entropy(logits.amax(1), batch["video_label"].long())


def decode(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """labels (B, T): class index per segment (28 = background)."""
    return {"labels": outputs["class_logits"].argmax(-1)}


def predict(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {"labels": decode(outputs)["labels"].to(torch.int16)}


def score(preds: dict, fs, chance: bool) -> dict:
    """Accuracy over every segment of the split (official); chance: the split's majority label.

    Open-set runs (`unseen` in preds, trainer/tasks/holdout.py) also get "accuracy_seen" and
    "accuracy_unseen": the accuracy over the segments whose ground truth is a seen (resp. an
    unseen) class, the prediction still the argmax over all 29 classes (generalised zero-shot:
    an unseen segment counts only where the held-out class beats every seen one and
    background). Background is never held out, so its segments are seen ones. A group without
    segments in the split gets no key. Chance of a group: the same input-blind predictor, one
    label everywhere, that label the group's majority (the best constant for that metric, as
    the split's majority is for the full accuracy). The full accuracy is unchanged."""
    gt = fs.read("labels", preds["clip_index"]).astype(np.int64)
    pred = np.asarray(preds["labels"])
    majority = np.bincount(gt.ravel()).argmax()
    metrics = {"accuracy": ave_accuracy(pred, gt)}
    base = {"accuracy": ave_accuracy(np.full_like(gt, majority), gt)}
    for suffix, group in class_groups(preds, N_CLASSES, f"ave predictions for {fs.path}").items():
        on = group[gt]                                   # (N, T): the segments of the group
        if not on.any():
            continue
        g = gt[on]
        metrics["accuracy" + suffix] = ave_accuracy(pred[on], g)
        base["accuracy" + suffix] = ave_accuracy(np.full_like(g, np.bincount(g).argmax()), g)
    return {"n": len(gt), "metrics": metrics, "chance": base, "per_class": {}}


def open_set_rows(label: str, supervision: str, note: str = "") -> tuple[Row, ...]:
    """Seen / unseen accuracy of an open-set run, shown only where some run has them."""
    return tuple(Row(f"{label} · {group}", f"accuracy_{group}", {"": None}, supervision,
                     note if group == "seen" else "", optional=True) for group in ("seen", "unseen"))


OPEN_SET_NOTE = ("seen / unseen: accuracy over the segments whose ground truth is a class trained on "
                 "(background included) / a class held out of training (holdout_classes, scored zero-shot "
                 "through its class token); the paper has no such numbers (–).")


AVE = Benchmark(
    name="ave", head="ave", targets=("labels", "video_label"), losses={FULL: loss, WEAK: weak_loss},
    predict=predict, pred_keys=("labels",), score=score, select="accuracy",
    metric_keys=("accuracy", "accuracy_seen", "accuracy_unseen"),
    headline=("accuracy",), table=PaperTable("II", "AVE", 1, 2),
    rows=rows(("fully-supervised", "accuracy", 78.7), supervision=FULL)
    + rows(("weakly-supervised", "accuracy", 74.2), supervision=WEAK)
    + open_set_rows("fully-supervised", FULL, OPEN_SET_NOTE) + open_set_rows("weakly-supervised", WEAK, OPEN_SET_NOTE),
    joint_rows=(joint_row("AVE · fully", "accuracy", 77.4, 78.7, FULL),
                joint_row("AVE · weakly", "accuracy", 73.5, 74.2, WEAK)))
