#!/usr/bin/env bash
# Truxe beside the machine's own bounds, in one sitting: a release
# `truxe serve` on loopback (SQLite under a temp directory; then the same on
# a throwaway PostgreSQL with fsync on; default Argon2id cost = OWASP
# minimum; rate limits raised so they do not cap the measurement).
#
#   bench/truxe.sh                       # 64 clients, 10 s per run
#   CLIENTS=16 SECONDS_PER=20 bench/truxe.sh
#   PG=0 bench/truxe.sh                  # SQLite only
#   TRUXE_BIN=/tmp/truxe-before bench/truxe.sh   # another build
#
# Bounds, measured in the same run:
#   HTTP floor   wrk on `GET /health` of the same server, before and after
#                each wrk run; each run vs the mean of the floors around it
#   Argon2id     hashes/s on all cores at the server's cost (truxe-bench),
#                before the first login run and after each of the three;
#                each run vs the mean of the bounds on either side of it
#   fdatasync    write 4 KiB + fdatasync in the data directory's file system
# Then: logins, refreshes and verified `GET /auth/me` (truxe-bench, one
# account per client), `/auth/me`, JWKS and discovery under wrk (same tool
# as the floor), and the latency of `/auth/me` and refresh at a fixed RATE
# (open loop, 1,000/s by default, each after 1 s at that rate that is not
# measured: the machine's ramp from idle); the refreshes again with EdDSA
# signing.
# Installs wrk and PostgreSQL (Debian) if
# missing; stops every process it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${CLIENTS:-64}"
SECONDS_PER="${SECONDS_PER:-10}"
RATE="${RATE:-1000}"
PORT="${PORT:-18501}"
PG="${PG:-1}"
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_packages wrk:wrk curl:curl initdb:postgresql openssl:openssl
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
if [ -z "${TRUXE_BIN:-}" ]; then
  cargo build --release -q -p truxe --bin truxe
fi
cargo build --release -q -p bench --bin truxe-bench --bin torua-bench
BIN="${CARGO_TARGET_DIR:-target}/release"
TRUXE="${TRUXE_BIN:-$BIN/truxe}"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/truxe-bench.XXXXXX")"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop
  rm -rf "$DIR"
}
trap cleanup EXIT

# serve NAME PORT [VAR=VALUE...]: starts a Truxe and waits until it is ready.
serve() {
  local name=$1 port=$2
  shift 2
  env RUST_LOG=warn PORT="$port" MAX_CONCURRENT_SESSIONS=1000 \
    TRUXE_RATE_LIMIT_LOGIN_IP=100000000/1m TRUXE_RATE_LIMIT_LOGIN_ACCOUNT=100000000/1m \
    TRUXE_RATE_LIMIT_REGISTER_IP=100000/1m TRUXE_RATE_LIMIT_REFRESH_IP=100000000/1m \
    "$@" "$TRUXE" serve > "$DIR/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$DIR/$name.log" >&2
  return 1
}
# load NAME URL [wrk args]: wrk, 2 threads, CLIENTS connections.
load() {
  local name=$1 url=$2
  shift 2
  timeout 120 wrk -t2 -c"$CLIENTS" -d"${SECONDS_PER}s" --latency "$@" "$url" > "$DIR/wrk-$name.txt" 2>&1
}

