//! The principal owns the state of all work: it accepts triggers, runs each workflow's DAG,
//! hands ready task attempts to agents, and publishes every transition as an [`Event`].
//!
//! It is an actor: one task owns the state and everything else talks to it through
//! [`PrincipalHandle`].

mod engine;
mod run;
pub mod schedule;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::protocol::{Event, RunId, RunState};
use crate::spec::Catalog;
use crate::store::Store;

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 16 * 1024;

/// Settings of an embedded principal.
#[derive(Debug, Clone)]
pub struct PrincipalConfig {
    /// Concurrent task processes of the local agent pool.
    pub slots: usize,
    /// Time between SIGTERM and SIGKILL when stopping a task.
    pub kill_grace: Duration,
    /// Directory tasks run in (their `cwd` is relative to it).
    pub workdir: PathBuf,
}

/// Why a trigger was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// No valid workflow has that name.
    #[error("unknown workflow `{name}`{}", hint(.suggestion))]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The closest known name.
        suggestion: Option<String>,
    },
    /// A `--param` names a parameter the workflow does not declare.
    #[error("workflow `{workflow}` has no parameter `{param}`; it declares: {}", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
    UnknownParam {
        /// The workflow.
        workflow: String,
        /// The undeclared name.
        param: String,
        /// What it does declare.
        known: Vec<String>,
    },
    /// The principal is stopping and takes no new work.
    #[error("opsconsole is shutting down and accepts no new runs")]
    ShuttingDown,
    /// The run could not be written to the history store, so it was not accepted durably.
    #[error("the run could not be stored ({0}); check the data directory's disk and permissions")]
    NotStored(String),
}

fn hint(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(": did you mean `{s}`?"))
        .unwrap_or_else(|| ": run `opsconsole validate` to list the valid workflows".into())
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunOutcome {
    /// The run.
    pub run_id: RunId,
    /// Its final state.
    pub state: RunState,
    /// Tasks that failed or timed out for good.
    pub failed_tasks: Vec<String>,
}

/// Requests the principal serves.
pub(crate) enum Command {
    Trigger {
        workflow: String,
        params: BTreeMap<String, String>,
        trigger: String,
        reply: oneshot::Sender<Result<RunId, TriggerError>>,
    },
    Cancel {
        run_id: RunId,
        reply: oneshot::Sender<bool>,
    },
    Wait {
        run_id: RunId,
        reply: oneshot::Sender<Option<RunOutcome>>,
    },
    Shutdown,
}

/// The principal stopped before answering.
#[derive(Debug, thiserror::Error)]
#[error("the principal has stopped")]
pub struct Stopped;

/// Talks to a running principal.
pub struct PrincipalHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl PrincipalHandle {
    /// Starts a principal over `catalog`, writing history to `store`, with a local agent pool.
    pub fn start(
        catalog: Catalog,
        store: Store,
        recovered: crate::store::Recovered,
        config: PrincipalConfig,
    ) -> Self {
        let (commands, rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let engine = engine::Engine::new(catalog, store, recovered, config, events.clone());
        let task = tokio::spawn(engine.run(rx));
        Self {
            commands,
            events,
            task,
        }
    }

    /// Every event from now on. A receiver that falls far behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Accepts a run of `workflow` with parameter overrides.
    pub async fn trigger(
        &self,
        workflow: &str,
        params: BTreeMap<String, String>,
    ) -> Result<Result<RunId, TriggerError>, Stopped> {
        self.ask(|reply| Command::Trigger {
            workflow: workflow.to_string(),
            params,
            trigger: "manual".into(),
            reply,
        })
        .await
    }

    /// Cancels a run; false when no such run is active.
    pub async fn cancel(&self, run_id: RunId) -> Result<bool, Stopped> {
        self.ask(|reply| Command::Cancel { run_id, reply }).await
    }

    /// Waits until the run has finished; `None` for a run this principal does not know.
    pub async fn wait(&self, run_id: RunId) -> Result<Option<RunOutcome>, Stopped> {
        self.ask(|reply| Command::Wait { run_id, reply }).await
    }

    /// Cancels all work, writes every event to the store and stops.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Err(e) = self.task.await {
            tracing::error!("principal task ended abnormally: {e}");
        }
    }
}
