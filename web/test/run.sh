#!/usr/bin/env bash
# The reference web app's browser test (issue 21), run by CI (.ci/run):
#   web/test/run.sh
# builds maru (debug) and the web app, seeds a fresh database with `maru seed demo`, then runs
# web/test/scenario.mjs: puppeteer-core drives Debian's Chromium (no browser download) through
# the app served by maru under /app/, in two browser contexts, restarting maru mid-chat.
# Screenshots of every step (and maru's log) go to WEB_TEST_OUT (default
# target/web-test/<time>), printed at the start and the end.
#
# WEB_TEST_DEV=1 runs the same scenario against `npm run dev` (esbuild's server on another
# port, calling maru cross-origin: CORS, and the CSP the dev page carries in a meta element),
# without the token-expiry wait. WEB_TEST_REUSE_BUILD=1 skips the builds when they exist (CI's
# second pass).
#
# Needs: PostgreSQL on 127.0.0.1:5432 (trust auth), Redis optional, node 20+ and npm (buf and
# protoc-gen-es are npm devDependencies), chromium (apt-get install -y chromium; or CHROMIUM=/path).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [[ -z "$CHROMIUM" ]]; then
  echo "web test: needs Chromium (apt-get install -y chromium, or CHROMIUM=/path/to/chrome)" >&2
  exit 2
fi
export CHROMIUM PUPPETEER_SKIP_DOWNLOAD=1

t_start=$SECONDS
if [[ "${WEB_TEST_REUSE_BUILD:-}" == 1 && -x target/debug/maru && -d web/node_modules && -f web/dist/index.html ]]; then
  echo "== reusing target/debug/maru and web/ as built (WEB_TEST_REUSE_BUILD=1)"
else
  echo "== build maru (debug)"
  # The workspace's binaries, as loadtest/smoke.sh and .ci/run build them: one feature set, so
  # CI compiles maru's dependencies for binaries once (`--bin maru` alone unifies differently).
  cargo build --locked -p maru -p maru-load --bins
  echo "== build the web app (npm ci, buf generate, tsc, esbuild)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi
t_built=$SECONDS

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while in_use "$p"; do p=$((p + 1)); done; echo "$p"; }
grpc_port=$(free_port 50451)
admin_port=$(free_port 9851)
db="maru_web_test_$$"
export WEB_TEST_OUT=${WEB_TEST_OUT:-$root/target/web-test/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$WEB_TEST_OUT"
export MARU_BIN=$root/target/debug/maru
export MARU__GRPC__LISTEN=127.0.0.1:$grpc_port MARU__ADMIN__LISTEN=127.0.0.1:$admin_port
export MARU__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$db
export MARU__REDIS__KEY_PREFIX="maru-web-test-$$:"
# The same signing key across the restart: the pages' tokens stay valid.
export MARU__AUTH__JWT_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)
export MARU__WEB__ENABLED=true MARU__WEB__DIR=$root/web/dist
# Media (the photo upload): the local backend in a throw-away directory, which also holds the
# files the scenario uploads (one of them 11 MiB: not an artifact).
export WEB_TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/maru-web-test.XXXXXX")
export MARU__MEDIA__DATA_DIR=$WEB_TEST_TMP/media MARU__MEDIA__POLL_INTERVAL_MS=100
# A quick restart: no balancer to wait for.
export MARU__GRPC__SHUTDOWN_GRACE_MS=0 MARU__GRPC__DRAIN_TIMEOUT_MS=1000
export MARU__LOG__ACCESS_LOG=false
# Short access tokens: the scenario outlives one and checks the app refreshes it (waiting for
# the expiry: half the run; the dev-server pass leaves it to the /app/ pass).
if [[ "${WEB_TEST_DEV:-}" == 1 ]]; then unset MARU__AUTH__ACCESS_TTL_S; else export MARU__AUTH__ACCESS_TTL_S=30; fi

cleanup() {
  local rc=$?
  # The scenario stops maru itself; this covers it dying first (killed, broken pipe).
  if [[ -n "${dev_pid:-}" ]]; then kill "$dev_pid" 2>/dev/null || true; fi
  if [[ -f "$WEB_TEST_OUT/maru.pid" ]]; then
    kill "$(cat "$WEB_TEST_OUT/maru.pid")" 2>/dev/null || true
    rm -f "$WEB_TEST_OUT/maru.pid"
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -qAtc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  rm -rf "$WEB_TEST_TMP"
  # The suite's time (it should stay under 3 minutes in CI).
  echo "web test: $((SECONDS - t_start)) s in all (builds $((t_built - t_start)) s, seed $((${t_seeded:-$SECONDS} - t_built)) s, scenario $((SECONDS - ${t_seeded:-$SECONDS})) s)"
  echo "web test: screenshots and maru's log in $WEB_TEST_OUT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== seed demo data into $db; screenshots to $WEB_TEST_OUT"
"$MARU_BIN" seed demo >"$WEB_TEST_OUT/seed.log" 2>&1 || { tail -20 "$WEB_TEST_OUT/seed.log" >&2; exit 1; }
t_seeded=$SECONDS
if [[ "${WEB_TEST_DEV:-}" == 1 ]]; then
  dev_port=$(free_port 8180)
  echo "== npm run dev's server on 127.0.0.1:$dev_port"
  (cd web && MARU_URL=http://$MARU__GRPC__LISTEN PORT=$dev_port exec node build.mjs --serve) >"$WEB_TEST_OUT/dev-server.log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 100); do in_use "$dev_port" && break; sleep 0.1; done
  export APP_URL=http://127.0.0.1:$dev_port/
fi
echo "== browser scenario (Chromium: $CHROMIUM)"
node web/test/scenario.mjs
