//! The principal's side: a ROUTER answering requests and a PUB publishing events.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zeromq::{PubSocket, RouterSendHalf, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use super::wire;
use super::{Endpoints, MAX_FRAME, ZmqError, check_endpoint};
use crate::protocol::Event;
use crate::protocol::api::{ApiError, ApiErrorKind, Client, ClientError, Request, Response};

/// Requests being served at once; beyond this new ones are refused as busy rather than
/// queued without bound (long polls hold their slot until their run ends).
const MAX_IN_FLIGHT: usize = 4096;

/// How long a reply may wait for room in a peer's send queue before it is dropped, so that a
/// peer that stopped reading cannot pin a task forever.
const REPLY_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `sun_path` of a Unix socket (108 bytes with the terminating NUL on Linux).
const MAX_IPC_PATH: usize = 107;

/// Serves `client` (the principal, in-process) on the given endpoints until `stop` is
/// cancelled. Returns the actually bound endpoints (port 0 resolved) once listening.
///
/// Each request is served in its own task, so a long poll (`WaitRun`) never holds up other
/// requests. Frames that are malformed, truncated, of another protocol version or larger than
/// [`MAX_FRAME`] are logged and dropped, and answered with an `invalid_input` error when their
/// id can be read. Events from `client.subscribe()` are published in order on the PUB socket.
///
/// An `ipc://` socket file left behind by a principal that died is replaced; one that another
/// process still listens on is reported as [`ZmqError::Bind`].
///
/// Exposure: the `zeromq` crate (0.7) allocates a frame's *declared* length before reading it
/// and has no size limit, so one hostile frame header can abort the process before
/// [`MAX_FRAME`] is checked here. Only listen where untrusted peers cannot connect (ipc,
/// loopback) until the crate bounds frame sizes.
pub async fn serve(
    endpoints: &Endpoints,
    client: Arc<dyn Client>,
    stop: CancellationToken,
) -> Result<Endpoints, ZmqError> {
    let mut router = RouterSocket::new();
    let requests = bind(&mut router, &endpoints.requests).await?;
    let mut publisher = PubSocket::new();
    // On failure here `router` is dropped, which closes its listener again.
    let events = bind(&mut publisher, &endpoints.events).await?;
    let bound = Endpoints {
        requests: requests.to_string(),
        events: events.to_string(),
    };
    // Subscribed before returning, so that no event after `serve` returns is missed.
    let event_rx = client.subscribe();
    tokio::spawn(publish_events(publisher, event_rx, stop.clone()));
    tokio::spawn(serve_requests(router, client, stop));
    tracing::debug!(requests = %bound.requests, events = %bound.events, "listening");
    Ok(bound)
}

/// Binds `socket` to `endpoint`, explaining failures in terms the user can act on.
async fn bind<S: Socket>(socket: &mut S, endpoint: &str) -> Result<zeromq::Endpoint, ZmqError> {
    let parsed = check_endpoint(endpoint)?;
    let bind_error = |reason: String| ZmqError::Bind {
        endpoint: endpoint.to_string(),
        reason,
    };
    if let zeromq::Endpoint::Ipc(Some(path)) = &parsed {
        if path.as_os_str().len() > MAX_IPC_PATH {
            return Err(bind_error(format!(
                "the socket path is {} bytes long but Unix sockets allow at most {MAX_IPC_PATH}; \
                 use a shorter data directory or listen on tcp://",
                path.as_os_str().len()
            )));
        }
        remove_stale_socket(path).map_err(bind_error)?;
    }
    socket.bind(endpoint).await.map_err(|e| {
        bind_error(match &e {
            zeromq::ZmqError::Network(io) if io.kind() == ErrorKind::AddrInUse => {
                "the address is in use: another process (perhaps another opsconsole principal) \
                 listens there; stop it or choose another address"
                    .to_string()
            }
            zeromq::ZmqError::Network(io) if io.kind() == ErrorKind::PermissionDenied => {
                format!("permission denied ({io}); choose an address this user may listen on")
            }
            zeromq::ZmqError::Network(io) if io.kind() == ErrorKind::AddrNotAvailable => {
                format!("{io}; the host is not an address of this machine")
            }
            other => other.to_string(),
        })
    })
}

