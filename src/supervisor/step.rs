//! What the state machine asks its caller to do, and the events it records.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::At;
use crate::spec::StopPolicy;

/// One thing for the caller to do. Steps come in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Spawn the service at `path` (its spec: [`super::Supervision::service`]); report
    /// `child_started` (or `child_exited` if it cannot be spawned), and, when the spec has a
    /// readiness check, run it and report `child_ready`.
    Spawn {
        /// The service.
        path: String,
        /// Its start number, to quote in every fact about this run.
        start_no: u64,
    },
    /// Stop that run of the service: `policy.signal` to its process group, SIGKILL after
    /// `policy.grace`; then report `child_exited`. The run may not be reported started yet.
    Stop {
        /// The service.
        path: String,
        /// The run to stop.
        start_no: u64,
        /// Signal and grace.
        policy: StopPolicy,
    },
    /// Call `timer_due(timer)` once `after` has passed (since the fact that returned this).
    /// A timer that no longer applies is ignored then, so none needs cancelling.
    Arm {
        /// What to report.
        timer: Timer,
        /// How long from now.
        after: Duration,
    },
    /// Persist and publish this event.
    Record(Lifecycle),
}

/// A timer the state machine armed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timer {
    /// The service it is about.
    pub path: String,
    /// The run it is about (a backoff: the run that crashed).
    pub start_no: u64,
    /// What is due.
    pub kind: TimerKind,
}

/// The timers of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A restart backoff is over.
    Backoff,
    /// The readiness timeout: not ready by now counts as a crash.
    ReadyTimeout,
}

/// How a run of a service ended, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Could not be spawned (the reason).
    SpawnFailed(String),
}

impl ExitStatus {
    /// Exit code 0: a transient child that ends so is not restarted.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

/// Why a child is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An operator stopped it (it stays stopped until started).
    Operator,
    /// An operator restarts it.
    Restart,
    /// Its supervisor's strategy restarts it with a sibling that crashed.
    Strategy,
    /// Everything is shutting down.
    Shutdown,
    /// Its supervisor gave up.
    GiveUp,
    /// Its supervisor shuts down because significant children ended.
    AutoShutdown,
    /// It did not become ready in time (this counts as a crash).
    ReadyTimeout,
    /// A hot reload changed its spec (it is started again with the new one) or removed it.
    Reload,
}

/// One lifecycle event of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// The service or supervisor.
    pub path: String,
    /// Its start number at the time.
    pub start_no: u64,
    /// When, on the caller's clock.
    pub at: At,
    /// What happened.
    pub event: LifecycleEvent,
}

/// What happened to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleEvent {
    /// A start was begun (a service: spawn asked for).
    Starting,
    /// The process runs.
    Started {
        /// Its process id, when the agent could tell it.
        pid: Option<u32>,
    },
    /// Ready (a supervisor: all its children are).
    Ready,
    /// A run ended.
    Exited {
        /// How.
        status: ExitStatus,
        /// Whether it followed a stop the state machine asked for.
        requested: bool,
    },
    /// Not ready within its timeout.
    ReadyTimedOut,
    /// Will be started again after this delay.
    Restarting {
        /// The backoff.
        after: Duration,
    },
    /// Asked to stop.
    Stopping {
        /// Why.
        reason: StopReason,
    },
    /// Stopped and not coming back by itself.
    Stopped,
    /// A supervisor exceeded its restart intensity and stops its children.
    GaveUp {
        /// Restarts counted within the period.
        restarts: u32,
        /// The period.
        period: Duration,
    },
    /// A supervisor shuts itself down because of its significant children.
    AutoShutdown,
    /// Held stopped: its supervisor does not start it until an operator does (an operator
    /// stopped it, or started only some of the children of its held supervisor).
    Held,
    /// An operator started it (or a child of it): the hold is lifted.
    Released,
}
