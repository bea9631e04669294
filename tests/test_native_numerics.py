"""The native backend against the float64 reference: every op, dtype and awkward shape."""
import itertools

import pytest
import torch

from tests import numerics as nm

DEV = "cpu"
shapes = pytest.mark.parametrize("shape,strided", nm.SHAPES, ids=lambda v: str(v))
dtypes = pytest.mark.parametrize("dtype", nm.DTYPES, ids=str)


@dtypes
@shapes
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_rms_norm(dtype, shape, strided, offset):
    nm.check_rms_norm("native", DEV, shape, dtype, strided, offset)


@dtypes
def test_rms_norm_without_weight(dtype):
    nm.check_rms_norm("native", DEV, (4, 77), dtype, with_weight=False)


@dtypes
@shapes
def test_fused_add_rms_norm(dtype, shape, strided):
    nm.check_fused_add_rms_norm("native", DEV, shape, dtype, strided)


@dtypes
@shapes
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(dtype, shape, strided, affine):
    nm.check_layer_norm("native", DEV, shape, dtype, strided, affine)


@dtypes
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 768, 4, 4), (2, 1, 3, 3), (0, 4, 2, 2)], ids=str)
def test_layer_norm_channels_first(dtype, shape):
    nm.check_layer_norm_channels_first("native", DEV, shape, dtype)


@dtypes
@pytest.mark.parametrize(
    "is_rms,with_bias,with_z,before,quarter",
    list(itertools.product([False, True], [False, True], [False, True], [True, False], [False, True])),
)
def test_norm_gated_all_variants(dtype, is_rms, with_bias, with_z, before, quarter):
    n = 200
    nm.check_norm_gated("native", DEV, 9, n, dtype, is_rms, with_bias, with_z, before, n // 4 if quarter else None)


@pytest.mark.parametrize("m,n,strided", [(0, 64, False), (5, 1, False), (6, 130, True)])
def test_norm_gated_shapes(m, n, strided):
    nm.check_norm_gated("native", DEV, m, n, torch.bfloat16, False, True, True, True, None, strided)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_batch_invariance(dtype):
    nm.check_batch_invariance("native", DEV, dtype)
