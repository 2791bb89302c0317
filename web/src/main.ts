// maru's reference web app: plain DOM, one screen per hash route.
//   #/signin  #/home  #/c/<community>  #/c/<community>/requests  #/p/<post>  #/chat  #/chat/<room>
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ChatEventKind, type ChatMessage, type ChatRoom } from "../gen/maru/v1/chat_pb";
import { MemberRole, MembershipStatus, type Membership } from "../gen/maru/v1/communities_pb";
import type { Comment, Post } from "../gen/maru/v1/feed_pb";
import type { Poll } from "../gen/maru/v1/community_content_pb";
import { Role } from "../gen/maru/v1/common_pb";
import { ModerationActionType, ReportReason, ReportTargetType, type ReportedTarget } from "../gen/maru/v1/reports_pb";
import { auth, chat, communities, currentSession, feed, idempotent, notices, polls, reports, requestId, setSession } from "./api";
import { live } from "./live";
import { $, field, h, onSubmit, showError } from "./ui";
import { photoPicker, photos } from "./photos";
import "./app.css";

const app = document.getElementById("app")!;
const when = (t?: Timestamp) => (t ? timestampDate(t).toLocaleString() : "");

// ---------------------------------------------------------------- layout and routing

function header(): HTMLElement {
  const s = currentSession();
  const status = h("span", { id: "live-status", "data-state": live.state }, live.state);
  live.onState = (st) => {
    status.dataset.state = st;
    status.dataset.reconnects = String(live.reconnects);
    status.textContent = st === "live" && live.reconnects > 0 ? `live (resumed ×${live.reconnects})` : st;
  };
  return h(
    "header",
    {},
    h("a", { href: "#/home", class: "brand" }, "maru"),
    s
      ? h(
          "nav",
          {},
          h("a", { href: "#/home" }, "Communities"),
          h("a", { href: "#/chat" }, "Chat"),
          s.admin ? h("a", { href: "#/reports", id: "reports-link" }, "Reports") : null,
        )
      : null,
    s ? status : null,
    s ? h("span", { class: "me" }, `@${s.handle}`) : null,
    s ? h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out") : null,
  );
}

let cleanup: (() => void) | null = null;

