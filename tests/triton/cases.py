"""Numerical checks of the triton backend's kernel-contract functions against float64 references.

Shared by the GPU tests (``test_triton_gpu.py``) and the interpreter cases (``interp_cases.py``).
Inputs are fresh random data (never zeros); given outputs are poisoned with NaN first, so an
unwritten element fails the check.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import reference as ref
from normswitch.kernels.triton import BACKEND

_GEN = torch.Generator().manual_seed(1234)


def rand(M: int, N: int, dtype: torch.dtype, device: str, *, strided: bool = False,
         shift: float = 0.0) -> torch.Tensor:
    """(M, N) random normal data plus ``shift``; with ``strided``, rows are 2N + 3 apart."""
    width = 2 * N + 3 if strided else N
    base = torch.randn(M, width, generator=_GEN, dtype=torch.float32) + shift
    return base.to(device=device, dtype=dtype)[:, :N]


def vec(N: int, device: str, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    """(N,) random parameters around 1 (weights) or 0 (scale small, for biases)."""
    return (1.0 + scale * torch.randn(N, generator=_GEN)).to(device=device, dtype=dtype)


def _poison(x: torch.Tensor) -> torch.Tensor:
    return torch.full(x.shape, float("nan"), dtype=x.dtype, device=x.device)


def check_rms_norm(device: str, dtype: torch.dtype, M: int, N: int, *, weight: bool = True,
                   offset: float = 0.0, strided: bool = False, out: bool = False,
                   w_dtype: torch.dtype = torch.float32) -> None:
    x = rand(M, N, dtype, device, strided=strided)
    w = vec(N, device, w_dtype, 0.5) if weight else None
    o = _poison(x) if out else None
    y = BACKEND.impls["rms_norm"](x, w, 1e-6, offset, o)
    assert y.shape == (M, N) and y.dtype == dtype and (o is None or y is o)
    ref.assert_close(y, ref.rms_norm(x, w, 1e-6, offset))


def check_fused_add(device: str, dtype: torch.dtype, M: int, N: int, *, inplace: bool,
                    res_dtype: Optional[torch.dtype] = None, offset: float = 0.0) -> None:
    x = rand(M, N, dtype, device).contiguous()
    r = rand(M, N, res_dtype or dtype, device, shift=0.3).contiguous()
    w = vec(N, device, scale=0.5)
    want_y, want_r = ref.fused_add_rms_norm(x, r, w, 1e-6, offset)
    x_in, r_in = x.clone(), r.clone()
    y, r_out = BACKEND.impls["fused_add_rms_norm"](x_in, r_in, w, 1e-6, offset, inplace)
    if inplace:
        assert y.data_ptr() == x_in.data_ptr() and r_out.data_ptr() == r_in.data_ptr()
    else:
        assert torch.equal(x_in, x) and torch.equal(r_in, r)
    assert r_out.dtype == r.dtype and y.dtype == dtype
    ref.assert_close(r_out, want_r.to(torch.float64), r.dtype)
    ref.assert_close(y, want_y)


def check_layer_norm(device: str, dtype: torch.dtype, M: int, N: int, *, weight: bool = True,
                     bias: bool = True, strided: bool = False, out: bool = False) -> None:
    x = rand(M, N, dtype, device, strided=strided, shift=3.0)
    w = vec(N, device, scale=0.5) if weight else None
    b = vec(N, device, torch.bfloat16, 0.5) - 1.0 if bias else None
    o = _poison(x) if out else None
    y = BACKEND.impls["layer_norm"](x, w, b, 1e-5, o)
    assert y.dtype == dtype and (o is None or y is o)
    ref.assert_close(y, ref.layer_norm(x, w, b, 1e-5))


def check_channels_first(device: str, dtype: torch.dtype, B: int, C: int, S: int) -> None:
    x = (torch.randn(B, C, S, generator=_GEN) + 2.0).to(device=device, dtype=dtype)
    w, b = vec(C, device, scale=0.5), vec(C, device, scale=0.5) - 1.0
    y = BACKEND.impls["layer_norm_channels_first"](x, w, b, 1e-6)
    assert y.shape == x.shape and y.dtype == dtype and y.is_contiguous()
    ref.assert_close(y, ref.layer_norm_channels_first(x, w, b, 1e-6))


def check_norm_gated(device: str, dtype: torch.dtype, M: int, N: int, *, group: Optional[int],
                     z: bool, before: bool, rms: bool, bias: bool, strided: bool = False,
                     out: bool = False) -> None:
    x = rand(M, N, dtype, device, strided=strided, shift=1.0)
    zz = rand(M, N, dtype, device, strided=strided) if z else None
    w = vec(N, device, scale=0.5)
    b = vec(N, device, scale=0.5) - 1.0 if bias else None
    o = _poison(x) if out else None
    g = group or N
    y, mean, rstd = BACKEND.impls["norm_gated"](x, w, b, zz, 1e-6, g, before, rms, o)
    want, want_mean, want_rstd = ref.norm_gated(x, w, b, zz, 1e-6, g, before, rms)
    assert (o is None or y is o) and rstd.shape == ((N // g) * M,) and rstd.dtype == torch.float32
    ref.assert_close(y, want)
    ref.assert_close(rstd, want_rstd, torch.float32)
    if rms:
        assert mean is None
    else:
        assert mean.shape == rstd.shape and mean.dtype == torch.float32
        ref.assert_close(mean, want_mean, torch.float32)


def check_batch_invariance(device: str, dtype: torch.dtype, N: int, sizes=(1, 3, 64, 300)) -> None:
    """Row results are bitwise identical whatever the number of rows in the call."""
    x = rand(max(sizes), N, dtype, device)
    w = vec(N, device, scale=0.5)
    b = vec(N, device, scale=0.5)
    calls = {
        "rms_norm": lambda t: BACKEND.impls["rms_norm"](t, w, 1e-6, 0.0, None),
        "layer_norm": lambda t: BACKEND.impls["layer_norm"](t, w, b, 1e-5, None),
        "fused_add": lambda t: BACKEND.impls["fused_add_rms_norm"](t, t, w, 1e-6, 0.0, False)[0],
        "gated": lambda t: BACKEND.impls["norm_gated"](t, w, b, t, 1e-6, N, True, False, None)[0],
    }
    for name, fn in calls.items():
        full = fn(x)
        for m in sizes:
            part = fn(x[-m:].clone())
            assert torch.equal(part, full[-m:]), f"{name}: rows differ between M={m} and M={max(sizes)}"
