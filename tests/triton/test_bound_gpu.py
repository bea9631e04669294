"""Bound Triton launches (``kernels/triton/bound.py``) on a CUDA GPU: the fast path's bound form
of each op gives bitwise what the ordinary launch gives, for row counts across the buckets and
across the ``PARAMS_FIRST`` switch, for unaligned inputs (which take the ordinary launch) and
inside a CUDA graph."""
from __future__ import annotations

import pytest
import torch

import normswitch as ns
from normswitch.registry import REGISTRY

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
DEV = "cuda"
ROWS = (1, 3, 16, 17, 64, 300, 1024, 1025, 4096)
"""Row counts of several buckets; 1024/1025 rows of 4096 cross the PARAMS_FIRST switch."""


def _bound_entries() -> int:
    return sum(1 for fn, _, _ in REGISTRY.fast.values() if fn.__name__ == "bound")


def _calls(n: int, dtype: torch.dtype):
    """(name, fast call, ordinary-launch call) per op for rows of ``n``; each call takes x."""
    w = torch.randn(n, device=DEV).to(dtype)
    b = torch.randn(n, device=DEV).to(dtype)

    def fused(inplace, backend=None):
        def call(x):
            r = torch.cos(x)  # deterministic from x
            xx = x.clone()
            y, r2 = ns.fused_add_rms_norm(xx, r, w, 1e-6, inplace=inplace, backend=backend)
            return torch.cat([y, r2])
        return call

    def gated(group, backend=None):
        def call(x):
            z = torch.sin(x)  # deterministic from x
            y, _, rstd = ns.norm_gated(x, w, None, z, 1e-5, group, False, True, backend=backend)
            return torch.cat([y.float().flatten(), rstd])
        return call

    return [
        ("rms_norm", lambda x: ns.rms_norm(x, w, 1e-6), lambda x: ns.rms_norm(x, w, 1e-6, backend="triton")),
        ("fused_add in place", fused(True), fused(True, "triton")),
        ("fused_add", fused(False), fused(False, "triton")),
        ("layer_norm", lambda x: ns.layer_norm(x, w, b, 1e-5),
         lambda x: ns.layer_norm(x, w, b, 1e-5, backend="triton")),
        ("gated g=128", gated(128), gated(128, "triton")),
    ]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("n", [1280, 4096])
def test_bound_launch_matches_the_ordinary_launch(n, dtype):
    ns.reset()
    with torch.inference_mode():
        for name, fast, ordinary in _calls(n, dtype):
            for m in ROWS:
                x = torch.randn(m, n, device=DEV).to(dtype)
                for _ in range(3):  # the first call records the kind, the others take the fast path
                    got = fast(x)
                want = ordinary(x)
                assert torch.equal(got, want), (name, m, n, dtype)
        assert _bound_entries() >= 5, [fn.__name__ for fn, _, _ in REGISTRY.fast.values()]


def test_unaligned_input_takes_the_ordinary_launch():
    ns.reset()
    n = 1279  # odd rows: a view starting one element in is not 16-byte aligned
    w = torch.randn(n, device=DEV).to(torch.bfloat16)
    with torch.inference_mode():
        for m in (1, 5, 300):
            flat = torch.randn(m * n + 1, device=DEV).to(torch.bfloat16)
            aligned, shifted = flat[:-1].view(m, n), flat[1:].view(m, n)
            for x in (aligned, shifted, aligned, shifted):
                assert torch.equal(ns.rms_norm(x, w, 1e-6), ns.rms_norm(x, w, 1e-6, backend="triton"))
    assert _bound_entries() >= 1


def test_bound_launch_replays_in_a_cuda_graph():
    ns.reset()
    n, m = 4096, 8
    w = torch.randn(n, device=DEV).to(torch.bfloat16)
    x = torch.randn(m, n, device=DEV).to(torch.bfloat16)
    with torch.inference_mode():
        for _ in range(3):
            ns.rms_norm(x, w, 1e-6)
        assert _bound_entries() == 1
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y = ns.rms_norm(x, w, 1e-6)
        for _ in range(3):
            x.copy_(torch.randn_like(x))
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(y, ns.rms_norm(x, w, 1e-6, backend="triton"))
