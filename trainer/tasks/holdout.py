"""Open-set training: classes held out of the training targets (TrainConfig.holdout_classes).

    hidden = holdout_mask(cfg.holdout_classes, store.classes, task, cfg.seed)   # (K,) bool or None
    batch = hide_classes(batch, hidden)      # training batches only

The setting is a fraction in (0, 1) (that share of each benchmark's classes, drawn with the
run's seed and the benchmark's name, background never) or a list of class names (held out of
every benchmark that has them, names compared as the vocabulary does: case, `_ - ,` ignored).
It applies to the benchmarks whose targets name classes of the vocabulary (the dense three,
AVE, LLP): events of a held-out class become background (dense: their segments are dropped;
AVE: their segments and clip label become background; LLP: their columns are zeroed), so the
class is never a positive. Evaluation scores every class as before: a held-out class only
through its prompt (or token) embedding, zero-shot; the predictions of an open-set run carry
`unseen` (trainer/evaluate.py) and each of these benchmarks also reports its metrics for the
seen and the unseen classes apart (keys "<metric>_seen", "<metric>_unseen", chance too; what
a group's score means is in the benchmark's file). The full metrics stay the official ones.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.vocab import key

CLASS_TARGETS = ("segment_labels", "labels", "video_label", "video_labels", "gt_audio", "gt_visual")
BACKGROUND = "background"


def supports(targets: tuple[str, ...]) -> bool:
    """Whether a benchmark with these targets can hold classes out."""
    return any(t in CLASS_TARGETS for t in targets)


def holdout_mask(setting, classes: list[str], task: str, seed: int) -> np.ndarray | None:
    """(K,) bool, True for the task's held-out classes; None when nothing is held out."""
    from trainer.data import task_seed

    if setting in (None, 0, 0.0, "", [], ()):
        return None
    K = len(classes)
    candidates = np.array([i for i, c in enumerate(classes) if key(c) != BACKGROUND])
    mask = np.zeros(K, bool)
    if isinstance(setting, (int, float)) and not isinstance(setting, bool):
        if not 0 < setting < 1:
            raise ValueError(f"holdout_classes: a fraction must lie in (0, 1), got {setting!r}")
        n = int(round(setting * len(candidates)))
        rng = np.random.default_rng([seed, task_seed(task)])
        mask[rng.choice(candidates, size=n, replace=False)] = True
    else:
        names = [setting] if isinstance(setting, str) else list(setting)
        wanted = {key(str(n)) for n in names}
        for i in candidates:
            mask[i] = key(classes[i]) in wanted
    return mask if mask.any() else None


def unknown_names(setting, classes_of: dict[str, list[str]]) -> list[str]:
    """Names of a list setting that no benchmark of the run has (a typo fails before training)."""
    if isinstance(setting, (int, float)) or not setting:
        return []
    names = [setting] if isinstance(setting, str) else list(setting)
    known = {key(c) for classes in classes_of.values() for c in classes}
    return [n for n in names if key(str(n)) not in known]


SEEN, UNSEEN = "_seen", "_unseen"


def class_groups(preds: dict, n_classes: int, where: str = "predictions") -> dict[str, np.ndarray]:
    """{"_seen": (K,) bool, "_unseen": (K,) bool} from the predictions' `unseen` (an open-set
    run's); {} without it, so a benchmark scores exactly as without holdout. `where` names the
    predictions in the error a mask of the wrong length raises."""
    if "unseen" not in preds:
        return {}
    unseen = np.asarray(preds["unseen"])
    if unseen.shape != (n_classes,):
        raise ValueError(f"{where}: `unseen` has shape {unseen.shape}; the benchmark has {n_classes} classes")
    unseen = unseen.astype(bool)
    return {SEEN: ~unseen, UNSEEN: unseen}


def hide_classes(batch: dict, hidden: np.ndarray, background: int | None = None) -> dict:
    """The batch with the hidden classes taken out of its class targets (module docstring).
    background: the class index held-out AVE labels become (default: the last class)."""
    out = dict(batch)
    mask = torch.as_tensor(hidden, dtype=torch.bool)
    if "segment_labels" in out:                     # dense: the loss drops their events
        out["holdout"] = mask.to(out["segment_labels"].device)
    bg = len(hidden) - 1 if background is None else background
    for name in ("labels", "video_label"):          # AVE: class indices, background last
        if name in out:
            x = out[name]
            out[name] = torch.where(mask.to(x.device)[x.long().clamp(min=0)], torch.full_like(x, bg), x)
    if "video_labels" in out:                       # LLP: multi-hot (B, C); gt_* (B, C, T)
        for name in ("video_labels", "gt_audio", "gt_visual"):
            if name in out:
                x = out[name]
                keep = (~mask).to(x.device).view(1, -1, *([1] * (x.dim() - 2)))
                out[name] = x * keep.to(x.dtype)
    return out
