"""The statistics and core shares of ``benchmarks/vllm_e2e.py`` (no engine is started)."""
import os
import statistics

import pytest

from benchmarks import vllm_e2e


def test_bootstrap_interval_holds_the_median_and_narrows_with_repetitions():
    import random

    rng = random.Random(1)
    few = [1.0 + rng.gauss(0, 0.1) for _ in range(10)]
    many = [1.0 + rng.gauss(0, 0.1) for _ in range(400)]
    lo_few, hi_few = vllm_e2e.bootstrap_median(few)
    lo_many, hi_many = vllm_e2e.bootstrap_median(many)
    assert lo_few <= statistics.median(few) <= hi_few
    assert lo_many <= statistics.median(many) <= hi_many
    assert hi_many - lo_many < hi_few - lo_few
    assert vllm_e2e.bootstrap_median(few) == (lo_few, hi_few)  # fixed seed


def test_core_shares_are_disjoint_whole_cores():
    cpus = os.sched_getaffinity(0)
    shares = vllm_e2e.core_shares(1)
    assert shares == [set().union(*shares)] and shares[0] <= cpus
    if len(cpus) >= 2:
        a, b = vllm_e2e.core_shares(2)
        assert a and b and not a & b
    with pytest.raises(ValueError, match="--pin"):
        vllm_e2e.core_shares(len(cpus) + 1)
