"""The op machinery: from an op declaration (``normswitch.ops.*``) to its public entry.

An :class:`Op` is declared once per op, in its family's file under ``normswitch/ops/``. From
the declaration this module builds:

- the ``torch.library`` ops ``torch.ops.normswitch.<name>`` (functional) and, where the op
  writes into its arguments, ``<name>_out`` / ``<name>_`` declared with ``mutates_args``, each
  with its fake (meta) implementation, so traced calls appear as custom ops in the graph;
- the eager bypass: untraced calls skip the dispatcher and go to the registry's plan;
- the fast path: a call whose key (:func:`fast_key`) was seen before runs the plan at once.

A fast entry is recorded only when the checks returned every argument unchanged (no copy, no
reshape), so a call served by the fast path is exactly the call the checks accepted. The key
holds everything the checks and the call features read: types, dtypes, devices, the hidden size,
each parameter's shape and layout, the value of every scalar, and the row bucket (the plan may
depend on it through a tuning file).
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import numerics
from .registry import REGISTRY, BackendUnavailableError
from .tune import buckets

Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled
LIB = torch.library.Library("normswitch", "DEF")

X, LIKE, PARAM, VALUE, OUT = "x", "like", "param", "value", "out"
"""Argument kinds for the fast key: the input ``x`` (2-D, contiguous, M > 0); a tensor of x's
shape (or None); an (N,) parameter (or None); a scalar (float, int, bool or None); an output
tensor (only None takes the fast path: whether it overlaps an input is a matter of addresses)."""
_VALUE_TYPES = (float, int, bool, type(None))
_PARAM_TYPES = (Tensor, torch.nn.Parameter)
FAST_LIMIT = 4096
"""Fast entries kept at most (a process calling with ever new scalars must not grow without end)."""


def tracing() -> bool:
    """The one tracing predicate: True when the call must go through ``torch.ops.normswitch``.

    That is under ``torch.compile`` and under a dispatch mode (fake tensors, functionalization,
    ``make_fx``, profiling modes). Tensor subclasses outside both run eagerly like plain tensors:
    the registry selects by their ``device.type`` and the backend's ATen calls reach the subclass.
    """
    return _is_compiling() or _get_current_dispatch_mode() is not None


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


def _make_fast_key(name: str, kinds: tuple[str, ...], names: tuple[str, ...]) -> Callable[..., Optional[tuple]]:
    """``fast_key(*args)``: the call's fast-path key, or None when it cannot take the fast path."""
    if kinds[0] != X:
        return lambda *args: None
    body = _key_lines(name, kinds, names, "return None") + ["return key"]
    return _compile([f"def fast_key({', '.join(names)}):", *("    " + line for line in body)], dict(_SCOPE),
                    "fast_key")


def _make_entry(op: "Op") -> Callable[..., Any]:
    """The op's entry ``entry(*args, backend=None)``: the fast path written out in one function
    (key, lookup, guard, kernel; no calls in between), every other call to ``op._full``."""
    names, args = op.kernel_args, ", ".join(op.kernel_args)
    full = f"return _full(({args},), backend, None)"
    head = [f"def entry({args}, backend=None):"]
    if op.key[0] != X:
        return _compile([*head, f"    {full}"], {"_full": op._full}, "entry")
    guard = f" and _guard({args})" if op.guard is not None else ""
    body = [
        "if backend is not None or type(x) is not Tensor or _is_compiling() or _mode() is not None:",
        f"    {full}",
        *_key_lines(op.name, op.key, names, full),
        "hit = _fast.get(key)",
        f"if hit is None{' or not _guard(' + args + ')' if guard else ''}:",
        f"    return _full(({args},), backend, key)",
        "fn, plan, fixes = hit",
        "if fixes:",
        f"    return _run(fn, plan, _fixed(({args},), fixes))",
        "try:",
        f"    return fn({args})",
        "except Exception as exc:",
        f"    return _recover(plan, ({args},), exc)",
    ]
    scope = {**_SCOPE, "_full": op._full, "_guard": op.guard, "_fast": REGISTRY.fast, "_fixed": _fixed,
             "_recover": REGISTRY.recover, "_run": _run}
    return _compile([*head, *("    " + line for line in body)], scope, "entry")


def _run(fn: Callable, plan: tuple, args: tuple) -> Any:
    """A fast entry's kernel on arguments with normalized scalars (the entry's ``fixes``)."""
    try:
        return fn(*args)
    except Exception as exc:
        return REGISTRY.recover(plan, args, exc)


