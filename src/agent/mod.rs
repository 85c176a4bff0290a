//! The local agent: runs assigned work (tasks, services, checks) as child processes of this
//! process, through the one executor in `exec`. The principal reaches it, as any agent,
//! through [`AgentLink`].

pub mod check;
mod exec;
pub mod lines;
pub mod orphans;
pub mod ready;
pub mod reaper;
pub mod remote;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::agent::{AgentEvent, AgentId, AgentInfo, AgentLink, Assignment, WorkId};

/// Default number of slots: one per CPU, at least 2.
pub fn default_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// The in-process agent: runs work as local processes, labelled `local=true`.
pub struct LocalAgent {
    info: AgentInfo,
    /// Where work runs; a relative `cwd` of an assignment is relative to it.
    workdir: std::path::PathBuf,
    events: mpsc::Sender<AgentEvent>,
    running: Arc<Mutex<HashMap<WorkId, CancellationToken>>>,
    reaper: Option<Arc<reaper::Reaper>>,
    /// Bounds the output of all its work in memory until the history has it: past it, the
    /// processes' pipes wait (see [`crate::protocol::Charge`]).
    budget: Arc<tokio::sync::Semaphore>,
    /// Cancelled to kill every process of its work at once, whatever their stop policies.
    kill: CancellationToken,
}

/// Output (text and per-line overhead) an agent's work may have in memory at once, on its
/// way to the history. A flood fills it in a fraction of a second and then goes at the pace
/// of the store; what is beyond waits in the pipes, not in the principal's memory.
pub const OUTPUT_BUDGET: usize = 32 * 1024 * 1024;

impl LocalAgent {
    /// A pool of `slots` concurrent tasks and checks in `workdir`, reporting to `events`; with
    /// a `reaper`, its process groups are stopped if this process dies.
    pub fn new(
        slots: usize,
        workdir: std::path::PathBuf,
        events: mpsc::Sender<AgentEvent>,
        reaper: Option<reaper::Reaper>,
    ) -> Self {
        Self::with_info(
            AgentInfo {
                id: AgentId("local".into()),
                slots,
                labels: BTreeMap::from([("local".to_string(), "true".to_string())]),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            workdir,
            events,
            reaper,
        )
    }

    /// [`LocalAgent::new`] under another name and labels (a remote agent's own pool).
    pub fn with_info(
        info: AgentInfo,
        workdir: std::path::PathBuf,
        events: mpsc::Sender<AgentEvent>,
        reaper: Option<reaper::Reaper>,
    ) -> Self {
        Self {
            info,
            workdir,
            events,
            running: Arc::default(),
            reaper: reaper.map(Arc::new),
            budget: Arc::new(tokio::sync::Semaphore::new(OUTPUT_BUDGET)),
            kill: CancellationToken::new(),
        }
    }
}

impl AgentLink for LocalAgent {
    fn info(&self) -> &AgentInfo {
        &self.info
    }

    fn assign(&self, mut job: Assignment) {
        job.cwd = Some(match job.cwd.take() {
            Some(dir) => self.workdir.join(dir),
            None => self.workdir.clone(),
        });
        let token = CancellationToken::new();
        lock(&self.running).insert(job.id.clone(), token.clone());
        let running = self.running.clone();
        let events = self.events.clone();
        let reaper = self.reaper.clone();
        let budget = self.budget.clone();
        let kill = self.kill.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            exec::run(job, (token, kill), events, budget, reaper.as_deref()).await;
            lock(&running).remove(&id);
        });
    }

    fn stop(&self, id: &WorkId) {
        if let Some(token) = lock(&self.running).get(id) {
            token.cancel();
        }
    }
}

impl LocalAgent {
    /// What kills every process of its work at once when cancelled (and every later one:
    /// it is meant for the end of the process).
    pub fn kill_switch(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// The work running now.
    pub fn running(&self) -> Vec<WorkId> {
        lock(&self.running).keys().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