async function route(): Promise<void> {
  cleanup?.();
  cleanup = null;
  const path = location.hash.replace(/^#/, "") || "/home";
  const parts = path.split("/").filter(Boolean);
  const main = h("main", { "data-screen": parts[0] ?? "home" });
  app.replaceChildren(header(), main);
  // A new screen starts at its top (not where the last one was scrolled to).
  scrollTo(0, 0);
  if (!currentSession() && parts[0] !== "signin") {
    location.hash = "#/signin";
    return;
  }
  try {
    switch (parts[0]) {
      case "signin":
        return signIn(main);
      case "c":
        if (parts[2] === "requests") return await requests(main, parts[1]);
        if (parts[2] === "board") return await board(main, parts[1]);
        return await communityFeed(main, parts[1]);
      case "p":
        return await postView(main, parts[1]);
      case "reports":
        return await reportQueue(main);
      case "chat":
        return parts[1] ? await chatRoom(main, parts[1]) : await chatRooms(main);
      default:
        return await home(main);
    }
  } catch (e) {
    showError(main, e);
  }
}

// ---------------------------------------------------------------- sign in / sign up

function signIn(main: HTMLElement): void {
  const login = h(
    "form",
    { id: "sign-in" },
    h("h2", {}, "Sign in"),
    field("login", "Handle or email"),
    field("password", "Password", "password"),
    h("button", { type: "submit" }, "Sign in"),
  );
  const signup = h(
    "form",
    { id: "sign-up" },
    h("h2", {}, "Sign up"),
    field("handle", "Handle"),
    field("email", "Email", "email"),
    field("password", "Password", "password"),
    field("display_name", "Display name"),
    h("button", { type: "submit" }, "Create account"),
  );
  onSubmit(login, async (v) => startSession(v.login, v.password));
  onSubmit(signup, async (v) => {
    const req = { handle: v.handle, email: v.email, password: v.password, displayName: v.display_name };
    const id = idempotent(req);
    await auth.signUp({ ...req, requestId: id.requestId });
    id.done();
    await startSession(v.handle, v.password);
  });
  main.append(h("div", { class: "columns" }, login, signup));
}

async function startSession(login: string, password: string): Promise<void> {
  const r = await auth.login({ login, password });
  setSession({
    accessToken: r.accessToken,
    refreshToken: r.refreshToken,
    handle: r.user?.handle ?? login,
    userId: r.user?.id ?? "",
    admin: r.user?.role === Role.ADMIN,
  });
  await startLive();
  location.hash = "#/home";
}

async function signOut(): Promise<void> {
  const s = currentSession();
  live.stop(true);
  if (s) await auth.logout({ refreshToken: s.refreshToken }).catch(() => {});
  setSession(null);
  location.hash = "#/signin";
}

/// Opens the chat stream, resuming every room the caller has from its last seq.
async function startLive(): Promise<void> {
  let pageToken = "";
  do {
    const r = await chat.listMyRooms({ pageSize: 100, pageToken });
    for (const room of r.rooms) live.know(room.id, room.lastSeq);
    pageToken = r.nextPageToken;
  } while (pageToken);
  live.start();
}

// ---------------------------------------------------------------- communities

function statusText(m?: Membership): string {
  if (!m) return "";
  if (m.status === MembershipStatus.PENDING) return "waiting for a manager";
  if (m.status === MembershipStatus.REJECTED) return "rejected";
  return m.role === MemberRole.MANAGER ? "manager" : "member";
}

async function home(main: HTMLElement): Promise<void> {
  const mine = h("ul", { id: "my-communities" });
  const r = await communities.listMyCommunities({ pageSize: 50 });
  for (const { community, membership } of r.communities) {
    if (!community) continue;
    const approved = membership?.status === MembershipStatus.APPROVED;
    mine.append(
      h(
        "li",
        { "data-community": community.id, "data-status": statusText(membership) },
        approved ? h("a", { href: `#/c/${community.id}` }, community.name) : h("span", {}, community.name),
        h("small", {}, ` ${community.address} · ${statusText(membership)}`),
      ),
    );
  }
  if (!r.communities.length) mine.append(h("li", { class: "empty" }, "No community yet: find yours below."));

  const results = h("ul", { id: "search-results" });
  const search = h(
    "form",
    { id: "search" },
    field("query", "Find your complex or club"),
    h("button", { type: "submit" }, "Search"),
  );
  onSubmit(search, async (v) => {
    const found = await communities.searchCommunities({ query: v.query, pageSize: 20 });
    results.replaceChildren();
    for (const c of found.communities) {
      const join = h(
        "form",
        { class: "join", "data-community": c.id },
        field("building", "동"),
        field("unit", "호"),
        h("button", { type: "submit" }, "Ask to join"),
      );
      onSubmit(join, async (jv) => {
        const req = { communityId: c.id, building: jv.building, unit: jv.unit };
        const id = idempotent(req);
        await communities.requestMembership({ ...req, requestId: id.requestId });
        id.done();
        await route();
      });
      results.append(h("li", {}, h("strong", {}, c.name), h("small", {}, ` ${c.address}`), join));
    }
    if (!found.communities.length) results.append(h("li", { class: "empty" }, "Nothing found."));
  });
  main.append(h("h2", {}, "My communities"), mine, h("h2", {}, "Join a community"), search, results);
}

async function myMembership(communityId: string): Promise<Membership | undefined> {
  const r = await communities.listMyCommunities({ pageSize: 100 });
  return r.communities.find((c) => c.community?.id === communityId)?.membership;
}

async function requests(main: HTMLElement, communityId: string): Promise<void> {
  const list = h("ul", { id: "requests" });
  main.append(h("h2", {}, "Membership requests"), h("a", { href: `#/c/${communityId}` }, "← feed"), list);
  let pageToken = "";
  do {
    const r = await communities.listMembershipRequests({ communityId, pageSize: 50, pageToken });
    for (const m of r.memberships) {
      const item = h(
        "li",
        { "data-handle": m.userHandle },
        h("strong", {}, `${m.userDisplayName} @${m.userHandle}`),
        h("small", {}, ` ${m.building}동 ${m.unit}호 · ${when(m.createdAt)}`),
      );
      const decide = (approve: boolean) => async () => {
        try {
          const d = await communities.decideMembership({ membershipId: m.id, approve });
          item.dataset.decided = d.membership?.status === MembershipStatus.APPROVED ? "approved" : "rejected";
          item.querySelectorAll("button").forEach((b) => b.remove());
          item.append(h("span", { class: "decided" }, ` ${item.dataset.decided}`));
        } catch (e) {
          showError(item, e);
        }
      };
      item.append(
        h("button", { type: "button", class: "approve", onclick: decide(true) }, "Approve"),
        h("button", { type: "button", class: "reject", onclick: decide(false) }, "Reject"),
      );
      list.append(item);
    }
    pageToken = r.nextPageToken;
  } while (pageToken);
  if (!list.children.length) list.append(h("li", { class: "empty" }, "No pending request."));
}

// ---------------------------------------------------------------- feed

function postItem(p: Post): HTMLElement {
  return h(
    "article",
    { class: "post", "data-post": p.id },
    h("header", {}, h("strong", {}, p.author?.displayName ?? ""), h("small", {}, ` @${p.author?.handle} · ${when(p.createdAt)}`)),
    h("p", { class: "text" }, p.text),
    photos(p),
    h(
      "footer",
      {},
      likeButton(p),
      " ",
      h("a", { href: `#/p/${p.id}`, class: "comments" }, `${p.commentCount} comments`),
      " ",
      p.author?.userId !== currentSession()?.userId ? reportButton({ postId: p.id }) : null,
    ),
  );
}

/// Reports a post (or comment) as spam; ALREADY_REPORTED is shown by its reason.
function reportButton(target: { postId?: string; commentId?: string }): HTMLElement {
  const b = h("button", { type: "button", class: "report" }, "Report");
  b.addEventListener("click", async () => {
    const id = idempotent({ ...target, report: true });
    try {
      await reports.createReport({ target, reason: ReportReason.SPAM, requestId: id.requestId });
      id.done();
      b.textContent = "Reported";
      b.dataset.reported = "true";
    } catch (e) {
      showError(b.parentElement!, e);
    }
  });
  return b;
}

// ---------------------------------------------------------------- the report queue (admins)

function targetItem(t: ReportedTarget): HTMLElement {
  const el = h(
    "article",
    { class: "reported", "data-target": t.targetId },
    h(
      "h3",
      {},
      `${ReportTargetType[t.targetType]} `,
      t.targetType === ReportTargetType.POST ? h("a", { href: `#/p/${t.targetId}` }, t.targetId) : t.targetId,
    ),
    h(
      "small",
      {},
      `${t.reportCount} reports · ${t.reasons.map((r) => ReportReason[r]).join(", ")} · since ${when(t.firstReportedAt)}${t.autoHidden ? " · auto-hidden" : ""}`,
    ),
    h("ul", {}, ...t.reports.map((r) => h("li", {}, `${ReportReason[r.reason]}: ${r.details || "—"}`))),
  );
  const resolve = (action: ModerationActionType, label: string) => {
    const b = h("button", { type: "button", class: label.toLowerCase().replace(/\s+/g, "-") }, label);
    b.addEventListener("click", async () => {
      try {
        await reports.resolveReport({ targetType: t.targetType, targetId: t.targetId, action });
        el.dataset.resolved = label;
        el.querySelectorAll("button").forEach((x) => x.remove());
        el.append(h("span", { class: "decided" }, ` ${label}`));
      } catch (e) {
        showError(el, e);
      }
    });
    return b;
  };
  el.append(
    resolve(ModerationActionType.DISMISS, "Dismiss"),
    " ",
    resolve(ModerationActionType.SUSPEND_TARGET, "Hide"),
    " ",
    resolve(ModerationActionType.WARN_USER, "Warn user"),
  );
  return el;
}

async function reportQueue(main: HTMLElement): Promise<void> {
  const list = h("section", { id: "report-queue" });
  main.append(h("h2", {}, "Open reports"), list);
  let pageToken = "";
  do {
    const r = await reports.listReports({ pageSize: 50, pageToken });
    r.targets.forEach((t) => list.append(targetItem(t)));
    pageToken = r.nextPageToken;
  } while (pageToken);
  if (!list.children.length) list.append(h("p", { class: "empty" }, "No open report."));
}

function likeButton(p: Post): HTMLElement {
  let liked = p.likedByMe;
  let count = p.likeCount;
  const b = h("button", { type: "button", class: "like" });
  const paint = () => {
    b.textContent = `${liked ? "♥" : "♡"} ${count}`;
    b.dataset.liked = String(liked);
  };
  paint();
  b.addEventListener("click", async () => {
    try {
      if (liked) {
        if ((await feed.unlike({ postId: p.id })).removed) count--;
      } else if ((await feed.like({ postId: p.id, requestId: requestId() })).created) count++;
      liked = !liked;
      paint();
    } catch (e) {
      showError(b.parentElement!, e);
    }
  });
  return b;
}

async function communityFeed(main: HTMLElement, communityId: string): Promise<void> {
  const [c, me] = await Promise.all([communities.getCommunity({ communityId }), myMembership(communityId)]);
  const isManager = me?.status === MembershipStatus.APPROVED && me.role === MemberRole.MANAGER;
  // Photos upload as soon as they are chosen; "Post" waits for them to be READY.
  const picker = photoPicker();
  const compose = h(
    "form",
    { id: "compose" },
    h("label", { class: "field" }, h("span", {}, "New post"), h("textarea", { name: "text", rows: "3" }), h("small", { class: "violation", "data-field": "text" })),
    picker.el,
    h("small", { class: "violation", "data-field": "media_ids" }),
    h("button", { type: "submit" }, "Post"),
  );
  const posts = h("section", { id: "posts" });
  const sentinel = h("div", { id: "more" }, "…");
  onSubmit(compose, async (v) => {
    const mediaIds = await picker.ready();
    const id = idempotent({ communityId, text: v.text, mediaIds });
    const r = await feed.createPost({ communityId, text: v.text, mediaIds, requestId: id.requestId });
    id.done();
    compose.reset();
    picker.reset();
    if (r.post) posts.prepend(postItem(r.post));
  });
  main.append(h("h2", {}, c.community?.name ?? ""), h("a", { href: `#/c/${communityId}/board`, id: "board-link" }, "Notices & polls"), " ");
  if (isManager) main.append(h("a", { href: `#/c/${communityId}/requests`, id: "requests-link" }, "Membership requests"));
  main.append(
    compose,
    posts,
    sentinel,
  );
  // Infinite scroll: the next page (its page token) when the sentinel comes into view.
  let pageToken = "";
  let loading = false;
  let done = false;
  const more = async () => {
    if (loading || done) return;
    loading = true;
    try {
      const r = await feed.listPosts({ communityId, pageSize: 10, pageToken });
      for (const p of r.posts) if (!$(`[data-post="${p.id}"]`, posts)) posts.append(postItem(p));
      pageToken = r.nextPageToken;
      done = !pageToken;
      sentinel.textContent = done ? "" : "…";
      sentinel.dataset.done = String(done);
    } catch (e) {
      showError(main, e);
    } finally {
      loading = false;
    }
    // A short page may leave the sentinel in view: keep going.
    if (!done && sentinel.getBoundingClientRect().top < innerHeight) void more();
  };
  const io = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && void more());
  io.observe(sentinel);
  cleanup = () => {
    io.disconnect();
    picker.reset();
  };
  await more();
}

