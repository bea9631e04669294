"""Backends per op, availability, selection by the input's device type, and fallback.

A backend module registers one implementation per op it serves with :func:`register_impl`;
the registry checks that the implementation takes the op's kernel-contract arguments (names
and order, declared by the op in ``normswitch/ops/``). A backend's module is imported the first
time the backend is considered, so importing normswitch loads no kernel library.

For each kind of call (op, device type, dtype, hidden size, group size, call features, forced
backend) and row bucket (:mod:`normswitch.tune.buckets`) the registry makes a :class:`Plan`
once: the tuned backend of that kind and bucket where a tuning file names one (unless the
backend is fixed by ``backend=`` or a variable), then the configured backends that are
available and support the call, in order. A backend that declines (``supports`` returns a reason) is
skipped for that kind of call only; a backend that raises while running is reported once,
dropped from that kind of call, and the next one serves.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from . import metrics
from .config import Config, load_config
from .contracts import check_contract
from .platform import tensor_device_type
from .tune import buckets
from .tune.choose import tuned_choice

log = logging.getLogger("normswitch")

BACKEND_MODULES = {
    "triton": "normswitch.kernels.triton",
    "cuda": "normswitch.kernels.cuda",
    "cpu": "normswitch.kernels.cpu",
    "sgl_kernel": "normswitch.kernels.sgl_kernel",
    "vllm_c": "normswitch.kernels.vllm_c",
    "native": "normswitch.fallbacks",
}
"""The packaged backends and the module that registers each one's implementations."""

_BROKEN = "error: failed earlier in this process"  # already reported when it failed


class BackendUnavailableError(RuntimeError):
    """No backend may serve a call: ``on_unavailable: error``, or a ``backend=`` that cannot."""


@dataclass(frozen=True)
class Call:
    """The features of one kind of op call that a backend may accept or decline.

    ``features`` holds names such as ``weight``, ``bias``, ``out``, ``strided`` (rows not
    packed), ``inplace``, ``offset`` (weight offset != 0), ``gemma`` (offset == 1), ``mixed``
    (a parameter of another dtype than x), ``residual_mixed``, ``z``, ``z_mixed``,
    ``gate_first``, ``rms``, ``grouped``; each op's ``features`` function says which it sets.
    """

    op: str
    device_type: str
    dtype: torch.dtype
    hidden_size: int
    features: frozenset = frozenset()
    group_size: int = 0


Reason = Optional[str]


def _always(call: Call) -> Reason:
    return None


@dataclass
class Impl:
    """One backend's implementation of one op.

    ``available(device_type)`` and ``supports(call)`` return None or the reason they cannot
    serve; ``details(device_type)`` is an optional line for ``normswitch info``.
    """

    op: str
    backend: str
    fn: Callable[..., Any]
    available: Callable[[str], Reason]
    supports: Callable[[Call], Reason] = _always
    details: Optional[Callable[[str], str]] = None


@dataclass
class Plan:
    """The backends that will serve one kind of call, in order, and the policy for failures."""

    call: Call
    candidates: list[tuple[str, Callable]]
    policy: str
    bucket: str = "all"
    """The row bucket's label where a tuning file is in force for the device type, else ``all``."""
    source: str = ""
    """Where the first candidate came from (the tuning file and its times, or the config)."""


