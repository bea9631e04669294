"""``normswitch build``: compile and cache normswitch's own kernels ahead of time (the C++ ``cpu``
kernels where a C++ compiler and ninja exist, the ``cuda`` kernels where CUDA torch, nvcc and a GPU
exist), e.g. in an image build, so that the first request does not pay the build.

Prints one line per extension: built in X s, loaded from the cache, unavailable here (and why), or
failed. Exit status 0 when every extension that can be built here is built or cached, else 1.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, TextIO

from .kernels.jit import Extension


def extensions() -> list[tuple[str, Extension]]:
    """The extensions ``normswitch build`` builds, as (backend name, extension)."""
    from .kernels.cpu.build import EXTENSION as cpu
    from .kernels.cuda.build import EXTENSION as cuda

    return [("cpu", cpu), ("cuda", cuda)]


def _one_line(text: str, head: int = 160, tail: int = 440) -> str:
    """``text`` on one line; when long, its start (what failed) and end (a compiler's error comes last)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= head + tail else f"{flat[:head]} ... {flat[-tail:]}"


def build_one(ext: Extension) -> tuple[bool, str]:
    """Build or load one extension.

    Parameters
    ----------
    ext : Extension
        The extension.

    Returns
    -------
    tuple of (bool, str)
        Whether the outcome is acceptable (built and cached, loaded from the cache, or unavailable
        here), and the line that describes it.
    """
    try:
        reason = ext.toolchain_problem() if ext.module is None else None
        if reason is not None:
            return True, f"unavailable: {_one_line(reason)}"
        ext.load()
    except Exception as exc:  # BuildError with the compiler's tail, or anything a broken toolchain raises
        return False, f"failed: {_one_line(ext.failure or f'{type(exc).__name__}: {exc}')}"
    try:
        where = str(ext.library_path())
    except Exception:  # the cache path is for the message only
        where = "?"
    if ext.origin == "cache":
        return True, f"loaded from cache ({ext.seconds:.2f} s): {where}"
    if ext.origin == "built":
        return True, f"built in {ext.seconds:.1f} s: {where}"
    return False, f"built in {ext.seconds:.1f} s but not cached ({where} cannot be written; see the warning)"


def build_all(out: TextIO = sys.stdout, strict: bool = False) -> int:
    """Build or load every extension, one line each on ``out``.

    Parameters
    ----------
    out : TextIO
        Where the lines go.
    strict : bool
        Also fail when an extension is unavailable here.

    Returns
    -------
    int
        The exit status: 0 when every extension that can be built here is built or cached, else 1.
    """
    status = 0
    try:
        todo = extensions()
    except Exception as exc:  # a package too broken to import its build modules
        print(f"cannot import the kernel build modules: {type(exc).__name__}: {exc}", file=out)
        return 1
    for label, ext in todo:
        ok, line = build_one(ext)
        if not ok or (strict and line.startswith("unavailable")):
            status = 1
        print(f"{label:5} {line}", file=out, flush=True)
    return status


def main(argv: Optional[list[str]] = None) -> int:
    """``normswitch build [--strict]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="normswitch build", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strict", action="store_true",
                        help="also exit 1 when an extension cannot be built on this machine")
    args = parser.parse_args(argv)
    return build_all(strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
