"""DeepSeek-OCR's vision norms served by normswitch inside vLLM.

vLLM builds SAM (``nn.LayerNorm`` in its blocks, ``deepencoder.LayerNorm2d`` in its neck) and
CLIP (``nn.LayerNorm``: ``pre_layrnorm`` and two per layer) from plain torch modules, which are
not CustomOps. ``NormswitchDeepseekOCRForCausalLM`` is registered under vLLM's architecture name
``DeepseekOCRForCausalLM``; after vLLM's constructor it swaps those modules for normswitch's
float32 ``LayerNormFP32`` and ``LayerNorm2d``, keeping parameter names, so weight loading (and
``load_format="dummy"``) work unchanged. The decoder's ``RMSNorm`` layers are CustomOps and are
served through ``normswitch.plugin.vllm.layers``.

This module imports nothing beyond what vLLM's own DeepSeek-OCR needs; a swap that fails (a
vLLM whose towers changed) is logged and leaves vLLM's modules in place.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn
from vllm.model_executor.models.deepseek_ocr import DeepseekOCRForCausalLM

logger = logging.getLogger("vllm.plugins.normswitch")

ARCHITECTURE = "DeepseekOCRForCausalLM"
VISION_TOWERS = ("sam_model", "vision_model")


def _factories() -> dict[type, Callable[[nn.Module], nn.Module]]:
    """vLLM's vision norm classes -> a function making the normswitch module for one of them."""
    from vllm.model_executor.models import deepencoder

    from normswitch import modules

    def layer_norm(old: nn.LayerNorm) -> nn.Module:
        w = old.weight
        return modules.LayerNormFP32(
            old.normalized_shape, eps=old.eps, elementwise_affine=old.elementwise_affine,
            bias=old.bias is not None,
            device=None if w is None else w.device, dtype=None if w is None else w.dtype,
        )

    def layer_norm_2d(old: nn.Module) -> nn.Module:
        w = old.weight
        return modules.LayerNorm2d(w.shape[0], eps=old.eps, device=w.device, dtype=w.dtype)

    return {nn.LayerNorm: layer_norm, deepencoder.LayerNorm2d: layer_norm_2d}


def swap_vision_norms(model: nn.Module) -> dict[str, int]:
    """Replace the vision towers' norms of ``model`` in place; returns counts by new class name.

    Parameters are copied, so the swap is also correct after weights were loaded.
    """
    factories = _factories()
    counts: dict[str, int] = {}
    for tower_name in VISION_TOWERS:
        tower = getattr(model, tower_name, None)
        if tower is None:
            continue
        for parent in list(tower.modules()):
            for name, child in list(parent.named_children()):
                factory = factories.get(type(child))
                if factory is None:
                    continue
                new = factory(child)
                with torch.no_grad():
                    for pname, param in child.named_parameters(recurse=False):
                        getattr(new, pname).copy_(param)
                new.train(child.training)
                setattr(parent, name, new)
                counts[type(new).__name__] = counts.get(type(new).__name__, 0) + 1
    return counts


class NormswitchDeepseekOCRForCausalLM(DeepseekOCRForCausalLM):
    """vLLM's DeepSeek-OCR with its SAM and CLIP norms replaced by normswitch modules."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        try:
            self.normswitch_vision_norms = swap_vision_norms(self)
        except Exception as exc:  # keep vLLM's modules: the model must still run
            logger.warning("normswitch: DeepSeek-OCR vision norms left to vLLM: %s: %s",
                           type(exc).__name__, exc)
            self.normswitch_vision_norms = {}
