"""Selection precedence, config/env validation, fallback with one warning and one count, metrics."""
import inspect
import logging
import textwrap

import pytest
import torch
from prometheus_client import REGISTRY as PROM

import normswitch as ns
from normswitch.config import ConfigError
from normswitch.kernels import cpu
from normswitch.ops import OPS
from normswitch.registry import REGISTRY, BackendUnavailableError, register_impl


def sample(name, **labels):
    return PROM.get_sample_value(name, labels) or 0.0


def recording(name, calls, fail=False, available=True, supports=None):
    """A backend that records its calls and otherwise runs the native implementation."""
    def wrap(op, fn):
        def run(*args):
            calls.append((name, op))
            if fail:
                raise RuntimeError(f"{name}: kernel launch failed")
            return fn(*args)
        run.__signature__ = inspect.signature(fn)
        return run

    def register():
        for op in OPS:
            register_impl(op, name, wrap(op, REGISTRY.impl(op, "native").fn),
                          available=lambda device: None if available else f"{name} needs hardware this machine lacks",
                          supports=supports or (lambda call: None))
    register.name = name
    return register


@pytest.fixture
def backends():
    """Registers test backends (every op); removes them afterwards."""
    added = []

    def add(register):
        added.append(register.name)
        register()
    yield add
    for name in added:
        REGISTRY.unregister(name)
    ns.reset()


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    def write(text):
        path = tmp_path / "normswitch.yaml"
        path.write_text(textwrap.dedent(text))
        monkeypatch.setenv("NORMSWITCH_CONFIG", str(path))
        ns.reset()
        return path
    return write


X = torch.randn(3, 64)
W = torch.randn(64)


def served_by(calls, op="rms_norm"):
    calls.clear()
    if op == "rms_norm":
        ns.rms_norm(X, W)
    else:
        ns.layer_norm(X, W, W)
    return calls[-1][0] if calls else "native"


def test_default_on_cpu():
    """LayerNorm and RMSNorm run the C++ kernels of backend cpu where they can be built, else native."""
    served = "cpu" if cpu.EXTENSION.problem() is None else "native"
    ns.layer_norm(X, W, W)
    assert sample("normswitch_backend_selected", op="layer_norm", device="cpu", backend=served, bucket="all") == 1
    ns.rms_norm(X, W)
    assert sample("normswitch_backend_selected", op="rms_norm", device="cpu", backend=served, bucket="all") == 1


def test_precedence(backends, config_file, monkeypatch):
    calls = []
    backends(recording("alpha", calls))
    backends(recording("beta", calls))
    config_file("devices: {cpu: {backends: [alpha, native]}}")
    assert served_by(calls) == "alpha"                                  # 5. the YAML file
    monkeypatch.setenv("USE_NATIVE_LAYERNORM", "1")
    ns.reset()
    assert served_by(calls) == "native"                                 # 4. USE_NATIVE_LAYERNORM
    monkeypatch.setenv("NORMSWITCH_BACKEND", "beta")
    ns.reset()
    assert served_by(calls) == "beta"                                   # 3. NORMSWITCH_BACKEND
    monkeypatch.setenv("NORMSWITCH_BACKEND_RMS_NORM", "alpha")
    ns.reset()
    assert served_by(calls) == "alpha"                                  # 2. per-op variable
    assert served_by(calls, "layer_norm") == "beta"
    calls.clear()
    ns.rms_norm(X, W, backend="beta")                                   # 1. backend= keyword
    assert calls == [("beta", "rms_norm")]


def test_use_native_layernorm_zero_has_no_effect(backends, config_file, monkeypatch):
    calls = []
    backends(recording("alpha", calls))
    config_file("devices: {cpu: {backends: [alpha]}}")
    monkeypatch.setenv("USE_NATIVE_LAYERNORM", "0")
    ns.reset()
    assert served_by(calls) == "alpha"


def test_per_op_entry_in_file(backends, config_file):
    calls = []
    backends(recording("alpha", calls))
    path = config_file("""
        devices:
          cpu:
            backends: [native]
            ops:
              layer_norm: {backends: [alpha, native]}
    """)
    assert served_by(calls) == "native"
    assert served_by(calls, "layer_norm") == "alpha"
    setting = REGISTRY.config.backends("layer_norm", "cpu")
    assert setting.source == f"file {path}: devices.cpu.ops.layer_norm.backends"


