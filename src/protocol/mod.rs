//! Message types shared by the principal, agents, the store and every face.
//!
//! Everything that crosses a module boundary is one of these typed values; the same types
//! are serialised when they cross a process boundary.

pub mod agent;
pub mod api;
pub mod check;
mod diagnostic;
pub mod history;
pub mod monitor;
pub mod service;
pub mod zmq;
// Monitor faces: the board the monitor actor writes and the engine reads.
pub mod board;
// Checks placed on agents as a set (a monitor's `from:`).
pub mod batch;

pub use diagnostic::Diagnostic;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Identifies one run of a workflow; increasing, never reused within a data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forward so that width and alignment (`{:>6}`) apply.
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for RunId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .trim_start_matches('#')
            .parse::<u64>()
            .map(RunId)
            .map_err(|_| format!("`{s}` is not a run id (expected a number such as 42)"))
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Accepted, waiting for `max_active_runs`.
    Queued,
    /// Tasks are being executed.
    Running,
    /// Every task succeeded or was skipped by its trigger rule.
    Succeeded,
    /// At least one task failed or timed out for good.
    Failed,
    /// Stopped by a user or by shutdown.
    Cancelled,
}

/// Where one task of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for upstream tasks.
    Pending,
    /// Ready, waiting for a free agent slot.
    Queued,
    /// A process is running.
    Running,
    /// The last attempt failed; waiting out the backoff before the next one.
    Retrying,
    /// Exited with status 0.
    Succeeded,
    /// Failed for good (non-zero exit, signal, or could not start).
    Failed,
    /// Exceeded its timeout on the last attempt.
    TimedOut,
    /// Stopped by a cancel.
    Cancelled,
    /// Not run: its trigger rule could no longer be met.
    Skipped,
}

macro_rules! state_names {
    ($ty:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The state's name as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($name => Ok(Self::$variant),)* other => Err(format!("unknown state `{other}`")) }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

state_names!(RunState {
    Queued => "queued", Running => "running", Succeeded => "succeeded",
    Failed => "failed", Cancelled => "cancelled",
});

state_names!(TaskState {
    Pending => "pending", Queued => "queued", Running => "running", Retrying => "retrying",
    Succeeded => "succeeded", Failed => "failed", TimedOut => "timed_out",
    Cancelled => "cancelled", Skipped => "skipped",
});

impl RunState {
    /// True once the run will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl TaskState {
    /// True once the task will not change any more within its run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::TimedOut | Self::Cancelled | Self::Skipped
        )
    }
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

state_names!(Stream { Stdout => "stdout", Stderr => "stderr" });

/// One attempt of one task of one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptKey {
    /// The run.
    pub run_id: RunId,
    /// Index of the task in its workflow spec.
    pub task_idx: usize,
    /// The task's name.
    pub task: Arc<str>,
    /// 1-based attempt number.
    pub attempt: u32,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exited with this status code.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signaled(i32),
    /// Ran past its timeout and was stopped.
    TimedOut,
    /// Stopped by a cancel.
    Cancelled,
    /// Could not be started; the text says why.
    SpawnFailed(String),
    /// The principal stopped or died while it ran; recorded as `interrupted`, it does not use
    /// up one of the task's retries.
    Interrupted,
    /// The agent running it went silent past its lease (the text names the agent); recorded
    /// as `lost`, it counts as a failed attempt for the task's retries.
    Lost(String),
}

impl Outcome {
    /// The task state this outcome gives the attempt.
    pub fn task_state(&self) -> TaskState {
        match self {
            Outcome::Exited(0) => TaskState::Succeeded,
            Outcome::TimedOut => TaskState::TimedOut,
            Outcome::Cancelled => TaskState::Cancelled,
            _ => TaskState::Failed,
        }
    }

    /// Exit code, when the process exited by itself.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Outcome::Exited(c) => Some(*c),
            _ => None,
        }
    }

    /// Terminating signal, when a signal we did not send ended the process.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Outcome::Signaled(s) => Some(*s),
            _ => None,
        }
    }

    /// A one-line explanation for users.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Exited(c) => format!("exit code {c}"),
            Outcome::Signaled(s) => format!("killed by signal {}", signal_name(*s)),
            Outcome::TimedOut => "timed out".to_string(),
            Outcome::Cancelled => "cancelled".to_string(),
            Outcome::SpawnFailed(why) => why.clone(),
            Outcome::Interrupted => "principal restarted".to_string(),
            Outcome::Lost(agent) => format!("agent lost: {agent} stopped answering"),
        }
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| sig.to_string())
}

/// The record of one finished attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Which attempt.
    pub key: AttemptKey,
    /// When the process started (or failed to).
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Lines read from one stream of one attempt, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    /// Which attempt wrote them.
    pub key: AttemptKey,
    /// Which stream.
    pub stream: Stream,
    /// The lines.
    pub lines: Vec<LogLine>,
    /// Their share of the agent's output budget, until the history has them.
    #[serde(skip)]
    pub charge: Charge,
}

/// What a batch of output lines costs in memory, roughly: their text and a line's overhead.
pub fn output_cost(lines: &[LogLine]) -> usize {
    lines.iter().map(|l| l.text.len() + LINE_OVERHEAD).sum()
}

