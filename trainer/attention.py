"""Every attention in the model goes through `attend`.

Two interchangeable implementations, chosen for the whole model by a module-level switch:
- "fused": `F.scaled_dot_product_attention`. On CPU it runs the fused flash kernel (forward and
  backward, with or without a boolean mask); on CUDA the flash kernel when there is no mask,
  the dtype is fp16/bf16 and the head dim is <= 256, else memory-efficient or cuDNN.
- "naive": bmm, softmax, bmm, the way `nn.MultiheadAttention(need_weights=True)` computes it
  (HAN-style code). The reference the fused path is tested and benchmarked against.

Sliding windows are boolean (T, T) masks |i - j| <= S/2 (True = may attend), built once per
(T, S, device) and cached. A window that covers the whole sequence returns None, not an
all-True mask, so that the flash kernel stays eligible on GPU.

Long sequences (dense benchmarks, up to 2,400 steps): a window passed as a `Band` (radius,
key validity) instead of a (T, T) mask runs blocked: queries in blocks of Q >= radius attend
the keys of their block and its two neighbours (3Q keys, a (Q, 3Q) band mask), through SDPA,
so memory grows with T x 3Q, not T^2. `attend` takes that path with the fused implementation
from BANDED_FROM steps on; below it, and always under "naive", a Band becomes today's dense
mask (`Band.dense`), so short clips compute what they always did and the naive reference is
the full masked matrix. The two agree to float tolerance (tests/test_attention.py).

Padded batches (clips of different lengths): `padding_mask` combines a (B, Tk) key validity with
the window into a (B, 1, Tq, Tk) mask, broadcast over the heads. A query row that would allow no
key (a padded second whose window holds only padding) allows every key of its window instead:
its output is don't-care (padded positions are never a key of a real one), and a softmax over
no key is NaN in the bmm reference and, depending on kernel, in SDPA. So `attend` never sees an
empty row from the model, and both implementations give the same finite numbers.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

IMPLS = ("fused", "naive")
_impl = "fused"
BANDED_FROM = 256   # sequence length from which a Band runs blocked (bench_model.py --lengths: below it
                    # the dense mask is as fast and as small on CPU; today's clips, <= 60 s, stay dense)
BLOCK = 32          # queries per block at least (tiny blocks are many small matmuls)


def set_attention_impl(name: str) -> None:
    """Select the attention implementation for every module, "fused" or "naive"."""
    global _impl
    if name not in IMPLS:
        raise ValueError(f"attention impl must be one of {IMPLS}, got {name!r}")
    _impl = name


def get_attention_impl() -> str:
    return _impl


@contextlib.contextmanager
def attention_impl(name: str) -> Iterator[None]:
    """Run a block with the given implementation, restoring the previous one afterwards."""
    previous = _impl
    set_attention_impl(name)
    try:
        yield
    finally:
        set_attention_impl(previous)


@functools.lru_cache(maxsize=128)
def window_mask(T: int, S: int, device: torch.device) -> Tensor | None:
    """(T, T) bool mask, True where |i - j| <= S // 2; None when S = 0 or S covers all of T.

    Cached: treat the result as read-only.
    """
    if S == 0 or S // 2 >= T - 1:
        return None
    i = torch.arange(T, device=device)
    return (i[:, None] - i[None, :]).abs() <= S // 2  # (T, T)


def padding_mask(valid: Tensor, window: Tensor | None = None) -> Tensor:
    """(B, 1, Tq, Tk) bool mask from key validity `valid` (B, Tk) and a (Tq, Tk) window or None
    (then Tq = 1, broadcast over the queries). Rows with no valid key keep their whole window."""
    mask = valid[:, None, None, :]  # (B, 1, 1, Tk)
    if window is None:
        return mask | ~mask.any(-1, keepdim=True)
    mask = mask & window  # (B, 1, Tq, Tk)
    return mask | (~mask.any(-1, keepdim=True) & window)


class Band:
    """A sliding window |i - j| <= radius over T steps, with key validity `valid` (B, T) bool or
    None (every key real), in place of its dense (B, 1, T, T) mask. Rows with no valid key keep
    their whole window, as `padding_mask`."""

    def __init__(self, T: int, radius: int, valid: Tensor | None, device: torch.device):
        self.T, self.radius, self.valid, self.device = T, radius, valid, device
        self._dense: Tensor | None = None
        self._blocks: dict[int, tuple[int, Tensor]] = {}

    def dense(self) -> Tensor:
        """The equivalent dense mask, (T, T) or (B, 1, T, T); built once (self- and cross-modal
        attention of a layer share it)."""
        if self._dense is None:
            window = window_mask(self.T, 2 * self.radius, self.device)
            assert window is not None, "a Band narrower than its sequence"
            self._dense = window if self.valid is None else padding_mask(self.valid, window)
        return self._dense

    def blocks(self, B: int) -> tuple[int, Tensor]:
        """Q (queries per block) and the blocked mask (B, 1, nb, Q, 3Q): query a of block b is step
        bQ + a, key c of its block row is step bQ - Q + c. Built once per B, like `dense`."""
        if B not in self._blocks:
            self._blocks[B] = self._build_blocks(B)
        return self._blocks[B]

    def _build_blocks(self, B: int) -> tuple[int, Tensor]:
        T, r, dev = self.T, self.radius, self.device
        Q = max(r, BLOCK)
        nb = -(-T // Q)
        a, c = torch.arange(Q, device=dev), torch.arange(3 * Q, device=dev)
        band = (a[:, None] - (c[None, :] - Q)).abs() <= r                        # (Q, 3Q)
        key_step = torch.arange(nb, device=dev)[:, None] * Q - Q + c[None, :]    # (nb, 3Q)
        exists = (key_step >= 0) & (key_step < T)
        window = band & exists[:, None, :]                                       # (nb, Q, 3Q)
        query_exists = (torch.arange(nb * Q, device=dev) < T).view(nb, Q, 1)
        if self.valid is None:
            allowed = window[None]
        else:
            valid = F.pad(self.valid, (Q, nb * Q - T + Q)).unfold(1, 3 * Q, Q)   # (B, nb, 3Q)
            allowed = window & valid[:, :, None, :]
            allowed = allowed | (~allowed.any(-1, keepdim=True) & window)        # no valid key: the window
        # a query past the end (block padding, cut away afterwards) takes every key: no empty row
        allowed = allowed | ~query_exists
        return Q, allowed.expand(B, -1, -1, -1)[:, None]


def banded_attention(q: Tensor, k: Tensor, v: Tensor, band: Band, dropout_p: float = 0.0) -> Tensor:
    """SDPA of each block of Q queries over its 3Q neighbouring keys: (B, nh, T, hs) -> (B, nh, T, hs),
    equal to `attend(q, k, v, band.dense())` to float tolerance, in O(T Q) memory."""
    B, nh, T, hs = q.shape
    Q, mask = band.blocks(B)                                  # mask (B, 1, nb, Q, 3Q)
    nb = mask.shape[2]
    qb = F.pad(q, (0, 0, 0, nb * Q - T)).view(B, nh, nb, Q, hs).transpose(1, 2)   # (B, nb, nh, Q, hs)

    def keys(x: Tensor) -> Tensor:   # (B, nh, T, hs) -> (B, nb, nh, 3Q, hs), each block's neighbours
        x = F.pad(x, (0, 0, Q, nb * Q - T + Q)).unfold(2, 3 * Q, Q)                # (B, nh, nb, hs, 3Q)
        return x.permute(0, 2, 1, 4, 3)

    y = F.scaled_dot_product_attention(qb.reshape(B * nb, nh, Q, hs), keys(k).reshape(B * nb, nh, 3 * Q, hs),
                                       keys(v).reshape(B * nb, nh, 3 * Q, hs),
                                       attn_mask=mask.transpose(1, 2).reshape(B * nb, 1, Q, 3 * Q),
                                       dropout_p=dropout_p)   # (B nb, nh, Q, hs)
    return y.view(B, nb, nh, Q, hs).transpose(1, 2).reshape(B, nh, nb * Q, hs)[:, :, :T]


def naive_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                    dropout_p: float = 0.0) -> Tensor:
    """Reference attention, (B, nh, Tq, hs) x (B, nh, Tk, hs) -> (B, nh, Tq, hs); mask (Tq, Tk)
    or broadcastable to (B, nh, Tq, Tk)."""
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    q = q.reshape(B * nh, Tq, hs) * (1.0 / math.sqrt(hs))  # MHA scales q before the bmm
    att = torch.bmm(q, k.reshape(B * nh, Tk, hs).transpose(1, 2))  # (B*nh, Tq, Tk)
    if mask is not None:
        att = att.view(B, nh, Tq, Tk).masked_fill(~mask, float("-inf")).view(B * nh, Tq, Tk)
    att = F.dropout(F.softmax(att, dim=-1), p=dropout_p)
    y = torch.bmm(att.to(v.dtype), v.reshape(B * nh, Tk, hs))  # (B*nh, Tq, hs)
    return y.view(B, nh, Tq, hs)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | Band | None = None,
           dropout_p: float = 0.0) -> Tensor:
    """Scaled dot-product attention with the selected implementation.

    q (B, nh, Tq, hs), k and v (B, nh, Tk, hs), mask bool (Tq, Tk), (B, 1, Tq or 1, Tk), a Band
    (self- or cross-attention over one time axis, Tq = Tk) or None -> (B, nh, Tq, hs).
    """
    if isinstance(mask, Band):
        if _impl == "fused" and mask.T >= BANDED_FROM:
            return banded_attention(q, k, v, mask, dropout_p)
        mask = mask.dense()
    if _impl == "fused":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return naive_attention(q, k, v, mask, dropout_p)


class Attention(nn.Module):
    """Multi-head attention of queries `x` over a context `ctx` (the same tensor for self-attention)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)  # keys and values from one matmul
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, ctx: Tensor, mask: Tensor | Band | None = None) -> Tensor:
        B, Tq, D = x.shape
        Tk = ctx.shape[1]
        nh, hs = self.n_heads, D // self.n_heads
        q = self.q(x).view(B, Tq, nh, hs).transpose(1, 2)  # (B, nh, Tq, hs)
        k, v = self.kv(ctx).view(B, Tk, 2, nh, hs).permute(2, 0, 3, 1, 4)  # 2 x (B, nh, Tk, hs)
        y = attend(q, k, v, mask, self.dropout if self.training else 0.0)  # (B, nh, Tq, hs)
        return self.out(y.transpose(1, 2).reshape(B, Tq, D))
