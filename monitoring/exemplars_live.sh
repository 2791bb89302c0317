#!/usr/bin/env bash
# Live exemplar check (issue 22): a real Prometheus with exemplar storage scrapes a maru whose
# traces go to a local OTLP receiver, and must hold exemplars of grpc_server_handling_seconds
# whose trace ids are traces maru really exported.
#
#   monitoring/exemplars_live.sh target/debug/maru target/debug/examples/otlp_sink
#
# Steps: start the receiver (examples/otlp_sink.rs) and maru (own database, sample ratio 1.0,
# export to the receiver), send gRPC-web calls with curl, check the OpenMetrics answer of
# /metrics (content type, `# EOF`, exemplars) and that the text format stays the default, then
# start `prometheus --enable-feature=exemplar-storage` scraping maru every second and wait for
# /api/v1/query_exemplars to return exemplars with trace ids the receiver got. Needs PostgreSQL
# on 127.0.0.1:5432 (trust) and Redis on 127.0.0.1:6379 like ci_live.sh, plus prometheus and curl.
set -euo pipefail

bin="${1:?usage: monitoring/exemplars_live.sh MARU_BINARY OTLP_SINK_BINARY}"
sink="${2:?usage: monitoring/exemplars_live.sh MARU_BINARY OTLP_SINK_BINARY}"
cd "$(dirname "$0")/.."
for b in "$bin" "$sink"; do
  [[ -x "$b" ]] || { echo "exemplars_live.sh: $b is not executable (cargo build --bin maru --example otlp_sink)" >&2; exit 2; }
done
prom_bin="${PROMETHEUS:-$(command -v prometheus || echo /usr/bin/prometheus)}"
[[ -x "$prom_bin" ]] || { echo "exemplars_live.sh: prometheus not found (apt-get install prometheus)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp="$(mktemp -d)"
otlp="127.0.0.1:$(free_port)"
grpc="127.0.0.1:$(free_port)"
admin="127.0.0.1:$(free_port)"
prom="127.0.0.1:$(free_port)"
db="maru_exemplars_ci_$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  psql -h 127.0.0.1 -U postgres -d postgres -qAtc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "exemplars_live.sh: $*" >&2; exit 1; }

"$sink" "$otlp" >"$tmp/spans.txt" 2>"$tmp/sink.log" &
pids+=($!)

(
  export MARU__GRPC__LISTEN="$grpc" MARU__ADMIN__LISTEN="$admin"
  export MARU__DATABASE__URL="postgres://postgres@127.0.0.1:5432/$db"
  export MARU__REDIS__KEY_PREFIX="maru-exemplars-ci-$$:"
  export MARU__TRACE__OTLP_ENDPOINT="http://$otlp" MARU__TRACE__SAMPLE_RATIO=1.0
  exec "$bin" serve
) >"$tmp/maru.log" 2>&1 &
maru_pid=$!
pids+=("$maru_pid")
for _ in $(seq 1 120); do
  curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && break
  kill -0 "$maru_pid" 2>/dev/null || { tail -n 30 "$tmp/maru.log" >&2; fail "maru exited during start-up"; }
  sleep 0.5
done
curl -fsS "http://$admin/readyz" >/dev/null || { tail -n 30 "$tmp/maru.log" >&2; fail "maru not ready after 60 s"; }

# gRPC-web calls (an empty WhoAmI request: one 5-byte frame), each answered with its trace id.
traffic() {
  for _ in $(seq 1 10); do
    printf '\x00\x00\x00\x00\x00' | curl -sS -o /dev/null -D "$tmp/headers" -X POST \
      -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' --data-binary @- \
      "http://$grpc/maru.v1.AuthService/WhoAmI"
  done
  grep -qi '^x-trace-id: [0-9a-f]\{32\}' "$tmp/headers" || fail "no x-trace-id on a traced response"
}
traffic

# The text format stays the default; OpenMetrics when asked for, with exemplars on the buckets.
ctype() { curl -fsS -o "$tmp/$2" -w '%{content_type}' ${1:+-H "Accept: $1"} "http://$admin/metrics"; }
[[ "$(ctype '' text.txt)" == text/plain* ]] || fail "the default /metrics answer is not text/plain"
grep -q '^# EOF' "$tmp/text.txt" && fail "# EOF in the text format"
promtool check metrics <"$tmp/text.txt" || fail "promtool check metrics failed on the text format"
om_accept='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
[[ "$(ctype "$om_accept" om.txt)" == "application/openmetrics-text; version=1.0.0"* ]] || fail "no OpenMetrics content type"
[[ "$(tail -n 1 "$tmp/om.txt")" == "# EOF" ]] || fail "the OpenMetrics answer does not end with # EOF"
grep -q '^# TYPE grpc_server_handled counter$' "$tmp/om.txt" || fail "counter family named with _total"
grep -Eq '^grpc_server_handling_seconds_bucket\{[^}]*grpc_method="WhoAmI"[^}]*\} [0-9]+ # \{trace_id="[0-9a-f]{32}"\} [0-9.]+ [0-9.]+$' \
  "$tmp/om.txt" || fail "no exemplar on the WhoAmI buckets: $(grep WhoAmI "$tmp/om.txt" | head -n 3)"
echo "ok    /metrics: text by default (promtool clean), OpenMetrics with exemplars on request"

# A real Prometheus with exemplar storage.
cat >"$tmp/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: maru
    static_configs: [{targets: ["$admin"]}]
EOF
"$prom_bin" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="$prom" --enable-feature=exemplar-storage --log.level=warn >"$tmp/prom.log" 2>&1 &
pids+=($!)

found=""
for i in $(seq 1 60); do
  sleep 1
  (( i % 5 == 0 )) && traffic
  now="$(date +%s)"
  curl -fsS "http://$prom/api/v1/query_exemplars" --data-urlencode 'query=grpc_server_handling_seconds_bucket{grpc_method="WhoAmI"}' \
    --data-urlencode "start=$((now - 600))" --data-urlencode "end=$((now + 60))" >"$tmp/exemplars.json" 2>/dev/null || continue
  found="$(python3 - "$tmp/exemplars.json" "$tmp/spans.txt" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))["data"] or []
exported = {l.split()[0] for l in open(sys.argv[2]) if l.strip()}
ids = [e["labels"].get("trace_id", "") for s in data for e in s["exemplars"]]
good = [t for t in ids if len(t) == 32 and t in exported]
print(f"{len(good)} of {len(ids)}" if good else "")
PY
)"
  [[ -n "$found" ]] && break
done
if [[ -z "$found" ]]; then
  echo "--- query_exemplars:" >&2; cat "$tmp/exemplars.json" >&2 || true
  echo "--- prometheus log:" >&2; tail -n 20 "$tmp/prom.log" >&2
  echo "--- spans received: $(wc -l <"$tmp/spans.txt")" >&2
  fail "Prometheus holds no exemplar whose trace id maru exported"
fi
echo "ok    query_exemplars: $found exemplars of grpc_server_handling_seconds are exported traces"
