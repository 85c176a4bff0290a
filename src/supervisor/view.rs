//! What the state machine shows of each node, for status commands and the console.

use serde::{Deserialize, Serialize};

use super::At;
use super::step::ExitStatus;

/// The state of a service or supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not running: never started, stopped, or ended and not to be restarted.
    Stopped,
    /// To be started once its turn comes (its left sibling is ready).
    Pending,
    /// Spawned (a supervisor: starting its children), not ready yet.
    Starting,
    /// Ready (a supervisor: all its children were started).
    Running,
    /// Crashed; restarted once the backoff is over.
    BackingOff {
        /// When the backoff is over.
        until: At,
    },
    /// Asked to stop, not exited yet (a supervisor: stopping its children).
    Stopping,
    /// A supervisor that gave up.
    Failed,
}

impl NodeState {
    /// True while a process runs or is being spawned or stopped (a supervisor: children do).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            NodeState::Starting | NodeState::Running | NodeState::Stopping
        )
    }
}

/// Whether a node is a service or a supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A process.
    Service,
    /// A supervisor of other nodes.
    Supervisor,
}

/// One node as shown to a face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// `web/api`.
    pub path: String,
    /// `api`.
    pub name: String,
    /// 0 for a root.
    pub depth: usize,
    /// Service or supervisor.
    pub kind: NodeKind,
    /// Its state.
    pub state: NodeState,
    /// The process id of a running service.
    pub pid: Option<u32>,
    /// How many times it was started.
    pub start_no: u64,
    /// When its current run started, while it has one (for the uptime).
    pub since: Option<At>,
    /// How its last run ended (services).
    pub last_exit: Option<ExitStatus>,
    /// How many times its supervisor restarted it after a crash.
    pub restarts: u64,
    /// A supervisor: restarts counted in the current period, against `intensity`.
    pub restarts_in_period: Option<u32>,
    /// A supervisor: the restarts allowed per period.
    pub intensity: Option<u32>,
    /// Stopped by an operator: its supervisor will not start it until an operator does.
    pub held: bool,
}
