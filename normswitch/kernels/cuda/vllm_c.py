"""vLLM's CUDA ``_C`` RMSNorm provider: ``torch.ops._C.rms_norm(out, input, weight, eps)`` and
``torch.ops._C.fused_add_rms_norm(input, residual, weight, eps)`` (in place).

Semantics match design.md (HF order ``round(round(x * rstd) * w)``; the residual sum is
rounded to its dtype before the statistics) when the weight has x's dtype, which is the only
case accepted. Declined: no weight, a weight of another dtype, a weight offset (Gemma),
a residual of another dtype, non-contiguous rows or ``out``, M = 0, and the fused add out of
place. A CPU-only vLLM (whose ``_C`` ops have no CUDA kernels) is reported unavailable.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from ...backend import Call
from .provider import Entry, Provider, import_problem, out_ok

NAME = "vllm"
_ops: list = []


def _namespace() -> Any:
    """``torch.ops._C`` once ``vllm._C`` is imported (tests replace this function)."""
    return torch.ops._C


def _probe() -> Optional[str]:
    _ops.clear()
    _, reason = import_problem("vllm._C", ())
    if reason is not None:
        return reason
    ns = _namespace()
    for op in ("rms_norm", "fused_add_rms_norm"):
        if not hasattr(ns, op):
            return f"vllm._C has no {op}"
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"_C::{op}", "CUDA"):
            return f"vllm._C::{op} has no CUDA kernel (a CPU build of vLLM)"
    _ops.append(ns)
    return None


def _declines(call: Call) -> Optional[str]:
    if "weight" not in call.features:
        return "needs a weight"
    if "offset" in call.features:
        return "no weight offset (Gemma)"
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
    _ops[0].rms_norm(y, x, weight, eps)
    return y


def _accepts(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, weight_offset: float,
             out: Optional[torch.Tensor]) -> bool:
    return (weight is not None and weight.dtype == x.dtype and weight_offset == 0.0
            and x.shape[0] > 0 and x.is_contiguous() and out_ok(out))


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float, weight_offset: float,
                       inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _ops[0].fused_add_rms_norm(x, residual, weight, eps)
    return x, residual


def _accepts_fused(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float,
                   weight_offset: float, inplace: bool) -> bool:
    return (inplace and residual.dtype == x.dtype and residual.is_contiguous()
            and _accepts(x, weight, eps, weight_offset, None))


_CONDITIONS = "weight of x's dtype, no offset, contiguous rows"
PROVIDER = Provider(NAME, {
    "rms_norm": Entry(rms_norm, _accepts, _declines, _CONDITIONS),
    "fused_add_rms_norm": Entry(fused_add_rms_norm, _accepts_fused, _declines_fused,
                                _CONDITIONS + ", in place only"),
}, _probe)
