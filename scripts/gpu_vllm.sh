#!/usr/bin/env bash
# vLLM 0.26.0 for CUDA on the GPU machine, which has torch 2.11.0+cu130 and no network
# (see the notes "vLLM for CUDA on the GPU machine"). Two steps:
#
#   scripts/gpu_vllm.sh pack               here: download vLLM 0.26.0 and the runtime dependencies
#                                          the GPU machine lacks, strip what a plain run does not
#                                          need, and split one tar.xz into chunks of < 60 MiB under
#                                          .gpu_vllm/NN/ (ignored), with its sha256;
#   scripts/gpu_vllm.sh install NN [DEST]  on the GPU machine, once per chunk, in consecutive calls
#                                          that each carry .gpu_vllm/NN: copies the chunk to DEST
#                                          (/tmp/gpu_vllm, which survives while the machine stays
#                                          warm); after the last chunk it reassembles the tar.xz,
#                                          checks the hash and installs the wheels and this
#                                          checkout of normswitch into DEST/site.
#   scripts/gpu_vllm.sh env [DEST]         prints the exports every later command needs
#                                          (eval "$(scripts/gpu_vllm.sh env)");
#   scripts/gpu_vllm.sh test [PYTEST ARGS] on the GPU machine after the install: the GPU
#                                          integration tests (markers gpu and vllm), their log
#                                          and a tar of every engine's log and JSON under $OUT;
#   scripts/gpu_vllm.sh bench SECONDS      on the GPU machine after the install: benchmarks/vllm_e2e.py
#                                          (dense model, then DeepSeek-OCR; variants E2E_VARIANTS,
#                                          default on,off,triton; modes E2E_MODES, default
#                                          compile,eager) within SECONDS, tables and engine logs
#                                          under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VERSION=0.26.0
PACK=.gpu_vllm
CHUNK=59M
# Runtime dependencies of vLLM 0.26 that the GPU machine lacks: enough for `from vllm import LLM`
# and the OpenAI server (installed with --no-deps).
DEPS="pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5
msgspec==0.23.0 pyzmq==27.3.0 cbor2==6.3.0 cachetools==8.0.2 pybase64==1.5.1
partial_json_parser==0.2.1.1.post7 openai==3.57.0 httpx2==2.16.2 httpcore2==2.16.2
truststore==0.10.5 jiter==0.19.0 sniffio==1.3.1 openai_harmony==0.0.8 fastapi==0.136.3
starlette==1.10.0 llguidance==1.7.6 xgrammar==0.2.7 apache_tvm_ffi==0.1.10 uvicorn==0.55.0
watchfiles==1.3.0 prometheus_fastapi_instrumentator==8.1.0 model_hosting_container_standards==0.1.16
jmespath==1.1.0 python_multipart==0.0.34 blake3==1.0.11 setproctitle==1.3.8 depyf==0.20.0
astor==0.8.1 dill==0.4.1 compressed_tensors==0.17.0 loguru==0.7.3 python_json_logger==4.2.0
typing_extensions==4.16.0 anyio==4.16.0 idna==3.20 h11==0.16.0 annotated_doc==0.0.7"
# Members of the vLLM wheel a plain run on Hopper does not load: FlashAttention 2 (sm90 uses FA3,
# and the import is guarded), the Rust front end, DeepGEMM's compiled modules.
STRIP=("vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so" "vllm/vllm-rs" "vllm/third_party/deep_gemm/_C.cpython-31*")

