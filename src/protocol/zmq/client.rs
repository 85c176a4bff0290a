//! A face's side: a DEALER for requests and a SUB for events.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeromq::{
    DealerSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqMessage,
};

use super::keys::CurveSecurity;
use super::wire;
use super::{Endpoints, MAX_FRAME, ZmqError, check_endpoint};
use crate::protocol::Event;
use crate::protocol::api::{BoxFuture, Client, ClientError, Request, Response};

/// How many events a slow local subscriber may fall behind before it gets `Lagged`.
const EVENT_BUFFER: usize = 16 * 1024;

/// Calls queued for the connection task before callers wait for room.
const CALL_QUEUE: usize = 1024;

/// Longest quiet time on a connection with a long poll waiting before it is probed.
const MAX_HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Longest pause between attempts to reach the event socket.
const MAX_EVENT_BACKOFF: Duration = Duration::from_secs(5);

/// A [`Client`] over ZeroMQ.
///
/// Calls go through one DEALER socket owned by a background task, which matches answers to
/// calls by id, so any number of calls may be in flight at once. Every call but
/// [`Request::WaitRun`] fails with [`ClientError::Unreachable`] when no answer comes within the
/// request timeout; after such a timeout the socket is replaced by a new one with a fresh
/// identity, and the read-only calls still waiting are sent again on it. A lost connection
/// (the principal stopped) fails every waiting call, `WaitRun` included; the next call
/// connects afresh.
///
/// While a long poll waits, the connection is probed with a status request whenever it has
/// been quiet for a while (at most 5 s): a principal that stopped answering, or a peer that
/// vanished without closing the connection, is noticed like any unanswered request.
///
/// Events arrive through a SUB socket. As with any ZeroMQ subscription, events published
/// before it took effect (the first moments after [`ZmqClient::connect`]) are not seen.
///
/// Dropping the client stops both tasks and closes the sockets.
pub struct ZmqClient {
    calls: mpsc::Sender<Call>,
    events: broadcast::Sender<Event>,
    tasks: [JoinHandle<()>; 2],
}

impl ZmqClient {
    /// A client of the principal at `endpoints`. It connects in the background, so this only
    /// fails for endpoints that are not valid; a principal that cannot be reached shows as
    /// calls failing with [`ClientError::Unreachable`] after `request_timeout`.
    pub async fn connect(
        endpoints: &Endpoints,
        request_timeout: Duration,
    ) -> Result<ZmqClient, ZmqError> {
        Self::connect_secure(endpoints, request_timeout, None).await
    }

    /// [`ZmqClient::connect`] to a CURVE endpoint (RFC 25/26): requests, answers and events
    /// are encrypted and authenticated under `security` (the client's pair and the
    /// principal's public key).
    pub async fn connect_curve(
        endpoints: &Endpoints,
        request_timeout: Duration,
        security: CurveSecurity,
    ) -> Result<ZmqClient, ZmqError> {
        Self::connect_secure(endpoints, request_timeout, Some(security)).await
    }

