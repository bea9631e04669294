"""The on-disk kernel cache of ``normswitch.kernels.jit`` survives its faults: damaged, foreign or
truncated libraries are rebuilt, concurrent builders build once, killed builds leave nothing
behind, a read-only cache or a missing toolchain never crash; and ``normswitch build``.

Most tests use a tiny extension (plain Python C API, compiles in about a second) built through the
same :class:`Extension`, each load in a subprocess so that a crash shows as a signal exit code.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normswitch.kernels import cache as kernel_cache
from normswitch.kernels import jit
from normswitch.kernels.cpu import build as cpu_build

REPO = Path(__file__).resolve().parents[1]

FAKE_CPP = r"""
#include <Python.h>
#define NS_CAT(a, b) a##b
#define NS_INIT(name) NS_CAT(PyInit_, name)
#define NS_STR2(x) #x
#define NS_STR(x) NS_STR2(x)
static PyObject* answer(PyObject*, PyObject*) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, nullptr}, {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, NS_STR(TORCH_EXTENSION_NAME), nullptr, -1, methods};
PyMODINIT_FUNC NS_INIT(TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module_def); }
"""

# Loads the fake extension; prints COMPILE per cpp_extension.load call and ANSWER <42> <origin>.
# FAKE_MODE=slow holds the build lock 3 s, FAKE_MODE=hang stops inside the build; FAKE_GO is a
# file to wait for before loading (to start two processes together).
RUNNER = r"""
import logging, os, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="LOG %(message)s", stream=sys.stdout)
from torch.utils import cpp_extension
real_load = cpp_extension.load
def counting_load(**kwargs):
    print("COMPILE", kwargs["name"], flush=True)
    if os.environ.get("FAKE_MODE") == "slow":
        time.sleep(3)
    if os.environ.get("FAKE_MODE") == "hang":
        Path(kwargs["build_directory"], "half.o").write_bytes(b"\0" * 4096)
        Path(os.environ["FAKE_MARK"]).write_text("compiling")
        time.sleep(300)
    return real_load(**kwargs)
cpp_extension.load = counting_load
from normswitch.kernels.jit import Extension
ext = Extension(prefix="nsfake", csrc=Path(os.environ["FAKE_CSRC"]), sources=("fake.cpp",), headers=(),
                cache_variable="FAKE_CACHE", kind="fake", flags=dict, key=lambda: os.environ.get("FAKE_KEY", "k"),
                toolchain_problem=lambda: None)
go = os.environ.get("FAKE_GO")
while go and not os.path.exists(go):
    time.sleep(0.01)
try:
    print("ANSWER", ext.load().answer(), ext.origin, flush=True)
except Exception as exc:
    print("FAILED", exc, flush=True)
    sys.exit(3)
