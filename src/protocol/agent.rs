//! What passes between the principal and an agent: assignments of work and the agent's reports.
//!
//! The principal reaches every agent through [`AgentLink`]; the in-process pool is one
//! implementation and a network transport is only another. Every type here is serialisable so
//! that it can cross a process boundary unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AttemptKey, LogLine, Outcome, Stream};

/// Heartbeats an agent may miss before its lease runs out and its work is given up.
pub const LEASE_HEARTBEATS: u32 = 3;

/// Names an agent; stable across its reconnects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One start of a supervised service: its path in the tree (`web/api`) and which start it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceStart {
    /// Path of the service in its supervision tree.
    pub path: Arc<str>,
    /// Counts the starts of this service, from 1.
    pub start: u64,
}

/// One probe of a monitor's command check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckProbe {
    /// The monitor's name.
    pub monitor: Arc<str>,
    /// Counts the probes of this monitor, from 1.
    pub probe: u64,
}

/// Names one piece of work given to an agent, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkId {
    /// An attempt of a workflow task.
    Task(AttemptKey),
    /// A start of a service.
    Service(ServiceStart),
    /// A probe of a command check.
    Check(CheckProbe),
}

impl WorkId {
    /// The task attempt, when this is one.
    pub fn as_task(&self) -> Option<&AttemptKey> {
        match self {
            WorkId::Task(key) => Some(key),
            _ => None,
        }
    }
}

/// In a few words, as every face shows it: `7/load#2`, `svc web/api`, `check disk`.
impl fmt::Display for WorkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkId::Task(k) => write!(f, "{}/{}#{}", k.run_id, k.task, k.attempt),
            WorkId::Service(s) => write!(f, "svc {}", s.path),
            WorkId::Check(c) => write!(f, "check {}", c.monitor),
        }
    }
}

/// How a piece of work runs and when it is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkKind {
    /// Runs to completion, within an optional time limit; output is streamed as it comes.
    Task {
        /// Stopped (and reported as timed out) once it has run this long.
        timeout: Option<Duration>,
    },
    /// Runs until stopped; output is streamed. Takes no task slot.
    Service,
    /// Runs to completion within `timeout`; output is kept, up to `max_output` bytes, and
    /// returned with the result instead of being streamed.
    Check {
        /// Stopped (and reported as timed out) once it has run this long.
        timeout: Duration,
        /// Most bytes of output kept (both streams together); the rest is dropped.
        max_output: usize,
    },
}

impl WorkKind {
    /// Whether the work holds one of the agent's task slots while it runs.
    pub fn takes_slot(&self) -> bool {
        !matches!(self, WorkKind::Service)
    }
}

/// How work is stopped: `signal` to its whole process group, then SIGKILL after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopPolicy {
    /// Signal number sent first (SIGTERM unless the spec says otherwise).
    pub signal: i32,
    /// How long the group has to exit before SIGKILL.
    pub grace: Duration,
}

impl StopPolicy {
    /// SIGTERM, then SIGKILL after `grace`.
    pub fn term(grace: Duration) -> Self {
        Self {
            signal: libc::SIGTERM,
            grace,
        }
    }
}

/// One piece of work for an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// What this is.
    pub id: WorkId,
    /// How it runs.
    pub kind: WorkKind,
    /// Program and arguments, already rendered.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (`None`: the agent's own).
    pub cwd: Option<PathBuf>,
    /// How it is stopped on a timeout, a cancel or a stop.
    pub stop: StopPolicy,
    /// Most bytes of output (both streams) sent to be stored, for a task or a service; the
    /// lines past it are counted and reported in one line at the point they were cut.
    #[serde(default = "default_max_output")]
    pub max_output: u64,
}

/// Output stored per task attempt or service start unless the spec says otherwise.
pub const DEFAULT_MAX_OUTPUT: u64 = 64 << 20;

fn default_max_output() -> u64 {
    DEFAULT_MAX_OUTPUT
}

/// How a process ended, as the operating system tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Ended by this signal.
    Signal(i32),
    /// Never started; the text says why.
    NotStarted(String),
}