// ---------------------------------------------------------------- notices and polls

function pollItem(p: Poll): HTMLElement {
  const el = h(
    "article",
    { class: "poll", "data-poll": p.id, "data-voted": String(!!p.myOptionId) },
    h("h3", {}, p.question),
    h("small", {}, `${p.totalVotes} votes${p.closesAt ? ` · closes ${when(p.closesAt)}` : ""}`),
  );
  const options = h("ul", {});
  for (const o of p.options) {
    const vote = h(
      "button",
      { type: "button", class: o.id === p.myOptionId ? "option mine" : "option", "data-option": o.id },
      `${o.text} — ${o.votes}`,
    );
    vote.addEventListener("click", async () => {
      const id = idempotent({ pollId: p.id, optionId: o.id });
      try {
        const r = await polls.castVote({ pollId: p.id, optionId: o.id, requestId: id.requestId });
        id.done();
        if (r.poll) el.replaceWith(pollItem(r.poll));
      } catch (e) {
        showError(el, e); // ALREADY_VOTED, POLL_CLOSED: by their reason
      }
    });
    options.append(h("li", {}, vote));
  }
  el.append(options);
  return el;
}

async function board(main: HTMLElement, communityId: string): Promise<void> {
  const [n, p] = await Promise.all([
    notices.listNotices({ communityId, pageSize: 20 }),
    polls.listPolls({ communityId, pageSize: 20 }),
  ]);
  const list = h("section", { id: "notices" });
  for (const x of n.notices) {
    list.append(
      h(
        "article",
        { class: x.pinned ? "notice pinned" : "notice" },
        h("h3", {}, x.pinned ? h("span", { class: "pin" }, "Pinned") : null, x.title),
        h("small", {}, when(x.createdAt)),
        h("p", {}, x.body),
      ),
    );
  }
  if (!n.notices.length) list.append(h("p", { class: "empty" }, "No notice."));
  const pollList = h("section", { id: "polls" }, ...p.polls.map(pollItem));
  if (!p.polls.length) pollList.append(h("p", { class: "empty" }, "No poll."));
  main.append(h("a", { href: `#/c/${communityId}` }, "← feed"), h("h2", {}, "Notices"), list, h("h2", {}, "Polls"), pollList);
}

