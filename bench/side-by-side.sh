#!/usr/bin/env bash
# Torua beside etcd, in one sitting on one machine, with one load tool (wrk):
#
#   bench/side-by-side.sh                      # every system, 10 s per run
#   D=20s SHARDS=16 bench/side-by-side.sh etcd rf3 rf3sec
#   ORIG=/path/to/go/binaries bench/side-by-side.sh orig
#   TORUA_BIN=/tmp/torua-before bench/side-by-side.sh rf3   # another build
#
# Systems (in this order unless named):
#   floor   the HTTP floor: `GET /health` on Torua's coordinator
#   etcd    etcd, 3 members (Debian's etcd-server), its JSON gateway:
#           put, and range (linearizable, etcd's default)
#   rf3     Torua, factor 3, security off (no TLS, auth or encryption)
#   rf3sec  Torua, factor 3, the default security (TLS, mutual TLS between
#           coordinator and nodes, API-key auth, encryption at rest)
#   rf1     Torua, factor 1, security off
#   orig    the original Go Torua (only with ORIG set)
#
# Every system gets: PUT c=64, PUT c=1, then (after writing all keys once)
# GET c=64 — 100-byte values, 10,000 keys, wrk with 2 threads (1 at c=1).
# Torua runs as `torua dev` (coordinator and three nodes in one process;
# SHARDS sets its shard count), with rate limits far above the load so the
# limiter's cost is measured, not its effect. CPU per write is the CPU time
# (user + system, from /proc) of every process of the system during the
# PUT c=64 run, divided by the writes it acknowledged.
#
# Prints a Markdown table of the runs and one of the ratios the fast-path
# issue tracks. Installs wrk, etcd-server and etcd-client (Debian) if
# missing. Bounded: every run stops after D; every process started is
# stopped when the script exits. Run it on a quiet machine.
set -uo pipefail
cd "$(dirname "$0")/.."
D="${D:-10s}"
SHARDS="${SHARDS:-}"
ORIG="${ORIG:-}"
export WRK_LUA_DIR="$PWD/bench/wrk"
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_packages wrk:wrk etcd:etcd-server etcdctl:etcd-client curl:curl || exit 1
# TORUA_BIN: measure this binary instead of building (to compare two builds).
if [ -z "${TORUA_BIN:-}" ]; then
  cargo build --release -q -p torua --bin torua || exit 1
fi
BIN="${TORUA_BIN:-${CARGO_TARGET_DIR:-target}/release/torua}"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/side-by-side.XXXXXX")"
echo "# raw outputs: $OUT"
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$p" 2> /dev/null
  done
  PIDS=()
}
trap stop_all EXIT

# up URL [curl args]: waits (at most 30 s) until URL answers 2xx.
up() {
  for _ in $(seq 150); do curl -fsk -o /dev/null "$@" && return 0; sleep 0.2; done
  echo "not up: $*" >&2
  return 1
}

# cpu PID...: CPU time so far of these processes and their reaped children, in ms.
cpu() {
  local total=0 p f
  local hz
  hz=$(getconf CLK_TCK)
  for p in "$@"; do
    f=$(cut -d')' -f2- "/proc/$p/stat" 2> /dev/null) || continue
    # fields after the name: state is $1, utime $12, stime $13, cutime $14, cstime $15
    total=$((total + $(echo "$f" | awk '{print $12 + $13 + $14 + $15}')))
  done
  echo $((total * 1000 / hz))
}

declare -A RPS P50 CPUW
# run KEY CONNS SCRIPT URL: one wrk run; records ops/s and p50 under KEY.
run() {
  local key=$1 c=$2 script=$3 url=$4 t=2
  [ "$c" = 1 ] && t=1
  timeout 120 wrk -t$t -c"$c" -d"$D" --latency -s "bench/wrk/$script" "$url" > "$OUT/$key.txt" 2>&1
  RPS[$key]=$(awk '/Requests\/sec/{print $2}' "$OUT/$key.txt")
  P50[$key]=$(awk '$1=="50%"{print $2}' "$OUT/$key.txt")
  local errors
  errors=$(awk '/Non-2xx|Socket errors/{print}' "$OUT/$key.txt" | tr '\n' ' ')
  printf '| %s | c=%s | %s | %s | %s |\n' "$key" "$c" "${RPS[$key]:-?}" "${P50[$key]:-?}" "${errors:-0}" | tee -a "$OUT/runs.md"
}

