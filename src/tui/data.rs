//! What the engine has told the console: what `sync` applies from events and answers. Nothing
//! here says how it is shown.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::logs::LogBuffer;
use super::service_logs::ServiceLogs;
use crate::protocol::agent::AgentStatus;
use crate::protocol::api::{QueueReport, RunDetail, StatusReport, WorkflowInfo};
use crate::protocol::history::RunSummary;
use crate::protocol::monitor::{Incident, MonitorCounts, MonitorDetail, MonitorPage};
use crate::protocol::service::ServiceNode;
use crate::protocol::{RunId, RunState};

/// What the engine has told the console.
#[derive(Debug, Default)]
pub struct Data {
    /// Last status report.
    pub status: Option<StatusReport>,
    /// Workflows with params and tasks (empty until answered).
    pub workflows: Vec<WorkflowInfo>,
    /// Runs, newest first.
    pub runs: Vec<RunSummary>,
    /// The selected run in detail.
    pub detail: Option<RunDetail>,
    /// The queue, or why it could not be read.
    pub queue: Option<Result<QueueReport, String>>,
    /// Every agent, in the order they joined (`None` until answered; why not in `errors`).
    pub agents: Option<Vec<AgentStatus>>,
    /// Every supervisor and service in tree order (`None` until answered; why not in
    /// `errors`).
    pub services: Option<Vec<ServiceNode>>,
    /// Recent output of each service, from events.
    pub service_logs: ServiceLogs,
    /// Per source, why it could not be read.
    pub errors: BTreeMap<&'static str, String>,
    /// The last status request found no principal answering (an attached console keeps
    /// asking, and reloads everything once it answers again).
    pub unreachable: bool,
    /// Log lines of the run or task the logs pane shows.
    pub logs: LogBuffer,
    /// What the console knows of the monitors.
    pub monitors: MonitorData,
}

/// The monitors as last read: a window of the filtered list (a million rows are never all
/// here), the counts, the selected one in detail, the incidents.
#[derive(Debug, Default)]
pub struct MonitorData {
    /// The window of the list last read, with the counts; `None` until answered.
    pub window: Option<MonitorPage>,
    /// The `/` filter text the window was read with.
    pub window_filter: String,
    /// Counts over all monitors, from the last answer of any kind.
    pub counts: Option<MonitorCounts>,
    /// A monitor actor runs.
    pub running: bool,
    /// The selected monitor in full.
    pub detail: Option<MonitorDetail>,
    /// Open incidents, then recent ones.
    pub incidents: Option<Vec<Incident>>,
}

/// One row of the workflows pane.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRow {
    /// Name.
    pub name: String,
    /// Cron expression.
    pub schedule: Option<String>,
    /// Next fire.
    pub next_fire: Option<DateTime<Utc>>,
    /// Paused.
    pub paused: bool,
    /// State of the newest run.
    pub last_state: Option<RunState>,
    /// Active runs.
    pub active: usize,
}

/// One row of the queue pane.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow: String,
    /// What waits: the run, or one of its task attempts.
    pub what: String,
    /// What it waits for (a free slot, `max_active_runs`, an agent with its labels).
    pub waiting_for: String,
}

/// One row of the history pane.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowStats {
    /// Workflow.
    pub name: String,
    /// Runs seen.
    pub runs: usize,
    /// Runs that failed.
    pub failed: usize,
    /// Runs that succeeded or failed (a cancelled run says nothing about the workflow's
    /// health, so it counts in neither).
    pub ended: usize,
    /// Mean duration of ended runs, seconds.
    pub mean_secs: Option<f64>,
    /// Durations in milliseconds, oldest first.
    pub durations_ms: Vec<u64>,
}

impl WorkflowStats {
    /// Failed share of the runs that succeeded or failed, 0..=1.
    pub fn failure_rate(&self) -> f64 {
        if self.ended == 0 {
            0.0
        } else {
            self.failed as f64 / self.ended as f64
        }
    }
}
