#!/usr/bin/env bash
# The README's first command: set up (the Debian packages the tool needs, not the test ones),
# build the CLI alone, and run `pix2pix demo`: the
# built-in synthetic facades dataset -> a time-budgeted pix2pix training run -> translations of
# the held-out test split -> runs/demo/facades_synth/report.html. Extra arguments go to
# `pix2pix demo` (e.g. --minutes 10, --out DIR); an earlier demo's outputs are replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --cli
build/pix2pix demo --force "$@"