    async fn connect_secure(
        endpoints: &Endpoints,
        request_timeout: Duration,
        curve: Option<CurveSecurity>,
    ) -> Result<ZmqClient, ZmqError> {
        check_endpoint(&endpoints.requests)?;
        check_endpoint(&endpoints.events)?;
        let (calls, call_rx) = mpsc::channel(CALL_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let connection = Connection {
            endpoint: endpoints.requests.clone(),
            timeout: request_timeout,
            next_id: 1,
            pending: HashMap::new(),
            link: None,
            connecting: None,
            last_heard: Instant::now(),
            heartbeat: None,
            curve: curve.clone(),
        };
        let tasks = [
            tokio::spawn(connection.run(call_rx)),
            tokio::spawn(receive_events(
                endpoints.events.clone(),
                request_timeout,
                events.clone(),
                curve,
            )),
        ];
        Ok(ZmqClient {
            calls,
            events,
            tasks,
        })
    }
}

impl Drop for ZmqClient {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Client for ZmqClient {
    fn call(&self, request: Request) -> BoxFuture<'_, Result<Response, ClientError>> {
        Box::pin(async move {
            let gone = || {
                ClientError::Unreachable(
                    "the client's connection task has stopped; connect again".to_string(),
                )
            };
            let (reply, answer) = oneshot::channel();
            self.calls
                .send(Call { request, reply })
                .await
                .map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// A call handed to the connection task.
struct Call {
    request: Request,
    reply: oneshot::Sender<Result<Response, ClientError>>,
}

/// A call the connection task holds until it is answered or given up.
struct Pending {
    request: Request,
    reply: oneshot::Sender<Result<Response, ClientError>>,
    /// None for long polls, which wait as long as the connection lives.
    deadline: Option<Instant>,
    /// Whether it went out on the current socket.
    sent: bool,
}

/// A connected DEALER and the monitor that reports its peer going away.
struct Link {
    dealer: DealerSocket,
    monitor: futures::channel::mpsc::Receiver<SocketEvent>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Link, zeromq::ZmqError>> + Send>>;

/// What woke the connection task.
enum Step {
    Call(Option<Call>),
    Frame(zeromq::ZmqResult<ZmqMessage>),
    Monitor(Option<SocketEvent>),
    Connected(Result<Link, zeromq::ZmqError>),
    Deadline,
    Heartbeat,
}

/// The answer slot of a heartbeat in flight, kept so that the call counts as wanted.
type HeartbeatReply = oneshot::Receiver<Result<Response, ClientError>>;

/// Owns the DEALER socket and every call in flight.
struct Connection {
    endpoint: String,
    timeout: Duration,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    link: Option<Link>,
    connecting: Option<Connecting>,
    /// When the current socket last brought an answer (or connected).
    last_heard: Instant,
    /// The heartbeat in flight: its call id.
    heartbeat: Option<(u64, HeartbeatReply)>,
    /// CURVE on a CURVE endpoint.
    curve: Option<CurveSecurity>,
}

impl Connection {
    /// When to probe the connection: only while a long poll waits on it.
    fn heartbeat_due(&self) -> Option<Instant> {
        let waiting = self
            .pending
            .values()
            .any(|p| p.deadline.is_none() && p.sent);
        (self.link.is_some() && self.heartbeat.is_none() && waiting)
            .then(|| self.last_heard + self.timeout.min(MAX_HEARTBEAT_EVERY))
    }

    async fn send_heartbeat(&mut self) {
        let (reply, answer) = oneshot::channel();
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            Pending {
                request: Request::Status,
                reply,
                deadline: Some(Instant::now() + self.timeout),
                sent: false,
            },
        );
        self.heartbeat = Some((id, answer));
        self.send(id).await;
    }

    async fn run(mut self, mut calls: mpsc::Receiver<Call>) {
        // Connecting early makes the first call as fast as later ones.
        self.start_connecting();
        loop {
            if let Some((id, _)) = &self.heartbeat
                && !self.pending.contains_key(id)
            {
                self.heartbeat = None; // answered, expired or failed
            }
            let deadline = self.pending.values().filter_map(|p| p.deadline).min();
            let heartbeat = self.heartbeat_due();
            let step = tokio::select! {
                call = calls.recv() => Step::Call(call),
                step = link_step(&mut self.link) => step,
                linked = connected(&mut self.connecting) => Step::Connected(linked),
                () = sleep_until(deadline) => Step::Deadline,
                () = sleep_until(heartbeat) => Step::Heartbeat,
            };
            match step {
                // The client was dropped.
                Step::Call(None) => break,
                Step::Call(Some(call)) => self.accept(call).await,
                Step::Frame(Ok(message)) => self.on_answer(message),
                Step::Frame(Err(e)) => self.lose(&e.to_string()),
                Step::Monitor(Some(SocketEvent::Disconnected(_)) | None) => {
                    self.lose("the principal closed the connection");
                }
                Step::Monitor(Some(_)) => {}
                Step::Connected(linked) => {
                    self.connecting = None;
                    self.on_connected(linked).await;
                }
                Step::Deadline => self.expire().await,
                Step::Heartbeat => self.send_heartbeat().await,
            }
        }
    }

    /// Starts connecting a fresh DEALER unless one is connected or on its way.
    fn start_connecting(&mut self) {
        if self.link.is_some() || self.connecting.is_some() {
            return;
        }
        let endpoint = self.endpoint.clone();
        let timeout = self.timeout;
        let curve = self.curve.clone();
        self.connecting = Some(Box::pin(async move {
            let mut options = SocketOptions::default();
            // The crate retries refused connections until this runs out. An answer larger
            // than any the principal sends closes the connection unread.
            options.connect_timeout(timeout).max_message_size(MAX_FRAME);
            if let Some(curve) = curve {
                options.curve(curve);
            }
            // No identity is set: the ROUTER assigns a fresh one to every new socket, which
            // avoids the crate's trouble with peers reconnecting under the same identity.
            let mut dealer = DealerSocket::with_options(options);
            let monitor = dealer.monitor();
            dealer.connect(&endpoint).await?;
            Ok(Link { dealer, monitor })
        }));
    }

    async fn accept(&mut self, call: Call) {
        // Callers that gave up (a dropped long poll) need no answer.
        self.pending.retain(|_, p| !p.reply.is_closed());
        let id = self.next_id;
        self.next_id += 1;
        let deadline = match call.request {
            Request::WaitRun { .. } => None,
            _ => Some(Instant::now() + self.timeout),
        };
        self.pending.insert(
            id,
            Pending {
                request: call.request,
                reply: call.reply,
                deadline,
                sent: false,
            },
        );
        if self.link.is_some() {
            self.send(id).await;
        } else {
            self.start_connecting();
        }
    }

    /// Sends pending call `id` on the current socket.
    async fn send(&mut self, id: u64) {
        let (Some(link), Some(pending)) = (self.link.as_mut(), self.pending.get_mut(&id)) else {
            return;
        };
        let frame = match wire::encode(id, &pending.request) {
            Ok(frame) if frame.len() <= MAX_FRAME => frame,
            Ok(frame) => {
                let why = format!(
                    "the request is {} bytes, more than the {MAX_FRAME} a message may carry",
                    frame.len()
                );
                self.finish(id, Err(ClientError::Protocol(why)));
                return;
            }
            Err(e) => {
                let why = format!("the request cannot be encoded: {e}");
                self.finish(id, Err(ClientError::Protocol(why)));
                return;
            }
        };
        let message = ZmqMessage::from(frame);
        // Bounded, because a send waits while the peer's queue is full.
        match tokio::time::timeout(self.timeout, link.dealer.send(message)).await {
            Ok(Ok(())) => pending.sent = true,
            Ok(Err(e)) => self.lose(&e.to_string()),
            Err(_) => self.lose("sending stalled"),
        }
    }

    async fn on_connected(&mut self, linked: Result<Link, zeromq::ZmqError>) {
        match linked {
            Ok(link) => {
                tracing::debug!(endpoint = %self.endpoint, "connected");
                self.link = Some(link);
                self.last_heard = Instant::now();
                let mut unsent: Vec<u64> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| !p.sent)
                    .map(|(id, _)| *id)
                    .collect();
                unsent.sort_unstable();
                for id in unsent {
                    self.send(id).await;
                }
            }
            Err(e) => {
                tracing::debug!(endpoint = %self.endpoint, "connecting failed: {e}");
                let why = match &e {
                    zeromq::ZmqError::Refused(reason) => format!(
                        "the principal at {} refused this client: {reason}",
                        self.endpoint
                    ),
                    zeromq::ZmqError::MechanismMismatch(theirs, ours) => format!(
                        "the principal at {} uses {theirs} security and this client {ours}: {}",
                        self.endpoint,
                        if *theirs == "CURVE" {
                            "give --server-key and --key"
                        } else {
                            "it does not use CURVE; leave out --server-key and --key"
                        }
                    ),
                    _ => format!(
                        "no principal answers at {} ({e}); is it running, and is this its address?",
                        self.endpoint
                    ),
                };
                // Nothing was sent without a socket, so every waiting call is affected.
                for id in self.pending.keys().copied().collect::<Vec<_>>() {
                    self.finish(id, Err(ClientError::Unreachable(why.clone())));
                }
            }
        }
    }

    fn on_answer(&mut self, message: ZmqMessage) {
        self.last_heard = Instant::now();
        let frames = message.into_vec();
        let frame = match frames.as_slice() {
            [frame] => frame.clone(),
            _ => {
                tracing::warn!(
                    "dropped an answer of {} frames; an answer is exactly one frame",
                    frames.len()
                );
                return;
            }
        };
        match wire::decode::<Response>(&frame) {
            Ok((id, answer)) => {
                if self.pending.contains_key(&id) {
                    self.finish(id, Ok(answer));
                } else {
                    tracing::debug!("dropped a late answer to request {id}");
                }
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, "dropped an answer: {e}");
                if let Some(id) = e.id() {
                    self.finish(id, Err(ClientError::Protocol(e.to_string())));
                }
            }
        }
    }

    /// Fails calls past their deadline; if one of them went out, replaces the socket.
    async fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        let mut unanswered = false;
        for id in expired {
            let why = match self.pending.get(&id) {
                Some(p) if p.sent => {
                    unanswered = true;
                    format!(
                        "the principal at {} did not answer within {:?}",
                        self.endpoint, self.timeout
                    )
                }
                _ => format!(
                    "no principal answered at {} within {:?}; is it running, and is this its \
                     address?",
                    self.endpoint, self.timeout
                ),
            };
            self.finish(id, Err(ClientError::Unreachable(why)));
        }
        if unanswered {
            self.reset();
        }
    }

