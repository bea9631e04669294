"""The seeds' eager code: the norms as the models write them (compiled by the ``compile`` column).

- ``rms_norm``: HF ``DeepseekV2RMSNorm.forward``;
- ``fused_add_rms_norm``: vLLM's native residual add followed by that RMSNorm;
- ``layer_norm``: DeepSeek-OCR's ``LayerNormfp32``;
- ``layer_norm_channels_first``: SAM's ``LayerNorm2d`` on ``(B, C, S)``;
- ``norm_gated``: the FLA/Mamba ``rms_norm_ref`` with ``upcast=True``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype)``; x (M, N)."""
    dtype = x.dtype
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(var + eps)
    return weight * h.to(dtype)


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``r = x + residual`` in float32, stored as residual's dtype; returns ``(rms_norm(r), r)``."""
    r = (x.to(torch.float32) + residual.to(torch.float32)).to(residual.dtype)
    return rms_norm(r, weight, eps), r


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               eps: float) -> torch.Tensor:
    """``LayerNormfp32``: F.layer_norm on float32 copies, cast back."""
    return F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps).to(x.dtype)


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              eps: float) -> torch.Tensor:
    """SAM ``LayerNorm2d`` over dim 1 of ``(B, C, S)``."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return weight[:, None] * x + bias[:, None]


def norm_gated(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               z: Optional[torch.Tensor], eps: float, group_size: int, norm_before_gate: bool,
               is_rms_norm: bool) -> torch.Tensor:
    """Gated grouped norm, upcast to float32, one rounding at the end; x, z (M, N)."""
    dtype = x.dtype
    M, N = x.shape
    xf = x.float()
    if z is not None and not norm_before_gate:
        xf = xf * F.silu(z.float())
    xg = xf.view(M, N // group_size, group_size)
    if is_rms_norm:
        xc = xg
    else:
        xc = xg - xg.mean(-1, keepdim=True)
    rstd = torch.rsqrt(xc.square().mean(-1, keepdim=True) + eps)
    out = (xc * rstd).view(M, N) * weight.float()
    if bias is not None:
        out = out + bias.float()
    if z is not None and norm_before_gate:
        out = out * F.silu(z.float())
    return out.to(dtype)
