"""Native RMSNorm and fused residual-add RMSNorm (HF ``DeepseekV2RMSNorm`` cast order).

``y = (x * rsqrt(mean(x^2) + eps)).to(x.dtype) * (weight + offset)``, the product rounded to
``x.dtype``; statistics in float32. Inputs follow the kernel contract in ``normswitch.ops.rms_norm``.
"""
from __future__ import annotations

from typing import Optional

import torch

CHUNK_ELEMENTS = 1 << 22
"""Rows are normalized in chunks of about this many elements, so that the float32 temporaries
stay small next to the output (16 MiB a chunk) whatever the size of the input."""


def _normalize_into(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, offset: float,
                    y: torch.Tensor) -> None:
    """RMSNorm of the rows of ``x`` written into ``y`` (same shape, the output dtype)."""
    xf = x.float()
    rstd = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()
    xh = xf.mul_(rstd) if xf is not x else xf * rstd
    if weight is None:
        y.copy_(xh)
    elif offset == 0.0 and weight.dtype == y.dtype:
        # A product of two values of one 16-bit type is exact in float32: one rounding, as specified.
        torch.mul(xh.to(y.dtype), weight, out=y)
    else:
        y.copy_(xh.to(y.dtype).float().mul_(weight.float() + offset))


def _rms_normalized(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, weight_offset: float,
                    out: torch.Tensor) -> torch.Tensor:
    """RMSNorm of 2-D ``x`` (M, N) into ``out``, chunk by chunk of rows (each row alone, so the
    result is the same for any chunking)."""
    m, n = x.shape
    step = max(1, CHUNK_ELEMENTS // max(n, 1))
    if m <= step:
        _normalize_into(x, weight, eps, weight_offset, out)
        return out
    for i in range(0, m, step):
        _normalize_into(x[i:i + step], weight, eps, weight_offset, out[i:i + step])
    return out


def rms_norm(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    eps: float,
    weight_offset: float,
    out: Optional[torch.Tensor],
) -> torch.Tensor:
    """RMSNorm over the last dim of (M, N) ``x``; returns (M, N) of ``x.dtype``. ``out`` is ``x``
    itself or apart from it (the checks); each chunk of rows is read before it is written."""
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    return _rms_normalized(x, weight, eps, weight_offset, out)


def _residual_sum(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``x + residual`` added in float32 and stored as ``residual.dtype``."""
    if x.dtype == residual.dtype:
        return torch.add(x, residual)
    return torch.add(x.float(), residual.float()).to(residual.dtype)


def fused_add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    weight_offset: float,
    inplace: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``r = x + residual``; returns ``(rms_norm(r) as x.dtype, r)``, or writes them into x, residual."""
    r = _residual_sum(x, residual)
    if not inplace:
        return _rms_normalized(r, weight, eps, weight_offset, torch.empty(x.shape, dtype=x.dtype, device=x.device)), r
    residual.copy_(r)
    _rms_normalized(r, weight, eps, weight_offset, x)
    return x, residual
