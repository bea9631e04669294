"""The calls to tune, grouped per kind of call and row bucket, and the timing of each backend.

Calls come from the benchmark grid (:func:`grid_samples`, the grid of ``normswitch bench`` or
the shapes given on the command line) or from a record (:func:`recorded_samples`). Each call's
kind (op, dtype, hidden size, group size, features) and row bucket are the registry's own: the
call is run once through the default selection with a recorder watching (:func:`kind_of`).

Per group, every backend available on the device is first checked on every call of the group
(:mod:`.check`), then timed with the benchmark's helpers (:func:`normswitch.bench.runner.time_impl`:
device time by CUDA-graph replay on GPUs, eager host time by a loop of back-to-back calls). A
backend is timed as a user's call meets it: first in the op's plans (:func:`served_by`), called
without ``backend=``, so eager calls take the fast path and its bound launches. The choice is the
checked backend with the least mean time of the chosen metric.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch

from ..bench.runner import DTYPES, Settings, cases, make_case, op_kwargs, time_impl
from ..bench.served import served_by
from ..ops import DECLARATIONS
from ..registry import REGISTRY
from . import check
from .buckets import label, of_label
from .record import Recorder, rebuild


@dataclass
class Sample:
    """One call to time: the public op's arguments by name."""

    op: str
    label: str
    kwargs: dict[str, Any]


@dataclass
class Group:
    """The calls of one kind and row bucket on one device type."""

    device: str
    kind: tuple  # (op, dtype name, hidden size, group size, sorted features)
    bucket: int
    samples: list[Sample] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


def grid_samples(s: Settings) -> list[Sample]:
    """The calls of the benchmark grid in ``s`` (ops, M, N, dtypes), with the bench's inputs."""
    gen = torch.Generator(device=s.device).manual_seed(s.seed)
    out = []
    for op, m, n, g, d in cases(s):
        case = make_case(op, m, n, g, DTYPES[d], s.device, gen)
        out.append(Sample(op, f"{case.label} {d} {m}x{n}", op_kwargs(case)))
    return out


def recorded_samples(entries: Iterable[dict], device: str) -> tuple[list[Sample], list[str]]:
    """The recorded calls of device type ``device`` rebuilt with random tensors, and one line per
    recorded call skipped (another device type, an unknown op)."""
    out, skipped = [], []
    for i, e in enumerate(entries):
        if e["device"] != device or e["op"] not in DECLARATIONS:
            skipped.append(f"{e['op']} on {e['device']} ({e['dtype']}, rows {e['rows']}): not {device}"
                           if e["op"] in DECLARATIONS else f"unknown op {e['op']!r}")
            continue
        out.append(Sample(e["op"], f"recorded {e['op']} {e['dtype']} rows {e['rows']}", rebuild(e, device, seed=i)))
    return out, skipped


def kind_of(sample: Sample) -> tuple[str, tuple, int, int]:
    """``(device type, kind, bucket, rows)`` of a call, as the registry keys its plan."""
    recorder = Recorder()
    REGISTRY.watch(recorder)
    try:
        DECLARATIONS[sample.op].public(**DECLARATIONS[sample.op].fresh(sample.kwargs))
    finally:
        REGISTRY.watch(None)
    e = recorder.entries[-1]
    return e["device"], (e["op"], e["dtype"], e["hidden_size"], e["group_size"], tuple(e["features"])), \
        e["bucket"], e["rows"]


def group(samples: Iterable[Sample]) -> list[Group]:
    """The samples per (device type, kind, bucket), in first-seen order."""
    groups: dict[tuple, Group] = {}
    for sample in samples:
        device, kind, bucket, rows = kind_of(sample)
        g = groups.setdefault((device, kind, bucket), Group(device, kind, bucket))
        if rows not in g.rows:
            g.samples.append(sample)
            g.rows.append(rows)
    return list(groups.values())


def candidates(g: Group, allowed: Optional[tuple[str, ...]] = None) -> list[str]:
    """The backends available for the group's op on its device type (within ``allowed``)."""
    return [name for name in REGISTRY.names() if (allowed is None or name in allowed)
            and REGISTRY.availability(g.kind[0], name, g.device) is None]


def measure(g: Group, backends: list[str], s: Settings, time_fn: Callable, metric: str,
            step: Callable[[str], None] = lambda name: None, rounds: int = 1) -> Optional[dict]:
    """The group's tuning-file entry: each checked backend's mean device and host time, the
    failures, and the backend with the least ``metric`` time; None when no backend passed.
    ``step`` is called ``len(backends) * (1 + rounds)`` times (the progress bar).

    The checked backends are timed in turn, ``rounds`` times over, and each keeps its least
    time per call: on a shared CPU a burst of load then hits one round, not the choice."""
    decl = DECLARATIONS[g.kind[0]]
    failed: dict[str, str] = {}
    passed = []
    for name in backends:
        step(f"{name} (check)")
        results = [check.verify(decl, smp.kwargs, name, smp.label) for smp in g.samples]
        bad = next((r for r in results if r[0] != check.OK), None)
        if bad is None:
            passed.append(name)
        elif bad[0] == check.FAILED:
            failed[name] = bad[1]
    if not passed:
        for _ in range(rounds * len(backends)):
            step("-")
        return None
    best: dict[tuple[str, int], dict[str, float]] = {}
    for r in range(rounds):
        for _ in range(len(backends) - len(passed)):
            step("-")
        for name in passed:
            step(f"{name} (time {r + 1}/{rounds})")
            for i, smp in enumerate(g.samples):
                with served_by(g.kind[0], name, "normswitch tune"):
                    t = time_impl(functools.partial(decl.public, **smp.kwargs), s, time_fn)
                old = best.setdefault((name, i), {"us": t["us"], "host_us": t["host_us"]})
                old["us"], old["host_us"] = min(old["us"], t["us"]), min(old["host_us"], t["host_us"])
    n = len(g.samples)
    device_us = {name: round(sum(best[name, i]["us"] for i in range(n)) / n, 3) for name in passed}
    host_us = {name: round(sum(best[name, i]["host_us"] for i in range(n)) / n, 3) for name in passed}
    by = device_us if metric == "device" else host_us
    entry = {"backend": min(by, key=by.get), "rows": sorted(g.rows), "device_us": device_us, "host_us": host_us}
    if failed:
        entry["failed"] = failed
    return entry


def kinds_document(results: list[tuple[Group, dict]]) -> list[dict]:
    """The ``kinds`` list of a tuning file from (group, entry) pairs: one item per kind."""
    kinds: dict[tuple, dict] = {}
    for g, entry in results:
        op, dtype, n, grp, features = g.kind
        item = kinds.setdefault(g.kind, {"op": op, "dtype": dtype, "hidden_size": n, "group_size": grp,
                                         "features": list(features), "buckets": {}})
        item["buckets"][label(g.bucket)] = entry
    for item in kinds.values():
        item["buckets"] = dict(sorted(item["buckets"].items(), key=lambda kv: of_label(kv[0])))
    return list(kinds.values())