def test_failing_backend_falls_back_with_one_warning_and_one_count(backends, config_file, caplog):
    calls = []
    backends(recording("boom", calls, fail=True))
    config_file("devices: {cpu: {backends: [boom, native]}}")
    labels = dict(op="rms_norm", device="cpu", from_backend="boom", to_backend="native", reason="error")
    before = sample("normswitch_fallbacks_total", **labels)
    with caplog.at_level(logging.WARNING, logger="normswitch"):
        for _ in range(3):
            torch.testing.assert_close(ns.rms_norm(X, W), ns.rms_norm(X, W, backend="native"))
    warnings = [r for r in caplog.records if "boom" in r.getMessage()]
    assert len(warnings) == 1 and "kernel launch failed" in warnings[0].getMessage()
    assert sample("normswitch_fallbacks_total", **labels) == before + 1
    assert calls == [("boom", "rms_norm")]                              # not retried after failing
    assert sample("normswitch_backend_selected", op="rms_norm", device="cpu", backend="native", bucket="all") == 1


def test_unavailable_and_declining_backends_fall_through(backends, config_file, caplog):
    calls = []
    backends(recording("absent", calls, available=False))
    backends(recording("picky", calls, supports=lambda call: "fp32 only" if call.dtype != torch.float32 else None))
    config_file("devices: {cpu: {backends: [absent, picky, native]}}")
    before = sample("normswitch_fallbacks_total", op="rms_norm", device="cpu", from_backend="absent",
                    to_backend="picky", reason="unavailable")
    with caplog.at_level(logging.WARNING, logger="normswitch"):
        assert served_by(calls) == "picky"
        ns.rms_norm(X.bfloat16(), W)
    assert calls[-1] == ("picky", "rms_norm") and len(calls) == 1
    assert sample("normswitch_fallbacks_total", op="rms_norm", device="cpu", from_backend="absent",
                  to_backend="picky", reason="unavailable") == before + 1
    assert any("fp32 only" in r.getMessage() for r in caplog.records)


def test_error_policy_raises(backends, config_file):
    calls = []
    backends(recording("absent", calls, available=False))
    config_file("devices: {cpu: {backends: [absent, native], on_unavailable: error}}")
    with pytest.raises(BackendUnavailableError, match="absent.*on_unavailable is 'error'"):
        ns.rms_norm(X, W)


def test_error_policy_propagates_a_failing_kernel(backends, config_file):
    calls = []
    backends(recording("boom", calls, fail=True))
    config_file("on_unavailable: error\ndevices: {cpu: {backends: [boom, native]}}")
    with pytest.raises(RuntimeError, match="kernel launch failed"):
        ns.rms_norm(X, W)


def test_forced_backend_that_cannot_serve_raises():
    with pytest.raises(BackendUnavailableError, match="triton"):
        ns.rms_norm(X, W, backend="triton")
    with pytest.raises(ValueError, match="backend: unknown backend 'nope'"):
        ns.rms_norm(X, W, backend="nope")


def test_count_calls(monkeypatch):
    labels = dict(op="layer_norm", device="cpu", backend="cpu" if cpu.EXTENSION.problem() is None else "native")
    before = sample("normswitch_calls_total", **labels)
    ns.layer_norm(X, W, W)
    assert sample("normswitch_calls_total", **labels) == before
    monkeypatch.setenv("NORMSWITCH_COUNT_CALLS", "1")
    ns.reset()
    for _ in range(3):
        ns.layer_norm(X, W, W)
    assert sample("normswitch_calls_total", **labels) == before + 3


