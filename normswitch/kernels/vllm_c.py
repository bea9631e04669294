"""The ``vllm_c`` backend: vLLM's CUDA ``_C`` RMSNorms, where a CUDA build of vLLM is installed:
``torch.ops._C.rms_norm(out, input, weight, eps)`` and
``torch.ops._C.fused_add_rms_norm(input, residual, weight, eps)`` (in place).

Semantics match the contract (HF order ``round(round(x * rstd) * w)``; the residual sum is
rounded to its dtype before the statistics) when the weight has x's dtype, the only case
accepted. Declined: no weight, a weight or residual of another dtype, a weight offset
(Gemma), rows that are not packed, and the fused add out of place. A CPU-only vLLM (whose
``_C`` ops have no CUDA kernels) is reported unavailable.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..registry import Call, register_impl
from .cuda import device_problem
from .sgl_kernel import engine_rms_declines, import_problem

_ops: list[Any] = []


def _namespace() -> Any:
    """``torch.ops._C`` once ``vllm._C`` is imported (tests replace this function)."""
    return torch.ops._C


LIBRARIES = ("vllm._C", "vllm._C_stable_libtorch")
"""The vLLM modules that register ``torch.ops._C``'s norms: ``vllm._C`` (CPU builds and older
CUDA builds), ``vllm._C_stable_libtorch`` (CUDA builds of vLLM 0.26, which have no ``vllm._C``)."""


def _import_library() -> Optional[str]:
    """Import the first of :data:`LIBRARIES` that imports; None, or why none does."""
    reasons = []
    for module in LIBRARIES:
        _, reason = import_problem(module, ())
        if reason is None:
            return None
        reasons.append(reason)
    return "; ".join(reasons)


def availability(device_type: str) -> Optional[str]:
    reason = device_problem(device_type)
    if reason is not None:
        return reason
    reason = _import_library()
    if reason is not None:
        return reason
    ns = _namespace()
    for op in ("rms_norm", "fused_add_rms_norm"):
        if not hasattr(ns, op):
            return f"vllm._C has no {op}"
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"_C::{op}", "CUDA"):
            return f"vllm._C::{op} has no CUDA kernel (a CPU build of vLLM)"
    _ops[:] = [ns]
    return None


def supports(call: Call) -> Optional[str]:
    return engine_rms_declines(call, gemma=False)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, weight_offset: float,
             out: Optional[torch.Tensor]) -> torch.Tensor:
    y = torch.empty_like(x) if out is None else out
    _ops[0].rms_norm(y, x, weight, eps)
    return y


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float, weight_offset: float,
                       inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _ops[0].fused_add_rms_norm(x, residual, weight, eps)
    return x, residual


register_impl("rms_norm", "vllm_c", rms_norm, available=availability, supports=supports)
register_impl("fused_add_rms_norm", "vllm_c", fused_add_rms_norm, available=availability,
              supports=supports)