@dataclass
class Case:
    """One generated call of an op: its public arguments and how to check the result."""

    op: "Op"
    label: str
    kwargs: dict[str, Any]

    def run(self, backend: Optional[str] = None) -> Any:
        """Call the public op with these arguments (fresh copies of tensors it may write)."""
        return self.op.public(**self.op.fresh(self.kwargs), backend=backend)

    def errors(self, result: Any, on: "torch.device | str" = "cpu") -> list[tuple[str, float, float]]:
        """``(output name, error, tolerance)`` of each output against the float64 reference
        (compared on device ``on``, see :func:`normswitch.numerics.max_error`)."""
        got = self.op.outputs(result, self.kwargs)
        want = self.op.reference(**self.kwargs)
        rows = []
        for (name, out), ref in zip(got.items(), want):
            if ref is None:
                if out is not None:
                    rows.append((name, float("inf"), 0.0))
                continue
            tol = self.op.tolerance[torch.float32 if name in ("mean", "rstd") else out.dtype]
            rows.append((name, numerics.max_error(out, ref, on), tol))
        return rows


@dataclass
class Op:
    """The declaration of one op; see the module docstring for what is built from it.

    ``kernel_args`` are the names of the kernel contract, in order; the public function passes
    its arguments in that order. ``check(*args)`` validates and returns the normalized arguments;
    ``empty(*args)`` is the result when ``x`` has no elements; ``to_kernel(*args)`` returns the
    kernel's arguments and a function that turns the kernel's result into the public result
    (None when the result is returned as is); ``traced(kargs, backend)`` calls the
    ``torch.library`` op(s); ``features(*kargs)`` names the call's features for the registry;
    ``group(*kargs)`` is the group size of grouped ops (0 otherwise).
    """

    name: str
    kernel_args: tuple[str, ...]
    key: tuple[str, ...]
    check: Callable[..., tuple]
    empty: Callable[..., Any]
    to_kernel: Callable[..., tuple[tuple, Optional[Callable[[Any], Any]]]]
    traced: Callable[[tuple, Optional[str]], Any]
    features: Callable[..., tuple[str, ...]]
    reference: Callable[..., tuple]
    outputs: Callable[[Any, dict], dict[str, Optional[Tensor]]]
    cases: Callable[[str, torch.dtype], Iterator[tuple[str, dict]]]
    group: Callable[..., int] = lambda *kargs: 0
    tolerance: dict = field(default_factory=lambda: dict(numerics.TOLERANCE))
    writes: tuple[str, ...] = ()
    """Public arguments the op may write (``out``, in-place tensors): cases copy them per run."""
    guard: Optional[Callable[..., bool]] = None
    """Checks that depend on addresses (overlaps), not on the key: run on the fast path too."""
    public: Callable[..., Any] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.kinds = tuple(zip(self.key, range(len(self.key))))
        self.fast_key = _make_fast_key(self.name, self.key, self.kernel_args)
        """``fast_key(*args)``: the call's fast-path key, or None when it cannot take the fast path."""
        self.entry = _make_entry(self)
        """``entry(*args, backend=None)``: the op on public arguments in kernel-contract order."""
        REGISTRY.declare(self.name, self.kernel_args)

    def __call__(self, *args: Any, backend: Optional[str] = None) -> Any:
        """Run the op on public arguments given in kernel-contract order (see :func:`_make_entry`;
        the public functions call ``entry`` itself)."""
        return self.entry(*args, backend=backend)

    def _full(self, args: tuple, backend: Optional[str], key: Optional[tuple]) -> Any:
        """Every call the fast path does not serve: checks, plan, kernel; records a fast entry
        for ``key`` (the call's fast key, None when it cannot have one)."""
        checked = self.check(*args)
        x = checked[0]
        if x.numel() == 0:
            return self.empty(*checked)
        if _grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in checked):
            return self._differentiable(checked, backend)
        kargs, finish = self.to_kernel(*checked)
        if tracing():
            result = self.traced(kargs, backend)
        else:
            entry = self._entry(kargs, backend)
            result = REGISTRY.execute(entry, kargs)
            if key is not None and finish is None and not REGISTRY.watching:
                self._record(key, entry, args, kargs)
        return result if finish is None else finish(result)

    def _differentiable(self, checked: tuple, backend: Optional[str]) -> Any:
        """Grad mode is on and an input requires grad: the differentiable form builds the graph
        (no backend computes a backward), so a forced backend cannot serve the call."""
        if backend is not None:
            raise BackendUnavailableError(
                f"{self.name}: backend={backend!r} computes forward values only, and an input requires "
                "grad in grad mode; call under torch.no_grad() or torch.inference_mode(), or leave "
                "backend unset for the differentiable form")
        from .fallbacks import autograd

        return getattr(autograd, self.name)(*checked)

    def _record(self, key: tuple, entry: tuple, args: tuple, kargs: tuple) -> None:
        """Keep ``entry`` for ``key`` when the checks changed no tensor: scalars that they
        normalized (``group_size=None`` to N, an int eps to float) are fixed per key, so the
        fast path re-applies exactly that normalization."""
        if not REGISTRY.current(entry):  # the plan fell back during this call
            return
        fixes = []
        for (kind, i), a, k in zip(self.kinds, args, kargs):
            if a is not k:
                if kind != VALUE:
                    return
                fixes.append((i, k))
        if len(REGISTRY.fast) >= FAST_LIMIT:
            REGISTRY.fast.clear()
        REGISTRY.fast[key] = (entry[1].candidates[0][1], entry, tuple(fixes))

    def _entry(self, kargs: tuple, backend: Optional[str]) -> tuple:
        """The registry's ``(plan key, plan)`` for kernel arguments ``kargs``."""
        return REGISTRY.entry(self.name, kargs, self.features(*kargs), self.group(*kargs), backend)

    def run_kernel(self, kargs: tuple, backend: Optional[str]) -> Any:
        """Run the registry's plan for kernel arguments (the body of the ``torch.library`` ops)."""
        return REGISTRY.execute(self._entry(kargs, backend), kargs)

    def define(self, schema: str, impl: Callable, fake: Callable) -> None:
        """Declare ``torch.ops.normswitch.<schema name>`` with its implementation and fake."""
        LIB.define(schema)
        name = schema.split("(", 1)[0]
        LIB.impl(name, impl, "CompositeExplicitAutograd")
        torch.library.register_fake(f"normswitch::{name}", fake, lib=LIB)

    def define_with_out(self, params: str) -> None:
        """Declare the functional op ``<name>(params, str? backend) -> Tensor`` and its
        ``<name>_out(params, Tensor(a!) out, str? backend) -> ()``, for ops whose kernel
        contract ends with ``out`` and returns one tensor."""
        def functional(*args):
            *kargs, backend = args
            return self.run_kernel((*kargs, None), backend).contiguous()

        def into(*args) -> None:
            *kargs, out, backend = args
            self.run_kernel((*kargs, out), backend)

        self.define(f"{self.name}({params}, str? backend) -> Tensor", functional,
                    lambda *args: empty_like(args[0]))
        self.define(f"{self.name}_out({params}, Tensor(a!) out, str? backend) -> ()", into,
                    lambda *args: None)

    def fresh(self, kwargs: dict) -> dict:
        """``kwargs`` with copies of the tensors the op writes (so a case runs many times)."""
        return {k: (v.clone() if k in self.writes and isinstance(v, Tensor) else v)
                for k, v in kwargs.items()}

    def generate(self, device: str, dtype: torch.dtype) -> Iterator[Case]:
        """The op's cases (shapes, flags, layouts) on ``device`` in ``dtype``."""
        for label, kwargs in self.cases(device, dtype):
            yield Case(self, label, kwargs)