@pytest.mark.parametrize("var,value,message", [
    ("NORMSWITCH_BACKEND", "tirton", r"NORMSWITCH_BACKEND='tirton': unknown backend; allowed: triton, cuda, cpu"),
    ("NORMSWITCH_BACKEND_RMS_NORM", "fast", r"NORMSWITCH_BACKEND_RMS_NORM='fast': unknown backend; allowed"),
    ("NORMSWITCH_BACKEND_RMSNORM", "native", r"NORMSWITCH_BACKEND_RMSNORM: unknown op 'rmsnorm'; allowed: rms_norm"),
    ("USE_NATIVE_LAYERNORM", "yes", r"USE_NATIVE_LAYERNORM='yes': expected 0 or 1"),
    ("NORMSWITCH_COUNT_CALLS", "true", r"NORMSWITCH_COUNT_CALLS='true': expected 0 or 1"),
    ("NORMSWITCH_CONFIG", "/nonexistent.yaml", r"NORMSWITCH_CONFIG='/nonexistent.yaml': no such file"),
])
def test_invalid_env_values(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    ns.reset()
    with pytest.raises(ConfigError, match=message):
        ns.rms_norm(X, W)


@pytest.mark.parametrize("text,message", [
    ("devices: {cpu: {backends: [native]}}\nfoo: 1", r"unknown key \(top level\).foo; allowed: on_unavailable, devices"),
    ("devices: {tpu: {backends: [native]}}", r"unknown key devices.tpu; allowed: cuda, rocm, cpu, npu, gcu, xpu, mps"),
    ("devices: {cpu: {backend: [native]}}", r"unknown key devices.cpu.backend; allowed: backends, on_unavailable, ops"),
    ("devices: {cpu: {ops: {rmsnorm: {backends: [native]}}}}", r"unknown key devices.cpu.ops.rmsnorm; allowed: rms_norm"),
    ("devices: {cpu: {backends: [fast]}}", r"devices.cpu.backends: unknown backend 'fast'; allowed: triton, cuda"),
    ("devices: {cpu: {backends: [native], backends: [cpu]}}", r"malformed YAML: .*duplicate key 'backends'"),
    ("devices: {cpu: {backends: []}}", r"devices.cpu.backends must be a non-empty list"),
    ("devices: {cpu: {on_unavailable: ignore}}", r"devices.cpu.on_unavailable: 'ignore'; allowed: fallback, error"),
    ("devices: {cpu: [native", r"malformed YAML"),
    ("- just a list", r"\(top level\) must be a mapping"),
])
def test_invalid_config_files(config_file, text, message):
    path = config_file(text)
    with pytest.raises(ConfigError, match=message) as info:
        ns.rms_norm(X, W)
    assert str(path) in str(info.value)


def test_packaged_presets_are_valid():
    from pathlib import Path

    from normswitch.config import load_file

    presets = sorted((Path(ns.__file__).parent / "configs").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"default", "cuda-eager"}
    for path in presets:
        load_file(path, REGISTRY.names(), OPS)


def test_empty_sections_and_bad_bytes_in_a_file(config_file, tmp_path, monkeypatch):
    config_file("devices:\n")
    ns.rms_norm(X, W)  # an empty (null) devices section means the defaults
    config_file("devices: {cpu: {ops: }}\n")
    ns.rms_norm(X, W)
    path = tmp_path / "latin1.yaml"
    path.write_bytes("on_unavailable: fallback # caf\xe9\n".encode("latin-1"))
    monkeypatch.setenv("NORMSWITCH_CONFIG", str(path))
    ns.reset()
    with pytest.raises(ConfigError, match=f"{path}: not UTF-8 text"):
        ns.rms_norm(X, W)


def test_defaults_have_one_source():
    """The built-in defaults are the packaged default.yaml (no copy in code)."""
    setting = REGISTRY.config.backends("rms_norm", "cuda")
    assert setting.source == "built-in default (default.yaml): devices.cuda.backends"
    assert REGISTRY.config.backends("rms_norm", "cpu").value == ("cpu", "native")


def test_a_file_is_laid_over_the_defaults(config_file):
    config_file("devices: {cuda: {backends: [cuda, native]}}")
    assert REGISTRY.config.backends("rms_norm", "cuda").value == ("cuda", "native")
    setting = REGISTRY.config.backends("rms_norm", "cpu")
    assert setting.value == ("cpu", "native") and setting.source.startswith("built-in default")


def test_a_declining_backend_is_not_demoted(backends, config_file):
    """supports() declining a call kind skips the backend for that kind only; it still serves
    the calls it supports, including with backend= (a decline is not a fault)."""
    calls = []
    backends(recording("picky", calls, supports=lambda call: "no gate" if "z" in call.features else None))
    config_file("devices: {cpu: {backends: [picky, native]}}")
    x = torch.randn(3, 64)
    ns.norm_gated(x, torch.randn(64), None, torch.randn(3, 64))
    ns.norm_gated(x, torch.randn(64))
    assert calls == [("picky", "norm_gated")]
    ns.norm_gated(x, torch.randn(64), backend="picky")
    assert len(calls) == 2


def test_register_impl_checks_the_contract():
    def wrong_order(x, eps, weight, weight_offset, out):
        return x
    with pytest.raises(ValueError, match=r"kernel contract of rms_norm is \(x, weight, eps, weight_offset, out\)"):
        register_impl("rms_norm", "bad", wrong_order, available=lambda device: None)
    with pytest.raises(ValueError, match="unknown op 'rmsnorm'"):
        register_impl("rmsnorm", "bad", wrong_order, available=lambda device: None)
    assert "bad" not in REGISTRY.names()


def test_count_calls_counts_forced_calls(monkeypatch):
    monkeypatch.setenv("NORMSWITCH_COUNT_CALLS", "1")
    ns.reset()
    labels = dict(op="rms_norm", device="cpu", backend="native")
    before = sample("normswitch_calls_total", **labels)
    ns.rms_norm(X, W, backend="native")
    assert sample("normswitch_calls_total", **labels) == before + 1


def test_selection_is_per_device_type_of_the_input(backends, config_file):
    calls = []
    backends(recording("gpuonly", calls))
    config_file("devices: {cuda: {backends: [gpuonly, native]}, cpu: {backends: [native]}}")
    assert served_by(calls) == "native"
