"""An emulated accelerator: PyTorch's PrivateUse1 backend renamed to ``npu`` or ``gcu``, its
tensors kept in CPU memory.

:func:`setup` (once per process: PyTorch renames PrivateUse1 once) makes ``name`` a device type
PyTorch knows. A tensor on it is an :class:`EmulatedTensor`: a wrapper subclass whose device is
``name:0`` and whose data is a CPU tensor (``.host``). Every ATen op on such tensors reaches
``__torch_dispatch__``, which runs the op on the CPU tensors and wraps the results: views stay
views of the same CPU memory, in-place and ``out=`` ops write into it and return the very wrapper
they were given. Factories (``torch.empty(..., device="npu")``, ``torch.randn``, ``t.to("npu")``)
reach the PrivateUse1 fallback registered here, which does the same. A custom op (vLLM IR, an
engine's library) is not unwrapped: its own kernel for the device runs on the emulated tensors.

As on a real accelerator, an op that mixes an emulated tensor with a CPU tensor raises (except a
0-dim CPU scalar, and the copies between the two). What is not emulated: addresses (each wrapper
has storage of its own as far as ``torch._C._overlaps`` can tell), streams, events, graphs.
"""
from __future__ import annotations

import contextlib
import sys
import types
from collections import Counter
from typing import Any, Iterator, Optional

import torch
from torch.utils._pytree import tree_map

aten = torch.ops.aten
Tensor = torch.Tensor
CPU = torch.device("cpu")

NAME: Optional[str] = None
"""The emulated device type once :func:`setup` ran (``npu`` or ``gcu``)."""
DEVICE: Optional[torch.device] = None
"""``torch.device(NAME, 0)``: the device of every emulated tensor."""

_TRANSFERS = (aten.copy_.default, aten._to_copy.default, aten._copy_from.default,
              aten._copy_from_and_resize.default)
"""Ops that may take a CPU tensor beside an emulated one: copies between host and device."""
_DEVICE_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.PrivateUse1)
"""Where a custom op is redispatched: its kernel for the device (or its composite one)."""


class KernelWatch:
    """What ran on the emulated device while a registry-selected kernel ran (see ``guards``)."""

    def __init__(self) -> None:
        self.kernel: Optional[str] = None
        self.ops: Counter = Counter()  # ATen ops run on emulated tensors, per kernel
        self.host_copies: list[str] = []  # device-to-host copies made inside a kernel

    @contextlib.contextmanager
    def inside(self, kernel: str) -> Iterator[None]:
        outer, self.kernel = self.kernel, kernel
        try:
            yield
        finally:
            self.kernel = outer


WATCH = KernelWatch()


class EmulatedTensor(Tensor):
    """A tensor on the emulated device; ``host`` holds its elements (same shape and strides)."""

    host: Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl  # results are wrapped by dispatch only

    @staticmethod
    def __new__(cls, host: Tensor) -> "EmulatedTensor":
        if DEVICE is None:
            raise RuntimeError("emulated.setup(name) must run first")
        t = Tensor._make_wrapper_subclass(
            cls, host.shape, strides=host.stride(), storage_offset=host.storage_offset(),
            dtype=host.dtype, layout=host.layout, device=DEVICE, requires_grad=False)
        t.host = host
        return t

    def __repr__(self) -> str:  # Tensor.__repr__ would run ops (and print device='cpu' data)
        return f"EmulatedTensor({DEVICE}, {self.dtype}, shape={tuple(self.shape)}, stride={self.stride()})"

    def data_ptr(self) -> int:
        """The address of the CPU memory that holds the elements (Python callers only)."""
        return self.host.data_ptr()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        if func.namespace not in ("aten", "prims"):
            # A custom op (vLLM IR, an engine's or normswitch's library): its own kernel for the
            # device runs, with the emulated tensors, as on a real device (unwrapping would hand it
            # CPU tensors, and what it calls would select CPU kernels).
            return func.redispatch(_DEVICE_KEYS, *args, **(kwargs or {}))
        if func is aten._has_compatible_shallow_copy_type.default:
            # ``nn.Module.to`` asks whether ``param.data = moved`` may swap the TensorImpl's data:
            # never for a wrapper (the CPU tensors' answer would be wrong), so it makes a new Parameter.
            return False
        return _run(func, args, kwargs or {}, strict=True)


