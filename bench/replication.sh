#!/usr/bin/env bash
# Replication benchmark: the same closed-loop load (torua-bench) against
#   - Torua, replication factor 1 (each shard a Raft group of one),
#   - Torua, replication factor 3 (each shard a group on all three nodes),
#   - etcd, a 3-member cluster (Debian's etcd-server), through its v3 JSON
#     gateway, writes and linearizable reads sent to the leader,
# one after another in the same run, on this machine's disk and loopback.
# Torua runs as `torua dev` (coordinator and three nodes in one process)
# with security off, as etcd runs here (plain HTTP, no auth), so the
# comparison is replication against replication.
#
#   bench/replication.sh                 # 64 clients, 100-byte values, 10 s per workload
#   DURATION=30s CLIENTS=32 bench/replication.sh
#
# Prints a Markdown table for docs/benchmarks.md. Bounded: every load run
# stops by itself after DURATION; every server is stopped when its runs end.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CLIENTS="${CLIENTS:-64}"
PORT="${PORT:-18580}"
ETCD_BASE="${ETCD_BASE:-23790}"
# shellcheck source=../scripts/deps.sh
source scripts/deps.sh
ensure_packages etcd:etcd-server
cargo build --release -q -p torua --bin torua -p bench --bin torua-bench
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release/torua"
LOAD="$TARGET_DIR/release/torua-bench"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/torua-repl-bench.XXXXXX")"
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() { stop_all; rm -rf "$DIR"; }
trap cleanup EXIT

# until_ok URL [SECONDS]: polls until URL answers 2xx.
until_ok() {
  local deadline=$((SECONDS + ${2:-60}))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $1" >&2; return 1; }
    sleep 0.1
  done
}

ROWS=()
# measure LABEL API TARGET
measure() {
  for spec in "$CLIENTS put" "$CLIENTS get" "1 put"; do
    set -- "$1" "$2" "$3" $spec
    # Exits 1 when some requests failed; the errors column shows how many.
    ROWS+=("$("$LOAD" http --api "$2" --target "$3" --duration "$DURATION" --value-size 100 \
      --json --label "$1" --clients "$4" --workload "$5" || true)")
  done
}

torua() {
  local rf=$1 dir="$DIR/torua-rf$1"
  RUST_LOG=warn "$BIN" dev --no-truxe --port "$PORT" --dir "$dir" --replication-factor "$rf" \
    --auth off --encryption off --tls off > "$dir.log" 2>&1 &
  PIDS+=($!)
  local deadline=$((SECONDS + 120))
  until grep -q "cluster is ready" "$dir.log" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { cat "$dir.log"; exit 1; }
    sleep 0.1
  done
  measure "torua-rf$rf" torua "http://127.0.0.1:$PORT"
  stop_all
}

etcd_cluster() {
  local peers="" i
  for i in 1 2 3; do peers+="${peers:+,}e$i=http://127.0.0.1:$((ETCD_BASE + 10 + i))"; done
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$DIR/etcd-e$i" \
      --listen-client-urls "http://127.0.0.1:$((ETCD_BASE + i))" \
      --advertise-client-urls "http://127.0.0.1:$((ETCD_BASE + i))" \
      --listen-peer-urls "http://127.0.0.1:$((ETCD_BASE + 10 + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_BASE + 10 + i))" \
      --initial-cluster "$peers" --initial-cluster-state new \
      --initial-cluster-token torua-bench --log-level error > "$DIR/etcd-e$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 1 2 3; do until_ok "http://127.0.0.1:$((ETCD_BASE + i))/health"; done
  # The leader's client URL: each member's status names the leader's id.
  local leader=""
  local deadline=$((SECONDS + 60))
  while [ -z "$leader" ]; do
    for i in 1 2 3; do
      local url="http://127.0.0.1:$((ETCD_BASE + i))"
      if curl -fsS -X POST -d '{}' "$url/v3/maintenance/status" 2>/dev/null |
        python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s.get("leader") and s["leader"]==s["header"]["member_id"] else 1)'; then
        leader=$url
      fi
    done
    [ -n "$leader" ] || { [ $SECONDS -lt $deadline ] || { echo "etcd elected no leader" >&2; exit 1; }; sleep 0.2; }
  done
  measure etcd-3 etcd "$leader"
  stop_all
}

echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%d); $(etcd --version | head -1)"
torua 1
torua 3
etcd_cluster
echo
python3 - "${ROWS[@]}" <<'PY'
import json, sys
rows = [json.loads(r) for r in sys.argv[1:]]
names = {"torua-rf1": "Torua, factor 1", "torua-rf3": "Torua, factor 3", "etcd-3": "etcd, 3 members"}
print("| system | workload | clients | ops/s | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {names.get(r['label'], r['label'])} | {r['workload'].upper()} | {r['clients']} | "
          f"{r['ops_per_sec']:.0f} | {r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {r['errors']} |")
PY
