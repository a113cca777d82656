# Sourced by scripts/test: installs Debian packages the test suite needs
# (the servers are started by the tests themselves, on free loopback ports,
# in temporary directories; package installs must not start system services).

ensure_packages() {
  local missing=()
  for spec in "$@"; do
    local cmd=${spec%%:*} pkg=${spec#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/"$cmd" >/dev/null 2>&1; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (installing them needs root: apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "installing ${missing[*]} (Debian packages)..."
  local policy=/usr/sbin/policy-rc.d created=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  local rc=$?
  [ -n "$created" ] && rm -f "$policy"
  return $rc
}

# Python's venv (Debian splits ensurepip into python3-venv).
ensure_python_venv() {
  python3 -c 'import ensurepip' 2>/dev/null && return 0
  # No command tells whether it is there; name one that never exists.
  ensure_packages python3-venv-is-missing:python3-venv
}
