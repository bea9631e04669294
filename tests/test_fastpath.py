"""The eager fast path: after a valid call, calls with the same key skip the checks; every other
call still gets the full checks, arguments the checks would normalize never take it, and a
backend fault on the fast path falls back and drops the fast entries. Every test runs with the
Python key and with the C++ key of the CPU kernels (where they build)."""
import pytest
import torch
from prometheus_client import REGISTRY as PROM

import normswitch as ns
from normswitch import _fast
from normswitch.kernels import cpu
from normswitch.ops import DECLARATIONS
from normswitch.registry import REGISTRY, register_impl


@pytest.fixture(autouse=True, params=["python key", "native key"])
def key(request):
    """The fast path keyed in Python, or by the CPU kernels' ``fast_key`` (which stays installed
    after the test where the kernels load, as in a process that has loaded them)."""
    native = request.param == "native key"
    if native and cpu.EXTENSION.problem() is not None:
        pytest.skip(cpu.EXTENSION.problem())
    ext = cpu.EXTENSION.load() if native or cpu.EXTENSION.module is not None else None
    _fast.use_native_key(ext.fast_key if native else None)
    yield request.param
    _fast.use_native_key(None if ext is None else ext.fast_key)


def test_fast_path_taken_and_same_result():
    x, w, r = torch.randn(4, 96), torch.randn(96), torch.randn(4, 96)
    first = ns.rms_norm(x, w)
    assert any(k[0] == "rms_norm" for k in REGISTRY.fast)
    assert torch.equal(ns.rms_norm(x, w), first)
    y, s = ns.fused_add_rms_norm(x, r, w)
    assert torch.equal(ns.fused_add_rms_norm(x, r, w)[0], y)
    b = torch.randn(96)
    assert torch.equal(ns.layer_norm(x, w, b), ns.layer_norm(x, w, b))
    g = ns.norm_gated(x, w, b, r)[0]
    assert torch.equal(ns.norm_gated(x, w, b, r)[0], g)
    assert {k[0] for k in REGISTRY.fast} == {"rms_norm", "fused_add_rms_norm", "layer_norm", "norm_gated"}


def test_checks_still_run_after_a_valid_call():
    x, w = torch.randn(4, 96), torch.randn(96)
    ns.rms_norm(x, w)
    with pytest.raises(ValueError, match="weight"):
        ns.rms_norm(x, torch.randn(95))
    with pytest.raises(ValueError, match="eps"):
        ns.rms_norm(x, w, -1.0)
    with pytest.raises(ValueError, match="eps"):
        ns.rms_norm(x, w, float("nan"))
    with pytest.raises(TypeError, match="weight_offset"):
        ns.rms_norm(x, w, weight_offset=float("inf"))
    with pytest.raises(TypeError, match="x"):
        ns.rms_norm(x.to(torch.int32), w)
    with pytest.raises(TypeError, match="weight"):
        ns.rms_norm(x, w.to(torch.int32))
    with pytest.raises(TypeError, match="weight"):
        ns.rms_norm(x, w.tolist())
    ns.fused_add_rms_norm(x, x.clone(), w)
    with pytest.raises(ValueError, match="residual"):
        ns.fused_add_rms_norm(x, torch.randn(4, 97), w)
    with pytest.raises(TypeError, match="residual"):
        ns.fused_add_rms_norm(x, None, w)
    ns.layer_norm(x, w, w)
    with pytest.raises(ValueError, match="bias"):
        ns.layer_norm(x, w, torch.randn(3))
    with pytest.raises(TypeError, match="bias"):
        ns.layer_norm(x, w, w.numpy())


