"""CPU benchmark of normswitch's CPU path: the ops as selected by default on cpu (C++ kernels of
backend ``cpu`` for RMSNorm, fused add RMSNorm and the gated norm; ``native`` for LayerNorm) and the
native PyTorch backend, against the seeds' eager code, F.rms_norm / F.layer_norm and torch.compile
of the seeds' code; plus the dispatch overhead of a public call at M = 1.

    python benchmarks/cpu_native.py [--out benchmarks/results/cpu-native.md] [--reps 30]

By default it re-runs itself with glibc's malloc told to keep large blocks on the heap
(MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_): otherwise every allocation above 32 MB is a fresh
mmap whose page faults (about 12 ms per 32 MB here) swamp the kernels being compared.
``--page-faults`` measures with glibc's defaults instead.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import normswitch as ns
from normswitch.bench import seeds
from normswitch.registry import REGISTRY

SHAPES = ((1, 1280), (16, 4096), (256, 1280), (4096, 1280), (4096, 4096))
DTYPES = (torch.bfloat16, torch.float32)


def median_ms(fn, reps: int) -> float:
    """Median wall time of ``fn()`` in ms over ``reps`` runs after warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def cases(m: int, n: int, dtype: torch.dtype):
    x = torch.randn(m, n).to(dtype)
    w = torch.randn(n).to(dtype)
    b = torch.randn(n).to(dtype)
    rms_c = torch.compile(seeds.rms_norm, dynamic=False)
    ln_c = torch.compile(seeds.layer_norm, dynamic=False)
    yield "rms_norm", {
        "normswitch": lambda: ns.rms_norm(x, w),
        "normswitch native": lambda: ns.rms_norm(x, w, backend="native"),
        "seed eager (DeepseekV2RMSNorm)": lambda: seeds.rms_norm(x, w, 1e-6),
        "F.rms_norm": lambda: F.rms_norm(x, (n,), w, 1e-6),
        "torch.compile(seed)": lambda: rms_c(x, w, 1e-6),
    }
    yield "layer_norm", {
        "normswitch": lambda: ns.layer_norm(x, w, b),
        "normswitch native": lambda: ns.layer_norm(x, w, b, backend="native"),
        "seed eager (LayerNormfp32)": lambda: seeds.layer_norm(x, w, b, 1e-5),
        "F.layer_norm": lambda: F.layer_norm(x, (n,), w, b, 1e-5),
        "torch.compile(seed)": lambda: ln_c(x, w, b, 1e-5),
    }


def gated_cases(dtype: torch.dtype, m: int):
    n, g = 4096, 1024
    x, z = torch.randn(m, n).to(dtype), torch.randn(m, n).to(dtype)
    w, b = torch.randn(n).to(dtype), torch.randn(n).to(dtype)
    compiled = torch.compile(seeds.norm_gated, dynamic=False)
    for rms in (False, True):
        bias = None if rms else b
        yield f"norm_gated {'rms' if rms else 'ln'} ({m}, {n}, g{g})", {
            "normswitch": lambda bias=bias, rms=rms: ns.norm_gated(x, w, bias, z, 1e-6, g, True, rms),
            "normswitch native": lambda bias=bias, rms=rms: ns.norm_gated(x, w, bias, z, 1e-6, g, True, rms,
                                                                          backend="native"),
            "seed eager (_layer_norm_fwd port)": lambda bias=bias, rms=rms: seeds.norm_gated(
                x, w, bias, z, 1e-6, g, True, rms),
            "torch.compile(seed)": lambda bias=bias, rms=rms: compiled(x, w, bias, z, 1e-6, g, True, rms),
        }


def overhead_us(reps: int = 20000) -> dict[str, float]:
    """Per-call time at M = 1 of the public op vs calling the selected backend's kernel directly."""
    x, w = torch.randn(1, 1280, dtype=torch.bfloat16), torch.randn(1280, dtype=torch.bfloat16)
    ns.reset()
    ns.rms_norm(x, w, 1e-6)
    (_, (_, plan), _), = REGISTRY.fast.values()
    name, fn = plan.candidates[0]

    def per_call(f) -> float:
        for _ in range(200):
            f()
        best = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(reps // 5):
                f()
            best.append((time.perf_counter() - start) / (reps // 5) * 1e6)
        return min(best)
    kernel = per_call(lambda: fn(x, w, 1e-6, 0.0, None))
    public = per_call(lambda: ns.rms_norm(x, w, 1e-6))
    traced = per_call(lambda: torch.ops.normswitch.rms_norm(x, w, 1e-6, 0.0, None))
    return {f"{name} kernel function": kernel, "normswitch.rms_norm": public,
            "torch.ops.normswitch.rms_norm": traced, "overhead": public - kernel}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--page-faults", action="store_true", help="keep glibc's default malloc thresholds")
    args = ap.parse_args()
    if not args.page_faults and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 34), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.threads:
        torch.set_num_threads(args.threads)
    # One compiled graph per shape and dtype (dynamic=False): above Dynamo's default limit of 8 per
    # function it would silently run the eager code instead.
    torch._dynamo.config.recompile_limit = 64
    lines = [f"# normswitch on CPU (default selection and native), {datetime.date.today()}", "",
             f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
             f"torch {torch.__version__}; python {platform.python_version()}. Median of {args.reps} runs, ms. "
             "malloc: " + ("glibc defaults (page faults per call above 32 MB)" if args.page_faults
                           else "large blocks kept on the heap") + ".",
             ""]
    for dtype in DTYPES:
        groups = [(f"{op} ({m}, {n})", impls) for m, n in SHAPES for op, impls in cases(m, n, dtype)]
        groups += [case for m in (16, 4096) for case in gated_cases(dtype, m)]
        for title, impls in groups:
            times = {name: median_ms(fn, args.reps) for name, fn in impls.items()}
            ours = times["normswitch"]
            seed = next(v for k, v in times.items() if k.startswith("seed"))
            best = min(v for k, v in times.items() if not k.startswith("normswitch"))
            row = " | ".join(f"{k} {v:.3f}" for k, v in times.items())
            line = (f"- {str(dtype).split('.')[-1]} {title}: {row} | **vs seed {seed / ours:.2f}x, "
                    f"vs best alternative {ours / best:.2f}x of its time**")
            print(line, flush=True)
            lines.append(line)
    oh = overhead_us()
    line = "- dispatch at M=1 (bf16, N=1280), us per call: " + ", ".join(f"{k} {v:.2f}" for k, v in oh.items())
    print(line)
    lines.append(line)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
