#!/usr/bin/env bash
# Memory of a node holding many keys (issue 19: one node holding 1 M keys
# of 100 B, resident set against the raw data): a coordinator and three
# nodes as separate release processes with the production defaults (TLS,
# mutual TLS, API keys, encryption at rest), replication factor 3, 8
# shards, so every node holds every key. `torua-bench` writes KEYS keys
# once (64 clients), then reads for a second; the script prints each
# node's resident set (VmRSS) and peak (VmHWM) before and after, and its
# data directory's size.
#
#   bench/memory.sh                # 1,000,000 keys
#   KEYS=100000 bench/memory.sh
#
# Bounded: every wait has a deadline; all processes stop on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${KEYS:-1000000}"
PORT="${PORT:-18780}"
SHARDS=8
source bench/cluster-lib.sh
cargo build --release -q -p bench --bin torua-bench
URL="https://127.0.0.1:$PORT"
# Rate limits far above the load: since writes share Raft entries, one
# client's preload outruns the default 5,000/s per principal.
start_coordinator coordinator "$PORT" \
  TORUA_RATE_LIMIT_IP=100000000/1s TORUA_RATE_LIMIT_PRINCIPAL=100000000/1s
deadline_loop 60 test -s "$DIR/coordinator/bootstrap-admin.key"
KEY="$(cat "$DIR/coordinator/bootstrap-admin.key")"
for id in n1 n2 n3; do start_node "$id" "$URL"; done
deadline_loop 120 settled

status() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/${PID[$1]}/status"; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
declare -A BEFORE
for id in n1 n2 n3; do BEFORE[$id]=$(status "$id" VmRSS); done
start=$SECONDS
"$REL/torua-bench" http --target "$URL" --ca "$CA" --token "$KEY" --workload get \
  --keys "$KEYS" --value-size 100 --clients 64 --duration 1s --label memory | tail -1
echo "wrote $KEYS keys in $((SECONDS - start)) s"
# bench-00000000: 14-byte keys.
raw=$((KEYS * (14 + 100)))
echo
echo "| node | RSS before | RSS after | peak | data dir | raw data | RSS after / raw |"
echo "|---|---|---|---|---|---|---|"
for id in n1 n2 n3; do
  after=$(status "$id" VmRSS)
  peak=$(status "$id" VmHWM)
  disk=$(du -sk "$DIR/$id" | cut -f1)
  printf '| %s | %s MiB | %s MiB | %s MiB | %s MiB | %s MiB | %s× |\n' "$id" \
    "$(mib "${BEFORE[$id]}")" "$(mib "$after")" "$(mib "$peak")" "$(mib "$disk")" \
    "$(mib $((raw / 1024)))" "$(awk -v a="$after" -v r="$raw" 'BEGIN{printf "%.2f", a * 1024 / r}')"
done
