//! Monitors as faces and the store see them: health states, interventions, incidents.
//!
//! The spec reads interventions into [`InterventionSpec`]; the health machine (`monitor/`)
//! decides when one is attempted and opens and closes [`Incident`]s; the principal carries
//! attempts out and the store keeps all of it. Nothing here does IO.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The health of one monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorState {
    /// Not enough results yet to say.
    Unknown,
    /// Its conditions hold.
    Healthy,
    /// Its conditions hold but a `degraded_when` condition does not.
    Degraded,
    /// Its conditions failed `unhealthy_after` times in a row.
    Unhealthy,
    /// A monitor it depends on is unhealthy: checks go on, the state does not flip and
    /// nothing is triggered.
    Blocked,
    /// Inside a maintenance window: as blocked.
    Maintenance,
    /// Paused by an operator (survives restarts): no checks.
    Paused,
}

impl MonitorState {
    /// Every state, in the order faces list them.
    pub const ALL: [MonitorState; 7] = [
        MonitorState::Unhealthy,
        MonitorState::Degraded,
        MonitorState::Unknown,
        MonitorState::Healthy,
        MonitorState::Blocked,
        MonitorState::Maintenance,
        MonitorState::Paused,
    ];

    /// The state's name as the CLI and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorState::Unknown => "unknown",
            MonitorState::Healthy => "healthy",
            MonitorState::Degraded => "degraded",
            MonitorState::Unhealthy => "unhealthy",
            MonitorState::Blocked => "blocked",
            MonitorState::Maintenance => "maintenance",
            MonitorState::Paused => "paused",
        }
    }
}

impl fmt::Display for MonitorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MonitorState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MonitorState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = MonitorState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown monitor state {s:?}; one of: {}", names.join(", "))
            })
    }
}

/// The state changes a monitor can act on (`on_unhealthy`, `on_degraded`, `on_recovered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Entering unhealthy.
    Unhealthy,
    /// Entering degraded.
    Degraded,
    /// Back to healthy after unhealthy or degraded.
    Recovered,
}

/// One thing a monitor does when it enters a state, with its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterventionSpec {
    /// What is done.
    pub action: Action,
    /// Least time between two attempts of this intervention.
    pub cooldown: Duration,
    /// Most attempts of this intervention per incident.
    pub max_attempts: u32,
}

/// What an intervention does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Restart a supervised service or subtree (`web/api`), through the supervision
    /// machine, so intensity and holds apply.
    Restart {
        /// The path of the service or supervisor, `/`-separated from its root.
        path: String,
    },
    /// Trigger a workflow; parameter values may use `{{ monitor }}`, `{{ state }}`,
    /// `{{ cause }}` and `{{ incident }}`.
    Run {
        /// The workflow's name.
        workflow: String,
        /// Parameters, values not yet rendered.
        params: Vec<(String, String)>,
    },
    /// Run a command as a task is run.
    Command {
        /// Program and arguments (a shell string as `sh -c STRING`).
        argv: Vec<String>,
        /// Extra environment variables.
        env: Vec<(String, String)>,
        /// Working directory (`None`: the monitor file's directory).
        cwd: Option<PathBuf>,
        /// Killed after this.
        timeout: Duration,
    },
    /// POST a JSON body (monitor, state, cause, incident) to a URL.
    Webhook {
        /// An absolute http or https URL.
        url: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
        /// Per attempt.
        timeout: Duration,
        /// Tries per attempt before it counts as failed.
        retries: u32,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Restart { path } => write!(f, "restart {path}"),
            Action::Run { workflow, .. } => write!(f, "run {workflow}"),
            Action::Command { argv, .. } => write!(f, "command {}", argv.join(" ")),
            Action::Webhook { url, .. } => write!(f, "webhook {url}"),
        }
    }
}

/// An incident's number, unique in a history file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a check failed: the first failing condition and the value it saw, or the probe's
/// error when there was nothing to judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The condition as written, or `check` when the probe itself failed.
    pub condition: String,
    /// What was seen (`[STATUS] = 503`, `connection refused`).
    pub seen: String,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (saw {})", self.condition, self.seen)
    }
}

/// How one intervention attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Handed to the engine, the supervision machine or the executor; no answer yet.
    Started,
    /// Done (restart carried out, workflow run succeeded, exit 0, webhook 2xx).
    Succeeded,
    /// Failed, in words.
    Failed(String),
    /// Not attempted, in words (cooldown, max attempts, flapping, blocked).
    Skipped(String),
}

