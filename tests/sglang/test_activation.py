"""Activation by hand (``enable()``), with and without SGLang's HookRegistry, in fresh interpreters."""
from __future__ import annotations

import pytest

from .conftest import run_python

pytest.importorskip("sglang", reason="SGLang is not installed (scripts/install_sglang.sh)")

GATED_CALL = """
import torch
torch.set_grad_enabled(False)  # as SGLang serves: parameters that require grad build no graph
from sglang.kernels.ops.attention.fla import layernorm_gated as lg
x, z, w = torch.randn(4, 64), torch.randn(4, 64), torch.ones(64)
def call():
    return lg.RMSNorm(64)(x, z)
"""


def test_without_plugin_the_fla_gated_norm_of_sglang_fails_on_cpu_and_enable_fixes_it():
    code = GATED_CALL + """
try:
    call()
except Exception as exc:
    print("WITHOUT:", type(exc).__name__, exc)
from normswitch.plugin import sglang as plugin
print("VIA:", plugin.enable().via)
print("WITH:", tuple(call().shape))
from normswitch.metrics import metrics_text
print([l for l in metrics_text().splitlines() if l.startswith("normswitch_calls_total")])
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "WITHOUT: AssertionError Torch not compiled with CUDA enabled" in out
    assert "VIA: HookRegistry" in out
    assert "WITH: (4, 64)" in out
    assert 'device="cpu",op="norm_gated"} 1.0' in out


def test_direct_patching_where_sglang_has_no_hook_registry():
    code = GATED_CALL + """
from sglang.srt.models import qwen3_5, deepseek_ocr
from sglang.srt.layers.layernorm import RMSNorm
from normswitch.plugin import sglang as plugin
plugin._hook_registry = lambda: None
report = plugin.enable()
print("VIA:", report.via, len(report.hooked))
print("WITH:", tuple(call().shape), tuple(RMSNorm(64)(x).shape))
print("QWEN:", qwen3_5._layer_norm_fwd is lg._layer_norm_fwd, hasattr(lg._layer_norm_fwd, "__wrapped__"))
print("OCR:", deepseek_ocr.LayerNormfp32.__module__)
plugin._report = None
print("AGAIN:", plugin.enable().via, hasattr(lg._layer_norm_fwd.__wrapped__, "__wrapped__"))
from normswitch.metrics import metrics_text
print([l for l in metrics_text().splitlines() if l.startswith("normswitch_calls_total")])
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "VIA: direct patching" in out
    assert "WITH: (4, 64) (4, 64)" in out
    assert "QWEN: True True" in out
    assert "OCR: normswitch.modules" in out
    assert "AGAIN: direct patching False" in out
    assert 'op="norm_gated"} 1.0' in out and 'op="rms_norm"} 1.0' in out
