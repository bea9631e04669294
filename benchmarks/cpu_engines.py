"""normswitch's CPU RMSNorms against the engines' own CPU kernels, side by side in one run.

    python benchmarks/cpu_engines.py [--threads 2] [--reps 15] [--calls 10] [--out FILE.md]

Columns: normswitch's public op (default selection: backend ``cpu``), vLLM's CPU ``_C`` kernels
(``torch.ops._C.rms_norm`` / ``fused_add_rms_norm`` after ``import vllm._C``, where it imports)
and sgl-kernel's CPU kernels (``torch.ops.sgl_kernel.rmsnorm_cpu`` /
``fused_add_rmsnorm_cpu``, where installed). Each is called the way its engine calls it:
``rms_norm`` into a fresh output per call, the fused add in place; the fused add that returns
new tensors is timed against what vLLM's IR does for the functional form of an in-place kernel
(``func_impl_fn``: clone x and the residual, then the in-place kernel). The implementations are timed in
turn, ``--calls`` back-to-back calls per sample, ``--reps`` samples each, interleaved so that a
neighbour's load hits every column alike; each cell is the median sample per call, and the ratio
is normswitch over the engine kernel (below 1 is faster); ``--repeat`` passes over the table give
each ratio's spread. Also: the dispatch overhead at M = 1
(public op minus the ``cpu`` kernel function called directly; fastest of many short samples).

Like ``cpu_native.py`` it re-runs itself with glibc's malloc keeping large blocks on the heap
(``--page-faults`` keeps glibc's defaults), so a fresh 32 MB output is not a new mapping per call.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

import normswitch as ns
from normswitch.kernels import cpu

SHAPES = ((1, 1280), (1, 4096), (16, 4096), (64, 4096), (256, 1280), (4096, 1280), (4096, 4096),
          (4096, 7168))
DTYPES = (torch.bfloat16, torch.float32)
EPS = 1e-6


def engine_ops() -> dict[str, tuple[Callable, Callable]]:
    """``{engine: (rms_norm(x, w) -> y, fused_add_(x, r, w))}`` for the engine kernels that import,
    each wrapped the way its engine's layer calls it."""
    found = {}
    try:
        import vllm._C  # noqa: F401  (registers torch.ops._C)

        c = torch.ops._C

        def vllm_rms(x, w):
            y = torch.empty(x.shape, dtype=x.dtype)  # RMSNorm layer: a fresh output per call
            c.rms_norm(y, x, w, EPS)
            return y
        found["vLLM _C"] = (vllm_rms, lambda x, r, w: c.fused_add_rms_norm(x, r, w, EPS))
    except ImportError as exc:
        print(f"vLLM _C: not importable ({exc})", file=sys.stderr)
    try:
        import sgl_kernel  # noqa: F401

        s = torch.ops.sgl_kernel
        found["sgl-kernel"] = (lambda x, w: s.rmsnorm_cpu(x, w, EPS),
                               lambda x, r, w: s.fused_add_rmsnorm_cpu(x, r, w, EPS))
    except (ImportError, AttributeError, OSError) as exc:
        print(f"sgl-kernel CPU: not importable ({exc})", file=sys.stderr)
    return found


def interleaved_us(impls: dict[str, Callable], reps: int, calls: int) -> dict[str, float]:
    """Median per-call time in us of each implementation, samples of ``calls`` calls taken in turn."""
    samples: dict[str, list[float]] = {k: [] for k in impls}
    for fn in impls.values():
        for _ in range(3):
            fn()
    for _ in range(reps):
        for name, fn in impls.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    return {k: statistics.median(v) for k, v in samples.items()}


def row_cases(m: int, n: int, dtype: torch.dtype, engines: dict):
    """``(op label, {column: fn})`` for one shape: rms_norm, fused add in place, fused add returning."""
    x = torch.randn(m, n).to(dtype)
    w = torch.randn(n).to(dtype)
    xa, ra = torch.randn(m, n).to(dtype), torch.randn(m, n).to(dtype)
    yield "rms_norm", {"normswitch": lambda: ns.rms_norm(x, w, EPS),
                       **{e: (lambda f=f: f(x, w)) for e, (f, _) in engines.items()}}
    yield "fused_add in place", {
        "normswitch": lambda: ns.fused_add_rms_norm(xa, ra, w, EPS, inplace=True),
        **{e: (lambda f=f: f(xa, ra, w)) for e, (_, f) in engines.items()}}
    yield "fused_add returning", {
        "normswitch": lambda: ns.fused_add_rms_norm(x, ra, w, EPS),
        **{e: (lambda f=f: f(x.clone(), ra.clone(), w)) for e, (_, f) in engines.items()}}


