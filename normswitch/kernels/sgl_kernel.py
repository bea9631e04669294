"""The ``sgl_kernel`` backend: sgl-kernel's (FlashInfer-derived) CUDA RMSNorms ``rmsnorm``,
``fused_add_rmsnorm``, ``gemma_rmsnorm`` and ``gemma_fused_add_rmsnorm``, where installed.

Semantic differences from the contract (within the test tolerances, see README):

- one rounding of ``x * rstd * w`` (Gemma: ``x * rstd * (1 + w)``) instead of HF's
  ``round(round(x * rstd) * w)``: at most one unit in the last place of x.dtype apart;
- fused add: the statistics use the float32 sum ``x + residual`` (recent versions), not the
  sum rounded to residual.dtype; the stored residual is the rounded sum, as specified.

Declined (served by the next backend): float32, no weight, a weight or residual of another
dtype than x, a weight offset other than 0 or 1, rows that are not packed, and the fused add
out of place (sgl-kernel's is in place only).
"""
from __future__ import annotations

import importlib
from typing import Any, Optional

import torch

from ..registry import Call, register_impl
from .cuda import device_problem

_ATTRS = ("rmsnorm", "fused_add_rmsnorm", "gemma_rmsnorm", "gemma_fused_add_rmsnorm")
HALF = (torch.float16, torch.bfloat16)
_mod: list[Any] = []


def import_problem(module: str, attrs: tuple[str, ...]) -> tuple[Any, Optional[str]]:
    """Import ``module``: (module, None), or (None, why it cannot serve)."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a broken optional package must not break normswitch
        return None, f"{module} not importable: {type(exc).__name__}: {exc}"
    missing = [a for a in attrs if not hasattr(mod, a)]
    if missing:
        return None, f"{module} lacks {', '.join(missing)}"
    return mod, None


def availability(device_type: str) -> Optional[str]:
    reason = device_problem(device_type)
    if reason is not None:
        return reason
    mod, reason = import_problem("sgl_kernel", _ATTRS)
    if mod is not None:
        _mod[:] = [mod]
    return reason


def engine_rms_declines(call: Call, *, gemma: bool) -> Optional[str]:
    """What the engines' RMSNorm kernels (sgl-kernel, vLLM ``_C``) decline: no weight, a weight
    or residual of another dtype, a weight offset (but Gemma's 1 where ``gemma``), rows that are
    not packed, the fused add out of place."""
    f = call.features
    if "weight" not in f:
        return "needs a weight"
    if "mixed" in f or "residual_mixed" in f:
        return "needs a weight (and residual) of x's dtype"
    if "offset" in f and not (gemma and "gemma" in f):
        return "a weight offset other than 0 or 1" if gemma else "no weight offset (Gemma)"
    if "strided" in f:
        return "needs packed rows"
    if call.op == "fused_add_rms_norm" and "inplace" not in f:
        return "fused add is in place only"
    return None


def supports(call: Call) -> Optional[str]:
    if call.dtype not in HALF:
        return f"{call.dtype} (float16/bfloat16 only)"
    return engine_rms_declines(call, gemma=True)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, weight_offset: float,
             out: Optional[torch.Tensor]) -> torch.Tensor:
    y = torch.empty_like(x) if out is None else out
    fn = _mod[0].gemma_rmsnorm if weight_offset == 1.0 else _mod[0].rmsnorm
    fn(x, weight, eps, out=y)
    return y


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float, weight_offset: float,
                       inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    fn = _mod[0].gemma_fused_add_rmsnorm if weight_offset == 1.0 else _mod[0].fused_add_rmsnorm
    fn(x, residual, weight, eps)
    return x, residual


register_impl("rms_norm", "sgl_kernel", rms_norm, available=availability, supports=supports)
register_impl("fused_add_rms_norm", "sgl_kernel", fused_add_rms_norm, available=availability,
              supports=supports)