/// Why the agent itself ended a piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// It ran past its time limit.
    TimedOut,
    /// The principal asked for it to stop (a cancel, or a service being stopped). A supervisor
    /// treats this as a normal exit whatever the exit status says.
    Requested,
    /// The agent stopped it on its own: it was shutting down (SIGTERM), or had not heard
    /// from the principal for longer than the lease. The attempt is lost, not cancelled.
    AgentStopped,
}

/// The end of a piece of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkEnd {
    /// Which work.
    pub id: WorkId,
    /// When the process started (or failed to).
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// What the operating system reported.
    pub exit: Exit,
    /// Set when the agent stopped it, and why.
    pub stopped: Option<StopCause>,
    /// A check's output (both streams in order, up to its bound); `None` for other kinds.
    pub output: Option<String>,
}

impl WorkEnd {
    /// The outcome as a task records it: a stop by the agent wins over the exit status.
    pub fn outcome(&self) -> Outcome {
        match (&self.stopped, &self.exit) {
            (_, Exit::NotStarted(why)) => Outcome::SpawnFailed(why.clone()),
            (Some(StopCause::TimedOut), _) => Outcome::TimedOut,
            (Some(StopCause::Requested), _) => Outcome::Cancelled,
            (Some(StopCause::AgentStopped), _) => Outcome::Lost("its agent".into()),
            (None, Exit::Code(c)) => Outcome::Exited(*c),
            (None, Exit::Signal(s)) => Outcome::Signaled(*s),
        }
    }
}

/// What an agent reports about the work it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The process was started.
    Started {
        /// Which work.
        id: WorkId,
        /// When.
        at: DateTime<Utc>,
        /// Its process id (the leader of its process group) on the agent's machine.
        pid: Option<u32>,
    },
    /// Output lines of one stream; every batch of a piece of work arrives before its end.
    Output {
        /// Which work wrote them.
        id: WorkId,
        /// Which stream.
        stream: Stream,
        /// The lines, in order.
        lines: Vec<LogLine>,
        /// Their share of the agent's output budget (see [`super::Charge`]).
        #[serde(skip)]
        charge: super::Charge,
    },
    /// The work is over.
    Finished(WorkEnd),
}

/// What the principal knows of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Its name.
    pub id: AgentId,
    /// How many tasks and checks it runs at once (services do not count).
    pub slots: usize,
    /// Labels that tasks can ask for.
    pub labels: BTreeMap<String, String>,
    /// The opsconsole version it runs.
    pub version: String,
}

impl AgentInfo {
    /// Its labels as `k=v,k=v` (in name order), as every face shows them.
    pub fn labels_text(&self) -> String {
        super::pairs_text(&self.labels, ",")
    }
}

/// Where an agent stands with the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Connected and taking work.
    Ready,
    /// Connected; finishes what it runs but is given nothing new until uncordoned.
    Cordoned,
    /// Finishing what it runs, takes nothing new, and is let go once idle.
    Draining,
    /// Drained: it was let go (a remote agent exits; the local pool stays idle).
    Drained,
    /// Silent past its lease: its work was given up and run elsewhere.
    Lost,
}

impl AgentState {
    /// The state's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Cordoned => "cordoned",
            Self::Draining => "draining",
            Self::Drained => "drained",
            Self::Lost => "lost",
        }
    }

    /// Whether new work may be given to an agent in this state.
    pub fn takes_work(self) -> bool {
        self == Self::Ready
    }

    /// Lost or let go: not connected as far as the principal is concerned.
    pub fn is_gone(self) -> bool {
        matches!(self, Self::Lost | Self::Drained)
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to an agent, as recorded in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentNoteKind {
    /// It registered (or registered again after a reconnect).
    Joined,
    /// It went silent past its lease.
    Lost,
    /// An operator cordoned or uncordoned it, or asked for it to drain.
    StateChanged,
    /// It was drained and let go.
    Released,
    /// It reported the end of work the principal had already given up on; the result was
    /// discarded.
    LateResult,
}

impl AgentNoteKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Lost => "lost",
            Self::StateChanged => "state_changed",
            Self::Released => "released",
            Self::LateResult => "late_result",
        }
    }
}

