"""The native RMSNorm and LayerNorm go chunk by chunk of rows on large inputs (to bound their
float32 temporaries): any chunking gives bitwise the result of one piece, also in place. (LayerNorm
on CPU tensors has no temporaries and runs in one call: there this checks that it ignores the
chunk size.)"""
import importlib

import pytest
import torch

import normswitch as ns
from normswitch.ops._inputs import param, rand

CALLS = {
    "rms_norm": lambda x, w, b, out: ns.rms_norm(x, w, 1e-6, out=out, backend="native"),
    "rms_norm float32 weight": lambda x, w, b, out: ns.rms_norm(x, w.float(), 1e-6, out=out,
                                                                backend="native"),
    "layer_norm": lambda x, w, b, out: ns.layer_norm(x, w, b, 1e-5, out=out, backend="native"),
    "layer_norm float32 parameters": lambda x, w, b, out: ns.layer_norm(
        x, w.float(), b.float(), 1e-5, out=out, backend="native"),
}


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_chunked_equals_one_piece(name, dtype, monkeypatch):
    x = rand((37, 96), dtype, "cpu", shift=1.0)
    w, b = param(96, dtype, "cpu"), param(96, dtype, "cpu")
    whole = CALLS[name](x, w, b, None)
    for module in ("rms_norm", "layer_norm"):
        native = importlib.import_module(f"normswitch.fallbacks.{module}")
        monkeypatch.setattr(native, "CHUNK_ELEMENTS", 96 * 5)
    assert torch.equal(CALLS[name](x, w, b, None), whole)
    inplace = x.clone()
    assert CALLS[name](inplace, w, b, inplace) is inplace
    assert torch.equal(inplace, whole)
