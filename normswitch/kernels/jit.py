"""Just-in-time C++/CUDA extensions: built on first use with ``torch.utils.cpp_extension`` (ninja),
cached on disk, loaded once per process. A build is keyed by a hash of its sources and of whatever
else makes a binary unfit for another machine (torch version, compiler flags, CPU capability or GPU
arch). The cache root holds, per build ``<name>``, the library ``<name>/<name>.so`` and its record
``<name>/<name>.json`` (name, size and SHA-256, written after the library is in place). A library
counts as cached only when its record matches and it imports: a truncated one (which would crash
the process with SIGBUS at its first call), a corrupt or a foreign one is rebuilt, with one warning.

Builds of one name are serialised across processes by ``flock`` on ``<root>/<name>.lock``: one
process builds, the others log that they wait and then load its result. A build runs in a
temporary directory ``<root>/<name>.<pid>.*`` and its library is moved into place atomically; the
directories of killed builds are removed by the next build of that name. When the cache cannot be
written, the build runs in a private temporary directory outside it and is not cached. A failed
build is remembered for the process: later uses raise the same :class:`BuildError` at once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
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

from .cache import check_library, held_lock, library_record, record_path, remove_stale_builds

log = logging.getLogger("normswitch")

COMMON = Path(__file__).with_name("common")
"""Headers shared by every extension (``ext_errors.h``, ``ext_bindings.h``), on the include path,
and sources compiled into more than one (``fast_key.cpp``)."""
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
    common_sources: tuple[str, ...] = ()
    """Sources of :data:`COMMON` compiled into this extension too."""
    on_load: Optional[Callable[[ModuleType], None]] = None
    """Called with the module once :meth:`load` has it (what the process does with it besides kernels)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    module: Optional[ModuleType] = None
    """The loaded extension, once :meth:`load` succeeded."""
    error: type = BuildError
    """The exception class raised when the extension cannot be built or loaded."""
    failure: Optional[str] = None
    """Why the last build failed (remembered for the process), or None."""
    origin: Optional[str] = None
    """How :attr:`module` was obtained: ``"cache"``, ``"built"`` (and cached) or ``"built, not cached"``."""
    seconds: float = 0.0
    """How long obtaining :attr:`module` took (waiting for another process's build included)."""

    def source_files(self) -> list[Path]:
        """The files compiled: the sources in ``csrc``, then the common ones."""
        return [self.csrc / n for n in self.sources] + [COMMON / n for n in self.common_sources]

    def source_hash(self) -> str:
        """SHA-256 over the names and contents of every source and header."""
        h = hashlib.sha256()
        files = [self.csrc / n for n in (*self.sources, *self.headers)] + [COMMON / n for n in COMMON_HEADERS] + \
            [COMMON / n for n in self.common_sources]
        for path in files:
            h.update(path.name.encode())
            h.update(path.read_bytes())
        return h.hexdigest()

    def name(self) -> str:
        """The module name of this build (a Python identifier, unique per key)."""
        key = f"{self.source_hash()}|{self.key()}|{sorted(self.flags().items())}"
        return f"{self.prefix}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def library_path(self, name: Optional[str] = None) -> Path:
        """Where the library of build ``name`` (default: this machine's) is cached."""
        name = name or self.name()
        return cache_root(self.cache_variable, self.kind) / name / f"{name}.so"

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
            start = time.perf_counter()
            try:
                self.module = self._build_or_load(self.name())
            except Exception as exc:
                self.failure = f"compile failed: {type(exc).__name__}: {str(exc).strip()[-1500:]}"
                log.warning("normswitch %s: %s", self.kind, self.failure)
                raise self.error(self.failure) from exc
            self.seconds = time.perf_counter() - start
            if self.on_load is not None:
                self.on_load(self.module)
            return self.module

    def _cached(self, name: str, library: Path,
                skip_sha: Optional[str] = None) -> tuple[Optional[ModuleType], str, Optional[str]]:
        """(the module of a valid cache entry or None, why not ("" when there is no entry), its SHA-256).
        A library whose SHA-256 is ``skip_sha`` already failed to import here and is not tried again."""
        if not library.exists() and not record_path(library).exists():
            return None, "", None
        reason, sha = check_library(library, name)
        if reason is not None:
            return None, reason, sha
        if sha == skip_sha:
            return None, "import failed", sha
        start = time.perf_counter()
        try:
            module = _import(name, library)
        except Exception as exc:  # ImportError, or whatever a foreign module's init raises
            return None, f"import failed: {type(exc).__name__}: {exc}", sha
        self.origin = "cache"
        log.info("normswitch %s: loaded %s (%.2f s)", self.kind, library, time.perf_counter() - start)
        return module, "", sha

    def _build_or_load(self, name: str) -> ModuleType:
        root = cache_root(self.cache_variable, self.kind)
        library = root / name / f"{name}.so"
        module, reason, sha = self._cached(name, library)
        if module is not None:
            return module
        if reason:
            log.warning("normswitch %s: cached %s is unusable (%s); rebuilding it", self.kind, library, reason)
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            return self._build_private(name, root, f"cannot create its lock: {exc}")

        def on_wait() -> None:
            log.info("normswitch %s: waiting for another process building %s in %s", self.kind, name, root)

        with held_lock(fd, on_wait):
            # Whoever held the lock may have just built it; a library that failed to import is not retried.
            failed = sha if reason.startswith("import failed") else None
            module, _, _ = self._cached(name, library, skip_sha=failed)
            if module is not None:
                return module
            removed = remove_stale_builds(root, name)
            if removed:
                log.info("normswitch %s: removed %d stale build directories in %s", self.kind, len(removed), root)
            try:
                work = Path(tempfile.mkdtemp(prefix=f"{name}.{os.getpid()}.", dir=root))
            except OSError as exc:
                return self._build_private(name, root, str(exc))
            try:
                return self._build_into_cache(name, work, library)
            finally:
                shutil.rmtree(work, ignore_errors=True)

    def _build_into_cache(self, name: str, work: Path, library: Path) -> ModuleType:
        start = time.perf_counter()
        log.info("normswitch %s: compiling %s (first use; cached afterwards in %s)", self.kind, name,
                 library.parent.parent)
        module = self._compile(name, work)
        built = work / f"{name}.so"
        try:
            record = work / f"{name}.json"
            record.write_text(json.dumps(library_record(built, name)))
            library.parent.mkdir(parents=True, exist_ok=True)
            # The old record goes first: a library without a matching record is never loaded.
            record_path(library).unlink(missing_ok=True)
            os.replace(built, library)
            os.replace(record, record_path(library))
        except OSError as exc:
            self.origin = "built, not cached"
            log.warning("normswitch %s: compiled %s but cannot cache it in %s: %s", self.kind, name,
                        library.parent, exc)
            return module
        self.origin = "built"
        log.info("normswitch %s: compiled %s in %.1f s", self.kind, library, time.perf_counter() - start)
        return module

    def _build_private(self, name: str, root: Path, why: str) -> ModuleType:
        """Build in a private temporary directory outside the cache, which cannot be written."""
        log.warning("normswitch %s: cache %s cannot be written (%s); building %s privately, not cached",
                    self.kind, root, why, name)
        start = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix=f"{name}."))
        try:
            module = self._compile(name, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # the loaded library stays mapped
        self.origin = "built, not cached"
        log.info("normswitch %s: compiled %s in %.1f s", self.kind, name, time.perf_counter() - start)
        return module

    def _compile(self, name: str, work: Path) -> ModuleType:
        """``cpp_extension.load`` into ``work`` with the build environment; the loaded module."""
        from torch.utils import cpp_extension

        # torch renames a second build of one name in a process (``<name>_v1``); the cache needs the name.
        versioner = getattr(cpp_extension, "JIT_EXTENSION_VERSIONER", None)
        if versioner is not None:
            getattr(versioner, "entries", {}).pop(name, None)
        env = {"PATH": tool_path(), **self.build_env()}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return cpp_extension.load(name=name, sources=[str(path) for path in self.source_files()],
                                      extra_include_paths=[str(self.csrc), str(COMMON)],
                                      build_directory=str(work), verbose=False, **self.flags())
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def reset(self) -> None:
        """Forget the loaded module and any remembered failure (tests)."""
        with self._lock:
            self.module = None
            self.failure = None
            self.origin = None
            self.seconds = 0.0