/// Memory a line of output costs beside its text (the line, its allocation, the batch).
pub const LINE_OVERHEAD: usize = 64;

/// A batch of output's share of the budget that bounds the output in memory between the
/// processes' pipes and the history file. The store gives it back once the lines are written
/// (or dropped), whoever else still holds the batch (a console that reads slowly); until
/// then the pipes of the agent's processes wait. Never sent: a batch from the wire, or a
/// clone, holds none.
#[derive(Default)]
pub struct Charge(std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>);

impl Charge {
    /// Holds `permit` until [`Charge::release`] or the drop.
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self(std::sync::Mutex::new(Some(permit)))
    }

    /// Gives the share back (once; later calls do nothing).
    pub fn release(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Clone for Charge {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Charge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Charge")
    }
}

/// One line of task output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Position within the attempt's output (both streams share the counter).
    pub seq: u64,
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The text, without the newline; invalid UTF-8 replaced.
    pub text: String,
}

/// Something that happened; persisted by the store and published to faces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run was accepted.
    RunCreated {
        /// The run.
        run_id: RunId,
        /// Its workflow.
        workflow: Arc<str>,
        /// Effective parameters.
        params: Vec<(String, String)>,
        /// What started it (`manual`, `schedule`, ...).
        trigger: String,
        /// Who: the caller's CURVE key name, `local`, or `schedule`.
        #[serde(default)]
        triggered_by: Option<String>,
        /// For a scheduled run, the fire time it is for.
        scheduled_for: Option<DateTime<Utc>>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A workflow's schedule was paused or resumed.
    WorkflowPaused {
        /// The workflow.
        workflow: Arc<str>,
        /// True when paused.
        paused: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// A run changed state.
    RunState {
        /// The run.
        run_id: RunId,
        /// Its workflow.
        workflow: Arc<str>,
        /// The new state.
        state: RunState,
        /// When.
        at: DateTime<Utc>,
        /// Why, when it is not obvious.
        message: Option<String>,
    },
    /// A task changed state.
    TaskState {
        /// The task attempt.
        key: AttemptKey,
        /// The new state.
        state: TaskState,
        /// When.
        at: DateTime<Utc>,
        /// Why, when it is not obvious.
        message: Option<String>,
    },
    /// An attempt finished.
    Attempt(AttemptRecord),
    /// Output lines.
    Logs(Arc<LogBatch>),
    /// Workflow files changed on disk and were loaded.
    SpecsReloaded {
        /// Workflows added, changed or removed.
        workflows: Vec<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The history file could not be written (`problem` says why), or can be again (`None`).
    /// While it cannot, events are held in memory and new runs are refused.
    StoreHealth {
        /// Why it cannot be written; `None` once it can.
        problem: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Workflow files changed on disk but have problems; the last good versions stay in effect.
    SpecProblems {
        /// Every problem.
        problems: Vec<Diagnostic>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Something happened to an agent: it joined, was lost, was cordoned, sent a late result.
    Agent(agent::AgentNote),
    /// Something happened to a supervised service or a supervisor.
    Service(service::ServiceRecord),
    /// Output lines of a supervised service.
    ServiceLogs(Arc<service::ServiceLogBatch>),
    /// A task attempt was handed to an agent: recorded durably before the agent is told, so
    /// that a restarted principal knows which agent holds which attempt.
    Dispatched(agent::Dispatch),
    /// A caller changed something (who, what, to what); kept in the history's actions.
    Action(history::ActionRecord),
    /// A monitor changed state, opened or closed an incident, or intervened (the store has
    /// these from the monitor actor's own writes).
    Monitor(monitor::MonitorNote),
}

/// `map` as `k=v` pairs joined by `sep` (labels, params), in key order.
pub fn pairs_text<K: std::fmt::Display, V: std::fmt::Display>(
    map: &std::collections::BTreeMap<K, V>,
    sep: &str,
) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn prefix_within(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Truncates `s` to at most `max` bytes, at a character boundary.
pub fn truncate_within(s: &mut String, max: usize) {
    let keep = prefix_within(s, max).len();
    s.truncate(keep);
}

/// A name a peer sent, for an error that echoes it: controls escaped and cut to 120 bytes
/// (saying how long it was), so that a megabyte of name comes back as one short line.
pub fn shown_name(s: &str) -> String {
    const MAX: usize = 120;
    let cut = prefix_within(s, MAX);
    let mut shown = escape_controls(cut).into_owned();
    if cut.len() < s.len() {
        shown.push_str(&format!("… ({} bytes)", s.len()));
    }
    shown
}

/// `s` with every control character escaped (`\n`, `\u{1b}`): for text that came from a
/// peer or a target and is shown on one line of an operator's terminal.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod shown_name_tests {
    use super::shown_name;

    #[test]
    fn a_name_echoed_in_an_error_is_one_short_line() {
        assert_eq!(shown_name("web-a"), "web-a");
        assert_eq!(shown_name("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        let huge = "é".repeat(500_000);
        let shown = shown_name(&huge);
        assert!(shown.len() < 160, "{}", shown.len());
        assert!(shown.ends_with("… (1000000 bytes)"), "{shown}");
    }
}
