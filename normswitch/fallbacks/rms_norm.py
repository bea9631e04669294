"""Native RMSNorm and fused residual-add RMSNorm (HF ``DeepseekV2RMSNorm`` cast order).

``y = (x * rsqrt(mean(x^2) + eps)).to(x.dtype) * (weight + offset)``, the product rounded to
``x.dtype``; statistics in float32. Inputs follow the kernel contract in ``normswitch.backend``.
"""
from __future__ import annotations

from typing import Optional

import torch


def _scale(y: torch.Tensor, weight: Optional[torch.Tensor], offset: float) -> torch.Tensor:
    """Multiply ``y`` (already rounded to its dtype) by ``weight + offset`` read as float32."""
    if weight is None:
        return y
    if offset == 0.0 and weight.dtype == y.dtype:
        # A product of two values of one 16-bit type is exact in float32: one rounding, as specified.
        return y.mul_(weight)
    return torch.mul(y, weight.float() + offset).to(y.dtype)


def rms_norm_into(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    eps: float,
    weight_offset: float,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """RMSNorm of 2-D ``x`` (M, N), returned as a new tensor of ``out_dtype``."""
    xf = x.float()
    ms = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).square_().div_(x.shape[-1])
    rstd = ms.add_(eps).rsqrt_()
    xh = xf.mul_(rstd) if xf is not x else xf * rstd
    return _scale(xh.to(out_dtype), weight, weight_offset)


def rms_norm(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    eps: float,
    weight_offset: float,
    out: Optional[torch.Tensor],
) -> torch.Tensor:
    """RMSNorm over the last dim of (M, N) ``x``; returns (M, N) of ``x.dtype``."""
    y = rms_norm_into(x, weight, eps, weight_offset, x.dtype)
    if out is None:
        return y
    return out.copy_(y)


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
    y = rms_norm_into(r, weight, eps, weight_offset, x.dtype)
    if not inplace:
        return y, r
    residual.copy_(r)
    x.copy_(y)
    return x, residual