/// One thing that happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentNote {
    /// The agent.
    pub agent: AgentId,
    /// What happened.
    pub kind: AgentNoteKind,
    /// Its state after it.
    pub state: AgentState,
    /// In words, for people.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An agent as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Who it is and what it offers.
    pub info: AgentInfo,
    /// Where it runs: host name and process id (`local` for the in-process pool).
    pub address: String,
    /// Where it stands.
    pub state: AgentState,
    /// Task slots in use.
    pub busy: usize,
    /// Milliseconds since the principal last heard from it (`None` for the in-process pool).
    pub heartbeat_age_ms: Option<u64>,
    /// When it (last) registered.
    pub joined_at: DateTime<Utc>,
    /// The work it runs, by what the console shows (`run 12 load #2`).
    pub running: Vec<WorkId>,
    /// Messages and reports from it that were refused (a field that does not match what the
    /// principal gave it: work it was never given, numbers out of order) and dropped.
    #[serde(default)]
    pub refused: u64,
    /// The name of the CURVE key it connected with (`local` for the in-process pool, `None`
    /// on an endpoint without CURVE): what the principal's transport saw, never what the
    /// agent said.
    #[serde(default)]
    pub key: Option<String>,
}

/// What a remote agent says when it (re)connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Who it is and what it offers.
    pub info: AgentInfo,
    /// Its machine's host name.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// Work it still runs, or whose end it has not had acknowledged yet.
    pub running: Vec<WorkId>,
    /// Names this start of the agent process: new on every start, so that the principal
    /// knows a restarted agent (whose report numbers start again from 1) from a reconnect.
    /// 0 (an agent that does not say): every hello is taken as a reconnect.
    #[serde(default)]
    pub instance: u64,
    /// Number of its first report not acknowledged yet (of the next one when all are): a
    /// principal that does not know this instance (it is new, or the principal restarted)
    /// takes its numbering from here; one that does keeps its own count. 0: from 1.
    #[serde(default)]
    pub next_report: u64,
    /// Assignments it takes beyond its slots and holds, in order, until a slot frees up, at
    /// most: the principal may send the next work while this runs. 0 (an agent that does not
    /// say): none.
    #[serde(default)]
    pub queue: usize,
    /// The version of check batches it runs ([`super::batch::CHECKS_VERSION`]); 0 (an agent
    /// that does not say): it is sent none.
    #[serde(default)]
    pub checks: u32,
}

/// Most labels an agent may offer.
pub const MAX_LABELS: usize = 64;
/// Longest label name or value, in bytes.
pub const MAX_LABEL_LEN: usize = 128;
/// Longest host name or version an agent may give, in bytes.
pub const MAX_HELLO_TEXT: usize = 255;
/// Most task slots an agent may offer.
pub const MAX_SLOTS: usize = 4096;
/// Most pieces of work an agent may list in a hello or a heartbeat.
pub const MAX_RUNNING: usize = 8192;

impl Hello {
    /// Whether every field is within its bounds; the error says which is not.
    pub fn check(&self) -> Result<(), String> {
        let id = &self.info.id.0;
        if id.is_empty() || id.len() > 128 {
            return Err("an agent id is 1 to 128 bytes".into());
        }
        if self.info.slots == 0 || self.info.slots > MAX_SLOTS {
            return Err(format!(
                "{} slots: an agent offers 1 to {MAX_SLOTS}",
                self.info.slots
            ));
        }
        if self.info.labels.len() > MAX_LABELS {
            return Err(format!(
                "{} labels: an agent offers at most {MAX_LABELS}",
                self.info.labels.len()
            ));
        }
        if let Some((k, _)) = self.info.labels.iter().find(|(k, v)| {
            k.is_empty() || k.len() > MAX_LABEL_LEN || v.is_empty() || v.len() > MAX_LABEL_LEN
        }) {
            let k: String = k.chars().take(32).collect();
            return Err(format!(
                "label `{k}`: a label name and value are each 1 to {MAX_LABEL_LEN} bytes"
            ));
        }
        if self.host.len() > MAX_HELLO_TEXT || self.info.version.len() > MAX_HELLO_TEXT {
            return Err(format!(
                "a host name and a version are at most {MAX_HELLO_TEXT} bytes"
            ));
        }
        if self.queue > MAX_SLOTS {
            return Err(format!(
                "a queue of {}: an agent holds at most {MAX_SLOTS} beyond its slots",
                self.queue
            ));
        }
        if self.running.len() > MAX_RUNNING {
            return Err(format!(
                "{} pieces of work listed: at most {MAX_RUNNING}",
                self.running.len()
            ));
        }
        Ok(())
    }
}