def _run(func: Any, args: tuple, kwargs: dict, strict: bool) -> Any:
    """Run ``func`` on the CPU tensors behind its emulated arguments; wrap what it returns.

    ``strict``: raise when a CPU tensor (other than a 0-dim scalar) meets an emulated one, as a
    real device does; the factory fallback (``strict=False``) may take a CPU source tensor.
    """
    given: dict[int, EmulatedTensor] = {}  # id(host) -> wrapper: the tensors an op hands back
    plain: dict[int, Tensor] = {}

    def unwrap(a: Any) -> Any:
        if isinstance(a, EmulatedTensor):
            given[id(a.host)] = a
            return a.host
        if isinstance(a, Tensor):
            plain[id(a)] = a
        if isinstance(a, torch.device) and a.type == NAME:
            return CPU
        return a

    host_args, host_kwargs = tree_map(unwrap, (args, kwargs))
    if strict and func not in _TRANSFERS:
        for t in plain.values():
            if t.dim() > 0 or t.device.type != "cpu":
                raise RuntimeError(f"{func}: expected all tensors to be on the same device, but found at "
                                   f"least two devices, {DEVICE} and {t.device} (shape {tuple(t.shape)})")
    target = kwargs.get("device")
    to_host = func is aten._to_copy.default and target is not None and torch.device(target).type != NAME
    if WATCH.kernel is not None:
        WATCH.ops[WATCH.kernel] += 1
        if to_host or (func is aten.copy_.default and id(args[0]) in plain):
            WATCH.host_copies.append(f"{WATCH.kernel}: {func}")
    result = func(*host_args, **host_kwargs)

    def wrap(r: Any) -> Any:
        if not isinstance(r, Tensor):
            return r
        if id(r) in given:  # in place or out=: the wrapper it was given, unchanged in shape
            w = given[id(r)]
            if w.shape != r.shape or w.stride() != r.stride() or w.storage_offset() != r.storage_offset():
                raise NotImplementedError(f"{func} changed the shape or strides of an emulated tensor "
                                          "in place (resize_/as_strided_ are not emulated)")
            return w
        if id(r) in plain or to_host:
            return r
        if torch.is_inference_mode_enabled() and not r.is_inference():
            # A view of a normal tensor made in inference mode is a normal tensor (autograd then
            # sets its version counter): so is its wrapper.
            with torch.inference_mode(False):
                return EmulatedTensor(r)
        return EmulatedTensor(r)

    return tree_map(wrap, result)


def _fallback(op: Any, *args: Any, **kwargs: Any) -> Any:
    """The PrivateUse1 kernel of every op that has none. ATen ops that reach it hold no emulated
    tensor (those take ``__torch_dispatch__``): factories and copies from the host. A custom op
    without a kernel for the device raises, as on a real device."""
    if op.namespace not in ("aten", "prims"):
        raise NotImplementedError(f"{op} has no kernel for the {NAME} backend (PrivateUse1) "
                                  "nor a CompositeExplicitAutograd one")
    return _run(op, args, kwargs, strict=False)


class _Hooks(torch._C._acc.PrivateUse1Hooks):
    """What PyTorch asks a PrivateUse1 backend at lazy initialisation."""

    def is_available(self) -> bool:
        return True

    def has_primary_context(self, dev_id: int) -> bool:
        return True

    def is_built(self) -> bool:
        return True


class _Guard(torch._C._acc.DeviceGuard):
    """The device guard of a one-device backend."""

    def type_(self):
        return torch._C._autograd.DeviceType.PrivateUse1


_LIB: Optional[torch.library.Library] = None


def setup(name: str) -> torch.device:
    """Rename PrivateUse1 to ``name`` and back it with CPU memory; returns ``name:0``.

    Idempotent for one name; a second name in the same process raises (run each device type
    in a process of its own).
    """
    global NAME, DEVICE, _LIB
    current = torch._C._get_privateuse1_backend_name()
    if current == name and DEVICE is not None:
        return DEVICE
    if current != "privateuseone":
        raise RuntimeError(f"PrivateUse1 is already named {current!r} in this process; "
                           f"run the {name!r} tests in a process of their own")
    torch.utils.rename_privateuse1_backend(name)
    torch._C._acc.register_python_privateuseone_hook(_Hooks())
    torch._C._acc.register_python_privateuseone_device_guard(_Guard())
    # PyTorch's lazy device initialisation imports ``torch.<name>``. It is put in sys.modules
    # only, not set as ``torch.<name>``: with that attribute the engines take their vendor path
    # (SGLang imports torch_npu when torch.npu.is_available()), which does not exist here.
    sys.modules[f"torch.{name}"] = types.ModuleType(f"torch.{name}", f"emulated {name} device (tests)")
    _LIB = torch.library.Library("_", "IMPL")
    _LIB.fallback(_fallback, "PrivateUse1")
    NAME, DEVICE = name, torch.device(name, 0)
    return DEVICE


def emulate(tree: Any) -> Any:
    """Every CPU tensor in ``tree`` as an emulated tensor over the same memory, same strides
    (a view stays a view: the layout of a test input is kept, unlike ``t.to(device)``)."""
    def move(a: Any) -> Any:
        if isinstance(a, Tensor) and not isinstance(a, EmulatedTensor) and a.device.type == "cpu":
            return EmulatedTensor(a)
        return a
    return tree_map(move, tree)


def on_device(t: Any) -> bool:
    """True for an emulated tensor on the emulated device (parameters included)."""
    return isinstance(t, EmulatedTensor) and t.device == DEVICE and t.host.device.type == "cpu"
