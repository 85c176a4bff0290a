//! The principal's side: a ROUTER answering requests and a PUB publishing events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::task::{AbortHandle, Id as TaskId, JoinSet};
use tokio_util::sync::CancellationToken;
use zeromq::{
    PubSocket, RouterSendHalf, RouterSocket, Socket, SocketEvent, SocketOptions, SocketRecv,
    SocketSend, ZmqMessage,
};

use super::agents::{AgentGate, serve_agents_with};
use super::auth::Role;
use super::keys::{self, KeyRing, KeyRole};
use super::limits::{self, PeersClosed};
use super::listen::{HANDSHAKE_TIMEOUT, bind, hex};
use super::shares::{Limit, Requester, Shares, Slot};
use super::wire;
use super::{Endpoints, MAX_FRAME, MAX_SUBSCRIBER_MESSAGE, ZmqError};
use crate::protocol::Event;
use crate::protocol::api::{
    ApiError, ApiErrorKind, Caller, Client, ClientError, Request, Response,
};

/// Requests being served at once, over all peers; beyond this new ones are refused as busy
/// rather than queued without bound (long polls hold their slot until their run ends).
pub const MAX_IN_FLIGHT: usize = 4096;

/// Requests one peer (one connection) may have in progress at once, so that one client
/// cannot take the whole [`MAX_IN_FLIGHT`] budget with long polls. A face needs a few dozen
/// at most (the busiest sends 32 calls at a time).
pub const MAX_IN_FLIGHT_PER_PEER: usize = 256;

/// "Busy" refusals (and answers to bad frames) being sent at once. Past this, requests over
/// a budget are dropped unanswered (their callers time out), so that a flood of requests
/// cannot spawn tasks without bound either.
const MAX_REFUSALS: usize = 256;

/// Frames a request message may have on the wire. A request is one frame; a few more are
/// read (and answered with a warning) rather than closing the connection; many more close it.
const MAX_REQUEST_FRAMES: usize = 16;

/// Answers queued for one peer (at most every request it may have in progress) and their
/// bytes (two of the largest answers). Beyond either, answers to that peer are dropped and
/// counted: it has stopped reading, and its calls time out and are repeated on a new socket.
const REPLY_QUEUE_MESSAGES: usize = MAX_IN_FLIGHT_PER_PEER + MAX_REFUSALS;
const REPLY_QUEUE_BYTES: usize = 2 * MAX_FRAME;

/// Events queued for one subscriber, and their bytes (the same bounds hold for the socket's
/// queue in front of all subscribers). Beyond either, events are dropped for that subscriber
/// only (it sees the gap in the sequence numbers) and counted.
const EVENT_QUEUE_MESSAGES: usize = 4096;
const EVENT_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// How often dropped answers and events are summed up in the log (when there were any).
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How long a reply may wait for room in a peer's send queue before it is dropped, so that a
/// peer that stopped reading cannot pin a task forever.
const REPLY_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `client` (the principal, in-process) on the given endpoints until `stop` is
/// cancelled. Returns the actually bound endpoints (port 0 resolved) once listening.
///
/// Each request is served in its own task, so a long poll (`WaitRun`) never holds up other
/// requests. Frames that are malformed, truncated or of another protocol version are logged
/// and dropped, and answered with an `invalid_input` error when their id can be read. Events from `client.subscribe()` are published in order on the PUB socket.
///
/// An `ipc://` socket file left behind by a principal that died is replaced; one that another
/// process still listens on is reported as [`ZmqError::Bind`].
///
/// Bounds (through the patched `zeromq` crate in `vendor/zeromq`): a peer that declares a
/// message larger than [`MAX_FRAME`] on the request socket, or than
/// [`MAX_SUBSCRIBER_MESSAGE`] on the events socket, is disconnected before anything is
/// allocated for it; a connection must finish its handshake within a few seconds; a peer has
/// at most [`MAX_IN_FLIGHT_PER_PEER`] requests in progress, and the ones of a peer that
/// disconnects are dropped; answers and events queued for a peer that stopped reading are
/// bounded, and what is dropped for it is counted and logged.
pub async fn serve(
    endpoints: &Endpoints,
    client: Arc<dyn Client>,
    stop: CancellationToken,
) -> Result<Endpoints, ZmqError> {
    serve_with(endpoints, client, stop, None, None)
        .await
        .map(|b| b.endpoints)
}