def traced_with_out(name: str) -> Callable[[tuple, Optional[str]], Tensor]:
    """``traced`` of an op declared with :meth:`Op.define_with_out` (the contract ends with ``out``)."""
    def traced(kargs: tuple, backend: Optional[str]) -> Tensor:
        *args, out = kargs
        if out is None:
            return getattr(torch.ops.normswitch, name)(*args, backend)
        getattr(torch.ops.normswitch, f"{name}_out")(*args, out, backend)
        return out
    return traced


def _fixed(args: tuple, fixes: tuple) -> tuple:
    out = list(args)
    for i, value in fixes:
        out[i] = value
    return tuple(out)


def empty_like(x: Tensor) -> Tensor:
    """A contiguous tensor like ``x`` (the fakes' and the functional ops' outputs)."""
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def rows(t: Tensor) -> Tensor:
    """A 2-D ``(M, N)`` view (or copy when no view exists) with unit stride along N."""
    if t.dim() == 2 and t.stride(1) == 1:
        return t
    r = t if t.dim() == 2 else t.reshape(-1, t.shape[-1])
    return r if r.stride(-1) == 1 or r.shape[-1] == 1 else r.contiguous()


def writable_rows(t: Tensor) -> Optional[Tensor]:
    """A 2-D view of ``t`` with unit stride along N that shares its memory, or None."""
    try:
        view = t if t.dim() == 2 else t.view(-1, t.shape[-1])
    except RuntimeError:
        return None
    return view if view.stride(-1) == 1 or view.shape[-1] == 1 else None


def strided(t: Optional[Tensor]) -> bool:
    """True when the rows of 2-D ``t`` are not packed (``stride(0) != N`` with M > 1)."""
    return t is not None and t.shape[0] > 1 and t.stride(0) != t.shape[1]
