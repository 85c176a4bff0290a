//! The dispatcher: task attempts wait in one FIFO queue for a free slot on some agent, and an
//! attempt whose parents' results (or own earlier attempt) are not yet durable waits for the
//! store to confirm them first.

use super::{Engine, Internal};
use crate::principal::agents::Unplaced;
use crate::protocol::agent::{
    AgentEvent, AgentId, Assignment, Dispatch, Exit, StopCause, StopPolicy, WorkEnd, WorkId,
};
use crate::protocol::{Event, RunId, TaskState};

/// The mark of a held assignment whose dispatch has not been handed to the store yet.
const UNSEALED: u64 = u64::MAX;

/// An assignment placed on an agent and held until its dispatch is durable: an agent is
/// told only what a restarted principal will know it was told.
pub(super) struct Held {
    /// Sent once this many emitted events are durable ([`UNSEALED`] until its dispatch event
    /// is emitted).
    mark: u64,
    job: Assignment,
    agent: AgentId,
}

/// A task attempt waiting for a slot.
#[derive(Debug, Clone, Copy)]
pub(in crate::principal) struct ReadyAttempt {
    pub run: RunId,
    pub task: usize,
    pub attempt: u32,
    /// Dispatched only once this many emitted events are durable: a task that became ready
    /// because of its parents' results never starts before those results are in the file.
    pub durable_after: u64,
    /// Its task was told that no connected agent can take it.
    pub told: bool,
}

/// The queue of attempts waiting for a slot and the durable gate in front of it.
#[derive(Default)]
pub(super) struct Gate {
    /// Task attempts waiting for a slot, FIFO.
    pub ready: std::collections::VecDeque<ReadyAttempt>,
    /// Events handed to the store so far.
    pub emitted: u64,
    /// How many of them are known to be durable.
    pub durable: u64,
    /// A flush is under way to move `durable` forward.
    pub syncing: bool,
    /// Assignments waiting for their dispatch to be durable, in dispatch order. Every
    /// dispatch decided while one commit is under way waits for the next one: one commit
    /// covers them all, however many engine turns they came from.
    pub held: Vec<Held>,
    /// Held assignments that were stopped before they were sent: they end as cancelled
    /// without running.
    pub stop_held: std::collections::HashSet<WorkId>,
}

impl Engine {
    /// Queues an attempt for a slot; a `gated` one waits until every event emitted so far is
    /// durable (its parents' results, its own earlier attempt).
    pub(super) fn push_ready(&mut self, run: RunId, task: usize, attempt: u32, gated: bool) {
        self.gate.ready.push_back(ReadyAttempt {
            run,
            task,
            attempt,
            durable_after: if gated { self.gate.emitted } else { 0 },
            told: false,
        });
    }

    /// Hands queued attempts to agents while some agent has a free slot, in order; attempts
    /// that wait for durable events stay queued until the store confirms them, and attempts
    /// whose labels no agent with a free slot has stay queued (in order) for one that does.
    /// An attempt no connected agent could ever take says so, once, in its task's message.
    pub(super) fn dispatch(&mut self) {
        let mut waiting = 0;
        let mut i = 0;
        while self.agents.has_free_slot() && i < self.gate.ready.len() {
            let r = self.gate.ready[i];
            let Some(run) = self.runs.get_mut(&r.run) else {
                self.gate.ready.remove(i);
                continue;
            };
            let task = &mut run.tasks[r.task];
            if task.state != TaskState::Queued || task.attempt != r.attempt || task.on_agent {
                self.gate.ready.remove(i); // cancelled or superseded while it waited
                continue;
            }
            if r.durable_after > self.gate.durable {
                waiting += 1;
                i += 1;
                continue;
            }
            // Checked before the assignment is built: a task waiting for an agent with its
            // labels is looked at on every pass, and its argv need not be rendered each time.
            let wants = &run.spec.tasks[r.task].agent;
            if let Err(unplaced) = self.agents.room_for(wants) {
                if let Unplaced::NoMatch = unplaced
                    && !self.gate.ready[i].told
                {
                    self.gate.ready[i].told = true;
                    let key = crate::protocol::AttemptKey {
                        attempt: r.attempt,
                        ..run.key(r.task)
                    };
                    self.notes.push(Event::TaskState {
                        key,
                        state: TaskState::Queued,
                        at: self.clock.now(),
                        message: Some(self.agents.why_unplaceable(wants)),
                    });
                }
                i += 1;
                continue;
            }
            let job = run.assignment(r.task, StopPolicy::term(self.kill_grace));
            let Ok((agent, instance)) = self.agents.place(&job.id, job.kind.takes_slot(), wants)
            else {
                // Cannot happen after `room_for`; leave it queued rather than lose it.
                tracing::error!(run = %r.run, task = r.task, "no agent took a task it had room for");
                i += 1;
                continue;
            };
            if let WorkId::Task(key) = &job.id {
                self.notes.push(Event::Dispatched(Dispatch {
                    key: key.clone(),
                    agent: agent.clone(),
                    instance,
                    at: self.clock.now(),
                }));
            }
            if self.agents.is_remote(&agent) {
                self.gate.held.push(Held {
                    mark: UNSEALED,
                    job,
                    agent,
                });
            } else {
                // The in-process pool's processes die with the principal: there is nothing
                // to adopt after a restart, so it starts at once. Its dispatch is still
                // recorded before anything the attempt does reaches the file (events are
                // stored in order), so an attempt the file shows no dispatch for left no
                // trace: a restarted principal keeps it queued under its number.
                self.agents.tell(job);
            }
            run.tasks[r.task].on_agent = true;
            self.gate.ready.remove(i);
        }
        if waiting > 0 {
            self.sync();
        }
    }

