#!/usr/bin/env bash
# Builds the tests that cover image I/O, datasets, transforms, the loader and checkpoint reading
# with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/, -DPIX2PIX_SANITIZE=ON) and runs
# them (ctest -LE slow). Any sanitizer report fails the test that triggered it. Extra arguments go
# to ctest. Suppressions, for uninstrumented third-party code only, are in
# scripts/sanitizer_suppressions/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh --test
programs="test_image_io;test_dataset;test_transforms;test_loader;test_pytorch_import"
jobs=$(nproc)
# Each translation unit that includes torch headers needs about 1.3 GB to compile (more with ASan).
mem_gb=$(awk '/MemAvailable/ {print int($2/1024/1024)}' /proc/meminfo)
if [ "$mem_gb" -lt $((jobs * 2)) ]; then jobs=$(( mem_gb / 2 > 0 ? mem_gb / 2 : 1 )); fi
# Set before building too: gtest_discover_tests runs each test program once at build time.
supp="$root/scripts/sanitizer_suppressions"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
# None of these tests runs the CLI: only the library and the five programs are built.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DPIX2PIX_SANITIZE=ON \
  -DPIX2PIX_BUILD_BENCH=OFF -DPIX2PIX_BUILD_EXAMPLES=OFF -DPIX2PIX_TEST_BUILD_CLI=OFF \
  -DPIX2PIX_TEST_PROGRAMS="$programs" \
  >/dev/null
# shellcheck disable=SC2086  # one target per program
cmake --build build-asan -j "$jobs" --target ${programs//;/ }

cd build-asan
ctest --output-on-failure -LE slow -j "$jobs" "$@"
