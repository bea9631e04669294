"""Timing one backend as a user's call meets it: first in the op's plans, called without
``backend=``, so eager calls take the fast path and the backend's bound launch (a forced
``backend=`` call always takes the full path: checks, plan lookup, ordinary launch)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from ..config import Setting
from ..registry import REGISTRY


@contextlib.contextmanager
def served_by(op: str, backend: str, source: str = "normswitch bench") -> Iterator[None]:
    """Within the block, ``op``'s plans put ``backend`` first, as ``NORMSWITCH_BACKEND_<OP>``
    would; raises ``RuntimeError`` if a call of the block was served by another backend (one
    that declined passed the call on)."""
    config = REGISTRY.config
    saved = config.env_op.get(op)
    config.env_op[op] = Setting(backend, source)
    REGISTRY.drop_plans()
    try:
        yield
        served = REGISTRY.serving(op)
        if served - {backend}:
            raise RuntimeError(f"{op}: timing {backend}, but the calls were served by {sorted(served)}")
    finally:
        if saved is None:
            config.env_op.pop(op, None)
        else:
            config.env_op[op] = saved
        REGISTRY.drop_plans()


class ServedCall:
    """A zero-argument call of a public op to time under ``served_by(op, backend)``: the caller
    enters :meth:`scope` around the calls it times (``normswitch.bench.runner``)."""

    def __init__(self, call: Callable[[], Any], op: str, backend: str) -> None:
        self.call, self.op, self.backend = call, op, backend

    def __call__(self) -> Any:
        return self.call()

    def scope(self) -> contextlib.AbstractContextManager:
        return served_by(self.op, self.backend)


def scope_of(fn: Callable[[], Any]) -> contextlib.AbstractContextManager:
    """The context a timed call runs in: its ``scope()`` where it has one, else none."""
    scope = getattr(fn, "scope", None)
    return contextlib.nullcontext() if scope is None else scope()
