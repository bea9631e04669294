"""The plugin never stops vLLM: a hook this vLLM cannot take is logged once and skipped."""
from __future__ import annotations

import logging

import pytest

from normswitch.plugin import vllm as plugin


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

    from normswitch.plugin.vllm import layers

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
