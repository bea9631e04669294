"""The vision-norm swap of the vLLM plugin on small towers built from vLLM's own classes (no engine)."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
from vllm.model_executor.models.deepencoder import LayerNorm2d

from normswitch.modules import LayerNorm2d as NormswitchLayerNorm2d
from normswitch.modules import LayerNormFP32
from normswitch.plugin.vllm import vision_norms
from normswitch.plugin.vllm.layers import NormswitchRMSNorm


class Tower(nn.Module):
    """A SAM-like block, a neck and a Qwen2-like encoder layer: one norm of each vision class."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(32, eps=1e-6)
        self.neck = nn.Sequential(nn.Conv2d(32, 16, 1), LayerNorm2d(16))
        self.input_layernorm = Qwen2RMSNorm(16, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, 32)
        y = self.neck(self.norm1(x).permute(0, 3, 1, 2))
        return self.input_layernorm(y.flatten(2).transpose(1, 2))


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sam_model, self.qwen2_model = Tower(), Tower()


@pytest.fixture(autouse=True)
def _inside_vllm(monkeypatch):
    """normswitch's layers registered in a private registry, inside a vLLM config (as in a model
    constructor)."""
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor import custom_op

    from normswitch.plugin.vllm import layers

    monkeypatch.setattr(custom_op, "op_registry_oot", {})
    assert layers.register_layers() == {}
    with set_current_vllm_config(VllmConfig()):
        yield


def test_every_vision_norm_is_swapped_and_computes_the_same():
    torch.manual_seed(0)
    model = Model().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    reference = Model().eval()
    reference.load_state_dict(model.state_dict())
    counts = vision_norms.swap_vision_norms(model, ("sam_model", "qwen2_model"))
    assert counts == {"LayerNormFP32": 2, "LayerNorm2d": 2, "NormswitchRMSNorm": 2}
    for tower in (model.sam_model, model.qwen2_model):
        assert type(tower.norm1) is LayerNormFP32 and tower.norm1.eps == 1e-6
        assert type(tower.neck[1]) is NormswitchLayerNorm2d
        assert type(tower.input_layernorm) is NormswitchRMSNorm
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(2, 4, 4, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.sam_model(x), reference.sam_model(x), rtol=1e-5, atol=1e-5)
    assert vision_norms.swap_vision_norms(model, ("sam_model",)) == {}  # nothing left to swap


def test_missing_class_and_tower_are_logged_once_and_skipped(monkeypatch, caplog):
    monkeypatch.setattr(vision_norms, "SWAPS", (("vllm.no_such_module", "LayerNorm2d", None),
                                                *vision_norms.SWAPS[:1]))
    monkeypatch.setattr(vision_norms, "_logged", set())
    model = Model()
    with caplog.at_level(logging.WARNING, logger="vllm.plugins.normswitch"):
        for _ in range(2):
            vision_norms.swap_vision_norms(model, ("sam_model", "vision_model"))
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "vllm.no_such_module.LayerNorm2d" in m]) == 1, messages
    assert len([m for m in messages if "Model.vision_model" in m]) == 1, messages
    assert type(model.sam_model.norm1) is LayerNormFP32 and type(model.sam_model.neck[1]) is LayerNorm2d


def test_failing_swap_keeps_vllm_modules(monkeypatch, caplog):
    def broken(model, towers):
        raise RuntimeError("tower changed")

    monkeypatch.setattr(vision_norms, "swap_vision_norms", broken)
    model = Model()
    with caplog.at_level(logging.WARNING, logger="vllm.plugins.normswitch"):
        vision_norms.serve_vision_norms(model, ("sam_model",))
    assert model.normswitch_vision_norms == {} and type(model.sam_model.norm1) is nn.LayerNorm
    assert any("left to vLLM: RuntimeError: tower changed" in r.getMessage() for r in caplog.records)
