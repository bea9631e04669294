"""LayerNorm (float32 math, one rounding) and the gated norm on CPU against every alternative on
the machine, timed in turn like ``cpu_engines.py`` (interleaved samples, ``--repeat`` passes).

    python benchmarks/cpu_layernorm.py [--threads 2] [--repeat 3] [--out FILE.md]

LayerNorm: normswitch's default selection against ``F.layer_norm`` on the float32 upcast input
(DeepSeek-OCR's ``LayerNormfp32``, the contract), ``F.layer_norm`` on the 16-bit input as it is, and
``torch.compile`` of the upcast code. The gated norm (gate after the norm, groups of 1024):
normswitch against the seeds' eager port of ``_layer_norm_fwd`` and ``torch.compile`` of it. vLLM's
CPU ``_C`` has no LayerNorm or gated norm (its norm ops are ``rms_norm`` and
``fused_add_rms_norm``); sgl-kernel's CPU kernels are not installable here (see the results file).
The channels-first LayerNorm (SAM's neck in DeepSeek-OCR): normswitch against vLLM's
``LayerNorm2d`` module (``vllm.model_executor.models.deepencoder``, where it imports) and
``torch.compile`` of it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

import normswitch as ns
from normswitch.bench import seeds

sys.path.insert(0, str(Path(__file__).parent))
from cpu_engines import commit, interleaved_us  # noqa: E402  (the sibling script's timer)

LN_SHAPES = ((16, 1024), (16, 4096), (256, 1280), (577, 1024), (4096, 1280), (4096, 4096))
GATED_SHAPES = ((16, 4096), (256, 4096), (4096, 4096))
CF_SHAPES = ((1, 256, 64, 64), (2, 256, 16, 16))
DTYPES = (torch.bfloat16, torch.float32)


def cases(dtype: torch.dtype):
    """``(label, {column: fn})`` per shape; the first column is normswitch."""
    for m, n in LN_SHAPES:
        x, w, b = torch.randn(m, n).to(dtype), torch.randn(n).to(dtype), torch.randn(n).to(dtype)
        compiled = torch.compile(seeds.layer_norm, dynamic=False)
        yield f"layer_norm {m} x {n}", {
            "normswitch": lambda x=x, w=w, b=b: ns.layer_norm(x, w, b),
            "F.layer_norm(x.float())": lambda x=x, w=w, b=b: seeds.layer_norm(x, w, b, 1e-5),
            "F.layer_norm(x)": lambda x=x, w=w, b=b, n=n: F.layer_norm(x, (n,), w, b, 1e-5),
            "torch.compile": lambda x=x, w=w, b=b, c=compiled: c(x, w, b, 1e-5),
        }
    for m, n in GATED_SHAPES:
        x, z = torch.randn(m, n).to(dtype), torch.randn(m, n).to(dtype)
        w, b = torch.randn(n).to(dtype), torch.randn(n).to(dtype)
        compiled = torch.compile(seeds.norm_gated, dynamic=False)
        for rms in (False, True):
            bias = None if rms else b
            yield f"norm_gated {'rms' if rms else 'ln'} {m} x {n} g1024", {
                "normswitch": lambda x=x, z=z, w=w, bias=bias, rms=rms: ns.norm_gated(
                    x, w, bias, z, 1e-6, 1024, True, rms),
                "seed eager": lambda x=x, z=z, w=w, bias=bias, rms=rms: seeds.norm_gated(
                    x, w, bias, z, 1e-6, 1024, True, rms),
                "torch.compile": lambda x=x, z=z, w=w, bias=bias, rms=rms, c=compiled: c(
                    x, w, bias, z, 1e-6, 1024, True, rms),
            }
    yield from channels_first_cases(dtype)


def channels_first_cases(dtype: torch.dtype):
    """SAM's ``LayerNorm2d`` shapes against vLLM's module (eager and compiled), where it imports."""
    try:
        from vllm.model_executor.models.deepencoder import LayerNorm2d
    except ImportError as exc:
        print(f"vLLM LayerNorm2d: not importable ({exc})", file=sys.stderr)
        return
    for shape in CF_SHAPES:
        x = torch.randn(*shape).to(dtype)
        module = LayerNorm2d(shape[1], eps=1e-6).to(dtype).requires_grad_(False)
        module.weight.normal_()
        module.bias.normal_()
        compiled = torch.compile(module, dynamic=False)
        w, b = module.weight, module.bias
        yield f"layer_norm_channels_first {' x '.join(map(str, shape))}", {
            "normswitch": lambda x=x, w=w, b=b: ns.layer_norm_channels_first(x, w, b, 1e-6),
            "vLLM LayerNorm2d": lambda x=x, m=module: m(x),
            "torch.compile": lambda x=x, c=compiled: c(x),
        }


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 34), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    torch.set_num_threads(args.threads)
    # One compiled graph per shape and dtype (dynamic=False): above Dynamo's default limit of 8 per
    # function it would silently run the eager code instead.
    torch._dynamo.config.recompile_limit = 64
    lines = [f"normswitch {commit()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
             f"us per call, median of {args.repeat} passes (each the median of {args.reps} samples of 10 "
             "calls); ratio = normswitch / the fastest alternative, range over the passes", "",
             "| dtype | case | normswitch us | alternatives us | ratio to best (range) |", "|---|---|---|---|---|"]
    for dtype in DTYPES:
        groups = list(cases(dtype))
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in groups}
        for _ in range(args.repeat):
            for label, impls in groups:
                runs[label].append(interleaved_us(impls, args.reps, 10))
        for label, ts in runs.items():
            med = {k: statistics.median(t[k] for t in ts) for k in ts[0]}
            ratios = sorted(t["normswitch"] / min(v for k, v in t.items() if k != "normswitch") for t in ts)
            alts = ", ".join(f"{k} {v:.1f}" for k, v in med.items() if k != "normswitch")
            line = (f"| {str(dtype).split('.')[-1]} | {label} | {med['normswitch']:.1f} | {alts} | "
                    f"**{statistics.median(ratios):.2f}** ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")
            print(line, flush=True)
            lines.append(line)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