def overhead_us(samples: int = 400, calls: int = 20) -> dict[str, float]:
    """Per-call us at M = 1 (bf16, N = 4096): public ops vs the ``cpu`` kernel functions directly.
    The fastest of many short samples, taken in turn: the cost of the call itself, without the
    preemptions that a neighbour's load adds to some samples."""
    x, w = torch.randn(1, 4096).to(torch.bfloat16), torch.randn(4096).to(torch.bfloat16)
    r = torch.randn(1, 4096).to(torch.bfloat16)
    impls = {
        "rms_norm kernel": lambda: cpu.rms_norm(x, w, EPS, 0.0, None),
        "rms_norm public": lambda: ns.rms_norm(x, w, EPS),
        "fused_add_ kernel": lambda: cpu.fused_add_rms_norm(x, r, w, EPS, 0.0, True),
        "fused_add_ public": lambda: ns.fused_add_rms_norm(x, r, w, EPS, inplace=True),
    }
    best = dict.fromkeys(impls, float("inf"))
    for _ in range(samples):
        for name, fn in impls.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e6)
    best["rms_norm overhead"] = best["rms_norm public"] - best["rms_norm kernel"]
    best["fused_add_ overhead"] = best["fused_add_ public"] - best["fused_add_ kernel"]
    return best


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(reps: int, calls: int, engines: dict, repeat: int) -> list[str]:
    """Markdown rows: one per (dtype, shape, op): the median over ``repeat`` passes of each column (us)
    and of normswitch's ratio to each engine, with the ratio's range over the passes. A pass
    measures every cell once (so the passes of a cell are minutes apart, under different loads)."""
    names = list(engines)
    cells = [(dtype, m, n, op) for dtype in DTYPES for m, n in SHAPES
             for op, _ in row_cases(1, 1, dtype, engines)]
    runs: dict[tuple, list[dict[str, float]]] = {c: [] for c in cells}
    for k in range(repeat):
        for dtype in DTYPES:
            for m, n in SHAPES:
                for op, impls in row_cases(m, n, dtype, engines):
                    t = interleaved_us(impls, reps, calls if m * n < 1 << 22 else max(2, calls // 4))
                    runs[(dtype, m, n, op)].append(t)
        print(f"pass {k + 1} of {repeat} done", flush=True)
    head = ["dtype", "M x N", "op", "normswitch us", *(f"{e} us" for e in names),
            *(f"ratio vs {e} (range)" for e in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dtype, m, n, op), ts in runs.items():
        med = {k: statistics.median(t[k] for t in ts) for k in ts[0]}
        ratios = {e: sorted(t["normswitch"] / t[e] for t in ts) for e in names}
        row = [str(dtype).split(".")[-1], f"{m} x {n}", op, f"{med['normswitch']:.1f}",
               *(f"{med[e]:.1f}" for e in names),
               *(f"**{statistics.median(ratios[e]):.2f}** ({ratios[e][0]:.2f}-{ratios[e][-1]:.2f})" for e in names)]
        lines.append("| " + " | ".join(row) + " |")
    print("\n".join(lines), flush=True)
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--reps", type=int, default=15, help="samples per implementation and cell")
    ap.add_argument("--calls", type=int, default=10, help="back-to-back calls per sample")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the whole table (the ratio's spread)")
    ap.add_argument("--page-faults", action="store_true", help="keep glibc's default malloc thresholds")
    args = ap.parse_args(argv)
    if not args.page_faults and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 34), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    torch.set_num_threads(args.threads)
    engines = engine_ops()
    cpu.EXTENSION.load()
    lines = [f"normswitch {commit()} on {platform.machine()} ({cpu.capability()}, kernel path "
             f"{cpu.EXTENSION.module.kernel_path()}), {torch.get_num_threads()} threads, torch {torch.__version__}, "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; per pass, median of {args.reps} "
             f"samples of {args.calls} calls (a quarter of that above 4M elements); median of {args.repeat} passes",
             ""]
    print(lines[0], flush=True)
    lines += table(args.reps, args.calls, engines, args.repeat)
    lines.append("")
    for _ in range(args.repeat):
        oh = overhead_us()
        line = "- dispatch at M=1 (bf16, N=4096), us per call: " + ", ".join(f"{k} {v:.2f}" for k, v in oh.items())
        print(line, flush=True)
        lines.append(line)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