    /// After the turn's events are handed to the store: the assignments dispatched in it
    /// wait for those events, and one commit is asked for all of them.
    pub(super) async fn seal_dispatches(&mut self) {
        let emitted = self.gate.emitted;
        let (mut waiting, mut fresh) = (false, false);
        for h in &mut self.gate.held {
            if h.mark == UNSEALED {
                h.mark = emitted;
                fresh = true;
            }
            waiting |= h.mark > self.gate.durable;
        }
        if fresh && waiting {
            // Not behind a commit under way: the writer answers every flush that reached it
            // during a commit with the next one, so commits stay back to back (never one per
            // dispatch) and a dispatch waits for one commit, not one and a half.
            self.flush_to(emitted);
        } else if waiting {
            self.sync();
        }
        self.release_held().await;
    }

    /// Sends the held assignments whose dispatch is durable (or ends those stopped first).
    pub(super) async fn release_held(&mut self) {
        let durable = self.gate.durable;
        if !self.gate.held.iter().any(|h| h.mark <= durable) {
            return;
        }
        let (due, wait): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.gate.held)
            .into_iter()
            .partition(|h| h.mark <= durable);
        self.gate.held = wait;
        for h in due {
            if !self.gate.stop_held.remove(&h.job.id) {
                // Given up meanwhile (its agent was lost): `tell` sends nothing.
                self.agents.tell(h.job);
                continue;
            }
            if self.agents.untold(&h.job.id) != Some(&h.agent) {
                continue;
            }
            // Stopped before the agent was told: it ends as a requested stop, never run.
            let now = chrono::Utc::now();
            let end = WorkEnd {
                id: h.job.id,
                started_at: now,
                ended_at: now,
                exit: Exit::Code(0),
                stopped: Some(StopCause::Requested),
                output: None,
            };
            self.on_agent(&h.agent, AgentEvent::Finished(end)).await;
        }
    }

    /// Stops `work`: an assignment still held ends when its dispatch is durable; adopted
    /// work stopped by this principal ends as it says (cancelled), not as interrupted.
    pub(super) fn stop_work(&mut self, work: WorkId) {
        self.adopted.remove(&work);
        if self.agents.untold(&work).is_some() {
            self.gate.stop_held.insert(work);
        } else {
            self.agents.stop(&work);
        }
    }

    /// Why a queued attempt waits, when it is not only for a free slot.
    pub(super) fn waiting_for(&self, r: &ReadyAttempt) -> Option<String> {
        let run = self.runs.get(&r.run)?;
        let wants = &run.spec.tasks[r.task].agent;
        (!wants.is_empty() && !self.agents.could_take(wants))
            .then(|| self.agents.why_unplaceable(wants))
    }

    /// Asks the store to commit what has been emitted, then dispatches what waited for it.
    pub(super) fn sync(&mut self) {
        if self.gate.syncing {
            return;
        }
        self.gate.syncing = true;
        self.flush_to(self.gate.emitted);
    }

    /// Asks the store to commit the first `mark` emitted events; [`Internal::Durable`] says
    /// when they are.
    fn flush_to(&self, mark: u64) {
        let store = self.store_tx.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            // While the disk is full this waits: dependents wait with it, nothing is lost.
            let done = store.flush().await;
            let _ = tx.send(Internal::Durable(if done.is_ok() { mark } else { 0 }));
        });
    }
}
