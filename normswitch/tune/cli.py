"""``normswitch tune``: time every backend per kind of call and row bucket, write the tuning file.

Usage::

    normswitch tune [--out tuned.yaml] [--device cuda|cpu]          # the grid of normswitch bench
    normswitch tune --M 1,64,4096 --N 1280,4096 --ops rms_norm      # given shapes
    normswitch tune --calls calls.jsonl                             # kinds recorded from a run
                                                                    # (NORMSWITCH_RECORD_CALLS)

Then ``NORMSWITCH_TUNED=tuned.yaml`` (or the config key ``tuned``) makes the registry use it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from ..bench import add_grid_arguments, progress, shapes
from ..bench.impls import BENCH_OPS
from ..bench.runner import Settings, timer
from ..platform import device_type
from ..registry import REGISTRY
from . import measure, record, tuning_file
from .buckets import label


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="normswitch tune", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="normswitch-tuned.yaml", help="the tuning file to write")
    p.add_argument("--calls", help="tune the kinds of call recorded in this file (NORMSWITCH_RECORD_CALLS)")
    add_grid_arguments(p, quick_help="a small grid and short timing (smoke test)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument("--backends", default="", help="comma-separated backends to consider (default: all available)")
    p.add_argument("--metric", choices=tuning_file.METRICS, default="device",
                   help="what the choice minimizes: device time (CUDA-graph replay on GPUs; default) or the "
                        "host time of back-to-back eager calls (engines without CUDA graphs)")
    p.add_argument("--warmup", type=float, default=25.0, help="do_bench warm-up, ms")
    p.add_argument("--rep", type=float, default=10.0, help="do_bench repetition time, ms")
    p.add_argument("--rounds", type=int, default=3,
                   help="time each backend this many times over, keeping its least time: on CPU other processes "
                        "share the cores; on GPUs each round captures a new graph, and graphs of one call "
                        "differ by a few percent")
    p.add_argument("--no-graphs", action="store_true", help="device time of eager calls, not graph replays")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds: past this, the groups not yet measured are skipped and the file is written")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def settings(a: argparse.Namespace, device: str) -> Settings:
    """The bench settings of the grid and the timing."""
    s = Settings(ops=tuple(o for o in a.ops.split(",") if o), impls=(), m_grid=_ints(a.M), n_grid=_ints(a.N),
                 extra_dtypes=tuple(d for d in a.extra_dtypes.split(",") if d),
                 extra_shapes=shapes(a.extra_shapes), warmup_ms=a.warmup,
                 rep_ms=a.rep, device=device, graphs=not a.no_graphs)
    if a.quick:
        s.m_grid, s.n_grid, s.extra_shapes, s.extra_dtypes = (1, 256), (128, 1280), ((256, 1280),), ()
        s.warmup_ms, s.rep_ms = min(s.warmup_ms, 2.0), min(s.rep_ms, 2.0)
    return s


def summary(results: list[tuple[measure.Group, Optional[dict]]]) -> str:
    """One line per kind and bucket: the choice, every backend's time, the failures."""
    lines = []
    for g, entry in results:
        op, dtype, n, grp, features = g.kind
        what = f"{op} {dtype} N={n}{f' g={grp}' if grp else ''} [{','.join(features)}] rows {label(g.bucket)}"
        if entry is None:
            lines.append(f"{what}: no backend passed the check")
            continue
        times = ", ".join(f"{k} {v:.2f}" for k, v in sorted(entry["device_us"].items(), key=lambda kv: kv[1]))
        lines.append(f"{what}: {entry['backend']} (device us: {times})")
        for name, why in entry.get("failed", {}).items():
            lines.append(f"    excluded {name}: {why}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Tune and write the file; returns the exit code (2 for bad arguments)."""
    a = parse(argv)
    deadline = time.monotonic() + a.time_limit if a.time_limit is not None else float("inf")
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not torch.cuda.is_available():
        print(f"normswitch tune: no {device} device", file=sys.stderr)
        return 2
    unknown = [o for o in a.ops.split(",") if o and o not in BENCH_OPS]
    if unknown:
        print(f"normswitch tune: unknown ops {unknown}; ops: {', '.join(BENCH_OPS)}", file=sys.stderr)
        return 2
    s = settings(a, device)
    dtype_of = device_type(torch.empty(0, device=device).device)
    if a.calls:
        try:
            entries = record.read(Path(a.calls))
        except (OSError, ValueError) as exc:
            print(f"normswitch tune: {exc}", file=sys.stderr)
            return 2
        samples, skipped = measure.recorded_samples(entries, dtype_of)
        for line in skipped:
            print(f"skipped recorded call: {line}", file=sys.stderr)
        if not samples:
            print(f"normswitch tune: {a.calls} holds no call on {dtype_of}", file=sys.stderr)
            return 2
    else:
        samples = measure.grid_samples(s)
    groups = measure.group(samples)
    allowed = tuple(b for b in a.backends.split(",") if b) or None
    per_group = [(g, measure.candidates(g, allowed)) for g in groups]
    rounds = max(1, a.rounds)
    bar = progress(a.no_progress)
    bar = bar(sum(len(c) for _, c in per_group) * (1 + rounds)) if bar else None

    def step(g: measure.Group, name: str) -> None:
        if bar is not None:
            bar.set_description(f"{g.kind[0]} {g.kind[1]} N={g.kind[2]} rows {label(g.bucket)}: {name}")
            bar.update(1)

    time_fn = timer(device)
    results, skipped = [], 0
    for g, names in per_group:
        if time.monotonic() > deadline:
            skipped += 1
            continue
        results.append((g, measure.measure(g, names, s, time_fn, a.metric, lambda n, g=g: step(g, n), rounds)))
    if bar is not None:
        bar.close()
    if skipped:
        print(f"time limit of {a.time_limit:.0f} s reached: {skipped} of {len(per_group)} groups not measured",
              file=sys.stderr)
    REGISTRY.drop_plans()  # the checks made plans under backend=; serve again from the config
    kinds = measure.kinds_document([(g, e) for g, e in results if e is not None])
    tuning_file.write(Path(a.out), a.metric, dtype_of, kinds, allowed)
    print(summary(results))
    print(f"\nwrote {a.out}: {len(kinds)} kinds of call, {sum(e is not None for _, e in results)} buckets on "
          f"{dtype_of} ({tuning_file.device_identity(dtype_of)['name']}); use it with NORMSWITCH_TUNED={a.out}")
    return 0
