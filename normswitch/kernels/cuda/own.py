"""normswitch's own CUDA kernels behind the kernel contracts declared in ``normswitch.ops``.

Semantics are exactly design.md's: RMSNorm in the HF order (``round(round(x * rstd) *
(w + offset))``), LayerNorm and the gated norms rounded once; statistics in float32.
Outputs are allocated with ``torch.empty`` on the current stream, so every call is CUDA-graph
capturable. The extension is built on the first call (see :mod:`.build`).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import build

NAME = "own"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _param(p: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Weights/bias in a dtype the kernels read (float32/float16/bfloat16), else float32."""
    if p is None or p.dtype in DTYPES:
        return p
    return p.float()


def _empty(x: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    return torch.empty(x.shape, dtype=dtype or x.dtype, device=x.device)


def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, weight_offset: float,
             out: Optional[torch.Tensor]) -> torch.Tensor:
    """(M, N) -> (M, N) of x.dtype."""
    y = _empty(x) if out is None else out
    if x.numel():
        build.load().row_norm(x, None, None, _param(weight), None, None, y, None, None,
                              x.shape[1], eps, weight_offset, True, True, False)
    return y


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float, weight_offset: float,
                       inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``r = x + residual`` (fp32 add, stored as residual.dtype); returns ``(rms_norm(r), r)``."""
    y, r = (x, residual) if inplace else (_empty(x), _empty(x, residual.dtype))
    if x.numel():
        build.load().row_norm(x, residual, r, _param(weight), None, None, y, None, None,
                              x.shape[1], eps, weight_offset, True, True, False)
    return y, r


def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
               eps: float, out: Optional[torch.Tensor]) -> torch.Tensor:
    """(M, N) -> (M, N) of x.dtype, all in float32, one rounding."""
    y = _empty(x) if out is None else out
    if x.numel():
        build.load().row_norm(x, None, None, _param(weight), _param(bias), None, y, None, None,
                              x.shape[1], eps, 0.0, False, False, False)
    return y


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                              eps: float) -> torch.Tensor:
    """Contiguous (B, C, S) normalized over C -> contiguous (B, C, S) of x.dtype."""
    y = _empty(x)
    if x.numel():
        build.load().channels_first(x, _param(weight), _param(bias), y, eps)
    return y


def norm_gated(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               z: Optional[torch.Tensor], eps: float, group_size: int, norm_before_gate: bool,
               is_rms_norm: bool, out: Optional[torch.Tensor]
               ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """(M, N) -> (y (M, N), mean (G*M,) fp32 or None, rstd (G*M,) fp32), group-major stats.

    A gate ``z`` of another dtype than x is cast to x.dtype first.
    """
    m, n = x.shape
    stats = m * (n // group_size) if n else 0
    y = _empty(x) if out is None else out
    rstd = torch.empty(stats, dtype=torch.float32, device=x.device)
    mean = None if is_rms_norm else torch.empty(stats, dtype=torch.float32, device=x.device)
    if z is not None and z.dtype != x.dtype:
        z = z.to(x.dtype)
    if x.numel():
        build.load().row_norm(x, None, None, _param(weight), _param(bias), z, y, mean, rstd,
                              group_size, eps, 0.0, is_rms_norm, False,
                              z is not None and not norm_before_gate)
    return y, mean, rstd


IMPLS = {
    "rms_norm": rms_norm,
    "fused_add_rms_norm": fused_add_rms_norm,
    "layer_norm": layer_norm,
    "layer_norm_channels_first": layer_norm_channels_first,
    "norm_gated": norm_gated,
}
