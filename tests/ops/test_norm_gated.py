"""The gated group norm (``norm_gated``, and the ``layernorm_fn``/``rmsnorm_fn`` wrappers) on every
backend available here: the generated cases (forced, default selection with the fast path,
compiled), every combination of the flags, batch invariance, call sequences that mix parameter
layouts and dtypes (the fast path's bug class), and ``out=``."""
import itertools

import pytest
import torch

import normswitch as ns
from normswitch import numerics
from normswitch.ops._inputs import param, rand
from normswitch.ops.norm_gated import reference
from normswitch.registry import BackendUnavailableError

from . import harness as h

OP = "norm_gated"
BF16 = torch.bfloat16


@pytest.mark.parametrize("op,device,backend,dtype", h.grid((OP,)))
def test_cases_forced(op, device, backend, dtype):
    h.run_forced(op, device, backend, dtype)


@pytest.mark.parametrize("op,device,backend,dtype", h.grid((OP,)))
def test_cases_default_selection(op, device, backend, dtype, monkeypatch):
    h.run_default(op, device, backend, dtype, monkeypatch)


@pytest.mark.parametrize("op,device,backend,dtype", h.grid((OP,), (BF16,)))
def test_cases_compiled(op, device, backend, dtype):
    h.run_compiled(op, device, backend, dtype)


FLAGS = list(itertools.product([False, True], repeat=5))


@pytest.mark.parametrize("op,device,backend,dtype", h.grid((OP,)))
def test_every_combination_of_flags(op, device, backend, dtype):
    """RMS or not, bias or not, gate or not, gate before or after the norm, one group or four."""
    m, n = 9, 200
    x, z = rand((m, n), dtype, device), rand((m, n), dtype, device)
    w, b = param(n, dtype, device, shift=1.0), param(n, dtype, device)
    for rms, bias, gate, before, quarter in FLAGS:
        case = h.make_case(OP, f"rms={rms} bias={bias} z={gate} before={before} quarter={quarter}",
                           x=x, weight=w, bias=b if bias else None, z=z if gate else None,
                           group_size=n // 4 if quarter else None, norm_before_gate=before, is_rms_norm=rms)
        h.check(case, backend)


@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("device,backend", h.device_backends((OP,)))
def test_batch_invariance(device, backend, dtype):
    m, n = h.batch_shape(backend, device)
    x, z = rand((m, n), dtype, device), rand((m, n), dtype, device)
    w, b = param(n, dtype, device, shift=1.0), param(n, dtype, device)
    h.check_batch_invariance({
        "grouped, gated": lambda s: ns.norm_gated(x[s], w, b, z[s], group_size=n // 4, backend=backend)[0],
        "rms, gate first": lambda s: ns.norm_gated(x[s], w, None, z[s], norm_before_gate=False,
                                                   is_rms_norm=True, backend=backend)[0],
        "no gate": lambda s: ns.norm_gated(x[s], w, b, backend=backend)[0],
    }, m)


# -- the fast path: one call kind, then another layout of the same shapes ---------------------
def _variants(device):
    x, z = rand((8, 256), BF16, device), rand((8, 256), BF16, device)
    w, b = param(256, BF16, device, shift=1.0), param(256, BF16, device)
    base = dict(x=x, weight=w, bias=b, z=z, group_size=64)
    wide = torch.empty(8, 300, dtype=BF16, device=device)
    return base, {
        "strided weight": {**base, "weight": param(256, BF16, device, "strided", shift=1.0)},
        "strided bias": {**base, "bias": param(256, BF16, device, "strided")},
        "expanded parameters": {**base, "weight": param(256, BF16, device, "expanded", shift=1.0),
                                "bias": param(256, BF16, device, "expanded")},
        "strided z": {**base, "z": rand((8, 256), BF16, device, layout="strided")},
        "expanded z": {**base, "z": rand((8, 256), BF16, device, layout="expanded")},
        "float32 z": {**base, "z": z.float()},
        "float32 weight and bias": {**base, "weight": w.float(), "bias": b.float()},
        "out=": {**base, "out": torch.full_like(x, float("nan"))},
        "strided out=": {**base, "out": wide.fill_(float("nan"))[:, :256]},
        "strided rows": {**base, "x": rand((8, 256), BF16, device, layout="strided")},
        "group_size None": {**base, "group_size": None},
        "group_size N": {**base, "group_size": 256},
        "rms, gate first": {**base, "bias": None, "is_rms_norm": True, "norm_before_gate": False},
        "no gate": {**base, "z": None},
    }


@pytest.mark.parametrize("op,device,backend,dtype", h.grid((OP,), (BF16,)))
def test_fast_path_sequences(op, device, backend, dtype, monkeypatch):
    base, variants = _variants(device)
    h.check_sequence(op, base, variants, backend, monkeypatch)


# -- the contract: out=, the statistics, the FLA wrappers ------------------------------------
@pytest.mark.parametrize("dtype", h.DTYPES, ids=h.dtype_name)
@pytest.mark.parametrize("device,backend", h.device_backends((OP,)))
def test_out_is_written_and_returned(device, backend, dtype):
    """``out=`` (contiguous, or a view with strided rows) is written in full and returned as y;
    the statistics are float32, group-major, one per group and row (no mean for RMS)."""
    x, z = rand((3, 99), dtype, device, shift=1.0), rand((3, 99), dtype, device)
    w, b = param(99, dtype, device, shift=1.0), param(99, dtype, device)
    for rms in (False, True):
        want_y, want_mean, want_rstd = reference(x, w, None if rms else b, z, 1e-6, 33, False, rms)
        for out in (torch.empty_like(x), torch.empty(3, 120, dtype=dtype, device=device)[:, :99]):
            out.fill_(float("nan"))
            try:
                y, mean, rstd = ns.norm_gated(x, w, None if rms else b, z, 1e-6, 33, False, rms, out,
                                              backend=backend)
            except BackendUnavailableError:
                continue
            assert y is out and numerics.close(out, want_y, dtype)
            assert rstd.dtype == torch.float32 and numerics.close(rstd, want_rstd, torch.float32)
            assert mean is None if rms else numerics.close(mean, want_mean, torch.float32)


@pytest.mark.parametrize("device,backend", h.device_backends((OP,)))
def test_fla_wrappers(device, backend, monkeypatch):
    """``layernorm_fn``/``rmsnorm_fn`` (no ``backend=``) over (..., N) inputs, served by ``backend``."""
    h.steer(monkeypatch, OP, backend)
    x, z = rand((2, 5, 64), BF16, device), rand((2, 5, 64), BF16, device)
    w, b = param(64, BF16, device, shift=1.0), param(64, BF16, device)
    x2, z2 = x.view(10, 64), z.view(10, 64)
    for _ in range(2):  # the second call of each takes the fast path
        y = ns.layernorm_fn(x, w, b, z=z, group_size=16)
        assert y.shape == x.shape
        assert numerics.close(y.view(10, 64), reference(x2, w, b, z2, 1e-6, 16)[0], BF16)
        y = ns.rmsnorm_fn(x, w, None, z=z, norm_before_gate=False)
        assert numerics.close(y.view(10, 64), reference(x2, w, None, z2, 1e-6, None, False, True)[0], BF16)
