"""Build the benchmark grid, measure the device's ceilings, and time every implementation."""
from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch

from ..numerics import max_error
from ..ops import DECLARATIONS
from .impls import EPS, IMPLS, Case, Unavailable, first_output
from .served import scope_of

M_GRID = (1, 16, 64, 256, 4096, 32768)
N_GRID = (128, 1024, 1280, 4096, 7168, 8192)
GATED_GROUPS = (None, 128, 1024)
EXTRA_DTYPES = ("float16", "float32")
EXTRA_SHAPES = ((1, 4096), (4096, 4096), (32768, 4096))
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Settings:
    """What to run and how long to time each point (do_bench's warm-up and repeat, in ms)."""

    ops: tuple[str, ...]
    impls: tuple[str, ...]
    m_grid: tuple[int, ...] = M_GRID
    n_grid: tuple[int, ...] = N_GRID
    extra_dtypes: tuple[str, ...] = EXTRA_DTYPES
    extra_shapes: tuple[tuple[int, int], ...] = EXTRA_SHAPES
    warmup_ms: float = 25.0
    rep_ms: float = 10.0
    device: str = "cuda"
    seed: int = 0
    graphs: bool = True
    rounds: int = 1
    """Timings of each implementation's ``us`` per point, taken in interleaved rounds (a rotated
    order each round) and reduced to their median, so that drift between the implementations'
    turns cancels."""
    stream: Optional[str] = None
    """A JSON-lines file that receives each row as soon as it is measured."""


@dataclass
class Ceilings:
    """Copy bandwidth (bytes read + written per second, large copy) and an empty launch."""

    copy_gbps: float
    empty_us: float
    empty_eager_us: float = 0.0
    copy_us: dict[int, float] = field(default_factory=dict)


def timer(device: str) -> Callable[[Callable[[], Any], float, float], float]:
    """Median time in us of a call: ``triton.testing.do_bench`` on GPUs, perf_counter on CPU."""
    if device != "cpu":
        from triton.testing import do_bench

        return lambda fn, warmup, rep: 1e3 * do_bench(fn, warmup=warmup, rep=rep,
                                                     return_mode="median")

    def cpu_time(fn: Callable[[], Any], warmup: float, rep: float) -> float:
        fn()
        times = []
        end = time.perf_counter() + rep / 1e3
        while time.perf_counter() < end or len(times) < 3:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e6 * statistics.median(times)

    return cpu_time


def _empty_launch(device: str) -> Callable[[], Any]:
    if device == "cpu":
        return lambda: None
    import triton

    @triton.jit
    def _empty_kernel(X):
        pass

    buf = torch.empty(1, device=device)
    return lambda: _empty_kernel[(1,)](buf)