pack() {
    local work=$PACK/wheels
    rm -rf "$PACK" && mkdir -p "$work"
    local platforms=()
    for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_26 \
             manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
        platforms+=(--platform "${p}_x86_64")
    done
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d "$work" "vllm==$VLLM_VERSION" $DEPS
    local wheel
    wheel=$(ls "$work"/vllm-"$VLLM_VERSION"-*.whl)
    zip -q -d "$wheel" "${STRIP[@]}"
    # The wheel stored without compression, so that xz sees the CUDA binaries' raw bytes: their
    # fat binaries shrink about 14x under xz against 4x under the wheel's deflate.
    local unpacked=$PACK/unpacked
    mkdir -p "$unpacked" && unzip -q "$wheel" -d "$unpacked" && rm -f "$wheel"
    (cd "$unpacked" && zip -q -0 -r -X "$OLDPWD/$wheel" .)
    rm -rf "$unpacked"
    (cd "$work" && tar -cf - ./*.whl | xz -T0 -6 > ../wheels.tar.xz)
    rm -rf "$work"
    (cd "$PACK" && sha256sum wheels.tar.xz > wheels.tar.xz.sha256 && split -b "$CHUNK" -d wheels.tar.xz part-)
    for part in "$PACK"/part-*; do
        local n=${part##*-}
        mkdir -p "$PACK/$n" && mv "$part" "$PACK/$n/part-$n" && cp "$PACK/wheels.tar.xz.sha256" "$PACK/$n/"
    done
    ls "$PACK"/[0-9]* -d | wc -l > "$PACK/chunks"
    for d in "$PACK"/[0-9]*; do cp "$PACK/chunks" "$d/"; done
    rm -f "$PACK/wheels.tar.xz"
    echo "gpu_vllm: $(ls -d "$PACK"/[0-9]* | wc -l) chunks under $PACK/ ($(du -sh "$PACK" | cut -f1)):"
    ls -l "$PACK"/[0-9]*/part-*
}

install() {
    local n=$1 dest=${2:-/tmp/gpu_vllm}
    mkdir -p "$dest/parts"
    cp "$PACK/$n/part-$n" "$PACK/$n/wheels.tar.xz.sha256" "$PACK/$n/chunks" "$dest/parts/"
    local have total
    have=$(ls "$dest"/parts/part-* | wc -l)
    total=$(cat "$dest/parts/chunks")
    echo "gpu_vllm: chunk $n in $dest/parts ($have of $total)"
    [ "$have" -ge "$total" ] || return 0
    cat "$dest"/parts/part-* > "$dest/wheels.tar.xz"
    (cd "$dest" && sha256sum -c parts/wheels.tar.xz.sha256 | sed 's/^/gpu_vllm: /')
    mkdir -p "$dest/wheels"
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1], 'r:xz').extractall(sys.argv[2], filter='data')" \
        "$dest/wheels.tar.xz" "$dest/wheels"
    rm -f "$dest/wheels.tar.xz"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$dest/site" "$dest"/wheels/*.whl
    # normswitch itself, so that its vllm.general_plugins entry point exists for vLLM.
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade \
        --target "$dest/site" .
    PYTHONPATH=$dest/site python3 -c "import vllm, normswitch; print('gpu_vllm: vllm', vllm.__version__, 'with normswitch')"
}

env_line() {
    local dest=${1:-/tmp/gpu_vllm}
    echo "export PYTHONPATH=$dest/site VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1"
}

run_tests() {
    eval "$(env_line)"
    local out=${OUT:-/tmp/out}
    mkdir -p "$out"
    export NORMSWITCH_GPU_RESULTS=$out/gpu-vllm PYTHONUNBUFFERED=1
    local rc=0
    python3 -m pytest -q -p no:cacheprovider -m "gpu and vllm" -rfE -s integration_tests/test_gpu_vllm.py "$@" \
        > "$out/pytest.log" 2>&1 || rc=$?
    tail -60 "$out/pytest.log"
    tar -czf "$out/gpu-vllm.tgz" -C "$out" gpu-vllm && rm -rf "$out/gpu-vllm"
    return $rc
}

run_bench() {
    local seconds=$1
    eval "$(env_line)"
    local out=${OUT:-/tmp/out}
    mkdir -p "$out/e2e"
    # Two thirds for the dense model (16 layers of hidden 4096), the rest
    # for DeepSeek-OCR; each run's last repetition starts 45 s before its share ends.
    local dense=$((seconds * ${E2E_DENSE_PERCENT:-67} / 100)) ocr
    # Variants and modes: E2E_VARIANTS (default on,off,triton; ab: both arms in one engine, eager
    # mode only), E2E_MODES (default compile,eager);
    # E2E_DENSE_PERCENT: the dense model's share of the time; E2E_ARGS: more benchmarks/vllm_e2e.py
    # options for both models (for example --pin same, --workloads decode,image).
    E2E_VARIANTS=${E2E_VARIANTS:-on,off,triton} E2E_MODES=${E2E_MODES:-compile,eager}
    ocr=$((seconds - dense))
    timeout "$dense" python3 -m benchmarks.vllm_e2e --model dense --layers 16 --variants "$E2E_VARIANTS" \
        --modes "$E2E_MODES" --reps 40 --kv-cache-gib 4 --budget-s $((dense - 45)) --logs "$out/e2e" \
        --markdown "$out/e2e-dense.md" --json "$out/e2e-dense.json" ${E2E_ARGS:-} || true
    timeout "$ocr" python3 -m benchmarks.vllm_e2e --model ocr --variants "$E2E_VARIANTS" --modes "$E2E_MODES" \
        --reps 40 --kv-cache-gib 2 --budget-s $((ocr - 45)) --logs "$out/e2e" \
        --markdown "$out/e2e-ocr.md" --json "$out/e2e-ocr.json" ${E2E_ARGS:-} || true
    tar -czf "$out/e2e-logs.tgz" -C "$out" e2e && rm -rf "$out/e2e"
}

case "${1:-}" in
    pack) pack ;;
    install) install "${2:?chunk number}" "${3:-}" ;;
    env) env_line "${2:-}" ;;
    test) shift; run_tests "$@" ;;
    bench) run_bench "${2:?seconds}" ;;
    *) echo "usage: $0 pack | install NN [DEST] | env [DEST] | test [PYTEST ARGS] | bench SECONDS" >&2; exit 2 ;;
esac
