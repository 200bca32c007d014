#!/usr/bin/env bash
# The reproduction study (docs/reproduction.md): each claim about pix2pix that users read, trained
# from a fixed seed on a real dataset, tested on its held-out split in the paper's mode and in
# eval mode, and judged with eval's metrics.
#
#   bench/reproduce.sh DATA OUT [--steps N] [--size S] [--seeds K] [--only NAMES] [--binary PATH]
#
# DATA: an aligned dataset whose B half is the input (facades: labels -> photos, --direction
# BtoA). Defaults: what docs/reproduction.md reports, 2000 steps at 64x64 (unet_64, batch 1) and
# the main setting with seeds 0..2 for the run-to-run spread (about 55 minutes on 2 cores; --seeds
# 1 for one). --only runs a comma-separated subset of
# the experiments (names below). Writes OUT/runs/<experiment>/ (each run), OUT/results.json,
# OUT/results.md (one table per claim) and OUT/grids/<experiment>.png (the first test images:
# input | output | target, one row each). A study of minutes to hours: never a test (a short
# --steps smoke is the slow test Reproduce.SmokeRunsEndToEnd).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 2 ]] || usage
data=$1 out=$2
shift 2
steps=2000 size=64 seeds=3 only="" binary="$(cd "$(dirname "$0")/.." && pwd)/build/pix2pix"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ -x "$binary" ]] || { echo "error: no pix2pix binary at $binary (build it, or --binary)" >&2; exit 2; }
[[ -d "$data/train" ]] || { echo "error: $data: no train/ split" >&2; exit 2; }
"$binary" data check "$data" > /dev/null
mkdir -p "$out/runs" "$out/grids"

# The paper's jitter scaled to the size (286 -> 256), the U-Net whose depth fits the size.
common=(--data "$data" --direction BtoA --runs-dir "$out/runs" --netG "unet_$size"
        --load-size $(( size * 286 / 256 )) --crop-size "$size" --max-steps "$steps"
        --print-every 50 --sample-every 0 --save-every-epochs 0 --no-tensorboard --no-report)
# The 286x286 discriminator needs 256x256 inputs; below, the whole-image discriminator stands in.
if (( size >= 256 )); then patch286=(--netD n_layers --n-layers-D 5); else patch286=(--netD image); fi

# name | claim group | flags beyond the paper's defaults (lambda 100, 70x70 PatchGAN, transposed)
experiments=()
for (( s = 0; s < seeds; s++ )); do experiments+=("main_seed$s|main|--seed $s"); done
experiments+=(
  "lambda10|lambda|--lambda-l1 10"
  "lambda1000|lambda|--lambda-l1 1000"
  "resize_conv|upsampling|--upsampling resize-conv"
  "lr_d_half|lr_d|--lr-d-ratio 0.5"
  "patch1|patch|--netD pixel"
  "patch16|patch|--netD n_layers --n-layers-D 1"
  "patch286|patch|${patch286[*]}"
  "l1_only|loss|--no-gan"
  "cgan_only|loss|--lambda-l1 0"
  "l1_gan|loss|--unconditional-d"
)

selected() { [[ -z "$only" || ",$only," == *",$1,"* ]]; }

for entry in "${experiments[@]}"; do
  IFS='|' read -r name group flags <<< "$entry"
  selected "$name" || continue
  run="$out/runs/$name"
  echo "== $name ($group): $flags"
  rm -rf "$run"
  # shellcheck disable=SC2086  # flags are words
  "$binary" train "${common[@]}" --name "$name" $flags > "$out/runs/$name.log" 2>&1 ||
    { echo "error: training $name failed (see $out/runs/$name.log)" >&2; exit 1; }
  for mode in train-mode eval; do
    "$binary" test --run "$run" "--$mode" > /dev/null
    cp "$run/results/test_latest/summary.json" "$run/test_$mode.json"
    cp "$run/results/test_latest/metrics.csv" "$run/test_$mode.csv"
  done
done

# Peak memory of one training step: fp32 against bf16 (where the CPU has it), U-Net depth 6/7/8.
memory="$out/memory.jsonl"
: > "$memory"
if selected memory; then
  precisions=(fp32)
  "$binary" bench train --netG unet_256 --size 256 --steps 1 --warmup 0 --peak-seconds 0 \
    --precision bf16 > /dev/null 2>&1 && precisions+=(bf16)
  for precision in "${precisions[@]}"; do
    for depth in 6 7 8; do
      echo "== memory: $precision, unet depth $depth at 256x256"
      "$binary" bench train --netG unet --num-downs "$depth" --size 256 --steps 3 --warmup 1 \
        --peak-seconds 0 --precision "$precision" --json |
        python3 -c "import json,sys; j=json.load(sys.stdin); j['study']={'precision':'$precision','depth':$depth}; print(json.dumps(j))" \
        >> "$memory"
    done
  done
fi

/usr/bin/python3 "$(dirname "$0")/reproduce_report.py" "$out" "$steps" "$size"
