#!/usr/bin/env bash
# Configures and builds (Release) into build/.
#   scripts/build.sh [CMAKE_ARGS...]          the library, CLI, examples, tests and benchmarks
#   scripts/build.sh --cli [CMAKE_ARGS...]    the library and the CLI only (scripts/demo.sh)
# Extra arguments go to the cmake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=(-DPIX2PIX_BUILD_TESTS=ON -DPIX2PIX_BUILD_BENCH=ON -DPIX2PIX_BUILD_EXAMPLES=ON)
target=()
if [ "${1:-}" = "--cli" ]; then
  shift
  # Tests and benchmarks off in the cache too, so that configuring needs no test package.
  parts=(-DPIX2PIX_BUILD_TESTS=OFF -DPIX2PIX_BUILD_BENCH=OFF -DPIX2PIX_BUILD_EXAMPLES=OFF)
  target=(--target pix2pix_cli)
fi
jobs=$(nproc)
# Each translation unit that includes torch headers needs about 1.3 GB to compile.
mem_gb=$(awk '/MemAvailable/ {print int($2/1024/1024)}' /proc/meminfo)
if [ "$mem_gb" -lt $((jobs * 2)) ]; then jobs=$(( mem_gb / 2 > 0 ? mem_gb / 2 : 1 )); fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${parts[@]}" "$@" >/dev/null
cmake --build build -j "$jobs" "${target[@]}"
