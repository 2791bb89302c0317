// The clients of maru over gRPC-web, the session (tokens in sessionStorage: one per tab) and
// the decoding of error details (google.rpc.Status from `grpc-status-details-bin`).
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "../gen/maru/v1/auth_pb";
import { ChatService } from "../gen/maru/v1/chat_pb";
import { CommunityService } from "../gen/maru/v1/communities_pb";
import { NoticeService, PollService } from "../gen/maru/v1/community_content_pb";
import { ReportService } from "../gen/maru/v1/reports_pb";
import { FeedService } from "../gen/maru/v1/feed_pb";
import { MediaService } from "../gen/maru/v1/media_pb";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RequestInfoSchema,
  RetryInfoSchema,
} from "../gen/google/rpc/error_details_pb";

declare const MARU_URL: string;

/// Where maru answers: the build's MARU_URL (`npm run dev`), else the page's own origin (the
/// app served by maru under /app/). `?api=` overrides both.
export const baseUrl: string =
  new URLSearchParams(location.search).get("api") || MARU_URL || location.origin;

interface Session {
  accessToken: string;
  refreshToken: string;
  handle: string;
  userId: string;
  /// The deployment ADMIN role: the report queue is offered.
  admin?: boolean;
}

const KEY = "maru.session";
let session: Session | null = JSON.parse(sessionStorage.getItem(KEY) ?? "null");

export function currentSession(): Session | null {
  return session;
}

export function setSession(s: Session | null): void {
  session = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
}

const bearer: Interceptor = (next) => async (req) => {
  if (session) req.header.set("authorization", `Bearer ${session.accessToken}`);
  return next(req);
};

// An expired access token is refreshed once and the call retried (unary calls only: a
// stream's request cannot be replayed by an interceptor, the chat reconnects instead).
let refreshing: Promise<void> | null = null;
const refreshOnExpiry: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (e) {
    const err = ConnectError.from(e);
    if (req.stream || !session || err.code !== Code.Unauthenticated || reasonOf(err) !== "TOKEN_EXPIRED") throw e;
    refreshing ??= refreshTokens().finally(() => (refreshing = null));
    await refreshing;
    req.header.set("authorization", `Bearer ${session!.accessToken}`);
    return next(req);
  }
};

const transport = createGrpcWebTransport({ baseUrl, interceptors: [refreshOnExpiry, bearer] });

export const auth = createClient(AuthService, transport);
export const communities = createClient(CommunityService, transport);
export const feed = createClient(FeedService, transport);
export const chat = createClient(ChatService, transport);
export const notices = createClient(NoticeService, transport);
export const polls = createClient(PollService, transport);
export const reports = createClient(ReportService, transport);
export const media = createClient(MediaService, transport);

async function refreshTokens(): Promise<void> {
  const s = session!;
  const r = await auth.refresh({ refreshToken: s.refreshToken });
  setSession({ ...s, accessToken: r.accessToken, refreshToken: r.refreshToken });
  // Counted where a test (or a curious developer) can see it.
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes ?? 0) + 1);
}

/// A fresh request id (32 hex digits; `crypto.getRandomValues` works outside secure contexts).
export function requestId(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/// The request id of an idempotent write: a retry of the same payload (the button pressed again
/// after a network error) sends the same id and is applied once; a changed payload gets a new
/// one (reusing an id for another request is INVALID_ARGUMENT `REQUEST_ID_REUSED`). Call
/// `done` after success, so the same text sent again later is a new write.
const ids = new Map<string, string>();
export function idempotent(payload: Record<string, unknown>): { requestId: string; done: () => void } {
  const key = JSON.stringify(payload);
  let id = ids.get(key);
  if (!id) ids.set(key, (id = requestId()));
  return { requestId: id, done: () => ids.delete(key) };
}

export function reasonOf(err: ConnectError): string {
  return err.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

/// What the UI shows of a failed call.
export interface Problem {
  code: string;
  reason: string;
  message: string;
  requestId: string;
  /// BadRequest field violations by field name (proto names: `display_name`).
  fields: Map<string, string>;
  /// RetryInfo delay in seconds (rate limiting, overload).
  retryAfterS: number | null;
}

export function problem(e: unknown): Problem {
  const err = ConnectError.from(e);
  const fields = new Map<string, string>();
  for (const bad of err.findDetails(BadRequestSchema)) {
    for (const v of bad.fieldViolations) fields.set(v.field, v.description);
  }
  const retry = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return {
    code: Code[err.code],
    reason: reasonOf(err),
    message: err.rawMessage,
    requestId: err.findDetails(RequestInfoSchema)[0]?.requestId || err.metadata.get("x-request-id") || "",
    fields,
    retryAfterS: retry ? Number(retry.seconds) + retry.nanos / 1e9 : null,
  };
}