/// Removes a Unix socket file nobody listens on any more (its principal died without
/// cleaning up), so that the bind does not fail with "address in use".
fn remove_stale_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;

    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        // Not ours to delete; the bind reports the conflict.
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(
            "another process is listening on this socket; is another opsconsole principal \
             running on this data directory?"
                .to_string(),
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket left by a principal that stopped");
            std::fs::remove_file(path).map_err(|e| {
                format!("a stale socket file is in the way and cannot be removed ({e})")
            })
        }
        // Anything else (permissions, ...) is reported by the bind itself.
        Err(_) => Ok(()),
    }
}

/// Receives requests until `stop`, serving each in its own task.
async fn serve_requests(router: RouterSocket, client: Arc<dyn Client>, stop: CancellationToken) {
    let (sender, mut receiver) = router.split();
    // Owned here so that stopping aborts every request still being served (long polls), which
    // drops the last send half and closes the socket.
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("serving a request panicked: {e}");
                }
            }
            message = receiver.recv() => match message {
                Ok(message) => on_message(message, &client, &sender, &mut in_flight),
                Err(e) => {
                    // The crate only fails here when it has no peers and no wait (not with the
                    // options used); pause rather than spin should that ever change.
                    tracing::warn!("receiving a request failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::debug!(in_flight = in_flight.len(), "request socket stopping");
}

/// Handles one ROUTER message: `[peer identity, frame]`.
fn on_message(
    message: ZmqMessage,
    client: &Arc<dyn Client>,
    sender: &RouterSendHalf,
    in_flight: &mut JoinSet<()>,
) {
    let mut frames = message.into_vecdeque();
    let Some(peer) = frames.pop_front() else {
        return;
    };
    let frame = match (frames.pop_front(), frames.is_empty()) {
        (Some(frame), true) => frame,
        _ => {
            tracing::warn!(
                peer = %hex(&peer),
                "dropped a message of {} frames; a request is exactly one frame",
                frames.len() + 1
            );
            return;
        }
    };
    let reply =
        |id: u64, response: Response| send_reply(sender.clone(), peer.clone(), id, response);
    match wire::decode::<Request>(&frame) {
        Ok((id, _)) if in_flight.len() >= MAX_IN_FLIGHT => {
            tracing::warn!(peer = %hex(&peer), "refused a request: {MAX_IN_FLIGHT} requests in progress");
            in_flight.spawn(reply(
                id,
                Response::Error(ApiError::new(
                    ApiErrorKind::Unavailable,
                    format!(
                        "the principal is serving {MAX_IN_FLIGHT} requests already; try again shortly"
                    ),
                )),
            ));
        }
        Ok((id, request)) => {
            let client = Arc::clone(client);
            let (sender, peer) = (sender.clone(), peer.clone());
            in_flight.spawn(async move {
                let response = match client.call(request).await {
                    Ok(response) => response,
                    Err(e) => Response::Error(api_error(e)),
                };
                send_reply(sender, peer, id, response).await;
            });
        }
        Err(e) => {
            tracing::warn!(peer = %hex(&peer), "dropped a request: {e}");
            if let Some(id) = e.id() {
                in_flight.spawn(reply(
                    id,
                    Response::Error(ApiError::new(ApiErrorKind::InvalidInput, e.to_string())),
                ));
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
async fn send_reply(mut sender: RouterSendHalf, peer: Bytes, id: u64, response: Response) {
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
    message.push_front(peer.clone());
    match tokio::time::timeout(REPLY_SEND_TIMEOUT, sender.send(message)).await {
        Ok(Ok(())) => {}
        // Usually the peer vanished mid-request (its identity is gone); nothing to do.
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
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                seq += 1;
                match wire::encode(seq, &event) {
                    Ok(frame) if frame.len() <= MAX_FRAME => {
                        if let Err(e) = publisher.send(ZmqMessage::from(frame)).await {
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

/// The first bytes of a peer identity, for logs.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
