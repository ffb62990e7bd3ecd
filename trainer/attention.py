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


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
           dropout_p: float = 0.0) -> Tensor:
    """Scaled dot-product attention with the selected implementation.

    q (B, nh, Tq, hs), k and v (B, nh, Tk, hs), mask bool (Tq, Tk), (B, 1, Tq or 1, Tk) or None
    -> (B, nh, Tq, hs).
    """
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

    def forward(self, x: Tensor, ctx: Tensor, mask: Tensor | None = None) -> Tensor:
        B, Tq, D = x.shape
        Tk = ctx.shape[1]
        nh, hs = self.n_heads, D // self.n_heads
        q = self.q(x).view(B, Tq, nh, hs).transpose(1, 2)  # (B, nh, Tq, hs)
        k, v = self.kv(ctx).view(B, Tk, 2, nh, hs).permute(2, 0, 3, 1, 4)  # 2 x (B, nh, Tk, hs)
        y = attend(q, k, v, mask, self.dropout if self.training else 0.0)  # (B, nh, Tq, hs)
        return self.out(y.transpose(1, 2).reshape(B, Tq, D))
