#!/usr/bin/env bash
# Failover benchmark: a coordinator and three nodes as separate release
# processes with the production defaults (TLS and mutual TLS, API keys,
# encryption at rest, Raft heartbeat 200 ms, election timeout 1 s),
# replication factor 3, 8 shards. Each round SIGKILLs the node leading
# shard 0 and times, from the kill, until 64 keys spread over all shards have
# been written again (the PUTs that fail are retried until all answer 204): detection,
# election and the first successful write, for every shard the dead node
# led. The node is restarted and the cluster settles before the next round.
#
#   bench/failover.sh            # 5 rounds
#   ROUNDS=10 bench/failover.sh
#
# Bounded: every wait has a deadline; all processes stop on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
PORT="${PORT:-18680}"
SHARDS=8
cargo build --release -q -p torua --bin torua --bin torua-coordinator --bin torua-node
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
REL="$TARGET_DIR/release"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/torua-failover.XXXXXX")"
declare -A NODE_PID
COORD_PID=""
cleanup() {
  for p in "${NODE_PID[@]}" $COORD_PID; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${NODE_PID[@]}" $COORD_PID; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  done
  rm -rf "$DIR"
}
trap cleanup EXIT

"$REL/torua" certs init --dir "$DIR/certs" --node n1 --node n2 --node n3 > /dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/master.key"
chmod 600 "$DIR/master.key"
CA="$DIR/certs/ca.pem"
URL="https://127.0.0.1:$PORT"

RUST_LOG=warn COORDINATOR_ADDR="127.0.0.1:$PORT" TORUA_DATA_DIR="$DIR/coordinator" \
  TORUA_SHARDS=$SHARDS TORUA_REPLICATION_FACTOR=3 \
  TORUA_TLS_CERT="$DIR/certs/coordinator.pem" TORUA_TLS_KEY="$DIR/certs/coordinator.key" TORUA_TLS_CA="$CA" \
  "$REL/torua-coordinator" > "$DIR/coordinator.log" 2>&1 &
COORD_PID=$!
disown "$COORD_PID"

start_node() {
  local id=$1 port=$((PORT + ${1#n}))
  RUST_LOG=warn NODE_ID="$id" NODE_LISTEN="127.0.0.1:$port" NODE_ADDR="https://127.0.0.1:$port" \
    COORDINATOR_ADDR="$URL" DATA_DIR="$DIR/$id" TORUA_MASTER_KEY_FILE="$DIR/master.key" \
    TORUA_TLS_CERT="$DIR/certs/node-$id.pem" TORUA_TLS_KEY="$DIR/certs/node-$id.key" TORUA_TLS_CA="$CA" \
    "$REL/torua-node" >> "$DIR/$id.log" 2>&1 &
  NODE_PID[$id]=$!
  disown "${NODE_PID[$id]}"  # killed on purpose: no job report from bash
}

# deadline_loop SECONDS CMD...: runs CMD until it succeeds or time runs out.
deadline_loop() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out: $*" >&2; tail -20 "$DIR"/*.log >&2; exit 1; }
    sleep 0.05
  done
}

deadline_loop 60 test -s "$DIR/coordinator/bootstrap-admin.key"
KEY="$(cat "$DIR/coordinator/bootstrap-admin.key")"
api() { curl -sS --cacert "$CA" -H "Authorization: Bearer $KEY" "$@"; }
for id in n1 n2 n3; do start_node "$id"; done

# settled: every shard has a leader and three voters that are all leaders or followers.
settled() {
  api "$URL/shards" 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)
ok = all(s["NodeID"] and len(s["replicas"]) == 3 and
         sorted(r["role"] for r in s["replicas"]) == ["follower", "follower", "leader"]
         for s in m["shards"])
sys.exit(0 if ok else 1)'
}
deadline_loop 120 settled

# 64 keys: every one of the 8 shards holds some of them (all but certainly;
# the coordinator spreads keys by hash).
KEYS=()
for i in $(seq 0 63); do KEYS+=("fo-$i"); done

# put_all VALUE: writes every key (one curl process, one connection), again
# and again for the keys that failed, until all answered 204 (60 s at most).
put_all() {
  local left=("${KEYS[@]}") deadline=$((SECONDS + 60))
  while [ ${#left[@]} -gt 0 ]; do
    [ $SECONDS -lt $deadline ] || { echo "timed out writing ${left[*]}" >&2; exit 1; }
    local args=() k
    for k in "${left[@]}"; do args+=(-X PUT --data "$1" -o /dev/null -w '%{http_code}\n' "$URL/data/$k"); done
    mapfile -t codes < <(api "${args[@]}" 2>/dev/null || true)
    local next=() i
    for i in "${!left[@]}"; do [ "${codes[$i]:-000}" = 204 ] || next+=("${left[$i]}"); done
    left=("${next[@]}")
    [ ${#left[@]} -eq 0 ] || sleep 0.05
  done
}
put_all v0
# What writing the 64 keys costs without a fault.
t0=$(date +%s%N)
put_all base
BASE=$((($(date +%s%N) - t0) / 1000000))
echo "baseline: the 64 PUTs take $BASE ms with no fault"

TIMES=()
for r in $(seq 1 "$ROUNDS"); do
  # A write to every shard first: the coordinator then knows the current
  # leaders (it learns them from the replica that accepted a write).
  put_all "warm$r"
  victim=$(api "$URL/shards" | python3 -c 'import json,sys; print(json.load(sys.stdin)["shards"][0]["NodeID"])')
  led=$(api "$URL/shards" | python3 -c "import json,sys; print(sum(1 for s in json.load(sys.stdin)['shards'] if s['NodeID']=='$victim'))")
  kill -9 "${NODE_PID[$victim]}"
  t0=$(date +%s%N)
  put_all "v$r"
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  TIMES+=("$ms")
  echo "round $r: killed $victim (leader of $led of $SHARDS shards); every shard written again after $ms ms"
  deadline_loop 10 bash -c "! kill -0 ${NODE_PID[$victim]} 2>/dev/null"
  start_node "$victim"
  deadline_loop 120 settled
done
printf '%s\n' "${TIMES[@]}" | sort -n | python3 -c '
import sys
t = [int(x) for x in sys.stdin.read().split()]
print(f"\nSIGKILL of a leader -> every shard writable again, {len(t)} rounds: "
      f"min {t[0]} ms, median {t[len(t)//2]} ms, max {t[-1]} ms "
      f"(including the no-fault cost of the 64 PUTs, above)")'
