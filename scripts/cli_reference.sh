#!/usr/bin/env bash
# Writes the CLI reference into docs/cli.md between the cli-reference markers: the output of
# `build/pix2pix --help-all`, `data --help-all` and `bench --help-all` (every command and flag,
# from the CLI's own help text), so the reference cannot drift from the binary.
# tests/cli/test_cli.cpp (Cli.DocsReferenceIsTheHelpOfEveryCommand) fails when they differ.
#   scripts/cli_reference.sh [BINARY]     (default build/pix2pix)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-build/pix2pix}
[[ -x $binary ]] || { echo "error: $binary: not built (scripts/build.sh)" >&2; exit 2; }
begin='<!-- cli-reference:begin (scripts/cli_reference.sh writes this block) -->'
end='<!-- cli-reference:end -->'
doc=docs/cli.md
grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" ||
  { echo "error: $doc: the cli-reference markers are missing" >&2; exit 2; }
help=$(mktemp)
trap 'rm -f "$help" "$doc.tmp"' EXIT
{
  echo '```text'
  for group in "" data bench; do
    echo "\$ pix2pix${group:+ $group} --help-all"
    "$binary" $group --help-all
  done
  echo '```'
} > "$help"
awk -v begin="$begin" -v end="$end" -v help="$help" '
  $0 == begin { print; while ((getline line < help) > 0) print line; skipping = 1; next }
  $0 == end { skipping = 0 }
  !skipping { print }' "$doc" > "$doc.tmp"
mv "$doc.tmp" "$doc"
echo "$doc: CLI reference updated from $binary --help-all"
