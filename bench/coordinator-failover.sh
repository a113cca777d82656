#!/usr/bin/env bash
# Coordinator failover benchmark: three coordinators (one Raft group for
# the metadata) and three nodes as separate release processes with the
# production defaults (TLS and mutual TLS, API keys, encryption at rest,
# Raft heartbeat 200 ms, election timeout 1 s), replication factor 3,
# 8 shards. Each round SIGKILLs the coordinators' leader and times, from
# the kill, through a surviving coordinator:
#   - the first successful data write (data does not pass through the
#     coordinators' group: this should not wait for an election), and
#   - the first successful metadata change (an API key made): detection,
#     election and commit through the new leader.
# The coordinator is restarted and all three agree on a leader before the
# next round.
#
#   bench/coordinator-failover.sh            # 5 rounds
#   ROUNDS=10 bench/coordinator-failover.sh
#
# Bounded: every wait has a deadline; all processes stop on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
PORT="${PORT:-18780}"
SHARDS=8
cargo build --release -q -p torua --bin torua --bin torua-coordinator --bin torua-node
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
REL="$TARGET_DIR/release"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/torua-cfailover.XXXXXX")"
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PID[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  done
  rm -rf "$DIR"
}
trap cleanup EXIT

"$REL/torua" certs init --dir "$DIR/certs" --node n1 --node n2 --node n3 > /dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/master.key"
chmod 600 "$DIR/master.key"
CA="$DIR/certs/ca.pem"
declare -A CURL
PEERS=""
for i in 1 2 3; do
  CURL[c$i]="https://127.0.0.1:$((PORT + i - 1))"
  PEERS="${PEERS:+$PEERS,}c$i=${CURL[c$i]}"
done
ALL="${CURL[c1]},${CURL[c2]},${CURL[c3]}"

start_coordinator() {
  local id=$1
  RUST_LOG=warn COORDINATOR_ADDR="${CURL[$id]#https://}" TORUA_DATA_DIR="$DIR/$id" \
    TORUA_COORDINATOR_ID="$id" TORUA_COORDINATOR_PEERS="$PEERS" \
    TORUA_SHARDS=$SHARDS TORUA_REPLICATION_FACTOR=3 \
    TORUA_TLS_CERT="$DIR/certs/coordinator.pem" TORUA_TLS_KEY="$DIR/certs/coordinator.key" TORUA_TLS_CA="$CA" \
    "$REL/torua-coordinator" >> "$DIR/$id.log" 2>&1 &
  PID[$id]=$!
  disown "${PID[$id]}"  # killed on purpose: no job report from bash
}

start_node() {
  local id=$1 port=$((PORT + 2 + ${1#n}))
  RUST_LOG=warn NODE_ID="$id" NODE_LISTEN="127.0.0.1:$port" NODE_ADDR="https://127.0.0.1:$port" \
    COORDINATOR_ADDR="$ALL" DATA_DIR="$DIR/$id" TORUA_MASTER_KEY_FILE="$DIR/master.key" \
    TORUA_TLS_CERT="$DIR/certs/node-$id.pem" TORUA_TLS_KEY="$DIR/certs/node-$id.key" TORUA_TLS_CA="$CA" \
    "$REL/torua-node" >> "$DIR/$id.log" 2>&1 &
  PID[$id]=$!
  disown "${PID[$id]}"
}

# deadline_loop SECONDS CMD...: runs CMD until it succeeds or time runs out.
deadline_loop() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out: $*" >&2; tail -20 "$DIR"/*.log >&2; exit 1; }
    sleep 0.02
  done
}

for id in c1 c2 c3; do start_coordinator "$id"; done
have_key() { cat "$DIR"/c?/bootstrap-admin.key 2>/dev/null | grep -q .; }
deadline_loop 60 have_key
KEY="$(cat "$DIR"/c?/bootstrap-admin.key 2>/dev/null | head -1)"
api() { curl -sS --max-time 5 --cacert "$CA" -H "Authorization: Bearer $KEY" "$@"; }
for id in n1 n2 n3; do start_node "$id"; done

settled() {
  api "${CURL[c1]}/shards" 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)
ok = all(s["NodeID"] and len(s["replicas"]) == 3 and
         sorted(r["role"] for r in s["replicas"]) == ["follower", "follower", "leader"]
         for s in m["shards"])
sys.exit(0 if ok else 1)'
}
deadline_loop 120 settled

# leader_of ID: the coordinators' leader as coordinator ID sees it.
leader_of() {
  api "${CURL[$1]}/ready" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["coordinators"]["leader"] or "")' 2>/dev/null || true
}
# agreed: every coordinator names the same leader.
agreed() {
  local a b c
  a=$(leader_of c1); b=$(leader_of c2); c=$(leader_of c3)
  [ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ]
}
deadline_loop 60 agreed
put_ok() { [ "$(api -X PUT --data "$2" -o /dev/null -w '%{http_code}' "$1/data/cf-key" 2>/dev/null)" = 204 ]; }
key_ok() {
  [ "$(api -X POST -H 'content-type: application/json' \
        --data "{\"name\":\"$2\",\"roles\":[\"admin\"]}" -o /dev/null -w '%{http_code}' \
        "$1/admin/apikeys" 2>/dev/null)" = 201 ]
}
# Without a fault.
t0=$(date +%s%N); deadline_loop 10 key_ok "${CURL[c1]}" base
echo "baseline: an API key is made in $((($(date +%s%N) - t0) / 1000000)) ms with no fault"

DATA=(); META=()
for r in $(seq 1 "$ROUNDS"); do
  victim=$(leader_of c1)
  survivor=c1; [ "$victim" != c1 ] || survivor=c2
  kill -9 "${PID[$victim]}"
  t0=$(date +%s%N)
  deadline_loop 60 put_ok "${CURL[$survivor]}" "v$r"
  t1=$(date +%s%N)
  deadline_loop 60 key_ok "${CURL[$survivor]}" "round-$r"
  t2=$(date +%s%N)
  DATA+=($(((t1 - t0) / 1000000))); META+=($(((t2 - t0) / 1000000)))
  echo "round $r: killed $victim; through $survivor: data write after ${DATA[-1]} ms, metadata change after ${META[-1]} ms"
  deadline_loop 10 bash -c "! kill -0 ${PID[$victim]} 2>/dev/null"
  start_coordinator "$victim"
  deadline_loop 60 agreed
done
summary() {
  printf '%s\n' "$@" | sort -n | python3 -c '
import sys
t = [int(x) for x in sys.stdin.read().split()]
print(f"min {t[0]} ms, median {t[len(t)//2]} ms, max {t[-1]} ms")'
}
echo
echo "SIGKILL of the coordinators' leader, ${ROUNDS} rounds:"
echo "  first data write through a survivor:      $(summary "${DATA[@]}")"
echo "  first metadata change through a survivor: $(summary "${META[@]}")"
