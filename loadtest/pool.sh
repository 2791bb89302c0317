#!/usr/bin/env bash
# pool: the max_connections collapse, then the configuration that holds.
#
# Starts a throw-away PostgreSQL 15 cluster (its own data directory under a temp dir, its own
# port, max_connections=100), runs REPLICAS maru servers against it with the Redis cache
# pointed at a closed loopback port (so every WhoAmI takes a pooled connection), and runs
# `maru-load --scenario pool` three times:
#   1. overcommit  — pools summing to 2 × max_connections: the failure mode must show
#   2. holds, LOW users  — pools sized by the rule in loadtest/README.md
#   3. holds, HIGH users — same pools, 5× the users: zero errors, ≥ 80 % of run 2's throughput
# Everything it starts is stopped on exit (trap), and the cluster directory is removed.
#
# usage: loadtest/pool.sh [--smoke] [--out DIR]
#   --smoke   2 replicas, debug binaries, a few seconds per phase, 20 and 150 users (150 is
#             more than max_connections, so the overcommitted pools must run the cluster out
#             of connections); the throughput ratio is not checked
# env: MARU_BIN, LOAD_BIN (binaries; default release, debug with --smoke), PG_BIN
#      (/usr/lib/postgresql/15/bin), REPLICAS, POOL_PG_PORT (55432), POOL_GRPC_PORT (50361),
#      POOL_ADMIN_PORT (9761), USERS_LOW, USERS_HIGH, DURATION, KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--smoke] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

if [ "$SMOKE" = 1 ]; then
  PROFILE=debug; REPLICAS=${REPLICAS:-2}; USERS_LOW=${USERS_LOW:-20}; USERS_HIGH=${USERS_HIGH:-150}; DURATION=${DURATION:-3s}
  # Debug binaries on a busy CI runner can be several times slower than a release build: a
  # longer acquire timeout keeps the holds phases from failing on the runner's speed (the
  # overcommit phase still fails: its pools cannot open the connections at all).
  ACQUIRE_MS=${ACQUIRE_MS:-5000}
else
  PROFILE=release; REPLICAS=${REPLICAS:-4}; USERS_LOW=${USERS_LOW:-100}; USERS_HIGH=${USERS_HIGH:-500}; DURATION=${DURATION:-30s}
  ACQUIRE_MS=${ACQUIRE_MS:-2000}
fi
MARU_BIN=${MARU_BIN:-target/$PROFILE/maru}
LOAD_BIN=${LOAD_BIN:-target/$PROFILE/maru-load}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MAX_CONNECTIONS=100
# Connections the rule keeps out of the pools: PostgreSQL's superuser_reserved_connections
# (3) plus room for migrations, psql, backups and monitoring (10).
RESERVED=13
OVER_POOL=$(( 2 * MAX_CONNECTIONS / REPLICAS ))
HOLD_POOL=$(( (MAX_CONNECTIONS - RESERVED) / REPLICAS ))

command -v curl >/dev/null || { echo "pool.sh: needs curl" >&2; exit 2; }
for bin in "$MARU_BIN" "$LOAD_BIN" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/psql"; do
  [ -x "$bin" ] || { echo "pool.sh: $bin not found (build with: cargo build ${PROFILE/debug/} --bin maru -p maru-load)" >&2; exit 2; }
done

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while in_use "$p"; do p=$((p + 1)); done; echo "$p"; }
PG_PORT=$(free_port "${POOL_PG_PORT:-55432}")
DEAD_REDIS_PORT=$(free_port 16399) # nothing listens there: the cache is bypassed

TMP=$(mktemp -d /tmp/maru-pool.XXXXXX)
OUT=${OUT:-$TMP/reports}
mkdir -p "$OUT"
PIDS=()

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
  local rc=$?
  stop_replicas
  if [ -f "$TMP/data/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$TMP/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "pool.sh: kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}

stop_replicas() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== throw-away cluster on 127.0.0.1:$PG_PORT (max_connections=$MAX_CONNECTIONS) in $TMP"
if [ "$(id -u)" = 0 ]; then chown postgres "$TMP"; fi
as_postgres "$PG_BIN/initdb" -D "$TMP/data" -U postgres -A trust -E UTF8 --no-sync >"$TMP/initdb.log" 2>&1 \
  || { cat "$TMP/initdb.log" >&2; exit 2; }
