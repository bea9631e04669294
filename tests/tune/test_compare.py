"""normswitch.tune.compare: which points the selection runs the fastest backend at."""
import json

from normswitch.tune import compare


def row(impl, us, m=1, served=None):
    r = {"label": "rms_norm", "dtype": "bfloat16", "M": m, "N": 4096, "impl": impl, "us": us}
    if served:
        r["served_by"] = served
    return r


ROWS = [row("triton", 2.0), row("cuda", 3.0), row("normswitch", 2.01, served="triton"),
        row("triton", 10.0, m=4096), row("cuda", 9.0, m=4096), row("normswitch", 10.1, m=4096, served="triton"),
        row("liger", 1.0)]  # not one of normswitch's backends: ignored


def test_points_and_summary():
    pts = compare.points(ROWS)
    assert [(p["M"], p["fastest"], p["ran_fastest"]) for p in pts] == [(1, "triton", True), (4096, "cuda", False)]
    assert round(pts[1]["ratio"], 3) == round(10.1 / 9.0, 3) and round(pts[1]["served_ratio"], 3) == round(10 / 9, 3)
    assert compare.summary(pts).startswith("1/2 points (50.0%) run the fastest backend; worst normswitch/fastest 1.122")


def test_main_takes_the_selection_from_another_run(tmp_path, capsys):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"meta": {"device": "test"}, "rows": ROWS}))
    other = tmp_path / "rows.jsonl"
    other.write_text("\n".join(json.dumps(r) for r in [row("normswitch", 9.0, m=4096, served="cuda"),
                                                       row("normswitch", 2.0, served="triton")]))
    out = tmp_path / "t.md"
    assert compare.main([str(bench), "--selection", str(other), "--markdown", str(out)]) == 0
    assert capsys.readouterr().out.startswith("2/2 points (100.0%) run the fastest backend")
    text = out.read_text()
    assert "| rms_norm | bfloat16 | 4096 | 4096 | 10.00 | 9.00 | 9.00 (cuda) | cuda | 1.000 | 1.000 | yes |" in text
