"""The ``cpu`` backend: normswitch's own C++ kernels for CPU tensors (``csrc/``), one pass per row
with ATen's vector types and intra-op threads; RMSNorm rows use AVX-512 (and AVX512_BF16) where
the CPU has it, decided at run time (the extension's ``kernel_path()``; ``set_portable(True)``
forces the portable kernels). Compiled on first use (see ``build``); with no compiler, or a
failed build, the registry falls back to ``native``. Serves ``rms_norm``,
``fused_add_rms_norm`` (residual of x's dtype), ``layer_norm``, ``layer_norm_channels_first``
and ``norm_gated`` (gate of x's dtype). Loading the
kernels also switches the ops' fast path to the C++ key of ``kernels/common/fast_key.cpp``.
"""
from __future__ import annotations

from typing import Optional

import torch

from ... import _fast
from ...registry import Call, register_impl
from .build import EXTENSION, capability

Tensor = torch.Tensor


def _ext():
    """The compiled kernels (built or loaded on the first call of the process)."""
    return EXTENSION.module or EXTENSION.load()


def _use_fast_key(module) -> None:
    """From now on the ops' fast path (every device) is keyed by the C++ ``fast_key``
    (``kernels/common/fast_key.cpp``): the same key without a Python attribute read per property."""
    _fast.use_native_key(module.fast_key)


EXTENSION.on_load = _use_fast_key


def rms_norm(x: Tensor, weight: Optional[Tensor], eps: float, weight_offset: float,
             out: Optional[Tensor]) -> Tensor:
    return _ext().rms_norm(x, weight, eps, weight_offset, out)


def fused_add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float, weight_offset: float,
                       inplace: bool) -> tuple[Tensor, Tensor]:
    return _ext().fused_add_rms_norm(x, residual, weight, eps, weight_offset, inplace)


def layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
               out: Optional[Tensor]) -> Tensor:
    return _ext().layer_norm(x, weight, bias, eps, out)


def layer_norm_channels_first(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    return _ext().layer_norm_channels_first(x, weight, bias, eps)


def norm_gated(x: Tensor, weight: Tensor, bias: Optional[Tensor], z: Optional[Tensor], eps: float,
               group_size: int, norm_before_gate: bool, is_rms_norm: bool,
               out: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor], Tensor]:
    return _ext().norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out)


def _available(device_type: str) -> Optional[str]:
    if device_type != "cpu":
        return f"the cpu backend serves CPU tensors only, not {device_type}"
    return EXTENSION.problem()


def _supports_add(call: Call) -> Optional[str]:
    if "residual_mixed" in call.features:
        return "a residual of another dtype than x"
    return None


def _supports_gated(call: Call) -> Optional[str]:
    if "z_mixed" in call.features:
        return "a gate z of another dtype than x"
    return None


def _details(device_type: str) -> str:
    if EXTENSION.module is not None:
        return f"C++ kernels for {capability()}, loaded (RMSNorm rows: {EXTENSION.module.kernel_path()})"
    return f"C++ kernels for {capability()}, compiled or loaded from the cache on first use"


register_impl("rms_norm", "cpu", rms_norm, available=_available, details=_details)
register_impl("fused_add_rms_norm", "cpu", fused_add_rms_norm, available=_available,
              supports=_supports_add, details=_details)
register_impl("layer_norm", "cpu", layer_norm, available=_available, details=_details)
register_impl("layer_norm_channels_first", "cpu", layer_norm_channels_first, available=_available,
              details=_details)
register_impl("norm_gated", "cpu", norm_gated, available=_available, supports=_supports_gated,
              details=_details)
