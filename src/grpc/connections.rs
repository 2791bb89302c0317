//! Connection admission and watchdogs of the gRPC listener (issue 14, points 4 and 5):
//!
//! - **Per-address cap**: at most `grpc.max_connections_per_address` open connections per
//!   client address (IPv6 grouped by /64); peers in `rate_limit.trusted_proxies` are exempt
//!   (a balancer multiplexes many clients). A connection over the cap is closed as soon as it
//!   is accepted, before any byte is read.
//! - **Handshake timeout**: a connection that has not sent its first bytes (the HTTP/2
//!   preface and SETTINGS, or an HTTP/1.1 request head) within `grpc.handshake_timeout_ms` is
//!   closed, so silent connections cannot pile up until the file-descriptor limit. HTTP/1.1
//!   header reads are bounded by hyper's own timer, HTTP/2 peers that stop answering by the
//!   keepalive PINGs (`grpc.http2_keepalive_*`).
//! - **Send timeout**: a unary response that the client has not taken (HTTP/2 flow-control
//!   window kept at 0) within `grpc.response_send_timeout_ms` closes its connection, which
//!   frees every response buffered for it.
//!
//! The listener's accept errors (file descriptors exhausted) back off instead of spinning.
//! Metrics (described in `telemetry`): `maru_grpc_connections` (open), `maru_grpc_connections_total{outcome}` (accepted,
//! rejected), `maru_grpc_connections_closed_total{reason}` (closed by a watchdog),
//! `maru_grpc_responses_unsent` (unary responses produced but not yet taken by their client).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::StreamExt as _;
use futures::task::AtomicWaker;
use ipnet::IpNet;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use super::admission::group;
use crate::config::GrpcSettings;

/// Bytes a client sends first on a healthy connection: the 24-byte HTTP/2 preface plus a
/// SETTINGS frame header (an HTTP/1.1 request head is longer).
const HANDSHAKE_BYTES: u64 = 24 + 9;

/// The limits of [`Connections`], from `grpc.*` and `rate_limit.trusted_proxies`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// 0: no cap.
    pub per_address: usize,
    pub trusted: Vec<IpNet>,
    pub handshake_timeout: Duration,
    pub send_timeout: Duration,
    pub tcp_keepalive: Option<Duration>,
}

impl ConnectionLimits {
    pub fn new(s: &GrpcSettings, trusted: &[IpNet]) -> Self {
        Self {
            per_address: s.max_connections_per_address,
            trusted: trusted.to_vec(),
            handshake_timeout: Duration::from_millis(s.handshake_timeout_ms),
            send_timeout: Duration::from_millis(s.response_send_timeout_ms),
            tcp_keepalive: (s.tcp_keepalive_s > 0).then(|| Duration::from_secs(s.tcp_keepalive_s)),
        }
    }
}

/// The open connections of the listener, by client address.
pub struct Connections {
    limits: ConnectionLimits,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
    unsent: AtomicUsize,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            by_address: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            unsent: AtomicUsize::new(0),
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The connections of `listener` that are admitted, each with its watchdog.
    pub fn incoming(self: &Arc<Self>, listener: TcpListener) -> impl Stream<Item = io::Result<GuardedStream>> + use<> {
        let this = self.clone();
        TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(self.limits.tcp_keepalive).filter_map(
            move |accepted| {
                let this = this.clone();
                async move {
                    match accepted {
                        Ok(stream) => this.admit(stream).map(Ok),
                        Err(e) => {
                            // EMFILE and friends: the pending connection stays queued and accept
                            // fails again at once; back off instead of spinning.
                            metrics::counter!("maru_grpc_connections_total", "outcome" => "accept_error").increment(1);
                            tracing::warn!(error = %e, "accepting a gRPC connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            None
                        }
                    }
                }
            },
        )
    }

    /// The stream with its address slot and watchdog, or `None` (closed) when its address is
    /// at the cap.
    fn admit(self: &Arc<Self>, stream: TcpStream) -> Option<GuardedStream> {
        let peer = stream.peer_addr().ok();
        let key = peer.map(|p| p.ip()).filter(|ip| !self.limits.trusted.iter().any(|n| n.contains(ip))).map(group);
        if let Some(ip) = key {
            let mut by = self.by_address.lock();
            let n = by.entry(ip).or_insert(0);
            if self.limits.per_address > 0 && *n >= self.limits.per_address {
                drop(by);
                metrics::counter!("maru_grpc_connections_total", "outcome" => "rejected_address_limit").increment(1);
                tracing::debug!(peer = ?peer, "connection refused: per-address limit");
                return None;
            }
            *n += 1;
        }
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("maru_grpc_connections").set(open as f64);
        metrics::counter!("maru_grpc_connections_total", "outcome" => "accepted").increment(1);
        let state = Arc::new(ConnState {
            connections: self.clone(),
            bytes_read: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            pending: Mutex::new(HashMap::new()),
            next_response: AtomicU64::new(0),
        });
        let info = ConnInfo {
            tcp: TcpConnectInfo { local_addr: stream.local_addr().ok(), remote_addr: peer },
            conn: state.clone(),
        };
        let watchdog = tokio::spawn(watch(state.clone(), self.limits.handshake_timeout, self.limits.send_timeout));
        Some(GuardedStream { inner: stream, state, info, watchdog, slot: key.map(|ip| AddressSlot(self.clone(), ip)) })
    }
}

/// Gives the address's slot back when the connection closes.
struct AddressSlot(Arc<Connections>, IpAddr);

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut by = self.0.by_address.lock();
        if let Some(n) = by.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.1);
            }
        }
    }
}

