"""Shared checks of the op tests: each op's generated cases (``DECLARATIONS[op].generate``) run on
every backend available here, forced with ``backend=`` and through the default selection (so the
fast path serves the later calls), under ``torch.compile``, plus batch invariance and call
sequences that mix parameter layouts. The backend test files use the same checks on their own
shapes (wrap the arguments in a :class:`Case`).

A result passes when every output is within ``normswitch.numerics.TOLERANCE`` of the op's float64
reference, has the dtype the contract gives it, and the inputs the op must not write are
unchanged; ``out=`` buffers are filled with NaN first, so an element left unwritten fails.
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable, Optional

import pytest
import torch
from prometheus_client import REGISTRY as PROM

import normswitch as ns
from normswitch import numerics
from normswitch._op import Case
from normswitch.ops import DECLARATIONS
from normswitch.registry import REGISTRY, BackendUnavailableError

Tensor = torch.Tensor
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
SERVES_EVERY_CASE = ("native", "triton", "cuda")
"""Backends whose ``supports`` declines no call in these dtypes (the others decline by feature)."""


# -- what runs where -------------------------------------------------------------------------
def backends(op: str, device: str) -> list[str]:
    """The backends that can run ``op`` on ``device`` in this process."""
    return [b for b in REGISTRY.names() if REGISTRY.availability(op, b, device) is None]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def grid(ops: Iterable[str], dtypes: Iterable[torch.dtype] = DTYPES) -> list:
    """``(op, device, backend, dtype)`` parameters, ids like ``rms_norm-cpu-native-bfloat16``."""
    return [pytest.param(op, device, backend, dtype, id=f"{op}-{device}-{backend}-{dtype_name(dtype)}")
            for op in ops for device in DEVICES for backend in backends(op, device) for dtype in dtypes]


def device_backends(ops: Iterable[str]) -> list:
    """``(device, backend)`` parameters for the backends that serve at least one of ``ops``."""
    pairs = dict.fromkeys((d, b) for op in ops for d in DEVICES for b in backends(op, d))
    return [pytest.param(d, b, id=f"{d}-{b}") for d, b in pairs]


def steer(monkeypatch: pytest.MonkeyPatch, op: str, backend: str) -> None:
    """Make ``backend`` the first of ``op``'s default selection (the rest of the order follows)."""
    monkeypatch.setenv(f"NORMSWITCH_BACKEND_{op.upper()}", backend)
    ns.reset()


def cases(op: str, device: str, dtype: torch.dtype) -> list[Case]:
    """The op's generated cases, with every ``out=`` buffer poisoned with NaN."""
    found = list(DECLARATIONS[op].generate(device, dtype))
    for case in found:
        if isinstance(case.kwargs.get("out"), Tensor):
            case.kwargs["out"].fill_(float("nan"))
    return found


def make_case(op: str, label: str, **kwargs) -> Case:
    """A case of ``op`` with these public arguments (for shapes the generated cases lack)."""
    return Case(DECLARATIONS[op], label, kwargs)


def kernel_args(case: Case) -> tuple:
    """The case's public arguments in kernel-contract order, defaults filled in."""
    bound = inspect.signature(case.op.public).bind(**case.kwargs)
    bound.apply_defaults()
    return tuple(bound.arguments[name] for name in case.op.kernel_args)


# -- checking one result ---------------------------------------------------------------------
def _dtype_of(name: str, case: Case) -> torch.dtype:
    if name in ("mean", "rstd"):
        return torch.float32
    return case.kwargs["residual" if name == "residual" else "x"].dtype


def assert_ok(case: Case, result, what: str = "") -> None:
    """Every output within tolerance of the float64 reference and of the contract's dtype."""
    where = f"{case.op.name} {case.label!r} {what}".rstrip()
    for name, out in case.op.outputs(result, case.kwargs).items():
        if out is not None:
            assert out.dtype == _dtype_of(name, case), f"{where}: {name} is {out.dtype}"
    for name, err, tol in case.errors(result):
        assert err <= tol, f"{where}: {name} error {err:.3g} > tolerance {tol:.3g}"


