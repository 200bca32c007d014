#!/usr/bin/env bash
# bf16 quality check: trains the paper's model (unet_256 + 70x70 PatchGAN, 256x256, batch 1) on
# facades labels -> photos twice from the same seed, in fp32 and in bf16, for the same number of
# epochs, and prints both validation L1 / PSNR curves (one row per epoch) and their relative
# difference. Usage: bench/bf16_quality.sh [DATA=../shared/data/facades] [EPOCHS=2] [OUT=/tmp/...]
# A benchmark (minutes), never a test.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/facades}
epochs=${2:-2}
out=${3:-$(mktemp -d /tmp/pix2pix_bf16_quality.XXXXXX)}
mkdir -p "$out"
for precision in fp32 bf16; do
  build/pix2pix train --data "$data" --direction BtoA --runs-dir "$out" --name "$precision" \
    --precision "$precision" --n-epochs "$epochs" --n-epochs-decay 0 --seed 0 \
    --no-report --no-tensorboard --print-every 100 >"$out/$precision.log" 2>&1
done
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
curves = {}
for precision in ("fp32", "bf16"):
    rows = [json.loads(line) for line in open(f"{out}/{precision}/metrics.jsonl")]
    curves[precision] = [r for r in rows if r.get("kind") == "val"]
print("| epoch | fp32 val L1 | bf16 val L1 | bf16/fp32 - 1 | fp32 PSNR | bf16 PSNR |")
print("|---|---|---|---|---|---|")
for a, b in zip(curves["fp32"], curves["bf16"]):
    print(f"| {a['epoch']} | {a['val_L1']:.4f} | {b['val_L1']:.4f} | "
          f"{100 * (b['val_L1'] / a['val_L1'] - 1):+.1f}% | {a['val_PSNR']:.2f} | {b['val_PSNR']:.2f} |")
EOF
