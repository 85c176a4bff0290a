//! Supervised services as faces see them: the tree with each node's state, and the lifecycle
//! events and output lines the history keeps.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{LogLine, Stream};

/// The state of a service or supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not running: never started, stopped, or ended and not to be restarted.
    Stopped,
    /// Waits for its turn (the sibling before it is not ready yet).
    Pending,
    /// Spawned, not ready yet (a supervisor: starting its children).
    Starting,
    /// Ready (a supervisor: all its children are up).
    Running,
    /// Crashed; started again once its backoff is over.
    BackingOff,
    /// Asked to stop, not ended yet.
    Stopping,
    /// A supervisor that exceeded its restart intensity and gave up.
    Failed,
}

#[cfg(test)]
impl ServiceNode {
    /// A service at `path` in `state` (depth from the path, nothing else set), for tests of
    /// the faces.
    pub(crate) fn example(path: &str, state: ServiceState) -> Self {
        ServiceNode {
            path: path.into(),
            name: path.rsplit('/').next().unwrap_or(path).into(),
            depth: path.matches('/').count(),
            supervisor: false,
            state,
            pid: None,
            start_no: 1,
            up_since: None,
            backoff_until: None,
            last_exit: None,
            restarts: 0,
            restarts_in_period: None,
            intensity: None,
            held: false,
            has_ready_check: false,
        }
    }
}

impl ServiceState {
    /// The state's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::BackingOff => "backing_off",
            Self::Stopping => "stopping",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of a supervision tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNode {
    /// `web/api`.
    pub path: String,
    /// `api`.
    pub name: String,
    /// 0 for a root supervisor.
    pub depth: usize,
    /// A supervisor (of other nodes) rather than a service (a process).
    pub supervisor: bool,
    /// Its state.
    pub state: ServiceState,
    /// The process id of a running service.
    pub pid: Option<u32>,
    /// How many times it was started.
    pub start_no: u64,
    /// When its current run started, while it has one.
    pub up_since: Option<DateTime<Utc>>,
    /// When its backoff is over, while it backs off.
    pub backoff_until: Option<DateTime<Utc>>,
    /// How its last run ended, in words (`exit code 1`, `killed by signal SIGKILL`).
    pub last_exit: Option<String>,
    /// How many times its supervisor restarted it after a crash.
    pub restarts: u64,
    /// A supervisor: restarts in the current period.
    pub restarts_in_period: Option<u32>,
    /// A supervisor: restarts allowed per period.
    pub intensity: Option<u32>,
    /// Stopped by an operator: not started again until an operator starts it.
    pub held: bool,
    /// A service with a readiness check.
    pub has_ready_check: bool,
}

/// What happened to a service or supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceEventKind {
    /// A start was begun.
    Starting,
    /// The process runs.
    Started,
    /// Its readiness check passed (a supervisor: its children are up).
    Ready,
    /// Its process ended.
    Exited,
    /// It was not ready within its timeout (counted as a crash).
    ReadyTimedOut,
    /// It will be started again after a backoff.
    Restarting,
    /// It was asked to stop.
    Stopping,
    /// It is stopped and not coming back by itself.
    Stopped,
    /// A supervisor exceeded its restart intensity and stopped its children.
    GaveUp,
    /// A supervisor shut down because of its significant children.
    AutoShutdown,
    /// An operator stopped it: it stays stopped, across restarts too, until started.
    Held,
    /// An operator started it again after a hold.
    Released,
    /// The principal died while this start was under way or ran (recorded by the next one).
    Interrupted,
    /// Start numbers up to this record's `start_no` are reserved: none is used twice, and a
    /// later principal numbers its starts after them.
    Reserved,
}

impl ServiceEventKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Started => "started",
            Self::Ready => "ready",
            Self::Exited => "exited",
            Self::ReadyTimedOut => "ready_timed_out",
            Self::Restarting => "restarting",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::GaveUp => "gave_up",
            Self::AutoShutdown => "auto_shutdown",
            Self::Held => "held",
            Self::Released => "released",
            Self::Interrupted => "interrupted",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for ServiceEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lifecycle event of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The node's path.
    pub path: String,
    /// Its start number then.
    pub start_no: u64,
    /// What happened.
    pub kind: ServiceEventKind,
    /// The process id, for `started`.
    pub pid: Option<u32>,
    /// The exit code, for `exited`.
    pub exit_code: Option<i32>,
    /// The signal that ended it, for `exited`.
    pub signal: Option<i32>,
    /// Details in words (a backoff, a reason).
    pub message: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Output lines of one run of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceLogBatch {
    /// The service's path.
    pub path: Arc<str>,
    /// Which run.
    pub start_no: u64,
    /// Which stream.
    pub stream: Stream,
    /// The lines, in order.
    pub lines: Vec<LogLine>,
    /// Their share of the agent's output budget, until the history has them.
    #[serde(skip)]
    pub charge: super::Charge,
}

/// What an operator asks of a service or subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    /// Start it (and release an operator's hold).
    Start,
    /// Stop it and hold it stopped.
    Stop,
    /// Stop it and start it again.
    Restart,
}

/// One stored output line of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLine {
    /// The service's path.
    pub path: String,
    /// Which run.
    pub start_no: u64,
    /// Which stream.
    pub stream: Stream,
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The line.
    pub text: String,
}

impl ServiceAction {
    /// The action's name as typed (`opsconsole svc restart`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }
}
