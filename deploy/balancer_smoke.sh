#!/usr/bin/env bash
# Smoke test of deploy/nginx.conf against a running maru, without Docker:
#
#   deploy/balancer_smoke.sh 127.0.0.1:50051
#
# Starts nginx from a temporary copy of the config whose upstreams point at ADDR and whose
# listeners are free loopback ports, then sends real gRPC (h2c) and gRPC-web (HTTP/1.1 and
# HTTP/2) through it and checks the gRPC status that comes back. nginx is always stopped.
# Needs: nginx, grpcurl, curl, python3.
set -euo pipefail

addr="${1:?usage: deploy/balancer_smoke.sh MARU_GRPC_ADDR (e.g. 127.0.0.1:50051)}"
root="$(cd "$(dirname "$0")/.." && pwd)"
for tool in nginx grpcurl curl python3; do
  command -v "$tool" >/dev/null || { echo "balancer_smoke: '$tool' is not installed" >&2; exit 2; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp="$(mktemp -d)"
grpc_port="$(free_port)"; web_port="$(free_port)"; health_port="$(free_port)"
nginx_pid=""
cleanup() {
  if [[ -n "$nginx_pid" ]]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

sed -e "s/maru-[12]:50051/$addr/" \
    -e "s/listen 50051 http2;/listen 127.0.0.1:$grpc_port http2;/" \
    -e "s/listen 8081;/listen 127.0.0.1:$web_port;/" \
    -e "s/listen 8080;/listen 127.0.0.1:$health_port;/" \
    -e "s#^pid .*#pid $tmp/nginx.pid;#" \
    "$root/deploy/nginx.conf" > "$tmp/nginx.conf"
mkdir -p "$tmp/logs"
nginx -c "$tmp/nginx.conf" -p "$tmp/" -g 'daemon off;' >"$tmp/nginx.out" 2>&1 &
nginx_pid=$!
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$health_port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

fail=0
check() { # name, expected, actual
  if [[ "$2" == "$3" ]]; then printf 'ok    %-55s %s\n' "$1" "$3"
  else printf 'FAIL  %-55s expected %s, got %s\n' "$1" "$2" "$3"; fail=1; fi
}
grpc_web_status() { # url, extra curl args...
  local url="$1"; shift
  printf '\0\0\0\0\0' > "$tmp/empty.bin"
  curl -sS -o "$tmp/body" -D "$tmp/headers" "$@" \
    -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
    --data-binary @"$tmp/empty.bin" "$url" || true
  # Trailers-only answers carry grpc-status in the headers, others in a trailer frame.
  { grep -i '^grpc-status:' "$tmp/headers" || grep -ao 'grpc-status:[ ]*[0-9]*' "$tmp/body" || echo 'grpc-status: none'; } \
    | head -n1 | tr -d '\r' | awk -F': *' '{print $2}'
}

check "healthz" "ok" "$(curl -fsS "http://127.0.0.1:$health_port/healthz" || true)"
check "gRPC h2c: Health/Check" "SERVING" \
  "$(grpcurl -plaintext -max-time 5 "127.0.0.1:$grpc_port" grpc.health.v1.Health/Check 2>&1 | grep -o 'SERVING' | head -n1 || true)"
set +e
grpcurl -plaintext -max-time 5 "127.0.0.1:$grpc_port" maru.v1.AuthService/WhoAmI >/dev/null 2>&1
rc=$?
set -e
# grpcurl exits with 64 + gRPC code: 80 = UNAUTHENTICATED, passed through unchanged.
check "gRPC h2c: WhoAmI without token -> UNAUTHENTICATED" "80" "$rc"
check "gRPC-web HTTP/1.1 on the web port -> 16" "16" \
  "$(grpc_web_status "http://127.0.0.1:$web_port/maru.v1.AuthService/WhoAmI")"
check "gRPC-web HTTP/2 on the gRPC port -> 16" "16" \
  "$(grpc_web_status "http://127.0.0.1:$grpc_port/maru.v1.AuthService/WhoAmI" --http2-prior-knowledge)"
check "CORS preflight on the web port" "200" \
  "$(curl -sS -o /dev/null -w '%{http_code}' -X OPTIONS -H 'origin: http://localhost:3000' \
      -H 'access-control-request-method: POST' -H 'access-control-request-headers: content-type,x-grpc-web' \
      "http://127.0.0.1:$web_port/maru.v1.AuthService/WhoAmI" || true)"
# nginx >= 1.25.1 also sniffs HTTP/1.1 on the h2c port; older versions answer garbage there.
version="$(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')"
if [[ "$(printf '%s\n1.25.1\n' "$version" | sort -V | head -n1)" == "1.25.1" ]]; then
  check "gRPC-web HTTP/1.1 on the gRPC port -> 16" "16" \
    "$(grpc_web_status "http://127.0.0.1:$grpc_port/maru.v1.AuthService/WhoAmI")"
else
  printf 'skip  %-55s nginx %s < 1.25.1\n' "gRPC-web HTTP/1.1 on the gRPC port" "$version"
fi

if [[ $fail -ne 0 ]]; then
  echo "--- nginx output" >&2; cat "$tmp/nginx.out" >&2
  exit 1
fi
echo "balancer smoke test passed"
