#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ (clang, -DPIX2PIX_FUZZ=ON, build-fuzz/) and runs each for
# a bounded time: scripts/fuzz.sh [SECONDS] (default 60 per target). Each target starts from a
# scratch copy of its committed seeds (fuzz/corpus/<name>/), so the repository's corpus never
# grows. Exits non-zero when a target reports a crash, sanitizer error, leak, timeout or
# out-of-memory; the input that did it is left in build-fuzz/findings/<target>/ (add it to the
# corpus as a regression seed once fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-60}
scripts/setup.sh --test
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
  -DPIX2PIX_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$(nproc)"

supp="$root/scripts/sanitizer_suppressions"
# Full allocation stacks, so that lsan.supp can name the (third-party) frame it suppresses.
export ASAN_OPTIONS="fast_unwind_on_malloc=0:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"

# target:corpus folder
targets=(fuzz_image_decode:image fuzz_checkpoint_reader:checkpoint)
status=0
for entry in "${targets[@]}"; do
  target=${entry%%:*}
  corpus=${entry#*:}
  work="build-fuzz/work/$target"
  findings="build-fuzz/findings/$target"
  rm -rf "$work" "$findings"
  mkdir -p "$work" "$findings"
  cp fuzz/corpus/"$corpus"/* "$work"/
  echo "fuzz: $target for ${seconds}s"
  # -timeout: one input taking over 10 s is a finding (a hang); -rss_limit_mb also caps single
  # allocations (-malloc_limit_mb defaults to it). One process, one job: CI has two cores.
  if ! build-fuzz/"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings/" "$work" >"build-fuzz/$target.log" 2>&1; then
    echo "fuzz: $target FAILED; input(s) in $findings/:" >&2
    ls "$findings" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY)|ERROR: libFuzzer' "build-fuzz/$target.log" >&2 || true
    echo "fuzz: full log: build-fuzz/$target.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^Done' "build-fuzz/$target.log" || true
  fi
done
exit $status
