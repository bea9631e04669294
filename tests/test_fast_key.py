"""The C++ key of the fast path (``kernels/common/fast_key.cpp``) against the Python key it
replaces once the CPU kernels load: the same calls take the fast path, the same calls share a key,
and what the Python entry sends to the full checks (subclasses, grad, dispatch modes, overlapping
in-place tensors) the C++ key sends there too."""
import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import normswitch as ns
from normswitch import _fast
from normswitch.kernels import cpu
from normswitch.ops import DECLARATIONS
from tests.ops import harness as h

pytestmark = pytest.mark.skipif(cpu.EXTENSION.problem() is not None, reason=f"{cpu.EXTENSION.problem()}")


@pytest.fixture
def keys():
    """``{"python": {op: fast_key}, "native": {...}}`` (the native key stays installed after)."""
    ext = cpu.EXTENSION.load()
    found = {}
    for which, fn in (("python", None), ("native", ext.fast_key)):
        _fast.use_native_key(fn)
        found[which] = {name: op.fast_key for name, op in DECLARATIONS.items()}
    yield found
    _fast.use_native_key(ext.fast_key)


def _calls():
    """``(op, label, kernel args)`` of every generated case, plus variants the key must tell apart."""
    for name, op in DECLARATIONS.items():
        for dtype in h.DTYPES:
            for case in op.generate("cpu", dtype):
                yield name, case.label, h.kernel_args(case)
    x, w = torch.randn(4, 96), torch.randn(96)
    r = torch.randn(4, 96)
    rms = ("rms_norm", "fused_add_rms_norm")
    yield rms[0], "Parameter weight", (x, torch.nn.Parameter(w, requires_grad=False), 1e-6, 0.0, None)
    yield rms[0], "int eps", (x, w, 1, 0.0, None)
    yield rms[0], "bool eps", (x, w, True, 0.0, None)
    yield rms[0], "17 rows", (torch.randn(17, 96), w, 1e-6, 0.0, None)
    yield rms[0], "(1, 96) weight", (x, w.view(1, 96), 1e-6, 0.0, None)
    yield rms[0], "Parameter x", (torch.nn.Parameter(x, requires_grad=False), w, 1e-6, 0.0, None)
    yield rms[0], "list weight", (x, w.tolist(), 1e-6, 0.0, None)
    yield rms[0], "tensor eps", (x, w, torch.tensor(1e-6), 0.0, None)
    yield rms[0], "3-D x", (x.view(2, 2, 96), w, 1e-6, 0.0, None)
    yield rms[0], "strided x", (torch.randn(4, 192)[:, ::2], w, 1e-6, 0.0, None)
    yield rms[1], "in place", (x, r, w, 1e-6, 0.0, True)
    yield rms[1], "in place, x is residual", (x, x, w, 1e-6, 0.0, True)
    yield rms[1], "in place, weight in x", (x, r, x[0], 1e-6, 0.0, True)
    yield rms[1], "returning, x is residual", (x, x, w, 1e-6, 0.0, False)
    yield rms[1], "residual of another shape", (x, torch.randn(4, 95), w, 1e-6, 0.0, False)
    yield rms[1], "float64 residual", (x, r.double(), w, 1e-6, 0.0, False)


def test_native_key_takes_the_calls_the_python_key_takes(keys):
    """The C++ key is None exactly where the Python entry would not serve the call from the fast
    path (x is not a plain tensor, its key is None, or its guard fails); and two calls share a C++ key exactly when they
    share a Python key."""
    seen = []
    for name, label, args in _calls():
        py, nat = keys["python"][name](*args), keys["native"][name](*args)
        guard = _fast.make_guard(DECLARATIONS[name])
        fast = type(args[0]) is torch.Tensor and py is not None and (guard is None or guard(*args))
        assert (nat is not None) == fast, f"{name} {label!r}: python {py}, native {nat}"
        if fast:
            seen.append((name, label, py, nat))
    for (_, la, pa, na), (_, lb, pb, nb) in itertools.combinations(seen, 2):
        assert (pa == pb) == (na == nb), f"{la!r} and {lb!r}"


def test_native_key_declines_grad_modes_and_subclasses(keys):
    key = keys["native"]["rms_norm"]
    x, w = torch.randn(2, 64), torch.randn(64, requires_grad=True)
    assert key(x, w, 1e-6, 0.0, None) is None  # grad mode on, weight requires grad
    with torch.no_grad():
        assert key(x, w, 1e-6, 0.0, None) is not None
    with torch.inference_mode():
        assert key(x, w.detach(), 1e-6, 0.0, None) is not None

    class Sub(torch.Tensor):
        pass

    assert key(x.as_subclass(Sub), w.detach(), 1e-6, 0.0, None) is None

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Mode():
        assert key(x, w.detach(), 1e-6, 0.0, None) is None


def test_public_ops_under_the_native_key(keys):
    """After a valid call the fast path serves the next one; an overlapping in-place call still
    fails its checks, on a key the fast path has seen."""
    x, r, w = torch.randn(3, 64), torch.randn(3, 64), torch.randn(64)
    want = ns.fused_add_rms_norm(x, r, w)
    for _ in range(3):
        xi, ri = x.clone(), r.clone()
        got = ns.fused_add_rms_norm(xi, ri, w, inplace=True)
        assert got[0] is xi and got[1] is ri
        assert torch.equal(xi, want[0]) and torch.equal(ri, want[1])
    assert keys["native"]["fused_add_rms_norm"](xi, ri, w, 1e-6, 0.0, True) in _fast.REGISTRY.fast
    with pytest.raises(ValueError, match="residual"):
        ns.fused_add_rms_norm(xi, xi, w, inplace=True)
    big = torch.randn(4, 64)
    with pytest.raises(ValueError):
        ns.fused_add_rms_norm(big[:3], r.clone(), big[2], inplace=True)
    with pytest.raises(TypeError, match="spec"):
        cpu.EXTENSION.module.fast_key((), x)
