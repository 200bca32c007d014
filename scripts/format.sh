#!/usr/bin/env bash
# clang-format (the repository's .clang-format) over every C++ source we own.
#   scripts/format.sh           reformat in place
#   scripts/format.sh --check   change nothing; list the files that differ and fail (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format > /dev/null || { echo "error: clang-format missing (scripts/setup.sh --test)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.cpp' '*.cc' '*.h' | grep -v '^fuzz/corpus/')
case "${1:-}" in
  "") clang-format -i "${files[@]}" ;;
  --check)
    bad=()
    for f in "${files[@]}"; do
      clang-format --dry-run -Werror "$f" > /dev/null 2>&1 || bad+=("$f")
    done
    if [ ${#bad[@]} -gt 0 ]; then
      echo "error: not formatted (run scripts/format.sh): ${bad[*]}" >&2
      exit 1
    fi
    echo "format: ${#files[@]} files formatted" ;;
  *) echo "usage: scripts/format.sh [--check]" >&2; exit 2 ;;
esac
