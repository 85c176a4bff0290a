//! Requests a face sends to the principal and the answers it gets, the same in-process and
//! over the network; and the [`Client`] trait both transports implement.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::Diagnostic;
use super::agent::{AgentId, AgentStatus};
use super::history::{AttemptRow, RunSummary, StoredLine};
use super::monitor::{
    Incident, MonitorAction, MonitorDetail, MonitorFilter, MonitorPage, MonitorSummary,
};
use super::service::{ServiceAction, ServiceLine, ServiceNode, ServiceRecord};
use super::{Event, RunId, RunState, Stream, TaskState};

/// Version of the request/response/event types; peers with another version are refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most lines one [`Request::Logs`] answer carries; page with `offset` for more.
pub const MAX_LOG_PAGE: usize = 10_000;

/// Something a face asks of the principal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Principal, agents and workflows at a glance.
    Status,
    /// Start a run now.
    Trigger {
        /// Workflow name.
        workflow: String,
        /// Parameter overrides.
        params: BTreeMap<String, String>,
    },
    /// Stop a run.
    Cancel {
        /// The run.
        run_id: RunId,
    },
    /// Answer when the run has ended (long poll).
    WaitRun {
        /// The run.
        run_id: RunId,
    },
    /// Past and present runs, newest first.
    History {
        /// Only this workflow.
        workflow: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// Stop a workflow's schedule from firing (persists across restarts).
    Pause {
        /// The workflow.
        workflow: String,
    },
    /// Let a paused workflow's schedule fire again.
    Resume {
        /// The workflow.
        workflow: String,
    },
    /// Stored output of a run, in order.
    Logs {
        /// The run.
        run_id: RunId,
        /// Only this task.
        task: Option<String>,
        /// Only this stream.
        stream: Option<Stream>,
        /// Skip this many lines (paging).
        offset: usize,
        /// At most this many lines (capped at [`MAX_LOG_PAGE`]).
        limit: usize,
        /// Count `offset` from the end: the page is the `limit` lines that end `offset` lines
        /// before the last one (the tail of a huge run without reading all of it).
        #[serde(default)]
        from_end: bool,
    },
    /// Every workflow with its parameters, tasks and schedule.
    Workflows,
    /// The YAML text of a workflow's file.
    GetSpec {
        /// The workflow.
        workflow: String,
    },
    /// Validate `text` and, when valid, write it atomically to `file` in the workflows directory
    /// and reload; nothing is written when it is invalid. The write keeps the file's mode and
    /// goes through a symbolic link to its target.
    PutSpec {
        /// File name relative to the workflows directory (e.g. `etl.yaml`).
        file: String,
        /// The complete new content.
        text: String,
        /// What the text was based on: the `hash` of [`Response::Spec`] (or of the last
        /// [`Response::SpecSaved`]); the save is refused with [`Response::SpecConflict`] when
        /// the file on disk no longer has it. `None`: a new file, refused when `file` exists
        /// (a new file never replaces one).
        #[serde(default)]
        base_hash: Option<String>,
    },
    /// Run the failed, timed-out, cancelled and skipped tasks of an ended run again, in the same
    /// run; tasks that succeeded keep their result.
    Retry {
        /// The run.
        run_id: RunId,
    },
    /// One run with its tasks, their states and attempts.
    RunDetail {
        /// The run.
        run_id: RunId,
    },
    /// Runs waiting for `max_active_runs` and task attempts waiting for a slot, in order.
    Queue,
    /// Every agent the principal knows: the in-process pool and remote agents.
    Agents,
    /// Stop giving an agent new work (`cordon: true`), or let it take work again.
    Cordon {
        /// The agent.
        agent: AgentId,
        /// True to cordon, false to uncordon.
        cordon: bool,
    },
    /// Let an agent finish what it runs, give it nothing new, and let it go once idle.
    Drain {
        /// The agent.
        agent: AgentId,
    },
    /// The supervision trees, or the subtree at `path`.
    Services {
        /// `web` or `web/api`; `None`: every tree.
        #[serde(default)]
        path: Option<String>,
    },
    /// Stored lifecycle events (starts, exits, restarts, holds) of a service or subtree.
    ServiceHistory {
        /// `web/api`, or `web`; `None`: every service.
        #[serde(default)]
        path: Option<String>,
        /// The newest this many.
        limit: usize,
    },
    /// Stored output lines of a service or subtree.
    ServiceLogs {
        /// `web/api`, or `web`; `None`: every service.
        #[serde(default)]
        path: Option<String>,
        /// The newest this many (capped at [`MAX_LOG_PAGE`]); with `offset`, this many from
        /// there.
        limit: usize,
        /// Lines to skip from the oldest, to page through all of them in order; `None`: the
        /// newest `limit`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<usize>,
    },
    /// Start, stop (and hold) or restart a service or a whole subtree.
    ServiceControl {
        /// `web/api`, or `web` for the subtree.
        path: String,
        /// What to do.
        action: ServiceAction,
    },
    /// What callers changed (who, what, to what), newest first.
    Actions {
        /// The newest this many.
        limit: usize,
    },
    /// Validate the workflow files the principal has loaded, as it loads them (its
    /// workflows directory, not the caller's).
    ValidateLoaded,
    // ---- monitors ----
    /// Monitors a filter keeps, a page of them, with the counts per state of all.
    Monitors {
        /// Which ones.
        #[serde(default)]
        filter: MonitorFilter,
        /// Skip this many of those kept.
        #[serde(default)]
        offset: usize,
        /// At most this many (capped at [`MAX_MONITOR_PAGE`]).
        limit: usize,
    },
    /// One monitor in full: last results, conditions with the values seen, response times,
    /// per-location results, its open incident.
    Monitor {
        /// The monitor.
        name: String,
    },
    /// Open incidents (oldest first), then the recently closed ones (newest first).
    Incidents {
        /// Only the open ones.
        #[serde(default)]
        open_only: bool,
        /// At most this many.
        limit: usize,
    },
    /// Pause, resume or check a monitor now.
    MonitorControl {
        /// The monitor.
        name: String,
        /// What to do.
        action: MonitorAction,
    },
    /// A push monitor's job reports in (`opsconsole ping NAME [--fail]`): recorded as a
    /// result of the monitor, failed at once when `ok` is false. A viewer may not send it.
    Ping {
        /// The push monitor.
        name: String,
        /// False: the job reports a failure.
        #[serde(default = "yes")]
        ok: bool,
        /// What the job says (at most [`MAX_PING_MESSAGE`] bytes are kept).
        #[serde(default)]
        message: Option<String>,
    },
    /// The ping URL of a push monitor (it carries the monitor's secret: a viewer may not
    /// ask for it).
    PingUrl {
        /// The push monitor.
        name: String,
    },
}