as_postgres "$PG_BIN/pg_ctl" -D "$TMP/data" -l "$TMP/postgres.log" -w -t 60 \
  -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$TMP -c max_connections=$MAX_CONNECTIONS -c fsync=off -c synchronous_commit=off" \
  start >/dev/null
DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/maru"
JWT_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)

# start_replicas POOL_SIZE
start_replicas() {
  local pool=$1 r grpc admin
  TARGETS=()
  for r in $(seq 0 $((REPLICAS - 1))); do
    grpc=$(free_port $(( ${POOL_GRPC_PORT:-50361} + r * 2 )))
    admin=$(free_port $(( ${POOL_ADMIN_PORT:-9761} + r * 2 )))
    MARU__GRPC__LISTEN=127.0.0.1:$grpc MARU__ADMIN__LISTEN=127.0.0.1:$admin \
      MARU__DATABASE__URL=$DB_URL MARU__DATABASE__MAX_CONNECTIONS=$pool MARU__DATABASE__MIN_CONNECTIONS=0 \
      MARU__DATABASE__ACQUIRE_TIMEOUT_MS=$ACQUIRE_MS MARU__REDIS__URL=redis://127.0.0.1:$DEAD_REDIS_PORT \
      MARU__RATE_LIMIT__ENABLED=false MARU__GRPC__MAX_CONNECTIONS_PER_ADDRESS=0 MARU__AUTH__JWT_KEY=$JWT_KEY MARU__LOG__ACCESS_LOG=false MARU__LOG__LEVEL=warn \
      "$MARU_BIN" serve >>"$TMP/maru-$r.log" 2>&1 &
    PIDS+=($!)
    TARGETS+=(--target "http://127.0.0.1:$grpc")
    # The first replica migrates; wait for it before starting the others.
    for _ in $(seq 1 120); do
      curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
      kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "pool.sh: replica $r died:" >&2; tail -5 "$TMP/maru-$r.log" >&2; exit 2; }
      sleep 0.5
    done
  done
  echo "   $REPLICAS replicas × pool $pool = $((REPLICAS * pool)) connections (max_connections $MAX_CONNECTIONS), acquire timeout ${ACQUIRE_MS} ms"
}

# load NAME EXPECT USERS [extra maru-load flags]
load() {
  local name=$1 expect=$2 users=$3
  shift 3
  "$LOAD_BIN" --scenario pool --pool-expect "$expect" --users "$users" --duration "$DURATION" "${TARGETS[@]}" \
    --database-url "$DB_URL" --pgbench-url "postgres://postgres@127.0.0.1:$PG_PORT/pgbench" \
    --report "$OUT/pool-$name.json" "$@"
}

LIMITS=()
BASELINE=(--baseline "$OUT/pool-holds-low.json")
if [ "$SMOKE" = 1 ]; then
  # A few seconds on a busy CI machine measure noise, not capacity: no limits, no ratio.
  LIMITS=(--no-limits)
  BASELINE=()
fi

echo "== 1. overcommit: $USERS_HIGH users"
start_replicas "$OVER_POOL"
# Another client (an operator, a migration) tries to connect while the pools are full.
( sleep 3; "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc 'select 1' >"$TMP/psql-during-overcommit.txt" 2>&1 || true ) &
PROBE=$!
set +e
load overcommit overcommit "$USERS_HIGH" "${LIMITS[@]}"
OVER_RC=$?
set -e
wait "$PROBE" 2>/dev/null || true
echo "   a psql session during the run: $(tr '\n' ' ' <"$TMP/psql-during-overcommit.txt")"
grep -h -o '"message":"[^"]*"' "$TMP"/maru-*.log | sort | uniq -c | sort -rn | head -5 || true
stop_replicas

echo "== 2. holds: $USERS_LOW users"
start_replicas "$HOLD_POOL"
set +e
load holds-low holds "$USERS_LOW" "${LIMITS[@]}"
LOW_RC=$?
echo "== 3. holds: $USERS_HIGH users"
load holds-high holds "$USERS_HIGH" "${LIMITS[@]}" "${BASELINE[@]}"
HIGH_RC=$?
set -e
stop_replicas

echo "== pool: overcommit rc=$OVER_RC, holds-low rc=$LOW_RC, holds-high rc=$HIGH_RC; reports in $OUT"
[ "$OVER_RC" = 0 ] && [ "$LOW_RC" = 0 ] && [ "$HIGH_RC" = 0 ]
