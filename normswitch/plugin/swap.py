"""Swapping the norm modules of a built model for normswitch modules, in place (both engines).

An engine builds its vision towers from plain torch or transformers modules that no engine hook
reaches; the engine plugins therefore replace those modules after construction. A factory makes
the new module from the old one (sizes, eps, device, dtype); :func:`swap_modules` then copies the
parameters under the same names, so weight loading, before or after the swap, is unchanged.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from normswitch import modules

Factory = Callable[[nn.Module], nn.Module]
"""Makes the replacement of one module (parameters are copied afterwards by :func:`swap_modules`)."""


def swap_modules(root: nn.Module, factories: Mapping[type, Factory]) -> dict[str, int]:
    """Replace every submodule of ``root`` whose exact class is a key of ``factories``.

    Parameters
    ----------
    root : nn.Module
        The model (or tower) whose submodules are replaced in place.
    factories : Mapping[type, Factory]
        Old class -> function making the new module. Classes match exactly, so a subclass (such
        as normswitch's ``LayerNormFP32``, a ``torch.nn.LayerNorm``) is never swapped again.

    Returns
    -------
    dict[str, int]
        How many modules were replaced, by the new module's class name.
    """
    counts: dict[str, int] = {}
    for parent in list(root.modules()):
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


def _place(old: nn.Module) -> dict:
    """``device`` and ``dtype`` of ``old``'s weight (defaults when it has none)."""
    weight = getattr(old, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return {"device": None, "dtype": None}
    return {"device": weight.device, "dtype": weight.dtype}


def layer_norm_fp32(old: nn.LayerNorm) -> nn.Module:
    """``torch.nn.LayerNorm`` -> normswitch ``LayerNormFP32`` (float32 math, as DeepSeek-OCR's
    own ``LayerNormfp32``)."""
    return modules.LayerNormFP32(old.normalized_shape, eps=old.eps,
                                 elementwise_affine=old.elementwise_affine,
                                 bias=old.bias is not None, **_place(old))


def layer_norm_2d(old: nn.Module) -> nn.Module:
    """SAM's ``LayerNorm2d`` (``weight``, ``bias``, ``eps``; channels first) -> normswitch's."""
    return modules.LayerNorm2d(old.weight.shape[0], eps=old.eps, **_place(old))


def rms_norm(old: nn.Module) -> nn.Module:
    """An RMSNorm with ``weight`` and ``variance_epsilon`` computing ``w * (x * rstd).to(dtype)``
    (transformers' ``Qwen2RMSNorm``, ``DeepseekV2RMSNorm``) -> normswitch ``RMSNorm``."""
    return modules.RMSNorm(old.weight.shape[0], eps=old.variance_epsilon, **_place(old))