/// What a principal listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Requests and events.
    pub endpoints: Endpoints,
    /// Where remote agents connect, when they are served.
    pub agents: Option<String>,
}

/// [`serve`], and with `agents` also an agents socket
/// at [`Endpoints::agents_for`] the requests endpoint, whose messages go to the engine (see
/// [`super::agents`]); `status` on these endpoints says where it is.
pub async fn serve_principal(
    endpoints: &Endpoints,
    client: Arc<dyn Client>,
    stop: CancellationToken,
    agents: Option<AgentGate>,
) -> Result<Bound, ZmqError> {
    serve_with(endpoints, client, stop, agents, None).await
}

/// [`serve_principal`] with CURVE (RFC 25/26) on all three sockets: only keys of `ring`
/// connect, operators and viewers to requests and events, agents to the agents socket; the
/// role of a request is its key's in the authorized-keys file as it is when it arrives.
pub async fn serve_principal_curve(
    endpoints: &Endpoints,
    client: Arc<dyn Client>,
    stop: CancellationToken,
    ring: Arc<KeyRing>,
    agents: Option<AgentGate>,
) -> Result<Bound, ZmqError> {
    serve_with(endpoints, client, stop, agents, Some(ring)).await
}

/// Roles that may connect to the requests and events sockets.
/// Agents connect to the requests socket too, for `status` only (it says where the agents
/// socket is).
const CLIENT_ROLES: &[KeyRole] = &[KeyRole::Operator, KeyRole::Viewer, KeyRole::Agent];

async fn serve_with(
    endpoints: &Endpoints,
    client: Arc<dyn Client>,
    stop: CancellationToken,
    agents: Option<AgentGate>,
    ring: Option<Arc<KeyRing>>,
) -> Result<Bound, ZmqError> {
    let mut options = SocketOptions::default();
    options
        .max_message_size(MAX_FRAME)
        .max_message_frames(MAX_REQUEST_FRAMES)
        .handshake_timeout(Some(HANDSHAKE_TIMEOUT))
        .send_queue_limits(REPLY_QUEUE_MESSAGES, REPLY_QUEUE_BYTES)
        .recv_budget(limits::recv_budget());
    if let Some(ring) = &ring {
        options.curve(ring.server_for(CLIENT_ROLES));
    }
    let mut router = RouterSocket::with_options(options);
    // Taken before binding, so that no disconnect is missed.
    let peers = router.monitor();
    let requests = bind(&mut router, &endpoints.requests).await?;
    let mut options = SocketOptions::default();
    options
        .max_message_size(MAX_SUBSCRIBER_MESSAGE)
        .max_message_frames(1)
        .handshake_timeout(Some(HANDSHAKE_TIMEOUT))
        .send_queue_limits(EVENT_QUEUE_MESSAGES, EVENT_QUEUE_BYTES)
        .recv_budget(limits::recv_budget());
    if let Some(ring) = &ring {
        options.curve(ring.server_for(CLIENT_ROLES));
    }
    let mut publisher = PubSocket::with_options(options);
    // On failure here `router` is dropped, which closes its listener again.
    let events = bind(&mut publisher, &endpoints.events).await?;
    let bound = Endpoints {
        requests: requests.to_string(),
        events: events.to_string(),
    };
    // Subscribed before returning, so that no event after `serve` returns is missed.
    let event_rx = client.subscribe();
    tokio::spawn(publish_events(publisher, event_rx, stop.clone()));
    let agents = match agents {
        Some(gate) => {
            let at = Endpoints::agents_for(&endpoints.requests);
            match serve_agents_with(&at, gate, stop.clone(), ring.clone()).await {
                // Said to agents that run elsewhere: a relative socket path means nothing there.
                Ok(at) => Some(absolute_ipc(&at)),
                Err(e) => {
                    // The sockets bound so far close with the token.
                    stop.cancel();
                    return Err(e);
                }
            }
        }
        None => None,
    };
    tokio::spawn(serve_requests(
        router,
        peers,
        client,
        stop,
        agents.clone(),
        ring,
    ));
    tracing::debug!(requests = %bound.requests, events = %bound.events, "listening");
    Ok(Bound {
        endpoints: bound,
        agents,
    })
}

