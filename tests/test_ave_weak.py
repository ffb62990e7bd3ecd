"""Weakly supervised AVE (trainer/tasks/ave.weak_loss): MIL max pooling over the real segments,
CE against the video-level class; the segment labels are never read."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_model import D_CLIP, M, build, tiny_config, vocab
from trainer.tasks import ave

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKGROUND = 28


def reference(logits: torch.Tensor, video_label: torch.Tensor, length: list[int]) -> float:
    """Per clip: each class's largest logit over its first `length` segments, then
    -log softmax at the video's class; the mean over clips. Loops, in float64."""
    total = 0.0
    for b, L in enumerate(length):
        pooled = [max(float(logits[b, t, k]) for t in range(L)) for k in range(logits.shape[2])]
        top = max(pooled)
        log_z = top + math.log(sum(math.exp(p - top) for p in pooled))
        total += log_z - pooled[int(video_label[b])]
    return total / len(length)


def test_weak_loss_matches_the_reference():
    g = torch.Generator().manual_seed(0)
    logits = 5 * torch.randn(3, 6, ave.N_CLASSES, generator=g)
    logits[1, 3:] += 100.0   # padded segments that would win every max if they were read
    logits[2, 1:] += 100.0
    video_label = torch.tensor([4, BACKGROUND, 0], dtype=torch.int16)   # the store's dtype
    length = [6, 3, 1]
    valid = torch.arange(6) < torch.tensor(length)[:, None]
    got = ave.weak_loss({"class_logits": logits, "frame_valid": valid}, {"video_label": video_label})
    assert got.item() == pytest.approx(reference(logits, video_label, length), rel=1e-5)
    unpadded = ave.weak_loss({"class_logits": logits}, {"video_label": video_label})   # every segment
    assert unpadded.item() == pytest.approx(reference(logits, video_label, [6, 6, 6]), rel=1e-5)


class Recording(dict):
    """A batch that records which keys are read."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


def test_weak_loss_reads_only_the_video_label():
    model = build(tiny_config())
    g = torch.Generator().manual_seed(1)
    batch = {"audio": torch.randn(2, 5, 128, generator=g), "visual": torch.randn(2, 5, D_CLIP, generator=g),
             "patches": torch.randn(2, 5, M, D_CLIP, generator=g), "prompt": torch.randn(2, D_CLIP, generator=g),
             "length": torch.tensor([5, 3])}
    out = model(batch, "ave", vocab(), torch.arange(ave.N_CLASSES))
    targets = Recording(video_label=torch.tensor([3, BACKGROUND]))   # no `labels`
    loss = ave.weak_loss(out, targets)
    loss.backward()
    assert targets.read == {"video_label"} and torch.isfinite(loss)


def toy(n: int, seed: int, patterns: tuple[torch.Tensor, torch.Tensor], T: int = 6) -> tuple[dict, torch.Tensor]:
    """Clips of classes 0-3 whose event segments (a run of >= 2) carry the class's audio and
    visual pattern over noise, the rest noise; a quarter are background-only (label 28).
    Returns the batch (video-level labels only) and the dense segment labels."""
    g = torch.Generator().manual_seed(seed)
    pa, pv = patterns
    label = torch.randint(0, 4, (n,), generator=g)
    label[torch.rand(n, generator=g) < 0.25] = BACKGROUND
    dense = torch.full((n, T), BACKGROUND)
    for i in range(n):
        if label[i] != BACKGROUND:
            start = int(torch.randint(0, T - 1, (1,), generator=g))
            end = int(torch.randint(start + 2, T + 1, (1,), generator=g))
            dense[i, start:end] = label[i]
    event = (dense != BACKGROUND).float()[..., None]
    cls = dense.clamp(max=3)
    batch = {"audio": torch.randn(n, T, 128, generator=g) + 2 * event * pa[cls],
             "visual": torch.randn(n, T, D_CLIP, generator=g) + 2 * event * pv[cls],
             "patches": torch.randn(n, T, M, D_CLIP, generator=g) + event[..., None] * pv[cls][:, :, None],
             "prompt": torch.ones(n, D_CLIP), "video_label": label}
    return batch, dense


def test_weak_training_reduces_the_loss_and_localises():
    """200 steps of 8 of 64 toy clips: the loss falls by 10x; on 64 new clips the event segments get
    their class and background-only clips background (what the negative bags teach). Inside an
    event clip, background segments are not expected to be found: max pooling gives them no
    signal (ave.py's docstring)."""
    g = torch.Generator().manual_seed(99)
    patterns = (torch.randn(4, 128, generator=g), torch.randn(4, D_CLIP, generator=g))
    train, _ = toy(64, 0, patterns)
    test, dense = toy(64, 1, patterns)
    model = build(tiny_config(T=6))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    voc, ids = vocab(), torch.arange(ave.N_CLASSES)
    losses = []
    for step in range(200):
        idx = torch.arange(step * 8, step * 8 + 8) % 64
        batch = {k: v[idx] for k, v in train.items()}
        loss = ave.weak_loss(model(batch, "ave", voc, ids), batch)
        losses.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert sum(losses[-10:]) / 10 < 0.1 * losses[0], (losses[0], losses[-10:])
    model.eval()
    with torch.no_grad():
        pred = ave.decode(model(test, "ave", voc, ids))["labels"]
    event = dense != BACKGROUND
    background_clip = (test["video_label"] == BACKGROUND)[:, None].expand_as(dense)
    assert (pred == dense)[event].float().mean() > 0.9
    assert (pred == dense)[background_clip].float().mean() > 0.6
