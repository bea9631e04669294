"""Recording the kinds of call a process serves, and rebuilding calls from the record.

With ``NORMSWITCH_RECORD_CALLS=FILE`` the registry hands every eager call it runs (and every
call a traced graph makes while it is captured) to a :class:`Recorder`, which appends one JSON
line per new (kind of call, rows) to FILE: the op, device type, dtype, hidden size, group size,
call features, the rows and each kernel argument (tensor shape, stride and dtype, or the
scalar's value). Many processes (an engine's workers) may append to one file. While recording,
calls skip the fast path, so the record is complete; a recording run is for tuning, not serving.

``normswitch tune --calls FILE`` reads the lines back (:func:`read`) and rebuilds each call with
random tensors of the recorded shapes (:func:`rebuild`).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Optional

import torch

from .buckets import index

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
           "float64": torch.float64}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``bfloat16``."""
    return str(dtype).replace("torch.", "")


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"shape": list(value.shape), "stride": list(value.stride()), "dtype": dtype_name(value.dtype)}
    return value


class Recorder:
    """Receives ``(plan key, kernel arguments, backend)`` of each call; keeps one entry per new
    (kind, rows) and appends it to ``path`` (when given) as a JSON line."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = path
        self.entries: list[dict] = []
        self._seen: set[tuple] = set()
        self._lock = threading.Lock()

    def note(self, key: tuple, kargs: tuple, backend: str, contract: tuple[str, ...]) -> None:
        """Record one call; ``key`` is the registry's plan key (op, device, dtype, N, group,
        features, forced, bucket)."""
        op, device, dtype, hidden, group, features = key[:6]
        x = kargs[0]
        rows = x.shape[0] if x.dim() == 2 else x.numel() // x.shape[1]
        seen = (key[:6], rows, backend)
        if seen in self._seen:
            return
        entry = {"op": op, "device": device, "dtype": dtype_name(dtype), "hidden_size": hidden,
                 "group_size": group, "features": sorted(features), "rows": rows, "bucket": index(rows),
                 "backend": backend, "args": {n: _describe(a) for n, a in zip(contract, kargs)}}
        with self._lock:
            if seen in self._seen:
                return
            self._seen.add(seen)
            self.entries.append(entry)
            if self.path is not None:
                with open(self.path, "a") as f:  # one write per line: appends of processes interleave by line
                    f.write(json.dumps(entry) + "\n")


def read(path: Path) -> list[dict]:
    """The entries of a record file (one JSON object per line); raises ``ValueError`` naming the
    file and line of a malformed one."""
    entries = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not a JSON line: {exc}") from exc
        missing = [k for k in ("op", "device", "dtype", "rows", "args") if k not in entry]
        if not isinstance(entry, dict) or missing:
            raise ValueError(f"{path}:{number}: not a recorded call (missing {', '.join(missing)})")
        entries.append(entry)
    return entries


def _tensor(name: str, spec: dict, device: str, gen: torch.Generator) -> torch.Tensor:
    shape, stride = tuple(spec["shape"]), tuple(spec["stride"])
    dtype = _DTYPES[spec["dtype"]]
    size = 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0
    base = torch.randn(size, device=device, generator=gen)
    if name == "weight":
        base += 1.0  # a weight near 1, as trained norms have, never all zero
    return base.to(dtype).as_strided(shape, stride)


def rebuild(entry: dict, device: Optional[str] = None, seed: int = 0) -> dict[str, Any]:
    """The recorded call's arguments by name: random tensors of the recorded shapes, strides and
    dtypes (on ``device``, default the recorded device type) and the recorded scalars."""
    device = device or entry["device"]
    gen = torch.Generator(device=device).manual_seed(seed)
    return {name: _tensor(name, spec, device, gen) if isinstance(spec, dict) else spec
            for name, spec in entry["args"].items()}
