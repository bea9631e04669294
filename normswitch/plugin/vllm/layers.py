"""vLLM's norm CustomOps served by normswitch (registered with ``CustomOp.register_oot``).

Each class subclasses vLLM's own layer, so construction, weights and ``forward_native`` stay
vLLM's; only the platform paths (``forward_cuda``/``hip``/``cpu``/``xpu``/``oot``) call normswitch.
With the op disabled (``custom_ops=["-RMSNorm"]``, or Inductor's default ``none``) vLLM runs
``forward_native``, which goes through vLLM IR, where ``normswitch.plugin.vllm.ir`` serves it.
Calls normswitch does not cover (``variance_size_override``, batch invariance, a sigmoid gate)
take the vLLM path that would have run without the plugin.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from vllm import envs
from vllm.model_executor.custom_op import CustomOp
from vllm.model_executor.layers import layernorm as vllm_layernorm

from normswitch import ops

Tensor = torch.Tensor
_PLATFORM_PATHS = ("forward_cuda", "forward_hip", "forward_cpu", "forward_xpu", "forward_oot")


def _via_normswitch(vllm_path: Callable) -> Callable:
    def forward(self, *args, **kwargs):
        return self.forward_normswitch(vllm_path, *args, **kwargs)

    forward.__name__ = vllm_path.__name__
    return forward


def _route(cls: type) -> type:
    """Send every platform path of ``cls`` to ``forward_normswitch(vllm_path, ...)``, which gets
    the vLLM method it replaces for the calls it leaves to vLLM."""
    base = cls.__mro__[1]
    for name in _PLATFORM_PATHS:
        setattr(cls, name, _via_normswitch(getattr(base, name)))
    return cls


@_route
class NormswitchRMSNorm(vllm_layernorm.RMSNorm):
    """vLLM ``RMSNorm`` (with and without residual) through ``normswitch.ops``."""

    def forward_normswitch(self, vllm_path: Callable, x: Tensor, residual: Optional[Tensor] = None):
        if self.variance_size_override is not None or envs.VLLM_BATCH_INVARIANT:
            return vllm_path(self, x, residual)
        if residual is None:
            weight = self.weight.data if self.pass_weight else None
            return ops.rms_norm(x, weight, self.variance_epsilon)
        if not self.pass_weight_add:
            return vllm_path(self, x, residual)
        return ops.fused_add_rms_norm(x, residual, self.weight.data, self.variance_epsilon, inplace=True)


@_route
class NormswitchGemmaRMSNorm(vllm_layernorm.GemmaRMSNorm):
    """vLLM ``GemmaRMSNorm`` (``x * (1 + w)``) through ``normswitch.ops`` with ``weight_offset=1``."""

    def forward_normswitch(self, vllm_path: Callable, x: Tensor, residual: Optional[Tensor] = None):
        if envs.VLLM_BATCH_INVARIANT:
            return vllm_path(self, x, residual)
        if residual is None:
            return ops.rms_norm(x, self.weight.data, self.variance_epsilon, weight_offset=1.0)
        return ops.fused_add_rms_norm(
            x, residual, self.weight.data, self.variance_epsilon, weight_offset=1.0, inplace=True
        )


@_route
class NormswitchLayerNorm(vllm_layernorm.LayerNorm):
    """vLLM ``LayerNorm`` through ``normswitch.ops.layer_norm`` (float32 compute)."""

    def forward_normswitch(self, vllm_path: Callable, x: Tensor) -> Tensor:
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


@_route
class NormswitchRMSNormGated(vllm_layernorm.RMSNormGated):
    """vLLM ``RMSNormGated`` (SiLU gate, optional groups) through ``normswitch.ops.rmsnorm_fn``."""

    def forward_normswitch(self, vllm_path: Callable, x: Tensor, z: Optional[Tensor] = None) -> Tensor:
        if self.activation not in ("swish", "silu"):
            return vllm_path(self, x, z)
        return ops.rmsnorm_fn(
            x, self.weight, self.bias, z=z, eps=self.eps,
            group_size=self.group_size, norm_before_gate=self.norm_before_gate,
        )


# vLLM layer class name -> its normswitch replacement.
REPLACEMENTS: dict[str, type] = {
    "RMSNorm": NormswitchRMSNorm,
    "GemmaRMSNorm": NormswitchGemmaRMSNorm,
    "LayerNorm": NormswitchLayerNorm,
    "RMSNormGated": NormswitchRMSNormGated,
}


def register_layers() -> dict[str, str]:
    """Register every replacement with ``CustomOp.register_oot``.

    Returns ``{layer name: reason}`` for the layers left alone (another plugin already replaced
    them); an empty dict when all are served by normswitch.
    """
    from vllm.model_executor.custom_op import op_registry_oot

    skipped = {}
    for name, cls in REPLACEMENTS.items():
        current = op_registry_oot.get(name)
        if current is cls:
            continue
        if current is not None:
            skipped[name] = f"already replaced by {current.__module__}.{current.__qualname__}"
            continue
        CustomOp.register_oot(cls, name=name)
    return skipped
