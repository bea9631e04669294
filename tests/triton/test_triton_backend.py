"""The triton backend's registration, availability and supports() (no GPU needed)."""
import subprocess
import sys

import torch

import normswitch as ns
from normswitch.kernels import triton as backend
from normswitch.ops import OPS
from normswitch.registry import REGISTRY, Call

_NO_TRITON = """
import sys
sys.modules["triton"] = None  # as if not installed: imports of it fail
from normswitch.kernels.triton import availability
print(availability("cuda"))
"""


def test_imports_without_triton_and_says_why():
    out = subprocess.run([sys.executable, "-c", _NO_TRITON], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "triton" in out.stdout and "install" in out.stdout


def test_import_does_not_load_the_kernels():
    code = ("import sys, normswitch.kernels.triton as t; "
            "assert not any(m.startswith('normswitch.kernels.triton.') for m in sys.modules); "
            "assert 'triton' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_op_has_an_impl_with_the_contract():
    for op in OPS:
        impl = REGISTRY.impl(op, "triton")
        assert impl is not None and impl.backend == "triton"


def test_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "TRITON_INTERPRET=1" in backend.availability("cpu")
    assert "no backend for npu" in backend.availability("npu")


def test_supports_declines_other_dtypes():
    call = Call("rms_norm", "cuda", torch.float64, 4096)
    assert "float64" in backend.supports(call)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert backend.supports(Call("norm_gated", "cuda", dtype, 131072, frozenset({"z"}), 64)) is None


def test_cpu_tensor_falls_back_to_the_cpu_order(monkeypatch, caplog):
    """Forced triton on a CPU tensor: the next backend of the CPU order serves (cpu, else native)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("NORMSWITCH_BACKEND", "triton")
    ns.reset()
    x = torch.randn(3, 8)
    y = ns.layer_norm(x, torch.ones(8))
    assert "backend 'triton' falls back to 'cpu'" in caplog.text or "falls back to 'native'" in caplog.text
    torch.testing.assert_close(y, ns.layer_norm(x, torch.ones(8), backend="native"))
    assert REGISTRY.availability("layer_norm", "triton", "cpu") is not None
