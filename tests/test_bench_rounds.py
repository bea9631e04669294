"""``normswitch bench --rounds``: every implementation of a point timed in interleaved rounds."""
from __future__ import annotations

import statistics

import torch

from normswitch.bench.runner import Ceilings, Settings, make_case, run_case, timer


def test_rounds_time_each_implementation_and_report_the_median():
    s = Settings(ops=("rms_norm",), impls=("native", "normswitch"), warmup_ms=0.1, rep_ms=0.5,
                 device="cpu", graphs=False, rounds=3)
    case = make_case("rms_norm", 4, 64, None, torch.float32, "cpu", torch.Generator().manual_seed(0))
    rows = run_case(case, s, Ceilings(copy_gbps=10.0, empty_us=1.0), timer("cpu"))
    assert [r["impl"] for r in rows] == ["native", "normswitch"]
    for row in rows:
        assert len(row["us_rounds"]) == 3, row
        assert row["us"] == statistics.median(row["us_rounds"])
        assert row["gbps"] > 0 and row["err"] < 1e-5


def test_one_round_keeps_the_single_timing():
    s = Settings(ops=("rms_norm",), impls=("native",), warmup_ms=0.1, rep_ms=0.5, device="cpu", graphs=False)
    case = make_case("rms_norm", 2, 32, None, torch.float32, "cpu", torch.Generator().manual_seed(1))
    (row,) = run_case(case, s, Ceilings(copy_gbps=10.0, empty_us=1.0), timer("cpu"))
    assert "us_rounds" not in row and row["us"] == row["eager_us"]
