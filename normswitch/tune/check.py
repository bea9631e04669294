"""Checking a backend on one call against the op's float64 reference before it is timed.

A backend whose result on any call of a kind and bucket lies outside the op's tolerance, or
that raises, is excluded from that kind and bucket and reported; one that declines the call
(``supports`` says no) is not a candidate there and is not reported as a failure.
"""
from __future__ import annotations

from typing import Any, Optional

from .._op import Case, Op
from ..registry import BackendUnavailableError

OK, DECLINED, FAILED = "ok", "declined", "failed"


def verify(decl: Op, kwargs: dict[str, Any], backend: str, label: str = "") -> tuple[str, Optional[str]]:
    """``(status, reason)``: ``ok``, ``declined`` (the backend does not serve this call) or
    ``failed`` (it raised, or an output is outside the tolerance of the float64 reference)."""
    case = Case(decl, label, kwargs)
    try:
        result = case.run(backend)
    except BackendUnavailableError as exc:
        return DECLINED, str(exc)
    except Exception as exc:  # a broken backend is reported, never fatal
        return FAILED, f"raised {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    x = kwargs["x"]
    on = x.device if x.device.type == "cuda" else "cpu"  # large GPU results stay on the GPU
    for name, err, tol in case.errors(result, on):
        if not err <= tol:
            return FAILED, f"{name}: max error {err:.3g} > tolerance {tol:.3g} against float64 ({label})"
    return OK, None
