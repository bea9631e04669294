"""Peak extra memory of the native backend on a 1 GiB input: bytes allocated beyond the input
and the output while one call runs (CUDA: the caching allocator's peak; CPU: the process's peak
resident size, in a fresh process). Prints one JSON line per op."""
from __future__ import annotations

import argparse
import json
import resource

import torch

import normswitch as ns

ROWS, N = 1 << 17, 4096  # 2^29 bf16 elements = 1 GiB


def rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    dev = a.device
    x = torch.randn(ROWS, N, device=dev, dtype=torch.bfloat16)
    w = torch.randn(N, device=dev, dtype=torch.float32)
    b = torch.randn(N, device=dev, dtype=torch.float32)
    out = torch.zeros_like(x)  # touched: its pages count before the call
    calls = {
        "rms_norm fp32 weight": lambda: ns.rms_norm(x, w, 1e-6, backend="native", out=out),
        "layer_norm fp32 params": lambda: ns.layer_norm(x, w, b, 1e-6, backend="native", out=out),
    }
    for name, fn in calls.items():
        if dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            extra = torch.cuda.max_memory_allocated() - base
        else:
            base = rss()
            fn()
            extra = rss() - base
        print(json.dumps(dict(op=name, device=dev, input_bytes=x.numel() * 2,
                              extra_bytes=extra, extra_over_output=extra / (x.numel() * 2))))


if __name__ == "__main__":
    main()
