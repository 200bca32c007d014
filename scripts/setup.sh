#!/usr/bin/env bash
# Installs the Debian packages the project needs. Idempotent: when all are present it only
# checks and returns.
#   scripts/setup.sh          what building and running the tool needs (scripts/demo.sh)
#   scripts/setup.sh --test   that plus what the tests, sanitizers, fuzzers and checks need
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config
  libtorch-dev libopenblas0-openmp   # libtorch 1.13 (CPU); OpenBLAS avoids the slow ConvTranspose path
  libgloo-dev                        # headers for libtorch's c10d Gloo process group
  libdnnl-dev ocl-icd-opencl-dev     # oneDNN 2.6 (libtorch's): bf16 convolutions called directly;
                                     # its CMake package requires OpenCL (only recommended by it)
  libcli11-dev nlohmann-json3-dev libfmt-dev
  libjpeg62-turbo-dev libpng-dev libtiff-dev zlib1g-dev
  libprotobuf-dev protobuf-compiler  # TensorBoard event files (our .proto, compiled at build time)
  libcpp-httplib-dev libarchive-dev  # `data get`: downloads (HTTP/HTTPS) and unpacking
  libonnx-dev                        # `export`: ONNX's protobuf classes and model checker
)
TEST_PACKAGES=(
  libgtest-dev libgmock-dev
  python3-protobuf chromium          # tests: an independent event-file reader; the report rendered
  python3-torch python3-pil python3-numpy   # the PyTorch reference, for parity tests
  python3-skimage python3-scipy             # reference SSIM/PSNR and FID/KID values for tests
  clang libclang-rt-14-dev           # scripts/fuzz.sh: clang with libFuzzer, ASan and UBSan runtimes
  clang-format                       # scripts/format.sh --check (CI)
  qemu-user                          # scripts/qemu_avx2_check.sh: an AVX2-only CPU, emulated
  python3-onnx                       # tests: onnx.checker on exported models
)
TEST_MODE=0
case "${1:-}" in
  "") ;;
  --test) PACKAGES+=("${TEST_PACKAGES[@]}"); TEST_MODE=1 ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ $TEST_MODE -eq 1 ] && ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Test-only npm packages (tests/node/package.json): ONNX Runtime's CPU library for the export
# tests and playwright-core for the serve page test. --ignore-scripts: onnxruntime-node's install
# script would fetch GPU files; its CPU runtime is inside the package.
if [ $TEST_MODE -eq 1 ]; then
  node_dir="$(dirname "$0")/../tests/node"
  stamp="$node_dir/node_modules/.installed-lock.json"  # the lock file npm ci last installed
  if ! cmp -s "$node_dir/package-lock.json" "$stamp"; then
    echo "setup: npm ci in tests/node"
    (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund)
    cp "$node_dir/package-lock.json" "$stamp"
  fi
fi
