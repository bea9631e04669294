"""Settings: built-in defaults < YAML file < environment, validated with errors naming their source.

The built-in defaults are the packaged ``configs/default.yaml`` (there is no second copy in
code); a file named by ``NORMSWITCH_CONFIG`` is laid over them, key by key. File schema::

    on_unavailable: fallback          # or error; the default for every device
    tuned: tuned.yaml                 # a tuning file (``normswitch tune``); relative to this file
    devices:
      cuda:
        backends: [triton, cuda, native]
        on_unavailable: fallback
        ops:
          norm_gated: {backends: [triton, native]}
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from .platform import DEVICE_TYPES

PACKAGED_CONFIG = Path(__file__).parent / "configs" / "default.yaml"
POLICIES = ("fallback", "error")
_TOP_KEYS = ("on_unavailable", "devices", "tuned")
_DEVICE_KEYS = ("backends", "on_unavailable", "ops")
_OP_KEYS = ("backends", "on_unavailable")
_SWITCH_VALUES = ("0", "1")


class ConfigError(ValueError):
    """An invalid config file or environment value; the message names its source and key."""


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from (``built-in default``, a file key, or a variable)."""

    value: Any
    source: str


@dataclass
class Config:
    """Everything that steers backend selection, loaded once per ``normswitch.reset()``."""

    path: Path
    file: dict
    defaults: dict = field(default_factory=dict)
    """The packaged default.yaml (the built-in defaults), beneath ``file``."""
    preset: Optional["Preset"] = None
    """A packaged preset an engine plugin laid between ``file`` and the defaults, or None."""
    env_op: dict[str, Setting] = field(default_factory=dict)
    env_all: Optional[Setting] = None
    use_native: Optional[Setting] = None
    count_calls: bool = False
    tuning: Optional[Any] = None
    """The tuning file in force (``normswitch.tune.tuning_file.TuningFile``), or None."""
    record_calls: Optional[Path] = None
    """``NORMSWITCH_RECORD_CALLS``: the file that receives the kinds of call served."""

    def explicit(self, op: str) -> Optional[Setting]:
        """The setting that fixes ``op``'s backend over a tuning file (``NORMSWITCH_BACKEND_<OP>``,
        ``NORMSWITCH_BACKEND``, ``USE_NATIVE_LAYERNORM=1``), or None."""
        return self.env_op.get(op) or self.env_all or self.use_native

    def backends(self, op: str, device: str) -> Setting:
        """Ordered backend names for ``op`` on ``device``, strongest source first."""
        base = self._file_or_default(op, device, "backends", ("native",))
        forced = self.env_op.get(op) or self.env_all
        if forced is not None:
            rest = tuple(name for name in base.value if name != forced.value)
            return Setting((forced.value,) + rest, forced.source)
        if self.use_native is not None:
            return Setting(("native",), self.use_native.source)
        return base

    def summary(self) -> str:
        """One line: the file and the variables in force."""
        parts = [str(self.path) if self.path != PACKAGED_CONFIG else "the built-in defaults"]
        if self.preset is not None:
            parts.append(self.preset.label)
        for setting in (*self.env_op.values(), self.env_all, self.use_native):
            if setting is not None:
                parts.append(setting.source)
        if self.count_calls:
            parts.append("env NORMSWITCH_COUNT_CALLS=1")
        if self.tuning is not None:
            parts.append(f"tuning file {self.tuning.path} ({self.tuning.source})")
        if self.record_calls is not None:
            parts.append(f"env NORMSWITCH_RECORD_CALLS={self.record_calls}")
        return ", ".join(parts)

    def policy(self, op: str, device: str) -> Setting:
        """``fallback`` or ``error`` for ``op`` on ``device``."""
        return self._file_or_default(op, device, "on_unavailable", "fallback")

    def _file_or_default(self, op: str, device: str, key: str, default: Any) -> Setting:
        builtin = (self.defaults, f"built-in default ({PACKAGED_CONFIG.name})")
        layers = [] if self.path == PACKAGED_CONFIG else [(self.file, f"file {self.path}")]
        if self.preset is not None:
            layers.append((self.preset.data, self.preset.label))
        layers.append(builtin)
        for data, where in layers:
            found = _lookup(data, op, device, key)
            if found is not None:
                return Setting(_value(found[0]), f"{where}: {found[1]}")
        return Setting(default, "built-in default")


@dataclass(frozen=True)
class Preset:
    """A packaged config file laid between the user's file and the built-in defaults, and why."""

    path: Path
    why: str
    data: dict

    @property
    def label(self) -> str:
        """How a setting's source names it: ``preset cuda-eager.yaml (vLLM enforce_eager)``."""
        return f"preset {self.path.name} ({self.why})"


_preset: Optional[tuple[Path, str]] = None
"""The preset in force (:func:`use_preset`): (file, why), or None."""


def use_preset(path: Optional[Path], why: str = "") -> None:
    """Lay the config file ``path`` between ``NORMSWITCH_CONFIG`` and the built-in defaults from
    the next config load on (None: no preset). Engine plugins use it for a mode of the engine,
    for example ``configs/cuda-eager.yaml`` when vLLM runs without CUDA graphs; the user's file,
    tuning file and variables still win. Call ``normswitch.reset()`` after it."""
    global _preset
    _preset = None if path is None else (Path(path), why)


def _lookup(data: dict, op: str, device: str, key: str) -> Optional[tuple[Any, str]]:
    """``key`` for ``op`` on ``device`` in one parsed file: (value, dotted key) or None."""
    dev = (data.get("devices") or {}).get(device) or {}
    if key in ((dev.get("ops") or {}).get(op) or {}):
        return dev["ops"][op][key], f"devices.{device}.ops.{op}.{key}"
    if key in dev:
        return dev[key], f"devices.{device}.{key}"
    if key in data:
        return data[key], key
    return None


