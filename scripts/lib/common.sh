# Shared by scripts/test and scripts/bench (sourced, not run).

# Installs the Debian packages given, as root or through sudo, without
# prompts. `apt-get update` runs once per run of the scripts, however many
# times this is called (the marker is exported to child scripts).
apt_install() {
  [ $# -gt 0 ] || return 0
  echo "$(basename "$0"): installing $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${CERTDESK_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    export CERTDESK_APT_UPDATED=1
  fi
  $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# Where PostgreSQL's server programs are: on PATH, or Debian's versioned
# folder (which is not on PATH).
pg_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
}

pg_reachable() {
  command -v psql >/dev/null 2>&1 &&
    psql "$1" -XAtqc 'SELECT 1' >/dev/null 2>&1
}

# Makes sure a PostgreSQL server answers at $CERTDESK_TEST_POSTGRES (default:
# the one on 127.0.0.1:5432, database `test`, trust auth). Where none answers,
# installs Debian's postgresql if needed and starts a throwaway cluster in a
# temporary folder on a free port (as the `postgres` user when run as root:
# initdb refuses root), and exports its address. The caller stops it with
# pg_stop (call it from an EXIT trap).
PG_TMP=""
ensure_postgres() {
  export CERTDESK_TEST_POSTGRES="${CERTDESK_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
  if pg_reachable "$CERTDESK_TEST_POSTGRES"; then
    return
  fi
  if [ -z "$(pg_bindir)" ] || ! command -v psql >/dev/null 2>&1; then
    apt_install postgresql
  fi
  if pg_reachable "$CERTDESK_TEST_POSTGRES"; then
    return # the package's own service answered
  fi
  local bin port run=()
  bin="$(pg_bindir)"
  [ -n "$bin" ] || { echo "$(basename "$0"): no PostgreSQL server programs found" >&2; return 1; }
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PG_TMP=$(mktemp -d /tmp/certdesk-pg.XXXXXX)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$PG_TMP"
    run=(runuser -u postgres --)
  fi
  echo "$(basename "$0"): starting a throwaway PostgreSQL on 127.0.0.1:$port"
  "${run[@]}" "$bin/initdb" -D "$PG_TMP/data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
    -o "-k $PG_TMP -p $port -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  export CERTDESK_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
}

pg_stop() {
  [ -n "$PG_TMP" ] || return 0
  local bin run=()
  bin="$(pg_bindir)"
  [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
  "${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_TMP"
  PG_TMP=""
}
