"""The implementations the benchmark times side by side: a table of named factories per op.

A factory takes a :class:`Case` (the op, its shape and its input tensors) and returns a
zero-argument callable that runs the op once, or raises :class:`Unavailable` with the reason.
Other backends add themselves with :func:`register` (or :func:`register_normswitch_backend`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from . import seeds

BENCH_OPS = ("rms_norm", "fused_add_rms_norm", "layer_norm", "layer_norm_channels_first",
             "norm_gated")
EPS = 1e-6


class Unavailable(RuntimeError):
    """An implementation cannot run this case (package missing, op not covered, ...)."""


@dataclass
class Case:
    """One benchmarked call: ``x`` is (M, N) (channels-first: (1, N, M)); ``group`` for norm_gated."""

    op: str
    M: int
    N: int
    dtype: torch.dtype
    group: Optional[int] = None
    t: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.op if self.group is None else f"{self.op}[g={self.group}]"

    def bytes_moved(self) -> int:
        """Fewest bytes the op must move: each input read once, each output written once."""
        el = self.M * self.N * self.t["x"].element_size()
        params = sum(self.t[k].numel() * self.t[k].element_size() for k in ("w", "b") if k in self.t)
        if self.op == "fused_add_rms_norm":
            return 4 * el + params
        if self.op == "norm_gated":
            stats = 4 * self.M * (self.N // (self.group or self.N))
            return 3 * el + params + stats
        return 2 * el + params


Factory = Callable[[Case], Callable[[], Any]]
IMPLS: dict[str, dict[str, Factory]] = {op: {} for op in BENCH_OPS}


def register(op: str, name: str, factory: Factory) -> None:
    """Add (or replace) implementation ``name`` of bench op ``op``."""
    IMPLS[op][name] = factory


def _normswitch(backend: Optional[str], case: Case) -> Callable[[], Any]:
    """The public op as a user calls it. None: the registry's own selection (the ``normswitch``
    column), whose first served backend the callable keeps as ``served_by``. A backend: that
    backend first in the op's plans while timed (:class:`normswitch.bench.served.ServedCall`),
    so eager calls take the fast path and its bound launch as a user's would; its first call,
    forced with ``backend=``, raises where the backend cannot serve the case."""
    try:
        from normswitch.platform import device_type
        from normswitch.registry import REGISTRY
    except ImportError as exc:
        raise Unavailable(f"normswitch core not importable: {exc}") from exc
    reason = backend and REGISTRY.availability(case.op, backend, device_type(case.t["x"].device))
    if reason:
        raise Unavailable(reason)
    if backend is not None:
        from .served import ServedCall

        _public_call(case, backend)()
        return ServedCall(_public_call(case, backend, forced=False), case.op, backend)
    fn = _public_call(case, None)
    from normswitch.tune.record import Recorder

    recorder = Recorder()
    REGISTRY.watch(recorder)
    try:
        fn()
    finally:
        REGISTRY.watch(None)
    fn.served_by = recorder.entries[-1]["backend"]
    return fn


IN_PLACE_ONLY = ("sgl_kernel", "vllm_c")
"""Backends whose fused add exists only in place (the engines' kernels): timed in place on
private copies of x and residual (the bytes of the out-of-place call: read both, write both);
the first call, which the error check sees, starts from the case's inputs."""


def _public_call(case: Case, backend: Optional[str], forced: bool = True) -> functools.partial:
    """The public op on the case's tensors, in the form ``backend`` serves (in place for
    :data:`IN_PLACE_ONLY`); ``forced``: with ``backend=backend``."""
    import normswitch

    t, op = case.t, case.op
    kw = {"backend": backend if forced else None}
    if op == "rms_norm":
        return functools.partial(normswitch.rms_norm, t["x"], t["w"], EPS, **kw)
    if op == "fused_add_rms_norm" and backend in IN_PLACE_ONLY:
        return functools.partial(normswitch.fused_add_rms_norm, t["x"].clone(), t["r"].clone(), t["w"], EPS,
                                 inplace=True, **kw)
    if op == "fused_add_rms_norm":
        return functools.partial(normswitch.fused_add_rms_norm, t["x"], t["r"], t["w"], EPS, **kw)
    if op == "layer_norm":
        return functools.partial(normswitch.layer_norm, t["x"], t["w"], t["b"], EPS, **kw)
    if op == "layer_norm_channels_first":
        return functools.partial(normswitch.layer_norm_channels_first, t["x"], t["w"], t["b"], EPS, **kw)
    return functools.partial(normswitch.norm_gated, t["x"], t["w"], None, t["z"], EPS,
                             case.group, False, True, **kw)


def register_normswitch_backend(name: str) -> None:
    """Time normswitch's backend ``name`` (through the public ops) on every op."""
    for op in BENCH_OPS:
        register(op, name, functools.partial(_normswitch, name))


def _torch(case: Case) -> Callable[[], Any]:
    t, n = case.t, (case.N,)
    if case.op == "rms_norm":
        return functools.partial(F.rms_norm, t["x"], n, t["w"], EPS)
    if case.op == "layer_norm":
        return functools.partial(F.layer_norm, t["x"], n, t["w"], t["b"], EPS)
    raise Unavailable(f"torch has no {case.op}")


@functools.lru_cache(maxsize=None)
def _compiled(op: str, N: int, dtype: torch.dtype, group: Optional[int]) -> Callable:
    """The models' code compiled for one hidden size (static), rows dynamic: as vLLM and SGLang
    compile (one graph per model, any batch), not one graph across hidden sizes."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    return torch.compile(getattr(seeds, op), dynamic=False)


def _compile(case: Case) -> Callable[[], Any]:
    t, fn = case.t, _compiled(case.op, case.N, case.dtype, case.group)
    rows_dim = 2 if case.op == "layer_norm_channels_first" else 0
    for name in ("x", "r", "z"):
        if name in t:
            torch._dynamo.maybe_mark_dynamic(t[name], rows_dim)
    if case.op == "rms_norm":
        return functools.partial(fn, t["x"], t["w"], EPS)
    if case.op == "fused_add_rms_norm":
        return functools.partial(fn, t["x"], t["r"], t["w"], EPS)
    if case.op in ("layer_norm", "layer_norm_channels_first"):
        return functools.partial(fn, t["x"], t["w"], t["b"], EPS)
    return functools.partial(fn, t["x"], t["w"], None, t["z"], EPS, case.group or case.N, False,
                             True)


def _import(module: str, package: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except Exception as exc:
        raise Unavailable(f"{package} not importable: {type(exc).__name__}: {exc}") from exc


def _liger(case: Case) -> Callable[[], Any]:
    t = case.t
    if case.op == "rms_norm":
        fwd = _import("liger_kernel.ops.rms_norm", "liger-kernel").rms_norm_forward
        return functools.partial(fwd, t["x"], t["w"], EPS, 0.0, "llama", None)
    if case.op == "fused_add_rms_norm":
        fwd = _import("liger_kernel.ops.fused_add_rms_norm", "liger-kernel").fused_add_rms_norm_forward
        return functools.partial(fwd, t["x"], t["r"], t["w"], EPS, 0.0, "llama")
    if case.op == "layer_norm":
        fwd = _import("liger_kernel.ops.layer_norm", "liger-kernel").layer_norm_forward
        return functools.partial(fwd, t["x"], t["w"], t["b"], EPS)
    raise Unavailable(f"liger has no {case.op}")


def _fla(case: Case) -> Callable[[], Any]:
    if case.op != "norm_gated":
        raise Unavailable(f"fla (gated norm only) has no {case.op}")
    fwd = _import("fla.modules.norm.layernorm_gated", "fla-core").layer_norm_fwd
    t = case.t
    return functools.partial(fwd, t["x"], t["w"], None, EPS, t["z"], None, case.group, False, True)


def first_output(result: Any) -> torch.Tensor:
    """The normalized output of any implementation's return value."""
    return result[0] if isinstance(result, (tuple, list)) else result


def _register_defaults() -> None:
    register_normswitch_backend("triton")
    register_normswitch_backend("native")
    register_normswitch_backend("cuda")
    register_normswitch_backend("cpu")
    register_normswitch_backend("vllm_c")
    register_normswitch_backend("sgl_kernel")
    for op in BENCH_OPS:
        register(op, "normswitch", functools.partial(_normswitch, None))
        register(op, "torch", _torch)
        register(op, "compile", _compile)
        register(op, "liger", _liger)
        register(op, "fla", _fla)


_register_defaults()
