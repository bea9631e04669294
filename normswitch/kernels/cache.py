"""The on-disk cache of the JIT-built extensions (see ``normswitch.kernels.jit``): the record
(name, size, SHA-256) beside each cached library, the check of a library against it, the removal
of killed builds' directories, and the ``flock`` that serialises builds of one name."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

try:
    import fcntl
except ImportError:  # not POSIX: builds are not serialised, the atomic moves still keep the cache whole
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("normswitch")

STALE_SECONDS = 3600.0
"""A build directory this old is removed by the next build even when its process still runs."""


def record_path(library: Path) -> Path:
    """Where the record (name, size, SHA-256) of a cached ``library`` lies: beside it, ``.json``."""
    return library.with_suffix(".json")


def library_record(library: Path, name: str) -> dict:
    """The record of ``library`` (a shared library) as build ``name``, as written beside it in the cache.

    Returns
    -------
    dict
        ``{"name": name, "size": bytes, "sha256": hex digest}``.
    """
    digest = hashlib.sha256()
    with open(library, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        size = f.tell()
    return {"name": name, "size": size, "sha256": digest.hexdigest()}


def check_library(library: Path, name: str) -> tuple[Optional[str], Optional[str]]:
    """(why ``library`` is not a complete build ``name`` or None, its SHA-256 when readable)."""
    if not library.exists():
        return "library missing", None
    try:
        recorded = json.loads(record_path(library).read_text())
    except FileNotFoundError:
        return "no record of its size and SHA-256", None
    except (OSError, ValueError) as exc:
        return f"unreadable record: {exc}", None
    if not isinstance(recorded, dict) or recorded.get("name") != name:
        return "its record is for another build (foreign)", None
    try:
        actual = library_record(library, name)
    except OSError as exc:
        return f"unreadable: {exc}", None
    if actual["size"] != recorded.get("size"):
        return f"size {actual['size']} B, recorded {recorded.get('size')} B (truncated or replaced)", actual["sha256"]
    if actual["sha256"] != recorded.get("sha256"):
        return "SHA-256 differs from its record (corrupt or foreign)", actual["sha256"]
    return None, actual["sha256"]


def library_problem(library: Path, name: str) -> Optional[str]:
    """Why ``library`` is not a complete cached build ``name`` (missing, truncated, corrupt, foreign),
    or None when the record beside it names ``name`` and matches its size and SHA-256."""
    return check_library(library, name)[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    return True


def remove_stale_builds(root: Path, name: str, max_age: float = STALE_SECONDS) -> list[Path]:
    """Remove the build directories ``<root>/<name>.<pid>.*`` of builds that no longer run (called
    with the lock of ``name`` held, so no build that takes the lock is using them).

    Parameters
    ----------
    root : Path
        The cache root.
    name : str
        The build name.
    max_age : float
        Seconds after which a directory is removed even when its process id is still in use
        (another namespace, or a reused id).

    Returns
    -------
    list of Path
        The directories removed.
    """
    removed = []
    now = time.time()
    for path in root.glob(f"{name}.*"):
        pid_text = path.name[len(name) + 1:].split(".", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else None
        try:
            if not path.is_dir():
                continue
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if age > max_age or (pid is not None and pid != os.getpid() and not _alive(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def held_lock(fd: int, on_wait: Callable[[], None]) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``fd``; yields whether another process held it first."""
    waited = False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_wait()
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:  # a file system without flock: build unserialised, as without fcntl
        log.debug("normswitch: no lock (%s); building without one", exc)
    try:
        yield waited
    finally:
        os.close(fd)  # releases the lock