/// `ipc://PATH` with a relative PATH made absolute (against the current directory); anything
/// else as it is.
fn absolute_ipc(endpoint: &str) -> String {
    match endpoint.strip_prefix("ipc://") {
        Some(path) if !path.starts_with('/') => match std::env::current_dir() {
            Ok(dir) => format!("ipc://{}", dir.join(path).display()),
            Err(_) => endpoint.to_string(),
        },
        _ => endpoint.to_string(),
    }
}

/// Receives requests until `stop`, serving each in its own task.
async fn serve_requests(
    router: RouterSocket,
    mut peers: futures::channel::mpsc::Receiver<SocketEvent>,
    client: Arc<dyn Client>,
    stop: CancellationToken,
    agents_endpoint: Option<String>,
    ring: Option<Arc<KeyRing>>,
) {
    let (sender, mut receiver) = router.split();
    // Owned here so that stopping aborts every request still being served (long polls), which
    // drops the last send half and closes the socket.
    let mut in_flight = InFlight::default();
    let mut peers_open = true;
    let mut report = tokio::time::interval(DROP_REPORT_EVERY);
    let mut reported = Dropped::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(done) = in_flight.tasks.join_next_with_id(), if !in_flight.tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        if e.is_panic() {
                            tracing::error!("serving a request panicked: {e}");
                        }
                        e.id()
                    }
                };
                in_flight.finished(id);
            }
            event = peers.next(), if peers_open => match event {
                // The peer's connection closed: its long polls can never be answered, so they
                // give their slots back now rather than when their runs end.
                Some(SocketEvent::Disconnected(peer)) => in_flight.peer_gone(&Bytes::from(peer)),
                Some(_) => {}
                None => peers_open = false,
            },
            _ = report.tick() => {
                let now = Dropped {
                    answers: sender.dropped_messages(),
                    requests: in_flight.shares.dropped(),
                    ..reported
                };
                now.report_since(&reported);
                reported = now;
            }
            message = receiver.recv() => match message {
                Ok(message) => on_message(
                    message,
                    &client,
                    &sender,
                    &mut in_flight,
                    agents_endpoint.as_deref(),
                    ring.as_ref(),
                ),
                Err(e) => {
                    // The crate only fails here when it has no peers and no wait (not with the
                    // options used); pause rather than spin should that ever change.
                    tracing::warn!("receiving a request failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::debug!(in_flight = in_flight.tasks.len(), "request socket stopping");
}

/// The requests being served (and refusals being sent), by peer.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<()>,
    /// Every task of `tasks`: its peer and, when it serves a request (else it refuses one),
    /// the slot it holds.
    of_task: HashMap<TaskId, (Bytes, Option<Slot>)>,
    peers: HashMap<Bytes, PeerTasks>,
    /// Slots by role and key, and what was served and refused (issue 20, item 7).
    shares: Shares,
    refusing: usize,
}

/// One peer's tasks.
#[derive(Default)]
struct PeerTasks {
    serving: usize,
    handles: HashMap<TaskId, AbortHandle>,
}

/// What to do with a request that arrived.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Serve it in this slot.
    Serve(Slot),
    /// Answer `busy:` at once, naming the limit it is over.
    Refuse(Limit),
    /// Over a limit, and even the refusals are at their bound (counted).
    Drop,
}

impl InFlight {
    /// Takes a slot for a request of `caller` on `peer`'s connection (`long_poll`: a
    /// `wait_run`), or says why not; either is counted.
    fn admit(&mut self, peer: &Bytes, caller: &Requester, long_poll: bool) -> Admission {
        let of_peer = self.peers.get(peer).map_or(0, |p| p.serving);
        match self.shares.take(caller, long_poll, of_peer) {
            Ok(slot) => Admission::Serve(slot),
            Err(limit) if self.refusing < MAX_REFUSALS => Admission::Refuse(limit),
            Err(_) => {
                self.shares.count_dropped();
                Admission::Drop
            }
        }
    }

