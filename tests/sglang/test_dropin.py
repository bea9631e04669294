"""The ``_layer_norm_fwd``-compatible drop-ins, which need no SGLang."""
from __future__ import annotations

import pytest
import torch

from normswitch.ops._inputs import rand
from normswitch.ops.norm_gated import reference as reference_norm_gated
from normswitch.plugin.sglang import gated

from ..ops.harness import assert_close
from .conftest import run_python


def test_importing_the_dropins_does_not_import_sglang():
    result = run_python(
        "import sys, normswitch.plugin.sglang.gated\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sglang'))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_norm_fwd(dtype):
    x, z = rand((6, 64), dtype, "cpu"), rand((6, 64), dtype, "cpu")
    weight, bias = torch.randn(64), torch.randn(64)
    y, mean, rstd = gated.layer_norm_fwd(x, weight, bias, 1e-6, z=z, group_size=16)
    ref_y, ref_mean, ref_rstd = reference_norm_gated(x, weight, bias, z, 1e-6, 16, True, False)
    assert_close(y, ref_y, dtype, "out")
    assert_close(mean, ref_mean, torch.float32, "mean")
    assert_close(rstd, ref_rstd, torch.float32, "rstd")
    out = torch.empty_like(x)
    assert gated.layer_norm_fwd(x, weight, None, 1e-6, z=z.view(2, 3, 64), out=out,
                                       norm_before_gate=False, is_rms_norm=True)[0] is out
    assert_close(out, reference_norm_gated(x, weight, None, z, 1e-6, None, False, True)[0], dtype, "out=")


def test_fla_style_functions():
    x, z, weight = rand((2, 5, 32), torch.float32, "cpu"), rand((2, 5, 32), torch.float32, "cpu"), torch.randn(32)
    ref = reference_norm_gated(x.view(10, 32), weight, None, z.view(10, 32), 1e-6, None, True, True)[0]
    assert_close(gated.rmsnorm_fn(x, weight, None, z=z).view(10, 32), ref, torch.float32, "rmsnorm_fn")
    assert_close(gated.layernorm_fn(x, weight, None, z=z, is_rms_norm=True).view(10, 32), ref,
                 torch.float32, "layernorm_fn")
    y = gated.rms_norm_gated(x=x, weight=weight, bias=None, z=z, is_rms_norm=True)
    assert_close(y.view(10, 32), ref, torch.float32, "rms_norm_gated")


def test_options_normswitch_does_not_offer_raise():
    x = torch.randn(2, 8)
    with pytest.raises(NotImplementedError, match="sigmoid"):
        gated.layer_norm_fwd(x, torch.ones(8), None, 1e-6, z=x, activation="sigmoid")
    with pytest.raises(NotImplementedError, match="quant_heads"):
        gated.layer_norm_fwd(x, torch.ones(8), None, 1e-6, quant_heads=2)
