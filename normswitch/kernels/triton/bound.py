"""Bound launches of the row kernels: the launch of one kind of call worked out once.

``kernel[grid](...)`` costs tens of microseconds of host time per call (Triton binds ~35
arguments, computes their specialization and looks up the compiled kernel each time), more than
the kernel itself at decode sizes. The fast path of the ops (``normswitch._fast``) serves a call
kind whose dtype, device, hidden size, parameters and scalars are fixed; for it a
:class:`RowLaunch` keeps the argument list with every fixed value in place and the compiled
kernels, and per call fills in only the tensors and the row count, then calls the compiled
kernel's launcher directly, the way ``JITFunction.run`` does after its lookup, with the tensors'
addresses as integers (the launcher then skips a driver query per pointer).

The compiled kernel is exactly the one ``kernel[grid](...)`` picks for the same arguments: it is
taken from that launch (the first call of each variant goes through it). What Triton specializes
on and may vary between calls of one kind is checked on every call: the tensors' 16-byte
alignment (an unaligned call returns False and takes the ordinary launch) and ``PARAMS_FIRST``
(derived from the grid: one compiled kernel per value). The row count ``M`` is not specialized
(``do_not_specialize``) and row strides are the hidden size (the fast path's tensors are
contiguous). Under the interpreter nothing is bound.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

import triton
from triton.runtime import driver

try:
    from triton import knobs as _knobs
except ImportError:  # older Triton: no launch hooks to honour
    _knobs = None

ALIGN = 16
"""Byte alignment Triton specializes pointer arguments on."""


def _hooks() -> tuple[Any, Any]:
    runtime = getattr(_knobs, "runtime", None)
    return getattr(runtime, "launch_enter_hook", None), getattr(runtime, "launch_exit_hook", None)


class RowLaunch:
    """The launch of a row kernel for one kind of call.

    Parameters
    ----------
    kernel : triton.JITFunction
        The row kernel.
    args : list
        Its arguments in parameter order for a sample call of the kind (tensors, ints, floats,
        constexpr values).
    roles : tuple of torch.Tensor or None
        The sample call's tensors in the order :meth:`__call__` receives them; every tensor
        argument must be one of them.
    num_warps, params_first_max : int
        The launch's warps; ``PARAMS_FIRST`` is true for grids of at most ``params_first_max``
        programs. The grid is ``ceil(M * n_groups / BLOCK_M)`` programs, both read from ``args``.
    """

    def __init__(self, kernel: Any, args: list, roles: tuple[Optional[torch.Tensor], ...], *,
                 num_warps: int, params_first_max: int) -> None:
        names = list(kernel.arg_names)
        if len(names) != len(args) or not {"M", "n_groups", "BLOCK_M", "PARAMS_FIRST"} <= set(names):
            raise ValueError(f"{len(args)} arguments for the parameters {names}")
        self.kernel, self.template = kernel, list(args)
        self.fill = []
        for slot, value in enumerate(args):
            if isinstance(value, torch.Tensor):
                self.fill.append((slot, next(i for i, t in enumerate(roles) if t is value)))
                self.template[slot] = None
        self.m_slot, self.pf_slot = names.index("M"), names.index("PARAMS_FIRST")
        self.rows_per_program, self.n_groups = args[names.index("BLOCK_M")], args[names.index("n_groups")]
        self.num_warps, self.params_first_max = num_warps, params_first_max
        self.compiled: dict[bool, Any] = {}
        self.unbound = False
        """Set when the ordinary launch returned no launchable kernel (another Triton API)."""

    def __call__(self, m: int, tensors: tuple[Optional[torch.Tensor], ...]) -> bool:
        """Launch on ``m`` rows with ``tensors`` (the roles' order); False, launching nothing,
        when a tensor is not 16-byte aligned (the ordinary launch serves such calls)."""
        if self.unbound:
            return False
        ptrs = [None if t is None else t.data_ptr() for t in tensors]
        bits = 0
        for ptr in ptrs:
            if ptr is not None:
                bits |= ptr
        if bits % ALIGN:
            return False
        programs = -(-m * self.n_groups // self.rows_per_program)
        params_first = programs <= self.params_first_max
        args = self.template.copy()
        args[self.m_slot] = m
        args[self.pf_slot] = params_first
        compiled = self.compiled.get(params_first)
        if compiled is None:  # the ordinary launch, once per variant: it compiles and returns the kernel
            for slot, role in self.fill:
                args[slot] = tensors[role]
            compiled = self.kernel[(programs,)](*args, num_warps=self.num_warps)
            if not all(hasattr(compiled, a) for a in ("_init_handles", "launch_metadata", "packed_metadata")):
                self.unbound = True  # launched; later calls take the ordinary launch
                return True
            compiled._init_handles()
            self.compiled[params_first] = compiled
            return True
        # Pointers as integers: the launcher takes them as they are, where for a tensor it would
        # call data_ptr() again and ask the driver to validate the address (most of its host time).
        for slot, role in self.fill:
            args[slot] = ptrs[role]
        device = driver.active.get_current_device()
        stream = driver.active.get_current_stream(device)
        grid = (programs, 1, 1)
        enter, leave = _hooks()
        compiled.run(programs, 1, 1, stream, compiled.function, compiled.packed_metadata,
                     compiled.launch_metadata(grid, stream, *args), enter, leave, *args)
        return True


def bindable() -> bool:
    """True when launches can be bound (a compiled Triton with the launcher API this uses)."""
    from . import interpreting

    return not interpreting() and hasattr(triton.compiler.CompiledKernel, "launch_metadata")
