"""The ``cpu`` backend: normswitch's own C++ kernels for CPU tensors (``csrc/``), one pass per row
with ATen's vector types and intra-op threads. Compiled on first use (see ``build``); with no
compiler, or a failed build, the registry falls back to ``native``. Serves ``rms_norm``,
``fused_add_rms_norm`` and ``norm_gated``; LayerNorm stays on ``native`` (``F.layer_norm`` is
already one fused pass on CPU).
"""
from __future__ import annotations

from typing import Optional

import torch

from ... import fallbacks
from ...backend import Backend
from .build import EXTENSION, capability

Tensor = torch.Tensor


def _ext():
    """The compiled kernels (built or loaded on the first call of the process)."""
    return EXTENSION.module or EXTENSION.load()


def rms_norm(x: Tensor, weight: Optional[Tensor], eps: float, weight_offset: float,
             out: Optional[Tensor]) -> Tensor:
    return _ext().rms_norm(x, weight, eps, weight_offset, out)


def fused_add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float, weight_offset: float,
                       inplace: bool) -> tuple[Tensor, Tensor]:
    if residual.dtype != x.dtype:  # the residual is stored in its own dtype: the reference path
        return fallbacks.fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace)
    return _ext().fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace)


def norm_gated(x: Tensor, weight: Tensor, bias: Optional[Tensor], z: Optional[Tensor], eps: float,
               group_size: int, norm_before_gate: bool, is_rms_norm: bool,
               out: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor], Tensor]:
    return _ext().norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out)


def _available(device_type: str) -> Optional[str]:
    if device_type != "cpu":
        return f"the cpu backend serves CPU tensors only, not {device_type}"
    return EXTENSION.problem()


def _details(op: str, device_type: str) -> str:
    if EXTENSION.module is not None:
        return f"C++ kernels for {capability()}, loaded"
    return f"C++ kernels for {capability()}, compiled or loaded from the cache on first use"


BACKEND = Backend(
    name="cpu",
    impls={"rms_norm": rms_norm, "fused_add_rms_norm": fused_add_rms_norm, "norm_gated": norm_gated},
    availability=_available,
    details=_details,
)

__all__ = ["BACKEND"]
