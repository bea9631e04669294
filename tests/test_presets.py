"""A preset (``config.use_preset``) lies between the user's config file and the built-in defaults."""
from pathlib import Path

import pytest

import normswitch as ns
from normswitch.config import use_preset
from normswitch.registry import REGISTRY

EAGER = Path(ns.__file__).parent / "configs" / "cuda-eager.yaml"


@pytest.fixture
def preset():
    use_preset(EAGER, "a test")
    ns.reset()
    yield
    use_preset(None)
    ns.reset()


def test_preset_over_the_defaults(preset):
    setting = REGISTRY.config.backends("fused_add_rms_norm", "cuda")
    assert setting.value[0] == "vllm_c"
    assert setting.source == "preset cuda-eager.yaml (a test): devices.cuda.ops.fused_add_rms_norm.backends"
    assert REGISTRY.config.backends("layer_norm", "cuda").value == ("cuda", "triton", "native")
    # What the preset does not name keeps the built-in default.
    assert REGISTRY.config.backends("rms_norm", "cpu").value == ("cpu", "native")
    assert "preset cuda-eager.yaml (a test)" in REGISTRY.config.summary()


def test_user_file_and_variables_win_over_the_preset(preset, tmp_path, monkeypatch):
    path = tmp_path / "user.yaml"
    path.write_text("devices:\n  cuda:\n    ops:\n      rms_norm: {backends: [triton, native]}\n")
    monkeypatch.setenv("NORMSWITCH_CONFIG", str(path))
    ns.reset()
    assert REGISTRY.config.backends("rms_norm", "cuda").value == ("triton", "native")
    assert REGISTRY.config.backends("fused_add_rms_norm", "cuda").value[0] == "vllm_c"
    monkeypatch.setenv("NORMSWITCH_BACKEND", "native")
    ns.reset()
    assert REGISTRY.config.backends("fused_add_rms_norm", "cuda").value[0] == "native"


def test_no_preset_is_the_default():
    use_preset(None)
    ns.reset()
    assert REGISTRY.config.backends("fused_add_rms_norm", "cuda").value[0] == "triton"
    assert "preset" not in REGISTRY.config.summary()
