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


class FakeEngine:
    """Stands in for an engine process: 100 tokens per call, ``on`` 2% faster than ``off``, the
    ``ab`` process 30% slower than the others (another host state) in both of its arms."""

    runs: list = []

    def __init__(self, model, kind, mode, variant, log, kv_cache_gib, cpus):
        self.variant = variant

    def wait_ready(self):
        pass

    def stop(self):
        pass

    def time(self, workload, arm=""):
        FakeEngine.runs.append((self.variant, arm))
        seconds = (1.3 if self.variant == "ab" else 1.0) / (1.0 if arm == "off" or self.variant == "off" else 1.02)
        return {"workload": workload, "seconds": seconds, "tokens": 100}


def test_ab_variant_pairs_its_two_arms_in_one_engine(tmp_path):
    FakeEngine.runs = []
    rows = vllm_e2e.measure("model", "dense", ["compile", "eager"], ["on", "ab", "off"], 3, float("inf"),
                            tmp_path, workloads=["decode"], engine=FakeEngine)
    compile_row, eager_row = rows
    assert set(compile_row["variants"]) == {"on", "off"}  # no ab arm under CUDA graphs
    assert set(eager_row["variants"]) == {"on", "ab", "ab-off", "off"}
    ab = eager_row["variants"]["ab"]
    assert ab["baseline"] == "ab-off" and ab["speedup"][1] == pytest.approx(1.02)
    assert eager_row["variants"]["ab-off"]["speedup"][1] == pytest.approx(1 / 1.3)
    assert eager_row["variants"]["on"]["speedup"][1] == pytest.approx(1.02)
    assert ("ab", "off") in FakeEngine.runs and ("ab", "") in FakeEngine.runs
    table = vllm_e2e.markdown(rows)
    assert "speed-up ab/ab-off" in table and table.count("| model |") == 2
