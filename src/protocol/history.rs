//! What the history file holds, as it is read back: runs, attempts and output lines. These
//! rows cross the wire (`history`, run detail, logs), so they live here, not in the store.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{RunId, RunState, Stream};

/// One row of `opsconsole history`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow: String,
    /// Latest state.
    pub state: RunState,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When its first task was started, if it ever was.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished, if it has.
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds from start to end (or to now, for active runs).
    pub duration_secs: Option<f64>,
    /// Tasks whose last attempt failed or timed out.
    pub failed_tasks: Vec<String>,
    /// Why the run ended as it did, when recorded.
    pub message: Option<String>,
    /// Who started it: a CURVE key's name, `local`, or `schedule`; `None` for runs stored
    /// before this was recorded.
    #[serde(default)]
    pub triggered_by: Option<String>,
}

/// One stored output line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredLine {
    /// Task that wrote it.
    pub task: String,
    /// Attempt number.
    pub attempt: u32,
    /// Stream it was written to.
    pub stream: Stream,
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The text.
    pub line: String,
    /// Position within the attempt's output (both streams share the counter).
    #[serde(default)]
    pub seq: u64,
}

/// How one attempt of a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Exited with status 0.
    Succeeded,
    /// Non-zero exit, a signal, or it could not start.
    Failed,
    /// Exceeded its timeout.
    TimedOut,
    /// Stopped by a cancel.
    Cancelled,
    /// The principal died while it ran; it did not count against the task's retries.
    Interrupted,
    /// Its agent went silent past the lease; it counted as a failed attempt.
    Lost,
}

impl AttemptState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
            Self::Lost => "lost",
        }
    }
}

impl FromStr for AttemptState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Succeeded,
            Self::Failed,
            Self::TimedOut,
            Self::Cancelled,
            Self::Interrupted,
            Self::Lost,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| format!("unknown attempt state `{s}`"))
    }
}

impl fmt::Display for AttemptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for AttemptState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One finished task attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptRow {
    /// Task name.
    pub task: String,
    /// Attempt number.
    pub attempt: u32,
    /// Final state of the attempt.
    pub state: AttemptState,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal, if a signal ended it.
    pub signal: Option<i32>,
    /// Why it failed, if it did.
    pub message: Option<String>,
}

/// One thing a caller did that changed something, as `history --actions` lists it: who
/// (the CURVE key's name, or `local`), what and to what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActionRecord {
    /// When the principal carried it out.
    pub at: DateTime<Utc>,
    /// Who asked, as the transport authenticated it.
    pub by: String,
    /// What: `trigger`, `cancel`, `retry`, `edit`, `pause`, `resume`, `cordon`, `uncordon`,
    /// `drain`, `start`, `stop`, `restart`.
    pub action: String,
    /// To what: `run 12`, a workflow, a file, an agent id, a service path.
    pub target: String,
}
