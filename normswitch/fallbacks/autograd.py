"""Differentiable forms of the ops, for calls where grad mode is on and an input requires grad.

The kernels (and the native backend, which updates float32 buffers in place to save memory)
compute forward values only; these functions build a graph with the same rounding points as the
contract, out of out-of-place PyTorch operations, so ``backward`` works. Arguments are the ops'
checked public arguments (any leading dimensions).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _rms(x: Tensor, weight: Optional[Tensor], eps: float, weight_offset: float, dtype: torch.dtype) -> Tensor:
    xf = x.float()
    xh = (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)).to(dtype)
    return xh if weight is None else (xh.float() * (weight.float() + weight_offset)).to(dtype)


def _into(y: Tensor, out: Optional[Tensor]) -> Tensor:
    return y if out is None else out.copy_(y)


def rms_norm(x, weight, eps, weight_offset, out):
    return _into(_rms(x, weight, eps, weight_offset, x.dtype), out)


def fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace):
    r = (x.float() + residual.float()).to(residual.dtype)
    y = _rms(r, weight, eps, weight_offset, x.dtype)
    if not inplace:
        return y, r
    residual.copy_(r)  # raises, as torch does, for a leaf that requires grad
    x.copy_(y)
    return x, residual


def _layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float) -> Tensor:
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps).to(x.dtype)


def layer_norm(x, weight, bias, eps, out):
    return _into(_layer_norm(x, weight, bias, eps), out)


def layer_norm_channels_first(x, weight, bias, eps):
    return _layer_norm(x.movedim(1, -1), weight, bias, eps).movedim(-1, 1).contiguous()


def norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out):
    from ..ops.norm_gated import reference

    y, mean, rstd = reference(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm,
                              compute=torch.float32)
    return _into(y.to(x.dtype), out), mean, rstd
