"""The functions that stand in for SGLang's norm code, in SGLang's ``AROUND`` hook form.

Each takes ``(original, *args, **kwargs)``: ``original`` is SGLang's own function or method,
called unchanged whenever a call asks for something outside normswitch's op contract (SGLang's
FP8 fusions, ``variance_size_override``, a non-SiLU gate, ...) or the arguments do not fit the
signature this module knows. Such hand-backs are logged once per reason.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Optional

import torch

from normswitch import ops

from . import gated

log = logging.getLogger(__name__)

Tensor = torch.Tensor
FLOAT_DTYPES = gated.FLOAT_DTYPES

_handed_back: set[tuple[str, str]] = set()


def _hand_back(what: str, reason: str) -> None:
    """Log once per (what, reason) that a call stays on SGLang's own code."""
    if (what, reason) not in _handed_back:
        _handed_back.add((what, reason))
        log.info("normswitch: %s stays on SGLang's own code for calls with %s", what, reason)


@functools.lru_cache(maxsize=1)
def _batch_invariant_probe() -> Callable[[], bool]:
    """SGLang's batch-invariant switch (its own kernels serve that mode), or a constant False."""
    try:
        from sglang.srt.batch_invariant_ops import is_batch_invariant_mode_enabled
    except Exception:
        return lambda: False
    return is_batch_invariant_mode_enabled


# -- argument parsers: SGLang's signatures, so Python binds the arguments ------------------------

def _norm_args(x: Any, residual: Any = None, post_residual_addition: Any = None,
               quant_linear: Any = None) -> tuple:
    return x, residual, post_residual_addition, quant_linear


def _layer_norm_args(x: Any) -> Any:
    return x


def _gated_fwd_args(x: Any, weight: Any, bias: Any, eps: Any, z: Any = None, out: Any = None,
                    group_size: Any = None, norm_before_gate: Any = True, is_rms_norm: Any = False,
                    activation: str = "swish", quant_heads: int = 0) -> tuple:
    return x, activation, quant_heads


def _gated_fn_args(x: Any, weight: Any, bias: Any, z: Any = None, eps: Any = 1e-6,
                   group_size: Any = None, norm_before_gate: Any = True, is_rms_norm: Any = False,
                   activation: str = "swish") -> tuple:
    return x, activation, 0


def _rmsnorm_fn_args(x: Any, weight: Any, bias: Any, z: Any = None, eps: Any = 1e-6,
                     group_size: Any = None, norm_before_gate: Any = True,
                     activation: str = "swish") -> tuple:
    return x, activation, 0


def _gated_kw_args(*, x: Any, weight: Any, bias: Any, z: Any = None, eps: Any = 1e-6,
                   group_size: Any = None, norm_before_gate: Any = True, is_rms_norm: Any = False,
                   activation: str = "swish") -> tuple:
    return x, activation, 0


def _is_float_tensor(t: Any) -> bool:
    return isinstance(t, Tensor) and t.dtype in FLOAT_DTYPES


# -- SGLang's RMSNorm / GemmaRMSNorm / LayerNorm (srt/layers/layernorm.py) ---------------------

def _rms_reason(module: torch.nn.Module, x: Any, residual: Any, quant_linear: Any) -> Optional[str]:
    """Why this RMSNorm call stays on SGLang's code, or None."""
    if not _is_float_tensor(x):
        return "an input that is not a float16/bfloat16/float32 tensor"
    if residual is not None and (not _is_float_tensor(residual) or residual.shape != x.shape):
        return "a residual of another shape or dtype kind"
    if residual is not None and getattr(module, "fp32_residual", False):
        return "fp32_residual"
    if getattr(module, "variance_size_override", None) is not None:
        return "variance_size_override"
    if getattr(module, "override_orig_dtype", None) is not None:
        return "override_orig_dtype"
    if quant_linear is not None or getattr(module, "_quant_linear", None) is not None:
        return "a fused FP8 input quantization"
    if getattr(module, "x_pad_to_multiple", 0):
        return "x_pad_to_multiple"
    if residual is not None and not getattr(module, "has_weight", True):
        return "has_weight=False and a residual"
    if _batch_invariant_probe()():
        return "batch-invariant mode"
    return None