/// A message from a remote agent to the principal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum FromAgent {
    /// Registers (first, and after every reconnect).
    Hello(Hello),
    /// Reports numbered `first`, `first + 1`, ...; the numbers grow across reconnects, so the
    /// principal applies each once and acknowledges them.
    Reports {
        /// Number of the first report.
        first: u64,
        /// The reports, in order.
        events: Vec<AgentEvent>,
    },
    /// Still here, running this.
    Heartbeat {
        /// Work the agent runs, or whose end it has not had acknowledged yet. The principal
        /// gives up work it placed there that is missing from two heartbeats in a row.
        /// `None` (an agent that does not say): nothing is reconciled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        running: Option<Vec<WorkId>>,
    },
    /// Results of a batch of checks it was sent (some or all of them).
    Checked(super::batch::CheckResults),
}

/// A message from the principal to a remote agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ToAgent {
    /// Registered: heartbeat every `heartbeat`; stop every running work not in `keep` (the
    /// principal has given it up); reports up to `acked` are applied already.
    Welcome {
        /// How often both sides send a heartbeat; silence for 3 of them loses the lease.
        heartbeat: Duration,
        /// Work the principal still counts as this agent's.
        keep: Vec<WorkId>,
        /// Reports up to this number are applied; drop them.
        acked: u64,
    },
    /// Run this; it is given up unless the agent is heard from within `lease`.
    Assign {
        /// The work.
        job: Assignment,
        /// How long the principal waits for a silent agent before it gives the work up.
        lease: Duration,
    },
    /// Stop this work by its stop policy.
    Stop {
        /// Which work.
        id: WorkId,
    },
    /// Reports up to this number are stored; drop them from the buffer.
    Ack {
        /// The last stored report.
        upto: u64,
    },
    /// Still here.
    Heartbeat,
    /// Not accepted (another version, a bad message): the text says why; do not retry.
    Refused {
        /// Why.
        reason: String,
    },
    /// Drained: exit.
    Release {
        /// Why.
        reason: String,
    },
    /// Reports from number `from` on never arrived (a gap): send them again.
    Resend {
        /// The first report number wanted.
        from: u64,
    },
    /// Run these checks and send their results back (see [`super::batch`]).
    Checks(super::batch::CheckBatch),
}

/// What the agents socket tells the principal's engine.
#[derive(Debug)]
pub enum AgentNews {
    /// An agent (re)registered; messages to it go to `outbox`.
    Hello {
        /// What it said.
        hello: Hello,
        /// The name of the CURVE key its connection authenticated with; `None` without CURVE.
        key: Option<String>,
        /// Where the engine sends what is for this agent.
        outbox: tokio::sync::mpsc::UnboundedSender<(AgentId, ToAgent)>,
        /// Another connection of this agent id is still open (a second process under the
        /// same id, unless it is the same instance reconnecting).
        previous_open: bool,
    },
    /// A registered agent's message.
    From {
        /// Which agent.
        agent: AgentId,
        /// What it said.
        message: FromAgent,
    },
}

/// A task attempt handed to an agent, as the history records it before the agent is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The attempt.
    pub key: AttemptKey,
    /// The agent it went to.
    pub agent: AgentId,
    /// Which start of that agent's process (its [`Hello::instance`]; 0 for the in-process
    /// pool): only that process can still hold the attempt after a principal restart.
    pub instance: u64,
    /// When.
    pub at: DateTime<Utc>,
}

