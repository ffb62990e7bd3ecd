"""Padded batches (`length`): a clip's outputs on its real seconds do not depend on its padding.

The reference is the clip cut to its real seconds, run without `length`. Padding is random junk
(not zeros), so any attention or pooling that reads a padded second shows. The TPM scales are
those built for T = 60 (2 ... 32, 0) while the real clips are 4 and 10 s.
"""

from __future__ import annotations

import pytest
import torch

from tests.test_model import VARIANTS, assert_fused_matches_naive, build, make_batch, run, tiny_config
from trainer.attention import attend, attention_impl, naive_attention, padding_mask, window_mask
from trainer.model import prompt_gate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FEATURES = ("audio", "visual", "patches")
PER_SECOND = FEATURES + ("labels", "masks", "mask_valid")
FEAT_TIME = ("audio", "visual", "spm_audio", "patches", "audio_in", "patches_visual")
HEAD_TIME = {"ave": ("class_logits", "token_logits"), "llp": ("frame_prob",), "s4": ("mask_logits",),
             "avss": ("mask_logits",)}
TOL = dict(rtol=1e-5, atol=1e-5)
LOGIT_TOL = dict(rtol=1e-5, atol=1e-4)   # cosine x the logit scale (10): 1e-5 of the cosine


def pad_to(batch: dict, P: int, length: list[int], seed: int) -> dict:
    """Sample i keeps its first length[i] seconds of features and targets; the rest, up to P
    seconds, is junk (mask_valid: False). Adds `length`."""
    g = torch.Generator().manual_seed(seed)
    out = {**batch, "length": torch.tensor(length, dtype=torch.int16)}   # the store's dtype
    for k in PER_SECOND:
        if k not in batch:
            continue
        v = batch[k]
        shape = (v.shape[0], P) + tuple(v.shape[2:])
        if k in FEATURES:
            x = 3 * torch.randn(shape, generator=g) + 1
        elif k == "mask_valid":
            x = torch.zeros(shape, dtype=v.dtype)
        else:
            x = torch.randint(0, 2 if v.dtype.is_floating_point else 29, shape, generator=g).to(v.dtype)
        for i, L in enumerate(length):
            x[i, :L] = v[i, :L]
        out[k] = x
    return out


def all_finite(out: dict) -> bool:
    """Every output finite, token_logits apart (-inf outside valid_ids by design)."""
    return all(torch.isfinite(v.float()).all() for k, v in out.items() if k != "token_logits")


def cut(batch: dict, i: int, L: int) -> dict:
    """Sample i alone, its first L seconds, no `length`."""
    return {k: v[i:i + 1, :L] if k in PER_SECOND else v[i:i + 1]
            for k, v in batch.items()}


def assert_same_on_real(variant: str, out: dict, ref: dict, i: int, L: int) -> None:
    """Row i of `out` (padded) against the row of `ref` (the clip cut to L seconds)."""
    assert set(out) == set(ref) | {"frame_valid"}
    assert out["frame_valid"][i].tolist() == [t < L for t in range(out["frame_valid"].shape[1])]
    timed = FEAT_TIME + HEAD_TIME.get(variant, ())
    for k, r in ref.items():
        o = out[k][i:i + 1]
        if k in timed:
            o = o[:, :L]
        torch.testing.assert_close(o, r, **(LOGIT_TOL if k.endswith("logits") else TOL), msg=f"{variant} {k}")


