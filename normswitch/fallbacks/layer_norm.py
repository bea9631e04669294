"""Native LayerNorm computed in float32 with one rounding at the end (``LayerNormfp32``),
and its channels-first form (SAM's ``LayerNorm2d``)."""
from __future__ import annotations

from typing import Optional

import torch

from .rms_norm import CHUNK_ELEMENTS


def _param(p: Optional[torch.Tensor], x: torch.Tensor) -> Optional[torch.Tensor]:
    """A weight/bias as the fused kernel takes it: x's dtype when it already is, else float32."""
    if p is None or p.dtype == x.dtype:
        return p
    return p.float()


def _fp32_layer_norm(
    x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float
) -> torch.Tensor:
    """``F.layer_norm`` over the last dim with float32 statistics and affine, rounded once; called
    as ``torch.layer_norm`` (no Python wrapper, whose checks cost host time on every call)."""
    n = (x.shape[-1],)
    dtype = x.dtype
    same = (weight is None or weight.dtype == dtype) and (bias is None or bias.dtype == dtype)
    if same and (dtype == torch.float32 or x.is_cpu):
        # float32, or CPU: the kernel computes 16-bit inputs and parameters in float32 and rounds
        # once (bit-identical to passing float32 parameters), without converting them per call.
        return torch.layer_norm(x, n, weight, bias, eps, False)
    if dtype == torch.float32:
        return torch.layer_norm(x, n, _param(weight, x), _param(bias, x), eps, False)
    on_cpu = x.is_cpu
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    if on_cpu:
        # The CPU kernel takes 16-bit x with float32 parameters and computes all in float32.
        return torch.layer_norm(x, n, w, b, eps, False)
    return torch.layer_norm(x.float(), n, w, b, eps, False).to(x.dtype)


def layer_norm(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    eps: float,
    out: Optional[torch.Tensor],
) -> torch.Tensor:
    """LayerNorm of (M, N) ``x`` over N in float32; returns (M, N) of ``x.dtype``. Large inputs
    go chunk by chunk of rows (each row alone: the same result for any chunking), so that the
    float32 temporaries stay small next to the output; on CPU there are none (the kernel takes
    16-bit x as it is), so it runs in one call, without the chunks' extra copy. ``out`` may be
    ``x`` itself."""
    m, n = x.shape
    step = max(1, CHUNK_ELEMENTS // max(n, 1))
    if m <= step or x.is_cpu:
        y = _fp32_layer_norm(x, weight, bias, eps)
        return y if out is None else out.copy_(y)
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for i in range(0, m, step):
        out[i:i + step].copy_(_fp32_layer_norm(x[i:i + step], weight, bias, eps))
    return out


def layer_norm_channels_first(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """LayerNorm over C of contiguous (B, C, S) ``x``; returns contiguous (B, C, S) of ``x.dtype``."""
    y = _fp32_layer_norm(x.transpose(1, 2), weight, bias, eps)
    return y.transpose(1, 2).contiguous()
