"""Bring the ``normswitch_*`` metrics of vLLM's engine processes onto the front end's ``/metrics``.

vLLM runs the model in child processes (engine core, workers) while ``/metrics`` is served from
the front-end process's default Prometheus registry. The first process that loads the plugin
becomes the *owner*: it makes a directory, names it in ``NORMSWITCH_VLLM_METRICS_DIR`` (children
inherit it) and replaces normswitch's collectors in its registry by one that adds up its own
series and the snapshots the children write there (counters summed, gauges by maximum). Every
other process writes a JSON snapshot of its normswitch series, from a daemon thread, whenever they
change (``NORMSWITCH_VLLM_METRICS_INTERVAL`` seconds between checks, default 0.5).

When ``PROMETHEUS_MULTIPROC_DIR`` is set (vLLM with several API servers), prometheus_client's own
multiprocess collection already gathers every process's series and this bridge stays off.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

from normswitch import metrics

DIR_ENV = "NORMSWITCH_VLLM_METRICS_DIR"
OWNER_ENV = "NORMSWITCH_VLLM_METRICS_OWNER"
INTERVAL_ENV = "NORMSWITCH_VLLM_METRICS_INTERVAL"
_COLLECTORS = (metrics.BACKEND_SELECTED, metrics.FALLBACKS, metrics.CALLS)
_state: dict = {}


def _local_samples() -> list[list]:
    """``[[metric, type, documentation, sample name, labels, value], ...]`` of this process."""
    rows = []
    for collector in _COLLECTORS:
        for family in collector.collect():
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                rows.append([family.name, family.type, family.documentation, s.name, s.labels, s.value])
    return rows


class _MergedCollector:
    """normswitch's families: this process's series plus the children's snapshots."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def describe(self):
        return [family for c in _COLLECTORS for family in c.describe()]

    def _snapshot_rows(self) -> list[list]:
        rows = []
        own = f"{os.getpid()}.json"
        for path in sorted(self.directory.glob("*.json")):
            if path.name == own:
                continue
            try:
                rows.extend(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return rows

    def collect(self):
        families: dict[str, Metric] = {}
        values: dict[tuple, float] = {}
        for name, typ, doc, sample, labels, value in _local_samples() + self._snapshot_rows():
            families.setdefault(name, Metric(name, doc, typ))
            key = (name, sample, tuple(sorted(labels.items())))
            if typ == "gauge":
                values[key] = max(values.get(key, value), value)
            else:
                values[key] = values.get(key, 0.0) + value
        for (name, sample, labels), value in values.items():
            families[name].add_sample(sample, dict(labels), value)
        yield from families.values()


def _write_snapshots(directory: Path, interval: float, stop: threading.Event) -> None:
    path = directory / f"{os.getpid()}.json"
    last = None
    while True:
        text = json.dumps(_local_samples())
        if text != last:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            last = text
        if stop.wait(interval):
            return


def _start_writer() -> None:
    directory = os.environ.get(DIR_ENV)
    if not directory or os.environ.get(OWNER_ENV) == str(os.getpid()):
        return
    if _state.get("writer_pid") == os.getpid():
        return
    interval = float(os.environ.get(INTERVAL_ENV, "0.5"))
    stop = threading.Event()
    thread = threading.Thread(
        target=_write_snapshots, args=(Path(directory), interval, stop),
        name="normswitch-metrics", daemon=True,
    )
    thread.start()
    _state["writer_pid"] = os.getpid()
    atexit.register(_flush_and_stop, Path(directory), stop)


def _flush_and_stop(directory: Path, stop: threading.Event) -> None:
    stop.set()
    if directory.is_dir():
        path = directory / f"{os.getpid()}.json"
        path.write_text(json.dumps(_local_samples()))


def _become_owner() -> None:
    directory = Path(tempfile.mkdtemp(prefix="normswitch-vllm-metrics-"))
    os.environ[DIR_ENV] = str(directory)
    os.environ[OWNER_ENV] = str(os.getpid())
    for collector in _COLLECTORS:
        REGISTRY.unregister(collector)
    REGISTRY.register(_MergedCollector(directory))
    atexit.register(shutil.rmtree, directory, True)


def install_metrics_bridge() -> str:
    """Set up this process as owner or writer; returns which (or why the bridge is off)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return "off: PROMETHEUS_MULTIPROC_DIR is set, prometheus_client gathers the processes"
    if os.environ.get(DIR_ENV) and os.environ.get(OWNER_ENV) != str(os.getpid()):
        _start_writer()
        return "writer"
    if not os.environ.get(DIR_ENV):
        _become_owner()
        os.register_at_fork(after_in_child=_start_writer)
    return "owner"
