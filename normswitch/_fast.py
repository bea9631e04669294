"""The eager fast path of the ops (see :mod:`normswitch._op`): the key of a call and the
generated entry function that serves a call whose key was seen before.

The key holds everything the checks and the call features read: types, dtypes, devices, the
hidden size, each parameter's shape and layout, the value of every scalar, and the row bucket
(the plan may depend on it through a tuning file). It is built by generated Python code
(:func:`_key_lines`, straight-line attribute reads) or, once the CPU kernels are loaded, by their
C++ ``fast_key`` (``kernels/common/fast_key.cpp``: the same properties read without a Python attribute
access each, which at M = 1 costs more than the kernel itself). Either key is exact; a process
uses one of them at a time (:func:`use_native_key` drops the entries recorded under the other).

Addresses are not in the key: where an op writes into its arguments, the declaration's
``apart`` says which tensors must not share memory when a flag argument is true, and the fast
path checks that on every call (contiguous tensors, so byte ranges).
"""
from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .registry import REGISTRY
from .tune import buckets

if TYPE_CHECKING:
    from ._op import Op

Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled

X, LIKE, PARAM, VALUE, OUT = "x", "like", "param", "value", "out"
"""Argument kinds for the fast key: the input ``x`` (2-D, contiguous, M > 0); a tensor of x's
shape (or None); an (N,) parameter (or None); a scalar (float, int, bool or None); an output
tensor (only None takes the fast path: whether it overlaps an input is a matter of addresses)."""
_NATIVE_KIND = {X: 0, LIKE: 1, PARAM: 2, VALUE: 3, OUT: 4}
"""The kind codes of ``fast_key.cpp``."""
_VALUE_TYPES = (float, int, bool, type(None))
_PARAM_TYPES = (Tensor, torch.nn.Parameter)

_KEY_CODE = {
    VALUE: "    if type({a}) not in _VALUE_TYPES:\n        return None\n",
    OUT: "    if {a} is not None:\n        return None\n",
    PARAM: ("    if {a} is None:\n        k{i} = _NO_PARAM\n"
            "    elif type({a}) in _PARAM_TYPES and {a}.is_contiguous():\n"
            "        k{i} = type({a}), {a}.dtype, {a}.is_cpu or {a}.device, {a}.shape\n"
            "    else:\n        return None\n"),
    LIKE: ("    if {a} is None:\n        k{i} = _NO_LIKE\n"
           "    elif type({a}) is Tensor and {a}.shape == shape and {a}.is_contiguous():\n"
           "        k{i} = {a}.dtype, {a}.is_cpu or {a}.device\n"
           "    else:\n        return None\n"),
}
"""Each tensor's device enters the key as ``t.is_cpu or t.device``: True for a CPU tensor (one
cheap attribute, instead of a new ``torch.device`` to make, hash and compare), the device itself
otherwise; the two never compare equal, so a key still tells every device apart."""
_KEY_PARTS = {VALUE: "type({a}), {a}", PARAM: "*k{i}", LIKE: "*k{i}"}
_NO_PARAM = (None, None, None, None)
_NO_LIKE = (None, None)

_native_key: Optional[Callable[..., Optional[tuple]]] = None
"""The C++ key function once installed (:func:`use_native_key`), else None."""
_OPS: list["Op"] = []
"""The declared ops whose entries :func:`use_native_key` regenerates."""


def _key_lines(name: str, kinds: tuple[str, ...], names: tuple[str, ...], miss: str) -> list[str]:
    """Straight-line code that sets ``key`` to an op's fast-path key (from its argument kinds, as
    ``dataclasses`` generates ``__init__``): a flat tuple with a fixed place for each property.
    A call that cannot take the fast path runs the statement ``miss`` instead."""
    # Calls that need a graph (grad mode on, an input requiring grad) take the differentiable path.
    needs_grad = " or ".join(["x.requires_grad"] + [f"({a} is not None and {a}.requires_grad)"
                                                    for kind, a in zip(kinds[1:], names[1:]) if kind in (PARAM, LIKE)])
    lines = ["shape = x.shape", "if len(shape) != 2 or not shape[0] or not x.is_contiguous():", f"    {miss}"]
    parts = [repr(name), "x.dtype", "x.is_cpu or x.device", "shape[1]", buckets.expression("shape[0]")]
    for i, (kind, arg) in enumerate(zip(kinds[1:], names[1:]), 1):
        code = textwrap.dedent(_KEY_CODE[kind].format(a=arg, i=i)).replace("return None", miss)
        lines += code.rstrip("\n").split("\n")
        if kind in _KEY_PARTS:
            parts.append(_KEY_PARTS[kind].format(a=arg, i=i))
    return lines + [f"if _grad_enabled() and ({needs_grad}):", f"    {miss}", f"key = ({', '.join(parts)})"]


_SCOPE = {"Tensor": Tensor, "_VALUE_TYPES": _VALUE_TYPES, "_PARAM_TYPES": _PARAM_TYPES,
          "_grad_enabled": _grad_enabled, "_NO_PARAM": _NO_PARAM, "_NO_LIKE": _NO_LIKE,
          "_is_compiling": _is_compiling, "_mode": _get_current_dispatch_mode}


def _compile(source: list[str], scope: dict, name: str) -> Callable:
    exec("\n".join(source), scope)  # noqa: S102  (source built from the op's declaration)
    return scope[name]


