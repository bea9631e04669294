"""vLLM's norm CustomOps served by normswitch (registered with ``CustomOp.register_oot``).

Each replacement subclasses vLLM's own layer, so construction, weights and ``forward_native`` stay
vLLM's; only the platform paths (``forward_cuda``/``hip``/``cpu``/``xpu``/``oot``) call normswitch.
With the op disabled (``custom_ops=["-RMSNorm"]``, or Inductor's default ``none``) vLLM runs
``forward_native``, which goes through vLLM IR, where ``normswitch.plugin.vllm.ir`` serves it.
Calls normswitch does not cover (``variance_size_override``, batch invariance, a sigmoid gate)
take the vLLM path that would have run without the plugin.

vLLM versions differ in which of these layers exist and which are CustomOps (0.26's
``LayerNorm`` is a plain ``nn.Module`` without platform paths). Each layer is therefore hooked on
its own, through the platform paths its installed class has; a layer or path the installed vLLM
lacks is logged once and skipped, the other layers are still served, and importing this module
never fails on such a difference.
"""
from __future__ import annotations

import logging
import types
from typing import Any, Callable, Optional

import torch
from vllm import envs

from normswitch import ops
from normswitch.plugin.vllm.modes import follow_engine  # absolute: tests load this file on its own

# A child of vLLM's "vllm" logger, like the rest of the vLLM plugin.
logger = logging.getLogger("vllm.plugins.normswitch")

Tensor = torch.Tensor
LAYERNORM_MODULE = "vllm.model_executor.layers.layernorm"
PLATFORM_PATHS = ("forward_cuda", "forward_hip", "forward_cpu", "forward_xpu", "forward_oot")
"""The methods vLLM's CustomOp dispatch picks per platform; each one the layer has is routed."""

UNHOOKED: dict[str, str] = {}
"""``{what: reason}`` for each vLLM layer (``RMSNorm``) or path (``LayerNorm.forward_oot``) left to vLLM."""
_logged: set[str] = set()


def _skip(what: str, reason: str, level: int = logging.WARNING) -> None:
    """Record ``what`` as not routed through normswitch and log it once per process."""
    UNHOOKED[what] = reason
    if what not in _logged:
        _logged.add(what)
        logger.log(level, "normswitch: vLLM %s not routed through normswitch: %s", what, reason)


# -- what each replacement does; mixed into a subclass of the installed vLLM layer ---------------

class _Served:
    """Builds the vLLM layer, then lets the engine's mode pick the preset (:mod:`.modes`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        follow_engine()


class _RMSNorm(_Served):
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


class _GemmaRMSNorm(_Served):
    """vLLM ``GemmaRMSNorm`` (``x * (1 + w)``) through ``normswitch.ops`` with ``weight_offset=1``."""

    def forward_normswitch(self, vllm_path: Callable, x: Tensor, residual: Optional[Tensor] = None):
        if envs.VLLM_BATCH_INVARIANT:
            return vllm_path(self, x, residual)
        if residual is None:
            return ops.rms_norm(x, self.weight.data, self.variance_epsilon, weight_offset=1.0)
        return ops.fused_add_rms_norm(
            x, residual, self.weight.data, self.variance_epsilon, weight_offset=1.0, inplace=True
        )


class _LayerNorm(_Served):
    """vLLM ``LayerNorm`` through ``normswitch.ops.layer_norm`` (float32 compute)."""

    def forward_normswitch(self, vllm_path: Callable, x: Tensor) -> Tensor:
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


class _RMSNormGated(_Served):
    """vLLM ``RMSNormGated`` (SiLU gate, optional groups) through ``normswitch.ops.rmsnorm_fn``."""

    def forward_normswitch(self, vllm_path: Callable, x: Tensor, z: Optional[Tensor] = None) -> Tensor:
        if self.activation not in ("swish", "silu"):
            return vllm_path(self, x, z)
        return ops.rmsnorm_fn(
            x, self.weight, self.bias, z=z, eps=self.eps,
            group_size=self.group_size, norm_before_gate=self.norm_before_gate,
        )


SERVING: dict[str, type] = {
    "RMSNorm": _RMSNorm,
    "GemmaRMSNorm": _GemmaRMSNorm,
    "LayerNorm": _LayerNorm,
    "RMSNormGated": _RMSNormGated,
}
"""vLLM layer class name -> what its replacement ``Normswitch<name>`` does."""


# -- building the replacements for the installed vLLM -------------------------------------------

def _via_normswitch(vllm_path: Callable) -> Callable:
    """A platform path that hands the call to ``forward_normswitch`` with vLLM's own method."""

    def forward(self, *args, **kwargs):
        return self.forward_normswitch(vllm_path, *args, **kwargs)

    forward.__name__ = forward.__qualname__ = getattr(vllm_path, "__name__", "forward")
    return forward


