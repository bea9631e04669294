"""The modules against the seeds' own definitions, written out here as the seeds define them."""
import pytest
import torch
from torch import nn

import normswitch as ns


class DeepseekV2RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class LayerNormfp32(nn.LayerNorm):
    def forward(self, x):
        orig_type = x.dtype
        ret = super().forward(x.type(torch.float32))
        return ret.type(orig_type)


class SamLayerNorm2d(nn.Module):
    def __init__(self, num_channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
def test_rmsnorm_is_a_drop_in_for_deepseek_v2(dtype):
    seed = _randomize(DeepseekV2RMSNorm(1280)).to(dtype)
    ours = ns.RMSNorm(1280).to(dtype)
    ours.load_state_dict(seed.state_dict())
    assert ours.variance_epsilon == seed.variance_epsilon
    x = torch.randn(3, 17, 1280).to(dtype)
    expected, got = seed(x), ours(x)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=1e-2 if dtype != torch.float32 else 1e-5, atol=1e-2)


def test_rmsnorm_with_residual_is_the_fused_add():
    norm = _randomize(ns.RMSNorm(64))
    x, r = torch.randn(5, 64), torch.randn(5, 64)
    y, s = norm(x, r)
    torch.testing.assert_close(s, x + r)
    torch.testing.assert_close(y, norm(x + r))


def test_gemma_rmsnorm_scales_by_one_plus_weight():
    norm = _randomize(ns.GemmaRMSNorm(96))
    x = torch.randn(4, 96)
    expected = ns.rms_norm(x, norm.weight + 1.0)
    torch.testing.assert_close(norm(x), expected)
    assert ns.GemmaRMSNorm(8).weight.abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("shape", [1024, (4, 256)], ids=str)
def test_layernorm_fp32_is_a_drop_in(dtype, shape):
    seed = _randomize(LayerNormfp32(shape, eps=1e-5))
    ours = ns.LayerNormFP32(shape, eps=1e-5)
    ours.load_state_dict(seed.state_dict())
    assert isinstance(ours, nn.LayerNorm)
    x = (torch.randn(2, 9, 1024) * 3 + 1).to(dtype).view(2, 9, *((1024,) if shape == 1024 else shape))
    torch.testing.assert_close(ours(x), seed(x), rtol=1e-2 if dtype != torch.float32 else 1e-5, atol=1e-2)


def test_layernorm_fp32_without_affine():
    seed, ours = LayerNormfp32(64, elementwise_affine=False), ns.LayerNormFP32(64, elementwise_affine=False)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    torch.testing.assert_close(ours(x), seed(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_layernorm2d_matches_sam(dtype):
    seed = _randomize(SamLayerNorm2d(256))
    ours = ns.LayerNorm2d(256)
    ours.load_state_dict(seed.state_dict())
    x = torch.randn(2, 256, 8, 8)
    expected = seed(x).to(dtype)
    torch.testing.assert_close(ours(x.to(dtype)), expected, rtol=1e-2 if dtype != torch.float32 else 1e-5, atol=2e-2)


@pytest.mark.parametrize("cls,rms", [(ns.RMSNormGated, True), (ns.LayerNormGated, False)])
def test_gated_modules(cls, rms):
    norm = _randomize(cls(128, eps=1e-5, group_size=32, norm_before_gate=False))
    assert (norm.bias is None) == rms
    x, z = torch.randn(2, 3, 128), torch.randn(2, 3, 128)
    y = norm(x, z)
    expected = ns.norm_gated(x.view(-1, 128), norm.weight, norm.bias, z.view(-1, 128), 1e-5, 32, False, rms)[0]
    torch.testing.assert_close(y, expected.view(2, 3, 128))


def test_module_backend_keyword_is_passed_on():
    from normswitch.registry import BackendUnavailableError

    norm = ns.RMSNorm(16, backend="triton")
    with torch.no_grad(), pytest.raises(BackendUnavailableError, match="triton"):
        norm(torch.randn(2, 16))
    with pytest.raises(BackendUnavailableError, match="computes forward values only"):
        norm(torch.randn(2, 16))  # the weight requires grad in grad mode


def test_modules_train():
    """In grad mode with parameters that require grad, the modules build a graph: backward
    gives the gradients of the float64 reference's formula."""
    x = torch.randn(3, 16, dtype=torch.float64).float().requires_grad_()
    for norm, ref in ((ns.RMSNorm(16), lambda t, w: t * torch.rsqrt(t.square().mean(-1, keepdim=True) + 1e-6) * w),
                      (ns.LayerNormFP32(16), lambda t, w: torch.nn.functional.layer_norm(t, (16,), w, None, 1e-5))):
        with torch.no_grad():
            norm.weight.copy_(torch.randn(16))
        norm(x).square().sum().backward()
        xd, wd = x.detach().double().requires_grad_(), norm.weight.detach().double().requires_grad_()
        ref(xd, wd).square().sum().backward()
        torch.testing.assert_close(x.grad.double(), xd.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(norm.weight.grad.double(), wd.grad, rtol=1e-4, atol=1e-4)
        x.grad = None


def test_in_place_fused_add_into_a_leaf_that_requires_grad_raises():
    x = torch.randn(2, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        ns.fused_add_rms_norm(x, torch.randn(2, 8), torch.randn(8), inplace=True)
