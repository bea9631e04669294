"""Loading a tuning file: identity, validation errors naming the file, key and allowed values."""
import pytest
import torch
import yaml

import normswitch as ns
from normswitch.config import ConfigError
from normswitch.registry import REGISTRY
from normswitch.tune import buckets, tuning_file


def write(tmp_path, **changes):
    """A valid file for this machine's CPU with one kind, then ``changes`` laid over it."""
    kind = {"op": "rms_norm", "dtype": "bfloat16", "hidden_size": 64, "group_size": 0, "features": ["weight"],
            "buckets": {"1": {"backend": "native", "device_us": {"native": 5.0, "cpu": 9.0}}}}
    data = {"normswitch_tuning": 1, "metric": "device", **tuning_file.versions(),
            "devices": {"cpu": {**tuning_file.device_identity("cpu"), "kinds": [kind]}}}
    for key, value in changes.items():
        path = key.split("__")
        node = data if path[0] == "top" else kind
        path = path[1:] if path[0] == "top" else path
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_buckets_and_their_inline_form_agree():
    code = eval(f"lambda m: {buckets.expression('m')}")  # noqa: S307  (the fast path's generated form)
    for rows in (1, 2, 16, 17, 64, 65, 512, 513, 4096, 4097, 1 << 20):
        assert code(rows) == buckets.index(rows)
    assert [buckets.label(buckets.index(m)) for m in (1, 16, 64, 512, 4096, 4097)] == list(buckets.LABELS)


def test_a_valid_file_for_this_machine_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMSWITCH_TUNED", str(write(tmp_path)))
    ns.reset()
    table = REGISTRY.tuned_table("cpu")
    assert table[("rms_norm", torch.bfloat16, 64, 0, ("weight",), 0)].backend == "native"
    ns.rms_norm(torch.randn(1, 64, dtype=torch.bfloat16), torch.randn(64, dtype=torch.bfloat16))
    (plan,) = [p for k, p in REGISTRY._plans.items() if k[0] == "rms_norm"]
    assert plan.candidates[0][0] == "native" and plan.bucket == "1"
    assert plan.source.startswith("env NORMSWITCH_TUNED: rows 1 (native 5.0 us, cpu 9.0 us)")


def _first(op="rms_norm"):
    ns.rms_norm(torch.randn(1, 64, dtype=torch.bfloat16), torch.randn(64, dtype=torch.bfloat16))
    (plan,) = [p for k, p in REGISTRY._plans.items() if k[0] == op]
    return plan.candidates[0][0]


def test_a_bucket_without_a_backend_that_now_serves_is_left_to_the_order(tmp_path, monkeypatch, caplog):
    """A file made before the cpu backend served the call (no time, no failure for it) does not pin
    native; limited to native by ``normswitch tune --backends native``, it does."""
    if REGISTRY.availability("rms_norm", "cpu", "cpu") is not None:
        pytest.skip("the cpu backend is not available here")
    monkeypatch.setenv("NORMSWITCH_TUNED", str(write(tmp_path, buckets__1__device_us={"native": 5.0})))
    ns.reset()
    with caplog.at_level("WARNING", logger="normswitch"):
        assert _first() == "cpu"
    assert "has no times of cpu for rms_norm bfloat16 N=64" in caplog.text
    monkeypatch.setenv("NORMSWITCH_TUNED", str(write(tmp_path, buckets__1__device_us={"native": 5.0},
                                                     top__devices__cpu__backends=["native"])))
    ns.reset()
    assert _first() == "native"
    monkeypatch.setenv("NORMSWITCH_TUNED", str(write(tmp_path, buckets__1__device_us={"native": 5.0},
                                                     buckets__1__failed={"cpu": "wrong result"})))
    ns.reset()
    assert _first() == "native"  # measured and excluded: the file's choice stands


@pytest.mark.parametrize("changes, message", [
    ({"top__metric": "fastest"}, "metric: 'fastest'; allowed: device, host"),
    ({"top__normswitch_tuning": 7}, "normswitch_tuning: 7; allowed: 1"),
    ({"top__extra": 1}, "unknown key (top level).extra; allowed: normswitch_tuning"),
    ({"op": "softmax"}, "devices.cpu.kinds[0].op: 'softmax'; allowed: rms_norm, fused_add_rms_norm"),
    ({"dtype": "float64"}, "devices.cpu.kinds[0].dtype: 'float64'; allowed: float16, bfloat16, float32"),
    ({"hidden_size": 0}, "devices.cpu.kinds[0].hidden_size: 0; expected an integer >= 1"),
    ({"top__devices__cpu__backends": ["fastest"]}, "devices.cpu.backends[0]: 'fastest'; allowed: triton,"),
    ({"buckets__1__backend": "fastest"}, "devices.cpu.kinds[0].buckets.1.backend: 'fastest'; allowed: triton,"),
    ({"buckets__3-5": {"backend": "native"}}, "unknown key devices.cpu.kinds[0].buckets.3-5; allowed: 1, 2-16"),
])
def test_a_malformed_file_raises_naming_file_and_key(tmp_path, monkeypatch, changes, message):
    path = write(tmp_path, **changes)
    monkeypatch.setenv("NORMSWITCH_TUNED", str(path))
    ns.reset()
    with pytest.raises(ConfigError) as err:
        REGISTRY.config  # noqa: B018
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_and_bad_key_are_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMSWITCH_TUNED", str(tmp_path / "none.yaml"))
    ns.reset()
    with pytest.raises(ConfigError, match="env NORMSWITCH_TUNED=.*none.yaml': no such tuning file"):
        REGISTRY.config  # noqa: B018
    monkeypatch.delenv("NORMSWITCH_TUNED")
    config = tmp_path / "normswitch.yaml"
    config.write_text("tuned: [a]\n")
    monkeypatch.setenv("NORMSWITCH_CONFIG", str(config))
    ns.reset()
    with pytest.raises(ConfigError, match=r"\(top level\).tuned: \['a'\]; expected the path of a tuning file"):
        REGISTRY.config  # noqa: B018


def test_env_beats_the_config_key(tmp_path, monkeypatch):
    env_file = write(tmp_path)
    config = tmp_path / "normswitch.yaml"
    config.write_text("tuned: elsewhere.yaml\n")
    monkeypatch.setenv("NORMSWITCH_CONFIG", str(config))
    monkeypatch.setenv("NORMSWITCH_TUNED", str(env_file))
    ns.reset()
    assert REGISTRY.config.tuning.path == env_file


def test_no_file_keeps_one_plan_label(monkeypatch):
    ns.rms_norm(torch.randn(1, 64), torch.randn(64))
    ns.rms_norm(torch.randn(300, 64), torch.randn(64))
    assert {p.bucket for k, p in REGISTRY._plans.items() if k[0] == "rms_norm"} == {"all"}