def _value(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _check_keys(mapping: Any, allowed: Iterable[str], where: str, path: Path) -> None:
    allowed = tuple(allowed)
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path}: {where} must be a mapping with keys {', '.join(allowed)}")
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{path}: unknown key {where}.{key}; allowed: {', '.join(allowed)}")


def _check_entry(entry: dict, where: str, path: Path, backends: tuple[str, ...]) -> None:
    if "backends" in entry:
        names = entry["backends"]
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{path}: {where}.backends must be a non-empty list of {', '.join(backends)}")
        for name in names:
            if name not in backends:
                raise ConfigError(
                    f"{path}: {where}.backends: unknown backend {name!r}; allowed: {', '.join(backends)}"
                )
    if "tuned" in entry and (not isinstance(entry["tuned"], str) or not entry["tuned"]):
        raise ConfigError(f"{path}: {where}.tuned: {entry['tuned']!r}; expected the path of a tuning file")
    if "on_unavailable" in entry and entry["on_unavailable"] not in POLICIES:
        raise ConfigError(
            f"{path}: {where}.on_unavailable: {entry['on_unavailable']!r}; allowed: {', '.join(POLICIES)}"
        )


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects a key given twice in one mapping."""


def _mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_file(path: Path, backends: tuple[str, ...], ops: tuple[str, ...]) -> dict:
    """Parse and validate a config file; raises ``ConfigError`` naming the file and key."""
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=UniqueKeyLoader) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {' '.join(str(exc).split())}") from exc
    _check_keys(data, _TOP_KEYS, "(top level)", path)
    _check_entry(data, "(top level)", path, backends)
    devices = data.get("devices", {}) or {}
    _check_keys(devices, DEVICE_TYPES, "devices", path)
    for device, entry in devices.items():
        _check_keys(entry, _DEVICE_KEYS, f"devices.{device}", path)
        _check_entry(entry, f"devices.{device}", path, backends)
        op_entries = entry.get("ops", {}) or {}
        _check_keys(op_entries, ops, f"devices.{device}.ops", path)
        for op, op_entry in op_entries.items():
            _check_keys(op_entry, _OP_KEYS, f"devices.{device}.ops.{op}", path)
            _check_entry(op_entry, f"devices.{device}.ops.{op}", path, backends)
    return data


def _switch(env: dict, name: str) -> bool:
    value = env.get(name, "")
    if value not in ("",) + _SWITCH_VALUES:
        raise ConfigError(f"{name}={value!r}: expected 0 or 1 (or unset)")
    return value == "1"


def _backend_var(env: dict, name: str, backends: tuple[str, ...]) -> Setting:
    value = env[name].strip()
    if value not in backends:
        raise ConfigError(f"{name}={value!r}: unknown backend; allowed: {', '.join(backends)}")
    return Setting(value, f"env {name}")


def load_config(backends: tuple[str, ...], ops: tuple[str, ...], env: Optional[dict] = None) -> Config:
    """Read the packaged defaults, ``NORMSWITCH_CONFIG`` and the environment variables.

    ``backends`` and ``ops`` are the names a file or variable may use.
    """
    env = dict(os.environ if env is None else env)
    name = env.get("NORMSWITCH_CONFIG", "")
    if name and not Path(name).is_file():
        raise ConfigError(f"NORMSWITCH_CONFIG={name!r}: no such file")
    path = Path(name) if name else PACKAGED_CONFIG
    defaults = load_file(PACKAGED_CONFIG, backends, ops)
    file = defaults if path == PACKAGED_CONFIG else load_file(path, backends, ops)
    config = Config(path=path, file=file, defaults=defaults)
    if _preset is not None:
        config.preset = Preset(_preset[0], _preset[1], load_file(_preset[0], backends, ops))
    prefix = "NORMSWITCH_BACKEND_"
    for var in sorted(env):
        if var.startswith(prefix):
            op = var[len(prefix):].lower()
            if op not in ops:
                raise ConfigError(f"{var}: unknown op {op!r}; allowed: {', '.join(ops)}")
            config.env_op[op] = _backend_var(env, var, backends)
    if env.get("NORMSWITCH_BACKEND", ""):
        config.env_all = _backend_var(env, "NORMSWITCH_BACKEND", backends)
    if _switch(env, "USE_NATIVE_LAYERNORM"):
        config.use_native = Setting(("native",), "env USE_NATIVE_LAYERNORM=1")
    config.count_calls = _switch(env, "NORMSWITCH_COUNT_CALLS")
    config.tuning = _tuning(env, path, file, backends, ops)
    record = env.get("NORMSWITCH_RECORD_CALLS", "")
    if record:
        if not Path(record).parent.is_dir():
            raise ConfigError(f"NORMSWITCH_RECORD_CALLS={record!r}: no such directory {str(Path(record).parent)!r}")
        config.record_calls = Path(record)
    return config


def _tuning(env: dict, path: Path, file: dict, backends: tuple[str, ...], ops: tuple[str, ...]) -> Optional[Any]:
    """The tuning file named by ``NORMSWITCH_TUNED`` (stronger) or the file's key ``tuned``
    (relative to the config file), loaded and validated; None when neither names one."""
    if env.get("NORMSWITCH_TUNED", ""):
        name, source = Path(env["NORMSWITCH_TUNED"]), "env NORMSWITCH_TUNED"
    elif file.get("tuned"):
        name, source = path.parent / file["tuned"], f"file {path}: tuned"
    else:
        return None
    if not name.is_file():
        raise ConfigError(f"{source}={str(name)!r}: no such tuning file")
    from .tune.tuning_file import load

    return load(name, source, ops, backends)