class Registry:
    """Holds the op contracts, the implementations, the config, and the cached plans."""

    def __init__(self) -> None:
        self.contracts: dict[str, tuple[str, ...]] = {}
        self.impls: dict[str, dict[str, Impl]] = {}
        self._imported: dict[str, Reason] = {}
        self._config: Optional[Config] = None
        self._availability: dict[tuple[str, str, str], Reason] = {}
        self._plans: dict[tuple, Plan] = {}
        self._broken: dict[Call, set[str]] = {}
        self._reported: set[tuple[str, str, str, str]] = set()
        self.fast: dict[tuple, tuple[Callable, tuple[tuple, Plan], tuple]] = {}
        """Fast-path keys of validated calls -> (the plan's first function, (plan key, plan),
        scalar fixes); see ``normswitch._op``. Not used while calls are counted or recorded."""
        self.count_calls = False
        self.recorder: Optional[Any] = None
        """A ``normswitch.tune.record.Recorder`` that sees every unforced call, or None."""
        self.watching = False
        """True while calls are counted or recorded: they skip the fast path."""
        self._tables: dict[str, Optional[dict]] = {}

    # -- ops and implementations -----------------------------------------------------------
    def declare(self, op: str, kernel_args: tuple[str, ...]) -> None:
        """Declare an op and the argument names of its kernel contract."""
        self.contracts[op] = tuple(kernel_args)
        self.impls.setdefault(op, {})

    def register_impl(self, op: str, backend: str, fn: Callable[..., Any], *,
                      available: Callable[[str], Reason],
                      supports: Callable[[Call], Reason] = _always,
                      details: Optional[Callable[[str], str]] = None) -> None:
        """Register ``backend``'s implementation of ``op``; clears cached plans.

        Raises ``ValueError`` when ``op`` is unknown or ``fn`` does not take the kernel
        contract's arguments (same names, same order).
        """
        if op not in self.contracts:
            raise ValueError(f"register_impl: unknown op {op!r}; declared: {', '.join(self.contracts)}")
        check_contract(op, self.contracts[op], fn, backend)
        self.impls[op][backend] = Impl(op, backend, fn, available, supports, details)
        self._imported.setdefault(backend, None)
        self._availability.clear()
        self.drop_plans()

    def unregister(self, backend: str) -> None:
        """Remove every implementation of ``backend`` (tests)."""
        for per_op in self.impls.values():
            per_op.pop(backend, None)
        self._imported.pop(backend, None)
        self.reset()

    def names(self) -> tuple[str, ...]:
        """Every backend name: the packaged ones and any registered at run time."""
        return tuple(dict.fromkeys([*BACKEND_MODULES, *self._imported]))

    def load(self, backend: str) -> Reason:
        """Import ``backend``'s module once (it registers its implementations); None or why not."""
        if backend not in self._imported:
            self._imported[backend] = None
            module = BACKEND_MODULES.get(backend)
            if module is not None:
                try:
                    importlib.import_module(module)
                except Exception as exc:  # a broken optional backend must not break the package
                    self._imported[backend] = f"cannot import {module}: {type(exc).__name__}: {exc}"
        return self._imported[backend]

    def impl(self, op: str, backend: str) -> Optional[Impl]:
        """``backend``'s implementation of ``op``, or None."""
        if self.load(backend) is not None:
            return None
        return self.impls.get(op, {}).get(backend)

    # -- config ----------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.names(), tuple(self.contracts))
            self.count_calls = self._config.count_calls
            if self._config.record_calls is not None:
                from .tune.record import Recorder
                self.recorder = Recorder(self._config.record_calls)
            self.watching = self.count_calls or self.recorder is not None
        return self._config

    def tuned_table(self, device: str) -> Optional[dict]:
        """The tuning file's choices for ``device`` (None without a file in force for it)."""
        if device not in self._tables:
            tuning = self.config.tuning
            self._tables[device] = None if tuning is None else tuning.table(device)
        return self._tables[device]

    def watch(self, recorder: Optional[Any]) -> None:
        """Hand every later unforced call to ``recorder`` (None: stop); drops the fast entries."""
        self.config  # noqa: B018  (the config sets the recorder of NORMSWITCH_RECORD_CALLS first)
        self.recorder = recorder
        self.watching = self.count_calls or recorder is not None
        self.fast.clear()

    def drop_plans(self) -> None:
        """Forget the plans and fast entries (made again on the next call)."""
        self._plans.clear()
        self.fast.clear()

    def reset(self) -> None:
        """Forget the config, availability, plans, fast entries and warnings."""
        self._config = None
        self.count_calls = False
        self.recorder = None
        self.watching = False
        self._tables.clear()
        self._availability.clear()
        self.drop_plans()
        self._broken.clear()
        self._reported.clear()

    # -- selection -------------------------------------------------------------------------
    def availability(self, op: str, backend: str, device: str) -> Reason:
        """None when ``backend`` can run ``op`` on ``device``, else the reason (checked once)."""
        key = (op, backend, device)
        if key not in self._availability:
            problem = self.load(backend)
            impl = self.impls.get(op, {}).get(backend)
            if problem is None and impl is None:
                problem = f"{backend} has no {op} kernel"
            if problem is None:
                try:
                    problem = impl.available(device)
                except Exception as exc:
                    problem = f"availability check failed: {type(exc).__name__}: {exc}"
            self._availability[key] = problem
        return self._availability[key]

    def decline(self, name: str, call: Call) -> Reason:
        """None when backend ``name`` serves ``call``, else why not."""
        if self.load(name) is None and name not in self.impls[call.op]:
            return f"unsupported: {name} has no {call.op} kernel"
        reason = self.availability(call.op, name, call.device_type)
        if reason is not None:
            return f"unavailable: {reason}"
        if name in self._broken.get(call, ()):
            return _BROKEN
        reason = self.impls[call.op][name].supports(call)
        return None if reason is None else f"unsupported: {reason}"

    def entry(self, op: str, kargs: tuple, features: tuple[str, ...], group: int,
              forced: Optional[str]) -> tuple[tuple, Plan]:
        """``(plan key, plan)`` for a call with kernel arguments ``kargs``."""
        x = kargs[0]
        device = tensor_device_type(x)
        shape = x.shape
        bucket = buckets.index(shape[0] if len(shape) == 2 else x.numel() // shape[1])
        key = (op, device, x.dtype, shape[1], group, features, forced, bucket)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._new_plan(key, Call(op, device, x.dtype, shape[1], frozenset(features), group), forced)
        return key, plan

    def serving(self, op: str) -> set[str]:
        """The backend each plan made for ``op`` so far serves first."""
        return {plan.candidates[0][0] for key, plan in self._plans.items() if key[0] == op}

    def current(self, entry: tuple[tuple, Plan]) -> bool:
        """True while ``entry``'s plan is the one the registry holds for its key."""
        return self._plans.get(entry[0]) is entry[1]

    def plan(self, call: Call, forced: Optional[str] = None, rows: int = 1) -> Plan:
        """The (cached) plan for calls like ``call`` with ``rows`` rows."""
        key = (call.op, call.device_type, call.dtype, call.hidden_size, call.group_size,
               tuple(sorted(call.features)), forced, buckets.index(rows))
        return self._plans.get(key) or self._new_plan(key, call, forced)

    def _new_plan(self, key: tuple, call: Call, forced: Optional[str]) -> Plan:
        return self._plans.setdefault(key, self._make_plan(call, forced, key[-1]))

    def _make_plan(self, call: Call, forced: Optional[str], bucket: int) -> Plan:
        op, device = call.op, call.device_type
        if forced is not None:
            if forced not in self.names():
                raise ValueError(f"backend: unknown backend {forced!r}; allowed: {', '.join(self.names())}")
            reason = self.decline(forced, call)
            if reason is not None:
                raise BackendUnavailableError(f"{op} on {device}: backend={forced!r} cannot serve: {reason}")
            self.config  # noqa: B018  (NORMSWITCH_COUNT_CALLS applies to backend= calls too)
            return Plan(call, [(forced, self.impls[op][forced].fn)], "error", source=f"backend={forced!r}")
        policy = self.config.policy(op, device).value
        order = list(self.config.backends(op, device).value)
        source = self.config.backends(op, device).source
        if policy == "fallback" and "native" not in order:
            order.append("native")
        tuned, tuned_source = tuned_choice(self, call, bucket)
        if tuned is not None:
            order = [tuned] + [name for name in order if name != tuned]
        label = buckets.label(bucket) if self.tuned_table(device) is not None else "all"
        candidates: list[tuple[str, Callable]] = []
        skipped: list[tuple[str, str]] = []
        for name in order:
            reason = self.decline(name, call)
            if reason is None:
                candidates.append((name, self.impls[op][name].fn))
            elif policy == "error":
                raise BackendUnavailableError(
                    f"{op} on {device} ({call.dtype}, N={call.hidden_size}): backend {name!r} cannot serve "
                    f"({reason}) and on_unavailable is 'error' ({self.config.policy(op, device).source})"
                )
            elif not candidates and reason != _BROKEN:
                skipped.append((name, reason))
        to = candidates[0][0] if candidates else "none"
        for name, reason in skipped:
            self._report(op, device, name, to, reason)
        if not candidates:
            raise BackendUnavailableError(f"{op} on {device}: no backend can serve this call")
        if to != tuned:
            tuned_source = ""
        if metrics.mark_selected(op, device, to, label):
            log.info("normswitch: %s on %s served by %r (%s)", op, device, to,
                     f"tuned, {tuned_source}" if tuned_source else f"order {', '.join(order)} from {source}")
        return Plan(call, candidates, policy, label, tuned_source or source)

    def _report(self, op: str, device: str, frm: str, to: str, reason: str) -> None:
        """One warning and one count per (op, device, backend, reason)."""
        key = (op, device, frm, reason)
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("normswitch: %s on %s: backend %r falls back to %r: %s", op, device, frm, to, reason)
        metrics.FALLBACKS.labels(op, device, frm, to, reason.split(":", 1)[0]).inc()

    # -- execution -------------------------------------------------------------------------
    def execute(self, entry: tuple[tuple, Plan], args: tuple) -> Any:
        """Run a plan; a backend that raises is reported and dropped from later plans."""
        key, plan = entry
        name, fn = plan.candidates[0]
        if self.recorder is not None and key[6] is None:
            self.recorder.note(key, args, name, self.contracts[key[0]])
        if len(plan.candidates) == 1:  # also every forced backend= plan: errors propagate
            result = fn(*args)
        else:
            try:
                result = fn(*args)
            except Exception as exc:
                return self._fall_back(key, plan, args, exc)
        if self.count_calls:
            metrics.CALLS.labels(key[0], key[1], name).inc()
        return result

    def recover(self, entry: tuple[tuple, Plan], args: tuple, exc: Exception) -> Any:
        """The first backend of ``entry``'s plan raised ``exc`` on the fast path: fall back (the
        policy and the plan allowing), else raise ``exc``."""
        key, plan = entry
        if len(plan.candidates) == 1:
            raise exc
        return self._fall_back(key, plan, args, exc)

    def _fall_back(self, key: tuple, plan: Plan, args: tuple, exc: Exception) -> Any:
        """The first candidate raised ``exc``: report it, forget the plan, try the next ones."""
        if plan.policy == "error":
            raise exc
        op, device = key[0], key[1]
        self._plans.pop(key, None)
        self.fast.clear()
        for index, (name, fn) in enumerate(plan.candidates):
            if index:
                try:
                    result = fn(*args)
                except Exception as err:
                    if index == len(plan.candidates) - 1:
                        raise
                    exc = err
                else:
                    if self.count_calls:
                        metrics.CALLS.labels(op, device, name).inc()
                    return result
            nxt = plan.candidates[index + 1][0]
            self._report(op, device, name, nxt, f"error: {type(exc).__name__}: {exc}")
            self._broken.setdefault(plan.call, set()).add(name)
            metrics.mark_selected(op, device, nxt, plan.bucket)
        raise AssertionError("unreachable: the last candidate returns or raises")


REGISTRY = Registry()
register_impl = REGISTRY.register_impl


def reset() -> None:
    """Clear cached config, availability and selections (tests, or after changing env vars)."""
    REGISTRY.reset()
