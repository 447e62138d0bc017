"""Scaled dot-product attention with one dispatch point and a slow reference.

All tensors are [B, heads, N, d]. `mask` is either a boolean tensor (True = may attend) or an additive
float bias (0 / -inf plus learned position biases), broadcastable to [B, heads, Nq, Nk].

Backends, fastest first:
  - "xformers": `xformers.ops.memory_efficient_attention`, only when q is on CUDA and xformers imports
    (its kernels are CUDA-only; on CPU it raises NotImplementedError). An xformers build that imports but has
    no kernel for these inputs (a wheel built for another torch / CUDA) is dropped after its first failure,
    with one warning, and SDPA serves from then on (`xformers_status()` says why).
  - "sdpa": `torch.nn.functional.scaled_dot_product_attention` — everywhere else.
  - "naive": softmax(Q K^T / sqrt(d) + mask) V written out, the reference the others are tested against.

`last_backend()` says which one the most recent `attention` call used (tests and the bench read it).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # optional CUDA extra; never a hard dependency
    import xformers.ops as xops

    HAS_XFORMERS = True
except Exception:  # ImportError, or a broken build that fails on import
    xops = None
    HAS_XFORMERS = False

_last_backend: str | None = None
_forced_backend: str | None = None
_xformers_error: str | None = None  # why a present xformers could not run (then SDPA serves on CUDA)


def xformers_status() -> str:
    """'usable' (imported, and no call failed yet), 'not installed', or the error that made it unusable."""
    if not HAS_XFORMERS:
        return "not installed"
    return _xformers_error or "usable"


def last_backend() -> str | None:
    """Name of the backend used by the most recent `attention` call ("xformers", "sdpa", "naive")."""
    return _last_backend


def force_backend(name: str | None) -> None:
    """Pin the backend (e.g. "naive" for the bench's baseline); None restores automatic dispatch."""
    global _forced_backend
    if name not in (None, "xformers", "sdpa", "naive"):
        raise ValueError(f"unknown attention backend {name!r}; choose 'xformers', 'sdpa', 'naive' or None")
    _forced_backend = name


def _bool_to_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean may-attend mask -> additive bias (0 where allowed, -inf where not)."""
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, float("-inf"))


def naive_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Reference: softmax(q k^T / sqrt(d) + mask) v, in float32. [B,H,Nq,d],[B,H,Nk,d] -> [B,H,Nq,d]."""
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + (_bool_to_bias(mask, scores.dtype) if mask.dtype == torch.bool else mask.float())
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def _xformers_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """xformers wants [B, N, H, d] and a dense bias whose last dim is stored padded to a multiple of 8."""
    bias = None
    if mask is not None:
        if mask.dtype == torch.bool:
            mask = _bool_to_bias(mask, q.dtype)
        b, h, nq, nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        padded = torch.empty(b, h, nq, (nk + 7) // 8 * 8, dtype=q.dtype, device=q.device)
        bias = padded[..., :nk]
        bias.copy_(mask.to(q.dtype).expand(b, h, nq, nk))
    out = xops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias
    )
    return out.transpose(1, 2)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Attention [B,H,Nq,d] x [B,H,Nk,d] -> [B,H,Nq,d] through the fastest available backend."""
    global _last_backend, _xformers_error
    if k.dtype != q.dtype:  # a cache kept in another precision than this call's (autocast) queries
        k, v = k.to(q.dtype), v.to(q.dtype)
    backend = _forced_backend
    if backend is None:
        backend = "xformers" if (q.is_cuda and HAS_XFORMERS and _xformers_error is None) else "sdpa"
    _last_backend = backend
    if backend == "xformers":
        if _forced_backend == "xformers":
            return _xformers_attention(q, k, v, mask)
        try:
            return _xformers_attention(q, k, v, mask)
        except torch.OutOfMemoryError:
            raise
        except (NotImplementedError, RuntimeError, ValueError) as e:  # no kernel for this build / these inputs
            _xformers_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            warnings.warn(f"xformers is installed but cannot run this attention ({_xformers_error}); using SDPA",
                          RuntimeWarning, stacklevel=2)
            backend = _last_backend = "sdpa"
    if backend == "naive":
        return naive_attention(q, k, v, mask)
    if mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)  # SDPA requires the bias in the query dtype (bf16 inference)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
