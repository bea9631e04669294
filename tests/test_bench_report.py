"""The benchmark report's per-op summary: points won and the worst ratio against the best peer."""
from types import SimpleNamespace

from normswitch.bench import report


def _row(label, m, impl, us):
    return {"label": label, "dtype": "bfloat16", "M": m, "N": 4096, "impl": impl, "us": us,
            "pct_copy": 50.0, "decode_bound_us": 100.0}


def test_wins_counts_points_and_worst_ratio():
    rows = [_row("rms_norm", 1, "triton", 5.0), _row("rms_norm", 1, "liger", 6.0),
            _row("rms_norm", 4096, "triton", 10.0), _row("rms_norm", 4096, "liger", 8.0),
            _row("rms_norm", 4096, "compile", 9.0), _row("layer_norm", 1, "triton", 4.0)]
    w = report.wins(rows)
    assert w["rms_norm"]["points"] == 2 and w["rms_norm"]["won"] == 1
    assert w["rms_norm"]["worst"] == {"ratio": 0.8, "at": "bfloat16 4096x4096", "peer": "liger"}
    assert "layer_norm" not in w  # no peer ran there: nothing to win
    ceilings = SimpleNamespace(copy_gbps=1000.0, empty_us=4.0, empty_eager_us=6.0)
    text = report.summary_text(report.targets(rows, ceilings))
    assert "rms_norm: fastest at 1 of 2 points; worst 0.80x the best peer (liger, bfloat16 4096x4096)" in text
