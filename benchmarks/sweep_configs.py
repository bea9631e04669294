"""Time the row-norm kernels' launch configurations (BLOCK_M, num_warps) per row length.

Times CUDA-graph replays (do_bench, L2 flushed). Prints, per (variant, M, N), the default
configuration's time and the best one found, so the
heuristic in ``normswitch/kernels/triton/launch.py:row_config`` can be checked against data.
Usage: ``python benchmarks/sweep_configs.py [--json FILE]`` on a CUDA GPU.
"""
from __future__ import annotations

import argparse
import json

import torch
import triton
from triton.testing import do_bench

from normswitch.kernels.triton import launch

VARIANTS = {
    "rms_norm": dict(is_rms=True, round_xhat=True),
    "gated_rms_z": dict(is_rms=True, gate_first=True),
    "layer_norm": dict(is_rms=False),
    "gated_g1024": dict(is_rms=True, gate_first=True, group=1024),
}


def configs(n: int):
    block_n = triton.next_power_of_2(n)
    for block_m in (1, 2, 4, 8, 16, 32):
        if block_m * block_n > 16384 or (block_m > 1 and block_m * block_n < 512):
            continue
        for warps in (1, 2, 4, 8, 16):
            elems = block_m * block_n
            if elems // (32 * warps) < 2 or elems // (32 * warps) > 64:
                continue
            yield (False, block_m, block_n, warps)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--M", default="4096,32768")
    p.add_argument("--N", default="128,1024,1280,4096,7168,8192")
    a = p.parse_args()
    rows = []
    for name, variant in VARIANTS.items():
        for n in map(int, a.N.split(",")):
            kw = dict(variant)
            group = kw.pop("group", n)
            if n % group or group > n:
                continue
            for m in map(int, a.M.split(",")):
                x = torch.randn(m, n, device="cuda", dtype=torch.bfloat16)
                w = torch.randn(n, device="cuda", dtype=torch.bfloat16)
                y = torch.empty_like(x)
                extra = {"z": torch.randn_like(x)} if "gate_first" in kw else {}
                nbytes = (3 if extra else 2) * x.numel() * 2
                default = launch.row_config(group, launch.MAX_FUSED_N, launch.LOOP_BLOCK_N)
                res = {}
                for cfg in {default, *configs(group)}:
                    def fn(cfg=cfg, x=x, y=y, w=w, groups=n // group, kw=kw, extra=extra):
                        launch.launch_rownorm(x, y, weight=w, eps=1e-6, config=cfg,
                                              n_groups=groups, **kw, **extra)
                    graph = torch.cuda.CUDAGraph()
                    fn()
                    with torch.cuda.graph(graph):
                        fn()
                    res[cfg] = 1e3 * do_bench(graph.replay, warmup=10, rep=6, return_mode="median")
                best = min(res, key=res.get)
                row = dict(variant=name, M=m, N=n, default=list(default), default_us=res[default],
                           best=list(best), best_us=res[best], default_gbps=nbytes / res[default] / 1e3,
                           best_gbps=nbytes / res[best] / 1e3)
                rows.append(row)
                print(f"{name:12s} M={m:6d} N={n:5d} default {default[1:]} {res[default]:8.2f} us "
                      f"{row['default_gbps']:6.0f} GB/s | best {best[1:]} {res[best]:8.2f} us "
                      f"{row['best_gbps']:6.0f} GB/s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