/// What the server knows of one connection while serving it.
pub struct ConnState {
    connections: Arc<Connections>,
    bytes_read: AtomicU64,
    killed: AtomicBool,
    /// The connection task, woken to notice `killed`.
    waker: AtomicWaker,
    /// Unary responses not yet taken by the client, by id: when each was produced.
    pending: Mutex<HashMap<u64, Instant>>,
    next_response: AtomicU64,
}

impl ConnState {
    fn kill(&self, reason: &'static str) {
        if !self.killed.swap(true, Ordering::AcqRel) {
            metrics::counter!("maru_grpc_connections_closed_total", "reason" => reason).increment(1);
            tracing::info!(reason, "closing a gRPC connection");
            self.waker.wake();
        }
    }

    /// Registers a unary response until the returned guard is dropped (its body was taken to
    /// the end, or the stream was reset).
    pub fn response_pending(self: &Arc<Self>) -> UnsentResponse {
        let id = self.next_response.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().insert(id, Instant::now());
        let n = self.connections.unsent.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("maru_grpc_responses_unsent").set(n as f64);
        UnsentResponse { conn: self.clone(), id }
    }
}

/// A unary response not yet taken by its client (see [`ConnState::response_pending`]).
pub struct UnsentResponse {
    conn: Arc<ConnState>,
    id: u64,
}

impl Drop for UnsentResponse {
    fn drop(&mut self) {
        self.conn.pending.lock().remove(&self.id);
        let n = self.conn.connections.unsent.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("maru_grpc_responses_unsent").set(n as f64);
    }
}

/// Closes the connection when its handshake or a response takes too long.
async fn watch(state: Arc<ConnState>, handshake: Duration, send: Duration) {
    let started = Instant::now();
    let tick = (handshake.min(send) / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if state.bytes_read.load(Ordering::Acquire) < HANDSHAKE_BYTES {
            if started.elapsed() >= handshake {
                state.kill("handshake_timeout");
                return;
            }
            continue;
        }
        let oldest = state.pending.lock().values().min().copied();
        if oldest.is_some_and(|t| t.elapsed() >= send) {
            state.kill("send_timeout");
            return;
        }
    }
}

/// Connection info the server's requests carry: the TCP addresses, and the connection's state
/// (for the send timeout). [`expose_connect_info`] copies the TCP part where tonic and the
/// admission layer look for it.
#[derive(Clone)]
pub struct ConnInfo {
    pub tcp: TcpConnectInfo,
    pub conn: Arc<ConnState>,
}

/// Makes the peer address available as tonic's [`TcpConnectInfo`] (`Request::remote_addr`).
pub fn expose_connect_info<B>(mut req: http::Request<B>) -> http::Request<B> {
    if let Some(info) = req.extensions().get::<ConnInfo>() {
        let tcp = info.tcp.clone();
        req.extensions_mut().insert(tcp);
    }
    req
}

/// An accepted connection: counts what it reads, and fails once a watchdog closed it.
pub struct GuardedStream {
    inner: TcpStream,
    state: Arc<ConnState>,
    info: ConnInfo,
    watchdog: JoinHandle<()>,
    slot: Option<AddressSlot>,
}

impl GuardedStream {
    fn closed(&self) -> Option<io::Error> {
        self.state
            .killed
            .load(Ordering::Acquire)
            .then(|| io::Error::new(io::ErrorKind::TimedOut, "connection closed by the server"))
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.info.tcp.remote_addr
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.watchdog.abort();
        let _ = self.slot.take();
        let open = self.state.connections.open.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("maru_grpc_connections").set(open as f64);
    }
}

impl Connected for GuardedStream {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.state.waker.register(cx.waker());
        if let Some(e) = self.closed() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.state.bytes_read.fetch_add((buf.filled().len() - before) as u64, Ordering::AcqRel);
        }
        polled
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.closed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.closed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.closed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
