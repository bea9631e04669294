"""Prometheus metrics (default registry, prefix ``normswitch_``)."""
from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, generate_latest

BACKEND_SELECTED = Gauge(
    "normswitch_backend_selected",
    "1 for the backend that serves an op on a device type and row bucket (bucket 'all' when no "
    "tuning file is in force for the device type).",
    ["op", "device", "backend", "bucket"],
    multiprocess_mode="livemax",
)
FALLBACKS = Counter(
    "normswitch_fallbacks_total",
    "Calls moved from one backend to the next, by reason.",
    ["op", "device", "from_backend", "to_backend", "reason"],
)
CALLS = Counter(
    "normswitch_calls_total",
    "Eager op calls per backend (only with NORMSWITCH_COUNT_CALLS=1).",
    ["op", "device", "backend"],
)

_selected: dict[tuple[str, str, str], str] = {}


def mark_selected(op: str, device: str, backend: str, bucket: str = "all") -> bool:
    """Set the gauge to 1 for ``backend`` and 0 for the one it replaces on (op, device, bucket);
    True when that changed the selection."""
    previous = _selected.get((op, device, bucket))
    if previous == backend:
        return False
    if previous is not None:
        BACKEND_SELECTED.labels(op, device, previous, bucket).set(0)
    BACKEND_SELECTED.labels(op, device, backend, bucket).set(1)
    _selected[(op, device, bucket)] = backend
    return True


def metrics_text() -> str:
    """The ``normswitch_*`` series of the default registry in the Prometheus text format."""
    prefixes = ("normswitch_", "# HELP normswitch_", "# TYPE normswitch_")
    lines = generate_latest(REGISTRY).decode().splitlines()
    return "".join(line + "\n" for line in lines if line.startswith(prefixes))
