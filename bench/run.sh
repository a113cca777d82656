#!/usr/bin/env bash
# Core benchmark: a 3-node `torua dev` cluster (release build, data on this
# machine's disk) driven by `torua-bench` over HTTP on loopback.
#
#   bench/run.sh                  # 64 clients, 100-byte values, 10 s per workload
#   DURATION=30s bench/run.sh
#   TARGET=http://host:port bench/run.sh   # measure another server with this API
#
# Prints a Markdown table for docs/benchmarks.md. Bounded: every run stops by
# itself after DURATION; the cluster is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CLIENTS="${CLIENTS:-64}"
PORT="${PORT:-18480}"
cargo build --release -q -p torua --bin torua -p bench --bin torua-bench
BIN=target/release/torua
LOAD=target/release/torua-bench
DIR="$(mktemp -d "${TMPDIR:-/tmp}/torua-bench.XXXXXX")"
cleanup() { [ -n "${DEV_PID:-}" ] && kill "$DEV_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

if [ -z "${TARGET:-}" ]; then
  RUST_LOG=warn "$BIN" dev --no-truxe --port "$PORT" --dir "$DIR/data" > "$DIR/dev.log" 2>&1 &
  DEV_PID=$!
  TARGET="http://127.0.0.1:$PORT"
  for _ in $(seq 1 300); do
    curl -fs "$TARGET/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "$TARGET/ready" >/dev/null || { cat "$DIR/dev.log"; exit 1; }
fi

run() { "$LOAD" http --target "$TARGET" --duration "$DURATION" --value-size 100 --json "$@"; }
echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%d)"
PUT=$(run --clients "$CLIENTS" --workload put)
GET=$(run --clients "$CLIENTS" --workload get)
PUT1=$(run --clients 1 --workload put)
FSYNC=$("$LOAD" fsync --dir "$DIR" --size 4096 --rounds 500 --json)
echo
echo "| workload | clients | ops/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
for row in "$PUT" "$GET" "$PUT1"; do
  python3 - "$row" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['workload'].upper()} | {r['clients']} | {r['ops_per_sec']:.0f} | {r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {r['errors']} |")
PY
done
python3 - "$FSYNC" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"\nwrite 4 KiB + fdatasync on the same disk: p50 {r['p50_us']/1000:.3f} ms, p99 {r['p99_us']/1000:.3f} ms, mean {r['mean_us']/1000:.3f} ms ({r['rounds']} rounds)")
PY
