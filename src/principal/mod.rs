//! The principal owns the state of all work: it accepts triggers, runs each workflow's DAG,
//! hands ready task attempts to agents, and publishes every transition as an [`Event`].
//!
//! It is an actor: one task owns the state and everything else talks to it through
//! [`PrincipalHandle`].

mod agents;
// Batches of checks in flight on agents (a monitor's `from:`).
mod batches;
pub mod bootstrap;
mod engine;
// The monitor actor: runs every `kind: monitor` check; locations: checks on agents by labels.
pub(crate) mod monitoring;
pub use monitoring::locations::{LocationError, Locations};
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
    /// Run checks on one live agent matching some labels (a monitor's `from:`).
    RunChecks(batches::Ask),
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
    engine: EngineClient,
    agent_news: mpsc::Sender<crate::protocol::agent::AgentNews>,
    events: broadcast::Sender<Event>,
    ended: watch::Receiver<Option<EngineEnd>>,
    /// Where ping URLs point, once [`PrincipalHandle::listen_for_pings`] listens.
    ping_urls: monitoring::ping_url::SharedPingUrls,
    /// The monitor actor's board, when it runs (read by `bench monitors` for its figures).
    monitor_board: Option<crate::protocol::board::SharedBoard>,
}

/// A [`Client`] that talks to the engine in this process: what the faces get through
/// [`PrincipalHandle`] and what the principal's own actors (monitors) use to ask the engine,
/// so an intervention goes through the same requests, checks and history as an operator's.
#[derive(Clone)]
pub(crate) struct EngineClient {
    commands: mpsc::Sender<Command>,
}

impl Client for EngineClient {
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
        // The engine's own actors do not follow events through this client.
        broadcast::channel(1).1
    }
}

impl Client for PrincipalHandle {
    fn call(&self, request: Request) -> BoxFuture<'_, Result<Response, ClientError>> {
        self.engine.call(request)
    }

    fn call_as(
        &self,
        caller: Caller,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, ClientError>> {
        self.engine.call_as(caller, request)
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
        let one_off = config.one_off;
        let monitor_workdir = config.workdir.clone();
        let (store_tx, store_reader) = (store.sender(), store.reader());
        let mut engine = engine::Engine::new(
            catalog,
            store,
            recovered,
            config,
            agents,
            news_rx,
            events.clone(),
        );
        let engine_client = EngineClient {
            commands: commands.clone(),
        };
        let mut monitor_board = None;
        if let Some(link) = fake_monitors::from_failpoint() {
            engine.set_monitors(link);
        } else if !one_off {
            // Always, even with no monitor loaded yet: a file saved later starts checking
            // at once (an idle actor costs a timer tick).
            let (set, reloads) = engine.monitor_reloads();
            let link = monitoring::start(monitoring::Setup {
                set,
                reloads,
                store: store_tx,
                reader: store_reader,
                engine: engine_client,
                prober: crate::agent::check::Prober::shared(),
                workdir: monitor_workdir,
                events: events.clone(),
            });
            monitor_board = Some(link.board().clone());
            engine.set_monitors(link);
        }
        let ping_urls = monitoring::ping_url::SharedPingUrls::default();
        engine.set_ping_urls(ping_urls.clone());
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
            engine: EngineClient {
                commands: commands.clone(),
            },
            commands,
            agent_news,
            events,
            ended,
            ping_urls,
            monitor_board,
        }
    }

    /// Runs checks on agents by their labels (a monitor's `from:`) through this principal.
    pub fn locations(&self) -> Locations {
        Locations::new(self.engine.clone())
    }

    /// Opens the ping listener on `addr` (`principal --ping-listen`) until `stop`: push
    /// monitors' ping URLs point there, their secrets derived from the data dir's ping key
    /// (made on first start). Returns the address it listens on.
    pub async fn listen_for_pings(
        &self,
        addr: std::net::SocketAddr,
        data_dir: &std::path::Path,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<std::net::SocketAddr, String> {
        let key = monitoring::ping_url::PingKey::load_or_create(data_dir)
            .map_err(|e| format!("the ping key: {e}"))?;
        let key = std::sync::Arc::new(key);
        let engine: std::sync::Arc<dyn Client> = std::sync::Arc::new(self.engine.clone());
        let listener = monitoring::ping_listen::serve(addr, key.clone(), engine, stop)
            .await
            .map_err(|e| format!("--ping-listen {addr}: {e}"))?;
        let _ = self.ping_urls.set(monitoring::ping_url::PingUrls {
            base: format!("http://{}", listener.addr),
            key,
            counts: listener.counts,
        });
        Ok(listener.addr)
    }

    /// The monitor actor's figures (`None` when no actor runs: the catalog has no monitors).
    pub fn monitor_stats(&self) -> Option<crate::protocol::board::MonitorStats> {
        let board = self.monitor_board.as_ref()?;
        Some(board.read().unwrap_or_else(|e| e.into_inner()).stats())
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
