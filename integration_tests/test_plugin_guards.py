"""The plugin never stops vLLM: a hook this vLLM cannot take is logged once and skipped."""
from __future__ import annotations

import importlib.util
import logging
import sys
import types

import pytest
import torch
from torch import nn

from normswitch.ops.rms_norm import reference_rms_norm
from normswitch.plugin import vllm as plugin
from normswitch.plugin.vllm import layers


@pytest.fixture
def fresh_results(monkeypatch):
    monkeypatch.setattr(plugin, "_results", {})


def test_failing_hook_is_logged_and_skipped(fresh_results, monkeypatch, caplog):
    def broken() -> str:
        raise AttributeError("module 'vllm' has no attribute 'ir'")

    hooks = {"ir": broken, "ok": lambda: "done"}
    monkeypatch.setattr(plugin, "HOOKS", hooks)
    with caplog.at_level(logging.WARNING, logger="vllm.plugins.normswitch"):
        results = plugin.register()
        plugin.register()  # loaded again in the same process: nothing new is logged
    assert results == {"ir": "failed: AttributeError: module 'vllm' has no attribute 'ir'",
                       "ok": "done"}
    warnings = [r for r in caplog.records if "not installed" in r.getMessage()]
    assert len(warnings) == 1 and "'ir'" in warnings[0].getMessage()


def test_layer_replaced_by_another_plugin_is_left_alone(monkeypatch):
    from vllm.model_executor import custom_op

    class Other(custom_op.CustomOp):
        pass

    monkeypatch.setattr(custom_op, "op_registry_oot", {"RMSNorm": Other})
    skipped = layers.register_layers()
    assert list(skipped) == ["RMSNorm"] and "Other" in skipped["RMSNorm"]
    assert custom_op.op_registry_oot["RMSNorm"] is Other
    assert custom_op.op_registry_oot["LayerNorm"] is layers.NormswitchLayerNorm


def test_vllm_without_ir_is_reported(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ir(name, *args, **kwargs):
        if name == "vllm.ir":
            raise ImportError("No module named 'vllm.ir'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ir)
    assert plugin._ir().startswith("skipped: this vLLM has no vllm.ir")


ALL_PATHS = ("forward_native",) + layers.PLATFORM_PATHS


def _vllm_class(name: str, methods: tuple[str, ...]) -> type:
    """A stand-in for a vLLM layer class whose methods return ``("vllm", method name)``."""

    def method(m: str):
        return lambda self, *args, **kwargs: ("vllm", m)

    return type(name, (nn.Module,), {m: method(m) for m in methods})


def _old_vllm_layernorm() -> types.ModuleType:
    """A layernorm module where GemmaRMSNorm lacks ``forward_cuda``, LayerNorm is a plain
    ``nn.Module`` (vLLM 0.26) and RMSNormGated does not exist."""
    module = types.ModuleType("vllm.model_executor.layers.layernorm")
    module.RMSNorm = _vllm_class("RMSNorm", ALL_PATHS)
    module.GemmaRMSNorm = _vllm_class("GemmaRMSNorm", tuple(m for m in ALL_PATHS if m != "forward_cuda"))
    module.LayerNorm = _vllm_class("LayerNorm", ("forward",))
    return module


@pytest.fixture
def fresh_unhooked(monkeypatch):
    monkeypatch.setattr(layers, "UNHOOKED", {})
    monkeypatch.setattr(layers, "_logged", set())


def test_installed_vllm_has_every_layer_hooked():
    assert layers.UNHOOKED == {}
    assert set(layers.REPLACEMENTS) == {"RMSNorm", "GemmaRMSNorm", "LayerNorm", "RMSNormGated"}
    for name, cls in layers.REPLACEMENTS.items():
        assert cls.__name__ == f"Normswitch{name}" and cls.__module__ == "normswitch.plugin.vllm.layers"
        assert all(getattr(cls, m).__name__ == m for m in layers.PLATFORM_PATHS)


def test_each_layer_hooked_through_the_paths_it_has(fresh_unhooked, caplog):
    module = _old_vllm_layernorm()
    with caplog.at_level(logging.INFO, logger="vllm.plugins.normswitch"):
        hooked = layers.hook_layers(module)
        again = layers.hook_layers(module)  # asked again: nothing new is logged
    assert set(hooked) == set(again) == {"RMSNorm", "GemmaRMSNorm"}
    rms, gemma = hooked["RMSNorm"], hooked["GemmaRMSNorm"]
    assert issubclass(rms, module.RMSNorm) and issubclass(gemma, module.GemmaRMSNorm)
    assert all(m in vars(rms) for m in layers.PLATFORM_PATHS)
    assert "forward_cuda" not in vars(gemma) and not hasattr(gemma, "forward_cuda")
    assert all(m in vars(gemma) for m in layers.PLATFORM_PATHS if m != "forward_cuda")

    assert set(layers.UNHOOKED) == {"GemmaRMSNorm.forward_cuda", "LayerNorm", "RMSNormGated"}
    assert "not a CustomOp" in layers.UNHOOKED["LayerNorm"]
    assert "not in this vLLM version" in layers.UNHOOKED["RMSNormGated"]
    messages = [r.getMessage() for r in caplog.records]
    for what in layers.UNHOOKED:
        assert sum(f"vLLM {what} not routed" in m for m in messages) == 1, messages
    assert not any("vLLM RMSNorm " in m for m in messages)


def test_hooked_path_serves_through_normswitch_and_hands_back_to_vllm(fresh_unhooked):
    layer = layers.hook_layers(_old_vllm_layernorm())["RMSNorm"]()
    layer.weight = nn.Parameter(torch.rand(64) + 0.5)
    layer.variance_epsilon, layer.variance_size_override, layer.pass_weight = 1e-6, None, True
    x = torch.randn(3, 64)
    torch.testing.assert_close(layer.forward_cpu(x), reference_rms_norm(x, layer.weight.data, 1e-6)[0].float())
    layer.variance_size_override = 32
    assert layer.forward_cpu(x) == ("vllm", "forward_cpu")
    assert layer.forward_native(x) == ("vllm", "forward_native")


def test_module_imports_with_an_old_vllm_layernorm(monkeypatch):
    """Loaded afresh (under another name) beside a vLLM 0.26-like layernorm module."""
    import vllm.model_executor.layers as layers_pkg

    module = _old_vllm_layernorm()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(layers_pkg, "layernorm", module, raising=False)
    spec = importlib.util.spec_from_file_location("normswitch_layers_under_test", layers.__file__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    assert set(fresh.REPLACEMENTS) == {"RMSNorm", "GemmaRMSNorm"}
    assert fresh.NormswitchLayerNorm is None and fresh.NormswitchRMSNormGated is None
    assert set(fresh.UNHOOKED) == {"GemmaRMSNorm.forward_cuda", "LayerNorm", "RMSNormGated"}