def _replacement(layernorm: Any, name: str, serving: type) -> Optional[type]:
    """``Normswitch<name>``: vLLM's ``layernorm.<name>`` with each platform path it has routed
    to ``serving.forward_normswitch``; None (and logged) when there is nothing to route."""
    base = getattr(layernorm, name, None)
    if not isinstance(base, type):
        _skip(name, f"{LAYERNORM_MODULE}.{name} is not in this vLLM version")
        return None
    paths = {m: getattr(base, m) for m in PLATFORM_PATHS if callable(getattr(base, m, None))}
    if not paths:
        _skip(name, f"{LAYERNORM_MODULE}.{name} has none of {', '.join(PLATFORM_PATHS)} "
                    "(not a CustomOp in this vLLM version)")
        return None
    for method in PLATFORM_PATHS:
        if method not in paths:
            _skip(f"{name}.{method}", f"{LAYERNORM_MODULE}.{name} has no {method}", logging.INFO)
    new_name = f"Normswitch{name}"

    def body(namespace: dict) -> None:
        namespace.update({m: _via_normswitch(path) for m, path in paths.items()})
        namespace.update(__module__=__name__, __qualname__=new_name, __doc__=serving.__doc__)

    try:
        return types.new_class(new_name, (serving, base), exec_body=body)
    except Exception as exc:  # a vLLM class that cannot be subclassed this way stays vLLM's
        _skip(name, f"subclassing {LAYERNORM_MODULE}.{name} failed: {type(exc).__name__}: {exc}")
        return None


def hook_layers(layernorm: Any) -> dict[str, type]:
    """``{vLLM layer name: replacement}`` for each layer of :data:`SERVING` that ``layernorm``
    (vLLM's layernorm module) lets normswitch serve; the others are logged once and left out."""
    replacements = {}
    for name, serving in SERVING.items():
        cls = _replacement(layernorm, name, serving)
        if cls is not None:
            replacements[name] = cls
    return replacements


def _installed_layernorm() -> Optional[types.ModuleType]:
    try:
        from vllm.model_executor.layers import layernorm
    except Exception as exc:
        _skip(", ".join(SERVING), f"importing {LAYERNORM_MODULE} failed: {type(exc).__name__}: {exc}")
        return None
    return layernorm


_layernorm = _installed_layernorm()
REPLACEMENTS: dict[str, type] = {} if _layernorm is None else hook_layers(_layernorm)
"""vLLM layer class name -> its normswitch replacement, for the layers this vLLM lets us serve."""

# The replacements by name (None where this vLLM has no such layer to serve).
NormswitchRMSNorm = REPLACEMENTS.get("RMSNorm")
NormswitchGemmaRMSNorm = REPLACEMENTS.get("GemmaRMSNorm")
NormswitchLayerNorm = REPLACEMENTS.get("LayerNorm")
NormswitchRMSNormGated = REPLACEMENTS.get("RMSNormGated")


def register_layers() -> dict[str, str]:
    """Register every replacement with ``CustomOp.register_oot``.

    Returns ``{layer name: reason}`` for the layers left alone (another plugin already replaced
    them); an empty dict when all replacements are served by normswitch. Layers this vLLM does
    not let normswitch serve are in :data:`UNHOOKED` (logged when this module was imported).
    """
    from vllm.model_executor.custom_op import CustomOp, op_registry_oot

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