def _rms(original: Callable, module: torch.nn.Module, offset: float, args: tuple, kwargs: dict):
    try:
        x, residual, post, quant_linear = _norm_args(*args, **kwargs)
    except TypeError:
        _hand_back(type(module).__name__, "arguments this plugin does not know")
        return original(module, *args, **kwargs)
    reason = _rms_reason(module, x, residual, quant_linear)
    if reason is not None:
        _hand_back(type(module).__name__, reason)
        return original(module, *args, **kwargs)
    eps = module.variance_epsilon
    if residual is None:
        weight = module.weight if getattr(module, "has_weight", True) else None
        return ops.rms_norm(x, weight, eps, weight_offset=offset)
    if post is not None:
        residual = residual + post
    return ops.fused_add_rms_norm(x, residual, module.weight, eps, weight_offset=offset)


def rms_norm_forward(original: Callable, module: torch.nn.Module, *args, **kwargs):
    """SGLang ``RMSNorm.forward_*``: ``(x, residual=None, post_residual_addition=None, quant_linear=None)``."""
    return _rms(original, module, 0.0, args, kwargs)


def gemma_rms_norm_forward(original: Callable, module: torch.nn.Module, *args, **kwargs):
    """SGLang ``GemmaRMSNorm.forward_*``: RMSNorm with ``weight + 1``."""
    return _rms(original, module, 1.0, args, kwargs)


def layer_norm_forward(original: Callable, module: torch.nn.Module, *args, **kwargs):
    """SGLang ``LayerNorm.forward_*``: ``(x)``, computed in ``module.dtype`` (float32 by default)."""
    try:
        x = _layer_norm_args(*args, **kwargs)
    except TypeError:
        _hand_back("LayerNorm", "arguments this plugin does not know")
        return original(module, *args, **kwargs)
    if not _is_float_tensor(x):
        _hand_back("LayerNorm", "an input that is not a float16/bfloat16/float32 tensor")
        return original(module, *args, **kwargs)
    if module.dtype not in (torch.float32, x.dtype):
        _hand_back("LayerNorm", "a compute dtype below float32 that differs from the input's")
        return original(module, *args, **kwargs)
    weight = module.weight if module.elementwise_affine else None
    bias = module.bias if module.use_bias else None
    return ops.layer_norm(x, weight, bias, module.variance_epsilon)


# -- the FLA gated norm (kernels/ops/attention/fla/layernorm_gated.py) -------------------------

def _gated_hook(name: str, parse: Callable[..., tuple], dropin: Callable) -> Callable:
    """An AROUND hook that serves ``name`` with ``dropin`` when the call fits normswitch's contract."""

    def hook(original: Callable, *args, **kwargs):
        try:
            x, activation, quant_heads = parse(*args, **kwargs)
        except TypeError:
            _hand_back(name, "arguments this plugin does not know")
            return original(*args, **kwargs)
        reason = gated.unsupported(x, activation, quant_heads) if isinstance(x, Tensor) else "a non-tensor x"
        if reason is not None:
            _hand_back(name, reason)
            return original(*args, **kwargs)
        return dropin(*args, **kwargs)

    hook.__name__ = hook.__qualname__ = f"normswitch_{name.lstrip('_')}"
    return hook


GATED_HOOKS: dict[str, Callable] = {
    "_layer_norm_fwd": _gated_hook("_layer_norm_fwd", _gated_fwd_args, gated.layer_norm_fwd),
    "rms_norm_gated": _gated_hook("rms_norm_gated", _gated_kw_args, gated.rms_norm_gated),
    "layernorm_fn": _gated_hook("layernorm_fn", _gated_fn_args, gated.layernorm_fn),
    "rmsnorm_fn": _gated_hook("rmsnorm_fn", _rmsnorm_fn_args, gated.rmsnorm_fn),
}
"""SGLang's gated-norm function name -> its AROUND hook."""

LAYER_HOOKS: dict[str, Callable] = {
    "RMSNorm": rms_norm_forward,
    "GemmaRMSNorm": gemma_rms_norm_forward,
    "LayerNorm": layer_norm_forward,
}
"""SGLang's norm layer class name (``srt/layers/layernorm.py``) -> the hook for its forwards."""
