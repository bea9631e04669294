"""Kernel contracts: every backend's kernel for an op takes the op's kernel arguments, by name
and in order, so that the registry can call any of them with the same tuple."""
from __future__ import annotations

import inspect
from typing import Any, Callable


def check_contract(op: str, names: tuple[str, ...], fn: Callable[..., Any], backend: str) -> None:
    """Raise ``ValueError`` unless ``fn``'s parameters are exactly ``names``, in order."""
    try:
        params = tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"register_impl: {backend}'s {op} has no inspectable signature: {exc}") from exc
    if params != names:
        raise ValueError(f"register_impl: {backend}'s {op} takes ({', '.join(params)}); the kernel "
                         f"contract of {op} is ({', '.join(names)})")


def contract_signature(names: tuple[str, ...]) -> inspect.Signature:
    """A kernel contract's argument ``names`` as a signature (for wrappers that load their
    kernel lazily)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind) for n in names])
