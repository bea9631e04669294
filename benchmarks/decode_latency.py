"""Where the time of a decode-shape call goes (M <= 64), per implementation, on a CUDA GPU.

For each (op, M, N, impl): ``graph1`` is the harness's number (do_bench of a CUDA-graph replay
of one call, L2 flushed before each replay); ``graph20`` is a graph of 20 back-to-back calls
(per call; the launch gaps inside a graph and a warm L2 for 19 of them); ``kernels`` lists the
kernels one call launches with their device time from the CUDA profiler (CUPTI).

Two floors are timed the same way, each at 1, 2, 4, 8 and 16 warps (the fastest is kept, with its
warps): ``floor_copy`` (a Triton kernel that loads each row and stores it: the dependent DRAM round
trips of any row op) and ``floor_reduce`` (load, a full-row reduction, scale, store: an RMSNorm
without a weight, the least work a row norm does). A norm within a fraction of a microsecond of
``floor_reduce`` has no latency left to remove inside the kernel; the gap from ``empty`` to
``floor_copy`` is the memory latency no kernel avoids.
Usage: ``python benchmarks/decode_latency.py [--json FILE]``.
"""
from __future__ import annotations

import argparse
import json

import torch
import triton
import triton.language as tl
from torch.profiler import ProfilerActivity, profile
from triton.testing import do_bench

from normswitch.bench.impls import IMPLS
from normswitch.bench.runner import make_case

SHAPES = [("rms_norm", 1, 4096), ("rms_norm", 64, 4096), ("rms_norm", 1, 8192),
          ("rms_norm", 16, 1280), ("fused_add_rms_norm", 1, 4096), ("layer_norm", 1, 4096),
          ("norm_gated", 1, 4096)]
IMPL_NAMES = ("triton", "cuda", "liger", "empty", "floor_copy", "floor_reduce")
FLOOR_WARPS = (1, 2, 4, 8, 16)


@triton.jit
def _empty_kernel(X):
    pass


@triton.jit
def _floor_kernel(X, Y, N, BLOCK: tl.constexpr, REDUCE: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(X + row * N + cols, mask=mask, other=0.0)
    if REDUCE:
        xf = x.to(tl.float32)
        y = xf * tl.rsqrt(tl.sum(xf * xf, axis=0) / N + 1e-6)
        tl.store(Y + row * N + cols, y.to(Y.dtype.element_ty), mask=mask)
    else:
        tl.store(Y + row * N + cols, x, mask=mask)


def _floor(case, reduce: bool, warps: int):
    x = case.t["x"]
    y = torch.empty_like(x)
    m, n = x.shape
    block = triton.next_power_of_2(n)
    return lambda: _floor_kernel[(m,)](x, y, n, BLOCK=block, REDUCE=reduce, num_warps=warps)


def _time(fn) -> tuple[float, float]:
    """(one replay after an L2 flush, per call of a graph of 20), us."""
    g1 = graph_of(fn, 1)
    g20 = graph_of(fn, 20)
    return (1e3 * do_bench(g1.replay, warmup=10, rep=20, return_mode="median"),
            1e3 * do_bench(g20.replay, warmup=10, rep=20, return_mode="median") / 20)


def graph_of(fn, n):
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    return g


def kernels_of(fn):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    out = []
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            out.append((e.name[:60], round(e.device_time, 2)))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    a = p.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    buf = torch.empty(1, device="cuda")
    rows = []
    for op, m, n in SHAPES:
        case = make_case(op, m, n, None, torch.bfloat16, "cuda", gen)
        for impl in IMPL_NAMES:
            extra = {}
            try:
                if impl.startswith("floor_"):
                    timed = {}
                    for w in FLOOR_WARPS:
                        floor = _floor(case, impl == "floor_reduce", w)
                        timed[w] = (floor, *_time(floor))
                    best = min(FLOOR_WARPS, key=lambda w: timed[w][1])
                    fn, t1, t20 = timed[best]
                    extra = {"warps": best, "by_warps": {w: round(timed[w][1], 3) for w in FLOOR_WARPS}}
                else:
                    fn = (lambda: _empty_kernel[(1,)](buf)) if impl == "empty" else IMPLS[op][impl](case)
                    t1, t20 = _time(fn)
                ks = kernels_of(fn)
            except Exception as exc:
                print(f"{op} {m}x{n} {impl}: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                continue
            rows.append(dict(op=op, M=m, N=n, impl=impl, graph1_us=t1, graph20_us=t20, kernels=ks, **extra))
            print(f"{op:18s} {m:3d}x{n:<5d} {impl:7s} graph1 {t1:6.2f} us  graph20 {t20:6.2f} us/call"
                  f"  kernels {ks}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=0)


if __name__ == "__main__":
    main()
