# Sourced by scripts/test: a throwaway PostgreSQL for the test suite.
# pg_start (after scripts/deps.sh installed Debian's postgresql) runs
# initdb in a temporary directory (as the `postgres` user when we are root:
# the server refuses to run as root), listens on 127.0.0.1 on a free port
# and exports TRUXE_TEST_POSTGRES_URL. Like a production server, it takes
# only TLS connections (a test CA made here with openssl; clients verify the
# server's certificate, `sslmode=verify-full`) and SCRAM passwords.
# pg_stop stops it and deletes it. No system service is used or changed.
# PG_FSYNC=on keeps fsync on (benchmarks); tests run without it.

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
  local pw
  pw=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$pw" > "$PGTMP/pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PGTMP/pwfile"
  "${PG_RUNAS[@]}" "$PGBIN/initdb" -D "$PGTMP/data" -U truxe --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$PGTMP/pwfile" --no-sync >"$PGTMP/initdb.log" 2>&1 \
    || { cat "$PGTMP/initdb.log" >&2; return 1; }
  # A test CA and a server certificate for 127.0.0.1.
  (
    cd "$PGTMP" || exit 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 \
      -subj "/CN=Truxe test PostgreSQL CA" -keyout ca.key -out ca.pem 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > ext.cnf &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3 \
      -extfile ext.cnf -out server.pem 2>/dev/null
  ) || { echo "cannot make the test PostgreSQL's certificates (openssl)" >&2; return 1; }
  chmod 600 "$PGTMP/server.key"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PGTMP/server.key" "$PGTMP/server.pem"
  # Only TLS from the network, with a password.
  printf 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n' > "$PGTMP/data/pg_hba.conf"
  # A free port below the kernel's ephemeral range (as testkit::free_port
  # chooses): no outgoing connection can take it before the server binds.
  PGPORT=$(python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(10000, low), low - 10000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
PY
)
  # fsync off by default: a test database need not survive power loss.
  "${PG_RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGTMP -c fsync=${PG_FSYNC:-off} -c max_connections=500 -c ssl=on -c ssl_cert_file=$PGTMP/server.pem -c ssl_key_file=$PGTMP/server.key" start >/dev/null \
    || { cat "$PGTMP/server.log" >&2; return 1; }
  export TRUXE_TEST_POSTGRES_URL="postgres://truxe:$pw@127.0.0.1:$PGPORT/postgres?sslmode=verify-full&sslrootcert=$PGTMP/ca.pem"
  export TRUXE_TEST_POSTGRES_CA="$PGTMP/ca.pem"
  echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT (TLS only, verify-full, SCRAM)"
}

pg_stop() {
  if [ -n "${PGTMP:-}" ]; then
    "${PG_RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGTMP"
  fi
}
