"""The seeds' eager formulas that normswitch replaces, written as the seed code has them (for benchmarks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def deepseek_v2_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``DeepseekV2RMSNorm.forward``."""
    dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(dtype)


def layer_norm_fp32(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``LayerNormfp32.forward``: the module run on an float32 copy, cast back."""
    return F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps).to(x.dtype)


def layer_norm_fwd_native(x, weight, bias, eps, z=None, group_size=None, norm_before_gate=True, is_rms_norm=False):
    """The eager port of ``layernorm_gated._layer_norm_fwd`` used where Triton cannot run."""
    dtype = x.dtype
    m, n = x.shape
    g = group_size or n
    x = x.float()
    weight = weight.float()
    if z is not None and not norm_before_gate:
        x = x * F.silu(z.float())
    xg = x.view(m, n // g, g)
    if is_rms_norm:
        mean = None
        rstd = 1 / torch.sqrt(xg.square().mean(dim=-1, keepdim=True) + eps)
        out = (xg * rstd).view(m, n) * weight
    else:
        mean = xg.mean(dim=-1, keepdim=True)
        rstd = 1 / torch.sqrt((xg - mean).square().mean(dim=-1, keepdim=True) + eps)
        out = ((xg - mean) * rstd).view(m, n) * weight
    if bias is not None:
        out = out + bias.float()
    if z is not None and norm_before_gate:
        out = out * F.silu(z.float())
    rstd = rstd.view(m, n // g).t().reshape(-1)
    mean = None if mean is None else mean.view(m, n // g).t().reshape(-1)
    return out.to(dtype), mean, rstd
