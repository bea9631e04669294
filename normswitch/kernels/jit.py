"""Just-in-time C++/CUDA extensions: built on first use with ``torch.utils.cpp_extension`` (ninja),
cached on disk, loaded once per process.

A build is keyed by a hash of its sources and of whatever else makes a binary unfit for another
machine (torch version, compiler flags, CPU capability or GPU arch). Each build runs in a fresh
temporary directory and its library is moved into the cache atomically, so concurrent processes
and builds killed half way never leave a lock or a broken library behind. A failed build is
remembered for the process: later uses raise the same :class:`BuildError` at once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

log = logging.getLogger("normswitch")

COMMON = Path(__file__).with_name("common")
"""Headers shared by every extension (``ext_errors.h``, ``ext_bindings.h``), on the include path."""
COMMON_HEADERS = ("ext_errors.h", "ext_bindings.h")


class BuildError(RuntimeError):
    """The extension cannot be built or loaded here; the message says why."""


def cache_root(variable: str, kind: str) -> Path:
    """``$<variable>``, else ``$XDG_CACHE_HOME/normswitch/<kind>`` (default ``~/.cache/...``)."""
    env = os.environ.get(variable)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "normswitch" / kind


def tool_path() -> str:
    """PATH plus this interpreter's scripts directory, where pip puts ninja in a venv that is used
    without being activated; builds run with it."""
    scripts = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return path if scripts in path.split(os.pathsep) else os.pathsep.join([path, scripts])


def ninja_problem() -> Optional[str]:
    """None when ninja can run a build, else why not."""
    if shutil.which("ninja", path=tool_path()) is None:
        return "ninja is not installed (pip install ninja)"
    return None


def _import(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Extension:
    """One extension: its sources, how to build it, and the process-wide loaded module."""

    prefix: str
    csrc: Path
    sources: tuple[str, ...]
    headers: tuple[str, ...]
    cache_variable: str
    kind: str
    flags: Callable[[], dict]
    """``cpp_extension.load`` keyword arguments for this machine (cflags, ldflags, ...)."""
    key: Callable[[], str]
    """What besides the sources decides the binary (torch version, capability, arch)."""
    toolchain_problem: Callable[[], Optional[str]]
    build_env: Callable[[], dict] = dict
    """Environment variables set while compiling besides PATH (e.g. TORCH_CUDA_ARCH_LIST)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    module: Optional[ModuleType] = None
    """The loaded extension, once :meth:`load` succeeded."""
    error: type = BuildError
    """The exception class raised when the extension cannot be built or loaded."""
    failure: Optional[str] = None
    """Why the last build failed (remembered for the process), or None."""

    def source_hash(self) -> str:
        """SHA-256 over the names and contents of every source and header."""
        h = hashlib.sha256()
        files = [self.csrc / n for n in (*self.sources, *self.headers)] + [COMMON / n for n in COMMON_HEADERS]
        for path in files:
            h.update(path.name.encode())
            h.update(path.read_bytes())
        return h.hexdigest()

    def name(self) -> str:
        """The module name of this build (a Python identifier, unique per key)."""
        key = f"{self.source_hash()}|{self.key()}|{sorted(self.flags().items())}"
        return f"{self.prefix}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def problem(self) -> Optional[str]:
        """Why the extension cannot be used (toolchain missing, earlier failure), or None."""
        if self.failure is not None:
            return self.failure
        if self.module is not None:
            return None
        return self.toolchain_problem()

    def load(self) -> ModuleType:
        """The loaded extension, built on the first call; raises :class:`BuildError`."""
        if self.module is not None:
            return self.module
        with self._lock:
            if self.module is not None:
                return self.module
            if self.failure is not None:
                raise self.error(self.failure)
            reason = self.toolchain_problem()
            if reason is not None:
                self.failure = reason
                raise self.error(reason)
            try:
                self.module = self._build_or_load(self.name())
            except Exception as exc:
                self.failure = f"compile failed: {type(exc).__name__}: {str(exc).strip()[-1500:]}"
                log.warning("normswitch %s: %s", self.kind, self.failure)
                raise self.error(self.failure) from exc
            return self.module

    def _build_or_load(self, name: str) -> ModuleType:
        root = cache_root(self.cache_variable, self.kind)
        final = root / name / f"{name}.so"
        start = time.perf_counter()
        if final.exists():
            module = _import(name, final)
            log.info("normswitch %s: loaded %s (%.2f s)", self.kind, final, time.perf_counter() - start)
            return module
        from torch.utils import cpp_extension

        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=root))
        log.info("normswitch %s: compiling %s (first use; cached afterwards in %s)", self.kind, name, root)
        env = {"PATH": tool_path(), **self.build_env()}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            module = cpp_extension.load(name=name, sources=[str(self.csrc / s) for s in self.sources],
                                        extra_include_paths=[str(self.csrc), str(COMMON)],
                                        build_directory=str(work),
                                        verbose=False, **self.flags())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(work / f"{name}.so", final)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(work, ignore_errors=True)
        log.info("normswitch %s: compiled %s in %.1f s", self.kind, final, time.perf_counter() - start)
        return module

    def reset(self) -> None:
        """Forget the loaded module and any remembered failure (tests)."""
        with self._lock:
            self.module = None
            self.failure = None
