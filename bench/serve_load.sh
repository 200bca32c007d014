#!/usr/bin/env bash
# `pix2pix serve` under load: requests/s and p50/p99 latency for 256x256 images at 1, 2 and 8
# concurrent clients, beside `pix2pix bench infer`'s per-image time of the same generator, in
# fp32 and (where the CPU computes in bfloat16) bf16.
#
#   bench/serve_load.sh [--binary PATH] [--netG unet_256] [--requests N] [--workers W]
#
# The generator has random weights (`pix2pix model --save-G`): speed does not depend on them.
# The clients are a small Python program (http.client, one keep-alive connection per client,
# each posting the same PNG; every answer is checked to be a 200 PNG) sharing the machine's
# cores with the server, as any load generator on the same machine does. A benchmark (minutes),
# never a test. Overhead = p50 at one client / bench infer's median - 1.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
binary="$(cd "$(dirname "$0")/.." && pwd)/build/pix2pix"
net=unet_256
requests=40
workers=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --netG) net=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ -x "$binary" ]] || { echo "no pix2pix binary at $binary (build it, or --binary)" >&2; exit 2; }

work=$(mktemp -d /tmp/pix2pix_serve_load.XXXXXX)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$binary" model --netG "$net" --save-G "$work/G.pth" >/dev/null
# A 256x256 input: the label half of a facades pair when the data is there, else a pattern.
facades="$(cd "$(dirname "$0")/../.." && pwd)/shared/data/facades/val/1.jpg"
python3 - "$work/input.png" "$facades" <<'EOF'
import struct, sys, zlib
facades = sys.argv[2]
try:
    from PIL import Image
    Image.open(facades).convert("RGB").crop((256, 0, 512, 256)).save(sys.argv[1])
except Exception:  # no Pillow or no data: a synthetic 256x256 RGB PNG
    rows = b"".join(b"\0" + bytes(((x * 3 + y * 5 + c * 40) % 256) for x in range(256)
                                  for c in range(3)) for y in range(256))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(sys.argv[1], "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
EOF

cat >"$work/load.py" <<'EOF'
import http.client, sys, threading, time
port, clients, requests, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = open(path, "rb").read()
latencies, failures, lock = [], [], threading.Lock()
def client(n):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for _ in range(n):
        start = time.perf_counter()
        connection.request("POST", "/v1/translate", body, {"Content-Type": "image/png"})
        response = connection.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        with lock:
            if response.status == 200 and data.startswith(b"\x89PNG"):
                latencies.append(elapsed)
            else:
                failures.append(response.status)
# Warm-up: one request per client (first-call allocations, connection set-up).
threads = [threading.Thread(target=client, args=(1,)) for _ in range(clients)]
[t.start() for t in threads]; [t.join() for t in threads]
latencies.clear()
per_client = max(1, requests // clients)
start = time.perf_counter()
threads = [threading.Thread(target=client, args=(per_client,)) for _ in range(clients)]
[t.start() for t in threads]; [t.join() for t in threads]
wall = time.perf_counter() - start
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
print(f"{len(latencies) / wall:.2f} {pick(0.50):.1f} {pick(0.99):.1f} {len(failures)}")
EOF

precisions=(fp32)
if "$binary" bench infer --netG "$net" --size 256 --steps 1 --warmup 0 --peak-seconds 0 \
     --precision bf16 >/dev/null 2>&1; then
  precisions+=(bf16)
fi

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
echo "generator: $net, 256x256, $workers worker(s), $(nproc) cores, $requests requests per row"
echo
echo "| precision | clients | requests/s | p50 ms | p99 ms | bench infer ms | p50 / infer |"
echo "|---|---|---|---|---|---|---|"
for precision in "${precisions[@]}"; do
  infer_s=$("$binary" bench infer --netG "$net" --size 256 --steps 10 --warmup 2 \
              --peak-seconds 0 --precision "$precision" --json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["image_s_median"])')
  infer_ms=$(python3 -c "print(f'{$infer_s * 1000:.1f}')")
  "$binary" serve --netG "$net" --weights "$work/G.pth" --precision "$precision" --port 0 \
    --workers "$workers" --max-queue 64 >"$work/serve.log" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's|^serving http://127.0.0.1:\([0-9]*\)/$|\1|p' "$work/serve.log")
    [[ -n "$port" ]] && break
    sleep 0.1
  done
  [[ -n "$port" ]] || { cat "$work/serve.log" >&2; exit 1; }
  for clients in 1 2 8; do
    read -r rate p50 p99 failed < <(python3 "$work/load.py" "$port" "$clients" "$requests" \
                                      "$work/input.png")
    [[ "$failed" == 0 ]] || echo "warning: $failed requests failed" >&2
    ratio=$(python3 -c "print(f'{$p50 / $infer_ms:.3f}')")
    echo "| $precision | $clients | $rate | $p50 | $p99 | $infer_ms | $ratio |"
  done
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
done
