# Sourced by the device scripts (gpu_run.sh, device_profile.sh): $OUT created, the wheels carried
# in .whl/ (Liger-Kernel, fla-core) installed to /tmp/site, the repository on PYTHONPATH.
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