function commentItem(c: Comment): HTMLElement {
  return h(
    "li",
    { class: "comment", "data-comment": c.id },
    h("strong", {}, c.author?.displayName ?? ""),
    h("small", {}, ` @${c.author?.handle} · ${when(c.createdAt)}`),
    h("p", {}, c.text),
  );
}

async function postView(main: HTMLElement, postId: string): Promise<void> {
  const { post } = await feed.getPost({ postId });
  if (!post) return;
  const list = h("ul", { id: "comments" });
  const form = h(
    "form",
    { id: "comment" },
    h("label", { class: "field" }, h("span", {}, "Comment"), h("textarea", { name: "text", rows: "2" }), h("small", { class: "violation", "data-field": "text" })),
    h("button", { type: "submit" }, "Comment"),
  );
  onSubmit(form, async (v) => {
    const id = idempotent({ postId, text: v.text });
    const r = await feed.createComment({ postId, text: v.text, requestId: id.requestId });
    id.done();
    form.reset();
    if (r.comment) list.append(commentItem(r.comment));
  });
  main.append(
    h("a", { href: `#/c/${post.communityId}` }, "← feed"),
    postItem(post),
    h("h3", {}, "Comments"),
    list,
    form,
  );
  let pageToken = "";
  do {
    const r = await feed.listComments({ postId, pageSize: 50, pageToken });
    r.comments.forEach((c) => list.append(commentItem(c)));
    pageToken = r.nextPageToken;
  } while (pageToken);
}

