"""Bad input raises ValueError/TypeError naming the argument; never a crash or a silent wrong answer."""
import pytest
import torch

import normswitch as ns

X = torch.randn(4, 64)
W = torch.randn(64)


@pytest.mark.parametrize("call,error,message", [
    (lambda: ns.rms_norm(X, torch.randn(63)), ValueError, r"weight: expected shape \(64,\)"),
    (lambda: ns.rms_norm(X, torch.randn(2, 64)), ValueError, r"weight: expected shape \(64,\)"),
    (lambda: ns.rms_norm(torch.ones(4, 64, dtype=torch.int64), W), TypeError, r"x: expected dtype float16, bfloat16"),
    (lambda: ns.rms_norm(X.double(), W), TypeError, r"x: expected dtype .* got torch.float64"),
    (lambda: ns.rms_norm(X, torch.ones(64, dtype=torch.int32)), TypeError, r"weight: expected a floating-point"),
    (lambda: ns.rms_norm([1.0, 2.0], None), TypeError, r"x: expected a torch.Tensor, got list"),
    (lambda: ns.rms_norm(X, W, eps=-1e-6), ValueError, r"eps: expected a finite non-negative number"),
    (lambda: ns.rms_norm(X, W, eps=float("nan")), ValueError, r"eps: expected a finite non-negative"),
    (lambda: ns.rms_norm(X, W, eps="1e-6"), TypeError, r"eps: expected a float"),
    (lambda: ns.rms_norm(X, W.to("meta")), ValueError, r"weight: expected a tensor on cpu like x, got one on meta"),
    (lambda: ns.rms_norm(X, W, out=torch.empty(4, 64, dtype=torch.bfloat16)), TypeError, r"out: expected dtype torch.float32"),
    (lambda: ns.rms_norm(X, W, out=torch.empty(4, 65)), ValueError, r"out: expected shape \(4, 64\)"),
    (lambda: ns.rms_norm(torch.randn(4, 0), None), ValueError, r"x: the last dimension is empty"),
    (lambda: ns.rms_norm(X, W, weight_offset=None), TypeError, r"weight_offset: expected a finite float"),
    (lambda: ns.fused_add_rms_norm(X, torch.randn(4, 63), W), ValueError, r"residual: expected shape \(4, 64\)"),
    (lambda: ns.fused_add_rms_norm(X, X.clone(), None), TypeError, r"weight: expected a tensor"),
    (lambda: ns.fused_add_rms_norm(X, X.to("meta"), W), ValueError, r"residual: expected a tensor on cpu"),
    (lambda: ns.layer_norm(X, W, torch.randn(32)), ValueError, r"bias: expected shape \(64,\)"),
    (lambda: ns.layer_norm(X, W, W, eps=-1.0), ValueError, r"eps:"),
    (lambda: ns.layer_norm_channels_first(torch.randn(2, 8, 3, 3), torch.ones(4), torch.zeros(8)), ValueError,
     r"weight: expected shape \(8,\)"),
    (lambda: ns.layer_norm_channels_first(torch.randn(8), torch.ones(8), torch.zeros(8)), ValueError,
     r"x: expected at least 2 dimension"),
    (lambda: ns.norm_gated(X, W, group_size=48), ValueError, r"group_size: expected a positive divisor of the hidden size 64, got 48"),
    (lambda: ns.norm_gated(X, W, group_size=0), ValueError, r"group_size: expected a positive divisor"),
    (lambda: ns.norm_gated(X, W, group_size=16.0), TypeError, r"group_size: expected an int"),
    (lambda: ns.norm_gated(X, W, z=torch.randn(4, 32)), ValueError, r"z: expected shape \(4, 64\) like x"),
    (lambda: ns.norm_gated(X.view(2, 2, 64), W), ValueError, r"x: expected a 2-D \(M, N\) tensor"),
    (lambda: ns.norm_gated(X, None), TypeError, r"weight: expected a tensor"),
    (lambda: ns.norm_gated(X, W, z=torch.ones(4, 64, dtype=torch.int32)), TypeError, r"z: expected dtype"),
    (lambda: ns.rmsnorm_fn(X, W, None, group_size=7), ValueError, r"group_size:"),
])
def test_bad_inputs_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mixed_precision_parameters_are_accepted():
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    y = ns.rms_norm(x, torch.randn(64, dtype=torch.float32))
    assert y.dtype == torch.bfloat16
    assert ns.layer_norm(x, torch.randn(64, dtype=torch.float64), torch.randn(64)).dtype == torch.bfloat16
