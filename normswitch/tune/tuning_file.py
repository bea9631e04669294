"""The tuning file: per device type and kind of call, the fastest verified backend per row bucket.

YAML, written by ``normswitch tune``, read by the registry (config key ``tuned`` or
``NORMSWITCH_TUNED``)::

    normswitch_tuning: 1
    metric: device               # what the choice minimizes: device (graph replay) or host time
    torch: 2.11.0+cu130
    triton: 3.6.0
    devices:
      cuda:
        name: NVIDIA H200        # identity of the machine it was measured on
        driver: 570.86.15
        backends: [triton, cuda, native]   # what normswitch tune --backends limited it to (optional)
        kinds:
        - {op: rms_norm, dtype: bfloat16, hidden_size: 4096, group_size: 0, features: [weight],
           buckets: {'1': {backend: cuda, rows: [1], device_us: {cuda: 2.1, triton: 2.6},
                           host_us: {...}, failed: {sgl_kernel: why}}}}

A file made on another device, driver, CPU thread count, torch or triton is ignored for that
device type with one warning saying what differs; a bucket that lacks a backend which now serves
the call is left to the configured order (``normswitch.tune.choose``); a malformed file raises
``ConfigError``.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from ..config import ConfigError, UniqueKeyLoader
from ..platform import DEVICE_TYPES
from .buckets import LABELS, of_label

log = logging.getLogger("normswitch")
VERSION = 1
METRICS = ("device", "host")
DTYPES = ("float16", "bfloat16", "float32")
_TOP = ("normswitch_tuning", "made", "metric", "torch", "triton", "devices")
_DEVICE = ("name", "driver", "threads", "backends", "kinds")
_IDENTITY = ("name", "driver", "threads")
_KIND = ("op", "dtype", "hidden_size", "group_size", "features", "buckets")
_BUCKET = ("backend", "rows", "device_us", "host_us", "failed")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str:
    """The kernel driver's version (``/proc/driver/nvidia/version``), else the CUDA driver API's."""
    try:
        words = Path("/proc/driver/nvidia/version").read_text().split()
        return next(w for w in words if w[:1].isdigit() and w.count(".") >= 1)
    except (OSError, StopIteration):
        pass
    try:
        return f"cuda driver api {torch._C._cuda_getDriverVersion()}"
    except (AttributeError, RuntimeError):
        return "unknown"


def device_identity(device_type: str) -> dict[str, Any]:
    """What a tuning file must match for ``device_type``: the device name and driver (CPU: the
    model and torch's thread count, which sets the speed of the C++ and ATen kernels)."""
    if device_type in ("cuda", "rocm"):
        driver = _nvidia_driver() if device_type == "cuda" else f"hip {torch.version.hip}"
        return {"name": torch.cuda.get_device_name(), "driver": driver}
    if device_type == "cpu":
        return {"name": _cpu_name(), "driver": "none", "threads": torch.get_num_threads()}
    return {"name": device_type, "driver": "unknown"}


def versions() -> dict[str, str]:
    """The versions a tuning file must match: torch and triton."""
    return {"torch": str(torch.__version__), "triton": _version("triton")}


def write(path: Path, metric: str, device_type: str, kinds: list[dict],
          considered: Optional[tuple[str, ...]] = None) -> None:
    """Write a tuning file for one device type (its identity taken from this process);
    ``considered``: the backends the tuner was limited to (None: every available one)."""
    section = {**device_identity(device_type), **({"backends": list(considered)} if considered else {}),
               "kinds": kinds}
    data = {"normswitch_tuning": VERSION,
            "made": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "metric": metric, **versions(), "devices": {device_type: section}}
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, width=120))


