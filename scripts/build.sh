#!/usr/bin/env bash
# Configures and builds (Release) into build/. Extra arguments go to the cmake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
# Each translation unit that includes torch headers needs about 1.3 GB to compile.
mem_gb=$(awk '/MemAvailable/ {print int($2/1024/1024)}' /proc/meminfo)
if [ "$mem_gb" -lt $((jobs * 2)) ]; then jobs=$(( mem_gb / 2 > 0 ? mem_gb / 2 : 1 )); fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$jobs"
