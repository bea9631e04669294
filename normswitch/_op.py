"""The op machinery: from an op declaration (``normswitch.ops.*``) to its public entry.

An :class:`Op` is declared once per op, in its family's file under ``normswitch/ops/``. From
the declaration this module builds:

- the ``torch.library`` ops ``torch.ops.normswitch.<name>`` (functional) and, where the op
  writes into its arguments, ``<name>_out`` / ``<name>_`` declared with ``mutates_args``, each
  with its fake (meta) implementation, so traced calls appear as custom ops in the graph;
- the eager bypass: untraced calls skip the dispatcher and go to the registry's plan;
- the fast path (:mod:`normswitch._fast`): a call whose key was seen before runs the plan at once.

A fast entry is recorded only when the checks returned every argument unchanged (no copy, no
reshape), so a call served by the fast path is exactly the call the checks accepted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import _fast, numerics
from ._fast import VALUE
from .registry import REGISTRY, BackendUnavailableError, log

Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled
LIB = torch.library.Library("normswitch", "DEF")

FAST_LIMIT = 4096
"""Fast entries kept at most (a process calling with ever new scalars must not grow without end)."""


def tracing() -> bool:
    """The one tracing predicate: True when the call must go through ``torch.ops.normswitch``.

    That is under ``torch.compile`` and under a dispatch mode (fake tensors, functionalization,
    ``make_fx``, profiling modes). Tensor subclasses outside both run eagerly like plain tensors:
    the registry selects by their ``device.type`` and the backend's ATen calls reach the subclass.
    """
    return _is_compiling() or _get_current_dispatch_mode() is not None


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
    apart: Optional[tuple[str, tuple[str, ...]]] = None
    """``(flag, names)``: when argument ``flag`` is true, the tensors ``names`` must not share
    memory. Addresses are not in the key, so the fast path checks this on every call."""
    public: Callable[..., Any] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.kinds = tuple(zip(self.key, range(len(self.key))))
        self.fast_key: Callable[..., Optional[tuple]]
        """``fast_key(*args)``: the call's fast-path key, or None when it cannot take the fast path."""
        self.entry: Callable[..., Any]
        """``entry(*args, backend=None)``: the op on public arguments in kernel-contract order."""
        _fast.declare(self)
        REGISTRY.declare(self.name, self.kernel_args)

    def __call__(self, *args: Any, backend: Optional[str] = None) -> Any:
        """Run the op on public arguments given in kernel-contract order (see :func:`normswitch._fast.make_entry`;
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
        REGISTRY.fast[key] = (_bound(entry[1].candidates[0][1], kargs), entry, tuple(fixes))

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


def _bound(fn: Callable, kargs: tuple) -> Callable:
    """The kernel function the fast path calls for calls of ``kargs``' kind: the backend's bound
    form where it has one (``fn.bind(*kargs)``: the same function with the launch worked out once,
    see ``kernels/triton/bound.py``), else ``fn``."""
    bind = getattr(fn, "bind", None)
    if bind is None:
        return fn
    try:
        return bind(*kargs) or fn
    except Exception as exc:  # the unbound launch still serves the call kind; say why once
        if type(exc) not in _BIND_FAILURES:
            _BIND_FAILURES.add(type(exc))
            log.warning("normswitch: %s: launches not bound (%s: %s); using the ordinary launch",
                        getattr(fn, "__qualname__", fn), type(exc).__name__, exc)
        return fn


_BIND_FAILURES: set[type] = set()