URL="http://127.0.0.1:$PORT"
serve sqlite "$PORT" TRUXE_DATA_DIR="$DIR/data"
echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ)"
"$BIN/torua-bench" fsync --dir "$DIR" --size 4096 --rounds 300 --json > "$DIR/fsync.json"
TOKEN=$(curl -fs "$URL/api/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"wrk-$$@example.com\",\"password\":\"Bench-Password-9\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["tokens"]["access_token"])')
# The floor before and after each wrk run: it drifts between runs about as
# much as a run's margin, so each run is set against the floors around it.
load floor1 "$URL/health"
load me "$URL/auth/me" -H "Authorization: Bearer $TOKEN"
load floor2 "$URL/health"
load jwks "$URL/.well-known/jwks.json"
load floor3 "$URL/health"
load discovery "$URL/.well-known/openid-configuration"
load floor4 "$URL/health"
"$BIN/truxe-bench" --target "$URL" --clients "$CLIENTS" --seconds "$SECONDS_PER" --json > "$DIR/sqlite.jsonl"
"$BIN/truxe-bench" --target "$URL" --clients 64 --seconds "$SECONDS_PER" --json --no-bound \
  --rate "$RATE" --workloads me,refresh > "$DIR/rate.jsonl"
# The same refreshes signed with Ed25519 instead of RS256 (the default, as
# the original Truxe and OpenID Connect's default ID-token algorithm): how
# much of a refresh is its RSA signature.
serve eddsa "$((PORT + 2))" TRUXE_DATA_DIR="$DIR/data-eddsa" JWT_ALGORITHM=EdDSA
"$BIN/truxe-bench" --target "http://127.0.0.1:$((PORT + 2))" --clients "$CLIENTS" \
  --seconds "$SECONDS_PER" --json --no-bound --workloads refresh > "$DIR/eddsa.jsonl"
"$BIN/truxe-bench" --target "http://127.0.0.1:$((PORT + 2))" --clients 64 --seconds "$SECONDS_PER" \
  --json --no-bound --rate "$RATE" --workloads refresh >> "$DIR/eddsa.jsonl"
if [ "$PG" = 1 ]; then
  PG_FSYNC=on pg_start > /dev/null
  serve postgres "$((PORT + 1))" DATABASE_URL="$TRUXE_TEST_POSTGRES_URL" TRUXE_DATA_DIR="$DIR/data-pg"
  "$BIN/truxe-bench" --target "http://127.0.0.1:$((PORT + 1))" --clients "$CLIENTS" \
    --seconds "$SECONDS_PER" --json --no-bound --workloads refresh > "$DIR/postgres.jsonl"
fi
python3 - "$DIR" "$CLIENTS" <<'PY'
import json, os, re, sys
d, clients = sys.argv[1], sys.argv[2]
def wrk(name):
    t = open(f"{d}/wrk-{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    def q(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\b", t, re.M)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    n = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    return rps, q(50), q(99), n
def lines(f):
    p = f"{d}/{f}"
    return [json.loads(l) for l in open(p) if l.strip()] if os.path.exists(p) else []
fs = json.load(open(f"{d}/fsync.json"))
sq = lines("sqlite.jsonl")
# The Argon2id bound is measured before the first login run and after
# each one; each run is set against the mean of the bounds on either side.
bounds = [r for r in sq if "login_bound_per_sec" in r]
runs = {r["workload"]: r for r in sq if "workload" in r}
order = [r for r in sq if "login_bound_per_sec" in r or r.get("workload") == "login"]
logins = [(r, (order[i - 1]["login_bound_per_sec"] + order[i + 1]["login_bound_per_sec"]) / 2)
          for i, r in enumerate(order) if r.get("workload") == "login" and 0 < i < len(order) - 1]
bound = dict(bounds[0], login_bound_per_sec=sum(b["login_bound_per_sec"] for b in bounds) / len(bounds),
             one_hash_ms=sum(b["one_hash_ms"] for b in bounds) / len(bounds))
around = " / ".join(f"{b['login_bound_per_sec']:.0f}" for b in bounds)
rate = lines("rate.jsonl")
pg = {r["workload"]: r for r in lines("postgres.jsonl")}
eddsa = lines("eddsa.jsonl")
floors = [wrk(f"floor{i}") for i in range(1, 5)]
floor = tuple(sum(f[k] for f in floors) / len(floors) for k in range(3)) + (sum(f[3] for f in floors),)
fsync_per_s = 1e6 / max(fs["p50_us"], 1)
print(f"\nBounds: HTTP floor (wrk, `GET /health`, c={clients}) {floor[0]:,.0f}/s "
      f"(mean of {' / '.join(f'{f[0]:,.0f}' for f in floors)}, before and after each wrk run); "
      f"Argon2id m={bound['argon2_memory_kib']} KiB t={bound['argon2_iterations']} on {bound['cores']} cores "
      f"{bound['login_bound_per_sec']:.0f} hashes/s (before and after each login run: {around}; one alone {bound['one_hash_ms']:.1f} ms); "
      f"write 4 KiB + fdatasync p50 {fs['p50_us']/1000:.3f} ms (≈ {fsync_per_s:,.0f}/s one after another)\n")
print("| workload | tool | clients | ops/s | p50 ms | p99 ms | errors | vs its bound |")
print("|---|---|---|---|---|---|---|---|")
def row(name, tool, c, ops, p50, p99, errs, vs):
    print(f"| {name} | {tool} | {c} | {ops:,.0f} | {p50:.2f} | {p99:.2f} | {errs} | {vs} |")
row("`GET /health` (HTTP floor, mean)", "wrk", clients, *floor, "1.00× floor")
for i, (name, label) in enumerate([("me", "verified `GET /auth/me`"), ("jwks", "`GET /.well-known/jwks.json`"),
                                   ("discovery", "`GET /.well-known/openid-configuration`")]):
    r = wrk(name)
    around = (floors[i][0] + floors[i + 1][0]) / 2
    row(label, "wrk", clients, *r, f"{r[0]/around:.2f}× floor ({around:,.0f}/s around it)")
def bench_row(label, r, vs):
    row(label, "truxe-bench", r["clients"], r["ops_per_sec"], r["p50_us"]/1000, r["p99_us"]/1000, r["errors"], vs)
for i, (r, b) in enumerate(logins, 1):
    bench_row(f"login (Argon2id verify), run {i}", r, f"{r['ops_per_sec']/b:.3f}× Argon2id ({b:.0f}/s around it)")
if "refresh" in runs:
    bench_row("refresh, SQLite", runs["refresh"], f"{runs['refresh']['ops_per_sec']/fsync_per_s:.2f}× serial fdatasync")
if "refresh" in pg:
    bench_row("refresh, PostgreSQL (fsync on)", pg["refresh"], f"{pg['refresh']['ops_per_sec']/fsync_per_s:.2f}× serial fdatasync")
if "me" in runs:
    bench_row("verified `GET /auth/me`", runs["me"], f"{runs['me']['ops_per_sec']/floor[0]:.2f}× floor (other tool)")
for r in rate:
    bench_row(f"{r['workload']} (open loop)", r, "p99 goal < 5 ms")
for r in eddsa:
    loop = " (open loop)" if " at " in r["workload"] else ", SQLite"
    bench_row(f"{r['workload']}{loop}, EdDSA signing", r, "same, `JWT_ALGORITHM=EdDSA`")
if logins:
    ratios = [r["ops_per_sec"] / b for r, b in logins]
    each = " / ".join(f"{x:.3f}" for x in ratios)
    print(f"\nLogins against the Argon2id bound around each run: {each}; "
          f"median {sorted(ratios)[len(ratios) // 2]:.3f}× (goal ≥ 0.95×)")
PY
