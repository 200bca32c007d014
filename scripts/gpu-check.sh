#!/usr/bin/env bash
# One run on a lent GPU machine (the device tool; docs/gpu.md): builds the library, the CLI and
# the `cuda` tests against the machine's PyTorch (libtorch 2.x with CUDA), runs those tests, then
# times `bench train` / `bench infer` beside PyTorch eager (bench/eager_step.py) on the same GPU.
# Needs gpu-debs/ from scripts/gpu-packages.sh carried along; writes its logs under $OUT when set
# (else gpu-out/). Sized for under 9 minutes on 16 cores.
#
#   scripts/gpu-check.sh [--skip-build] [--bench-only]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
python=${PIX2PIX_CUDA_PYTHON:-python3}
export PIX2PIX_CUDA_PYTHON=$python PYTHONUNBUFFERED=1
skip_build=0 bench_only=0
for arg in "$@"; do
  case "$arg" in
    --skip-build) skip_build=1 ;;
    --bench-only) bench_only=1 ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
log() { echo "== $*" | tee -a "$out/summary.txt"; }

log "machine"
{ grep PRETTY_NAME /etc/os-release; ldd --version | head -1; nproc; nvidia-smi -L; cmake --version | head -1
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
} 2>&1 | tee -a "$out/summary.txt"

sysroot=$PWD/build-gpu/sysroot
if (( ! skip_build )); then
  log "unpacking gpu-debs/ into $sysroot"
  mkdir -p "$sysroot"
  for deb in gpu-debs/*.deb; do dpkg-deb -x "$deb" "$sysroot" || exit 1; done
  torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  log "configure (libtorch from $torch_prefix)"
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$sysroot/usr;$sysroot/usr/lib/x86_64-linux-gnu/cmake" \
    -DCMAKE_INCLUDE_PATH="$sysroot/usr/include" -DCMAKE_LIBRARY_PATH="$sysroot/usr/lib/x86_64-linux-gnu" \
    -DProtobuf_PROTOC_EXECUTABLE="$sysroot/usr/bin/protoc" -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DPIX2PIX_WITH_ONEDNN=OFF -DPIX2PIX_WITH_GLOO=OFF -DPIX2PIX_WITH_ONNX=OFF \
    -DPIX2PIX_BUILD_EXAMPLES=OFF -DPIX2PIX_BUILD_BENCH=OFF -DPIX2PIX_TEST_PROGRAMS="test_cuda;test_device" \
    > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  log "build"
  export LD_LIBRARY_PATH=$sysroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  cmake --build build-gpu -j "$(nproc)" --target pix2pix_cli test_cuda test_device \
    > "$out/build.log" 2>&1 || { grep -m 20 -A5 "error" "$out/build.log"; exit 1; }
fi
export LD_LIBRARY_PATH=$sysroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

if (( ! bench_only )); then
  log "tests labelled cuda"
  (cd build-gpu && ctest -L cuda --output-on-failure --timeout 300) 2>&1 | tee "$out/ctest.log" | tail -25
fi

log "bench: ours and PyTorch eager, unet_256 + 70x70 D, batch 1, 256x256 (medians)"
for precision in fp32 bf16; do
  build-gpu/pix2pix bench train --device cuda --precision "$precision" --size 256 --steps 50 \
    --warmup 10 --json | tee -a "$out/bench.jsonl"
  "$python" bench/eager_step.py --device cuda --precision "$precision" --size 256 --steps 50 \
    --warmup 10 --cudnn-benchmark --tf32 | tee -a "$out/bench.jsonl"
done
for size in 256 1024; do
  build-gpu/pix2pix bench infer --device cuda --size "$size" --steps 20 --warmup 5 --json |
    tee -a "$out/bench.jsonl"
done
log "done"
