//! The principal's agents socket: a ROUTER that remote agents (`opsconsole agent`) connect a
//! DEALER to. It learns which connection is which agent (and, with CURVE, under which key) from
//! its `hello`, passes what agents say to the engine as [`AgentNews`], and sends what the
//! engine has for an agent to that agent's latest connection.
//!
//! It decides nothing: leases, credit and which reports to apply are the engine's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeromq::{
    RouterRecvHalf, RouterSendHalf, RouterSocket, Socket as _, SocketEvent, SocketOptions,
    SocketRecv, SocketSend, ZmqMessage,
};

use super::keys::{KeyRing, KeyRole};
use super::listen::{HANDSHAKE_TIMEOUT, bind, hex};
use super::{MAX_FRAME, ZmqError, wire};
use crate::protocol::agent::{AgentId, AgentNews, FromAgent, ToAgent};

/// Messages queued towards one agent, and their bytes: an agent that stops reading loses
/// messages, then its heartbeats, then its lease (its work is run elsewhere).
const AGENT_QUEUE_MESSAGES: usize = 4096;
const AGENT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Agents connected at once, at most.
pub const MAX_AGENTS: usize = 1024;

/// Frames an agent's message has: the JSON frame.
const MAX_AGENT_FRAMES: usize = 1;

/// Where the principal's agents socket sends what agents say.
#[derive(Clone)]
pub struct AgentGate {
    /// The engine's inbox.
    pub news: mpsc::Sender<AgentNews>,
}

/// Serves agents on `endpoint` until `stop`; returns the bound endpoint (port 0 resolved).
pub async fn serve_agents(
    endpoint: &str,
    gate: AgentGate,
    stop: CancellationToken,
) -> Result<String, ZmqError> {
    serve_agents_with(endpoint, gate, stop, None).await
}

/// [`serve_agents`], with CURVE when `ring` is set: only keys of role agent connect, and each
/// hello carries the name of the key its connection authenticated with (never one the agent
/// says).
pub async fn serve_agents_with(
    endpoint: &str,
    gate: AgentGate,
    stop: CancellationToken,
    ring: Option<Arc<KeyRing>>,
) -> Result<String, ZmqError> {
    let mut options = SocketOptions::default();
    options
        .max_message_size(MAX_FRAME)
        .max_message_frames(MAX_AGENT_FRAMES + 1)
        .handshake_timeout(Some(HANDSHAKE_TIMEOUT))
        .send_queue_limits(AGENT_QUEUE_MESSAGES, AGENT_QUEUE_BYTES)
        .recv_budget(super::limits::recv_budget());
    if let Some(ring) = &ring {
        options.curve(ring.server_for(&[KeyRole::Agent]));
    }
    let mut router = RouterSocket::with_options(options);
    let peers = router.monitor();
    let bound = bind(&mut router, endpoint).await?.to_string();
    let (sender, receiver) = router.split();
    tokio::spawn(
        Socket {
            sender,
            gate,
            ring,
            by_agent: HashMap::new(),
            by_peer: HashMap::new(),
            pending: HashMap::new(),
        }
        .run(receiver, peers, stop),
    );
    Ok(bound)
}

/// One connection of an agent: where to send.
struct Peer {
    identity: Bytes,
    /// Not known to have disconnected.
    open: bool,
}

struct Socket {
    sender: RouterSendHalf,
    gate: AgentGate,
    /// The authorized keys on a CURVE endpoint: they name each connection's key.
    ring: Option<Arc<KeyRing>>,
    /// Each agent's latest connection.
    by_agent: HashMap<AgentId, Peer>,
    /// Which agent each connection said it was.
    by_peer: HashMap<Bytes, AgentId>,
    /// Hellos the engine has yet to answer, per agent id, in the order they were passed on:
    /// a connection becomes the agent's only once the engine welcomes it, so that a refused
    /// hello (an impostor under a live agent's id) changes nothing.
    pending: HashMap<AgentId, std::collections::VecDeque<Peer>>,
}

/// Hellos waiting for the engine's answer, per agent id, at most.
const MAX_PENDING_HELLOS: usize = 16;

