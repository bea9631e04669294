"""SGLang integration: SGLang's norm layers, FLA gated norm and DeepSeek-OCR fp32 LayerNorm on normswitch.

What it routes, where the installed SGLang has it:

- ``sglang.srt.layers.layernorm``: ``RMSNorm``, ``GemmaRMSNorm`` and ``LayerNorm``. Their
  ``forward_native`` and platform forwards (``forward_cuda``, ``forward_cpu``, ``forward_npu``, ...)
  are wrapped; on an out-of-tree platform the forward is also registered with
  ``BaseFusedOp.register_oot_forward`` under that platform's dispatch key.
- the FLA gated norm (``sglang.kernels.ops.attention.fla.layernorm_gated``, formerly
  ``sglang.srt.layers.attention.fla.layernorm_gated``): ``_layer_norm_fwd``, ``rms_norm_gated``,
  ``layernorm_fn``, ``rmsnorm_fn``. A device whose Triton has no backend (CPU, GCU, NPU) then
  gets normswitch's registry choice instead of a crash.
- ``sglang.srt.models.deepseek_ocr.LayerNormfp32`` is replaced by ``normswitch.LayerNormFP32``,
  and the vision tower builders of DeepSeek-OCR and DeepSeek-OCR 2 in that module
  (``build_sam_vit_b``, ``build_clip_l``, ``build_qwen2_decoder_as_encoder``) swap their towers'
  norms for normswitch modules (``vision``).

Activation: SGLang calls :func:`register` through the ``sglang.srt.plugins`` entry point in every
process and then applies the hooks (``SGLANG_PLUGINS`` filters plugins by name). Where SGLang has
no plugin framework, or outside SGLang's launcher, call :func:`enable` once before building the
model. Anything that cannot be hooked is logged once with the reason and left as SGLang has it.
"""
from __future__ import annotations

import functools
import importlib
import logging
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from normswitch.modules import LayerNormFP32

from . import vision
from .hooks import GATED_HOOKS, LAYER_HOOKS

log = logging.getLogger(__name__)

LAYERNORM_MODULE = "sglang.srt.layers.layernorm"
GATED_MODULES = (
    "sglang.kernels.ops.attention.fla.layernorm_gated",
    "sglang.srt.layers.attention.fla.layernorm_gated",
)
OCR_MODULE = vision.OCR_MODULE
FUSED_OP_MODULE = "sglang.kernels.fused_op"
HOOK_REGISTRY_MODULE = "sglang.srt.plugins.hook_registry"
FORWARDS = (
    "forward_native", "forward_cuda", "forward_hip", "forward_musa",
    "forward_npu", "forward_xpu", "forward_cpu", "forward_aiter",
)
"""The methods of SGLang's norm layers that dispatch can pick; each one the class defines is wrapped."""


@dataclass(frozen=True)
class Hook:
    """One thing to hook: ``target`` is ``module:attribute.path``; ``hook`` is an AROUND function
    ``(original, *args, **kwargs)``, or a class that replaces the target class."""

    target: str
    hook: Any

    @property
    def dotted(self) -> str:
        return self.target.replace(":", ".")

    @property
    def replaces_class(self) -> bool:
        return isinstance(self.hook, type)


@dataclass
class Report:
    """What :func:`register` hooked (dotted targets, OOT registrations) and what it skipped, with why."""

    via: str = ""
    hooked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


_report: Optional[Report] = None
_logged: set[str] = set()


ABSENT = "not present in this SGLang version"


def _skip(report: Report, what: str, reason: str) -> None:
    """Record ``what`` as not hooked and log it once per process (a failure as a warning)."""
    report.skipped[what] = reason
    if what not in _logged:
        _logged.add(what)
        level = logging.INFO if reason == ABSENT else logging.WARNING
        log.log(level, "normswitch: SGLang %s is not routed through normswitch: %s", what, reason)


