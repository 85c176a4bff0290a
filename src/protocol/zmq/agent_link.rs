//! A remote agent's side of the agents socket: one DEALER connection (CURVE-encrypted on a
//! CURVE endpoint). A connection is used until it goes quiet, then thrown away:
//! the `zeromq` crate's DEALER does not reconnect by itself, and a ROUTER can evict a peer that
//! comes back under the same identity, so every connection gets a fresh identity.

use std::time::Duration;

use futures::StreamExt;
use zeromq::{
    DealerSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqMessage,
};

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
}

impl AgentConnection {
    /// Connects to `endpoint` (waiting at most `timeout`).
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<AgentConnection, LinkError> {
        Self::connect_secure(endpoint, None, timeout).await
    }

    /// [`AgentConnection::connect`], with CURVE when `curve` is set.
    pub async fn connect_secure(
        endpoint: &str,
        curve: Option<CurveSecurity>,
        timeout: Duration,
    ) -> Result<AgentConnection, LinkError> {
        let mut options = SocketOptions::default();
        options
            .max_message_size(MAX_FRAME)
            .max_message_frames(1)
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
        Ok(AgentConnection { dealer, monitor })
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &FromAgent) -> Result<(), LinkError> {
        let frame = wire::encode(0, message).map_err(|e| LinkError::Encode(e.to_string()))?;
        self.dealer
            .send(ZmqMessage::from(frame))
            .await
            .map_err(|e| LinkError::Socket(e.to_string()))
    }

    /// The next message from the principal; messages that do not parse are dropped.
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
            let [frame] = frames.as_slice() else {
                continue;
            };
            match wire::decode::<ToAgent>(frame) {
                Ok((_, message)) => return Ok(message),
                Err(e) => tracing::warn!("dropped a message from the principal: {e}"),
            }
        }
    }
}