impl fmt::Display for Outcome {
    /// In words, as the faces show it on an incident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Started => f.write_str("running"),
            Outcome::Succeeded => f.write_str("succeeded"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// One intervention attempt, as recorded on its incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The state change that asked for it.
    pub trigger: Trigger,
    /// What was done, as `Action` displays it.
    pub action: String,
    /// How it went.
    pub outcome: Outcome,
}

/// A monitor's change as faces hear it: only changes are published, never a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorNote {
    /// The monitor's name.
    pub monitor: String,
    /// What changed.
    pub change: MonitorChange,
    /// When.
    pub at: DateTime<Utc>,
}

/// What changed about a monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum MonitorChange {
    /// Its state or flapping flag.
    State {
        /// The state shown now.
        state: MonitorState,
        /// Changing state too often.
        flapping: bool,
        /// Why, while not healthy.
        cause: Option<Cause>,
    },
    /// It became unhealthy: an incident opened.
    IncidentOpened {
        /// The incident.
        incident: IncidentId,
        /// The result that made it unhealthy.
        cause: Cause,
    },
    /// It is healthy again: its incident closed.
    IncidentClosed {
        /// The incident.
        incident: IncidentId,
        /// How long it was open, in seconds.
        open_s: u64,
    },
    /// An intervention was started, held or came back.
    Attempt {
        /// The incident it belongs to.
        incident: Option<IncidentId>,
        /// The attempt.
        attempt: Attempt,
    },
}

impl fmt::Display for MonitorNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.monitor;
        match &self.change {
            MonitorChange::State {
                state,
                cause: Some(c),
                ..
            } => write!(f, "{m} is {state}: {c}"),
            MonitorChange::State { state, .. } => write!(f, "{m} is {state}"),
            MonitorChange::IncidentOpened { incident, cause } => {
                write!(f, "{m}: incident {incident} opened: {cause}")
            }
            MonitorChange::IncidentClosed { incident, open_s } => {
                write!(f, "{m}: incident {incident} closed after {open_s} s")
            }
            MonitorChange::Attempt { attempt, .. } => {
                write!(f, "{m}: {} {}", attempt.action, attempt.outcome)
            }
        }
    }
}

/// A stretch of time a monitor was unhealthy, with what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Its number.
    pub id: IncidentId,
    /// The monitor's name.
    pub monitor: String,
    /// When the monitor became unhealthy.
    pub opened: DateTime<Utc>,
    /// When it was healthy again; `None` while open.
    pub closed: Option<DateTime<Utc>>,
    /// The first failing condition and what it saw.
    pub cause: Cause,
    /// Every intervention attempted, in order.
    pub attempts: Vec<Attempt>,
}

/// One monitor as `monitors` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorSummary {
    /// Its name.
    pub name: String,
    /// The check's kind (`http`, `tcp`, ...).
    pub kind: String,
    /// Its state.
    pub state: MonitorState,
    /// Changing state too often: interventions are held.
    pub flapping: bool,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was last checked.
    pub last_check: Option<DateTime<Utc>>,
    /// The last check's response time.
    pub last_response: Option<Duration>,
    /// The last failure's cause while not healthy.
    pub cause: Option<Cause>,
    /// The incident open on it.
    pub incident: Option<IncidentId>,
    /// An intervention of its incident is running now (a restart, a workflow run).
    #[serde(default)]
    pub intervening: bool,
}

// ---- The faces' view of monitors: counts, pages, detail, control (monitor faces). ----

/// What an operator does to one monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorAction {
    /// Stop checking it (survives restarts).
    Pause,
    /// Check it again on its interval.
    Resume,
    /// Check it now, out of turn.
    Check,
}

impl MonitorAction {
    /// The action's name as the CLI writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorAction::Pause => "pause",
            MonitorAction::Resume => "resume",
            MonitorAction::Check => "check",
        }
    }
}

/// How many monitors are in each state, and what else faces show at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorCounts {
    /// Every monitor.
    pub total: u64,
    /// In [`MonitorState::Unknown`].
    pub unknown: u64,
    /// In [`MonitorState::Healthy`].
    pub healthy: u64,
    /// In [`MonitorState::Degraded`].
    pub degraded: u64,
    /// In [`MonitorState::Unhealthy`].
    pub unhealthy: u64,
    /// In [`MonitorState::Blocked`].
    pub blocked: u64,
    /// In [`MonitorState::Maintenance`].
    pub maintenance: u64,
    /// In [`MonitorState::Paused`].
    pub paused: u64,
    /// Flapping, whatever their state.
    pub flapping: u64,
    /// With an intervention running.
    pub intervening: u64,
    /// Open incidents.
    pub open_incidents: u64,
}