@pytest.mark.parametrize("what", ["strided", "expanded", "float64"])
def test_normalized_parameters_never_take_the_fast_path(what):
    """A weight the checks copy (strided, expanded) is never served from the fast path."""
    x = torch.randn(8, 256, dtype=torch.bfloat16)
    w = {"strided": torch.randn(512, dtype=torch.bfloat16)[::2],
         "expanded": torch.randn(1, dtype=torch.bfloat16).expand(256),
         "float64": torch.randn(256, dtype=torch.float64)}[what]
    want = ns.rms_norm(x, w.contiguous(), backend="native")
    for _ in range(3):
        assert torch.equal(ns.rms_norm(x, w), want)
    if what != "float64":
        assert not any(k[0] == "rms_norm" for k in REGISTRY.fast)


def test_group_size_none_is_fixed_per_key():
    """``group_size=None`` becomes N: the fast path re-applies that normalization."""
    x, w, z = torch.randn(3, 64), torch.randn(64), torch.randn(3, 64)
    want = ns.norm_gated(x, w, None, z, group_size=64)
    for _ in range(2):
        got = ns.norm_gated(x, w, None, z)
        assert all(torch.equal(g, e) for g, e in zip(got[::2], want[::2]))
    fixes = {v[2] for k, v in REGISTRY.fast.items() if k[0] == "norm_gated"}
    assert fixes == {(), ((5, 64),)}  # group_size=64 as given; None fixed to 64


def test_in_place_fused_add_on_the_fast_path():
    x, r, w = torch.randn(3, 64), torch.randn(3, 64), torch.randn(64)
    want_y, want_r = ns.fused_add_rms_norm(x, r, w)
    for _ in range(2):  # the second call takes the fast path
        xi, ri = x.clone(), r.clone()
        yi, si = ns.fused_add_rms_norm(xi, ri, w, inplace=True)
        assert yi is xi and si is ri
        assert torch.equal(xi, want_y) and torch.equal(ri, want_r)


def test_out_never_takes_the_fast_path():
    x, w = torch.randn(4, 32), torch.randn(32)
    out = torch.empty_like(x)
    for _ in range(2):
        assert ns.rms_norm(x, w, out=out) is out
    assert not any(k[0] == "rms_norm" for k in REGISTRY.fast)


def test_fault_on_the_fast_path_falls_back_once(monkeypatch):
    """A backend that raises on a fast-path call: the call is served by the next backend, one
    count with reason ``error``, and the fast entries are dropped."""
    calls = []
    native = REGISTRY.impl("rms_norm", "native").fn

    def flaky(x, weight, eps, weight_offset, out):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected launch failure")
        return native(x, weight, eps, weight_offset, out)

    register_impl("rms_norm", "flaky", flaky, available=lambda device: None)
    try:
        monkeypatch.setenv("NORMSWITCH_BACKEND_RMS_NORM", "flaky")
        ns.reset()
        labels = dict(op="rms_norm", device="cpu", from_backend="flaky", to_backend="cpu", reason="error")
        before = PROM.get_sample_value("normswitch_fallbacks_total", labels) or 0.0
        x, w = torch.randn(4, 96), torch.randn(96)
        want = ns.rms_norm(x, w, backend="native")
        assert torch.equal(ns.rms_norm(x, w), want)  # flaky, recorded
        got = ns.rms_norm(x, w)  # fast path: flaky raises, cpu (or native) serves
        torch.testing.assert_close(got, want)
        assert not any(k[0] == "rms_norm" and v[0] is flaky for k, v in REGISTRY.fast.items())
        ns.rms_norm(x, w)
        assert len(calls) == 2  # flaky is not tried again for this kind of call
        after = PROM.get_sample_value("normswitch_fallbacks_total", labels) or 0.0
        cpu_served = REGISTRY.availability("rms_norm", "cpu", "cpu") is None
        assert after - before == (1.0 if cpu_served else 0.0)
    finally:
        REGISTRY.unregister("flaky")


def test_every_op_has_a_fast_key_of_its_arguments():
    for op in DECLARATIONS.values():
        assert op.fast_key.__code__.co_varnames[:len(op.kernel_args)] == op.kernel_args or op.key[0] != "x"
