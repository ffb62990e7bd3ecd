"""Audio-only clips (`visual_valid` False): their visual rows reach no other token."""

from __future__ import annotations

import pytest
import torch

from tests.test_model import VARIANTS, assert_fused_matches_naive, build, make_batch, run, tiny_config
from tests.test_padding import all_finite, pad_to
from trainer.attention import attention_impl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# VGG-SS's unimodal stream, its heatmap and contrastive loss: the pictures themselves
READS_RAW_PATCHES = {"patches_visual", "patch_emb", "heatmap"}
VISUAL_VALID = torch.tensor([True, False, False])


def junk_pictures(batch: dict, rows: slice, seed: int) -> dict:
    """The batch with other random visual and patch rows for the samples in `rows`."""
    g = torch.Generator().manual_seed(seed)
    out = dict(batch)
    for k in ("visual", "patches"):
        if k in batch:
            x = batch[k].clone()
            x[rows] = 5 * torch.randn(x[rows].shape, generator=g) - 2
            out[k] = x
    return out


@pytest.mark.parametrize("impl", ["fused", "naive"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_audio_only_outputs_do_not_depend_on_the_visual_rows(variant, impl):
    """Samples 1 and 2 have no picture (one of them padded): any visual rows give them the same
    features and head outputs (bit for bit), the gated visual features and patches are 0, and
    sample 0 (with a picture) is untouched by the others."""
    model = build(tiny_config(T=60)).eval()
    batch = {**pad_to(make_batch(variant, T=8, b=3, seed=2), 8, [8, 8, 5], seed=3), "visual_valid": VISUAL_VALID}
    with torch.no_grad(), attention_impl(impl):
        out, loss = run(model, variant, batch)
        other, other_loss = run(model, variant, junk_pictures(batch, slice(1, 3), seed=4))
    assert all_finite(out) and torch.isfinite(loss)
    assert out["visual_valid"].tolist() == VISUAL_VALID.tolist()
    for k in out:
        if k not in READS_RAW_PATCHES:
            assert torch.equal(out[k], other[k]), k
    assert torch.equal(loss, other_loss) or variant == "vggss"
    assert (out["visual"][1:] == 0).all() and (out["visual"][0] != 0).any()
    if "patches" in out:
        assert (out["patches"][1:] == 0).all()


@pytest.mark.parametrize("variant", ["ave", "llp", "avss", "avqa"])
def test_no_gradient_reaches_missing_pictures(variant):
    """The loss's gradient with respect to the visual rows of an audio-only sample is 0 (and
    not 0 for the sample with a picture)."""
    model = build(tiny_config(T=60))
    batch = {**make_batch(variant, T=6, b=3), "visual_valid": VISUAL_VALID, "length": torch.tensor([6, 6, 4])}
    batch["visual"] = batch["visual"].requires_grad_()
    _, loss = run(model, variant, batch)
    loss.backward()
    grad = batch["visual"].grad
    assert (grad[1:] == 0).all() and grad[0].abs().sum() > 0


def test_visual_valid_everywhere_is_the_batch_without_it():
    model = build(tiny_config(T=60)).eval()
    batch = make_batch("avqa", T=6)
    with torch.no_grad():
        plain, _ = run(model, "avqa", batch)
        marked, _ = run(model, "avqa", {**batch, "visual_valid": torch.ones(3, dtype=torch.bool)})
    assert all(torch.equal(plain[k], marked[k]) for k in plain)


def test_questions_of_an_audio_only_clip():
    """clip_rows: the clip is audio-only for each of its questions (TPM and SPM per clip)."""
    model = build(tiny_config(T=60)).eval()
    clips = make_batch("avqa", T=6, b=2, seed=5)
    questions = make_batch("avqa", T=6, b=4, seed=6)
    rows = torch.tensor([1, 0, 1, 0])
    batch = {**{k: clips[k] for k in ("audio", "visual", "patches")}, "prompt": questions["prompt"],
             "answer": questions["answer"], "clip_rows": rows, "visual_valid": rows == 0,
             "length": torch.full((4,), 6)}
    with torch.no_grad():
        out, _ = run(model, "avqa", batch)
        other, _ = run(model, "avqa", junk_pictures(batch, slice(1, 2), seed=7))   # clip 1: audio only
        alone, _ = run(model, "avqa", {**batch, **{k: clips[k][rows] for k in ("audio", "visual", "patches")},
                                       "clip_rows": None})
    assert torch.equal(out["class_logits"], other["class_logits"])
    torch.testing.assert_close(out["class_logits"], alone["class_logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["ave", "avqa"])
def test_fused_matches_naive_with_audio_only_clips(variant):
    batch = {**pad_to(make_batch(variant, T=12, b=3), 12, [4, 10, 12], seed=2), "visual_valid": VISUAL_VALID}
    assert_fused_matches_naive(build(tiny_config(T=60)), variant, batch, 10, rtol=1e-5, atol=1e-5)


def test_all_audio_only_and_padded_is_finite():
    model = build(tiny_config(T=60)).eval()
    with torch.no_grad():
        for variant in VARIANTS:
            batch = {**pad_to(make_batch(variant, T=4, b=2), 60, [4, 1], seed=1), "visual_valid": torch.zeros(2, dtype=torch.bool)}
            out, loss = run(model, variant, batch)
            assert all_finite(out) and torch.isfinite(loss), variant
