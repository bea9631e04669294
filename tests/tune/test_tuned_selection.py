"""A tuning file made with backends of known speed: the right one per bucket, served from the
cached plan; failing backends never chosen; stale files ignored with one warning; explicit
settings win."""
import logging

import pytest
import yaml
from prometheus_client import REGISTRY as PROM

import normswitch as ns
from normswitch.cli import main as cli_main
from normswitch.registry import REGISTRY
from normswitch.tune import main as tune_main

from .fakes import rows_of, timed

TUNE_ARGS = ["--ops", "rms_norm", "--M", "1,256", "--N", "64", "--extra-dtypes", "", "--warmup", "1",
             "--rep", "3", "--no-progress", "--backends", "small,flat,wrong"]


def sample(**labels):
    return PROM.get_sample_value("normswitch_backend_selected", labels) or 0.0


@pytest.fixture
def calls():
    """Three rms_norm backends of known speed: ``small`` (30 us + 1 us per row), ``flat``
    (150 us), ``wrong`` (no cost, doubles its output)."""
    log = []
    names = [timed("small", lambda m: 30.0 + m, log), timed("flat", lambda m: 150.0, log),
             timed("wrong", lambda m: 0.0, log, wrong=True)]
    yield log
    for name in names:
        REGISTRY.unregister(name)
    ns.reset()


@pytest.fixture
def tuned(calls, tmp_path, capsys):
    path = tmp_path / "tuned.yaml"
    assert tune_main([*TUNE_ARGS, "--out", str(path)]) == 0
    capsys.readouterr()
    return path


def buckets(path):
    (kind,) = yaml.safe_load(path.read_text())["devices"]["cpu"]["kinds"]
    assert (kind["op"], kind["dtype"], kind["hidden_size"], kind["features"]) == ("rms_norm", "bfloat16", 64, ["weight"])
    return kind["buckets"]


def served(calls, rows, **kwargs):
    calls.clear()
    x, w = rows_of(rows, dtype=kwargs.pop("dtype", None) or __import__("torch").bfloat16)
    ns.rms_norm(x, w, **kwargs)
    return calls[-1][0] if calls else None


def test_tune_picks_the_fastest_per_bucket(tuned):
    b = buckets(tuned)
    assert set(b) == {"1", "65-512"}
    assert b["1"]["backend"] == "small" and b["65-512"]["backend"] == "flat"
    assert b["1"]["rows"] == [1] and b["65-512"]["rows"] == [256]
    assert b["1"]["device_us"]["small"] < b["1"]["device_us"]["flat"]
    assert set(b["1"]["host_us"]) == {"small", "flat"}


def test_failing_backend_is_excluded_and_never_chosen(tuned, calls, monkeypatch):
    for entry in buckets(tuned).values():
        assert entry["backend"] != "wrong" and "wrong" not in entry["device_us"]
        assert "max error" in entry["failed"]["wrong"]
    monkeypatch.setenv("NORMSWITCH_TUNED", str(tuned))
    ns.reset()
    assert {served(calls, m) for m in (1, 2, 100, 5000)} & {"wrong"} == set()


def test_registry_serves_the_tuned_backend_per_bucket(tuned, calls, monkeypatch):
    monkeypatch.setenv("NORMSWITCH_TUNED", str(tuned))
    ns.reset()
    assert served(calls, 1) == "small"
    assert served(calls, 1) == "small"  # the fast path holds the tuned function itself
    assert served(calls, 300) == "flat" and served(calls, 65) == "flat"
    assert sample(op="rms_norm", device="cpu", backend="small", bucket="1") == 1
    assert sample(op="rms_norm", device="cpu", backend="flat", bucket="65-512") == 1
    fast = [v[0] for k, v in REGISTRY.fast.items() if k[0] == "rms_norm"]
    assert REGISTRY.impl("rms_norm", "small").fn in fast
    assert served(calls, 8) is None  # bucket 2-16 was not tuned: the configured order (cpu or native)
    assert served(calls, 1, dtype=__import__("torch").float32) is None  # another kind of call


def test_stale_file_is_ignored_with_one_warning(tuned, calls, monkeypatch, caplog):
    data = yaml.safe_load(tuned.read_text())
    data["torch"] = "0.0.1"
    data["devices"]["cpu"]["name"] = "Some Other CPU"
    tuned.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("NORMSWITCH_TUNED", str(tuned))
    ns.reset()
    with caplog.at_level(logging.WARNING, logger="normswitch"):
        assert {served(calls, m) for m in (1, 1, 256, 3)} == {None}
    warnings = [r.getMessage() for r in caplog.records if "tuning file" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "ignored for cpu" in warnings[0] and "torch '0.0.1'" in warnings[0] and "Some Other CPU" in warnings[0]


@pytest.mark.parametrize("env, rows, want", [
    ({"NORMSWITCH_BACKEND_RMS_NORM": "flat"}, 1, "flat"),
    ({"NORMSWITCH_BACKEND": "small"}, 256, "small"),
    ({"USE_NATIVE_LAYERNORM": "1"}, 1, None),
])
def test_explicit_settings_override_the_file(tuned, calls, monkeypatch, env, rows, want):
    monkeypatch.setenv("NORMSWITCH_TUNED", str(tuned))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ns.reset()
    assert served(calls, rows) == want


def test_backend_keyword_overrides_the_file(tuned, calls, monkeypatch):
    monkeypatch.setenv("NORMSWITCH_TUNED", str(tuned))
    ns.reset()
    assert served(calls, 1, backend="flat") == "flat"
    assert served(calls, 1, backend="native") is None


def test_config_key_names_the_file_relative_to_it(tuned, calls, monkeypatch, tmp_path):
    config = tmp_path / "normswitch.yaml"
    config.write_text("tuned: tuned.yaml\n")
    monkeypatch.setenv("NORMSWITCH_CONFIG", str(config))
    ns.reset()
    assert served(calls, 1) == "small"
    assert REGISTRY.config.tuning.source == f"file {config}: tuned"


def test_info_shows_the_tuned_choice_and_its_source(tuned, calls, monkeypatch, capsys):
    monkeypatch.setenv("NORMSWITCH_TUNED", str(tuned))
    ns.reset()
    assert cli_main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"tuning file: {tuned} (from env NORMSWITCH_TUNED" in out and "cpu in use" in out
    assert "tuned on cpu" in out and "bfloat16 N=64 [weight]" in out
    line = next(line for line in out.splitlines() if "rows        1:" in line)
    assert "small" in line and "flat" in line and "failed the check: wrong" in line


def test_host_metric_times_the_fast_path_users_take(tmp_path, capsys):
    """``--metric host`` times each backend as an eager user meets it (first in the plan, on the
    fast path with its bound form), not through ``backend=``: ``bound`` costs 200 us by the full
    path and 5 us bound, ``plain`` 60 us either way, so ``bound`` is the cheaper eager call."""
    log = []
    names = [timed("bound", lambda m: 200.0, log, bound_us=lambda m: 5.0), timed("plain", lambda m: 60.0, log)]
    try:
        path = tmp_path / "host.yaml"
        args = ["--ops", "rms_norm", "--M", "1", "--N", "64", "--extra-dtypes", "", "--warmup", "1", "--rep", "3",
                "--no-progress", "--backends", "bound,plain", "--metric", "host", "--out", str(path)]
        assert tune_main(args) == 0
        capsys.readouterr()
        entry = buckets(path)["1"]
        assert entry["backend"] == "bound"
        assert entry["host_us"]["bound"] < 0.5 * entry["host_us"]["plain"]
    finally:
        for name in names:
            REGISTRY.unregister(name)
        ns.reset()
