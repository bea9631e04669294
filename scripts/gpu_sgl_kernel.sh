#!/usr/bin/env bash
# A slim sgl-kernel 0.4.5 (torch 2.11, CUDA 13) for the GPU machine, which has no network: only
# what sgl-kernel's norms need on Hopper. Two steps:
#
#   scripts/gpu_sgl_kernel.sh pack          here: download the 383 MB wheel from the registry and
#                                           keep its Python files, the sm90 ops library (its
#                                           RMSNorm kernels among others, 19 MB) and the small
#                                           spatial_ops library, in one tar.xz under .gpu_sgl/
#                                           (ignored), with its sha256;
#   scripts/gpu_sgl_kernel.sh install [DEST] on the GPU machine, in a call that carries .gpu_sgl:
#                                           checks the hash, unpacks into DEST (/tmp/gpu_sgl) and
#                                           imports sgl_kernel from there; then
#                                           PYTHONPATH=DEST:$PYTHONPATH serves the sgl_kernel backend.
#
# Left out: FlashAttention 3 (flash_ops, 1.1 GB unpacked), FlashMLA, InfLLM-V2 and the sm100
# library; sgl-kernel imports them lazily or inside try blocks, so `import sgl_kernel` works on
# sm90 without them and their functions raise when called.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.4.5
PACK=.gpu_sgl
# unzip patterns: "*" matches across "/" as well.
KEEP=("sgl_kernel/*.py" "sgl_kernel/sm90/common_ops.abi3.so"
      "sgl_kernel/spatial_ops.abi3.so" "sglang_kernel-$VERSION.dist-info/*")

pack() {
    rm -rf "$PACK" && mkdir -p "$PACK/wheel"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d "$PACK/wheel" "sglang-kernel==$VERSION" 2>&1 | grep -v "^WARNING: Location" || true
    mkdir -p "$PACK/tree"
    unzip -q "$PACK"/wheel/sglang_kernel-*.whl "${KEEP[@]}" -d "$PACK/tree"
    tar -C "$PACK/tree" -cJf "$PACK/sgl_kernel.tar.xz" .
    (cd "$PACK" && sha256sum sgl_kernel.tar.xz > sgl_kernel.tar.xz.sha256)
    rm -rf "$PACK/wheel" "$PACK/tree"
    du -h "$PACK/sgl_kernel.tar.xz" | sed 's/^/gpu_sgl_kernel: /'
}

install() {
    local dest=${1:-/tmp/gpu_sgl}
    (cd "$PACK" && sha256sum -c sgl_kernel.tar.xz.sha256 | sed 's/^/gpu_sgl_kernel: /')
    mkdir -p "$dest"
    tar -C "$dest" -xJf "$PACK/sgl_kernel.tar.xz"
    PYTHONPATH=$dest${PYTHONPATH:+:$PYTHONPATH} python3 -c \
        "import sgl_kernel; print('gpu_sgl_kernel: sgl_kernel', sgl_kernel.__version__, 'imports from', sgl_kernel.__file__)"
}

case "${1:-}" in
    pack) pack ;;
    install) install "${2:-}" ;;
    *) echo "usage: $0 pack | install [DEST]" >&2; exit 2 ;;
esac