impl MonitorCounts {
    /// `176 healthy`, `4 unhealthy`, ... for the states that have any, then `N flapping` and
    /// `N intervening` when there are; `marks` adds the list's marks (` (~)`, ` (+)`).
    pub fn parts(&self, marks: bool) -> Vec<String> {
        let mut parts: Vec<String> = MonitorState::ALL
            .iter()
            .filter(|s| self.get(**s) > 0)
            .map(|s| format!("{} {s}", self.get(*s)))
            .collect();
        let (flap, act) = if marks { (" (~)", " (+)") } else { ("", "") };
        if self.flapping > 0 {
            parts.push(format!("{} flapping{flap}", self.flapping));
        }
        if self.intervening > 0 {
            parts.push(format!("{} intervening{act}", self.intervening));
        }
        parts
    }

    /// The count of `state`.
    pub fn get(&self, state: MonitorState) -> u64 {
        match state {
            MonitorState::Unknown => self.unknown,
            MonitorState::Healthy => self.healthy,
            MonitorState::Degraded => self.degraded,
            MonitorState::Unhealthy => self.unhealthy,
            MonitorState::Blocked => self.blocked,
            MonitorState::Maintenance => self.maintenance,
            MonitorState::Paused => self.paused,
        }
    }

    /// The count of `state`, to change.
    pub fn get_mut(&mut self, state: MonitorState) -> &mut u64 {
        match state {
            MonitorState::Unknown => &mut self.unknown,
            MonitorState::Healthy => &mut self.healthy,
            MonitorState::Degraded => &mut self.degraded,
            MonitorState::Unhealthy => &mut self.unhealthy,
            MonitorState::Blocked => &mut self.blocked,
            MonitorState::Maintenance => &mut self.maintenance,
            MonitorState::Paused => &mut self.paused,
        }
    }
}

/// Which monitors a list shows; every given part must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorFilter {
    /// Only in this state.
    #[serde(default)]
    pub state: Option<MonitorState>,
    /// Only with this tag (exactly).
    #[serde(default)]
    pub tag: Option<String>,
    /// Only whose name contains this (case-insensitive).
    #[serde(default)]
    pub name: Option<String>,
}

impl MonitorFilter {
    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.state.is_none() && self.tag.is_none() && self.name.is_none()
    }

    /// A filter from words as the console's `/` takes them: `state:S` (or a bare state
    /// name), `tag:T`, anything else part of the name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut f = MonitorFilter::default();
        for word in text.split_whitespace() {
            if let Some(s) = word.strip_prefix("state:") {
                f.state = Some(s.parse()?);
            } else if let Some(t) = word.strip_prefix("tag:") {
                f.tag = Some(t.to_string());
            } else if let Ok(state) = word.parse::<MonitorState>() {
                f.state = Some(state);
            } else {
                f.name = Some(word.to_string());
            }
        }
        Ok(f)
    }
}

/// A page of the monitors a filter keeps, in the board's order, with the counts of all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorPage {
    /// Counts over every monitor (not only the filtered ones).
    pub counts: MonitorCounts,
    /// How many monitors the filter keeps.
    pub matched: u64,
    /// Position of the page's first monitor among those kept.
    pub offset: u64,
    /// The page.
    pub monitors: Vec<MonitorSummary>,
    /// False when no monitor actor runs (nothing is checked; control is refused).
    pub running: bool,
}

/// One check result as the detail shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSeen {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// Its conditions held.
    pub ok: bool,
    /// Its response time.
    pub response: Option<Duration>,
    /// Where it ran (an agent's labels), for a multi-location monitor.
    pub location: Option<String>,
    /// The first failing condition or the probe's error.
    pub message: Option<String>,
}

/// One condition of the last result, with the value it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionSeen {
    /// The condition as written.
    pub condition: String,
    /// It held.
    pub ok: bool,
    /// The value it saw (`[STATUS] = 503`).
    pub seen: String,
    /// A `degraded_when` condition rather than one of `conditions`.
    #[serde(default)]
    pub degraded_when: bool,
}