def assert_close(out: Tensor, ref: Tensor, dtype: torch.dtype, what: str = "") -> None:
    """``out`` within ``TOLERANCE[dtype]`` of the float64 ``ref`` (for checks outside a case)."""
    err, tol = numerics.max_error(out, ref), numerics.TOLERANCE[dtype]
    assert err <= tol, f"{what}: error {err:.3g} > tolerance {tol:.3g} ({dtype_name(dtype)})"


def check(case: Case, backend: Optional[str] = None, what: str = ""):
    """Run the case once (``backend=None``: the default selection) and check the result."""
    inputs = {k: v.clone() for k, v in case.kwargs.items()
              if isinstance(v, Tensor) and k not in case.op.writes}
    result = case.run(backend)
    assert_ok(case, result, what)
    for k, v in inputs.items():
        assert torch.equal(case.kwargs[k], v), f"{case.op.name} {case.label!r} {what}: wrote its input {k}"
    return result


def declines(case: Case, backend: str) -> bool:
    """True when ``backend`` does not serve this kind of call (its ``supports`` says why)."""
    try:
        case.run(backend)
    except BackendUnavailableError:
        return True
    return False


# -- fallbacks -------------------------------------------------------------------------------
def fallbacks() -> dict[tuple, float]:
    """Every sample of ``normswitch_fallbacks_total``: sorted labels -> count."""
    found = {}
    for metric in PROM.collect():
        for s in metric.samples:
            if s.name == "normswitch_fallbacks_total":
                found[tuple(sorted(s.labels.items()))] = s.value
    return found


def assert_no_fallback(before: dict, backend: str, cases_run: Iterable[Case]) -> None:
    """No fallback since ``before``; only a decline of ``backend`` (reason ``unsupported``) is
    allowed, and only when ``backend`` declines one of the cases run."""
    moved = [dict(k) for k, v in fallbacks().items() if v != before.get(k, 0.0)]
    if not moved:
        return
    expected = all(m["reason"] == "unsupported" and m["from_backend"] == backend for m in moved)
    assert expected and any(declines(c, backend) for c in cases_run), f"spurious fallback: {moved}"


# -- the generated cases ---------------------------------------------------------------------
def run_forced(op: str, device: str, backend: str, dtype: torch.dtype) -> None:
    """Each case with ``backend=`` forced: called twice, then once more after ``normswitch.reset()``."""
    served, declined = 0, []
    for case in cases(op, device, dtype):
        before = fallbacks()
        try:
            check(case, backend, "first call")
        except BackendUnavailableError:
            declined.append(case.label)
            continue
        check(case, backend, "second call")
        ns.reset()
        check(case, backend, "after reset")
        assert_no_fallback(before, backend, ())
        served += 1
    assert served, f"{backend} declined every case of {op}"
    if backend in SERVES_EVERY_CASE:
        assert not declined, f"{backend} declined {declined}"


def run_default(op: str, device: str, backend: str, dtype: torch.dtype, monkeypatch) -> None:
    """Each case through the default selection with ``backend`` first: the first call, the second
    (which records the fast entry), the third (served by the fast path), one after a reset. A
    case the backend declines is served by the next backend of the order."""
    steer(monkeypatch, op, backend)
    for case in cases(op, device, dtype):
        key = case.op.fast_key(*kernel_args(case))
        before = fallbacks()
        check(case, None, "first call")
        check(case, None, "second call")
        hit = None if key is None else REGISTRY.fast.get(key)
        assert key is None or hit is not None, f"{op} {case.label!r}: no fast entry after two calls"
        check(case, None, "on the fast path")
        ns.reset()
        check(case, None, "after reset")
        assert_no_fallback(before, backend, [case])
        if hit is not None and hit[1][1].candidates[0][0] != backend:
            assert declines(case, backend), f"{op} {case.label!r}: served by {hit[1][1].candidates[0][0]}"