def native_spec(op: "Op") -> tuple:
    """The op's declaration as ``fast_key.cpp`` reads it: (name, kinds, row bucket bounds, index
    of the ``apart`` flag or -1, indices of the tensors that must be apart)."""
    kinds = tuple(_NATIVE_KIND[k] for k in op.key)
    if op.apart is None:
        return op.name, kinds, buckets.UPPER, -1, ()
    flag, names = op.apart
    return op.name, kinds, buckets.UPPER, op.kernel_args.index(flag), tuple(op.kernel_args.index(a) for a in names)


def make_fast_key(op: "Op") -> Callable[..., Optional[tuple]]:
    """``fast_key(*args)``: the call's fast-path key as the entry computes it (the C++ key, its
    guard included, once installed), or None when it cannot take the fast path."""
    names = op.kernel_args
    if op.key[0] != X:
        return lambda *args: None
    if _native_key is not None:
        spec, key = native_spec(op), _native_key
        return _compile([f"def fast_key({', '.join(names)}):",
                         f"    return _key(_spec, {', '.join(names)})"], {"_key": key, "_spec": spec}, "fast_key")
    body = _key_lines(op.name, op.key, names, "return None") + ["return key"]
    return _compile([f"def fast_key({', '.join(names)}):", *("    " + line for line in body)], dict(_SCOPE),
                    "fast_key")


def make_guard(op: "Op") -> Optional[Callable[..., bool]]:
    """The Python key's share of the in-place checks (``op.apart``): True when the flag is false
    or the tensors named are pairwise apart. The fast path's tensors are contiguous, so each one's
    memory is the byte range [data_ptr, data_ptr + nbytes) and disjoint ranges are exactly
    "apart" (address arithmetic costs a fraction of ``torch._C._overlaps`` calls;
    ``checks.overlaps`` decides the strided tensors of the full path)."""
    if op.apart is None:
        return None
    flag, names = op.apart
    lines = [f"def guard({', '.join(op.kernel_args)}):", f"    if not {flag}:", "        return True"]
    for a in names:
        lines.append(f"    p_{a} = None if {a} is None else {a}.data_ptr()")
        lines.append(f"    e_{a} = None if {a} is None else p_{a} + {a}.nbytes")
    pairs = [f"({a} is None or {b} is None or e_{a} <= p_{b} or e_{b} <= p_{a})"
             for i, a in enumerate(names) for b in names[i + 1:]]
    lines.append(f"    return {' and '.join(pairs) or 'True'}")
    return _compile(lines, {}, "guard")


def make_entry(op: "Op") -> Callable[..., Any]:
    """The op's entry ``entry(*args, backend=None)``: the fast path written out in one function
    (key, lookup, guard, kernel; no calls in between), every other call to ``op._full``."""
    names, args = op.kernel_args, ", ".join(op.kernel_args)
    full = f"return _full(({args},), backend, None)"
    head = [f"def entry({args}, backend=None):"]
    if op.key[0] != X:
        return _compile([*head, f"    {full}"], {"_full": op._full}, "entry")
    if _native_key is not None:  # the C++ key checks the dispatch mode and the guard itself
        lookup = ["if backend is not None or _is_compiling():", f"    {full}",
                  f"key = _key(_spec, {args})", "hit = _fast.get(key)", "if hit is None:"]
    else:
        guard = "" if op.apart is None else f" or not _guard({args})"
        lookup = ["if backend is not None or type(x) is not Tensor or _is_compiling() or _mode() is not None:",
                  f"    {full}", *_key_lines(op.name, op.key, names, full), "hit = _fast.get(key)",
                  f"if hit is None{guard}:"]
    body = [
        *lookup,
        f"    return _full(({args},), backend, key)",
        "fn, plan, fixes = hit",
        "if fixes:",
        f"    return _run(fn, plan, _fixed(({args},), fixes))",
        "try:",
        f"    return fn({args})",
        "except Exception as exc:",
        f"    return _recover(plan, ({args},), exc)",
    ]
    scope = {**_SCOPE, "_full": op._full, "_guard": make_guard(op), "_fast": REGISTRY.fast, "_fixed": _fixed,
             "_recover": REGISTRY.recover, "_run": _run, "_key": _native_key, "_spec": native_spec(op)}
    return _compile([*head, *("    " + line for line in body)], scope, "entry")


def declare(op: "Op") -> None:
    """Build ``op.fast_key`` and ``op.entry`` (and rebuild them when the key changes)."""
    op.fast_key = make_fast_key(op)
    op.entry = make_entry(op)
    if not any(o is op for o in _OPS):
        _OPS.append(op)


def use_native_key(fn: Optional[Callable[..., Optional[tuple]]]) -> None:
    """Key every op's fast path with ``fn`` (the C++ ``fast_key``; None: the Python key again);
    the fast entries recorded under the previous key are dropped."""
    global _native_key
    _native_key = fn
    for op in _OPS:
        declare(op)
    REGISTRY.fast.clear()


def _run(fn: Callable, plan: tuple, args: tuple) -> Any:
    """A fast entry's kernel on arguments with normalized scalars (the entry's ``fixes``)."""
    try:
        return fn(*args)
    except Exception as exc:
        return REGISTRY.recover(plan, args, exc)


def _fixed(args: tuple, fixes: tuple) -> tuple:
    out = list(args)
    for i, value in fixes:
        out[i] = value
    return tuple(out)
