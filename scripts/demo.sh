#!/usr/bin/env bash
# The README's first command: set up, build, and run the demo on built-in data:
# the synthetic facades dataset (label maps | rendered photos) -> a short pix2pix training run at
# 128x128 -> translations of held-out label maps. Outputs go to runs/demo/ (DEMO_OUT to change).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
out=${DEMO_OUT:-runs/demo}
epochs=${DEMO_EPOCHS:-3}
rm -rf "$out"
mkdir -p "$out"
echo "== the paper's networks"
build/pix2pix model --netG unet_256 --netD basic
echo "== built-in data: synthetic facades, label map | photo"
build/pix2pix data synth --out "$out/data" --train 200 --val 20 --test 8 --size 128
build/pix2pix data check "$out/data"
echo "== training labels -> photos (unet_128, 70x70 PatchGAN, $epochs epochs)"
build/pix2pix train --data "$out/data" --runs-dir "$out" --name facades_synth --netG unet_128 \
  --load-size 143 --crop-size 128 --n-epochs $((epochs - epochs / 2)) --n-epochs-decay $((epochs / 2)) \
  --print-every 50 --sample-every 100
echo "== translating the held-out label maps (left halves of data/test/*.png)"
build/pix2pix translate --weights "$out/facades_synth/checkpoints/latest_net_G.pth" --netG unet_128 \
  --aligned --out "$out/translated" "$out"/data/test/*.png
echo "demo outputs: $out/facades_synth (checkpoints, metrics.jsonl, samples/), $out/translated"
