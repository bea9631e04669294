"""A/B of the channels-first LayerNorm kernels on a GPU, side by side in one run.

For each (positions S, channels C) of ``(1, C, S)`` bf16 (and fp32 at a few shapes): the production
Triton kernels, their launch configurations swept (one-pass limit, chunk width, positions per
tile, warps), a previous kernel file (``--old FILE``, optional), the cuda backend, a per-shape
``torch.compile`` of SAM's ``LayerNorm2d`` code (C static, positions dynamic) and a copy of the
same byte count. Times: median of ``triton.testing.do_bench`` over CUDA-graph replays (L2
flushed). Writes JSON lines to ``--json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json

import torch

import normswitch as ns
from normswitch.bench import seeds
from normswitch.bench.runner import capture
from normswitch.kernels.triton import channels_first as cf

S_GRID = (1, 16, 64, 256, 4096, 32768)
C_GRID = (256, 1280, 4096, 7168, 8192)


def graph_us(fn, warmup: float, rep: float) -> float:
    from triton.testing import do_bench

    fn()
    return 1e3 * do_bench(capture(fn), warmup=warmup, rep=rep, return_mode="median")


def compiled(C: int, dtype: torch.dtype):
    """SAM's LayerNorm2d compiled for ``C`` channels with the positions dimension dynamic."""
    fn = torch.compile(seeds.layer_norm_channels_first)

    def call(x, w, b):
        torch._dynamo.maybe_mark_dynamic(x, 2)
        return fn(x, w, b, 1e-6)
    return call


def variants(C: int, itemsize: int) -> dict[str, cf.CfConfig]:
    """The production configuration and the split/one-pass tiles around it."""
    out = {"prod": cf.cf_config(C, itemsize)}
    for chunk in (256, 512, 1024):
        for bs in (16, 32, 64, 128):
            if chunk * bs > 32768:
                continue
            for warps in (4, 8, 16):
                split = C > chunk
                block_c = chunk if split else cf.triton.next_power_of_2(C)
                if not split and chunk != min(2048, cf.triton.next_power_of_2(C)):
                    continue
                out[f"{'split' if split else 'one'} c{block_c} s{bs} w{warps}"] = cf.CfConfig(
                    split, block_c, bs, warps)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--old", help="a previous channels_first.py to time beside")
    p.add_argument("--sweep-s", default="4096,32768", help="positions where configs are swept")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--rep", type=float, default=10.0)
    a = p.parse_args()
    old = None
    if a.old:
        spec = importlib.util.spec_from_file_location("old_cf", a.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    sweep_s = {int(v) for v in a.sweep_s.split(",")}
    shapes = [(s, c, torch.bfloat16) for c in C_GRID for s in S_GRID]
    shapes += [(s, c, torch.float32) for c in (256, 1280, 4096) for s in (1, 64, 4096, 32768)]
    gen = torch.Generator("cuda").manual_seed(0)
    with open(a.json, "w") as out:
        for S, C, dtype in shapes:
            for row in run_shape(S, C, dtype, gen, old, S in sweep_s, a):
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(row, flush=True)
            torch.cuda.empty_cache()


def run_shape(S: int, C: int, dtype: torch.dtype, gen: torch.Generator, old, sweep: bool,
              a: argparse.Namespace) -> list[dict]:
    """Every implementation (and, with ``sweep``, every configuration) on one shape."""
    x = (torch.randn(1, C, S, device="cuda", generator=gen) + 0.5).to(dtype)
    w = torch.randn(C, device="cuda", generator=gen).to(dtype)
    b = torch.randn(C, device="cuda", generator=gen).to(dtype)
    nbytes = 2 * x.numel() * x.element_size()
    src = torch.randn(max(nbytes // 4, 1), device="cuda", dtype=torch.float16)
    dst = torch.empty_like(src)
    ref = seeds.layer_norm_channels_first(x.double(), w.double(), b.double(), 1e-6)
    y = torch.empty_like(x)
    fns = {
        "copy": lambda: dst.copy_(src),
        "triton": lambda: ns.layer_norm_channels_first(x, w, b, 1e-6, backend="triton"),
        "cuda": lambda: ns.layer_norm_channels_first(x, w, b, 1e-6, backend="cuda"),
        "compile": (lambda f: lambda: f(x, w, b))(compiled(C, dtype)),
    }
    if old is not None:
        fns["old"] = lambda: old.layer_norm_channels_first(x, w, b, 1e-6)
    if sweep:
        for name, cfg in variants(C, x.element_size()).items():
            fns[name] = (lambda c: lambda: cf.launch_channels_first(x, w, b, y, 1e-6, c))(cfg)
    rows = []
    for name, fn in fns.items():
        row = dict(S=S, C=C, dtype=str(dtype)[6:], impl=name, bytes=nbytes)
        try:
            got = fn()
            got = y if got is None else got
            if name != "copy":
                row["err"] = float((got.double() - ref).abs().max())
            row["us"] = graph_us(fn, a.warmup, a.rep)
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
