"""``normswitch bench`` times each backend column as a user's eager call meets it (first in the
plan, fast path, bound form), not through ``backend=``."""
from __future__ import annotations

import pytest
import torch

import normswitch as ns
from normswitch.bench.impls import IMPLS, register_normswitch_backend
from normswitch.bench.runner import Ceilings, Settings, make_case, run_case, timer
from normswitch.bench.served import served_by
from normswitch.registry import REGISTRY
from tests.tune.fakes import timed


@pytest.fixture
def fake_backends():
    log: list = []
    names = [timed("bound", lambda m: 200.0, log, bound_us=lambda m: 5.0), timed("plain", lambda m: 60.0, log)]
    for name in names:
        register_normswitch_backend(name)
    yield log
    for name in names:
        REGISTRY.unregister(name)
        for table in IMPLS.values():
            table.pop(name, None)
    ns.reset()


def test_backend_columns_time_the_fast_path_users_take(fake_backends):
    """``bound`` costs 200 us by the full path and 5 us bound: its column's host time is the
    bound call's; the plans are the defaults again afterwards."""
    s = Settings(ops=("rms_norm",), impls=("bound", "plain"), warmup_ms=0.1, rep_ms=0.5, device="cpu",
                 graphs=False, rounds=2)
    case = make_case("rms_norm", 1, 64, None, torch.float32, "cpu", torch.Generator().manual_seed(0))
    rows = {r["impl"]: r for r in run_case(case, s, Ceilings(copy_gbps=10.0, empty_us=1.0), timer("cpu"))}
    assert rows["bound"]["host_us"] < 0.5 * rows["plain"]["host_us"], rows
    assert rows["bound"]["host_us"] < 100 and rows["bound"]["err"] < 1e-5
    assert len(rows["bound"]["us_rounds"]) == 2
    assert not REGISTRY.config.env_op and "bound" not in REGISTRY.serving("rms_norm")


def test_a_backend_that_passes_the_call_on_is_not_timed_as_itself(fake_backends):
    """Under ``served_by`` a call another backend served raises instead of timing the wrong one."""
    x = torch.randn(2, 64)
    with pytest.raises(RuntimeError, match="served by"):
        with served_by("rms_norm", "bound"):
            ns.rms_norm(x, None, backend="plain")
    assert not REGISTRY.config.env_op
