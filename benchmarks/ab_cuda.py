"""A/B of the own CUDA row-norm kernels' launch plan: chunks (16 bytes) cached per thread.

Each variant is a copy of ``normswitch/kernels/cuda/csrc`` with a textual edit, built as its own
extension; the timing run swaps it in as the loaded module and times the cuda backend (and the
Triton backend once, for reference) as CUDA-graph replays with the L2 flushed (the harness's
method) at decode and large shapes.
Usage: ``python benchmarks/ab_cuda.py --build VARIANT`` (one per process, in parallel), then
``python benchmarks/ab_cuda.py``.
"""
from __future__ import annotations

import argparse
import os
import shutil

import torch
from triton.testing import do_bench

from normswitch.bench.impls import IMPLS
from normswitch.bench.runner import make_case
from normswitch.kernels.cuda import build

ROOT = "/tmp/ns_ab_cuda"
CAP = ("row_norm.cu", "return vpt > 16 ? 16 : vpt;")
WIDE = [("row_norm.cu", "constexpr int kMaxRowThreads = 256;", "constexpr int kMaxRowThreads = 512;"),
        ("row_norm.cu", "constexpr int kRowThreads = 256;", "constexpr int kRowThreads = 512;"),
        ("row_norm.cuh", "constexpr int kCachedThreads = 256;", "constexpr int kCachedThreads = 512;"),
        ("row_norm.cuh", "__launch_bounds__(kCachedThreads, 3)", "__launch_bounds__(kCachedThreads, 2)")]
VARIANTS = {
    "cur": [],
    "vpt4": [(*CAP, "return vpt > 4 ? 4 : vpt;")],
    "vpt2w512": [(*CAP, "return vpt > 2 ? 2 : vpt;"), *WIDE],
    "vpt4w512": [(*CAP, "return vpt > 4 ? 4 : vpt;"), *WIDE],
}
SHAPES = [("rms_norm", 1, 4096), ("rms_norm", 64, 4096), ("rms_norm", 1, 8192), ("rms_norm", 16, 1280),
          ("fused_add_rms_norm", 1, 4096), ("layer_norm", 1, 4096), ("norm_gated", 1, 4096),
          ("rms_norm", 4096, 4096), ("rms_norm", 32768, 1280), ("rms_norm", 32768, 4096),
          ("rms_norm", 32768, 8192), ("fused_add_rms_norm", 32768, 4096),
          ("layer_norm", 32768, 4096), ("layer_norm", 32768, 8192), ("norm_gated", 32768, 4096)]


def load_variant(name: str):
    from torch.utils import cpp_extension

    src = os.path.join(ROOT, name, "src")
    if os.path.isdir(src):
        shutil.rmtree(src)
    shutil.copytree(build.CSRC, src)
    for fname, old, new in VARIANTS[name]:
        path = os.path.join(src, fname)
        text = open(path).read()
        assert old in text, (name, fname, old)
        open(path, "w").write(text.replace(old, new))
    os.environ["TORCH_CUDA_ARCH_LIST"] = build.arch()
    out = os.path.join(ROOT, name, "build")
    os.makedirs(out, exist_ok=True)
    return cpp_extension.load(name=f"ns_ab_{name}", sources=[os.path.join(src, s) for s in build.SOURCES],
                              extra_cflags=["-O3"], extra_cuda_cflags=["-O3", "-lineinfo"],
                              extra_include_paths=[src], build_directory=out, verbose=False)


def graph_us(fn) -> float:
    fn()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return 1e3 * do_bench(g.replay, warmup=10, rep=10, return_mode="median")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--build")
    a = p.parse_args()
    if a.build:
        load_variant(a.build)
        return
    mods = {}
    for v in VARIANTS:
        try:
            mods[v] = load_variant(v)
        except Exception as exc:
            print(f"variant {v}: {type(exc).__name__}: {str(exc)[-300:]}", flush=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    print("op M N | triton | " + " | ".join(mods), flush=True)
    for op, m, n in SHAPES:
        case = make_case(op, m, n, None, torch.bfloat16, "cuda", gen)
        tri = IMPLS[op]["triton"](case)
        ref = tri()
        ref = (ref[0] if isinstance(ref, tuple) else ref).float().clone()
        cells = [f"{graph_us(tri):7.2f}"]
        for mod in mods.values():
            build.EXTENSION.module = mod
            fn = IMPLS[op]["cuda"](case)
            out = fn()
            out = (out[0] if isinstance(out, tuple) else out).float()
            err = float((out - ref).norm() / ref.norm())
            cells.append(f"{graph_us(fn):7.2f}{'' if err < 1e-2 else ' ERR%.0e' % err}")
        print(f"{op} {m} {n} | " + " | ".join(cells), flush=True)
        del case
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
