"""The triton kernels' numerics on CPU under Triton's interpreter (run by test_triton_interpreter.py).

Collected only when named explicitly, in a process started with ``TRITON_INTERPRET=1`` (the
variable is read when the kernels are decorated). Shapes stay tiny: the interpreter is slow.
"""
import os

import pytest
import torch

from normswitch.kernels.triton import channels_first, launch
from tests import numerics as nm
from tests.triton import cases

pytestmark = [
    pytest.mark.interpret,
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1"),
]
DEV = "cpu"
dtypes = pytest.mark.parametrize("dtype", nm.DTYPES, ids=str)
shapes = pytest.mark.parametrize("shape,strided", nm.SHAPES, ids=str)


@pytest.fixture(params=["registers", "looped"])
def path(request, monkeypatch):
    """Run each case through the register-resident kernels, then through the looped ones."""
    if request.param == "looped":
        monkeypatch.setattr(launch, "MAX_FUSED_N", 32)
        monkeypatch.setattr(launch, "LOOP_BLOCK_N", 16)
        monkeypatch.setattr(channels_first, "MAX_TILE", 64)
        monkeypatch.setattr(channels_first, "CHUNK_TILE", 32)
    return request.param


@dtypes
@shapes
def test_rms_norm(path, dtype, shape, strided):
    nm.check_rms_norm("triton", DEV, shape, dtype, strided, offset=1.0)
    nm.check_rms_norm("triton", DEV, shape, dtype, strided, with_weight=False)


@dtypes
@shapes
def test_fused_add_rms_norm(path, dtype, shape, strided):
    nm.check_fused_add_rms_norm("triton", DEV, shape, dtype, strided)


@dtypes
@pytest.mark.parametrize("inplace", [False, True])
def test_fused_add_kernel_contract(path, dtype, inplace):
    cases.check_fused_add(DEV, dtype, 4, 41, inplace=inplace)
    cases.check_fused_add(DEV, dtype, 3, 40, inplace=inplace, res_dtype=torch.float32, offset=1.0)


@dtypes
@shapes
def test_layer_norm(path, dtype, shape, strided):
    nm.check_layer_norm("triton", DEV, shape, dtype, strided)
    nm.check_layer_norm("triton", DEV, shape, dtype, strided, affine=False)


@dtypes
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 40, 3, 3), (2, 1, 3, 3), (0, 4, 2, 2)], ids=str)
def test_layer_norm_channels_first(path, dtype, shape):
    nm.check_layer_norm_channels_first("triton", DEV, shape, dtype)


@dtypes
@pytest.mark.parametrize("is_rms", [False, True])
@pytest.mark.parametrize("with_z,before", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("group", [None, 16])
def test_norm_gated(path, dtype, is_rms, with_z, before, group):
    nm.check_norm_gated("triton", DEV, 3, 64, dtype, is_rms, not is_rms, with_z, before, group,
                        strided=True)


def test_norm_gated_out_and_odd_group(path):
    cases.check_norm_gated(DEV, torch.bfloat16, 3, 99, group=33, z=True, before=False, rms=False,
                           bias=True, out=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_batch_invariance(path, dtype):
    nm.check_batch_invariance("triton", DEV, dtype, n=48, batch=20, row=7)
