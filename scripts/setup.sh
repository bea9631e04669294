#!/usr/bin/env bash
# Creates .venv (if missing) and installs normswitch with its test dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip >/dev/null
pip install -q "torch==2.13.0" -e ".[test]"
