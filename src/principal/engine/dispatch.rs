//! The dispatcher: task attempts wait in one FIFO queue for a free slot on some agent, and an
//! attempt whose parents' results (or own earlier attempt) are not yet durable waits for the
//! store to confirm them first.

use super::{Engine, Internal};
use crate::protocol::agent::StopPolicy;
use crate::protocol::{RunId, TaskState};

/// A task attempt waiting for a slot.
#[derive(Debug, Clone, Copy)]
pub(in crate::principal) struct ReadyAttempt {
    pub run: RunId,
    pub task: usize,
    pub attempt: u32,
    /// Dispatched only once this many emitted events are durable: a task that became ready
    /// because of its parents' results never starts before those results are in the file.
    pub durable_after: u64,
}

impl Engine {
    /// Queues an attempt for a slot; a `gated` one waits until every event emitted so far is
    /// durable (its parents' results, its own earlier attempt).
    pub(super) fn push_ready(&mut self, run: RunId, task: usize, attempt: u32, gated: bool) {
        self.ready.push_back(ReadyAttempt {
            run,
            task,
            attempt,
            durable_after: if gated { self.emitted } else { 0 },
        });
    }

    /// Hands queued attempts to the agent while it has free slots; attempts that wait for
    /// durable events stay queued (in order) until the store confirms them.
    pub(super) fn dispatch(&mut self) {
        let mut waiting = 0;
        let mut i = 0;
        while self.agents.has_free_slot() && i < self.ready.len() {
            let r = self.ready[i];
            let Some(run) = self.runs.get_mut(&r.run) else {
                self.ready.remove(i);
                continue;
            };
            let task = &mut run.tasks[r.task];
            if task.state != TaskState::Queued || task.attempt != r.attempt || task.on_agent {
                self.ready.remove(i); // cancelled or superseded while it waited
                continue;
            }
            if r.durable_after > self.durable {
                waiting += 1;
                i += 1;
                continue;
            }
            self.ready.remove(i);
            task.on_agent = true;
            let job = run.assignment(r.task, &self.workdir, StopPolicy::term(self.kill_grace));
            if let Err(job) = self.agents.assign(job) {
                // Cannot happen while a slot is free; put it back rather than lose it.
                run.tasks[r.task].on_agent = false;
                self.ready.insert(i, r);
                tracing::error!(id = ?job.id, "no agent took a task despite a free slot");
                break;
            }
        }
        if waiting > 0 {
            self.sync();
        }
    }

    /// Asks the store to commit what has been emitted, then dispatches what waited for it.
    pub(super) fn sync(&mut self) {
        if self.syncing {
            return;
        }
        self.syncing = true;
        let mark = self.emitted;
        let store = self.store_tx.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            // While the disk is full this waits: dependents wait with it, nothing is lost.
            let done = store.flush().await;
            let _ = tx.send(Internal::Durable(if done.is_ok() { mark } else { 0 }));
        });
    }
}
