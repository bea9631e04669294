"""Where the host time of one eager call goes (GPU): each layer of the public op timed on its own.

A loop of back-to-back calls at M = 1 (no sync between calls, the median of 7 loops), for the
peers (``F.rms_norm``, ``F.layer_norm``, the eager residual add then ``F.rms_norm``, FLA's
``rmsnorm_fn`` where installed, SAM's eager ``LayerNorm2d`` code) and for each layer of
normswitch's call: the public op, its fast entry's kernel function (the bound launch), the bound
launch on preallocated outputs, the fast key, ``torch.empty`` and an empty Triton kernel
(ordinary launch). Then a ``cProfile`` of the public rms_norm, gated norm (ungrouped and g=128)
and channels-first LayerNorm, and the ATen ops and CUDA API calls of ten public calls of each
(``torch.profiler``), so that a host cost that is not a Python function shows up as the driver
call it is.

Usage: ``python -m benchmarks.host_breakdown [--json FILE]`` on a machine with a CUDA GPU.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

import normswitch as ns
from normswitch.registry import REGISTRY

CALLS = 500


def host_us(fn: Callable[[], Any], calls: int = CALLS) -> float:
    """Per-call host time of ``calls`` back-to-back calls; the median of 7 loops."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
        torch.cuda.synchronize()
    return round(1e6 * statistics.median(times), 2)


@triton.jit
def _empty_kernel(x_ptr, n, BLOCK: tl.constexpr):
    pass


def _fla_rmsnorm_fn() -> Any:
    """FLA's gated RMSNorm entry point, or None where fla-core is not installed."""
    try:
        from fla.modules.norm.layernorm_gated import rmsnorm_fn
    except Exception:
        return None
    return rmsnorm_fn


def _sam_layer_norm_2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """SAM's ``LayerNorm2d.forward`` as the model runs it eagerly."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return w[:, None, None] * x + b[:, None, None]


def _fast_fn(key_fn: Callable[..., Any], *args: Any) -> Any:
    hit = REGISTRY.fast.get(key_fn(*args))
    return None if hit is None else hit[0]


def layers(N: int, dtype: torch.dtype) -> dict[str, float]:
    """Host us per call of each layer, M = 1, hidden ``N``."""
    from normswitch.ops.layer_norm import LAYER_NORM
    from normswitch.ops.rms_norm import RMS_NORM

    dev = "cuda"
    x = torch.randn(1, N, device=dev, dtype=dtype)
    z = torch.randn_like(x)
    w = torch.randn(N, device=dev, dtype=dtype)
    b = torch.randn(N, device=dev, dtype=dtype)
    r = torch.randn_like(x)
    y = torch.empty_like(x)
    eps = 1e-6
    out: dict[str, float] = {}
    with torch.inference_mode():
        out["F.rms_norm"] = host_us(lambda: F.rms_norm(x, (N,), w, eps))
        out["F.layer_norm"] = host_us(lambda: F.layer_norm(x, (N,), w, b, eps))
        out["x + r, F.rms_norm (eager fused add)"] = host_us(lambda: (F.rms_norm(x + r, (N,), w, eps)))
        gated = _fla_rmsnorm_fn()
        if gated is not None:
            for g in (None, 128):
                out[f"FLA rmsnorm_fn g={g}"] = host_us(
                    lambda g=g: gated(x, w, None, z=z, eps=eps, group_size=g, norm_before_gate=False))
        out["torch.empty"] = host_us(lambda: torch.empty((1, N), dtype=dtype, device=dev))
        out["torch.empty_like"] = host_us(lambda: torch.empty_like(x))
        out["rms_norm public"] = host_us(lambda: ns.rms_norm(x, w, eps))
        out["rms_norm fast key"] = host_us(lambda: RMS_NORM.fast_key(x, w, eps, 0.0, None))
        fn = _fast_fn(RMS_NORM.fast_key, x, w, eps, 0.0, None)
        if fn is not None:
            out["rms_norm fast fn"] = host_us(lambda: fn(x, w, eps, 0.0, None))
        from normswitch.kernels.triton import launch
        bound = launch.bind_rownorm(x, y, weight=w, is_rms=True, round_xhat=True, eps=eps, weight_offset=0.0)
        if bound is not None:
            tensors = (x, y, w, None, None, None, None, None, None)
            out["rms_norm RowLaunch (y given)"] = host_us(lambda: bound(1, tensors))
        out["rms_norm forced triton"] = host_us(lambda: ns.rms_norm(x, w, eps, backend="triton"))
        out["fused_add public"] = host_us(lambda: ns.fused_add_rms_norm(x, r, w, eps))
        out["layer_norm public"] = host_us(lambda: ns.layer_norm(x, w, b, eps))
        out["layer_norm fast key"] = host_us(lambda: LAYER_NORM.fast_key(x, w, b, eps, None))
        for g in (None, 128, 1024) if N % 1024 == 0 else (None, 128):
            out[f"norm_gated g={g} public"] = host_us(lambda g=g: ns.norm_gated(x, w, None, z, eps, g, False, True))
        img = torch.randn(1, N, 8, 8, device=dev, dtype=dtype)
        out["channels_first public"] = host_us(lambda: ns.layer_norm_channels_first(img, w, b, eps))
        out["SAM LayerNorm2d eager code"] = host_us(lambda: _sam_layer_norm_2d(img, w, b, eps))
        e = torch.empty(16, device=dev)
        out["empty triton kernel[grid]"] = host_us(lambda: _empty_kernel[(1,)](e, 16, BLOCK=16))
    return out


def profile(fn: Callable[[], Any], calls: int = 300, top: int = 14) -> str:
    """The ``top`` functions by own time in a cProfile of ``calls`` calls."""
    for _ in range(20):
        fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def api_calls(fn: Callable[[], Any]) -> list[tuple[str, int]]:
    """ATen ops and CUDA runtime/driver calls of ten calls after warm-up: names and counts."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
    return [(e.key, e.count) for e in prof.key_averages() if e.count]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    result: dict[str, Any] = {"torch": torch.__version__, "triton": triton.__version__,
                              "device": torch.cuda.get_device_name()}
    for N in (1280, 4096, 8192):
        result[f"bf16 N={N}"] = row = layers(N, torch.bfloat16)
        print(f"-- bf16 M=1 N={N}: host us per call")
        for k, v in row.items():
            print(f"  {k:32s} {v:7.2f}")
    N, dev = 4096, "cuda"
    x = torch.randn(1, N, device=dev, dtype=torch.bfloat16)
    z, w, b = torch.randn_like(x), torch.randn(N, device=dev, dtype=x.dtype), torch.randn(N, device=dev, dtype=x.dtype)
    img = torch.randn(1, N, 8, 8, device=dev, dtype=x.dtype)
    calls = {
        "norm_gated g=None": lambda: ns.norm_gated(x, w, None, z, 1e-6, None, False, True),
        "norm_gated g=128": lambda: ns.norm_gated(x, w, None, z, 1e-6, 128, False, True),
        "channels_first": lambda: ns.layer_norm_channels_first(img, w, b, 1e-6),
        "rms_norm": lambda: ns.rms_norm(x, w, 1e-6),
    }
    with torch.inference_mode():
        for name, fn in calls.items():
            text = profile(fn)
            result[f"profile {name}"] = text
            print(f"-- cProfile {name} (300 calls)\n{text}")
            apis = api_calls(fn)
            result[f"api {name}"] = apis
            print(f"-- ops and CUDA calls of 10 calls of {name}: " + ", ".join(f"{k} x{c}" for k, c in apis))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