impl Socket {
    async fn run(
        mut self,
        mut receiver: RouterRecvHalf,
        mut peers: futures::channel::mpsc::Receiver<SocketEvent>,
        stop: CancellationToken,
    ) {
        let (outbox, mut outgoing) = mpsc::unbounded_channel::<(AgentId, ToAgent)>();
        let mut peers_open = true;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some((agent, message)) = outgoing.recv() => self.send(&agent, &message).await,
                event = peers.next(), if peers_open => match event {
                    Some(SocketEvent::Disconnected(peer)) => self.forget(&Bytes::from(peer)),
                    Some(_) => {}
                    None => peers_open = false,
                },
                message = receiver.recv() => match message {
                    Ok(message) => self.on_message(message, &outbox).await,
                    Err(e) => {
                        tracing::warn!("receiving from an agent failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// A connection closed; the agent's lease decides what happens to its work.
    fn forget(&mut self, identity: &Bytes) {
        // A hello still waiting for its answer keeps its place (answers come in order).
        for peers in self.pending.values_mut() {
            for p in peers.iter_mut().filter(|p| p.identity == identity) {
                p.open = false;
            }
        }
        if let Some(agent) = self.by_peer.remove(identity)
            && self
                .by_agent
                .get(&agent)
                .is_some_and(|p| p.identity == identity)
        {
            self.by_agent.remove(&agent);
        }
    }

    async fn on_message(
        &mut self,
        message: ZmqMessage,
        outbox: &mpsc::UnboundedSender<(AgentId, ToAgent)>,
    ) {
        let mut frames = message.into_vecdeque();
        let (Some(identity), Some(frame)) = (frames.pop_front(), frames.pop_front()) else {
            return;
        };
        // With CURVE the first 32 bytes of the identity are the connection's key (set by the
        // handshake): the key's name as the authorized-keys file says now.
        let key_name = match &self.ring {
            None => None,
            Some(ring) => match ring.lookup(identity.get(..32).unwrap_or_default()) {
                Some((KeyRole::Agent, name)) => Some(name),
                _ => {
                    ring.count_revoked();
                    tracing::warn!(peer = %hex(&identity), "dropped an agent message of a key no longer authorized as an agent");
                    return;
                }
            },
        };
        let message = match wire::decode::<FromAgent>(&frame) {
            Ok((_, message)) => message,
            Err(e) => {
                tracing::warn!(peer = %hex(&identity), "dropped an agent message: {e}");
                return;
            }
        };
        let news = match message {
            FromAgent::Hello(hello) => {
                let agent = hello.info.id.clone();
                let waiting = self.pending.get(&agent).map_or(0, |q| q.len());
                let refusal = if agent.0.is_empty() || agent.0.len() > 128 {
                    Some("an agent id is 1 to 128 bytes".to_string())
                } else if self.by_peer.get(&identity).is_some_and(|a| a != &agent)
                    || self.waits_as_another(&identity, &agent)
                {
                    Some("one connection is one agent: it said hello under another id".to_string())
                } else if !self.by_agent.contains_key(&agent)
                    && (self.by_agent.len() >= MAX_AGENTS || self.pending.len() >= MAX_AGENTS)
                {
                    Some(format!("the principal serves {MAX_AGENTS} agents already"))
                } else if waiting >= MAX_PENDING_HELLOS {
                    Some("too many hellos under this id at once; try again".to_string())
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    tracing::warn!(peer = %hex(&identity), agent = %agent, "refused an agent: {reason}");
                    let peer = Peer {
                        identity,
                        open: true,
                    };
                    self.send_to(&peer, &ToAgent::Refused { reason }).await;
                    return;
                }
                let previous_open = self
                    .by_agent
                    .get(&agent)
                    .is_some_and(|p| p.identity != identity);
                // The connection becomes the agent's once the engine welcomes it (`answer`).
                self.pending.entry(agent).or_default().push_back(Peer {
                    identity,
                    open: true,
                });
                AgentNews::Hello {
                    hello,
                    key: key_name,
                    outbox: outbox.clone(),
                    previous_open,
                }
            }
            message => {
                // Only a connection that said hello speaks for an agent.
                let Some(agent) = self.by_peer.get(&identity) else {
                    tracing::debug!(peer = %hex(&identity), "dropped a message from a connection that has not said hello");
                    return;
                };
                AgentNews::From {
                    agent: agent.clone(),
                    message,
                }
            }
        };
        // Waiting here holds back the agents' messages, never the engine.
        let _ = self.gate.news.send(news).await;
    }

    async fn send(&mut self, agent: &AgentId, message: &ToAgent) {
        if matches!(message, ToAgent::Welcome { .. } | ToAgent::Refused { .. })
            && let Some(peer) = self.answer(agent, message)
        {
            if peer.open {
                self.send_to(&peer, message).await;
            }
            return;
        }
        if let Some(peer) = self.by_agent.get(agent) {
            let peer = Peer {
                identity: peer.identity.clone(),
                open: true,
            };
            self.send_to(&peer, message).await;
        }
    }

    /// Whether `identity` has a hello waiting for the engine's answer under an id other than
    /// `agent`: two hellos sent at once must not make one connection two agents.
    fn waits_as_another(&self, identity: &Bytes, agent: &AgentId) -> bool {
        self.pending
            .iter()
            .any(|(a, queue)| a != agent && queue.iter().any(|p| p.identity == identity))
    }

    /// The engine answered the oldest waiting hello of `agent`: a welcome makes that
    /// connection the agent's (and the one before it no one's); a refusal changes nothing.
    /// The connection the answer goes to.
    fn answer(&mut self, agent: &AgentId, message: &ToAgent) -> Option<Peer> {
        let queue = self.pending.get_mut(agent)?;
        let peer = queue.pop_front();
        if queue.is_empty() {
            self.pending.remove(agent);
        }
        let peer = peer?;
        if matches!(message, ToAgent::Welcome { .. }) && peer.open {
            let kept = Peer {
                identity: peer.identity.clone(),
                open: true,
            };
            if let Some(old) = self.by_agent.insert(agent.clone(), kept)
                && old.identity != peer.identity
            {
                self.by_peer.remove(&old.identity);
            }
            self.by_peer.insert(peer.identity.clone(), agent.clone());
        }
        Some(peer)
    }

    async fn send_to(&mut self, peer: &Peer, message: &ToAgent) {
        let Ok(frame) = wire::encode(0, message) else {
            return;
        };
        let mut out = ZmqMessage::from(frame);
        out.push_front(peer.identity.clone());
        // A full queue (the agent stopped reading) or a vanished peer drops the message; the
        // agent's lease covers both.
        match tokio::time::timeout(Duration::from_millis(100), self.sender.send(out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(peer = %hex(&peer.identity), "message to an agent dropped: {e}")
            }
            Err(_) => {
                tracing::debug!(peer = %hex(&peer.identity), "message to an agent dropped: its queue is full")
            }
        }
    }
}