@pytest.mark.parametrize("impl", ["fused", "naive"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_real_seconds_do_not_depend_on_padding(variant, impl):
    """Two 4 s clips padded with junk to 10 s and to 60 s give, on their 4 real seconds, every
    feature, head output and the loss of the two clips cut to 4 s."""
    model = build(tiny_config(T=60)).eval()
    batch = make_batch(variant, T=4, b=2, seed=3)
    with torch.no_grad(), attention_impl(impl):
        ref = [run(model, variant, cut(batch, i, 4))[0] for i in range(2)]
        _, ref_loss = run(model, variant, batch)
        for P in (10, 60):
            out, loss = run(model, variant, pad_to(batch, P, [4, 4], seed=P))
            for i in range(2):
                assert_same_on_real(variant, out, ref[i], i, 4)
            torch.testing.assert_close(loss, ref_loss, **TOL, msg=f"{variant} loss, padded to {P}")
            assert all_finite(out), "padded positions must be finite"


@pytest.mark.parametrize("impl", ["fused", "naive"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_batch_gives_each_clip_what_it_gives_alone(variant, impl):
    model = build(tiny_config(T=60)).eval()
    batch = make_batch(variant, T=10, b=2, seed=4)
    with torch.no_grad(), attention_impl(impl):
        ref = [run(model, variant, cut(batch, i, L))[0] for i, L in enumerate([4, 10])]
        for P in (10, 60):
            out, _ = run(model, variant, pad_to(batch, P, [4, 10], seed=P + 1))
            for i, L in enumerate([4, 10]):
                assert_same_on_real(variant, out, ref[i], i, L)


def test_questions_of_padded_clips_share_the_backbone():
    """`clip_rows` with `length` per sample (MUSIC-AVQA): TPM runs once per clip on that clip's
    real seconds; each question gets what its clip cut to its length gives alone."""
    model = build(tiny_config(T=60)).eval()
    clips = pad_to(make_batch("avqa", T=10, b=2, seed=5), 12, [4, 10], seed=6)
    questions = make_batch("avqa", T=10, b=5, seed=7)
    rows = torch.tensor([1, 0, 0, 1, 0])
    shared = {**{k: clips[k] for k in FEATURES}, "prompt": questions["prompt"], "answer": questions["answer"],
              "clip_rows": rows, "length": clips["length"][rows]}
    with torch.no_grad():
        out, _ = run(model, "avqa", shared)
        for q, r in enumerate(rows.tolist()):
            L = int(clips["length"][r])
            alone = {**{k: clips[k][r:r + 1, :L] for k in FEATURES}, "prompt": questions["prompt"][q:q + 1],
                     "answer": questions["answer"][q:q + 1]}
            ref, _ = run(model, "avqa", alone)
            torch.testing.assert_close(out["class_logits"][q:q + 1], ref["class_logits"], **LOGIT_TOL)


# ---------------------------------------------------------------------------------- the masks

def test_padding_mask_matches_hand_built():
    """Window and key validity combined; a row with no valid key (padded query, window all
    padding) keeps its whole window, a row of a window-less mask keeps every key."""
    T, S = 12, 4
    length = [3, 12, 1]
    valid = torch.arange(T) < torch.tensor(length)[:, None]
    mask = padding_mask(valid, window_mask(T, S, torch.device("cpu")))
    assert mask.shape == (3, 1, T, T)
    for b, L in enumerate(length):
        for i in range(T):
            window = [abs(i - j) <= S // 2 for j in range(T)]
            row = [w and j < L for j, w in enumerate(window)]
            assert mask[b, 0, i].tolist() == (row if any(row) else window), (b, i)
    none = padding_mask(torch.tensor([[True, False], [False, False]]))
    assert none.shape == (2, 1, 1, 2) and none[:, 0, 0].tolist() == [[True, False], [True, True]]


@pytest.mark.parametrize("impl", ["fused", "naive"])
def test_fully_padded_window_rows_are_finite(impl):
    """A 4 s clip padded to 60: at scale 2 the queries from second 6 on see only padding. The
    raw mask gives NaN in the reference; the model's mask gives finite outputs everywhere, the
    same in both implementations."""
    T, S = 60, 2
    valid = (torch.arange(T) < 4)[None]
    window = window_mask(T, S, torch.device("cpu"))
    q, k, v = torch.randn(3, 1, 2, T, 8).unbind(0)
    assert torch.isnan(naive_attention(q, k, v, (valid[:, None, None, :] & window))).any()
    mask = padding_mask(valid, window)
    y = naive_attention(q, k, v, mask)
    with attention_impl("fused"):
        torch.testing.assert_close(attend(q, k, v, mask), y, **TOL)
    assert torch.isfinite(y).all()
    model = build(tiny_config(T=60)).eval()
    with torch.no_grad(), attention_impl(impl):
        for variant in VARIANTS:
            out, loss = run(model, variant, pad_to(make_batch(variant, T=4, b=2), 60, [4, 4], seed=1))
            assert torch.isfinite(loss), variant
            assert all_finite(out), variant


def test_prompt_gate_counts_real_tokens():
    """The gate of the real tokens is the gate of the clip alone: a softmax over the real tokens
    times their number (they sum to it); padded tokens get 0."""
    g = torch.Generator().manual_seed(0)
    q, keys = torch.randn(2, 16, generator=g), torch.randn(2, 20, 16, generator=g)
    valid = torch.arange(20) < torch.tensor([[6], [20]])
    w = prompt_gate(q, keys, valid)
    torch.testing.assert_close(w[0, :6], prompt_gate(q[:1], keys[:1, :6])[0], **TOL)
    torch.testing.assert_close(w[1], prompt_gate(q[1:], keys[1:])[0], **TOL)
    assert (w[0, 6:] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.tensor([6.0, 20.0]))


@pytest.mark.parametrize("variant", ["ave", "avqa", "llp"])
def test_fused_matches_naive_with_padding(variant):
    """Outputs and gradients of a padded batch agree between the two implementations."""
    batch = pad_to(make_batch(variant, T=10, b=2), 16, [4, 10], seed=2)
    assert_fused_matches_naive(build(tiny_config(T=60)), variant, batch, 10, **TOL)
