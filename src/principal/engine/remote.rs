//! Remote agents as the engine sees them: registration, heartbeats and leases, reports applied
//! once and acknowledged once stored, late results, and the operator's cordon and drain.

use super::{Engine, Timer};
use crate::protocol::agent::{
    AgentEvent, AgentId, AgentNews, AgentNote, AgentNoteKind, AgentState, FromAgent, MAX_RUNNING,
    ToAgent, WorkEnd, WorkId,
};
use crate::protocol::api::{ApiError, ApiErrorKind, Response};
use crate::protocol::{AttemptRecord, Event, Outcome};

use super::super::agents::{BadReports, GivenUp};

/// How long applied reports wait for the commit that lets them be acknowledged, at most.
const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

impl Engine {
    pub(super) async fn on_agent_news(&mut self, news: AgentNews) {
        match news {
            AgentNews::Hello {
                mut hello,
                key,
                outbox,
                previous_open,
            } => {
                let id = hello.info.id.clone();
                let version: String = hello.info.version.chars().take(64).collect();
                let (slots, labels) = (hello.info.slots, hello.info.labels.clone());
                let host: String = hello.host.chars().take(64).collect();
                let address = format!("{host} (pid {})", hello.pid);
                // An agent speaks only for work that is, or was, its own: what it lists that
                // the principal never gave anyone, or gave another agent, is not kept (the
                // agent stops it, as it is not in `keep`).
                let listed = hello.running.len();
                hello.running.retain(|w| {
                    (self.work_exists(w) || self.agents.gave_up(&id, w))
                        && !self.agents.placed_elsewhere(&id, w)
                });
                let foreign = listed - hello.running.len();
                let instance = hello.instance;
                match self.agents.hello(hello, outbox.clone(), previous_open) {
                    Ok(joined) => {
                        // Batches of checks sent to an earlier start of it are gone with it.
                        self.batches.instance_now(&id, instance);
                        self.agents.set_key(&id, key);
                        self.agents.send(
                            &id,
                            ToAgent::Welcome {
                                heartbeat: self.agents.heartbeat(),
                                keep: joined.keep,
                                acked: joined.acked,
                            },
                        );
                        let labels = crate::protocol::pairs_text(&labels, ",");
                        if foreign > 0 {
                            self.agents.refuse(Some(&id));
                            tracing::warn!(agent = %id, "the agent listed {foreign} piece(s) of work that are not its own; they are not kept");
                        }
                        let again = match (joined.again, joined.restarted) {
                            (true, true) => "again (a new process) ",
                            (true, false) => "again ",
                            _ => "",
                        };
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
                        for GivenUp { id: work, .. } in joined.unclaimed {
                            self.adopted.remove(&work);
                            if let WorkId::Task(key) = work {
                                tracing::info!(agent = %id, run = %key.run_id, task = %key.task, attempt = key.attempt, "the agent came back without this attempt: it runs again");
                                self.interrupt_attempt(&key).await;
                            }
                        }
                        self.arm_beat();
                        self.dispatch();
                    }
                    Err(reason) => {
                        self.agents.refuse(None);
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
                    FromAgent::Heartbeat { running: None } | FromAgent::Hello(_) => {}
                    FromAgent::Checked(results) => self.on_checked(&agent, results),
                    FromAgent::Heartbeat {
                        running: Some(running),
                    } => {
                        if running.len() > MAX_RUNNING {
                            self.agents.refuse(Some(&agent));
                            tracing::warn!(%agent, "dropped a heartbeat listing {} pieces of work", running.len());
                            return;
                        }
                        let lost = self.agents.reconcile(&agent, &running);
                        if !lost.is_empty() {
                            let why = format!("{agent} no longer runs it");
                            self.give_up(&agent, lost, &why).await;
                            self.release_drained().await;
                            self.dispatch();
                        }
                    }
                    FromAgent::Reports { first, events } => {
                        let count = events.len();
                        let skip = match self.agents.new_reports(&agent, first, count) {
                            Ok(skip) => skip,
                            Err(why) => {
                                self.agents.refuse(Some(&agent));
                                tracing::warn!(%agent, first, count, "dropped reports: {why}");
                                if let BadReports::Gap { expected } = why {
                                    // Reports in between were lost on the way: asked for
                                    // again rather than waiting for a reconnect.
                                    self.agents.ask_resend(&agent, expected);
                                }
                                return;
                            }
                        };
                        for (i, event) in events.into_iter().enumerate().skip(skip) {
                            if self.speaks_for(&agent, &event) {
                                // Work of the previous principal is adopted by its report.
                                self.agents.claim(&agent, event_work(&event));
                                self.on_agent(&agent, event).await;
                            } else {
                                self.agents.refuse(Some(&agent));
                                tracing::warn!(%agent, work = %event_work(&event), "dropped a report about work that is not this agent's");
                            }
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

    /// Whether `agent` may report `event`: the work was placed on it (in its current
    /// instance) and is work the principal knows (a run it has, a task index in range, an
    /// attempt it made).
    fn speaks_for(&self, agent: &AgentId, event: &AgentEvent) -> bool {
        let work = event_work(event);
        (self.agents.placed_on(agent, work) && self.work_exists(work))
            || self.agents.gave_up(agent, work)
    }

    /// Whether `work` names an attempt this principal made: its run is active, the task index
    /// is in range and names that task, and the attempt is not one it has yet to make.
    /// Services and checks never run on remote agents.
    pub(super) fn work_exists(&self, work: &WorkId) -> bool {
        let WorkId::Task(key) = work else {
            return false;
        };
        self.runs.get(&key.run_id).is_some_and(|r| {
            r.tasks.get(key.task_idx).is_some_and(|t| {
                *t.name == *key.task && key.attempt >= 1 && key.attempt <= t.attempt
            })
        })
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
        if self.beat_due.is_none() && self.agents.any_remote() {
            let every = self.agents.heartbeat();
            self.beat_due = Some(tokio::time::Instant::now() + every);
            self.set_timer(every, Timer::AgentBeat);
        }
    }

    /// Heartbeats the remote agents and gives up the work of those silent past their lease.
    pub(super) async fn agent_beat(&mut self) {
        let now = tokio::time::Instant::now();
        let due = self.beat_due.take().unwrap_or(now);
        let late = now.saturating_duration_since(due);
        if late > self.agents.heartbeat() {
            // The principal's own loop stood still (a stall, a suspend): the agents' silence
            // was ours. Every agent gets a fresh lease, and what they buffered meanwhile is
            // read (it waits in the agents socket) before anything can be declared lost.
            tracing::warn!(
                "the principal's loop stood still for {late:?}: every agent gets a fresh lease"
            );
            self.agents.refresh_leases(now, late);
        }
        self.agents.beat();
        for id in self.agents.expired(tokio::time::Instant::now()) {
            let lost = self.agents.lose(&id);
            // Its batches of checks count as unknown, not failed.
            self.batches.agent_gone(&id);
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

    /// A lease has passed since the start: the work of the previous principal that no agent
    /// came back for runs again.
    pub(super) async fn adoption_due(&mut self) {
        for GivenUp { id: work, .. } in self.agents.unclaimed() {
            self.adopted.remove(&work);
            if let WorkId::Task(key) = work {
                tracing::warn!(run = %key.run_id, task = %key.task, attempt = key.attempt, "no agent came back with this attempt within a lease: it runs again");
                self.interrupt_attempt(&key).await;
            }
        }
        self.dispatch();
    }

    /// Attempt `key`, dispatched by a previous principal, is not held by any agent (or was
    /// stopped for that principal's restart): recorded as interrupted and run again (a
    /// cancelled run's is cancelled).
    pub(super) async fn interrupt_attempt(&mut self, key: &crate::protocol::AttemptKey) {
        let Some(run) = self.runs.get_mut(&key.run_id) else {
            return;
        };
        let stopping = run.cancel_requested || run.fail_fast_tripped;
        let Some(t) = run.tasks.get_mut(key.task_idx) else {
            return;
        };
        if t.attempt != key.attempt || !t.on_agent {
            return;
        }
        if stopping {
            let now = self.clock.now();
            let record = AttemptRecord {
                key: key.clone(),
                started_at: now,
                ended_at: now,
                outcome: Outcome::Cancelled,
            };
            self.on_attempt_finished(record).await;
        } else {
            t.on_agent = false;
            let idx = key.task_idx;
            self.step(key.run_id, |run| run.interrupted(idx)).await;
        }
        self.advance(key.run_id).await;
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
            self.batches.agent_gone(&id);
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

/// The work an agent's report is about.
fn event_work(event: &AgentEvent) -> &WorkId {
    match event {
        AgentEvent::Started { id, .. } | AgentEvent::Output { id, .. } => id,
        AgentEvent::Finished(end) => &end.id,
    }
}