    /// Runs `task` for `peer`; with `slot` it serves a request (admitted by
    /// [`InFlight::admit`]), else it refuses one (and counts against the refusals' bound).
    fn spawn<F>(&mut self, peer: Bytes, slot: Option<Slot>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if slot.is_none() && self.refusing >= MAX_REFUSALS {
            self.shares.count_dropped();
            return;
        }
        let handle = self.tasks.spawn(task);
        let id = handle.id();
        let tasks = self.peers.entry(peer.clone()).or_default();
        tasks.handles.insert(id, handle);
        if slot.is_some() {
            tasks.serving += 1;
        } else {
            self.refusing += 1;
        }
        self.of_task.insert(id, (peer, slot));
    }

    /// Forgets a task that ended (answered, refused, aborted or panicked).
    fn finished(&mut self, id: TaskId) {
        let Some((peer, slot)) = self.of_task.remove(&id) else {
            return;
        };
        let serving = slot.is_some();
        match &slot {
            Some(slot) => self.shares.give_back(slot),
            None => self.refusing -= 1,
        }
        if let Some(tasks) = self.peers.get_mut(&peer) {
            tasks.handles.remove(&id);
            if serving {
                tasks.serving -= 1;
            }
            if tasks.handles.is_empty() {
                self.peers.remove(&peer);
            }
        }
    }

    /// Aborts every task of a peer whose connection closed (their answers could not be
    /// delivered); their slots are freed as they end.
    fn peer_gone(&mut self, peer: &Bytes) {
        if let Some(tasks) = self.peers.get(peer) {
            tracing::debug!(
                peer = %hex(peer),
                "dropping {} requests of a peer that disconnected",
                tasks.handles.len()
            );
            for handle in tasks.handles.values() {
                handle.abort();
            }
        }
    }
}

/// Counts of what was dropped for peers, as last reported.
#[derive(Debug, Default, Clone, Copy)]
struct Dropped {
    answers: u64,
    requests: u64,
    events: u64,
}

impl Dropped {
    /// Logs what was dropped since `before`, if anything.
    fn report_since(&self, before: &Dropped) {
        let (answers, requests, events) = (
            self.answers.saturating_sub(before.answers),
            self.requests.saturating_sub(before.requests),
            self.events.saturating_sub(before.events),
        );
        if answers > 0 {
            tracing::warn!(
                "dropped {answers} answers (so far {}) to peers that stopped reading them",
                self.answers
            );
        }
        if requests > 0 {
            tracing::warn!(
                "dropped {requests} requests (so far {}) unanswered: the principal was refusing \
                 {MAX_REFUSALS} others already",
                self.requests
            );
        }
        if events > 0 {
            tracing::warn!(
                "dropped {events} events (so far {}) for subscribers that stopped reading them",
                self.events
            );
        }
    }
}

/// How a peer frames its requests, and so how it must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A DEALER: `[request]`, answered `[reply]`.
    Bare,
    /// A REQ socket (libzmq and its bindings): `["", request]`, answered `["", reply]`.
    Delimited,
}

/// What follows the peer identity: the framing and the one request frame (`[request]`, or
/// `["", request]`). A request is never empty, so an empty first frame is a REQ socket's
/// delimiter.
fn request_frame(mut frames: std::collections::VecDeque<Bytes>) -> Result<(Framing, Bytes), usize> {
    let count = frames.len();
    let framing = if frames.front().is_some_and(|f| f.is_empty()) {
        frames.pop_front();
        Framing::Delimited
    } else {
        Framing::Bare
    };
    match (frames.pop_front(), frames.is_empty()) {
        (Some(frame), true) if !frame.is_empty() => Ok((framing, frame)),
        _ => Err(count),
    }
}

