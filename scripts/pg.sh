# Sourced by scripts/test: a throwaway PostgreSQL for the test suite.
# pg_start (after scripts/deps.sh installed Debian's postgresql) runs
# initdb in a temporary directory (as the `postgres` user when we are root:
# the server refuses to run as root), listens on 127.0.0.1 on a free port
# and exports TRUXE_TEST_POSTGRES_URL. pg_stop stops it and deletes it.
# No system service is used or changed.

pg_start() {
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$PGBIN" ]; then
    echo "PostgreSQL is not installed (scripts/deps.sh installs it)" >&2
    return 1
  fi
  PGTMP=$(mktemp -d "${TMPDIR:-/tmp}/truxe-pg.XXXXXX")
  PG_RUNAS=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$PGTMP"
    PG_RUNAS=(runuser -u postgres --)
  fi
  "${PG_RUNAS[@]}" "$PGBIN/initdb" -D "$PGTMP/data" -U truxe -A trust --no-sync >"$PGTMP/initdb.log" 2>&1 \
    || { cat "$PGTMP/initdb.log" >&2; return 1; }
  PGPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # fsync off: a test database need not survive power loss, and it is faster.
  "${PG_RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGTMP -c fsync=off -c max_connections=500" start >/dev/null \
    || { cat "$PGTMP/server.log" >&2; return 1; }
  export TRUXE_TEST_POSTGRES_URL="postgres://truxe@127.0.0.1:$PGPORT/postgres"
  echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
}

pg_stop() {
  if [ -n "${PGTMP:-}" ]; then
    "${PG_RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGTMP"
  fi
}