def measure_ceilings(s: Settings, time_fn: Callable) -> Ceilings:
    """Copy bandwidth on a 1 GiB (CPU: 64 MiB) copy, and an empty Triton kernel's time (as a
    CUDA-graph replay when timing graphs, like the ops; eager too)."""
    nbytes = (1 << 30) if s.device != "cpu" else (1 << 26)
    src = torch.randn(nbytes // 2, device=s.device).to(torch.bfloat16)
    dst = torch.empty_like(src)
    us = time_fn(functools.partial(dst.copy_, src), s.warmup_ms, s.rep_ms)
    del src, dst
    launch = _empty_launch(s.device)
    launch()
    eager = time_fn(launch, s.warmup_ms, s.rep_ms)
    graphed = s.graphs and s.device != "cpu"
    empty = time_fn(capture(launch), s.warmup_ms, s.rep_ms) if graphed else eager
    return Ceilings(copy_gbps=2 * nbytes / us / 1e3, empty_us=empty, empty_eager_us=eager)


def same_bytes_copy_us(c: Ceilings, nbytes: int, s: Settings, time_fn: Callable) -> float:
    """Time of a copy that reads and writes ``nbytes`` in all (cached per size)."""
    half = max(nbytes // 2 // 2, 1)
    if half not in c.copy_us:
        src = torch.randn(half, device=s.device).to(torch.bfloat16)
        dst = torch.empty_like(src)
        c.copy_us[half] = time_fn(lambda: dst.copy_(src), s.warmup_ms, s.rep_ms)
    return c.copy_us[half]


def cases(s: Settings) -> Iterator[tuple[str, int, int, Optional[int], str]]:
    """(op, M, N, group, dtype) of the grid: bf16 everywhere, other dtypes at a few shapes."""
    shapes = [(m, n, "bfloat16") for n in s.n_grid for m in s.m_grid]
    shapes += [(m, n, d) for d in s.extra_dtypes for (m, n) in s.extra_shapes]
    for op in s.ops:
        groups = GATED_GROUPS if op == "norm_gated" else (None,)
        for g in groups:
            for m, n, d in shapes:
                if g is not None and (g >= n or n % g):
                    continue
                yield op, m, n, g, d


def make_case(op: str, M: int, N: int, group: Optional[int], dtype: torch.dtype, device: str,
              gen: torch.Generator) -> Case:
    """Random inputs (never zeros) for one point; parameters in the input's dtype."""
    def rnd(*shape: int, shift: float = 0.0) -> torch.Tensor:
        return (torch.randn(*shape, device=device, generator=gen) + shift).to(dtype)

    shape = (1, N, M) if op == "layer_norm_channels_first" else (M, N)
    t = {"x": rnd(*shape), "w": rnd(N, shift=1.0)}
    if op in ("layer_norm", "layer_norm_channels_first"):
        t["b"] = rnd(N)
    if op == "fused_add_rms_norm":
        t["r"] = rnd(M, N)
    if op == "norm_gated":
        t["z"] = rnd(M, N)
    return Case(op, M, N, dtype, group, t)


def op_kwargs(case: Case) -> dict[str, Any]:
    """The case as the public op's arguments (what the float64 reference takes too)."""
    t = case.t
    kwargs: dict[str, Any] = {"x": t["x"], "weight": t["w"]}
    if case.op in ("layer_norm", "layer_norm_channels_first"):
        kwargs.update(bias=t["b"], eps=EPS)
    elif case.op == "fused_add_rms_norm":
        kwargs.update(residual=t["r"], eps=EPS)
    elif case.op == "norm_gated":
        kwargs.update(z=t["z"], eps=EPS, group_size=case.group, norm_before_gate=False, is_rms_norm=True)
    else:
        kwargs.update(eps=EPS)
    return kwargs


def reference(case: Case) -> torch.Tensor:
    """The op's float64 reference (``normswitch.ops``) of the case's first output."""
    return DECLARATIONS[case.op].reference(**op_kwargs(case))[0]


def capture(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` captured once in a CUDA graph; returns its replay (the graph lives in the closure)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


HOST_LOOP_CALLS = 200
"""Back-to-back eager calls per host-time loop at most (fewer for calls over 10 us, so that a
loop takes about 2 ms); the median of five loops is reported."""


def eager_host_us(fn: Callable[[], Any], device: str) -> float:
    """Per-call time of a loop of back-to-back eager calls (no flush, no sync between calls):
    what a caller pays per call when the host, not the device, is the bottleneck."""
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    calls = int(min(HOST_LOOP_CALLS, max(10, 2e-3 / max(time.perf_counter() - t0, 1e-7))))
    times = []
    with torch.inference_mode():
        for _ in range(5):
            sync()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            times.append((time.perf_counter() - t0) / calls)
    return 1e6 * statistics.median(times)


def time_impl(fn: Callable[[], Any], s: Settings, time_fn: Callable) -> dict[str, Any]:
    """Eager time (do_bench of the call), the host time of back-to-back eager calls and, on GPUs,
    the time of a CUDA-graph replay of the call (device time, as engines run it); ``us`` is the
    latter (``timing`` says which)."""
    out: dict[str, Any] = {"eager_us": time_fn(fn, s.warmup_ms, s.rep_ms), "timing": "eager",
                           "host_us": eager_host_us(fn, s.device)}
    out["us"] = out["eager_us"]
    if s.graphs and s.device != "cpu":
        try:
            replay = capture(fn)
        except Exception as exc:  # not capturable: keep the eager time, say why
            out["graph_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            out.update(us=time_fn(replay, s.warmup_ms, s.rep_ms), timing="graph")
    return out


def _more_rounds(rows: list[dict], timed: dict[int, tuple[Callable[[], Any], bool]], s: Settings,
                 time_fn: Callable) -> None:
    """Rounds 2..``s.rounds`` of every timed implementation, in a rotated order each round; each
    row's ``us`` becomes the median of its rounds (``us_rounds`` keeps them). A graph-timed call
    is captured afresh each round: a replay's time depends on where its graph's buffers landed,
    which repeated replays of one graph never sample."""
    if s.rounds <= 1 or not timed:
        return
    order = list(timed)
    samples = {i: [rows[i]["us"]] for i in order}
    for r in range(1, s.rounds):
        for i in order[r % len(order):] + order[:r % len(order)]:
            fn, graph = timed[i]
            with scope_of(fn):
                samples[i].append(time_fn(capture(fn) if graph else fn, s.warmup_ms, s.rep_ms))
    for i in order:
        rows[i].update(us=statistics.median(samples[i]), us_rounds=samples[i])


def run_case(case: Case, s: Settings, c: Ceilings, time_fn: Callable) -> list[dict]:
    """Time every selected implementation on one case; one result row per implementation."""
    nbytes = case.bytes_moved()
    copy_us = same_bytes_copy_us(c, nbytes, s, time_fn)
    ref = reference(case)
    rows: list[dict] = []
    measured: list[int] = []
    timed: dict[int, tuple[Callable[[], Any], bool]] = {}  # (call, graph-timed) for more rounds
    for name in s.impls:
        row = {"op": case.op, "label": case.label, "group": case.group, "M": case.M, "N": case.N,
               "dtype": str(case.dtype).replace("torch.", ""), "impl": name, "bytes": nbytes,
               "same_bytes_copy_us": copy_us}
        factory = IMPLS[case.op].get(name)
        try:
            if factory is None:
                raise Unavailable(f"no {name} implementation of {case.op}")
            fn = factory(case)
            if getattr(fn, "served_by", None):
                row["served_by"] = fn.served_by
            with scope_of(fn):
                row["err"] = max_error(first_output(fn()), ref, ref.device)
                row.update(time_impl(fn, s, time_fn))
            measured.append(len(rows))
            timed[len(rows)] = (fn, row["timing"] == "graph")
        except Unavailable as exc:
            row["skipped"] = str(exc)
        except Exception as exc:  # a failing peer is reported, never fatal
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        rows.append(row)
    _more_rounds(rows, timed, s, time_fn)
    for i in measured:
        us = rows[i]["us"]
        rows[i].update(gbps=nbytes / us / 1e3, pct_copy=100 * nbytes / us / 1e3 / c.copy_gbps,
                       decode_bound_us=c.empty_us + nbytes / c.copy_gbps / 1e3)
    return rows


def run(s: Settings, progress: Optional[Callable[[int], Any]] = None) -> tuple[Ceilings, list[dict]]:
    """Measure the ceilings, then every case; ``progress(total)`` returns a bar with ``update``."""
    time_fn = timer(s.device)
    ceilings = measure_ceilings(s, time_fn)
    todo = list(cases(s))
    bar = progress(len(todo)) if progress else None
    gen = torch.Generator(device=s.device).manual_seed(s.seed)
    rows: list[dict] = []
    for op, m, n, g, d in todo:
        if bar is not None:
            bar.set_description(f"{op} g={g} {d} {m}x{n}")
        case = make_case(op, m, n, g, DTYPES[d], s.device, gen)
        new = run_case(case, s, ceilings, time_fn)
        rows += new
        if s.stream:
            with open(s.stream, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in new)
        del case
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return ceilings, rows
