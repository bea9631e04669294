"""``torch.ops.normswitch.*``: the ops as ``torch.library`` custom ops with fake implementations.

Traced calls (``torch.compile``, fake tensors, dispatch modes) go through these; eager calls go
straight to ``normswitch.dispatch``, which saves the dispatcher's ~2-3 us per call. The schemas
are functional and return contiguous tensors; ``out=`` and in-place forms copy back when traced.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import dispatch

LIB = torch.library.Library("normswitch", "DEF")
LIB.define("rms_norm(Tensor x, Tensor? weight, float eps, float weight_offset, str? backend) -> Tensor")
LIB.define(
    "fused_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps, float weight_offset,"
    " str? backend) -> (Tensor, Tensor)"
)
LIB.define("layer_norm(Tensor x, Tensor? weight, Tensor? bias, float eps, str? backend) -> Tensor")
LIB.define(
    "layer_norm_channels_first(Tensor x, Tensor weight, Tensor bias, float eps, str? backend) -> Tensor"
)
LIB.define(
    "norm_gated(Tensor x, Tensor weight, Tensor? bias, Tensor? z, float eps, int group_size,"
    " bool norm_before_gate, bool is_rms_norm, str? backend) -> (Tensor, Tensor, Tensor)"
)


def traced(x: torch.Tensor) -> bool:
    """True when the call is being traced and must appear as a custom op in the graph."""
    return (
        type(x) is not torch.Tensor
        or torch.compiler.is_compiling()
        or _get_current_dispatch_mode() is not None
    )


def _rms_norm(x, weight, eps, weight_offset, backend):
    return dispatch.rms_norm(x, weight, eps, weight_offset, None, backend).contiguous()


def _fused_add_rms_norm(x, residual, weight, eps, weight_offset, backend):
    y, r = dispatch.fused_add_rms_norm(x, residual, weight, eps, weight_offset, False, backend)
    return y.contiguous(), r.contiguous()


def _layer_norm(x, weight, bias, eps, backend):
    return dispatch.layer_norm(x, weight, bias, eps, None, backend).contiguous()


def _layer_norm_channels_first(x, weight, bias, eps, backend):
    return dispatch.layer_norm_channels_first(x, weight, bias, eps, backend).contiguous()


def _norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, backend):
    y, mean, rstd = dispatch.norm_gated(
        x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, None, backend
    )
    if mean is None:
        mean = x.new_empty((0,), dtype=torch.float32)
    return y.contiguous(), mean, rstd


for _name, _fn in {
    "rms_norm": _rms_norm,
    "fused_add_rms_norm": _fused_add_rms_norm,
    "layer_norm": _layer_norm,
    "layer_norm_channels_first": _layer_norm_channels_first,
    "norm_gated": _norm_gated,
}.items():
    LIB.impl(_name, _fn, "CompositeExplicitAutograd")


def _like(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("normswitch::rms_norm")
def _rms_norm_fake(x, weight, eps, weight_offset, backend):
    return _like(x)


@torch.library.register_fake("normswitch::fused_add_rms_norm")
def _fused_add_rms_norm_fake(x, residual, weight, eps, weight_offset, backend):
    return _like(x), _like(residual)


@torch.library.register_fake("normswitch::layer_norm")
def _layer_norm_fake(x, weight, bias, eps, backend):
    return _like(x)


@torch.library.register_fake("normswitch::layer_norm_channels_first")
def _layer_norm_channels_first_fake(x, weight, bias, eps, backend):
    return _like(x)


@torch.library.register_fake("normswitch::norm_gated")
def _norm_gated_fake(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, backend):
    stats = x.shape[0] * (x.shape[1] // group_size)
    mean = x.new_empty((0 if is_rms_norm else stats,), dtype=torch.float32)
    return _like(x), mean, x.new_empty((stats,), dtype=torch.float32)
