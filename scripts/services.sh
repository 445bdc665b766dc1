#!/usr/bin/env bash
# Makes one backing service reachable on this machine: installs it from Debian's packages and starts
# it only when nothing answers at the given address. Idempotent; quick when the service is up.
#   services.sh redis HOST PORT
#   services.sh postgres HOST PORT USER PASSWORD DATABASE
#   services.sh rabbitmq HOST PORT
set -euo pipefail
CACHE=${TETHER_CACHE_DIR:-$HOME/.cache/tether}
DATA="$CACHE/services"
kind=$1 host=$2 port=$3

log() { printf '[%s] %s\n' "$kind" "$*" >&2; }
reachable() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
wait_up() {
  for _ in $(seq 1 "${2:-300}"); do reachable && return 0; sleep 0.2; done
  log "did not come up on $host:$port"; return 1
}
local_host() { case "$host" in localhost | 127.0.0.1 | ::1) return 0 ;; *) return 1 ;; esac; }
apt_install() {
  log "installing $* (apt)"
  bash "$(dirname "$0")/apt-install.sh" "$@"
}
as_user() { # run a command as a system user when we are root (postgres refuses to run as root)
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then su -s /bin/sh "$user" -c "$*"; else sh -c "$*"; fi
}

ensure_ready() {
  if reachable; then return 0; fi
  if ! local_host; then log "nothing answers at $host:$port and it is not this machine"; return 1; fi
  return 2
}

case "$kind" in
redis)
  ensure_ready && exit 0 || [ $? -eq 2 ] || exit 1
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$DATA/redis"
  log "starting on port $port"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$DATA/redis" \
    --appendonly yes --save "" --logfile "$DATA/redis/redis.log" --pidfile "$DATA/redis/redis.pid"
  wait_up
  ;;
postgres)
  user=$4 password=$5 db=$6
  rc=0 && ensure_ready || rc=$?
  if [ $rc -ne 0 ]; then
    [ $rc -eq 2 ] || exit 1
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bin" ]; then apt_install postgresql; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); fi
    # As root the server runs as the postgres user, who cannot enter root's home.
    if [ "$(id -u)" -eq 0 ]; then pgdata=/var/lib/tether/postgres; else pgdata="$DATA/postgres"; fi
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    mkdir -p "$pgdata" && chown postgres "$pgdata" && chmod 700 "$pgdata"
    if [ ! -f "$pgdata/PG_VERSION" ]; then
      log "initdb in $pgdata"
      as_user postgres "$bin/initdb -D '$pgdata' -U postgres --auth=trust -E UTF8" >/dev/null
    fi
    log "starting on port $port"
    as_user postgres "$bin/pg_ctl -D '$pgdata' -l '$pgdata/server.log' -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1\" start" >/dev/null
    wait_up
  fi
  # The configured role and database, made only when they are missing.
  if local_host; then
    psqlc() { PGPASSWORD= psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "$1" 2>/dev/null; }
    for _ in $(seq 1 50); do psqlc "select 1" >/dev/null && break; sleep 0.2; done
    if psqlc "select 1" >/dev/null; then
      [ "$(psqlc "select 1 from pg_roles where rolname='$user'")" = 1 ] ||
        psqlc "create role \"$user\" login superuser password '$password'" >/dev/null
      [ "$(psqlc "select 1 from pg_database where datname='$db'")" = 1 ] ||
        psqlc "create database \"$db\" owner \"$user\"" >/dev/null
    fi
  fi
  ;;
rabbitmq)
  ensure_ready && exit 0 || [ $? -eq 2 ] || exit 1
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting on port $port"
  RABBITMQ_NODE_PORT=$port RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_up 600
  ;;
*)
  log "unknown service"; exit 2 ;;
esac
