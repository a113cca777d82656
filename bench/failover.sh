#!/usr/bin/env bash
# Failover benchmark: a coordinator and three nodes as separate release
# processes with the production defaults (TLS and mutual TLS, API keys,
# encryption at rest, Raft heartbeat 200 ms, election timeout 1 s),
# replication factor 3, 8 shards. Each round SIGKILLs the node leading
# shard 0 and times, from the kill, until 64 keys spread over all shards have
# been written again (the PUTs that fail are retried until all answer 204): detection,
# election and the first successful write, for every shard the dead node
# led. The node is restarted, the cluster settles and its leaders are spread
# again (no node leads two more shards than another) before the next round.
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
source bench/cluster-lib.sh
URL="https://127.0.0.1:$PORT"
# The coordinator logs each leadership transfer with its duration.
RUST_LOG=warn,torua::coordinator::replicas=info start_coordinator coordinator "$PORT"
deadline_loop 60 test -s "$DIR/coordinator/bootstrap-admin.key"
KEY="$(cat "$DIR/coordinator/bootstrap-admin.key")"
for id in n1 n2 n3; do start_node "$id" "$URL"; done
deadline_loop 120 settled
deadline_loop 120 balanced

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
  kill -9 "${PID[$victim]}"
  t0=$(date +%s%N)
  put_all "v$r"
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  TIMES+=("$ms")
  echo "round $r: killed $victim (leader of $led of $SHARDS shards); every shard written again after $ms ms"
  deadline_loop 10 bash -c "! kill -0 ${PID[$victim]} 2>/dev/null"
  start_node "$victim" "$URL"
  deadline_loop 120 settled
  deadline_loop 120 balanced
done
printf '%s\n' "${TIMES[@]}" | sort -n | python3 -c '
import sys
t = [int(x) for x in sys.stdin.read().split()]
print(f"\nSIGKILL of a leader -> every shard writable again, {len(t)} rounds: "
      f"min {t[0]} ms, median {t[len(t)//2]} ms, max {t[-1]} ms "
      f"(including the no-fault cost of the 64 PUTs, above)")'
# Leaderships handed over between rounds (the coordinator spreads them
# again): how long each shard's requests waited.
sed 's/\x1b\[[0-9;]*m//g' "$DIR/coordinator.log" | grep -o 'took_ms=[0-9]*' | cut -d= -f2 | sort -n | python3 -c '
import sys
t = [int(x) for x in sys.stdin.read().split()]
if t:
    print(f"leadership transfers: {len(t)}, requests of the shard waited min {t[0]} ms, "
          f"median {t[len(t)//2]} ms, max {t[-1]} ms")'
