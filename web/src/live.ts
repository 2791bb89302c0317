// The chat's live stream: one Subscribe for every room of the caller. It remembers the last seq
// seen per room and, when the stream drops (server restart, network), reconnects with backoff
// and resumes each room after that seq: the server replays what was missed, and events are
// de-duplicated by (room, seq), so nothing is lost or shown twice.
import { Code, ConnectError } from "@connectrpc/connect";
import { ChatEventKind, type ChatEvent } from "../gen/maru/v1/chat_pb";
import { chat, problem } from "./api";

export type LiveState = "connecting" | "live" | "reconnecting" | "stopped";

type Listener = (ev: ChatEvent) => void;

export class Live {
  private lastSeq = new Map<string, bigint>();
  private listeners = new Set<Listener>();
  private abort: AbortController | null = null;
  state: LiveState = "stopped";
  /// How many times the stream was re-opened after a drop.
  reconnects = 0;
  /// Events received from the server, and of them the replayed ones dropped as duplicates.
  received = 0;
  duplicates = 0;
  lastError = "";
  onState: (s: LiveState) => void = () => {};

  /// Rooms known before subscribing (from ListMyRooms): resume them from their last seq so an
  /// event between the listing and the subscription is not lost.
  know(roomId: string, seq: bigint): void {
    if ((this.lastSeq.get(roomId) ?? -1n) < seq) this.lastSeq.set(roomId, seq);
  }

  seen(roomId: string): bigint | undefined {
    return this.lastSeq.get(roomId);
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  start(): void {
    if (this.abort) return;
    this.abort = new AbortController();
    void this.run(this.abort.signal);
  }

  /// Stops the stream; `forget` (signing out) also drops the rooms' resume points, which
  /// belong to the user who signed out.
  stop(forget = false): void {
    this.abort?.abort();
    this.abort = null;
    if (forget) {
      this.lastSeq.clear();
      this.reconnects = this.received = this.duplicates = 0;
    }
    this.set("stopped");
  }

  private set(s: LiveState): void {
    this.state = s;
    this.onState(s);
  }

  private async run(signal: AbortSignal): Promise<void> {
    let delay = 250;
    let first = true;
    while (!signal.aborted) {
      this.set(first ? "connecting" : "reconnecting");
      try {
        const resume = [...this.lastSeq].map(([roomId, lastSeq]) => ({ roomId, lastSeq }));
        // Live once the server answered (its headers), before any event: an idle stream only
        // carries a heartbeat every `chat.heartbeat_s`.
        const onHeader = () => {
          this.set("live");
          delay = 250;
        };
        for await (const { event } of chat.subscribe({ resume }, { signal, onHeader })) {
          if (event) this.deliver(event);
        }
      } catch (e) {
        if (signal.aborted) return;
        const err = ConnectError.from(e);
        const p = problem(err);
        this.lastError = `${p.reason || p.code} ${p.message}`;
        if (err.code === Code.Unauthenticated) {
          // The access token expired: a unary call refreshes it, then the stream resumes.
          await chat.listMyRooms({ pageSize: 1 }).catch(() => {});
        }
        if (p.retryAfterS !== null) delay = Math.max(delay, p.retryAfterS * 1000);
      }
      if (signal.aborted) return;
      first = false;
      this.reconnects++;
      this.set("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 4000);
    }
  }

  private deliver(ev: ChatEvent): void {
    if (ev.kind === ChatEventKind.HEARTBEAT) return;
    this.received++;
    const last = this.lastSeq.get(ev.roomId) ?? 0n;
    if (ev.seq <= last) {
      this.duplicates++;
      return;
    }
    this.lastSeq.set(ev.roomId, ev.seq);
    for (const l of this.listeners) l(ev);
  }
}

export const live = new Live();
