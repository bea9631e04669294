"""The vision norms of DeepSeek-OCR and DeepSeek-OCR 2 served by normswitch inside vLLM.

vLLM builds these towers from modules that are not vLLM CustomOps, so no layer hook reaches them:
SAM (``torch.nn.LayerNorm`` in its blocks, ``deepencoder.LayerNorm2d`` in its neck), CLIP-L
(``torch.nn.LayerNorm``; DeepSeek-OCR) and the Qwen2 decoder used as the vision encoder
(transformers' ``Qwen2RMSNorm``; DeepSeek-OCR 2). The model classes registered by the plugin
call :func:`serve_vision_norms` after vLLM's constructor, which swaps them (``normswitch.plugin.swap``):

- ``torch.nn.LayerNorm`` -> normswitch ``LayerNormFP32`` (float32 math, as DeepSeek-OCR's own
  ``LayerNormfp32``), ``LayerNorm2d`` -> normswitch ``LayerNorm2d``;
- ``Qwen2RMSNorm`` -> vLLM's own ``RMSNorm`` layer (same math), so the encoder's norms take
  vLLM's RMSNorm path like the decoder's: the CustomOp (normswitch's replacement, registered by
  ``normswitch.plugin.vllm.layers``) or, with the op disabled, the IR op ``rms_norm`` (whose
  first provider is normswitch). A vLLM whose encoder already uses vLLM's ``RMSNorm`` has no
  ``Qwen2RMSNorm`` to swap and takes that path anyway.

Parameter names are kept, so weight loading (and ``load_format="dummy"``) work unchanged. A class
this vLLM lacks is logged once and skipped; a swap that fails leaves vLLM's modules in place.
"""
from __future__ import annotations

import importlib
import logging

from torch import nn

from .. import swap

logger = logging.getLogger("vllm.plugins.normswitch")
_logged: set[str] = set()


def _skip_once(what: str, reason: str) -> None:
    if what not in _logged:
        _logged.add(what)
        logger.warning("normswitch: %s not served by normswitch: %s", what, reason)


def vllm_rms_norm(old: nn.Module) -> nn.Module:
    """``Qwen2RMSNorm`` -> vLLM's ``RMSNorm`` layer (whose CustomOp class vLLM resolves at
    construction: normswitch's replacement when the plugin registered it)."""
    from vllm.model_executor.layers.layernorm import RMSNorm

    weight = old.weight
    return RMSNorm(weight.shape[0], eps=old.variance_epsilon).to(device=weight.device, dtype=weight.dtype)


SWAPS: tuple[tuple[str, str, swap.Factory], ...] = (
    ("torch.nn", "LayerNorm", swap.layer_norm_fp32),
    ("vllm.model_executor.models.deepencoder", "LayerNorm2d", swap.layer_norm_2d),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2RMSNorm", vllm_rms_norm),
)
"""(module, class, factory) for each vision norm class the towers are built from."""


def vision_factories() -> dict[type, swap.Factory]:
    """``{class: factory}`` for the classes of :data:`SWAPS` this installation has."""
    factories = {}
    for module_name, class_name, factory in SWAPS:
        what = f"{module_name}.{class_name}"
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except Exception as exc:
            _skip_once(what, f"not in this installation ({type(exc).__name__}: {exc})")
            continue
        factories[cls] = factory
    return factories


def swap_vision_norms(model: nn.Module, towers: tuple[str, ...]) -> dict[str, int]:
    """Swap the norms of ``model``'s ``towers`` (attribute names) in place; returns counts by
    new class name. A tower the model lacks is logged once."""
    factories = vision_factories()
    counts: dict[str, int] = {}
    for tower_name in towers:
        tower = getattr(model, tower_name, None)
        if not isinstance(tower, nn.Module):
            _skip_once(f"{type(model).__name__}.{tower_name}", "this vLLM's model has no such tower")
            continue
        for name, n in swap.swap_modules(tower, factories).items():
            counts[name] = counts.get(name, 0) + n
    return counts


def serve_vision_norms(model: nn.Module, towers: tuple[str, ...]) -> None:
    """Swap the towers' norms and record the counts in ``model.normswitch_vision_norms``; on any
    failure keep vLLM's modules (the model must still run) and log why."""
    try:
        model.normswitch_vision_norms = swap_vision_norms(model, towers)
    except Exception as exc:
        logger.warning("normswitch: %s vision norms left to vLLM: %s: %s",
                       type(model).__name__, type(exc).__name__, exc)
        model.normswitch_vision_norms = {}
