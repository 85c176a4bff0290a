//! Remote agents as the engine sees them: registration, heartbeats and leases, reports applied
//! once and acknowledged once stored, late results, and the operator's cordon and drain.

use super::{Engine, Timer};
use crate::protocol::agent::{
    AgentId, AgentNews, AgentNote, AgentNoteKind, AgentState, FromAgent, ToAgent, WorkEnd, WorkId,
};
use crate::protocol::api::{ApiError, ApiErrorKind, Response};
use crate::protocol::{AttemptRecord, Event, Outcome};

use super::super::agents::GivenUp;

/// How long applied reports wait for the commit that lets them be acknowledged, at most.
const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

impl Engine {
    pub(super) async fn on_agent_news(&mut self, news: AgentNews) {
        match news {
            AgentNews::Hello { hello, outbox } => {
                let id = hello.info.id.clone();
                let version = hello.info.version.clone();
                let (slots, labels) = (hello.info.slots, hello.info.labels.clone());
                let address = format!("{} (pid {})", hello.host, hello.pid);
                match self.agents.hello(hello, outbox.clone()) {
                    Ok(joined) => {
                        self.agents.send(
                            &id,
                            ToAgent::Welcome {
                                heartbeat: self.agents.heartbeat(),
                                keep: joined.keep,
                                acked: joined.acked,
                            },
                        );
                        let labels = labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",");
                        let again = if joined.again { "again " } else { "" };
                        self.agent_note(
                            &id,
                            AgentNoteKind::Joined,
                            format!(
                                "joined {again}from {address}: {slots} slots, labels [{labels}], \
                                 version {version}"
                            ),
                        )
                        .await;
                        let lost = joined.lost;
                        if !lost.is_empty() {
                            let why = format!("{id} came back without it");
                            self.give_up(&id, lost, &why).await;
                        }
                        self.arm_beat();
                        self.dispatch();
                    }
                    Err(reason) => {
                        tracing::warn!(agent = %id, "refused an agent: {reason}");
                        let _ = outbox.send((id, ToAgent::Refused { reason }));
                    }
                }
            }
            AgentNews::From { agent, message } => {
                if !self.agents.is_connected_remote(&agent) {
                    // Lost (its work was given up) or let go: it must say hello again.
                    return;
                }
                self.agents.heard(&agent);
                match message {
                    FromAgent::Heartbeat | FromAgent::Hello(_) => {}
                    FromAgent::Reports { first, events } => {
                        let count = events.len();
                        let skip = self.agents.new_reports(&agent, first, count);
                        for (i, event) in events.into_iter().enumerate().skip(skip) {
                            self.on_agent(&agent, event).await;
                            let seq = first + i as u64;
                            self.agents.applied(&agent, seq, self.gate.emitted);
                        }
                        if skip < count {
                            self.ack_soon();
                        } else if count > 0 {
                            // All seen before: acknowledge again what is stored.
                            self.agents.stored(self.gate.durable);
                        }
                    }
                }
            }
        }
    }

    /// Reports are acknowledged once stored: a commit is asked for shortly, so that one
    /// commit covers the reports of many agents and messages rather than one each.
    pub(super) fn ack_soon(&mut self) {
        if !self.ack_armed {
            self.ack_armed = true;
            self.set_timer(ACK_DELAY, Timer::AckDue);
        }
    }

    /// Keeps a [`Timer::AgentBeat`] set while remote agents are connected.
    pub(super) fn arm_beat(&mut self) {
        if !self.beat_armed && self.agents.any_remote() {
            self.beat_armed = true;
            self.set_timer(self.agents.heartbeat(), Timer::AgentBeat);
        }
    }

    /// Heartbeats the remote agents and gives up the work of those silent past their lease.
    pub(super) async fn agent_beat(&mut self) {
        self.beat_armed = false;
        self.agents.beat();
        for id in self.agents.expired(tokio::time::Instant::now()) {
            let lost = self.agents.lose(&id);
            let lease = self.agents.lease();
            self.agent_note(
                &id,
                AgentNoteKind::Lost,
                format!(
                    "silent for more than its lease ({lease:?}); {} piece(s) of work given up",
                    lost.len()
                ),
            )
            .await;
            self.give_up(&id, lost, &id.0).await;
        }
        self.arm_beat();
        self.dispatch();
    }

    /// Records work given up with its agent as lost; each task retries per its policy.
    async fn give_up(&mut self, agent: &AgentId, lost: Vec<GivenUp>, why: &str) {
        let now = self.clock.now();
        for GivenUp { id, since } in lost {
            let WorkId::Task(key) = id else {
                continue; // services and checks have no engine of their own yet
            };
            tracing::warn!(%agent, run = %key.run_id, task = %key.task, attempt = key.attempt, "attempt lost with its agent");
            let run = key.run_id;
            let record = AttemptRecord {
                key,
                started_at: since,
                ended_at: now,
                outcome: Outcome::Lost(why.to_string()),
            };
            self.on_attempt_finished(record).await;
            self.advance(run).await;
        }
    }

    /// An agent reported the end of work the principal had given up on: recorded, discarded.
    pub(super) async fn late_result(&mut self, agent: &AgentId, end: &WorkEnd) {
        let what = match &end.id {
            WorkId::Task(key) => format!(
                "attempt {} of task `{}` (run {})",
                key.attempt, key.task, key.run_id
            ),
            other => format!("{other:?}"),
        };
        let outcome = end.outcome().describe();
        self.agent_note(
            agent,
            AgentNoteKind::LateResult,
            format!("late result for {what} ({outcome}), discarded: it had been given up"),
        )
        .await;
        self.release_drained().await;
    }

    /// Lets go of draining agents that have finished their work.
    pub(super) async fn release_drained(&mut self) {
        for id in self.agents.released() {
            self.agent_note(
                &id,
                AgentNoteKind::Released,
                "drained: all its work ended, and it was let go".into(),
            )
            .await;
        }
    }

    async fn agent_note(&mut self, agent: &AgentId, kind: AgentNoteKind, message: String) {
        let state = self.agents.state_of(agent).unwrap_or(AgentState::Lost);
        let at = self.clock.now();
        self.emit(Event::Agent(AgentNote {
            agent: agent.clone(),
            kind,
            state,
            message,
            at,
        }))
        .await;
    }

    /// Serves `Agents`, `Cordon` and `Drain`.
    pub(super) async fn on_agents_request(
        &mut self,
        change: Option<(AgentId, Option<bool>)>,
    ) -> Response {
        if let Some((id, cordon)) = change {
            let changed = match cordon {
                Some(cordon) => self.agents.cordon(&id, cordon),
                None => self.agents.drain(&id),
            };
            match changed {
                Ok(state) => {
                    self.agent_note(
                        &id,
                        AgentNoteKind::StateChanged,
                        format!("{state} by an operator"),
                    )
                    .await;
                    self.release_drained().await;
                    self.dispatch();
                }
                Err(why) => return Response::Error(ApiError::new(ApiErrorKind::NotFound, why)),
            }
        }
        Response::Agents {
            agents: self.agents.statuses(),
        }
    }
}
