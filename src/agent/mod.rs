//! The local agent: runs assigned work (tasks, services, checks) as child processes of this
//! process, through the one executor in `exec`. The principal reaches it, as any agent,
//! through [`AgentLink`].

pub mod batch;
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

use crate::protocol::agent::{
    AgentEvent, AgentId, AgentInfo, AgentLink, Assignment, Exit, StopCause, WorkEnd, WorkId,
};

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
    /// One permit per slot when the pool holds assignments beyond its slots (a remote
    /// agent's, see [`LocalAgent::queueing`]): work that takes a slot starts with a permit.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Runs its batches of checks; made on the first batch.
    prober: std::sync::OnceLock<check::Prober>,
    /// Places for batches of checks running at once.
    batches: Arc<tokio::sync::Semaphore>,
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
            slots: None,
            prober: std::sync::OnceLock::new(),
            batches: Arc::new(tokio::sync::Semaphore::new(
                crate::protocol::batch::MAX_BATCHES_PER_AGENT,
            )),
        }
    }

    /// The pool takes assignments beyond its slots and holds them, in order, until a slot
    /// frees up: its principal can send the next work while this runs, instead of after.
    pub fn queueing(mut self) -> Self {
        self.slots = Some(Arc::new(tokio::sync::Semaphore::new(
            self.info.slots.max(1),
        )));
        self
    }

    /// How many assignments it holds beyond its slots, at most: one per slot when
    /// [`LocalAgent::queueing`], else none.
    pub fn queue(&self) -> usize {
        if self.slots.is_some() {
            self.info.slots
        } else {
            0
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
        let slots = self.slots.clone().filter(|_| job.kind.takes_slot());
        tokio::spawn(async move {
            let id = job.id.clone();
            // Held until a slot frees up; stopped meanwhile, it ends without having run.
            let (mut permit, mut stopped_first) = (None, false);
            if let Some(slots) = slots {
                tokio::select! {
                    p = slots.acquire_owned() => permit = p.ok(),
                    () = token.cancelled() => stopped_first = true,
                    () = kill.cancelled() => stopped_first = true,
                }
            }
            if stopped_first {
                let now = chrono::Utc::now();
                let end = WorkEnd {
                    id: id.clone(),
                    started_at: now,
                    ended_at: now,
                    exit: Exit::Code(0),
                    stopped: Some(StopCause::Requested),
                    output: None,
                };
                let _ = events.send(AgentEvent::Finished(end)).await;
            } else {
                exec::run(job, (token, kill), events, budget, reaper.as_deref()).await;
            }
            drop(permit);
            lock(&running).remove(&id);
        });
    }

    fn stop(&self, id: &WorkId) {
        if let Some(token) = lock(&self.running).get(id) {
            token.cancel();
        }
    }

    fn run_checks(
        &self,
        batch: crate::protocol::batch::CheckBatch,
        results: mpsc::Sender<crate::protocol::batch::CheckResults>,
    ) -> bool {
        let Ok(place) = self.batches.clone().try_acquire_owned() else {
            tracing::warn!(
                "dropped {}: {} batches of checks run here already",
                batch.id,
                crate::protocol::batch::MAX_BATCHES_PER_AGENT
            );
            return false;
        };
        // Command checks run as its tasks do: in its workdir, watched by its reaper, killed
        // with the rest of its work.
        let prober = self
            .prober
            .get_or_init(|| {
                check::Prober::build(check::ProberConfig {
                    exec: check::ExecSetup {
                        workdir: Some(self.workdir.clone()),
                        reaper: self.reaper.clone(),
                        kill: self.kill.clone(),
                    },
                    ..check::ProberConfig::default()
                })
            })
            .clone();
        tokio::spawn(async move {
            batch::run(prober, batch, results).await;
            drop(place);
        });
        true
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

/// Locks `m` even if a thread panicked while holding it: nothing in the agent's locks is left
/// half-changed by a panic (each holds a map, a queue or a string changed in one step), and a
/// panicked check or service must not stop every other one.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
