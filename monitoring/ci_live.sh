#!/usr/bin/env bash
# CI entry point for the live ops checks: starts a built maru binary on free loopback ports
# (its own database and Redis key prefix), waits until it is ready, checks reflection as
# grpcurl and buf curl use it (`proto/check_reflection.sh`), runs `monitoring/check.sh --live`
# (scripted traffic, every dashboard/rule PromQL expression against a real Prometheus, balancer
# smoke test), then `promtool check metrics` on a scrape of /metrics (every family has HELP),
# and always stops maru again.
# At the end: the live exemplar check (`monitoring/exemplars_live.sh`, its own maru with traces).
#
#   monitoring/ci_live.sh target/debug/maru
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379, like the
# Rust tests; override with MARU__DATABASE__URL / MARU__REDIS__URL.
set -euo pipefail

bin="${1:?usage: monitoring/ci_live.sh PATH_TO_MARU_BINARY}"
cd "$(dirname "$0")/.."
[[ -x "$bin" ]] || { echo "ci_live.sh: $bin is not an executable maru binary (cargo build first)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc="127.0.0.1:$(free_port)"
admin="127.0.0.1:$(free_port)"
log="$(mktemp)"

export MARU__GRPC__LISTEN="$grpc" MARU__ADMIN__LISTEN="$admin"
# A database of its own per run (created by maru, dropped on exit), so every run starts from the
# same state: the seeded demo complex with one pending membership request, no earlier traffic.
own_db=""
if [[ -z "${MARU__DATABASE__URL:-}" ]]; then
  own_db="maru_ops_ci_$$"
  export MARU__DATABASE__URL="postgres://postgres@127.0.0.1:5432/$own_db"
fi
export MARU__REDIS__KEY_PREFIX="${MARU__REDIS__KEY_PREFIX:-maru-ops-ci-$$:}"
# Flush post views every second so the Feed dashboard's flush panels have data.
export MARU__FEED__VIEW_FLUSH_INTERVAL_S="${MARU__FEED__VIEW_FLUSH_INTERVAL_S:-1}"
# One successful ingest in the database first: every replica reads the last-success gauge
# from ingest_runs at start-up, so the Ingest panels and MaruIngestStale have data.
"$bin" ingest trials --from-file tests/fixtures/clinical-trials-3074271.json >/dev/null
# The demo complex, club and market, so that traffic.sh exercises the community, team, market and
# report RPCs (Communities, Teams, Market & moderation dashboards).
"$bin" seed demo >/dev/null
# Room in the auth bucket for the community journey's two logins per round (the team journey's
# three and the market journey's two fit as the bucket refills during the round); the Login burst of 20 at once in traffic.sh
# must still overflow it (a larger burst leaves the rate-limit panels without rejections).
# (+1 for the guest journey's StartGuestSession.)
export MARU__RATE_LIMIT__BUCKETS__AUTH__BURST="${MARU__RATE_LIMIT__BUCKETS__AUTH__BURST:-17}"
# Every grpcurl of that burst opens a reflection stream first: with the default cap of 16 streams
# per address, some of the 20 end there (ResourceExhausted CAPACITY_EXCEEDED) and at most 16 reach
# the bucket — after a long round it has refilled to 16 and rejects none, leaving the rate-limit
# panels empty. Room for the whole burst (the cap has its own tests).
export MARU__GRPC__MAX_STREAMS_PER_ADDRESS="${MARU__GRPC__MAX_STREAMS_PER_ADDRESS:-64}"
# A webhook receiver (Slack/Discord-style POSTs, answered 204) for the settlement notices, so the
# outbox panels have deliveries to show.
hook_port="$(free_port)"
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$hook_port" &
hook_pid=$!
export MARU__EVENTS__WEBHOOK_URL="http://127.0.0.1:$hook_port/hook"
"$bin" serve >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$hook_pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
  if [[ -n "$own_db" ]]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qAtc "drop database if exists $own_db with (force)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  if curl -fsS "http://$admin/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "ci_live.sh: maru exited during start-up:" >&2; tail -n 30 "$log" >&2; exit 1
  fi
  sleep 0.5
done
curl -fsS "http://$admin/readyz" >/dev/null || { echo "ci_live.sh: maru not ready after 60 s" >&2; tail -n 30 "$log" >&2; exit 1; }
echo "maru ready: gRPC $grpc, admin $admin"

# Reflection as grpcurl and buf curl use it (every service described, policies shown).
proto/check_reflection.sh "$grpc"

monitoring/check.sh --live "$grpc" "$admin"

# After the traffic every family maru records is on /metrics: each must have its HELP line and
# pass promtool's lint (a family without HELP fails `promtool check metrics`).
echo "promtool check metrics on a live scrape of http://$admin/metrics"
scrape="$(mktemp)"
curl -fsS "http://$admin/metrics" >"$scrape"
if ! promtool check metrics <"$scrape"; then
  echo "ci_live.sh: promtool check metrics failed on the live scrape (describe the metric where it is recorded)" >&2
  rm -f "$scrape"
  exit 1
fi
echo "ok    promtool check metrics ($(grep -c '^# TYPE ' "$scrape") families)"
rm -f "$scrape"

# Exemplars (issue 22): a second maru with traces on, scraped by Prometheus with exemplar
# storage; the receiver is examples/otlp_sink.rs, built next to the binary
# (`cargo build --example otlp_sink`).
sink="${OTLP_SINK:-$(dirname "$bin")/examples/otlp_sink}"
monitoring/exemplars_live.sh "$bin" "$sink"
