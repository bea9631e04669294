"""``nn.Module`` drop-ins whose forward runs the normswitch ops.

Parameter and attribute names match the modules they replace, so their state_dicts load as is.
Every module takes ``backend=None`` (force a backend: tests, benchmarks).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

from . import ops

Tensor = torch.Tensor


class RMSNorm(nn.Module):
    """Drop-in for ``DeepseekV2RMSNorm``: ``weight`` (ones), ``variance_epsilon``.

    ``forward(x)`` returns the norm; ``forward(x, residual)`` the fused add + norm pair.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6, *, backend: Optional[str] = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.variance_epsilon = eps
        self.backend = backend

    weight_offset = 0.0

    def forward(self, hidden_states: Tensor, residual: Optional[Tensor] = None):
        if residual is not None:
            return ops.fused_add_rms_norm(hidden_states, residual, self.weight, self.variance_epsilon,
                                          weight_offset=self.weight_offset, backend=self.backend)
        return ops.rms_norm(hidden_states, self.weight, self.variance_epsilon,
                            weight_offset=self.weight_offset, backend=self.backend)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.variance_epsilon}"


class GemmaRMSNorm(RMSNorm):
    """Gemma's RMSNorm: ``weight`` starts at zeros and scales by ``1 + weight``; ``eps``."""

    weight_offset = 1.0

    def __init__(self, hidden_size: int, eps: float = 1e-6, *, backend: Optional[str] = None,
                 device=None, dtype=None) -> None:
        super().__init__(hidden_size, eps, backend=backend, device=device, dtype=dtype)
        nn.init.zeros_(self.weight)

    @property
    def eps(self) -> float:
        return self.variance_epsilon


class LayerNormFP32(nn.LayerNorm):
    """Drop-in for ``LayerNormfp32``: a ``torch.nn.LayerNorm`` computed in float32."""

    def __init__(self, normalized_shape: Union[int, tuple], eps: float = 1e-5,
                 elementwise_affine: bool = True, *, bias: bool = True, backend: Optional[str] = None,
                 device=None, dtype=None) -> None:
        super().__init__(normalized_shape, eps, elementwise_affine, bias=bias, device=device, dtype=dtype)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., *normalized_shape); returns x's shape and dtype."""
        dims = len(self.normalized_shape)
        if not isinstance(x, Tensor) or tuple(x.shape[x.dim() - dims:]) != self.normalized_shape:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x: expected trailing dimensions {self.normalized_shape}, got {shape}")
        if dims == 1:
            return ops.layer_norm(x, self.weight, self.bias, self.eps, backend=self.backend)
        flat = x.reshape(*x.shape[:-dims], math.prod(self.normalized_shape))
        w = None if self.weight is None else self.weight.reshape(-1)
        b = None if self.bias is None else self.bias.reshape(-1)
        return ops.layer_norm(flat, w, b, self.eps, backend=self.backend).view(x.shape)


class LayerNorm2d(nn.Module):
    """SAM's ``LayerNorm2d``: LayerNorm over the channels of (B, C, H, W); ``weight``, ``bias``, ``eps``."""

    def __init__(self, num_channels: int, eps: float = 1e-6, *, backend: Optional[str] = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))
        self.eps = eps
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return ops.layer_norm_channels_first(x, self.weight, self.bias, self.eps, backend=self.backend)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LayerNormGated(nn.Module):
    """FLA/SGLang ``layernorm_gated.LayerNorm``: group LayerNorm gated by ``silu(z)``."""

    is_rms_norm = False

    def __init__(self, hidden_size: int, eps: float = 1e-5, group_size: Optional[int] = None,
                 norm_before_gate: bool = True, *, backend: Optional[str] = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        if self.is_rms_norm:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))
        self.eps = eps
        self.group_size = group_size
        self.norm_before_gate = norm_before_gate
        self.backend = backend

    def forward(self, x: Tensor, z: Optional[Tensor] = None) -> Tensor:
        """x, z: (..., N); returns x's shape and dtype."""
        n = x.shape[-1]
        z2 = None if z is None else z.reshape(-1, n)
        y, _, _ = ops.norm_gated(x.reshape(-1, n), self.weight, self.bias, z2, self.eps, self.group_size,
                                 self.norm_before_gate, self.is_rms_norm, backend=self.backend)
        return y.view(x.shape)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[0]}, eps={self.eps}, group_size={self.group_size}, "
                f"norm_before_gate={self.norm_before_gate}")


class RMSNormGated(LayerNormGated):
    """FLA/SGLang ``layernorm_gated.RMSNorm``: group RMSNorm gated by ``silu(z)``; no bias."""

    is_rms_norm = True
