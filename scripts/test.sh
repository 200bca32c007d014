#!/usr/bin/env bash
# Sets up, builds and runs the default test suite (everything but the `slow` label).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
ctest --output-on-failure -LE slow -j "$(nproc)" "$@"
