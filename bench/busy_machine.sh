#!/usr/bin/env bash
# The training step on a quiet machine and beside a CPU load: how OpenMP's waiting policy and
# the thread count behave when other processes share the cores (issue 22, "A busy machine").
#
#   bench/busy_machine.sh [--binary PATH] [--netG unet_128] [--size 128] [--steps 8]
#                         [--load N] [--rounds R]
#
# For each round, quiet and then beside N busy-looping processes (default: one per core), it
# runs `pix2pix bench train --json` (fp32) three ways: as shipped (OpenMP's threads sleep while
# they wait: the CLI sets OMP_WAIT_POLICY=PASSIVE unless the user set one; and the thread count
# follows the cores other processes leave free, pix2pix/threads.h), the same with libgomp's own
# waiting (threads spin 300,000 rounds before sleeping: GOMP_SPINCOUNT=300000), and with
# --threads 1 (fixed). It prints each run's median step and a summary (median of the rounds).
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
binary="$(cd "$(dirname "$0")/.." && pwd)/build/pix2pix"
net=unet_128 size=128 steps=8 load=$(nproc) rounds=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --netG) net=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --load) load=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "error: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -x $binary ]] || { echo "error: $binary: not built (scripts/build.sh)" >&2; exit 2; }

loaders=()
stop_load() { for pid in "${loaders[@]}"; do kill "$pid" 2>/dev/null || true; done; loaders=(); }
trap stop_load EXIT

step() {  # env-assignments... -- extra-args...
  local envs=() args=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  args=("$@")
  env "${envs[@]}" "$binary" "${args[@]}" bench train --netG "$net" --size "$size" \
    --steps "$steps" --warmup 2 --peak-seconds 0.05 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["step_s_median"])'
}

results=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
  for machine in quiet busy; do
    if [[ $machine == busy ]]; then
      for ((i = 0; i < load; i++)); do (while :; do :; done) & loaders+=($!); done
    fi
    echo "$r $machine shipped $(step PIX2PIX_BENCH=1 --)" >> "$results"
    echo "$r $machine spinning $(step GOMP_SPINCOUNT=300000 --)" >> "$results"
    echo "$r $machine threads1 $(step PIX2PIX_BENCH=1 -- --threads 1)" >> "$results"
    stop_load
    tail -n 3 "$results" >&2
  done
done

python3 - "$results" "$net" "$size" "$load" "$(nproc)" <<'PY'
import statistics, sys
path, net, size, load, cores = sys.argv[1:6]
rows = [line.split() for line in open(path)]
print(f"training step (fp32, {net}, {size}x{size}, batch 1), seconds, median per run; "
      f"busy = beside {load} busy-looping processes on {cores} cores")
print(f"{'':10} {'shipped':>18} {'libgomp spinning':>27} {'--threads 1':>12}")
for machine in ("quiet", "busy"):
    cells = []
    for way in ("shipped", "spinning", "threads1"):
        values = [float(r[3]) for r in rows if r[1] == machine and r[2] == way]
        cells.append(f"{statistics.median(values):.3f} ({' '.join(f'{v:.3f}' for v in values)})")
    print(f"{machine:10} {cells[0]:>18} {cells[1]:>27} {cells[2]:>12}")
PY
rm -f "$results"
