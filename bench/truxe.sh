#!/usr/bin/env bash
# Truxe benchmark: a release `truxe serve` on loopback (SQLite under a temp
# directory, default Argon2id cost = OWASP minimum, rate limits raised so
# they do not cap the measurement) driven by `truxe-bench`.
#
#   bench/truxe.sh                      # 16 clients, 10 s per workload
#   CLIENTS=32 SECONDS_PER=20 bench/truxe.sh
#
# Prints a Markdown table for docs/benchmarks.md; stops the server on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${CLIENTS:-16}"
SECONDS_PER="${SECONDS_PER:-10}"
PORT="${PORT:-18501}"
cargo build --release -q -p truxe --bin truxe -p bench --bin truxe-bench
DIR="$(mktemp -d "${TMPDIR:-/tmp}/truxe-bench.XXXXXX")"
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
RUST_LOG=warn PORT="$PORT" TRUXE_DATA_DIR="$DIR/data" MAX_CONCURRENT_SESSIONS=1000 \
  TRUXE_RATE_LIMIT_LOGIN_IP=100000000/1m TRUXE_RATE_LIMIT_LOGIN_ACCOUNT=100000000/1m \
  TRUXE_RATE_LIMIT_REGISTER_IP=100000/1m TRUXE_RATE_LIMIT_REFRESH_IP=100000000/1m \
  "${CARGO_TARGET_DIR:-target}/release/truxe" serve > "$DIR/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null || { cat "$DIR/serve.log"; exit 1; }
echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%d)"
OUT=$("${CARGO_TARGET_DIR:-target}/release/truxe-bench" --target "http://127.0.0.1:$PORT" --clients "$CLIENTS" --seconds "$SECONDS_PER" --json)
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
bound = rows[0]
print(f"\nArgon2id m={bound['argon2_memory_kib']} KiB, t={bound['argon2_iterations']}: one hash alone {bound['one_hash_ms']:.1f} ms "
      f"→ bound = {bound['cores']} cores ÷ {bound['one_hash_ms']:.1f} ms = {bound['formula_bound_per_sec']:.0f} logins/s; "
      f"measured hashing throughput on all cores: {bound['login_bound_per_sec']:.0f}/s (p50 {bound['hash_ms']:.1f} ms)\n")
print("| workload | clients | ops/s | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|")
for r in rows[1:]:
    print(f"| {r['workload']} | {r['clients']} | {r['ops_per_sec']:.0f} | {r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {r['errors']} |")
PY
