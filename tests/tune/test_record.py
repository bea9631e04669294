"""NORMSWITCH_RECORD_CALLS: one line per new kind of call and rows; tune accepts the file."""
import json

import pytest
import torch
import yaml

import normswitch as ns
from normswitch.config import ConfigError
from normswitch.registry import REGISTRY
from normswitch.tune import main as tune_main
from normswitch.tune import measure, record


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("NORMSWITCH_RECORD_CALLS", str(path))
    ns.reset()
    return path


def test_every_new_kind_and_rows_is_appended_once(recorded):
    x, w = torch.randn(1, 64, dtype=torch.bfloat16), torch.randn(64, dtype=torch.bfloat16)
    for _ in range(3):
        ns.rms_norm(x, w)
    ns.rms_norm(torch.randn(5, 64, dtype=torch.bfloat16), w)
    wide = torch.randn(4, 128, dtype=torch.bfloat16)
    ns.rms_norm(wide[:, :64], w)  # rows not packed
    ns.fused_add_rms_norm(x.clone(), x.clone(), w, inplace=True)
    ns.layer_norm(torch.randn(2, 3, 32), torch.randn(32), torch.randn(32))
    ns.layer_norm_channels_first(torch.randn(1, 8, 4, 4), torch.randn(8), torch.randn(8))
    assert not REGISTRY.fast, "recorded calls must not take the fast path"
    lines = [json.loads(line) for line in recorded.read_text().splitlines()]
    got = [(e["op"], e["rows"], tuple(e["features"])) for e in lines]
    assert got == [("rms_norm", 1, ("weight",)), ("rms_norm", 5, ("weight",)),
                   ("rms_norm", 4, ("strided", "weight")), ("fused_add_rms_norm", 1, ("inplace", "weight")),
                   ("layer_norm", 6, ("bias", "weight")), ("layer_norm_channels_first", 16, ("bias", "weight"))]
    strided = lines[2]["args"]["x"]
    assert strided == {"shape": [4, 64], "stride": [128, 1], "dtype": "bfloat16"}
    assert lines[0]["args"]["eps"] == 1e-6 and lines[0]["args"]["out"] is None


def test_a_rebuilt_call_has_the_recorded_kind(recorded):
    wide = torch.randn(4, 128, dtype=torch.bfloat16)
    ns.rms_norm(wide[:, :64], torch.randn(64), weight_offset=1.0)
    (entry,) = record.read(recorded)
    ns.reset()
    device, kind, bucket, rows = measure.kind_of(measure.Sample("rms_norm", "r", record.rebuild(entry)))
    assert (device, kind[1:], rows) == ("cpu", ("bfloat16", 64, 0, tuple(entry["features"])), 4)
    assert set(entry["features"]) == {"gemma", "mixed", "offset", "strided", "weight"}


def test_tune_accepts_a_recorded_file(recorded, tmp_path, capsys):
    w = torch.randn(64, dtype=torch.bfloat16)
    for m in (1, 3, 700):
        ns.rms_norm(torch.randn(m, 64, dtype=torch.bfloat16), w)
    ns.norm_gated(torch.randn(2, 64), torch.randn(64), z=torch.randn(2, 64), group_size=32)
    out = tmp_path / "tuned.yaml"
    assert tune_main(["--calls", str(recorded), "--out", str(out), "--warmup", "1", "--rep", "2",
                      "--rounds", "1", "--no-progress"]) == 0
    kinds = yaml.safe_load(out.read_text())["devices"]["cpu"]["kinds"]
    got = {(k["op"], label) for k in kinds for label in k["buckets"]}
    assert got == {("rms_norm", "1"), ("rms_norm", "2-16"), ("rms_norm", "513-4096"), ("norm_gated", "2-16")}
    assert "wrote" in capsys.readouterr().out


def test_a_malformed_record_is_reported(tmp_path, capsys):
    bad = tmp_path / "calls.jsonl"
    bad.write_text('{"op": "rms_norm"}\n')
    assert tune_main(["--calls", str(bad), "--out", str(tmp_path / "t.yaml"), "--no-progress"]) == 2
    assert "calls.jsonl:1: not a recorded call (missing device, dtype, rows, args)" in capsys.readouterr().err


def test_record_file_in_a_missing_directory_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NORMSWITCH_RECORD_CALLS", str(tmp_path / "nowhere" / "calls.jsonl"))
    ns.reset()
    with pytest.raises(ConfigError, match="NORMSWITCH_RECORD_CALLS=.*no such directory"):
        ns.rms_norm(torch.randn(2, 8))


def test_time_limit_writes_what_was_measured(tmp_path, capsys):
    out = tmp_path / "tuned.yaml"
    assert tune_main(["--ops", "rms_norm", "--M", "1,64", "--N", "64", "--extra-dtypes", "", "--time-limit", "0",
                      "--out", str(out), "--no-progress"]) == 0
    assert yaml.safe_load(out.read_text())["devices"]["cpu"]["kinds"] == []
    assert "time limit of 0 s reached: 2 of 2 groups not measured" in capsys.readouterr().err