/// Handles one ROUTER message: `[peer identity, frame]`, or `[peer identity, "", frame]` from a
/// REQ socket.
fn on_message(
    message: ZmqMessage,
    client: &Arc<dyn Client>,
    sender: &RouterSendHalf,
    in_flight: &mut InFlight,
    agents_endpoint: Option<&str>,
    ring: Option<&Arc<KeyRing>>,
) {
    let mut frames = message.into_vecdeque();
    let Some(peer) = frames.pop_front() else {
        return;
    };
    let (framing, frame) = match request_frame(frames) {
        Ok(found) => found,
        Err(count) => {
            tracing::warn!(
                peer = %hex(&peer),
                "dropped a message of {count} frames; a request is exactly one frame (after an \
                 empty delimiter from a REQ socket)"
            );
            return;
        }
    };
    // With CURVE, the connection's key (the first 32 bytes of its identity, set by the
    // handshake) decides, as the authorized-keys file says now: a key removed since it
    // connected is refused from its next message on.
    let mut key_name = None;
    let mut agent_key = false;
    let curve_role = match ring {
        None => None,
        Some(ring) => match ring.lookup(peer.get(..32).unwrap_or_default()) {
            Some((KeyRole::Operator, name)) => {
                key_name = Some(name);
                Some(Role::Operator)
            }
            Some((KeyRole::Viewer, name)) => {
                key_name = Some(name);
                Some(Role::Viewer)
            }
            Some((KeyRole::Agent, name)) => {
                key_name = Some(name);
                agent_key = true;
                Some(Role::Viewer)
            }
            None => {
                ring.count_revoked();
                tracing::warn!(peer = %hex(&peer), "dropped a request of a key no longer authorized");
                return;
            }
        },
    };
    // Who asks is what the transport says: the CURVE key's name, or `local` on the data dir's
    // socket and plain loopback (guarded by the file system and the machine). Never a field of
    // the request.
    let role = curve_role.unwrap_or(Role::Operator);
    let caller = Caller(
        key_name
            .clone()
            .unwrap_or_else(|| Caller::LOCAL.to_string()),
    );
    let reply = |id: u64, response: Response| {
        send_reply(sender.clone(), peer.clone(), framing, id, response)
    };
    match wire::decode::<Request>(&frame) {
        Ok((id, request)) if agent_key && !matches!(request, Request::Status) => {
            let why = "this key is an agent's: it may ask for status and run work, nothing else; \
                       use an operator's or a viewer's key";
            let refusal = reply(
                id,
                Response::Error(ApiError::new(ApiErrorKind::Forbidden, why)),
            );
            in_flight.spawn(peer, None, refusal);
        }
        Ok((id, request)) if role == Role::Viewer && request.operator_only() => {
            let why = "this key is a viewer's: it may look (status, history, logs, run detail, \
                       events) but not change anything; use an operator's key";
            let refusal = reply(
                id,
                Response::Error(ApiError::new(ApiErrorKind::Forbidden, why)),
            );
            in_flight.spawn(peer, None, refusal);
        }
        Ok((id, request)) => match in_flight.admit(
            &peer,
            &Requester {
                // Agents' keys ask as viewers (status only).
                shared: role == Role::Viewer,
                key: ring.and(peer.get(..32)).map(Bytes::copy_from_slice),
            },
            matches!(request, Request::WaitRun { .. }),
        ) {
            Admission::Serve(slot) => {
                let client = Arc::clone(client);
                let (sender, to) = (sender.clone(), peer.clone());
                let agents_endpoint = agents_endpoint.map(str::to_string);
                let curve = ring.map(|r| (r.counts(), key_name.clone(), r.server.clone()));
                let requests = in_flight.shares.counts();
                in_flight.spawn(peer, Some(slot), async move {
                    let mut response = match client.call_as(caller, request).await {
                        Ok(response) => response,
                        Err(e) => Response::Error(api_error(e)),
                    };
                    if let Response::Status(status) = &mut response {
                        status.agents_endpoint = agents_endpoint;
                        status.peers_closed = Some(PeersClosed::now());
                        status.requests = Some(requests);
                        if let Some((refused, name, server)) = curve {
                            status.curve = Some(Box::new(keys::CurveStatus {
                                key_name: name.unwrap_or_default(),
                                server_key: keys::public_text(&server),
                                refused,
                            }));
                            status.role = Some(role);
                        }
                    }
                    send_reply(sender, to, framing, id, response).await;
                });
            }
            Admission::Refuse(limit) => {
                let why = limit.refusal();
                // Counted (status shows the counts); a flood would flood the log.
                tracing::debug!(peer = %hex(&peer), "refused a request: {why}");
                let refusal = reply(
                    id,
                    Response::Error(ApiError::new(ApiErrorKind::Unavailable, why)),
                );
                in_flight.spawn(peer, None, refusal);
            }
            Admission::Drop => {}
        },
        Err(e) => {
            tracing::warn!(peer = %hex(&peer), "dropped a request: {e}");
            if let Some(id) = e.id() {
                let answer = reply(
                    id,
                    Response::Error(ApiError::new(ApiErrorKind::InvalidInput, e.to_string())),
                );
                in_flight.spawn(peer, None, answer);
            }
        }
    }
}

