"""Launch each profiled kernel once, between cudaProfilerStart/Stop, for Nsight Compute.

Every (op, shape, implementation) is warmed up (compiled) first; then each runs once inside an
NVTX range named ``op MxN impl``. Run under ncu with ``--profile-from-start off --nvtx``:

    ncu --clock-control none --profile-from-start off --nvtx --section SpeedOfLight ... \\
        -o prof python3 benchmarks/ncu_targets.py [decode]

``decode`` profiles the small-M set instead (ours vs Liger/FLA where they were faster at M <= 64);
``decode warm`` runs each kernel once more right before its profiled launch, so that with
``--cache-control none`` its code and data are in L2 as in a decode step.
"""
from __future__ import annotations

import sys

import torch

from normswitch.bench.impls import IMPLS, Unavailable
from normswitch.bench.runner import make_case

TARGETS = [
    ("rms_norm", 32768, 4096, None, ("triton", "liger", "cuda")),
    ("rms_norm", 4096, 1280, None, ("triton", "liger")),
    ("rms_norm", 32768, 1280, None, ("triton", "liger")),
    ("layer_norm", 32768, 8192, None, ("triton", "liger", "cuda")),
    ("layer_norm_channels_first", 32768, 4096, None, ("triton", "cuda")),
    ("norm_gated", 32768, 8192, None, ("triton", "fla")),
    ("rms_norm", 1, 4096, None, ("triton", "cuda")),
]
DECODE_TARGETS = [
    ("rms_norm", 1, 4096, None, ("triton", "liger")),
    ("rms_norm", 64, 4096, None, ("triton", "liger")),
    ("rms_norm", 64, 1024, None, ("triton", "liger")),
    ("fused_add_rms_norm", 64, 4096, None, ("triton", "liger")),
    ("norm_gated", 64, 4096, None, ("triton", "fla")),
]


def main() -> int:
    gen = torch.Generator(device="cuda").manual_seed(0)
    runs = []
    for op, m, n, g, impls in DECODE_TARGETS if sys.argv[1:2] == ["decode"] else TARGETS:
        case = make_case(op, m, n, g, torch.bfloat16, "cuda", gen)
        for impl in impls:
            try:
                fn = IMPLS[op][impl](case)
                fn()
            except (Unavailable, Exception) as exc:
                print(f"skip {op} {m}x{n} {impl}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            runs.append((f"{op} {m}x{n} {impl}", fn, case))
    src = torch.randn(32768 * 4096, device="cuda").bfloat16()
    dst = torch.empty_like(src)
    runs.append(("copy 32768x4096 torch", lambda: dst.copy_(src), None))
    torch.cuda.synchronize()
    warm = sys.argv[2:3] == ["warm"]
    for label, fn, _ in runs:
        if warm:
            fn()
            torch.cuda.synchronize()
        torch.cuda.profiler.start()
        torch.cuda.nvtx.range_push(label)
        fn()
        torch.cuda.nvtx.range_pop()
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
        print("profiled", label, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
