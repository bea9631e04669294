"""normswitch as a provider of vLLM IR ops ``rms_norm`` and ``fused_add_rms_norm`` (``vllm.ir``).

The provider is named ``normswitch``. It is put first in the platform's default IR op priority,
so vLLM's ``forward_native`` paths and compiled graphs reach it; a priority the user gives
(``--ir-op-priority.rms_norm=native``) still comes first, as vLLM appends platform defaults after
it. Calls normswitch does not cover (``variance_size`` set, a weight of another dtype than ``x``,
a fused call without weight) are declined through ``supports_args`` and go to the next provider.

No ``from __future__ import annotations`` here: vLLM infers the op schema from the annotations.
"""
import torch
from torch import Tensor

from normswitch import ops

PROVIDER = "normswitch"
IR_OPS = ("rms_norm", "fused_add_rms_norm")
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _rms_norm_supports(
    x: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None
) -> bool:
    return (
        variance_size is None
        and x.dtype in _DTYPES
        and (weight is None or weight.dtype == x.dtype)
    )


def _rms_norm(
    x: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None
) -> Tensor:
    return ops.rms_norm(x, weight, epsilon)


def _fused_add_rms_norm_supports(
    x: Tensor,
    x_residual: Tensor,
    weight: Tensor | None,
    epsilon: float,
    variance_size: int | None = None,
) -> bool:
    return (
        variance_size is None
        and weight is not None
        and x.dtype in _DTYPES
        and weight.dtype == x.dtype
        and x_residual.dtype == x.dtype
    )


def _fused_add_rms_norm(
    x: Tensor,
    x_residual: Tensor,
    weight: Tensor | None,
    epsilon: float,
    variance_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    return ops.fused_add_rms_norm(x, x_residual, weight, epsilon)


def register_ir_providers() -> None:
    """Register the ``normswitch`` provider for both IR ops and put it first in the defaults."""
    from vllm import ir

    if PROVIDER not in ir.ops.rms_norm.impls:
        ir.ops.rms_norm.register_impl(PROVIDER, supports_args=_rms_norm_supports)(_rms_norm)
    if PROVIDER not in ir.ops.fused_add_rms_norm.impls:
        ir.ops.fused_add_rms_norm.register_impl(
            PROVIDER, supports_args=_fused_add_rms_norm_supports
        )(_fused_add_rms_norm)
    _prepend_to_platform_priority()


def _prepend_to_platform_priority() -> None:
    """Wrap the platform's ``get_default_ir_op_priority`` to list ``normswitch`` first."""
    from vllm.platforms import current_platform

    platform_cls = type(current_platform)
    original = platform_cls.get_default_ir_op_priority
    if getattr(original, "_normswitch", False):
        return

    def get_default_ir_op_priority(cls, vllm_config):
        priority = original.__func__(cls, vllm_config)
        for op in IR_OPS:
            providers = list(getattr(priority, op) or ["native"])
            if PROVIDER not in providers:
                setattr(priority, op, [PROVIDER, *providers])
        return priority

    get_default_ir_op_priority._normswitch = True
    platform_cls.get_default_ir_op_priority = classmethod(get_default_ir_op_priority)