/// A failed in-process call as an answer for the remote caller.
fn api_error(e: ClientError) -> ApiError {
    match e {
        ClientError::Api(e) => e,
        ClientError::Unreachable(why) => ApiError::new(ApiErrorKind::Unavailable, why),
        ClientError::Protocol(why) => ApiError::new(ApiErrorKind::Internal, why),
    }
}

/// Sends `response` to `peer`; a peer that has gone costs a debug line.
async fn send_reply(
    mut sender: RouterSendHalf,
    peer: Bytes,
    framing: Framing,
    id: u64,
    response: Response,
) {
    let frame = match wire::encode(id, &response) {
        Ok(frame) if frame.len() <= MAX_FRAME => frame,
        Ok(frame) => {
            tracing::warn!(peer = %hex(&peer), "an answer of {} bytes is too large to send", frame.len());
            oversized_answer(id, frame.len())
        }
        Err(e) => {
            tracing::error!("cannot encode an answer: {e}");
            let error = ApiError::new(
                ApiErrorKind::Internal,
                format!("the principal could not encode its answer ({e}); this is a bug"),
            );
            match wire::encode(id, &Response::Error(error)) {
                Ok(frame) => frame,
                Err(_) => return,
            }
        }
    };
    let mut message = ZmqMessage::from(frame);
    if framing == Framing::Delimited {
        message.push_front(Bytes::new());
    }
    message.push_front(peer.clone());
    match tokio::time::timeout(REPLY_SEND_TIMEOUT, sender.send(message)).await {
        Ok(Ok(())) => {}
        // Usually the peer vanished mid-request (its identity is gone), or it stopped reading
        // and its queue is full (counted by the socket, reported by `serve_requests`).
        Ok(Err(e)) => tracing::debug!(peer = %hex(&peer), "answer to request {id} dropped: {e}"),
        Err(_) => tracing::warn!(
            peer = %hex(&peer),
            "answer to request {id} dropped: the peer has not been reading for {REPLY_SEND_TIMEOUT:?}"
        ),
    }
}

/// The error frame sent in place of an answer too large for one frame.
fn oversized_answer(id: u64, len: usize) -> Vec<u8> {
    let error = ApiError::new(
        ApiErrorKind::InvalidInput,
        format!(
            "the answer is {len} bytes, more than the {MAX_FRAME} bytes a message may carry; \
             ask for less (a smaller limit)"
        ),
    );
    // An error of a few hundred bytes always encodes.
    wire::encode(id, &Response::Error(error)).unwrap_or_default()
}

