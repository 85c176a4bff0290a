//! The dispatcher: task attempts wait in one FIFO queue for a free slot on some agent, and an
//! attempt whose parents' results (or own earlier attempt) are not yet durable waits for the
//! store to confirm them first.

use super::{Engine, Internal};
use crate::principal::agents::Unplaced;
use crate::protocol::agent::StopPolicy;
use crate::protocol::{Event, RunId, TaskState};

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
            if self.agents.assign(job, wants).is_err() {
                // Cannot happen after `room_for`; leave it queued rather than lose it.
                tracing::error!(run = %r.run, task = r.task, "no agent took a task it had room for");
                i += 1;
                continue;
            }
            run.tasks[r.task].on_agent = true;
            self.gate.ready.remove(i);
        }
        if waiting > 0 {
            self.sync();
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
        let mark = self.gate.emitted;
        let store = self.store_tx.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            // While the disk is full this waits: dependents wait with it, nothing is lost.
            let done = store.flush().await;
            let _ = tx.send(Internal::Durable(if done.is_ok() { mark } else { 0 }));
        });
    }
}