// ---------------------------------------------------------------- chat

function roomTitle(r: ChatRoom): string {
  if (r.title) return r.title;
  const me = currentSession()?.userId;
  return r.members.filter((m) => m.user?.userId !== me).map((m) => m.user?.displayName ?? "").join(", ");
}

async function chatRooms(main: HTMLElement): Promise<void> {
  const list = h("ul", { id: "rooms" });
  const render = async () => {
    const r = await chat.listMyRooms({ pageSize: 50 });
    list.replaceChildren(
      ...r.rooms.map((room) =>
        h(
          "li",
          { "data-room": room.id },
          h("a", { href: `#/chat/${room.id}` }, roomTitle(room)),
          room.unreadCount > 0n ? h("span", { class: "unread" }, ` ${room.unreadCount}`) : null,
          h("small", {}, ` ${room.lastMessage?.text ?? ""}`),
        ),
      ),
    );
  };
  const create = h(
    "form",
    { id: "new-room" },
    field("member_handles", "Chat with (handles, comma separated)"),
    field("title", "Group title (optional)"),
    h("button", { type: "submit" }, "Open chat"),
  );
  onSubmit(create, async (v) => {
    const handles = v.member_handles.split(",").map((s) => s.trim()).filter(Boolean);
    const r = await chat.createRoom({ memberHandles: handles, title: v.title, requestId: requestId() });
    if (r.room) location.hash = `#/chat/${r.room.id}`;
  });
  main.append(h("h2", {}, "Chats"), create, list);
  await render();
  // A new room or message elsewhere re-orders the list.
  let timer = 0;
  cleanup = live.subscribe(() => {
    clearTimeout(timer);
    timer = window.setTimeout(() => void render().catch(() => {}), 100);
  });
}

