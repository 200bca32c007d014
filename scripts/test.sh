#!/usr/bin/env bash
# Sets up, builds and runs the default test suite (everything but the `slow` label), then the
# tests labelled `compute` twice more: with every hand-written ISA kernel replaced by its
# portable fallback, and as on an AVX2-only CPU (docs/cpus.md), so that the paths of other CPUs
# are proven on whichever machine runs this; last, the kernels and the CLI under QEMU as a CPU
# without AVX-512 (scripts/qemu_avx2_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/build.sh
cd build
ctest --output-on-failure -LE slow -j "$(nproc)" "$@"
echo "== compute tests, portable kernels (PIX2PIX_KERNELS=portable)"
PIX2PIX_KERNELS=portable ctest --output-on-failure -L compute -LE slow -j "$(nproc)" "$@"
echo "== compute tests as on an AVX2-only CPU"
PIX2PIX_CPU_FEATURES=avx2,fma ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \
  ctest --output-on-failure -L compute -LE slow -j "$(nproc)" "$@"
cd ..
scripts/qemu_avx2_check.sh build