    /// Paranoid Pirate: a request went unanswered, so the socket is not trusted any more. A new
    /// socket (and so a new identity) replaces it; answers still due on the old one are lost,
    /// so calls that can safely be repeated are sent again and the others fail.
    fn reset(&mut self) {
        tracing::debug!(endpoint = %self.endpoint, "a request timed out; replacing the socket");
        self.link = None;
        let sent: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, _)| *id)
            .collect();
        for id in sent {
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            if can_repeat(&pending.request) {
                pending.sent = false;
            } else {
                let why = "the connection was reset after another request went unanswered; \
                           this request may or may not have been carried out (check `history`)";
                self.finish(id, Err(ClientError::Unreachable(why.to_string())));
            }
        }
        if !self.pending.is_empty() {
            self.start_connecting();
        }
    }

    /// The connection is gone: every waiting call fails, the next one connects afresh.
    fn lose(&mut self, why: &str) {
        tracing::debug!(endpoint = %self.endpoint, "connection lost: {why}");
        self.link = None;
        let why = format!(
            "lost the connection to the principal at {}: {why}",
            self.endpoint
        );
        for id in self.pending.keys().copied().collect::<Vec<_>>() {
            self.finish(id, Err(ClientError::Unreachable(why.clone())));
        }
    }

    fn finish(&mut self, id: u64, result: Result<Response, ClientError>) {
        if let Some(pending) = self.pending.remove(&id) {
            // The caller may have given up meanwhile; nothing to do then.
            let _ = pending.reply.send(result);
        }
    }
}