fn yes() -> bool {
    true
}

/// Most bytes of a ping's message the principal keeps.
pub const MAX_PING_MESSAGE: usize = 1024;

/// Most monitors one [`Request::Monitors`] answer carries; page with `offset` for more.
pub const MAX_MONITOR_PAGE: usize = 10_000;

impl Request {
    /// Whether serving it changes anything: such requests are not repeated after a lost
    /// answer, and a viewer may not make them.
    pub fn changes_state(&self) -> bool {
        match self {
            Request::Trigger { .. }
            | Request::Cancel { .. }
            | Request::Pause { .. }
            | Request::Resume { .. }
            | Request::PutSpec { .. }
            | Request::Retry { .. }
            | Request::Cordon { .. }
            | Request::Drain { .. }
            | Request::ServiceControl { .. }
            | Request::MonitorControl { .. }
            | Request::Ping { .. } => true,
            Request::Status
            | Request::WaitRun { .. }
            | Request::History { .. }
            | Request::Logs { .. }
            | Request::Workflows
            | Request::GetSpec { .. }
            | Request::RunDetail { .. }
            | Request::Queue
            | Request::Agents
            | Request::Services { .. }
            | Request::ServiceHistory { .. }
            | Request::ServiceLogs { .. }
            | Request::Actions { .. }
            | Request::ValidateLoaded
            | Request::Monitors { .. }
            | Request::Monitor { .. }
            | Request::Incidents { .. }
            | Request::PingUrl { .. } => false,
        }
    }