/// The last result from one location of a multi-location monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationSeen {
    /// The location (an agent's labels, `region=eu`).
    pub location: String,
    /// Its last result held; `None`: unknown (its agent is lost, or no result yet).
    pub ok: Option<bool>,
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// What it saw, in words.
    pub seen: String,
}

/// One monitor in full, as the monitor actor tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorDetail {
    /// As `monitors` lists it.
    pub summary: MonitorSummary,
    /// Its newest results, newest first.
    pub results: Vec<ResultSeen>,
    /// Each condition of the last result, with the value it saw.
    pub conditions: Vec<ConditionSeen>,
    /// Response times of the last hour, oldest first, one per result or per minute
    /// (`None`: the check failed without a response).
    pub series_ms: Vec<Option<u32>>,
    /// Per location, for a multi-location monitor.
    pub locations: Vec<LocationSeen>,
    /// Its open incident with the interventions taken.
    pub incident: Option<Incident>,
}

// ---- The health machine and the store: ids, verdicts, stored rows ----------------------

/// A monitor's interned number: the index of its row in the health machine's arrays and its
/// key in the store (names are kept once, in `monitor_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MonitorId(pub u32);

impl fmt::Display for MonitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "monitor {}", self.0)
    }
}

/// How one check result (or one round across locations) was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every condition holds.
    Ok,
    /// The conditions hold, a `degraded_when` condition does not.
    Degraded,
    /// A condition failed, or the probe could not complete.
    Failed,
}

impl Verdict {
    /// The code the store keeps (one byte).
    pub fn code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Degraded => 1,
            Verdict::Failed => 2,
        }
    }

    /// The verdict of a stored code; `None` for a code this build does not know.
    pub fn from_code(code: u8) -> Option<Verdict> {
        match code {
            0 => Some(Verdict::Ok),
            1 => Some(Verdict::Degraded),
            2 => Some(Verdict::Failed),
            _ => None,
        }
    }

    /// The verdict's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Degraded => "degraded",
            Verdict::Failed => "failed",
        }
    }
}

/// One raw check result as the store keeps it (at most 16 bytes on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    /// When the check began (millisecond precision in the store).
    pub at: DateTime<Utc>,
    /// `[RESPONSE_TIME]` in milliseconds.
    pub response_ms: u32,
    /// How it was judged.
    pub verdict: Verdict,
}

/// A monitor's health as the store keeps it for recovery and faces show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorStatus {
    /// The state shown: paused, maintenance or blocked over the health beneath.
    pub state: MonitorState,
    /// The health beneath (unknown, healthy, degraded or unhealthy).
    pub health: MonitorState,
    /// Changing state too often: interventions are held.
    pub flapping: bool,
    /// Paused by an operator.
    pub paused: bool,
    /// Since when `state` holds (second precision).
    pub since: DateTime<Utc>,
}

/// One minute of one monitor's results, summed up for long-range history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRollup {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Results in the minute.
    pub count: u32,
    /// Of which failed.
    pub failures: u32,
    /// Fastest response, ms.
    pub min_ms: u32,
    /// Mean response, ms.
    pub avg_ms: u32,
    /// 95th percentile response, ms.
    pub p95_ms: u32,
    /// Slowest response, ms.
    pub max_ms: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_from_their_names_and_unknown_names_list_the_valid_ones() {
        for state in MonitorState::ALL {
            assert_eq!(state.as_str().parse::<MonitorState>(), Ok(state));
        }
        let err = "sick".parse::<MonitorState>().expect_err("not a state");
        assert!(err.contains("healthy") && err.contains("\"sick\""), "{err}");
    }

    #[test]
    fn an_incident_crosses_the_wire_unchanged() {
        let incident = Incident {
            id: IncidentId(7),
            monitor: "api".into(),
            opened: Utc::now(),
            closed: None,
            cause: Cause {
                condition: "[STATUS] == 200".into(),
                seen: "[STATUS] = 503".into(),
            },
            attempts: vec![Attempt {
                at: Utc::now(),
                trigger: Trigger::Unhealthy,
                action: Action::Restart {
                    path: "web/api".into(),
                }
                .to_string(),
                outcome: Outcome::Failed("held".into()),
            }],
        };
        let json = serde_json::to_string(&incident).expect("serialises");
        assert_eq!(
            serde_json::from_str::<Incident>(&json).expect("parses"),
            incident
        );
    }
}
