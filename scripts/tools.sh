#!/usr/bin/env bash
# Puts the Temporal dev server (CLI) and the Java time-skipping test server in place, built once per
# version under a cache outside the clone so that every fresh clone on this machine reuses them.
# Prints nothing on a warm cache beyond one line per tool. Writes .tools.env for the test/start code.
# `tools.sh --temporal-server` also builds the Temporal server and its SQL schema tool (the bench's
# `server` engine); without it an existing build is recorded but none is started, since nothing
# else needs it and it is the longest build of all.
set -euo pipefail

TEMPORAL_CLI_VERSION=v1.5.1
# The server the CLI above embeds (its go.mod), so that the engines compare one server version.
TEMPORAL_SERVER_VERSION=v1.29.1
TEST_SERVER_VERSION=1.31.0
CACHE=${TETHER_CACHE_DIR:-$HOME/.cache/tether}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$CACHE"

log() { printf '[tools] %s\n' "$*" >&2; }

# --- Temporal CLI (dev server with embedded Web UI), from the Go module proxy -----------------
temporal_cli() {
  if [ -n "${TEMPORAL_CLI_PATH:-}" ]; then echo "$TEMPORAL_CLI_PATH"; return; fi
  local dir="$CACHE/temporal-cli-$TEMPORAL_CLI_VERSION" bin
  bin="$dir/temporal"
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || { log "go not found: cannot build the Temporal CLI"; return 1; }
    log "building Temporal CLI $TEMPORAL_CLI_VERSION (first time only, a few minutes)"
    mkdir -p "$dir"
    (cd /tmp && GOBIN="$dir" GOFLAGS=-buildvcs=false go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION") >&2 || return 1
  fi
  echo "$bin"
}

# --- Temporal server + SQL schema tool with its Postgres schema, from the Go module proxy -----
# One directory: bin/server, bin/temporal-sql-tool, schema/postgresql/v12 (copied from the module,
# so that cleaning the Go module cache does not take the schema away from the built server).
temporal_server() {
  local dir="$CACHE/temporal-server-$TEMPORAL_SERVER_VERSION" mod="go.temporal.io/server" src
  if [ ! -x "$dir/bin/server" ] || [ ! -x "$dir/bin/temporal-sql-tool" ] || [ ! -d "$dir/schema/postgresql/v12" ]; then
    [ "${1:-}" = build ] || return 1
    command -v go >/dev/null || { log "go not found: cannot build the Temporal server"; return 1; }
    log "building Temporal server $TEMPORAL_SERVER_VERSION and its SQL tool (first time only, several minutes)"
    rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/schema/postgresql"
    (cd /tmp && GOBIN="$dir/bin" GOFLAGS=-buildvcs=false \
      go install "$mod/cmd/server@$TEMPORAL_SERVER_VERSION" "$mod/cmd/tools/sql@$TEMPORAL_SERVER_VERSION") >&2 || return 1
    mv "$dir/bin/sql" "$dir/bin/temporal-sql-tool"
    src=$(cd /tmp && go mod download -json "$mod@$TEMPORAL_SERVER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    cp -r "$src/schema/postgresql/v12" "$dir/schema/postgresql/" && chmod -R u+w "$dir/schema"
  fi
  echo "$dir"
}

# --- Java time-skipping test server, from Maven Central ---------------------------------------
test_server() {
  if [ -n "${TEMPORAL_TEST_SERVER_PATH:-}" ]; then echo "$TEMPORAL_TEST_SERVER_PATH"; return; fi
  local dir="$CACHE/test-server-$TEST_SERVER_VERSION"
  local wrapper="$dir/temporal-test-server"
  if [ ! -x "$wrapper" ]; then
    command -v mvn >/dev/null && command -v java >/dev/null || { log "mvn/java not found"; return 1; }
    log "fetching temporal-test-server $TEST_SERVER_VERSION from Maven Central (first time only)"
    mkdir -p "$dir/lib"
    sed "s/@VERSION@/$TEST_SERVER_VERSION/" "$ROOT/scripts/test-server-pom.xml" > "$dir/pom.xml"
    mvn -q -f "$dir/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir/lib" >&2 || return 1
    # Class-data sharing archive: cuts JVM start well inside the SDK's ~5 s readiness window.
    java -XX:ArchiveClassesAtExit="$dir/app.jsa" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
      -cp "$dir/lib/*" io.temporal.testserver.TestServer 0 >/dev/null 2>&1 &
    local pid=$!
    sleep 8
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # exec, so that the SDK's SIGKILL reaches the JVM itself and no orphan holds the pipes open.
    cat > "$wrapper" <<WRAP
#!/bin/sh
CDS=""
[ -f "$dir/app.jsa" ] && CDS="-XX:SharedArchiveFile=$dir/app.jsa -Xshare:auto"
exec java \$CDS -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss512k -cp "$dir/lib/*" io.temporal.testserver.TestServer "\$@"
WRAP
    chmod +x "$wrapper"
  fi
  echo "$wrapper"
}

cli=$(temporal_cli) || cli=""
ts=$(test_server) || ts=""
srv=$(temporal_server "$([ "${1:-}" = --temporal-server ] && echo build)") || srv=""
[ -n "$cli" ] && log "temporal CLI: $cli" || log "temporal CLI unavailable: the SDK will try its own download"
[ -n "$ts" ] && log "test server: $ts" || log "test server unavailable: the SDK will try its own download"
if [ -n "$srv" ]; then log "temporal server: $srv"; elif [ "${1:-}" = --temporal-server ]; then log "temporal server unavailable"; exit 1; fi
# Written whole and renamed: a test reading it meanwhile never sees it half written.
{
  echo "TEMPORAL_CLI_PATH=$cli"
  echo "TEMPORAL_TEST_SERVER_PATH=$ts"
  echo "TEMPORAL_SERVER_DIR=$srv"
} > "$ROOT/.tools.env.$$"
mv "$ROOT/.tools.env.$$" "$ROOT/.tools.env"