    /// Whether a viewer is refused it: what changes state, and what reveals a secret.
    pub fn operator_only(&self) -> bool {
        self.changes_state() || matches!(self, Request::PingUrl { .. })
    }
}

/// The principal's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// The run was accepted and stored.
    Accepted {
        /// Its id.
        run_id: RunId,
    },
    /// Answer to [`Request::Cancel`]: false when the run was not active.
    Cancelled {
        /// Whether an active run was found.
        found: bool,
    },
    /// Answer to [`Request::WaitRun`].
    RunEnded {
        /// How it ended; `None` for a run the principal does not know.
        outcome: Option<RunOutcome>,
    },
    /// Answer to [`Request::History`].
    Runs {
        /// Newest first.
        runs: Vec<RunSummary>,
    },
    /// Answer to [`Request::Pause`] and [`Request::Resume`].
    Paused {
        /// The workflow.
        workflow: String,
        /// Its schedule's state now.
        paused: bool,
    },
    /// Answer to [`Request::Logs`].
    Lines {
        /// The lines of this page.
        lines: Vec<StoredLine>,
        /// True when more lines follow this page (for a `from_end` page: precede it).
        more: bool,
        /// Position of the page's first line, counted from the start.
        #[serde(default)]
        first: usize,
    },
    /// Answer to [`Request::Workflows`].
    Workflows {
        /// By name.
        workflows: Vec<WorkflowInfo>,
    },
    /// Answer to [`Request::GetSpec`].
    Spec {
        /// File name relative to the workflows directory.
        file: String,
        /// Its content.
        text: String,
        /// SHA-256 (lower-case hex) of that content, to send back as `base_hash` when saving.
        #[serde(default)]
        hash: Option<String>,
    },
    /// Answer to [`Request::PutSpec`] when the text was valid and has been written and loaded.
    SpecSaved {
        /// File name relative to the workflows directory.
        file: String,
        /// Workflows the file defines now.
        workflows: Vec<String>,
        /// SHA-256 (lower-case hex) of the text written: the `base_hash` of the next save.
        #[serde(default)]
        hash: Option<String>,
    },
    /// Answer to [`Request::PutSpec`] when the file changed on disk since the text was loaded
    /// (edited elsewhere, replaced or deleted); nothing was written.
    SpecConflict {
        /// File name relative to the workflows directory.
        file: String,
        /// What changed, for the user.
        message: String,
        /// Hash of the file as it is now, `None` when it is gone: sending the save again with
        /// this `base_hash` overwrites what is there now.
        hash: Option<String>,
        /// Its text now, when it exists and is UTF-8 (to reload instead).
        text: Option<String>,
    },
    /// Answer to [`Request::PutSpec`] when the text was invalid; nothing was written.
    SpecRejected {
        /// Every problem, in file order.
        problems: Vec<Diagnostic>,
    },
    /// Answer to [`Request::RunDetail`].
    Run(Box<RunDetail>),
    /// Answer to [`Request::Queue`].
    Queue(QueueReport),
    /// Answer to [`Request::Services`] and [`Request::ServiceControl`]: the nodes in tree
    /// order (a parent before its children, children in their start order).
    Services {
        /// The nodes.
        nodes: Vec<ServiceNode>,
    },
    /// Answer to [`Request::ServiceHistory`], oldest first.
    ServiceEvents {
        /// The events.
        events: Vec<ServiceRecord>,
    },
    /// Answer to [`Request::ServiceLogs`], oldest first.
    ServiceLines {
        /// The lines.
        lines: Vec<ServiceLine>,
    },
    /// Answer to [`Request::Agents`], [`Request::Cordon`] and [`Request::Drain`].
    Agents {
        /// In the order they joined; the in-process pool first.
        agents: Vec<AgentStatus>,
    },
    /// The request could not be served.
    Error(ApiError),
    /// Answer to [`Request::Actions`].
    Actions {
        /// Newest first.
        actions: Vec<super::history::ActionRecord>,
    },
    /// Answer to [`Request::ValidateLoaded`].
    Validated(ValidateReport),
    // ---- monitors ----
    /// Answer to [`Request::Monitors`].
    Monitors(MonitorPage),
    /// Answer to [`Request::Monitor`].
    Monitor(Box<MonitorDetail>),
    /// Answer to [`Request::Incidents`].
    Incidents {
        /// Open first (oldest first), then closed (newest first).
        incidents: Vec<Incident>,
    },
    /// Answer to [`Request::MonitorControl`]: the monitor after the change.
    MonitorControlled {
        /// What was done.
        action: MonitorAction,
        /// The monitor now.
        monitor: MonitorSummary,
    },
    /// Answer to [`Request::Ping`]: the ping was recorded; the monitor after it.
    Pinged {
        /// The monitor now.
        monitor: MonitorSummary,
    },
    /// Answer to [`Request::PingUrl`].
    PingUrl {
        /// The push monitor.
        name: String,
        /// `http://ADDR/ping/NAME/SECRET`; `/fail` appended reports a failure.
        url: String,
        /// Requests the ping listener refused (wrong secret or path) since it started.
        #[serde(default)]
        refused: u64,
    },
}