function messageItem(m: ChatMessage): HTMLElement {
  const mine = m.author?.userId === currentSession()?.userId;
  return h(
    "li",
    { class: mine ? "message mine" : "message", "data-seq": String(m.seq), "data-message": m.id },
    h("small", {}, `${m.author?.displayName ?? ""} · ${when(m.createdAt)}`),
    h("p", {}, m.deleted ? "(deleted)" : m.text),
  );
}

async function chatRoom(main: HTMLElement, roomId: string): Promise<void> {
  const { room } = await chat.getRoom({ roomId });
  if (!room) return;
  const list = h("ol", { id: "messages" });
  // Messages in seq order, each once (a live event may carry one the listing already had).
  const put = (m: ChatMessage) => {
    const item = messageItem(m);
    const old = $(`[data-message="${m.id}"]`, list);
    if (old) return old.replaceWith(item);
    const after = [...list.children].find((el) => BigInt((el as HTMLElement).dataset.seq!) > m.seq);
    list.insertBefore(item, after ?? null);
    item.scrollIntoView({ block: "end" });
  };
  const form = h(
    "form",
    { id: "send" },
    h("input", { name: "text", autocomplete: "off", placeholder: "Message" }),
    h("small", { class: "violation", "data-field": "text" }),
    h("button", { type: "submit" }, "Send"),
  );
  onSubmit(form, async (v) => {
    // The same request id on a retry (the button again after an error): sent once.
    const id = idempotent({ roomId, text: v.text });
    const r = await chat.sendMessage({ roomId, text: v.text, requestId: id.requestId });
    id.done();
    form.reset();
    if (r.message) put(r.message);
  });
  main.append(h("a", { href: "#/chat" }, "← chats"), h("h2", {}, roomTitle(room)), list, form);
  cleanup = live.subscribe((ev) => {
    if (ev.roomId !== roomId || !ev.message) return;
    if (
      ev.kind === ChatEventKind.MESSAGE_CREATED ||
      ev.kind === ChatEventKind.MESSAGE_EDITED ||
      ev.kind === ChatEventKind.MESSAGE_DELETED
    )
      put(ev.message);
  });
  const r = await chat.listMessages({ roomId, pageSize: 50 });
  r.messages.forEach(put);
  const last = r.messages.at(-1)?.seq;
  if (last) await chat.markRead({ roomId, seq: last }).catch(() => {});
}

// ---------------------------------------------------------------- start

addEventListener("hashchange", () => void route());
if (currentSession()) void startLive().catch(() => live.start());
void route();
