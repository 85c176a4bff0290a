//! Agents execute task attempts. The local pool runs them as child processes of this
//! process; remote agents (a later transport) speak the same `Assignment`/`AgentEvent` pair.

mod exec;
pub mod lines;
pub mod orphans;
pub mod reaper;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::AttemptKey;
pub use exec::{AgentEvent, Assignment};

/// Default number of slots: one per CPU, at least 2.
pub fn default_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// Runs assigned attempts as local processes; the principal keeps track of its free slots.
pub struct LocalAgent {
    slots: usize,
    kill_grace: Duration,
    events: mpsc::Sender<AgentEvent>,
    running: Arc<Mutex<HashMap<AttemptKey, CancellationToken>>>,
    reaper: Option<Arc<reaper::Reaper>>,
}

impl LocalAgent {
    /// A pool of `slots` concurrent processes reporting to `events`; with a `reaper`, their
    /// process groups are stopped if this process dies.
    pub fn new(
        slots: usize,
        kill_grace: Duration,
        events: mpsc::Sender<AgentEvent>,
        reaper: Option<reaper::Reaper>,
    ) -> Self {
        Self {
            slots: slots.max(1),
            kill_grace,
            events,
            running: Arc::default(),
            reaper: reaper.map(Arc::new),
        }
    }

    /// How many attempts may run at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Starts an attempt (the caller ensures a slot is free).
    pub fn assign(&self, job: Assignment) {
        let token = CancellationToken::new();
        lock(&self.running).insert(job.key.clone(), token.clone());
        let running = self.running.clone();
        let events = self.events.clone();
        let grace = self.kill_grace;
        let reaper = self.reaper.clone();
        tokio::spawn(async move {
            let key = job.key.clone();
            exec::run_attempt(job, token, grace, events, reaper.as_deref()).await;
            lock(&running).remove(&key);
        });
    }

    /// Asks a running attempt to stop (SIGTERM, then SIGKILL after the grace period).
    pub fn cancel(&self, key: &AttemptKey) {
        if let Some(token) = lock(&self.running).get(key) {
            token.cancel();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