def run_compiled(op: str, device: str, backend: str, dtype: torch.dtype) -> None:
    """Every case the backend serves, in one function under ``torch.compile(fullgraph=True,
    dynamic=False)`` (one graph: each call must trace without a break)."""
    decl = DECLARATIONS[op]
    served = [case for case in cases(op, device, dtype) if not declines(case, backend)]

    def every(calls):
        return [decl.public(**kwargs, backend=backend) for kwargs in calls]

    torch._dynamo.reset()
    before = fallbacks()
    results = torch.compile(every, fullgraph=True, dynamic=False)([decl.fresh(c.kwargs) for c in served])
    for case, result in zip(served, results):
        assert_ok(case, result, "compiled")
    assert_no_fallback(before, backend, ())
    torch._dynamo.reset()


# -- call sequences (the fast path's bug class) ----------------------------------------------
def check_sequence(op: str, base: dict, variants: dict[str, dict], backend: str, monkeypatch) -> None:
    """For each variant (a parameter of another layout or dtype, an ``out=``, strided rows) the
    calls base, v, v, base, v, reset, v, v, base through the default selection with ``backend``
    first: every result within tolerance, every call of one case bit-identical to its first one,
    no fallback (but a decline of the backend)."""
    steer(monkeypatch, op, backend)
    first = make_case(op, "contiguous", **base)
    for label, kwargs in variants.items():
        case = make_case(op, label, **kwargs)
        seen: dict[str, dict] = {}
        before = fallbacks()
        for step, c in enumerate((first, case, case, first, case, None, case, case, first)):
            if c is None:
                ns.reset()
                continue
            got = c.op.outputs(check(c, None, f"call {step} of {label!r}"), c.kwargs)
            want = seen.setdefault(c.label, got)
            for name, out in got.items():
                same = out is None if want[name] is None else torch.equal(out, want[name])
                assert same, f"{op} {c.label!r}: {name} of call {step} differs from the first call"
        assert_no_fallback(before, backend, [first, case])


# -- batch invariance ------------------------------------------------------------------------
def batch_shape(backend: str, device: str) -> tuple[int, int]:
    """(rows, hidden size) of the batch-invariance checks: narrow rows under Triton's interpreter."""
    return (1000, 48) if (backend, device) == ("triton", "cpu") else (1000, 1280)


def row_op_calls(x: Tensor, r: Tensor, z: Tensor, w: Tensor, b: Tensor,
                 backend: str) -> dict[str, Callable[[slice], Tensor]]:
    """Every row op (the gated norm as LayerNorm in groups and as RMSNorm) on the rows ``s`` of
    (M, N) inputs, forced onto ``backend``: the ``runs`` of :func:`check_batch_invariance`."""
    n = x.shape[1]
    return {
        "rms_norm": lambda s: ns.rms_norm(x[s], w, backend=backend),
        "fused_add_rms_norm": lambda s: ns.fused_add_rms_norm(x[s], r[s], w, backend=backend)[0],
        "layer_norm": lambda s: ns.layer_norm(x[s], w, b, backend=backend),
        "norm_gated": lambda s: ns.norm_gated(x[s], w, b, z[s], group_size=n // 4, backend=backend)[0],
        "norm_gated rms": lambda s: ns.norm_gated(x[s], w, None, z[s], is_rms_norm=True, backend=backend)[0],
    }


def check_batch_invariance(runs: dict[str, Callable[[slice], Tensor]], batch: int, row: int = 37,
                           sizes: tuple[int, ...] = (1, 7, 64)) -> None:
    """Row ``row`` computed alone, and the last ``m`` rows for ``m`` in ``sizes``, are
    bit-identical to the same rows of the whole batch. ``runs`` maps a name to a function of the
    rows (a slice) calling one op with a backend forced; one the backend declines is skipped."""
    checked = 0
    for name, run in runs.items():
        try:
            full = run(slice(None))
        except BackendUnavailableError:
            continue
        assert torch.equal(run(slice(row, row + 1))[0], full[row]), f"{name}: row {row} alone differs"
        for m in sizes:
            assert torch.equal(run(slice(batch - m, None)), full[batch - m:]), f"{name}: last {m} rows differ"
        checked += 1
    if not checked:
        pytest.skip("the backend declines every call of this check")