/// Answer to [`Request::ValidateLoaded`]: the principal's workflow files, checked as it reads
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateReport {
    /// The workflows directory on the principal's machine.
    pub dir: String,
    /// Files read.
    pub files: usize,
    /// Documents (workflows, monitors, supervisors) that are valid, by name.
    pub valid: Vec<String>,
    /// Every problem, in file order.
    pub problems: Vec<Diagnostic>,
}

/// A workflow as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// File name relative to the workflows directory.
    pub file: String,
    /// Declared parameters with their defaults.
    pub params: BTreeMap<String, String>,
    /// Task names with the names they depend on, in spec order.
    pub tasks: Vec<TaskNode>,
    /// Its cron expression, if scheduled.
    pub schedule: Option<String>,
    /// Its schedule is paused.
    pub paused: bool,
    /// The next few fire times.
    pub next_fires: Vec<DateTime<Utc>>,
}

/// A task and what it depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNode {
    /// The task's name.
    pub name: String,
    /// Names of the tasks it depends on.
    pub depends_on: Vec<String>,
}

/// Answer to [`Request::RunDetail`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The run as `history` lists it.
    pub summary: RunSummary,
    /// Its effective parameters.
    pub params: Vec<(String, String)>,
    /// Every task of its workflow, in spec order.
    pub tasks: Vec<TaskDetail>,
    /// Every finished attempt, oldest first.
    pub attempts: Vec<AttemptRow>,
}

/// One task of a [`RunDetail`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDetail {
    /// The task's name.
    pub name: String,
    /// Names of the tasks it depends on.
    pub depends_on: Vec<String>,
    /// Its latest state.
    pub state: TaskState,
    /// Its latest attempt number (0 before the first).
    pub attempt: u32,
    /// Attempts it may use in all (retries + 1).
    pub max_attempts: u32,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When its latest attempt ended.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Answer to [`Request::Queue`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueReport {
    /// Runs accepted but waiting for their workflow's `max_active_runs`, oldest first.
    pub held_runs: Vec<QueuedRun>,
    /// Task attempts waiting for a free agent slot, in dispatch order.
    pub ready_tasks: Vec<QueuedTask>,
}

/// A run waiting to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRun {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow: String,
}

