//! One Subscribe stream: its rooms with the last seq sent in each, a driver task that reads
//! events from PostgreSQL when the hub says there is something new, and the bounded queue to
//! the client (docs/chat.md#the-live-stream).
//!
//! Per room the driver sends the events after the last seq it sent, read from `chat_events`
//! in seq order (gapless: the room lock makes commit order seq order), so nothing is missed when
//! a notice is lost and nothing is sent twice when one is duplicated. The caller's own
//! MEMBER_LEFT is the last event of a room: the room is dropped right after it, whatever
//! follows in the log. The queue is never waited on: when it is full the stream ends with
//! RESOURCE_EXHAUSTED `CHAT_STREAM_TOO_SLOW` (after the events already queued) and the client
//! resumes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};
use uuid::Uuid;

use super::convert::{event_to_pb, heartbeat};
use super::hub::{Hub, Lease, Registration, Shared};
use super::model::EventKind;
use super::store::{self, EventRow};
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason};
use crate::grpc::pb;
use crate::state::AppState;

/// The response of Subscribe: queued events, then the final status if the driver ended the
/// stream with one. Keeps the stream registered with the hub until the response is done.
pub struct EventStream {
    rx: mpsc::Receiver<Box<pb::ChatEvent>>,
    end: oneshot::Receiver<Status>,
    done: bool,
    _registration: Registration,
}

