//! A remote agent's side of the agents socket: one DEALER connection that signs what it sends
//! and checks what it receives. A connection is used until it goes quiet, then thrown away:
//! the `zeromq` crate's DEALER does not reconnect by itself, and a ROUTER can evict a peer that
//! comes back under the same identity, so every connection gets a fresh identity and sender.

use std::time::Duration;

use futures::StreamExt;
use zeromq::{
    DealerSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqMessage,
};

use super::auth::{Key, Tag};
use super::keys::CurveSecurity;
use super::{MAX_FRAME, wire};
use crate::protocol::agent::{FromAgent, ToAgent};

/// Why a connection ended or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed or the peer went away.
    #[error("the connection to the principal's agents socket failed: {0}")]
    Socket(String),
    /// The principal refused this agent's key (CURVE), with its reason: retrying cannot help.
    #[error("the principal refused this agent: {0}")]
    Refused(String),
    /// A message could not be encoded (a bug).
    #[error("cannot encode a message for the principal: {0}")]
    Encode(String),
}

/// One connection to the principal's agents socket.
pub struct AgentConnection {
    dealer: DealerSocket,
    monitor: futures::channel::mpsc::Receiver<SocketEvent>,
    signing: Option<(Key, String, u64)>,
    /// The principal's last sequence number, to drop replays.
    last_seen: u64,
    /// Messages dropped because they were not signed by the principal.
    pub unverified: u64,
}

impl AgentConnection {
    /// Connects to `endpoint` (waiting at most `timeout`); with `key`, messages are signed
    /// with it and answers not signed by the principal with it are dropped.
    pub async fn connect(
        endpoint: &str,
        key: Option<Key>,
        timeout: Duration,
    ) -> Result<AgentConnection, LinkError> {
        Self::connect_secure(endpoint, key, None, timeout).await
    }

    /// [`AgentConnection::connect`], with CURVE when `curve` is set.
    pub async fn connect_secure(
        endpoint: &str,
        key: Option<Key>,
        curve: Option<CurveSecurity>,
        timeout: Duration,
    ) -> Result<AgentConnection, LinkError> {
        let mut options = SocketOptions::default();
        options
            .max_message_size(MAX_FRAME)
            .max_message_frames(2)
            .connect_timeout(timeout);
        if let Some(curve) = curve {
            options.curve(curve);
        }
        let mut dealer = DealerSocket::with_options(options);
        let monitor = dealer.monitor();
        match tokio::time::timeout(timeout, dealer.connect(endpoint)).await {
            Ok(Ok(())) => {}
            Ok(Err(zeromq::ZmqError::Refused(why))) => return Err(LinkError::Refused(why)),
            Ok(Err(e)) => return Err(LinkError::Socket(e.to_string())),
            Err(_) => {
                return Err(LinkError::Socket(format!(
                    "no connection within {timeout:?}"
                )));
            }
        }
        let signing = key.map(|k| (k, format!("agent-{:016x}", fastrand::u64(..)), 0));
        Ok(AgentConnection {
            dealer,
            monitor,
            signing,
            last_seen: 0,
            unverified: 0,
        })
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &FromAgent) -> Result<(), LinkError> {
        let frame = wire::encode(0, message).map_err(|e| LinkError::Encode(e.to_string()))?;
        let tag = self.signing.as_mut().map(|(key, sender, seq)| {
            *seq += 1;
            key.sign(sender, *seq, &frame)
        });
        let mut out = ZmqMessage::from(frame);
        if let Some(tag) = tag {
            out.push_back(tag.into());
        }
        self.dealer
            .send(out)
            .await
            .map_err(|e| LinkError::Socket(e.to_string()))
    }

    /// The next message from the principal; messages that do not verify or parse are dropped.
    pub async fn recv(&mut self) -> Result<ToAgent, LinkError> {
        loop {
            let message = tokio::select! {
                m = self.dealer.recv() => m.map_err(|e| LinkError::Socket(e.to_string()))?,
                event = self.monitor.next() => match event {
                    Some(SocketEvent::Disconnected(_)) | None => {
                        return Err(LinkError::Socket("the principal closed the connection".into()));
                    }
                    Some(_) => continue,
                },
            };
            let frames = message.into_vec();
            let Some((frame, tags)) = frames.split_first() else {
                continue;
            };
            if let Some((key, sender, _)) = &self.signing {
                let from = format!("principal/{sender}");
                let trusted = tags
                    .first()
                    .and_then(|t| Tag::parse(t))
                    .filter(|t| t.sender == from && t.seq > self.last_seen && key.verify(t, frame));
                if let Some(tag) = &trusted {
                    self.last_seen = tag.seq;
                } else {
                    self.unverified += 1;
                    tracing::warn!("dropped a message not signed by the principal");
                    continue;
                }
            }
            match wire::decode::<ToAgent>(frame) {
                Ok((_, message)) => return Ok(message),
                Err(e) => tracing::warn!("dropped a message from the principal: {e}"),
            }
        }
    }
}