"""


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """(csrc dir, runner script, a pristine cache holding one build of the fake extension)."""
    if cpu_build.toolchain_problem() is not None:
        pytest.skip(cpu_build.toolchain_problem())
    base = tmp_path_factory.mktemp("fake")
    (base / "csrc").mkdir()
    (base / "csrc" / "fake.cpp").write_text(FAKE_CPP)
    (base / "runner.py").write_text(RUNNER)
    pristine = base / "pristine"
    done = _run(base, pristine)
    assert done.returncode == 0 and "ANSWER 42 built" in done.stdout, done.stdout + done.stderr
    return base, pristine


def _env(base: Path, cache: Path, **extra: str) -> dict:
    env = {**os.environ, "FAKE_CSRC": str(base / "csrc"), "FAKE_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.update(extra)
    return env


def _start(base: Path, cache: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(base / "runner.py")], cwd=REPO, env=_env(base, cache, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(base: Path, cache: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(base / "runner.py")], cwd=REPO, env=_env(base, cache, **extra),
                          capture_output=True, text=True, timeout=180)


def _entry(cache: Path) -> tuple[str, Path]:
    """(build name, library path) of the one fake build in ``cache``."""
    (library,) = cache.glob("nsfake_*/nsfake_*.so")
    return library.stem, library


def _copy(pristine: Path, to: Path) -> tuple[str, Path]:
    shutil.copytree(pristine, to)
    return _entry(to)


def _leftovers(cache: Path) -> list[Path]:
    """Build directories (``<name>.<pid>.*``) under ``cache``."""
    return [p for p in cache.glob("nsfake_*.*") if p.is_dir()]


def _damage(how: str, library: Path, name: str, pristine: Path) -> None:
    data = library.read_bytes()
    if how == "truncated":  # what crashed with SIGBUS at the first call before the record existed
        library.write_bytes(data[: len(data) // 2])
    elif how == "flipped_byte":
        library.write_bytes(data[:4000] + bytes([data[4000] ^ 0xFF]) + data[4001:])
    elif how == "no_record":
        kernel_cache.record_path(library).unlink()
    elif how == "foreign":  # another build's library and record copied in
        other = library.with_name("other.so")
        shutil.copy(library, other)
        kernel_cache.record_path(library).write_text(json.dumps(kernel_cache.library_record(other, "nsfake_other")))
        other.unlink()
    elif how == "garbage_matching_record":  # the record matches, the import fails
        library.write_bytes(os.urandom(len(data)))
        kernel_cache.record_path(library).write_text(json.dumps(kernel_cache.library_record(library, name)))


@pytest.mark.parametrize("how", ["truncated", "flipped_byte", "no_record", "foreign", "garbage_matching_record"])
def test_damaged_library_is_rebuilt(fake, tmp_path, how):
    base, pristine = fake
    cache = tmp_path / "cache"
    name, library = _copy(pristine, cache)
    _damage(how, library, name, pristine)
    done = _run(base, cache)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)  # a signal would be negative
    assert "ANSWER 42 built" in done.stdout
    assert done.stdout.count("COMPILE") == 1
    unusable = [line for line in done.stdout.splitlines() if "is unusable" in line]
    assert len(unusable) == 1 and "rebuilding" in unusable[0], done.stdout
    assert kernel_cache.library_problem(library, name) is None
    again = _run(base, cache)
    assert "ANSWER 42 cache" in again.stdout and "COMPILE" not in again.stdout, again.stdout


def test_two_builders_compile_once(fake, tmp_path):
    base, _ = fake
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [_start(base, cache, FAKE_MODE="slow", FAKE_GO=str(go)) for _ in range(2)]
    go.touch()
    outs = [p.communicate(timeout=180) for p in procs]
    stdout = "".join(out for out, _ in outs)
    assert [p.returncode for p in procs] == [0, 0], outs
    assert stdout.count("COMPILE") == 1, stdout
    assert stdout.count("ANSWER 42 ") == 2
    assert "ANSWER 42 built" in stdout and "ANSWER 42 cache" in stdout
    assert "waiting for another process building" in stdout
    assert not _leftovers(cache)


def test_killed_build_is_cleaned_up_and_retried(fake, tmp_path):
    base, _ = fake
    cache, mark = tmp_path / "cache", tmp_path / "mark"
    proc = _start(base, cache, FAKE_MODE="hang", FAKE_MARK=str(mark))
    deadline = time.monotonic() + 120
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mark.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert len(_leftovers(cache)) == 1  # the half build
    done = _run(base, cache)
    assert done.returncode == 0 and "ANSWER 42 built" in done.stdout, done.stdout + done.stderr
    assert "removed 1 stale build directories" in done.stdout
    assert not _leftovers(cache)


def test_stale_build_dirs_by_age_and_owner(tmp_path):
    name = "nsfake_0123456789abcdef"
    fresh_live = tmp_path / f"{name}.{os.getppid()}.a"
    old_live = tmp_path / f"{name}.{os.getppid()}.b"
    dead = tmp_path / f"{name}.999999999.c"
    unowned_fresh = tmp_path / f"{name}.xyz"  # the former naming, without a pid: removed by age only
    other = tmp_path / "nsfake_fedcba9876543210.999999999.d"
    for d in (fresh_live, old_live, dead, unowned_fresh, other):
        d.mkdir()
    (tmp_path / f"{name}.lock").touch()
    past = time.time() - 2 * kernel_cache.STALE_SECONDS
    os.utime(old_live, (past, past))
    removed = kernel_cache.remove_stale_builds(tmp_path, name)
    assert sorted(removed) == sorted([old_live, dead])
    assert fresh_live.exists() and unowned_fresh.exists() and other.exists() and (tmp_path / f"{name}.lock").exists()


def test_uncreatable_cache_builds_privately(fake, tmp_path):
    base, _ = fake
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    done = _run(base, blocker / "cache")
    assert done.returncode == 0 and "ANSWER 42 built, not cached" in done.stdout, done.stdout + done.stderr
    assert "cannot be written" in done.stdout and "privately" in done.stdout


def test_unlockable_cache_loads_a_good_entry_and_builds_privately_for_a_bad_one(fake, tmp_path):
    """A cache where the lock cannot be created (a directory in its place stands in for a read-only
    cache, which root could still write)."""
    base, pristine = fake
    cache = tmp_path / "cache"
    name, library = _copy(pristine, cache)
    (cache / f"{name}.lock").unlink(missing_ok=True)
    (cache / f"{name}.lock").mkdir()
    done = _run(base, cache)
    assert "ANSWER 42 cache" in done.stdout and "COMPILE" not in done.stdout, done.stdout + done.stderr
    _damage("truncated", library, name, pristine)
    done = _run(base, cache)
    assert done.returncode == 0 and "ANSWER 42 built, not cached" in done.stdout, done.stdout + done.stderr
    assert "cannot be written" in done.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_cache(fake, tmp_path):
    base, pristine = fake
    cache = tmp_path / "cache"
    name, library = _copy(pristine, cache)
    _damage("truncated", library, name, pristine)
    for path in (library.parent, cache):
        path.chmod(0o555)
    try:
        done = _run(base, cache)
    finally:
        for path in (cache, library.parent):
            path.chmod(0o755)
    assert done.returncode == 0 and "ANSWER 42 built, not cached" in done.stdout, done.stdout + done.stderr


def test_no_compiler_and_no_ninja(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(jit, "tool_path", lambda: str(empty))
    monkeypatch.setenv("CXX", "no-such-c++")
    assert cpu_build.toolchain_problem() == "no C++ compiler: 'no-such-c++' not found (install g++, or set CXX)"
    monkeypatch.setenv("CXX", sys.executable)  # a compiler that exists; ninja does not
    assert cpu_build.toolchain_problem() == "ninja is not installed (pip install ninja)"


def test_no_toolchain_falls_back_to_native_and_build_says_why(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import logging, sys, torch, normswitch as ns\n"
            "from normswitch.registry import REGISTRY\n"
            "x, w = torch.randn(4, 64, dtype=torch.bfloat16), torch.randn(64, dtype=torch.bfloat16)\n"
            "for _ in range(2):\n"
            "    torch.testing.assert_close(ns.rms_norm(x, w), ns.rms_norm(x, w, backend='native'))\n"
            "print('REASON', REGISTRY.availability('rms_norm', 'cpu', 'cpu'))\n"
            "from normswitch.cli import main\n"
            "sys.exit(main(['build']))\n")
    env = {**os.environ, "PATH": str(empty), "CXX": "no-such-c++", "NORMSWITCH_CPU_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REASON no C++ compiler: 'no-such-c++' not found" in done.stdout
    assert "cpu   unavailable: no C++ compiler" in done.stdout and "cuda  unavailable: " in done.stdout
    assert done.stderr.count("falls back to 'native'") == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def real_cpu_entry():
    """The cached entry directory of the real cpu kernels (built into the default cache if needed)."""
    if cpu_build.toolchain_problem() is not None:
        pytest.skip(cpu_build.toolchain_problem())
    cpu_build.EXTENSION.load()
    library = cpu_build.EXTENSION.library_path()
    if kernel_cache.library_problem(library, library.stem) is not None:
        pytest.skip(f"no cached cpu build to copy: {kernel_cache.library_problem(library, library.stem)}")
    return library.parent


def test_real_cpu_kernels_load_from_a_prefilled_cache(real_cpu_entry, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(real_cpu_entry, cache / real_cpu_entry.name)
    code = ("import sys, torch, normswitch as ns\n"
            "from torch.utils import cpp_extension\n"
            "cpp_extension.load = lambda **kw: sys.exit('COMPILE attempted')\n"
            "x, w = torch.randn(4, 64, dtype=torch.bfloat16), torch.randn(64, dtype=torch.bfloat16)\n"
            "torch.testing.assert_close(ns.rms_norm(x, w, backend='cpu'), ns.rms_norm(x, w, backend='native'))\n"
            "from normswitch.kernels.cpu.build import EXTENSION\n"
            "print('ORIGIN', EXTENSION.origin)\n"
            "from normswitch.cli import main\n"
            "sys.exit(main(['build']))\n")
    env = {**os.environ, "NORMSWITCH_CPU_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ORIGIN cache" in done.stdout and "cpu   loaded from cache" in done.stdout, done.stdout


def _fake_extension(base: Path, cache_variable: str, **kwargs) -> jit.Extension:
    return jit.Extension(prefix="nsfake", csrc=base / "csrc", sources=("fake.cpp",), headers=(),
                         cache_variable=cache_variable, kind="fake", flags=dict, key=lambda: "cli",
                         toolchain_problem=kwargs.pop("toolchain_problem", lambda: None), **kwargs)


def test_build_command_lines_and_exit_status(fake, tmp_path, monkeypatch, capsys):
    from normswitch import prebuild
    from normswitch.cli import main

    base, _ = fake
    broken = tmp_path / "broken"
    (broken / "csrc").mkdir(parents=True)
    (broken / "csrc" / "fake.cpp").write_text("this is not C++;\n")
    monkeypatch.setenv("NS_TEST_CACHE", str(tmp_path / "cache"))
    good = _fake_extension(base, "NS_TEST_CACHE")
    absent = _fake_extension(base, "NS_TEST_CACHE", toolchain_problem=lambda: "no such toolchain here")
    bad = _fake_extension(broken, "NS_TEST_CACHE")
    monkeypatch.setattr(prebuild, "extensions", lambda: [("good", good), ("none", absent)])
    assert main(["build"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("good  built in ") and lines[1] == "none  unavailable: no such toolchain here"
    good.reset()
    assert main(["build"]) == 0
    assert capsys.readouterr().out.startswith("good  loaded from cache")
    good.reset()
    assert main(["build", "--strict"]) == 1
    capsys.readouterr()
    monkeypatch.setattr(prebuild, "extensions", lambda: [("good", good), ("bad", bad)])
    assert main(["build"]) == 1
    out = capsys.readouterr().out
    assert "bad   failed: compile failed:" in out and "\n" not in out.split("bad   ")[1].rstrip("\n")


def test_build_help_and_verify_build(monkeypatch, capsys):
    from normswitch import prebuild, verify
    from normswitch.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["build", "--help"])
    assert exit_.value.code == 0 and "usage: normswitch build" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(prebuild, "build_all", lambda: calls.append("build") or 1)
    monkeypatch.setattr(verify, "main", lambda argv: calls.append("verify") or 0)
    assert main(["verify", "--build"]) == 1  # the failed build decides the status, verify still runs
    assert calls == ["build", "verify"]
