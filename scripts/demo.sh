#!/usr/bin/env bash
# The README's first command: set up, build, and run the demo on built-in data.
# Today it shows the model zoo (architectures, parameter counts, receptive fields), writes freshly
# initialised reference-compatible weights and translates the built-in label map with them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
out=${DEMO_OUT:-runs/demo}
mkdir -p "$out"
echo "== the paper's networks: U-Net 256 generator, 70x70 PatchGAN discriminator"
build/pix2pix model --netG unet_256 --netD basic --save-G "$out/init_net_G.pth" --seed 0
echo "== the other discriminators"
for d in pixel "n_layers --n-layers-D 1" "n_layers --n-layers-D 5" image; do
  build/pix2pix model --netD $d --json | grep -E '"(net|receptive_field|parameters)"' | tail -3 | tr -d '\n '
  echo
done
echo "== translate the built-in label map with the (untrained) generator"
build/pix2pix translate --weights "$out/init_net_G.pth" --out "$out/translated" docs/demo_label.png
echo "demo outputs are in $out/"
