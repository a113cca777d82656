#!/usr/bin/env bash
# Core benchmark: a 3-node `torua dev` cluster (release build, data on this
# machine's disk) driven by `torua-bench` on loopback, twice: with security
# off (`--auth off --encryption off --tls off`, the plain run) and with the
# defaults on (TLS from the client, mutual TLS coordinator↔nodes, every
# request authenticated by API key, authorized against the policy and
# rate-limited, values sealed at rest with AES-256-GCM), so the report shows
# the cost of security.
#
#   bench/run.sh                  # 64 clients, 100-byte values, 10 s per workload
#   DURATION=30s bench/run.sh
#   TARGET=http://host:port bench/run.sh   # measure another server with this API
#                                          # (TORUA_TOKEN is sent if set)
#
# Prints a Markdown table for docs/benchmarks.md. Bounded: every run stops by
# itself after DURATION; each cluster is stopped when its runs end.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CLIENTS="${CLIENTS:-64}"
PORT="${PORT:-18480}"
cargo build --release -q -p torua --bin torua -p bench --bin torua-bench
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release/torua"
LOAD="$TARGET_DIR/release/torua-bench"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/torua-bench.XXXXXX")"
stop_dev() { if [ -n "${DEV_PID:-}" ]; then kill "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" 2>/dev/null || true; DEV_PID=; fi; }
cleanup() { stop_dev; rm -rf "$DIR"; }
trap cleanup EXIT

# start_dev NAME ARGS...: a fresh cluster in $DIR/NAME; sets TARGET.
start_dev() {
  local name=$1; shift
  RUST_LOG=warn "$BIN" dev --no-truxe --port "$PORT" --dir "$DIR/$name" "$@" > "$DIR/$name.log" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 600); do
    grep -q "cluster is ready" "$DIR/$name.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "cluster is ready" "$DIR/$name.log" || { cat "$DIR/$name.log"; exit 1; }
  if [ -f "$DIR/$name/certs/ca.pem" ]; then
    TARGET="https://127.0.0.1:$PORT"; export TORUA_CA="$DIR/$name/certs/ca.pem"
  else
    TARGET="http://127.0.0.1:$PORT"; unset TORUA_CA
  fi
}

ROWS=()
# measure MODE: the three workloads against $TARGET with $TORUA_TOKEN.
measure() {
  local mode=$1
  for spec in "$CLIENTS put" "$CLIENTS get" "1 put"; do
    set -- $spec
    ROWS+=("$mode $("$LOAD" http --target "$TARGET" --duration "$DURATION" --value-size 100 --json --clients "$1" --workload "$2")")
  done
}

echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%d)"
if [ -n "${TARGET:-}" ]; then
  measure target
else
  # Limits high enough not to throttle the load: this measures their cost, not their effect.
  LIMITS=(--rate-limit-ip 100000000/1s --rate-limit-principal 100000000/1s)
  start_dev plain --auth off --encryption off --tls off "${LIMITS[@]}"
  measure plain
  stop_dev
  start_dev secure "${LIMITS[@]}"
  TORUA_TOKEN="$(cat "$DIR/secure/coordinator/bootstrap-admin.key")" measure secure
  stop_dev
fi
FSYNC=$("$LOAD" fsync --dir "$DIR" --size 4096 --rounds 500 --json)
echo
python3 - "$FSYNC" "${ROWS[@]}" <<'PY'
import json, sys
fsync = json.loads(sys.argv[1])
rows = [(r.split(" ", 1)[0], json.loads(r.split(" ", 1)[1])) for r in sys.argv[2:]]
plain = {(r["workload"], r["clients"]): r for m, r in rows if m == "plain"}
print("| security | workload | clients | ops/s | p50 ms | p99 ms | errors | throughput vs plain |")
print("|---|---|---|---|---|---|---|---|")
for mode, r in rows:
    base = plain.get((r["workload"], r["clients"]))
    cost = "" if mode == "plain" or not base else f"{(r['ops_per_sec'] / base['ops_per_sec'] - 1) * 100:+.1f} %"
    label = {"plain": "off", "secure": "TLS + mTLS, API key, RBAC, limits, encryption at rest"}.get(mode, mode)
    print(f"| {label} | {r['workload'].upper()} | {r['clients']} | {r['ops_per_sec']:.0f} | "
          f"{r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {r['errors']} | {cost} |")
print(f"\nwrite 4 KiB + fdatasync on the same disk: p50 {fsync['p50_us']/1000:.3f} ms, "
      f"p99 {fsync['p99_us']/1000:.3f} ms, mean {fsync['mean_us']/1000:.3f} ms ({fsync['rounds']} rounds)")
PY
