#!/usr/bin/env bash
# Runs the built binaries on an emulated AVX2-only x86-64 CPU: QEMU's user-mode TCG with
# `-cpu max` offers AVX2 and FMA but no AVX-512 at all, so CPUID tells our detection, oneDNN and
# ATen that there is none, and any AVX-512 instruction that leaked into a path an AVX2 CPU takes
# stops the run with SIGILL. Checks: Adam's kernels (the AVX2 form against the portable one and
# torch's Adam), the small-product scope and fallbacks, precision auto and the bf16 refusal, and the
# CLI: a training step and inference in fp32, `--precision auto` resolving to fp32, and
# `--precision bf16` refused with exit 2. About 3 minutes on 2 cores. scripts/test.sh runs it.
#   scripts/qemu_avx2_check.sh [BUILD_DIR]      (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
qemu=(qemu-x86_64 -cpu max)
command -v qemu-x86_64 > /dev/null || { echo "error: qemu-x86_64 missing (scripts/setup.sh)" >&2; exit 2; }
[[ $(uname -m) == x86_64 ]] || { echo "qemu AVX2 check: not an x86-64 machine, skipped"; exit 0; }

fail=0
check() {  # description command...
  local description=$1
  shift
  echo "== qemu (AVX2, no AVX-512): $description"
  if ! "$@"; then
    echo "FAILED: $description"
    fail=1
  fi
}

features=$("${qemu[@]}" "$build/pix2pix" --threads 1 bench infer --netG unet --num-downs 5 \
  --ngf 8 --size 32 --steps 1 --warmup 0 --peak-seconds 0.01 --precision auto --json |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["precision"], "|", d["cpu"])')
echo "emulated CPU as the binary sees it: $features"
check "the emulated CPU has AVX2 + FMA and no AVX-512; auto resolves to fp32" \
  test "$features" = "fp32 | x86_64 (avx2 fma)"
check "Adam kernels" "${qemu[@]}" "$build/tests/test_optim" --gtest_brief=1 \
  --gtest_filter='AdamKernel.*:Adam.BitwiseEqualToTorchAdam:Adam.Bf16*'
check "small products (fallbacks)" "${qemu[@]}" "$build/tests/test_small_product" --gtest_brief=1
# (not CpuFeatures.AgreeWithTheKernelsView: /proc/cpuinfo under QEMU is the host's)
check "precision auto and the bf16 refusal" "${qemu[@]}" "$build/tests/test_cpu" --gtest_brief=1 \
  --gtest_filter='CpuFeatures.DescribeNamesTheBaseline:CpuFeatures.PrecisionAutoAndRefusalFollowTheCpu'
check "a training step in fp32" "${qemu[@]}" "$build/pix2pix" --threads 2 bench train --netG unet \
  --num-downs 5 --ngf 8 --ndf 8 --size 32 --steps 1 --warmup 0 --peak-seconds 0.01
set +e
out=$("${qemu[@]}" "$build/pix2pix" train --data /nonexistent --name qemu --runs-dir \
  "$build/test_tmp/qemu_runs" --precision bf16 2>&1)
status=$?
set -e
check "--precision bf16 refused: exit 2, the message, no run directory" \
  test "$status" -eq 2 -a ! -e "$build/test_tmp/qemu_runs" -a -n "$(grep 'bfloat16 instructions' <<< "$out")"
echo "$out"
if [[ $fail -ne 0 ]]; then
  echo "qemu AVX2 check: FAILED"
  exit 1
fi
echo "qemu AVX2 check: passed"
