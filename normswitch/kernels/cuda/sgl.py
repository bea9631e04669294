"""sgl-kernel (FlashInfer-derived) RMSNorm provider: ``rmsnorm``, ``fused_add_rmsnorm``,
``gemma_rmsnorm``, ``gemma_fused_add_rmsnorm``.

Semantic differences from design.md (within the test tolerances, see README):

- one rounding of ``x * rstd * w`` (Gemma: ``x * rstd * (1 + w)``) instead of HF's
  ``round(round(x * rstd) * w)``: at most one unit in the last place of x.dtype apart;
- fused add: the statistics use the float32 sum ``x + residual`` (recent versions), not the
  sum rounded to residual.dtype; the stored residual is the rounded sum, as in design.md.

Declined (served by the next provider): float32, no weight, a weight of another dtype than x,
a weight offset other than 0 or 1, non-contiguous rows or ``out``, M = 0, and the fused add
out of place (sgl-kernel's is in place only).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...backend import Call
from .provider import HALF, Entry, Provider, import_problem, out_ok

NAME = "sgl-kernel"
_ATTRS = ("rmsnorm", "fused_add_rmsnorm", "gemma_rmsnorm", "gemma_fused_add_rmsnorm")
_mod: list = []


def _sgl():
    if not _mod:
        mod, reason = import_problem("sgl_kernel", _ATTRS)
        if mod is None:
            raise ImportError(reason)
        _mod.append(mod)
    return _mod[0]


def _probe() -> Optional[str]:
    _mod.clear()
    mod, reason = import_problem("sgl_kernel", _ATTRS)
    if mod is not None:
        _mod.append(mod)
    return reason


def _declines(call: Call) -> Optional[str]:
    if call.dtype not in HALF:
        return f"{call.dtype} (float16/bfloat16 only)"
    if "weight" not in call.features:
        return "needs a weight"
    if "strided" in call.features:
        return "needs contiguous rows"
    return None


def _declines_fused(call: Call) -> Optional[str]:
    if "inplace" not in call.features:
        return "fused add is in place only"
    return _declines(call)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, weight_offset: float,
             out: Optional[torch.Tensor]) -> torch.Tensor:
    y = torch.empty_like(x) if out is None else out
    fn = _sgl().gemma_rmsnorm if weight_offset == 1.0 else _sgl().rmsnorm
    fn(x, weight, eps, out=y)
    return y


def _accepts(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, weight_offset: float,
             out: Optional[torch.Tensor]) -> bool:
    return (x.dtype in HALF and weight is not None and weight.dtype == x.dtype
            and weight_offset in (0.0, 1.0) and x.shape[0] > 0 and x.is_contiguous()
            and out_ok(out))


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float, weight_offset: float,
                       inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    sgl = _sgl()
    fn = sgl.gemma_fused_add_rmsnorm if weight_offset == 1.0 else sgl.fused_add_rmsnorm
    fn(x, residual, weight, eps)
    return x, residual


def _accepts_fused(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float,
                   weight_offset: float, inplace: bool) -> bool:
    return (inplace and residual.dtype == x.dtype and residual.is_contiguous()
            and _accepts(x, weight, eps, weight_offset, None))


_CONDITIONS = "fp16/bf16, weight of x's dtype, offset 0 or 1 (Gemma), contiguous rows"
PROVIDER = Provider(NAME, {
    "rms_norm": Entry(rms_norm, _accepts, _declines, _CONDITIONS),
    "fused_add_rms_norm": Entry(fused_add_rms_norm, _accepts_fused, _declines_fused,
                                _CONDITIONS + ", in place only"),
}, _probe)