def _import(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- collecting the hooks for the installed SGLang ----------------------------------------------

def _layer_hooks(report: Report) -> list[Hook]:
    try:
        module = _import(LAYERNORM_MODULE)
    except Exception as exc:
        _skip(report, f"{LAYERNORM_MODULE} (RMSNorm, GemmaRMSNorm, LayerNorm)", f"import failed: {_describe(exc)}")
        return []
    hooks = []
    for name, hook in LAYER_HOOKS.items():
        cls = getattr(module, name, None)
        if not isinstance(cls, type):
            _skip(report, f"{LAYERNORM_MODULE}.{name}", ABSENT)
            continue
        methods = [m for m in FORWARDS if m in vars(cls)]
        if "forward_native" not in methods:
            _skip(report, f"{LAYERNORM_MODULE}.{name}", "it defines no forward_native")
            continue
        hooks += [Hook(f"{LAYERNORM_MODULE}:{name}.{method}", hook) for method in methods]
    return hooks


def _gated_hooks(report: Report) -> list[Hook]:
    errors = []
    for module_name in GATED_MODULES:
        try:
            module = _import(module_name)
        except Exception as exc:
            errors.append(f"{module_name}: {_describe(exc)}")
            continue
        hooks = []
        for name, hook in GATED_HOOKS.items():
            if callable(getattr(module, name, None)):
                hooks.append(Hook(f"{module_name}:{name}", hook))
            else:
                _skip(report, f"{module_name}.{name}", ABSENT)
        return hooks
    _skip(report, "FLA layernorm_gated", "import failed: " + "; ".join(errors))
    return []


def _ocr_hooks(report: Report) -> list[Hook]:
    target = f"{OCR_MODULE}.LayerNormfp32"
    try:
        module = _import(OCR_MODULE)
    except Exception as exc:
        _skip(report, f"{OCR_MODULE} (LayerNormfp32, {', '.join(vision.BUILDERS)})",
              f"import failed: {_describe(exc)}")
        return []
    hooks = []
    if isinstance(getattr(module, "LayerNormfp32", None), type):
        hooks.append(Hook(f"{OCR_MODULE}:LayerNormfp32", LayerNormFP32))
    else:
        _skip(report, target, ABSENT)
    for name in vision.BUILDERS:
        if callable(getattr(module, name, None)):
            hooks.append(Hook(f"{OCR_MODULE}:{name}", vision.build_tower))
        else:
            _skip(report, f"{OCR_MODULE}.{name}", ABSENT)
    return hooks


# -- applying them ------------------------------------------------------------------------------

def _hook_registry() -> Optional[Any]:
    """SGLang's ``HookRegistry`` class, or None where the installed SGLang has none."""
    try:
        return _import(HOOK_REGISTRY_MODULE)
    except Exception:
        return None


def _resolve(target: str) -> tuple[Any, str, Any]:
    """``module:A.b`` -> (owner object, attribute name, current value)."""
    module_name, path = target.split(":")
    owner: Any = _import(module_name)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name, getattr(owner, name)


def around(original: Callable, hook: Callable) -> Callable:
    """``original`` wrapped so that calls go to ``hook(original, *args, **kwargs)``."""

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        return hook(original, *args, **kwargs)

    return wrapper


def _rebind_imports(original: Any, replacement: Any, home: Any) -> None:
    """Point ``from module import name`` copies of ``original`` in loaded modules at ``replacement``."""
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType) or module is home:
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, replacement)


def _patch(hook: Hook) -> None:
    """Apply one hook directly (SGLang without ``HookRegistry``)."""
    owner, name, original = _resolve(hook.target)
    if getattr(original, "__normswitch__", False):
        return
    replacement = hook.hook if hook.replaces_class else around(original, hook.hook)
    if not hook.replaces_class:
        replacement.__normswitch__ = True
    setattr(owner, name, replacement)
    if isinstance(owner, types.ModuleType):
        _rebind_imports(original, replacement, owner)


def _oot_key(report: Report) -> Optional[str]:
    """The active out-of-tree platform's dispatch key, None in-tree (or when SGLang cannot say)."""
    try:
        fused_op = _import(FUSED_OP_MODULE)
    except Exception as exc:
        _skip(report, "out-of-tree forward registration", f"import failed: {_describe(exc)}")
        return None
    if not hasattr(fused_op.BaseFusedOp, "register_oot_forward"):
        _skip(report, "out-of-tree forward registration",
              "BaseFusedOp.register_oot_forward is not in this SGLang version")
        return None
    try:
        return fused_op._oot_dispatch_key()
    except Exception as exc:
        _skip(report, "out-of-tree forward registration", f"the platform's dispatch key is unknown: {_describe(exc)}")
        return None


def _register_oot(report: Report, hooks: list[Hook]) -> None:
    """On an out-of-tree platform, register the layer hooks as that platform's forwards."""
    key = _oot_key(report)
    if key is None:
        return
    fused_op = _import(FUSED_OP_MODULE)
    for hook in hooks:
        owner, method, _ = _resolve(hook.target)
        if method != "forward_native":
            continue
        fallback = vars(owner).get(f"forward_{key}", vars(owner)["forward_native"])
        fused_op.BaseFusedOp.register_oot_forward(owner, around(fallback, hook.hook), key)
        report.hooked.append(f"{owner.__module__}.{owner.__name__} (out-of-tree forward, key {key!r})")


def register() -> Report:
    """Entry point (``sglang.srt.plugins``): hook everything the installed SGLang has. Idempotent.

    With SGLang's ``HookRegistry`` the hooks are registered there and applied by SGLang's
    ``load_plugins()``; without it they are applied here at once.
    """
    global _report
    if _report is not None:
        return _report
    from .. import start

    start("SGLang", logging.getLogger("sglang"))
    report = Report()
    layer_hooks = _layer_hooks(report)
    hooks = layer_hooks + _gated_hooks(report) + _ocr_hooks(report)
    registry = _hook_registry()
    report.via = "HookRegistry" if registry is not None else "direct patching"
    for hook in hooks:
        try:
            if registry is not None:
                kind = registry.HookType.REPLACE if hook.replaces_class else registry.HookType.AROUND
                registry.HookRegistry.register(hook.dotted, hook.hook, kind)
            else:
                _patch(hook)
        except Exception as exc:
            _skip(report, hook.dotted, f"hooking failed: {_describe(exc)}")
            continue
        report.hooked.append(hook.dotted)
    _register_oot(report, layer_hooks)
    _report = report
    log.info("normswitch: SGLang hooks registered via %s: %d, skipped: %d",
             report.via, len(report.hooked), len(report.skipped))
    return report


def enable() -> Report:
    """Activate the plugin by hand (no entry-point loading): register and apply the hooks now."""
    report = register()
    registry = _hook_registry()
    if registry is not None:
        registry.HookRegistry.apply_hooks()
    return report


def status() -> Optional[Report]:
    """What the plugin hooked in this process, or None before :func:`register`."""
    return _report
