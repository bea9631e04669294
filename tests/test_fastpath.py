"""The eager fast path: after a valid call, calls with the same key skip the checks; every other
call still gets the full checks, and a backend failure drops the fast entries."""
import pytest
import torch

import normswitch as ns
from normswitch.registry import REGISTRY


@pytest.fixture(autouse=True)
def fresh():
    ns.reset()
    yield
    ns.reset()


def test_fast_path_taken_and_same_result():
    x, w, r = torch.randn(4, 96), torch.randn(96), torch.randn(4, 96)
    first = ns.rms_norm(x, w)
    assert any(k[0] == "rms_norm" for k in REGISTRY.fast)
    assert torch.equal(ns.rms_norm(x, w), first)
    y, s = ns.fused_add_rms_norm(x, r, w)
    assert torch.equal(ns.fused_add_rms_norm(x, r, w)[0], y)
    b = torch.randn(96)
    assert torch.equal(ns.layer_norm(x, w, b), ns.layer_norm(x, w, b))
    assert {k[0] for k in REGISTRY.fast} == {"rms_norm", "fused_add_rms_norm", "layer_norm"}


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
    ns.fused_add_rms_norm(x, x.clone(), w)
    with pytest.raises(ValueError, match="residual"):
        ns.fused_add_rms_norm(x, torch.randn(4, 97), w)
    ns.layer_norm(x, w, w)
    with pytest.raises(ValueError, match="bias"):
        ns.layer_norm(x, w, torch.randn(3))


def test_in_place_fused_add_on_the_fast_path():
    x, r, w = torch.randn(3, 64), torch.randn(3, 64), torch.randn(64)
    want_y, want_r = ns.fused_add_rms_norm(x, r, w)
    for _ in range(2):  # the second call takes the fast path
        xi, ri = x.clone(), r.clone()
        yi, si = ns.fused_add_rms_norm(xi, ri, w, inplace=True)
        assert yi is xi and si is ri
        assert torch.equal(xi, want_y) and torch.equal(ri, want_r)


def test_backend_failure_clears_fast_entries(monkeypatch):
    x, w = torch.randn(4, 96), torch.randn(96)
    ns.rms_norm(x, w)
    key, (plan_key, plan) = next((k, v) for k, v in REGISTRY.fast.items() if k[0] == "rms_norm")
    if len(plan.candidates) == 1:
        pytest.skip("a single-candidate plan has nothing to fall back to")

    def boom(*args):
        raise RuntimeError("injected")
    plan.candidates[0] = (plan.candidates[0][0], boom)
    y = ns.rms_norm(x, w)
    assert torch.equal(y, ns.rms_norm(x, w, backend="native"))
    assert key not in REGISTRY.fast or REGISTRY.fast[key][1] is not plan
