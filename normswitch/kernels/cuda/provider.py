"""What a CUDA provider is: a name, a cached availability check, and per-op entries.

An entry's ``fn`` has the kernel-contract signature of its op (``normswitch.backend``);
``accepts(*args)`` says, per call, whether ``fn`` meets the contract for those tensors;
``declines(call)`` gives the reason a whole kind of call (a ``Call``) is never accepted.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ...backend import Call

HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Entry:
    """One op of one provider."""

    fn: Callable[..., Any]
    accepts: Optional[Callable[..., bool]] = None
    declines: Callable[[Call], Optional[str]] = lambda call: None
    conditions: str = ""


@dataclass
class Provider:
    """A source of CUDA kernels; ``check()`` returns None when usable, else why not (cached)."""

    name: str
    entries: dict[str, Entry]
    probe: Callable[[], Optional[str]]
    cache: bool = True
    _result: list = field(default_factory=list, repr=False)

    def check(self) -> Optional[str]:
        if self.cache and self._result:
            return self._result[0]
        try:
            reason = self.probe()
        except Exception as exc:  # a broken optional package must not break normswitch
            reason = f"check failed: {type(exc).__name__}: {exc}"
        self._result[:] = [reason]
        return reason

    def reset(self) -> None:
        self._result.clear()


def import_problem(module: str, attrs: tuple[str, ...]) -> tuple[Any, Optional[str]]:
    """Import ``module``: (module, None), or (None, why it cannot serve)."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        return None, f"not importable: {type(exc).__name__}: {exc}"
    missing = [a for a in attrs if not hasattr(mod, a)]
    if missing:
        return None, f"{module} lacks {', '.join(missing)}"
    return mod, None


def out_ok(out: Optional[torch.Tensor]) -> bool:
    return out is None or out.is_contiguous()