# puts KEY URL PID...: PUT c=64 with the CPU of PIDs measured, then PUT c=1.
puts() {
  local key=$1 script=$2 url=$3; shift 3
  local before after n
  before=$(cpu "$@")
  run "$key PUT" 64 "$script" "$url"
  after=$(cpu "$@")
  n=$(awk '/requests in/{print $1}' "$OUT/$key PUT.txt")
  [ -n "$n" ] && [ "$n" -gt 0 ] && CPUW[$key]=$(awk -v c=$((after - before)) -v n="$n" 'BEGIN{printf "%.3f", c / n}')
  echo "  CPU per write ($key): ${CPUW[$key]:-?} ms over $n writes"
  run "$key PUT1" 1 "$script" "$url"
}

# torua KEY URL ARGS...: a `torua dev` cluster with ARGS, measured.
torua() {
  local key=$1 url=$2; shift 2
  local dir="$OUT/$key"
  RUST_LOG=warn "$BIN" dev --dir "$dir" --no-truxe --port 19080 ${SHARDS:+--shards "$SHARDS"} \
    --rate-limit-ip 100000000/1s --rate-limit-principal 100000000/1s "$@" > "$OUT/$key.log" 2>&1 &
  PIDS+=($!)
  local pid=$!
  for _ in $(seq 600); do grep -q "cluster is ready" "$OUT/$key.log" && break; sleep 0.1; done
  grep -q "cluster is ready" "$OUT/$key.log" || { echo "$key did not start; see $OUT/$key.log" >&2; stop_all; return 1; }
  if [ -f "$dir/coordinator/bootstrap-admin.key" ]; then
    export TORUA_TOKEN
    TORUA_TOKEN=$(cat "$dir/coordinator/bootstrap-admin.key")
  fi
  puts "$key" torua-put.lua "$url" "$pid"
  timeout 120 wrk -t2 -c16 -d20s -s bench/wrk/torua-preload.lua "$url" > "$OUT/$key-preload.txt" 2>&1
  run "$key GET" 64 torua-get.lua "$url"
  unset TORUA_TOKEN
  stop_all
}

echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ), D=$D${SHARDS:+, $SHARDS shards}" | tee "$OUT/runs.md"
echo "| run | clients | ops/s | p50 | errors |" | tee -a "$OUT/runs.md"
echo "|---|---|---|---|---|" | tee -a "$OUT/runs.md"
for s in ${*:-floor etcd rf3 rf3sec rf1 orig}; do
  case $s in
    floor)
      RUST_LOG=warn "$BIN" dev --dir "$OUT/floor" --no-truxe --tls off --auth off --encryption off \
        --replication-factor 1 --port 19080 > "$OUT/floor.log" 2>&1 &
      PIDS+=($!)
      up http://127.0.0.1:19080/health
      timeout 60 wrk -t2 -c64 -d"$D" --latency http://127.0.0.1:19080/health > "$OUT/floor GET.txt" 2>&1
      RPS[floor GET]=$(awk '/Requests\/sec/{print $2}' "$OUT/floor GET.txt")
      echo "| floor GET /health | c=64 | ${RPS[floor GET]} | | |" | tee -a "$OUT/runs.md"
      stop_all
      ;;
    etcd)
      E="$OUT/etcd"
      mkdir -p "$E"
      cluster="m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
      epids=()
      for m in 1 2 3; do
        etcd --name m$m --data-dir "$E/m$m" --log-outputs="$E/m$m.log" --logger=zap \
          --listen-client-urls http://127.0.0.1:${m}2379 --advertise-client-urls http://127.0.0.1:${m}2379 \
          --listen-peer-urls http://127.0.0.1:${m}2380 --initial-advertise-peer-urls http://127.0.0.1:${m}2380 \
          --initial-cluster "$cluster" --initial-cluster-token bench --initial-cluster-state new > /dev/null 2>&1 &
        PIDS+=($!)
        epids+=($!)
        disown $!  # stopped on purpose: no job report from bash
      done
      up http://127.0.0.1:12379/health
      leader=""
      for _ in $(seq 50); do
        leader=$(ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379 \
          endpoint status -w simple 2> /dev/null | awk -F', ' '$5=="true"{print $1}')
        [ -n "$leader" ] && break
        sleep 0.2
      done
      echo "  etcd leader: $leader"
      ETCD_OP=put puts etcd etcd.lua "http://$leader" "${epids[@]}"
      ETCD_OP=range run "etcd GET" 64 etcd.lua "http://$leader"
      stop_all
      ;;
    rf3) torua rf3 http://127.0.0.1:19080 --tls off --auth off --encryption off --replication-factor 3 ;;
    rf3sec) torua rf3sec https://127.0.0.1:19080 --replication-factor 3 ;;
    rf1) torua rf1 http://127.0.0.1:19080 --tls off --auth off --encryption off --replication-factor 1 ;;
    orig)
      [ -x "$ORIG/torua-coordinator" ] || { echo "  (orig: set ORIG to the Go binaries' directory)"; continue; }
      COORDINATOR_ADDR=127.0.0.1:18080 HEALTH_CHECK_INTERVAL=2s "$ORIG/torua-coordinator" > "$OUT/orig-c.log" 2>&1 &
      PIDS+=($!)
      opids=($!)
      up http://127.0.0.1:18080/health
      for i in 1 2 3; do
        NODE_ID=n$i NODE_LISTEN=127.0.0.1:1808$i NODE_ADDR=http://127.0.0.1:1808$i COORDINATOR_ADDR=http://127.0.0.1:18080 \
          "$ORIG/torua-node" > "$OUT/orig-n$i.log" 2>&1 &
        PIDS+=($!)
        opids+=($!)
      done
      sleep 3
      puts orig torua-put.lua http://127.0.0.1:18080 "${opids[@]}"
      timeout 120 wrk -t2 -c16 -d20s -s bench/wrk/torua-preload.lua http://127.0.0.1:18080 > "$OUT/orig-preload.txt" 2>&1
      run "orig GET" 64 torua-get.lua http://127.0.0.1:18080
      stop_all
      ;;
    *) echo "unknown system $s" >&2 ;;
  esac
done

# ratio A B: A / B to two decimals, or ? when either is missing.
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a == "" || b == "" || b + 0 == 0) print "?"; else printf "%.2f", a / b }'; }
ms() { # wrk latency (e.g. 880.00us, 1.20ms) in ms
  awk -v v="${1:-}" 'BEGIN{ if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else if (v ~ /s$/) printf "%.3f", v * 1000; else print "" }'
}
echo
echo "| metric | measured |"
echo "|---|---|"
echo "| PUT c=64, factor 3, default security, vs etcd | $(ratio "${RPS[rf3sec PUT]:-}" "${RPS[etcd PUT]:-}")× |"
echo "| GET c=64, factor 3, default security, vs etcd's linearizable range | $(ratio "${RPS[rf3sec GET]:-}" "${RPS[etcd GET]:-}")× |"
echo "| PUT c=1 p50, factor 3, default security, vs etcd's | $(ratio "$(ms "${P50[rf3sec PUT1]:-}")" "$(ms "${P50[etcd PUT1]:-}")")× etcd's latency |"
echo "| PUT c=64 with security, vs without (factor 3) | $(ratio "${RPS[rf3sec PUT]:-}" "${RPS[rf3 PUT]:-}")× |"
echo "| GET c=64 with security, vs without (factor 3) | $(ratio "${RPS[rf3sec GET]:-}" "${RPS[rf3 GET]:-}")× |"
echo "| CPU per write, factor 3 plain / secure / etcd | ${CPUW[rf3]:-?} / ${CPUW[rf3sec]:-?} / ${CPUW[etcd]:-?} ms |"
echo "| HTTP floor (GET /health c=64) | ${RPS[floor GET]:-?}/s |"