/// The principal's handle on one agent. Reports come back on the channel the agent was set up
/// with; an implementation never blocks the caller.
pub trait AgentLink: Send + Sync {
    /// Who the agent is and what it can take.
    fn info(&self) -> &AgentInfo;
    /// Starts a piece of work; the principal only assigns what fits the agent's free slots.
    fn assign(&self, job: Assignment);
    /// Stops a piece of work by its stop policy; its end is reported as requested.
    fn stop(&self, id: &WorkId);
    /// Runs a batch of checks with bounded concurrency; an in-process agent sends the results
    /// to `results` (a remote one over its connection). `false`: it did not take the batch
    /// (it runs no checks, or has [`super::batch::MAX_BATCHES_PER_AGENT`] running).
    fn run_checks(
        &self,
        batch: super::batch::CheckBatch,
        results: tokio::sync::mpsc::Sender<super::batch::CheckResults>,
    ) -> bool {
        let _ = (batch, results);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LogLine, RunId};

    fn task() -> WorkId {
        WorkId::Task(AttemptKey {
            run_id: RunId(7),
            task_idx: 1,
            task: "load".into(),
            attempt: 2,
        })
    }

    #[test]
    fn assignments_and_reports_cross_a_process_boundary_unchanged() {
        let job = Assignment {
            id: WorkId::Service(ServiceStart {
                path: "web/api".into(),
                start: 3,
            }),
            kind: WorkKind::Service,
            argv: vec!["./api".into()],
            env: vec![("PORT".into(), "8080".into())],
            cwd: Some("/srv".into()),
            stop: StopPolicy {
                signal: libc::SIGINT,
                grace: Duration::from_millis(2500),
            },
            max_output: 1 << 20,
        };
        let text = serde_json::to_string(&job).expect("serialises");
        assert_eq!(serde_json::from_str::<Assignment>(&text).ok(), Some(job));
        let events = [
            AgentEvent::Started {
                id: task(),
                at: Utc::now(),
                pid: Some(42),
            },
            AgentEvent::Output {
                id: task(),
                stream: Stream::Stderr,
                charge: Default::default(),
                lines: vec![LogLine {
                    seq: 0,
                    at: Utc::now(),
                    text: "hello".into(),
                }],
            },
            AgentEvent::Finished(WorkEnd {
                id: WorkId::Check(CheckProbe {
                    monitor: "disk".into(),
                    probe: 9,
                }),
                started_at: Utc::now(),
                ended_at: Utc::now(),
                exit: Exit::Code(2),
                stopped: None,
                output: Some("97% used".into()),
            }),
        ];
        for event in events {
            let text = serde_json::to_string(&event).expect("serialises");
            assert_eq!(serde_json::from_str::<AgentEvent>(&text).ok(), Some(event));
        }
    }

    #[test]
    fn a_stop_by_the_agent_wins_over_the_exit_status_for_a_task() {
        let end = |exit, stopped| WorkEnd {
            id: task(),
            started_at: Utc::now(),
            ended_at: Utc::now(),
            exit,
            stopped,
            output: None,
        };
        assert_eq!(end(Exit::Code(0), None).outcome(), Outcome::Exited(0));
        assert_eq!(end(Exit::Signal(9), None).outcome(), Outcome::Signaled(9));
        let timed_out = end(Exit::Signal(15), Some(StopCause::TimedOut));
        assert_eq!(timed_out.outcome(), Outcome::TimedOut);
        let stopped = end(Exit::Code(0), Some(StopCause::Requested));
        assert_eq!(stopped.outcome(), Outcome::Cancelled);
        let never = end(Exit::NotStarted("no such file".into()), None);
        assert_eq!(never.outcome(), Outcome::SpawnFailed("no such file".into()));
        assert!(WorkKind::Task { timeout: None }.takes_slot());
        assert!(!WorkKind::Service.takes_slot());
    }
}
