#!/usr/bin/env bash
# Side-by-side speed of our training step and inference against the PyTorch reference.
#
#   bench/compare_reference.sh REFERENCE_SCRIPT [--steps N] [--threads T] [--rounds R]
#                              [--size S] [--binary PATH] [--keep DIR]
#
# REFERENCE_SCRIPT is ../shared/bench/reference_step.py (run with /usr/bin/python3). Each round
# runs, alternating which side goes first, the reference once (it reports a training-step and an
# inference median) and ours four times: `pix2pix bench train --json` and `bench infer --json`
# in fp32 and, where the CPU has bfloat16 instructions, in bf16 (elsewhere `--precision bf16` is
# refused and the bf16 rows are left out). Every run does N timed steps after 2 warm-up steps, on T threads,
# unet_256 + 70x70 PatchGAN, batch 1, S x S. The table gives, per round and overall (the median
# of the rounds' medians), each side's median seconds and the ratio ours / reference; the
# reference runs in fp32 only, so bf16 rows compare our bf16 with its fp32. Targets: fp32 step
# and inference <= 0.75 on AVX2-only CPUs, <= 0.85 elsewhere (issue 22); bf16 step <= 0.45, bf16
# inference <= 0.5. The table names the CPU (model and the features we use). Run it on a quiet
# machine: other processes on the cores change both sides' numbers.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 ]] || usage
reference=$1
shift
steps=10 threads=$(nproc) rounds=3 size=256 keep=""
binary="$(cd "$(dirname "$0")/.." && pwd)/build/pix2pix"
while [[ $# -gt 0 ]]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "error: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -f $reference ]] || { echo "error: $reference: no such reference script" >&2; exit 2; }
[[ -x $binary ]] || { echo "error: $binary: not built (scripts/build.sh)" >&2; exit 2; }
python=/usr/bin/python3
$python -c 'import torch' 2>/dev/null || { echo "error: $python cannot import torch" >&2; exit 2; }

# bf16 only where it runs: a CPU without bfloat16 instructions refuses it (exit 2).
precisions="fp32"
if "$binary" --threads 1 bench infer --netG unet --num-downs 5 --ngf 8 --size 32 --steps 1 \
     --warmup 0 --peak-seconds 0.01 --precision bf16 --json > /dev/null 2>&1; then
  precisions="fp32 bf16"
fi
cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
cpu_features=$("$binary" --threads 1 bench infer --netG unet --num-downs 5 --ngf 8 --size 32 \
  --steps 1 --warmup 0 --peak-seconds 0.01 --json | $python -c 'import json,sys; print(json.load(sys.stdin)["cpu"])')

log=${keep:-$(mktemp -d)}
mkdir -p "$log"
results=$log/results.jsonl
: > "$results"

# One run: appends {"round", "side", "kind", "precision", "seconds", "raw"} to results.jsonl.
record() {  # round side kind precision json
  $python -c '
import json, sys
rnd, side, kind, precision, raw = sys.argv[1:6]
data = json.loads(raw)
key = {"ours/train": "step_s_median", "ours/infer": "image_s_median",
       "reference/train": "train_step_s_median", "reference/infer": "infer_s_per_batch_median"}
print(json.dumps({"round": int(rnd), "side": side, "kind": kind, "precision": precision,
                  "seconds": data[key[side + "/" + kind]], "raw": data}))' "$@" >> "$results"
}

run_reference() {  # round
  echo "round $1: reference (fp32) ..." >&2
  local out
  out=$($python "$reference" --size "$size" --steps "$steps" --threads "$threads" | tail -n 1)
  record "$1" reference train fp32 "$out"
  record "$1" reference infer fp32 "$out"
}

run_ours() {  # round
  local precision kind out
  for precision in $precisions; do
    for kind in train infer; do
      echo "round $1: ours $kind $precision ..." >&2
      out=$("$binary" --threads "$threads" bench "$kind" --size "$size" --steps "$steps" \
            --precision "$precision" --json)
      record "$1" ours "$kind" "$precision" "$out"
    done
  done
}

for ((r = 1; r <= rounds; r++)); do
  if (( r % 2 == 1 )); then run_ours "$r"; run_reference "$r"; else run_reference "$r"; run_ours "$r"; fi
done

$python - "$results" "$threads" "$size" "$steps" "$cpu_model" "$cpu_features" <<'PY'
import json, statistics, sys
path, threads, size, steps, cpu_model, cpu_features = sys.argv[1:7]
rows = [json.loads(line) for line in open(path)]
rounds = sorted({r["round"] for r in rows})
precisions = [p for p in ("fp32", "bf16") if any(r["precision"] == p and r["side"] == "ours" for r in rows)]
fp32_target = 0.85 if "avx512" in cpu_features else 0.75
targets = {("train", "fp32"): fp32_target, ("infer", "fp32"): fp32_target,
           ("train", "bf16"): 0.45, ("infer", "bf16"): 0.5}

def seconds(side, kind, precision, rnd):
    # The reference runs in fp32 only: every row compares with its fp32 numbers.
    p = precision if side == "ours" else "fp32"
    return next(r["seconds"] for r in rows
                if r["side"] == side and r["kind"] == kind and r["precision"] == p and r["round"] == rnd)

print(f"pix2pix vs PyTorch reference: unet_256 + basic D, batch 1, {size}x{size}, {threads} threads, "
      f"{steps} timed steps per run, {len(rounds)} rounds (seconds: median per run)")
print(f"CPU: {cpu_model}, {cpu_features}" + ("" if "bf16" in precisions else "; no bfloat16 instructions: fp32 only"))
print(f"{'':21} {'round':>7} {'ours s':>9} {'reference s':>12} {'ours/ref':>9}  target")
for kind, label in (("train", "training step"), ("infer", "inference/image")):
    for precision in precisions:
        ours_all, ref_all = [], []
        name = f"{label} {precision}"
        for rnd in rounds:
            o, f = seconds("ours", kind, precision, rnd), seconds("reference", kind, precision, rnd)
            ours_all.append(o)
            ref_all.append(f)
            print(f"{name:21} {rnd:>7} {o:>9.4f} {f:>12.4f} {o / f:>9.3f}")
        o, f = statistics.median(ours_all), statistics.median(ref_all)
        target = targets.get((kind, precision))
        verdict = "" if target is None else f"<= {target}: {'met' if o / f <= target else 'MISSED'}"
        print(f"{name:21} {'overall':>7} {o:>9.4f} {f:>12.4f} {o / f:>9.3f}  {verdict}")
ours_train = [r["raw"] for r in rows if r["side"] == "ours" and r["kind"] == "train"]
for precision in precisions:
    runs = [r for r in ours_train if r["precision"] == precision]
    if runs:
        print(f"ours train {precision}: {statistics.median(r['gflops_per_s'] for r in runs):.0f} GFLOP/s "
              f"({statistics.median(r['peak_fraction'] for r in runs) * 100:.0f}% of the measured "
              f"{precision} matmul peak), max RSS {max(r['max_rss_mb'] for r in runs):.0f} MiB")
PY
echo "raw results: $results" >&2
