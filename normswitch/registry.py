"""Backends per op, availability, selection by the input's device type, and fallback."""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from . import metrics
from .backend import Backend, Call
from .config import Config, load_config

log = logging.getLogger("normswitch")

_MODULES = {
    "native": "normswitch.fallbacks",
    "triton": "normswitch.kernels.triton",
    "cuda": "normswitch.kernels.cuda",
    "cpu": "normswitch.kernels.cpu",
}


_BROKEN = "error: failed earlier in this process"  # already reported when it failed


class BackendUnavailableError(RuntimeError):
    """No backend may serve a call: ``on_unavailable: error``, or a ``backend=`` that cannot."""


@dataclass
class Plan:
    """The backends that will serve one kind of call, in order, and the policy for failures."""

    call: Call
    candidates: list[tuple[str, Callable]]
    policy: str


def _load(name: str, module: str) -> Backend:
    try:
        return importlib.import_module(module).BACKEND
    except Exception as exc:  # a broken optional backend must not break the package
        reason = f"cannot import {module}: {type(exc).__name__}: {exc}"
        return Backend(name=name, impls={}, availability=lambda device, r=reason: r)


class Registry:
    """Holds the backends, the loaded config, and per-call-kind plans (cached)."""

    def __init__(self) -> None:
        self.backends: dict[str, Backend] = {}
        self._config: Optional[Config] = None
        self._availability: dict[tuple[str, str], Optional[str]] = {}
        self._plans: dict[tuple, Plan] = {}
        self._broken: dict[Call, set[str]] = {}
        self._reported: set[tuple[str, str, str, str]] = set()
        self.fast: dict[tuple, tuple[tuple, Plan]] = {}
        """``normswitch.fastpath`` keys of validated calls -> (plan key, plan)."""
        self.count_calls = False

    # -- backends and config -------------------------------------------------------------
    def backend(self, name: str) -> Backend:
        if name not in self.backends:
            self.backends[name] = _load(name, _MODULES[name])
        return self.backends[name]

    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*_MODULES, *self.backends]))

    def register(self, backend: Backend) -> None:
        """Add or replace a backend (vendor backends, tests); clears cached plans."""
        self.backends[backend.name] = backend
        self.reset(keep_backends=True)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.names())
            self.count_calls = self._config.count_calls
        return self._config

    def reset(self, keep_backends: bool = True) -> None:
        """Forget the config, availability, plans and warnings (re-read on next use)."""
        self._config = None
        self.count_calls = False
        self._availability.clear()
        self._plans.clear()
        self.fast.clear()
        self._broken.clear()
        self._reported.clear()
        if not keep_backends:
            self.backends.clear()

    def availability(self, name: str, device: str) -> Optional[str]:
        """None when ``name`` can run on ``device``, else the reason (checked once)."""
        key = (name, device)
        if key not in self._availability:
            backend = self.backend(name)
            try:
                reason = backend.availability(device)
            except Exception as exc:
                reason = f"availability check failed: {type(exc).__name__}: {exc}"
            self._availability[key] = reason
        return self._availability[key]

    def decline(self, name: str, call: Call) -> Optional[str]:
        """None when backend ``name`` serves ``call``, else why not."""
        reason = self.availability(name, call.device_type)
        if reason is not None:
            return f"unavailable: {reason}"
        backend = self.backend(name)
        if call.op not in backend.impls:
            return f"unsupported: {name} has no {call.op}"
        if name in self._broken.get(call, ()):
            return _BROKEN
        reason = backend.supports(call)
        return None if reason is None else f"unsupported: {reason}"

    # -- selection -------------------------------------------------------------------------
    def plan(self, call: Call, forced: Optional[str] = None) -> Plan:
        """The (cached) plan for a call described by ``call``."""
        key = (call.op, call.device_type, call.dtype, call.hidden_size, call.group_size,
               tuple(sorted(call.features)), forced)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._make_plan(call, forced)
        return found

    def _make_plan(self, call: Call, forced: Optional[str]) -> Plan:
        op, device = call.op, call.device_type
        if forced is not None:
            if forced not in self.names():
                raise ValueError(f"backend: unknown backend {forced!r}; allowed: {', '.join(self.names())}")
            reason = self.decline(forced, call)
            if reason is not None:
                raise BackendUnavailableError(f"{op} on {device}: backend={forced!r} cannot serve: {reason}")
            return Plan(call, [(forced, self.backend(forced).impls[op])], "error")
        policy = self.config.policy(op, device).value
        order = list(self.config.backends(op, device).value)
        if policy == "fallback" and "native" not in order:
            order.append("native")
        candidates: list[tuple[str, Callable]] = []
        skipped: list[tuple[str, str]] = []
        for name in order:
            reason = self.decline(name, call)
            if reason is None:
                candidates.append((name, self.backend(name).impls[op]))
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
        metrics.mark_selected(op, device, to)
        return Plan(call, candidates, policy)

    def _report(self, op: str, device: str, frm: str, to: str, reason: str) -> None:
        """One warning and one count per (op, device, backend, reason)."""
        key = (op, device, frm, reason)
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("normswitch: %s on %s: backend %r falls back to %r: %s", op, device, frm, to, reason)
        metrics.FALLBACKS.labels(op, device, frm, to, reason.split(":", 1)[0]).inc()

    # -- execution -------------------------------------------------------------------------
    def run(
        self,
        op: str,
        x: torch.Tensor,
        device: str,
        group_size: int,
        features: tuple,
        args: tuple,
        forced: Optional[str] = None,
        fast_key: Optional[tuple] = None,
    ) -> Any:
        """Run ``op`` on the first backend of its plan; on a fault, fall back (policy allowing).

        ``features`` is a sorted tuple of names from ``normswitch.backend.FEATURES``; with
        ``fast_key``, later calls with that key reuse the plan (``normswitch.fastpath``).
        """
        key = (op, device, x.dtype, x.shape[1], group_size, features, forced)
        plan = self._plans.get(key)
        if plan is None:
            call = Call(op, device, x.dtype, x.shape[1], frozenset(features), group_size)
            plan = self._plans[key] = self._make_plan(call, forced)
        if fast_key is not None:
            self.fast[fast_key] = (key, plan)
        return self.execute(key, plan, args)

    def execute(self, key: tuple, plan: Plan, args: tuple) -> Any:
        """Run a plan made for ``key``; a backend that raises is dropped from later plans."""
        name, fn = plan.candidates[0]
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
            metrics.mark_selected(op, device, nxt)
        raise AssertionError("unreachable: the last candidate returns or raises")


REGISTRY = Registry()


def reset() -> None:
    """Clear cached config, availability and selections (tests, or after changing env vars)."""
    REGISTRY.reset()
