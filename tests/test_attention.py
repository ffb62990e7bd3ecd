"""Blocked (banded) windowed attention against the dense masked matrix it replaces on long clips."""

from __future__ import annotations

import pytest
import torch

import trainer.attention as attention
from tests.test_model import assert_fused_matches_naive, build, make_batch, tiny_config
from tests.test_padding import pad_to
from trainer.attention import Band, attention_impl, banded_attention, naive_attention, padding_mask, window_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("T,radius", [(300, 1), (300, 16), (257, 64), (100, 40), (40, 3), (33, 100)])
@pytest.mark.parametrize("padded", [False, True])
def test_band_equals_the_dense_masked_matrix(T, radius, padded):
    """Outputs and q/k/v gradients of the blocked form equal the naive full (T, T) computation
    with the window and padding mask (fp64), at every row: padded queries whose window holds
    only padding take their whole window in both."""
    g = torch.Generator().manual_seed(T + radius)
    q, k, v = (torch.randn(2, 2, T, 8, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    valid = torch.arange(T) < torch.tensor([[T], [max(1, T // 3)]]) if padded else None
    band = Band(T, radius, valid, q.device)
    dense = window_mask(T, 2 * radius, q.device)
    if dense is None:   # the window covers all of T: Band.dense is only for real windows
        dense = torch.ones(T, T, dtype=torch.bool)
    dense = dense if valid is None else padding_mask(valid, dense)
    y_ref = naive_attention(q, k, v, dense)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), (q, k, v))
    y = banded_attention(q, k, v, band)
    grads = torch.autograd.grad(y.square().sum(), (q, k, v))
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    if window_mask(T, 2 * radius, q.device) is not None:
        assert torch.equal(band.dense(), dense)


def test_blocked_mask_grows_linearly():
    """The blocked mask holds T x 3Q entries per sample (rounded up to whole blocks), not T^2."""
    for T in (300, 600, 2400):
        Q, mask = Band(T, 16, None, torch.device("cpu")).blocks(2)
        nb = -(-T // Q)
        assert Q == attention.BLOCK and mask.shape == (2, 1, nb, Q, 3 * Q)
    assert Band(100, 50, None, torch.device("cpu")).blocks(1)[0] == 50   # blocks at least a radius long


@pytest.mark.parametrize("T,banded", [(60, False), (300, True)])
def test_blocked_path_runs_on_long_sequences_only(T, banded, monkeypatch):
    """Fused: a windowed scale runs blocked from BANDED_FROM steps on (dense below: today's
    clips compute what they did); naive: always the dense reference."""
    calls = []
    inner = attention.banded_attention
    monkeypatch.setattr(attention, "banded_attention", lambda *a, **k: calls.append(1) or inner(*a, **k))
    model = build(tiny_config(T=T)).eval()
    with torch.no_grad():
        model.tpm(torch.randn(1, T, 32), torch.randn(1, T, 32))
        assert (len(calls) > 0) == banded
        n = len(calls)
        with attention_impl("naive"):
            model.tpm(torch.randn(1, T, 32), torch.randn(1, T, 32))
        assert len(calls) == n


@pytest.mark.parametrize("variant", ["ave", "llp"])
def test_long_padded_clips_fused_blocked_matches_naive_dense(variant):
    """A model whose windows run blocked (300 steps, a 120-step clip padded with junk beside a
    full one) gives the outputs and gradients of the naive dense masked computation."""
    batch = pad_to(make_batch(variant, T=300, b=2, seed=1), 300, [120, 300], seed=2)
    model = build(tiny_config(T=300, max_window=64))
    assert_fused_matches_naive(model, variant, batch, 10, rtol=1e-4, atol=1e-5)


def test_blocks_shorter_than_banded_from_match_too(monkeypatch):
    """The blocked path forced on short clips (BANDED_FROM = 0) agrees with the dense one."""
    monkeypatch.setattr(attention, "BANDED_FROM", 0)
    batch = pad_to(make_batch("ave", T=10, b=2), 16, [4, 10], seed=3)
    assert_fused_matches_naive(build(tiny_config(T=60)), "ave", batch, 10, rtol=1e-5, atol=1e-5)


def test_blocked_path_under_bf16_autocast():
    model = build(tiny_config(T=300, max_window=64)).eval()
    batch = pad_to(make_batch("llp", T=300, b=2, seed=1), 300, [120, 300], seed=2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model.encode(batch, spatial=False)
        with attention_impl("naive"):
            naive = model.encode(batch, spatial=False)
    assert ref["audio"].dtype == torch.bfloat16 and torch.isfinite(ref["audio"].float()).all()
    torch.testing.assert_close(ref["audio"][:, :120].float(), naive["audio"][:, :120].float(), rtol=0.05, atol=0.05)
