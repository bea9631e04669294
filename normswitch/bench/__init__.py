"""``normswitch bench``: every op, side by side with its alternatives, against the copy bandwidth.

Usage: ``normswitch bench [--ops ...] [--impls ...] [--json F] [--markdown F] [--plot F.png]``.
Implementations live in a table per op (:mod:`normswitch.bench.impls`); add one with
``normswitch.bench.impls.register(op, name, factory)``.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import sys
from typing import Any, Optional

import torch

from . import report
from .impls import BENCH_OPS, IMPLS
from .runner import EXTRA_SHAPES, M_GRID, N_GRID, Settings, run

DEFAULT_IMPLS = ("triton", "cuda", "native", "torch", "compile", "liger", "fla")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``"1x4096,4096x4096"`` -> ((1, 4096), (4096, 4096))."""
    return tuple((int(m), int(n)) for m, n in (v.split("x") for v in text.split(",") if v))


def add_grid_arguments(p: argparse.ArgumentParser, quick_help: str = "a small grid (smoke test)") -> None:
    """The grid options that ``normswitch bench`` and ``normswitch tune`` share (their defaults:
    the benchmark grid)."""
    p.add_argument("--ops", default=",".join(BENCH_OPS), help="comma-separated ops")
    p.add_argument("--M", default=",".join(map(str, M_GRID)), help="rows (comma-separated)")
    p.add_argument("--N", default=",".join(map(str, N_GRID)), help="hidden sizes (comma-separated)")
    p.add_argument("--extra-dtypes", default="float16,float32",
                   help="dtypes at a few shapes besides bfloat16 ('' for none)")
    p.add_argument("--extra-shapes", default=",".join(f"{m}x{n}" for m, n in EXTRA_SHAPES),
                   help="the MxN shapes of the extra dtypes (comma-separated)")
    p.add_argument("--quick", action="store_true", help=quick_help)


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="normswitch bench", description=__doc__.splitlines()[0])
    add_grid_arguments(p)
    p.add_argument("--impls", default=",".join(DEFAULT_IMPLS), help="comma-separated implementations")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test only)")
    p.add_argument("--warmup", type=float, default=25.0,
                   help="do_bench warm-up, ms (long enough for the clocks to rise)")
    p.add_argument("--rep", type=float, default=10.0, help="do_bench repetition time, ms")
    p.add_argument("--rounds", type=int, default=1,
                   help="time each point's implementations this many times, interleaved; report the median")
    p.add_argument("--no-graphs", action="store_true",
                   help="time eager calls only (default: also CUDA-graph replays, used for us)")
    p.add_argument("--json", help="write every row and the target check to this file")
    p.add_argument("--markdown", help="write the table as Markdown (benchmarks/results/)")
    p.add_argument("--plot", help="draw GB/s against N per op to this PNG")
    p.add_argument("--stream", help="append each measured row to this JSON-lines file at once")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(device: str) -> dict[str, Any]:
    """Device, date and versions recorded with the results."""
    name = torch.cuda.get_device_name() if device != "cpu" else platform.processor() or "cpu"
    return {"device": name, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "triton": _version("triton"), "liger-kernel": _version("liger-kernel"),
            "fla-core": _version("fla-core"), "python": platform.python_version()}


def progress(disabled: bool):
    if disabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return lambda total: tqdm(total=total, file=sys.stderr, dynamic_ncols=True)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark; prints the table and the target check; returns the exit code."""
    a = parse(argv)
    ops = tuple(o for o in a.ops.split(",") if o)
    unknown = [o for o in ops if o not in BENCH_OPS]
    impls = tuple(i for i in a.impls.split(",") if i)
    missing = [i for i in impls if not any(i in IMPLS[o] for o in BENCH_OPS)]
    if unknown or missing:
        print(f"unknown ops {unknown} or implementations {missing}; ops: {BENCH_OPS}, "
              f"implementations: {sorted({i for o in BENCH_OPS for i in IMPLS[o]})}", file=sys.stderr)
        return 2
    if a.device != "cpu" and not torch.cuda.is_available():
        print("normswitch bench: no CUDA device (use --device cpu for a smoke test)", file=sys.stderr)
        return 2
    s = Settings(ops=ops, impls=impls, m_grid=_ints(a.M), n_grid=_ints(a.N),
                 extra_dtypes=tuple(d for d in a.extra_dtypes.split(",") if d),
                 extra_shapes=shapes(a.extra_shapes), warmup_ms=a.warmup, rep_ms=a.rep, device=a.device,
                 graphs=not a.no_graphs, rounds=max(1, a.rounds), stream=a.stream)
    if a.quick:
        s.m_grid, s.n_grid, s.extra_shapes = (1, 256), (128, 1280), ((256, 1280),)
    meta = environment(a.device)
    ceilings, rows = run(s, progress(a.no_progress))
    summary = report.targets(rows, ceilings)
    shown = [i for i in impls if any(r["impl"] == i and "us" in r for r in rows)]
    print(f"{meta['device']}  {meta['date']}  torch {meta['torch']}  triton {meta['triton']}")
    print("us per call (% of copy bandwidth); median of do_bench over CUDA-graph replays "
          "(L2 flushed); last column: our eager call's host time (back-to-back loop)")
    print(report.table(rows, shown))
    print(report.summary_text(summary))
    if a.json:
        report.write_json(a.json, meta, ceilings, rows, summary)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(markdown_doc(meta, ceilings, rows, shown, summary))
    if a.plot:
        report.plot(a.plot, rows, shown, ceilings.copy_gbps)
    return 0


def markdown_doc(meta: dict, ceilings: Any, rows: list[dict], impls: list[str],
                 summary: dict) -> str:
    """The committed results page: environment, ceilings, the full table, the target check."""
    env = ", ".join(f"{k} {v}" for k, v in meta.items())
    return (f"# normswitch benchmark\n\n{env}\n\n"
            f"Copy bandwidth {ceilings.copy_gbps:.0f} GB/s (1 GiB device-to-device copy, read + "
            f"write); empty Triton kernel {ceilings.empty_us:.2f} us as a CUDA-graph replay "
            f"({ceilings.empty_eager_us:.2f} us eager). Cells: median us per call (do_bench of a "
            f"CUDA-graph replay of the call, L2 flushed before each) and, in parentheses, the op's "
            f"fewest bytes over that time as % of the copy bandwidth. Compile: the models' code "
            f"compiled per hidden size, rows dynamic. Last column: our eager call's time in a loop "
            f"of back-to-back calls (host time where it exceeds the device time).\n\n"
            f"{report.table(rows, impls, markdown=True)}\n\n"
            f"## Targets\n\n```\n{report.summary_text(summary, limit=1000)}\n```\n")