impl Stream for EventStream {
    type Item = Result<pb::SubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Some(Ok(pb::SubscribeResponse { event: Some(*e) }))),
            Poll::Ready(None) => {
                // The driver is gone; it sent its status (if any) before dropping the queue.
                self.done = true;
                Poll::Ready(self.end.try_recv().ok().map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Shared reads a stream asks for before it reads a notified seq for itself.
const SHARED_ROUNDS: usize = 3;

/// Why a driver stops.
enum Stop {
    /// The client went away.
    Gone,
    /// End the stream with this error.
    End(AppError),
}

impl From<AppError> for Stop {
    fn from(e: AppError) -> Self {
        Stop::End(e)
    }
}

fn too_slow(buffer: usize) -> AppError {
    metrics::counter!("maru_chat_slow_subscriber_closes_total").increment(1);
    AppError::Retry {
        code: Code::ResourceExhausted,
        reason: Reason::ChatStreamTooSlow,
        message: format!("the stream fell {buffer} events behind; resume it with the last seq seen per room"),
        retry_after: Duration::from_millis(200),
        metadata: [("buffer".to_owned(), buffer.to_string())].into(),
    }
}

/// How the events of one read are accounted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The backlog of resume entries when the stream opens: neither gap fills nor latency.
    Resume,
    /// Live: notified seqs are timed from their notice; others are gap fills.
    Live,
}

struct Driver {
    state: AppState,
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    /// Boxed: the queue allocates its slots in blocks of 32 up front, so an idle stream holds
    /// 32 pointers rather than 32 events (docs/chat.md#memory).
    tx: mpsc::Sender<Box<pb::ChatEvent>>,
    buffer: usize,
    /// Rooms carried, with the last seq sent (or resumed from).
    rooms: HashMap<Uuid, i64>,
    /// The stream's place in its user's deployment-wide count, renewed on each heartbeat.
    lease: Option<Arc<Lease>>,
}

/// Opens the caller's stream: registers it (limits), places every room of the caller at its
/// resume point (or its current last seq), and starts the driver.
pub async fn open(
    state: &AppState,
    hub: &Arc<Hub>,
    caller: &Caller,
    resume: Vec<(Uuid, i64)>,
) -> AppResult<EventStream> {
    let registration = hub.open_counted(&state.cache, caller.user_id).await?;
    let shared = registration.shared.clone();
    let memberships = store::memberships(&state.db, caller.user_id).await?;
    let current: HashMap<Uuid, i64> = memberships.iter().map(|m| (m.room_id, m.last_seq)).collect();
    let mut rooms: HashMap<Uuid, i64> = current.clone();
    let mut resumed = Vec::new();
    for (i, (room, last)) in resume.iter().enumerate() {
        // Rooms the caller is not a member of are skipped: nothing is sent for them.
        if let Some(&now) = current.get(room) {
            if *last > now {
                return Err(AppError::invalid(
                    &format!("resume[{i}].last_seq"),
                    format!("is beyond the room's last seq ({now})"),
                ));
            }
            rooms.insert(*room, *last);
            resumed.push(*room);
        }
    }
    if !resume.is_empty() {
        metrics::counter!("maru_chat_resumes_total").increment(1);
    }
    for room in rooms.keys() {
        hub.add_room(shared.id, *room);
    }
    let buffer = hub.settings.stream_buffer;
    let (tx, rx) = mpsc::channel(buffer);
    let (end_tx, end) = oneshot::channel();
    let lease = registration.lease.clone();
    let driver = Driver { state: state.clone(), hub: hub.clone(), shared, tx, buffer, rooms, lease };
    // The stream's final status carries the request id of the Subscribe call.
    let run = driver.run(resumed, end_tx);
    match crate::request_id::current() {
        Some(id) => tokio::spawn(crate::request_id::scope(id, run)),
        None => tokio::spawn(run),
    };
    Ok(EventStream { rx, end, done: false, _registration: registration })
}

impl Driver {
    async fn run(mut self, resumed: Vec<Uuid>, end_tx: oneshot::Sender<Status>) {
        let period = Duration::from_secs(self.hub.settings.heartbeat_s);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // First the resume backlog, then a check of every room against the database (notices
        // published before the rooms were registered with the hub are not lost).
        let first: Vec<(Uuid, i64)> = resumed.iter().filter_map(|r| self.rooms.get(r).map(|l| (*r, *l))).collect();
        // The reads are boxed: the task of an idle stream keeps only the waiting state, not room
        // for the largest read's future (docs/chat.md#memory).
        let mut outcome = Box::pin(self.send_after(&first, Read::Resume, &HashMap::new())).await;
        let mut sync = true;
        while outcome.is_ok() {
            outcome = Box::pin(self.step(sync)).await;
            if outcome.is_err() {
                break;
            }
            tokio::select! {
                _ = self.shared.notify.notified() => sync = false,
                _ = tick.tick() => {
                    sync = true;
                    if let Some(lease) = &self.lease {
                        lease.refresh();
                    }
                    outcome = self.push(heartbeat(Utc::now()));
                }
                _ = self.tx.closed() => outcome = Err(Stop::Gone),
            }
        }
        if let Err(Stop::End(err)) = outcome {
            let _ = end_tx.send(err.into());
        }
    }

    /// Sends what is pending: the rooms with notices (their new events read once for the
    /// replica by the hub and shared), and after a sync request (or when `sync`) every room
    /// whose last seq in the database is past the stream's, plus rooms new to it (read for
    /// this stream alone).
    async fn step(&mut self, sync: bool) -> Result<(), Stop> {
        let pending = self.shared.take();
        if let Some(err) = pending.end {
            return Err(Stop::End(err));
        }
        // Rooms with notices past the stream's last seq: the highest seq notified.
        let mut upto: HashMap<Uuid, i64> = HashMap::new();
        let mut notified: HashMap<(Uuid, i64), i64> = HashMap::new();
        for (room, seqs) in &pending.rooms {
            if let Some(&last) = self.rooms.get(room) {
                for &(seq, at) in seqs {
                    if seq > last {
                        let u = upto.entry(*room).or_insert(seq);
                        *u = (*u).max(seq);
                        notified.insert((*room, seq), at);
                    }
                }
            }
        }
        // Rooms the database check finds behind: the seq they must reach (`None`: a room the
        // caller left, read up to their MEMBER_LEFT).
        let mut behind: HashMap<Uuid, Option<i64>> = HashMap::new();
        if sync || pending.sync {
            let memberships = store::memberships(&self.state.db, self.shared.user).await?;
            let mut member: HashMap<Uuid, i64> = HashMap::new();
            for m in &memberships {
                member.insert(m.room_id, m.last_seq);
            }
            for (room, last) in &self.rooms {
                // A room left meanwhile is read up to the caller's MEMBER_LEFT.
                match member.get(room) {
                    None => {
                        behind.insert(*room, None);
                    }
                    Some(&now) if now > *last => {
                        behind.insert(*room, Some(now));
                    }
                    Some(_) => {}
                }
            }
            for m in memberships {
                if let std::collections::hash_map::Entry::Vacant(e) = self.rooms.entry(m.room_id) {
                    // A room joined since the stream opened: from its creation for its first
                    // members, else from the caller's MEMBER_JOINED.
                    let start = if m.at_creation { 0 } else { m.joined_seq - 1 };
                    e.insert(start);
                    self.hub.add_room(self.shared.id, m.room_id);
                    if m.last_seq > start {
                        behind.insert(m.room_id, Some(m.last_seq));
                    }
                }
            }
        }
        for (room, target) in upto {
            self.read_shared(room, target, &notified).await?;
        }
        // What the shared reads did not bring yet is read for this stream.
        let want: Vec<(Uuid, i64)> = behind
            .into_iter()
            .filter_map(|(room, target)| {
                let last = *self.rooms.get(&room)?;
                target.is_none_or(|t| t > last).then_some((room, last))
            })
            .collect();
        self.send_after(&want, Read::Live, &notified).await
    }

    /// Sends the events of `room` after the stream's last seq up to at least `target` (a
    /// notified seq), from the hub's shared read. A read that began before the notice may end
    /// short of it: the stream asks again from its new last seq, and after
    /// [`SHARED_ROUNDS`] reads for itself.
    async fn read_shared(&mut self, room: Uuid, target: i64, notified: &HashMap<(Uuid, i64), i64>) -> Result<(), Stop> {
        let limit = self.buffer + 1;
        for _ in 0..SHARED_ROUNDS {
            let Some(&last) = self.rooms.get(&room) else { return Ok(()) };
            if last >= target {
                return Ok(());
            }
            let events = self.hub.read_after(&self.state.db, room, last, limit).await?;
            self.send_rows(events.iter().map(|e| e.as_ref()), Read::Live, notified)?;
        }
        match self.rooms.get(&room) {
            Some(&last) if last < target => self.send_after(&[(room, last)], Read::Live, notified).await,
            _ => Ok(()),
        }
    }

    /// Sends the events of `rooms` after their seqs, read for this stream alone, at most what
    /// the queue takes.
    async fn send_after(
        &mut self,
        rooms: &[(Uuid, i64)],
        read: Read,
        notified: &HashMap<(Uuid, i64), i64>,
    ) -> Result<(), Stop> {
        if rooms.is_empty() {
            return Ok(());
        }
        let (ids, after): (Vec<Uuid>, Vec<i64>) = rooms.iter().copied().unzip();
        let free = self.tx.capacity();
        let rows = store::events_after(&self.state.db, &ids, &after, free as i64 + 1).await?;
        self.send_rows(rows.iter(), read, notified)
    }

    /// Queues the events read (per room in seq order) that come after the stream's last seq
    /// of their room; the caller's own MEMBER_LEFT is the last event of a room.
    fn send_rows<'a>(
        &mut self,
        rows: impl Iterator<Item = &'a EventRow>,
        read: Read,
        notified: &HashMap<(Uuid, i64), i64>,
    ) -> Result<(), Stop> {
        let mut left = false;
        let now = Utc::now();
        for row in rows {
            let Some(last) = self.rooms.get(&row.room_id).copied() else { continue };
            if row.seq <= last {
                continue;
            }
            self.push(event_to_pb(row))?;
            self.rooms.insert(row.room_id, row.seq);
            metrics::counter!("maru_chat_events_fanned_out_total").increment(1);
            if read == Read::Live {
                let committed = match notified.get(&(row.room_id, row.seq)) {
                    Some(&ms) => chrono::DateTime::from_timestamp_millis(ms).unwrap_or(row.created_at),
                    None => {
                        metrics::counter!("maru_chat_gap_fills_total").increment(1);
                        row.created_at
                    }
                };
                let secs = (now - committed).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                metrics::histogram!("maru_chat_delivery_seconds").record(secs);
            }
            if row.kind == EventKind::MemberLeft.as_db() && row.user_id == Some(self.shared.user) {
                self.rooms.remove(&row.room_id);
                self.hub.remove_room(self.shared.id, row.room_id);
                left = true;
            }
        }
        if left {
            // Re-joined since? The next step re-reads the caller's rooms.
            self.shared.request_sync();
        }
        Ok(())
    }

    /// Queues one event; a full queue ends the stream (the client is too slow).
    fn push(&self, e: pb::ChatEvent) -> Result<(), Stop> {
        match self.tx.try_send(Box::new(e)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Stop::End(too_slow(self.buffer))),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Gone),
        }
    }
}