/// Requests that change nothing, so sending them twice is harmless.
fn can_repeat(request: &Request) -> bool {
    !request.changes_state()
}

/// The next answer or monitor event of the current socket; never, without one.
async fn link_step(link: &mut Option<Link>) -> Step {
    match link {
        Some(link) => tokio::select! {
            frame = link.dealer.recv() => Step::Frame(frame),
            event = link.monitor.next() => Step::Monitor(event),
        },
        None => std::future::pending().await,
    }
}

/// The outcome of the connection attempt under way; never, without one.
async fn connected(connecting: &mut Option<Connecting>) -> Result<Link, zeromq::ZmqError> {
    match connecting {
        Some(connecting) => connecting.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Feeds `events` from a SUB socket on `endpoint`, reconnecting with a fresh socket whenever
/// the connection is lost, until the client is dropped (which aborts this task).
async fn receive_events(
    endpoint: String,
    timeout: Duration,
    events: broadcast::Sender<Event>,
    curve: Option<CurveSecurity>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut options = SocketOptions::default();
        options.connect_timeout(timeout).max_message_size(MAX_FRAME);
        if let Some(curve) = &curve {
            options.curve(curve.clone());
        }
        let mut sub = SubSocket::with_options(options);
        let mut monitor = sub.monitor();
        // Remembered by the socket and sent to the publisher on connecting.
        if let Err(e) = sub.subscribe("").await {
            tracing::debug!(%endpoint, "subscribing failed: {e}");
        }
        if let Err(e) = sub.connect(&endpoint).await {
            tracing::debug!(%endpoint, "connecting to the event socket failed: {e}");
            drop(sub);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_EVENT_BACKOFF);
            continue;
        }
        backoff = Duration::from_millis(50);
        let mut feed = Feed::default();
        loop {
            tokio::select! {
                message = sub.recv() => match message {
                    Ok(message) => {
                        // One event per message.
                        let frames = message.into_vec();
                        if let [frame] = frames.as_slice() {
                            feed.on_event(frame, &events);
                        } else {
                            tracing::warn!(%endpoint, "dropped an event of {} frames", frames.len());
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%endpoint, "event socket failed: {e}");
                        break;
                    }
                },
                event = monitor.next() => {
                    if matches!(event, Some(SocketEvent::Disconnected(_)) | None) {
                        tracing::debug!(%endpoint, "event socket disconnected");
                        break;
                    }
                }
            }
        }
        // A new socket rather than the crate's own reconnect: see the module docs.
    }
}

