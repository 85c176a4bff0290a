//! The principal owns the state of all work: it accepts triggers, runs each workflow's DAG,
//! hands ready task attempts to agents, and publishes every transition as an [`Event`].
//!
//! It is an actor: one task owns the state and everything else talks to it through
//! [`PrincipalHandle`].

mod agents;
pub mod bootstrap;
mod engine;
// Made-up monitors behind the `fake-monitors` failure point, for the monitor faces' tests.
pub mod fake_monitors;
mod run;
pub mod schedule;
mod timers;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::protocol::Event;
pub use crate::protocol::api::RunOutcome;
use crate::protocol::api::{
    ApiError, ApiErrorKind, BoxFuture, Caller, Client, ClientError, Request, Response,
};
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
    /// The workflows directory the catalog was loaded from: watched for changes and written by
    /// `PutSpec`. `None`: specs are fixed (benchmarks, some tests).
    pub workflows_dir: Option<PathBuf>,
    /// Problems found when the catalog was loaded.
    pub spec_problems: Vec<crate::spec::Diagnostic>,
    /// Start the watchdog (`opsconsole __reap`, from this executable) that stops task
    /// processes if this process dies. Only for the `opsconsole` binary itself.
    pub watchdog: bool,
    /// Serve one run and nothing else (`opsconsole run` without a principal): fire no
    /// schedules and leave the unfinished runs of earlier principals for the next one.
    pub one_off: bool,
    /// How often remote agents and the principal say they are still there; an agent silent
    /// for three of these loses its lease and its work is run elsewhere.
    pub agent_heartbeat: Duration,
}

/// Default of [`PrincipalConfig::agent_heartbeat`].
pub const DEFAULT_AGENT_HEARTBEAT: Duration = Duration::from_secs(2);

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

impl From<TriggerError> for ApiError {
    fn from(e: TriggerError) -> Self {
        let kind = match e {
            TriggerError::UnknownWorkflow { .. } | TriggerError::UnknownParam { .. } => {
                ApiErrorKind::InvalidInput
            }
            TriggerError::ShuttingDown | TriggerError::NotStored(_) => ApiErrorKind::Unavailable,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// The agents of an embedded principal: the local pool, and the channel all agents report on.
fn local_pool(
    config: &PrincipalConfig,
) -> (
    agents::Agents,
    mpsc::Receiver<crate::protocol::agent::AgentEvent>,
    tokio_util::sync::CancellationToken,
) {
    let (agent_tx, agent_rx) = mpsc::channel(4096);
    let reaper = if config.watchdog {
        std::env::current_exe()
            .ok()
            .and_then(|exe| crate::agent::reaper::Reaper::start(&exe, config.kill_grace))
    } else {
        None
    };
    let mut agents = agents::Agents::new(config.agent_heartbeat);
    let local =
        crate::agent::LocalAgent::new(config.slots, config.workdir.clone(), agent_tx, reaper);
    let kill = local.kill_switch();
    agents.add(Box::new(local));
    (agents, agent_rx, kill)
}

/// Messages the principal's actor serves.
pub(crate) enum Command {
    /// A face's request; the answer goes to `reply`.
    Api {
        request: Request,
        /// Who asks, as the transport authenticated it.
        caller: Caller,
        reply: oneshot::Sender<Response>,
    },
    /// Stop and flush the store. `interrupt`: stop the processes but leave the runs unfinished,
    /// to be resumed by the next principal; otherwise cancel them.
    Shutdown { interrupt: bool },
    /// During a shutdown: kill every process that is left at once, whatever its grace.
    KillNow,
}

/// The principal stopped before answering.
#[derive(Debug, thiserror::Error)]
#[error("the principal has stopped")]
pub struct Stopped;

/// How the engine's task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EngineEnd {
    /// It was asked to stop and did.
    Stopped,
    /// It died (a bug); the text says why.
    Died(String),
}

/// Talks to a running principal.
pub struct PrincipalHandle {
    commands: mpsc::Sender<Command>,
    agent_news: mpsc::Sender<crate::protocol::agent::AgentNews>,
    events: broadcast::Sender<Event>,
    ended: watch::Receiver<Option<EngineEnd>>,
}

impl Client for PrincipalHandle {
    fn call(&self, request: Request) -> BoxFuture<'_, Result<Response, ClientError>> {
        self.call_as(Caller::local(), request)
    }

    fn call_as(
        &self,
        caller: Caller,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, ClientError>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.commands
                .send(Command::Api {
                    request,
                    caller,
                    reply,
                })
                .await
                .map_err(|_| ClientError::Unreachable(Stopped.to_string()))?;
            rx.await
                .map_err(|_| ClientError::Unreachable(Stopped.to_string()))
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
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
        let (agent_news, news_rx) = mpsc::channel(4096);
        let agents = local_pool(&config);
        let mut engine = engine::Engine::new(
            catalog,
            store,
            recovered,
            config,
            agents,
            news_rx,
            events.clone(),
        );
        if let Some(link) = fake_monitors::from_failpoint() {
            engine.set_monitors(link);
        }
        let task = tokio::spawn(engine.run(rx));
        let (ended_tx, ended) = watch::channel(None);
        tokio::spawn(async move {
            let end = match task.await {
                Ok(()) => EngineEnd::Stopped,
                Err(e) if e.is_panic() => EngineEnd::Died(engine::panic_text(&*e.into_panic())),
                Err(e) => EngineEnd::Died(e.to_string()),
            };
            if let EngineEnd::Died(why) = &end {
                tracing::error!("the principal's engine died: {why}");
            }
            let _ = ended_tx.send(Some(end));
        });
        Self {
            commands,
            agent_news,
            events,
            ended,
        }
    }

    /// Where an agents socket sends what remote agents say.
    pub fn agent_gate(&self) -> crate::protocol::zmq::agents::AgentGate {
        crate::protocol::zmq::agents::AgentGate {
            news: self.agent_news.clone(),
        }
    }

    /// Completes only if the engine dies (a bug), with the reason; a process serving nothing
    /// must exit instead of answering "no principal" forever.
    pub async fn died(&self) -> String {
        let mut ended = self.ended.clone();
        match ended.wait_for(Option::is_some).await.map(|e| e.clone()) {
            Ok(Some(EngineEnd::Died(why))) => why,
            _ => std::future::pending().await,
        }
    }

    /// Cancels all work, writes every event to the store and stops; later calls return at once.
    pub async fn shutdown(&self) {
        self.stop(false).await;
    }

    /// Stops the task processes but leaves their runs unfinished in the store, so that the next
    /// principal resumes them (a service restart); writes every event and stops.
    pub async fn shutdown_for_restart(&self) {
        self.stop(true).await;
    }

    /// During a shutdown (a second Ctrl-C or SIGTERM): kills every process that is left at
    /// once instead of waiting out their graces; the shutdown then completes as usual.
    pub async fn kill_now(&self) {
        let _ = self.commands.send(Command::KillNow).await;
    }

    async fn stop(&self, interrupt: bool) {
        let _ = self.commands.send(Command::Shutdown { interrupt }).await;
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(Option::is_some).await;
    }
}