/// A task attempt waiting for a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedTask {
    /// Its run.
    pub run_id: RunId,
    /// The run's workflow.
    pub workflow: String,
    /// The task.
    pub task: String,
    /// Attempt number.
    pub attempt: u32,
    /// Why it waits, when it is not only for a free slot (no connected agent has its labels).
    #[serde(default)]
    pub waiting_for: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The run.
    pub run_id: RunId,
    /// Its final state.
    pub state: RunState,
    /// Tasks that failed or timed out for good.
    pub failed_tasks: Vec<String>,
}

/// Answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Process id of the principal.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Agent slots in all.
    pub slots: usize,
    /// Slots running a task now.
    pub busy_slots: usize,
    /// Task attempts waiting for a slot.
    pub queued_tasks: usize,
    /// Every valid workflow.
    pub workflows: Vec<WorkflowStatus>,
    /// Problems in the workflow files as last loaded (the last good version of a broken file
    /// stays in effect).
    #[serde(default)]
    pub spec_problems: Vec<Diagnostic>,
    /// Why the history file cannot be written right now (events are held in memory and new
    /// runs are refused until it can); `None` when all is well.
    #[serde(default)]
    pub store_problem: Option<String>,
    /// The role of the key this status was asked with, on a CURVE endpoint.
    #[serde(default)]
    pub role: Option<Role>,
    /// Where remote agents connect (`opsconsole agent`) on the endpoint this status was asked
    /// on; `None` in-process.
    #[serde(default)]
    pub agents_endpoint: Option<String>,
    /// On a CURVE endpoint: who asked (the key's name), the principal's key, and what was
    /// refused; `None` elsewhere.
    #[serde(default)]
    pub curve: Option<Box<crate::protocol::zmq::keys::CurveStatus>>,
    /// Messages from agents refused and dropped since the principal started (a hello out of
    /// bounds or under a live agent's id, a report about work that is not the sender's,
    /// report numbers out of order); per agent in `agents`.
    #[serde(default)]
    pub agent_messages_refused: u64,
    /// On a network endpoint: peers the principal closed for what they were sending (over a
    /// receive budget, or a large frame too slowly), over all its sockets; `None` in-process.
    #[serde(default)]
    pub peers_closed: Option<crate::protocol::zmq::limits::PeersClosed>,
    /// On a network endpoint: requests of its request socket served, and refused as busy by
    /// the limit they were over; `None` in-process.
    #[serde(default)]
    pub requests: Option<crate::protocol::zmq::limits::RequestCounts>,
}

/// What a sender may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Operator,
    /// Read only: status, history, logs, run detail, events.
    Viewer,
}

impl Role {
    /// The role's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// One workflow in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStatus {
    /// Its name.
    pub name: String,
    /// Its cron expression, if scheduled.
    pub schedule: Option<String>,
    /// Its schedule is paused.
    pub paused: bool,
    /// The next few fire times (empty when unscheduled or never matching).
    pub next_fires: Vec<DateTime<Utc>>,
    /// Active runs (queued or running).
    pub active_runs: Vec<RunId>,
}

/// Why a request failed, for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ApiErrorKind,
    /// What was wrong and what to do.
    pub message: String,
}

/// Broad classes of [`ApiError`]; faces map them to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// The request itself was wrong (unknown workflow, bad parameter).
    InvalidInput,
    /// What it refers to does not exist.
    NotFound,
    /// The principal cannot serve it now (shutting down, store failing).
    Unavailable,
    /// It would replace something it must not (a new workflow file over an existing one).
    Conflict,
    /// The sender's role may not do this (a viewer's key asking for a change).
    Forbidden,
    /// A bug or an unexpected failure.
    Internal,
}

impl ApiError {
    /// An error of `kind` with a message.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Why a call through a [`Client`] failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The principal answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The principal could not be reached or stopped answering.
    #[error("principal unreachable: {0}")]
    Unreachable(String),
    /// The principal answered with a reply that does not fit the request.
    #[error("unexpected reply from the principal: {0}")]
    Protocol(String),
}