/// The events of one SUB connection: gaps in their numbers, and undecodable ones.
#[derive(Default)]
struct Feed {
    last_seq: Option<u64>,
    /// Events missed since the last warning.
    missed: u64,
    last_warned: Option<Instant>,
    warned_undecodable: bool,
}

/// Gaps are told at most this often, summed: a principal under a flood of output drops
/// events for a slow subscriber many times a second.
const GAP_WARNING_EVERY: Duration = Duration::from_secs(5);

impl Feed {
    fn on_event(&mut self, frame: &[u8], events: &broadcast::Sender<Event>) {
        match wire::decode::<Event>(frame) {
            Ok((seq, event)) => {
                if let Some(last) = self.last_seq
                    && seq > last + 1
                {
                    self.missed += seq - last - 1;
                }
                // A smaller number means the principal restarted and counts afresh.
                self.last_seq = Some(seq);
                // Only someone who follows the events cares that some were missed.
                if self.missed > 0
                    && events.receiver_count() > 0
                    && self
                        .last_warned
                        .is_none_or(|t| t.elapsed() >= GAP_WARNING_EVERY)
                {
                    tracing::warn!(
                        "missed {} events from the principal (it drops them for a subscriber \
                         that falls behind)",
                        self.missed
                    );
                    self.missed = 0;
                    self.last_warned = Some(Instant::now());
                }
                // No local subscriber is not an error.
                let _ = events.send(event);
            }
            Err(e) => {
                // One line per connection: a principal of another version would flood the log.
                if !self.warned_undecodable {
                    tracing::warn!("dropped an event: {e}");
                    self.warned_undecodable = true;
                }
            }
        }
    }
}
