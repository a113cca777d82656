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
source bench/cluster-lib.sh
declare -A CURL
PEERS=""
for i in 1 2 3; do
  CURL[c$i]="https://127.0.0.1:$((PORT + i - 1))"
  PEERS="${PEERS:+$PEERS,}c$i=${CURL[c$i]}"
done
ALL="${CURL[c1]},${CURL[c2]},${CURL[c3]}"
URL="${CURL[c1]}"
start_c() {
  start_coordinator "$1" "${CURL[$1]##*:}" TORUA_COORDINATOR_ID="$1" TORUA_COORDINATOR_PEERS="$PEERS"
}

for id in c1 c2 c3; do start_c "$id"; done
have_key() { cat "$DIR"/c?/bootstrap-admin.key 2>/dev/null | grep -q .; }
deadline_loop 60 have_key
KEY="$(cat "$DIR"/c?/bootstrap-admin.key 2>/dev/null | head -1)"
for id in n1 n2 n3; do start_node "$id" "$ALL"; done
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
  start_c "$victim"
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
