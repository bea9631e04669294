"""Drop-ins for SGLang's FLA ``layernorm_gated`` functions, served by ``normswitch.ops.norm_gated``.

Importable without SGLang. Deployments that patch SGLang by hand assign these over the
functions of ``sglang.kernels.ops.attention.fla.layernorm_gated`` (older releases:
``sglang.srt.layers.attention.fla.layernorm_gated``); each has the signature of the function it
replaces. The gate must be SiLU (SGLang's ``activation="swish"`` or ``"silu"``) and the FP8
``quant_heads`` output is not offered: such calls raise ``NotImplementedError`` here, while the
plugin hands them back to SGLang's own kernel.
"""
from __future__ import annotations

from typing import Optional

import torch

from normswitch import ops

Tensor = torch.Tensor

SILU_ACTIVATIONS = ("swish", "silu")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def unsupported(x: Tensor, activation: str = "swish", quant_heads: int = 0) -> Optional[str]:
    """Why normswitch cannot serve a gated-norm call with these options, or None when it can."""
    if activation not in SILU_ACTIVATIONS:
        return f"activation {activation!r} (normswitch gates with SiLU only)"
    if quant_heads:
        return "quant_heads (FP8 output) is not offered by normswitch"
    if x.dtype not in FLOAT_DTYPES:
        return f"dtype {x.dtype}"
    return None


def _check(x: Tensor, activation: str, quant_heads: int = 0) -> None:
    reason = unsupported(x, activation, quant_heads)
    if reason is not None:
        raise NotImplementedError(f"normswitch gated norm: {reason}")


def layer_norm_fwd(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    eps: float,
    z: Optional[Tensor] = None,
    out: Optional[Tensor] = None,
    group_size: Optional[int] = None,
    norm_before_gate: bool = True,
    is_rms_norm: bool = False,
    activation: str = "swish",
    quant_heads: int = 0,
) -> tuple[Tensor, Optional[Tensor], Tensor]:
    """``_layer_norm_fwd``: x (M, N); z (M, N) or (tokens, heads, N) with tokens * heads == M.

    Returns ``(out, mean or None for RMS, rstd)`` like SGLang's Triton kernel.
    """
    _check(x, activation, quant_heads)
    if z is not None and z.dim() == 3:
        z = z.reshape(x.shape)
    return ops.norm_gated(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm, out)


def rms_norm_gated(
    *,
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    z: Optional[Tensor] = None,
    eps: float = 1e-6,
    group_size: Optional[int] = None,
    norm_before_gate: bool = True,
    is_rms_norm: bool = False,
    activation: str = "swish",
) -> Tensor:
    """``rms_norm_gated``: x (..., N); z of x's shape, or (tokens, heads, N) for a 2-D x."""
    _check(x, activation)
    z = None if z is None else z.reshape(x.shape)
    return ops.layernorm_fn(x, weight, bias, z, eps, group_size, norm_before_gate, is_rms_norm)


def layernorm_fn(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    z: Optional[Tensor] = None,
    eps: float = 1e-6,
    group_size: Optional[int] = None,
    norm_before_gate: bool = True,
    is_rms_norm: bool = False,
    activation: str = "swish",
) -> Tensor:
    """``layernorm_fn``: gated LayerNorm (or RMSNorm with ``is_rms_norm``) over the last dim."""
    return rms_norm_gated(
        x=x, weight=weight, bias=bias, z=z, eps=eps, group_size=group_size,
        norm_before_gate=norm_before_gate, is_rms_norm=is_rms_norm, activation=activation,
    )


def rmsnorm_fn(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    z: Optional[Tensor] = None,
    eps: float = 1e-6,
    group_size: Optional[int] = None,
    norm_before_gate: bool = True,
    activation: str = "swish",
) -> Tensor:
    """``rmsnorm_fn``: ``layernorm_fn`` with ``is_rms_norm=True``."""
    return layernorm_fn(x, weight, bias, z, eps, group_size, norm_before_gate, True, activation)
