# Shared by the failover benchmarks (sourced, not run): release processes
# with the production defaults (TLS and mutual TLS, API keys, encryption at
# rest, Raft heartbeat 200 ms, election timeout 1 s) in a temporary
# directory that goes, with every process, when the script exits.
#
# The sourcing script sets PORT and SHARDS; it gets REL, DIR, CA, PID (name
# -> pid), start_node, deadline_loop, and, once it sets URL and KEY, api,
# settled and balanced.

cargo build --release -q -p torua --bin torua --bin torua-coordinator --bin torua-node
REL="${CARGO_TARGET_DIR:-target}/release"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/torua-bench.XXXXXX")"
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

# spawn NAME CMD...: starts a process in the background, logging to DIR/NAME.log.
spawn() {
  local name=$1; shift
  RUST_LOG="${RUST_LOG:-warn}" "$@" >> "$DIR/$name.log" 2>&1 &
  PID[$name]=$!
  disown "${PID[$name]}"  # killed on purpose: no job report from bash
}

# start_node ID COORDINATORS: node ID (n1…) on PORT+10+i, registered with COORDINATORS.
start_node() {
  local id=$1 port=$((PORT + 10 + ${1#n}))
  spawn "$id" env NODE_ID="$id" NODE_LISTEN="127.0.0.1:$port" NODE_ADDR="https://127.0.0.1:$port" \
    COORDINATOR_ADDR="$2" DATA_DIR="$DIR/$id" TORUA_MASTER_KEY_FILE="$DIR/master.key" \
    TORUA_TLS_CERT="$DIR/certs/node-$id.pem" TORUA_TLS_KEY="$DIR/certs/node-$id.key" TORUA_TLS_CA="$CA" \
    "$REL/torua-node"
}

# start_coordinator NAME PORT [ENV…]: a coordinator keeping its data in DIR/NAME.
start_coordinator() {
  local name=$1 port=$2; shift 2
  spawn "$name" env COORDINATOR_ADDR="127.0.0.1:$port" TORUA_DATA_DIR="$DIR/$name" \
    TORUA_SHARDS="$SHARDS" TORUA_REPLICATION_FACTOR=3 "$@" \
    TORUA_TLS_CERT="$DIR/certs/coordinator.pem" TORUA_TLS_KEY="$DIR/certs/coordinator.key" TORUA_TLS_CA="$CA" \
    "$REL/torua-coordinator"
}

# deadline_loop SECONDS CMD...: runs CMD until it succeeds or time runs out.
deadline_loop() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out: $*" >&2; tail -20 "$DIR"/*.log >&2; exit 1; }
    sleep 0.02
  done
}

api() { curl -sS --max-time 5 --cacert "$CA" -H "Authorization: Bearer $KEY" "$@"; }

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

# balanced: no node leads two shards more than another (the coordinator
# hands leaderships over after failovers).
balanced() {
  api "$URL/shards" 2>/dev/null | python3 -c '
import json, sys, collections
m = json.load(sys.stdin)
led = collections.Counter(s["NodeID"] for s in m["shards"])
counts = [led.get(n, 0) for n in ("n1", "n2", "n3")]
sys.exit(0 if max(counts) - min(counts) <= 1 else 1)'
}
