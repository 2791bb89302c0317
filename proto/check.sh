#!/usr/bin/env bash
# Static checks of maru's API, run by CI (.ci/run):
#   - buf lint (STANDARD, proto/buf.yaml) and buf format;
#   - buf breaking (WIRE_JSON) against the last release tag `v*`, else the previous commit;
#   - TypeScript generation with protoc-gen-es (buf.gen.yaml), and a Node run of the generated
#     code proving every method of every service carries its `(maru.v1.policy)` option.
#
#   proto/check.sh
#
# Needs buf (PyPI `buf-bin`), git, node and npm (protoc-gen-es is installed into a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "-- buf lint, buf format"
buf lint proto
buf format --diff --exit-code proto

echo "-- buf breaking (WIRE_JSON)"
if tag=$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null); then
  against="$tag"
elif against=$(git rev-parse -q --verify 'HEAD~1^{commit}'); then
  :
else
  against=""
fi
if [[ -n "$against" ]]; then
  echo "against $against"
  buf breaking proto --against ".git#ref=$against,subdir=proto"
else
  echo "no release tag and no previous commit (shallow clone?): nothing to compare against"
fi

echo "-- TypeScript generation (protoc-gen-es)"
es="$(mktemp -d)"
trap 'rm -rf "$es"' EXIT
printf '{"private": true, "type": "module"}\n' >"$es/package.json"
npm install --silent --no-audit --no-fund --prefix "$es" @bufbuild/protoc-gen-es@2 @bufbuild/protobuf@2 >/dev/null
export PATH="$es/node_modules/.bin:$PATH"
# The committed template (TypeScript into web/gen, git-ignored) …
buf generate
test -s web/gen/maru/v1/policy_pb.ts
# … and the same code as JavaScript, to run it.
buf generate proto --template "{\"version\":\"v2\",\"plugins\":[{\"local\":\"protoc-gen-es\",\"out\":\"$es/gen\",\"opt\":[\"target=js\",\"import_extension=js\"]}]}"
cp proto/check_generated.mjs "$es/"
node "$es/check_generated.mjs"