@dataclass
class Choice:
    """The tuned backend of one (kind, bucket) and the line ``info`` shows for it."""

    backend: str
    times: dict[str, float]
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class TuningFile:
    """A loaded, validated tuning file; :meth:`table` checks its identity per device type."""

    path: Path
    source: str
    data: dict
    _tables: dict[str, Optional[dict]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    """Per device type, why the file is ignored there (filled by :meth:`table`)."""

    def table(self, device_type: str) -> Optional[dict[tuple, Choice]]:
        """``(op, dtype, N, group, features, bucket) -> Choice`` for ``device_type``, or None
        when the file has no section for it or was made elsewhere (one warning, once)."""
        if device_type not in self._tables:
            self._tables[device_type] = self._load_table(device_type)
        return self._tables[device_type]

    def considered(self, device_type: str) -> Optional[frozenset[str]]:
        """The backends the tuner was limited to on ``device_type`` (None: every available one)."""
        names = ((self.data.get("devices") or {}).get(device_type) or {}).get("backends")
        return None if names is None else frozenset(names)

    def _load_table(self, device_type: str) -> Optional[dict[tuple, Choice]]:
        section = (self.data.get("devices") or {}).get(device_type)
        if section is None:
            return None
        made = {**{k: self.data.get(k) for k in ("torch", "triton")},
                **{k: section.get(k) for k in _IDENTITY if k in section}}
        here = {**versions(), **device_identity(device_type)}
        differ = [f"{k} {made.get(k)!r} (here {v!r})" for k, v in here.items() if made.get(k) != v]
        if differ:
            why = f"made with other {'; '.join(differ)}"
            self.problems[device_type] = why
            log.warning("normswitch: tuning file %s (%s) ignored for %s: %s", self.path, self.source,
                        device_type, why)
            return None
        metric = self.data.get("metric", "device")
        table = {}
        for kind in section.get("kinds") or ():
            key = (kind["op"], getattr(torch, kind["dtype"]), kind["hidden_size"], kind.get("group_size", 0),
                   tuple(sorted(kind.get("features") or ())))
            for label, b in kind["buckets"].items():
                times = b.get(f"{metric}_us") or {}
                table[key + (of_label(label),)] = Choice(b["backend"], dict(times), dict(b.get("failed") or {}))
        return table


def _keys(mapping: Any, allowed: tuple, where: str, path: Path) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path}: {where} must be a mapping with keys {', '.join(allowed)}")
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{path}: unknown key {where}.{key}; allowed: {', '.join(allowed)}")


def _one_of(value: Any, allowed: tuple, where: str, path: Path) -> None:
    if value not in allowed:
        raise ConfigError(f"{path}: {where}: {value!r}; allowed: {', '.join(map(str, allowed))}")


def _count(value: Any, where: str, path: Path, least: int) -> None:
    if type(value) is not int or value < least:
        raise ConfigError(f"{path}: {where}: {value!r}; expected an integer >= {least}")


def _validate_kind(kind: Any, where: str, path: Path, ops: tuple, backends: tuple) -> None:
    _keys(kind, _KIND, where, path)
    for key in ("op", "dtype", "hidden_size", "buckets"):
        if key not in kind:
            raise ConfigError(f"{path}: {where}: missing key {key}")
    _one_of(kind["op"], ops, f"{where}.op", path)
    _one_of(kind["dtype"], DTYPES, f"{where}.dtype", path)
    _count(kind["hidden_size"], f"{where}.hidden_size", path, 1)
    _count(kind.get("group_size", 0), f"{where}.group_size", path, 0)
    features = kind.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ConfigError(f"{path}: {where}.features: {features!r}; expected a list of feature names")
    _keys(kind["buckets"], LABELS, f"{where}.buckets", path)
    for label, b in kind["buckets"].items():
        _keys(b, _BUCKET, f"{where}.buckets.{label}", path)
        if "backend" not in b:
            raise ConfigError(f"{path}: {where}.buckets.{label}: missing key backend")
        _one_of(b["backend"], backends, f"{where}.buckets.{label}.backend", path)


def load(path: Path, source: str, ops: tuple[str, ...], backends: tuple[str, ...]) -> TuningFile:
    """Parse and validate a tuning file; raises ``ConfigError`` naming the file, key and allowed values."""
    try:
        data = yaml.load(Path(path).read_bytes().decode("utf-8"), Loader=UniqueKeyLoader) or {}
    except OSError as exc:
        raise ConfigError(f"{path} ({source}): cannot read tuning file: {exc}") from exc
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} ({source}): malformed tuning file: {' '.join(str(exc).split())}") from exc
    _keys(data, _TOP, "(top level)", path)
    _one_of(data.get("normswitch_tuning"), (VERSION,), "normswitch_tuning", path)
    _one_of(data.get("metric", "device"), METRICS, "metric", path)
    devices = data.get("devices") or {}
    _keys(devices, DEVICE_TYPES, "devices", path)
    for device, section in devices.items():
        _keys(section, _DEVICE, f"devices.{device}", path)
        names = section.get("backends", [])
        if not isinstance(names, list):
            raise ConfigError(f"{path}: devices.{device}.backends must be a list of backend names")
        for i, name in enumerate(names):
            _one_of(name, backends, f"devices.{device}.backends[{i}]", path)
        kinds = section.get("kinds") or []
        if not isinstance(kinds, list):
            raise ConfigError(f"{path}: devices.{device}.kinds must be a list")
        for i, kind in enumerate(kinds):
            _validate_kind(kind, f"devices.{device}.kinds[{i}]", path, ops, backends)
    return TuningFile(Path(path), source, data)