/// Publishes every event of `events` until `stop`.
async fn publish_events(
    mut publisher: PubSocket,
    mut events: broadcast::Receiver<Event>,
    stop: CancellationToken,
) {
    // Sequence numbers let subscribers notice gaps (slow subscriber, lag here).
    let mut seq: u64 = 0;
    let mut report = tokio::time::interval(DROP_REPORT_EVERY);
    let mut reported = Dropped::default();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            _ = report.tick() => {
                // Events the socket dropped for subscribers over their queue bound.
                let now = Dropped { events: publisher.dropped_messages(), ..reported };
                now.report_since(&reported);
                reported = now;
                continue;
            }
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                seq += 1;
                match wire::encode(seq, &event) {
                    Ok(frame) if frame.len() <= MAX_FRAME => {
                        let message = ZmqMessage::from(frame);
                        if let Err(e) = publisher.send(message).await {
                            tracing::debug!("publishing event {seq} failed: {e}");
                        }
                    }
                    Ok(frame) => tracing::warn!(
                        "event {seq} is {} bytes, too large to publish; subscribers miss it",
                        frame.len()
                    ),
                    Err(e) => tracing::error!("cannot encode event {seq}: {e}"),
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!("the event publisher fell behind and skipped {missed} events");
                // Leave the gap in the numbering so that subscribers see it too.
                seq += missed;
            }
            Err(broadcast::error::RecvError::Closed) => {
                // The principal stopped publishing; keep the socket until told to stop so that
                // subscribers do not spin reconnecting to a closed port meanwhile.
                stop.cancelled().await;
                break;
            }
        }
    }
    for e in publisher.close().await {
        tracing::debug!("closing the event socket: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local caller: an operator without a key.
    const LOCAL: Requester = Requester {
        shared: false,
        key: None,
    };

    /// Admits a request of the local caller on `peer`.
    fn admit(in_flight: &mut InFlight, peer: &Bytes) -> Admission {
        in_flight.admit(peer, &LOCAL, false)
    }

    /// Spawns `n` requests for `peer` that wait forever.
    fn serve_forever(in_flight: &mut InFlight, peer: &Bytes, n: usize) {
        for _ in 0..n {
            let Admission::Serve(slot) = admit(in_flight, peer) else {
                panic!("not admitted");
            };
            in_flight.spawn(peer.clone(), Some(slot), std::future::pending());
        }
    }

    #[tokio::test]
    async fn one_peer_gets_its_share_and_gives_it_back_when_gone() {
        let mut in_flight = InFlight::default();
        let (greedy, other) = (Bytes::from_static(b"greedy"), Bytes::from_static(b"other"));
        serve_forever(&mut in_flight, &greedy, MAX_IN_FLIGHT_PER_PEER);
        assert_eq!(
            admit(&mut in_flight, &greedy),
            Admission::Refuse(Limit::PerConnection)
        );
        serve_forever(&mut in_flight, &other, 1);

        // Refusals have their own bound, past which requests are dropped.
        for _ in 0..MAX_REFUSALS {
            in_flight.spawn(greedy.clone(), None, std::future::pending());
        }
        assert_eq!(admit(&mut in_flight, &greedy), Admission::Drop);
        in_flight.spawn(greedy.clone(), None, std::future::pending());
        assert_eq!(in_flight.shares.dropped(), 2);

        // Its connection closes: every task of it ends, and the slots come back.
        in_flight.peer_gone(&greedy);
        in_flight.peer_gone(&other);
        while let Some(done) = in_flight.tasks.join_next_with_id().await {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => {
                    assert!(e.is_cancelled());
                    e.id()
                }
            };
            in_flight.finished(id);
        }
        assert_eq!((in_flight.shares.serving(), in_flight.refusing), (0, 0));
        assert!(in_flight.peers.is_empty() && in_flight.of_task.is_empty());
        serve_forever(&mut in_flight, &greedy, 1);
        in_flight.tasks.abort_all();
    }

    #[tokio::test]
    async fn all_peers_together_stay_within_the_global_budget() {
        let mut in_flight = InFlight::default();
        let peers: Vec<Bytes> = (0..MAX_IN_FLIGHT / MAX_IN_FLIGHT_PER_PEER)
            .map(|i| Bytes::from(format!("peer-{i}")))
            .collect();
        for peer in &peers {
            serve_forever(&mut in_flight, peer, MAX_IN_FLIGHT_PER_PEER);
        }
        assert_eq!(
            admit(&mut in_flight, &Bytes::from_static(b"late")),
            Admission::Refuse(Limit::AllSlots)
        );
        in_flight.tasks.abort_all();
    }
}