/// A boxed future, so that [`Client`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How every face talks to a principal, in-process or over the network.
pub trait Client: Send + Sync {
    /// Sends one request and waits for its answer.
    fn call(&self, request: Request) -> BoxFuture<'_, Result<Response, ClientError>>;
    /// [`Client::call`] on behalf of `caller`, as a transport that authenticated it says
    /// (the principal records it in the history). A client that is not the principal itself
    /// cannot vouch for anyone and ignores it: the remote end decides who its peer is.
    fn call_as(
        &self,
        caller: Caller,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, ClientError>> {
        let _ = caller;
        self.call(request)
    }
    /// Every event from now on; a receiver that falls behind gets `Lagged`.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

fn unexpected(r: Response) -> ClientError {
    match r {
        Response::Error(e) => ClientError::Api(e),
        other => ClientError::Protocol(format!("{other:?}")),
    }
}

/// Typed calls on top of [`Client::call`].
pub trait ClientExt: Client {
    /// Starts a run; returns once it is stored.
    fn trigger(
        &self,
        workflow: &str,
        params: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<RunId, ClientError>> {
        let request = Request::Trigger {
            workflow: workflow.to_string(),
            params,
        };
        Box::pin(async move {
            match self.call(request).await? {
                Response::Accepted { run_id } => Ok(run_id),
                other => Err(unexpected(other)),
            }
        })
    }

    /// Cancels a run; false when it was not active.
    fn cancel(&self, run_id: RunId) -> BoxFuture<'_, Result<bool, ClientError>> {
        Box::pin(async move {
            match self.call(Request::Cancel { run_id }).await? {
                Response::Cancelled { found } => Ok(found),
                other => Err(unexpected(other)),
            }
        })
    }

    /// Waits for a run to end; `None` when the principal does not know it.
    fn wait(&self, run_id: RunId) -> BoxFuture<'_, Result<Option<RunOutcome>, ClientError>> {
        Box::pin(async move {
            match self.call(Request::WaitRun { run_id }).await? {
                Response::RunEnded { outcome } => Ok(outcome),
                other => Err(unexpected(other)),
            }
        })
    }

    /// One run with its tasks and attempts.
    fn run_detail(&self, run_id: RunId) -> BoxFuture<'_, Result<RunDetail, ClientError>> {
        Box::pin(async move {
            match self.call(Request::RunDetail { run_id }).await? {
                Response::Run(d) => Ok(*d),
                other => Err(unexpected(other)),
            }
        })
    }

    /// Every workflow.
    fn workflows(&self) -> BoxFuture<'_, Result<Vec<WorkflowInfo>, ClientError>> {
        Box::pin(async move {
            match self.call(Request::Workflows).await? {
                Response::Workflows { workflows } => Ok(workflows),
                other => Err(unexpected(other)),
            }
        })
    }

    /// Runs the failed part of an ended run again; returns once it is stored.
    fn retry(&self, run_id: RunId) -> BoxFuture<'_, Result<RunId, ClientError>> {
        Box::pin(async move {
            match self.call(Request::Retry { run_id }).await? {
                Response::Accepted { run_id } => Ok(run_id),
                other => Err(unexpected(other)),
            }
        })
    }

    /// Principal status.
    fn status(&self) -> BoxFuture<'_, Result<StatusReport, ClientError>> {
        Box::pin(async move {
            match self.call(Request::Status).await? {
                Response::Status(s) => Ok(s),
                other => Err(unexpected(other)),
            }
        })
    }
}

impl<C: Client + ?Sized> ClientExt for C {}

/// Who made a request, as the principal records it: the name of the CURVE key the request
/// came in under, or [`Caller::LOCAL`] for the in-process and data-dir-socket callers. Set by
/// the transport from the authenticated session, never read from the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Caller(pub String);

impl Caller {
    /// The name of a caller in this process or on the data dir's socket (or plain loopback).
    pub const LOCAL: &'static str = "local";
    /// The name of the scheduler, for runs it fires.
    pub const SCHEDULE: &'static str = "schedule";

    /// A [`Caller::LOCAL`] caller.
    pub fn local() -> Caller {
        Caller(Caller::LOCAL.to_string())
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
