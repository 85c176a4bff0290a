//! The console: its data (`data.rs`) and its view (`view.rs`). What keys do to it lives in
//! `keys.rs`, the panes and `modals.rs`, what engine events and answers do in `sync.rs`. No terminal here: the event loop feeds it and executes the
//! [`Effect`]s it returns, so all of it is unit-testable.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::data::Data;
use super::dialogs::palette::Names;
use super::keymap::{Context, Pane};
use super::logs::PageKind;
use super::theme::Theme;
use super::view::{Message, View};
use crate::protocol::RunId;
use crate::protocol::agent::AgentId;
use crate::protocol::api::Request;
use crate::protocol::service::ServiceAction;

/// Runs asked for from history (the runs and history panes).
pub const HISTORY_LIMIT: usize = 500;

/// Why an answer was asked for, so that it lands in the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Status report.
    Status,
    /// Workflow list.
    Workflows,
    /// Runs.
    History,
    /// Queue report.
    Queue,
    /// Every agent.
    Agents,
    /// Every supervision tree.
    Services,
    /// The stored output of the service at this path, for the logs pane following it.
    ServiceLines(std::sync::Arc<str>),
    /// Detail of a run.
    Detail(RunId),
    /// A page of logs for buffer generation `generation`.
    Logs {
        /// Buffer generation.
        generation: u64,
        /// Forward or older.
        kind: PageKind,
        /// Offset asked for.
        offset: usize,
    },
    /// Trigger of a workflow.
    Trigger(String),
    /// Cancel of a run.
    Cancel(RunId),
    /// Retry of a run.
    Retry(RunId),
    /// Pause or resume of a workflow.
    Pause(String),
    /// Spec text of a workflow.
    GetSpec(String),
    /// Save of a file.
    PutSpec(String),
    /// Cordon (true) or uncordon (false) of an agent.
    Cordon(AgentId, bool),
    /// Drain of an agent.
    Drain(AgentId),
    /// Start, stop or restart of the service or subtree at this path.
    ServiceControl(String, ServiceAction),
    /// A window of the monitors list, read with this `/` filter text from this offset.
    MonitorWindow(String, usize),
    /// The counts of the monitors (for the Overview).
    MonitorCounts,
    /// The detail of this monitor.
    MonitorDetail(String),
    /// Incidents.
    Incidents,
    /// Pause, resume or check of this monitor.
    MonitorControl(String, crate::protocol::monitor::MonitorAction),
}

/// Something the event loop must do for the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a request; feed the answer to [`App::on_response`] with the purpose.
    Call(Request, Purpose),
    /// Leave the console.
    Quit,
}

/// Settings the console starts with.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Why actions are disabled, when they are.
    pub read_only: Option<String>,
    /// True when quitting stops the principal (and its runs).
    pub owns_principal: bool,
    /// Where themes live.
    pub themes_dir: PathBuf,
    /// `NO_COLOR`.
    pub no_color: bool,
    /// Where the console is connected (shown in the tab bar).
    pub origin: String,
    /// Show times in the local time zone (UTC otherwise, as in tests).
    pub local_time: bool,
}

/// The whole console: what it was told ([`Data`]), how it shows it ([`View`]), and the few
/// things the loop needs.
pub struct App {
    /// Settings.
    pub config: AppConfig,
    /// Colours.
    pub theme: Theme,
    /// What the engine has told the console.
    pub data: Data,
    /// How it is shown.
    pub view: View,
    /// "Now" used for durations and "last hour" (set by the loop before drawing).
    pub now: DateTime<Utc>,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// A refresh of status, queue and history is wanted.
    pub refresh_wanted: bool,
    /// The next refresh reads the agents too, though their pane is not shown (at start, and
    /// after an agent event).
    pub agents_wanted: bool,
    /// The supervision trees are to be read again soon, whichever pane is shown (at start, for
    /// the Overview's summary, and after a service event; many events make one read).
    pub services_wanted: bool,
    /// Theme names for completion.
    pub theme_names: Vec<String>,
    /// Events missed because the console fell behind.
    pub lagged: u64,
    /// Requests to send that arose from events.
    pub(super) outbox: Vec<Effect>,
}

impl App {
    /// A console with no data yet.
    pub fn new(config: AppConfig, theme: Theme, now: DateTime<Utc>) -> Self {
        let theme_names = Theme::names(&config.themes_dir);
        Self {
            config,
            theme,
            data: Data::default(),
            view: View::default(),
            now,
            dirty: true,
            refresh_wanted: false,
            agents_wanted: true,
            services_wanted: true,
            theme_names,
            lagged: 0,
            outbox: Vec::new(),
        }
    }

    /// The requests that fill the console at start and on refresh.
    pub fn refresh_effects(&mut self) -> Vec<Effect> {
        self.refresh_wanted = false;
        let mut out = vec![
            Effect::Call(Request::Status, Purpose::Status),
            Effect::Call(Request::Workflows, Purpose::Workflows),
            Effect::Call(
                Request::History {
                    workflow: None,
                    limit: HISTORY_LIMIT,
                },
                Purpose::History,
            ),
            Effect::Call(Request::Queue, Purpose::Queue),
        ];
        if let Some(id) = self.view.selected_run {
            out.push(detail_call(id));
        }
        // Only while shown or told they changed: the list is read by nothing else.
        if std::mem::take(&mut self.agents_wanted) || self.view.pane == Pane::Agents {
            out.push(agents_call());
        }
        if std::mem::take(&mut self.services_wanted) || self.view.pane == Pane::Supervisors {
            out.push(services_call());
        }
        out.extend(self.monitor_effects(true));
        out
    }

    /// The read of the trees asked for by service events, if one is still wanted (a refresh
    /// may have done it meanwhile).
    pub fn services_effects(&mut self) -> Vec<Effect> {
        if std::mem::take(&mut self.services_wanted) {
            vec![services_call()]
        } else {
            Vec::new()
        }
    }

    /// True while something shown goes stale with time alone and must be read again now and
    /// then, events or not (the agents' heartbeat ages, the services' uptimes and backoffs).
    pub fn wants_poll(&self) -> bool {
        matches!(
            self.view.pane,
            Pane::Agents | Pane::Supervisors | Pane::Monitors
        ) && !self.data.unreachable
    }

    /// The requests of one such poll.
    pub fn poll_effects(&self) -> Vec<Effect> {
        match self.view.pane {
            _ if !self.wants_poll() => Vec::new(),
            Pane::Agents => vec![agents_call()],
            Pane::Supervisors => vec![services_call()],
            Pane::Monitors => self.monitor_poll(),
            _ => Vec::new(),
        }
    }

    /// Where keys are looked up now.
    pub fn context(&self) -> Context {
        self.view.context()
    }

    /// True while runs are queued or running.
    pub fn active_runs(&self) -> usize {
        self.data
            .runs
            .iter()
            .filter(|r| !r.state.is_terminal())
            .count()
    }

    /// Shows a message at the bottom.
    pub fn say(&mut self, text: impl Into<String>) {
        self.view.message = Some(Message {
            text: text.into(),
            error: false,
        });
        self.dirty = true;
    }

    /// Shows an error at the bottom.
    pub fn warn(&mut self, text: impl Into<String>) {
        self.view.message = Some(Message {
            text: text.into(),
            error: true,
        });
        self.dirty = true;
    }

    /// Names the palette completes from.
    pub fn names(&self) -> Names {
        Names {
            workflows: self
                .workflow_rows_all()
                .into_iter()
                .map(|r| r.name)
                .collect(),
            themes: self.theme_names.clone(),
            runs: self
                .data
                .runs
                .iter()
                .take(50)
                .map(|r| r.run_id.to_string())
                .collect(),
            agents: self
                .data
                .agents
                .iter()
                .flatten()
                .map(|a| a.info.id.0.clone())
                .collect(),
        }
    }

    /// `t` formatted with `fmt` in the configured time zone.
    pub fn fmt_time(&self, t: DateTime<Utc>, fmt: &str) -> String {
        if self.config.local_time {
            t.with_timezone(&chrono::Local).format(fmt).to_string()
        } else {
            t.format(fmt).to_string()
        }
    }

    /// True while something changes with time alone (running durations).
    pub fn wants_tick(&self) -> bool {
        self.active_runs() > 0
    }
}

pub(super) fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

pub(super) fn detail_call(id: RunId) -> Effect {
    Effect::Call(Request::RunDetail { run_id: id }, Purpose::Detail(id))
}

/// The request for the agents list.
pub(super) fn agents_call() -> Effect {
    Effect::Call(Request::Agents, Purpose::Agents)
}

/// The request for every supervision tree.
pub(super) fn services_call() -> Effect {
    Effect::Call(Request::Services { path: None }, Purpose::Services)
}

pub(super) fn is_background(p: &Purpose) -> bool {
    matches!(
        p,
        Purpose::Status
            | Purpose::Workflows
            | Purpose::History
            | Purpose::Queue
            | Purpose::Agents
            | Purpose::Services
            | Purpose::ServiceLines(_)
            | Purpose::Detail(_)
            | Purpose::Logs { .. }
            | Purpose::MonitorWindow(..)
            | Purpose::MonitorCounts
            | Purpose::MonitorDetail(_)
            | Purpose::Incidents
    )
}

pub(super) fn source_name(p: &Purpose) -> &'static str {
    match p {
        Purpose::Status => "status",
        Purpose::Workflows => "workflows",
        Purpose::History => "history",
        Purpose::Queue => "queue",
        Purpose::Agents => "agents",
        Purpose::Services => "services",
        Purpose::ServiceLines(_) => "service logs",
        Purpose::Detail(_) => "run detail",
        Purpose::Logs { .. } => "logs",
        Purpose::Trigger(_) => "trigger",
        Purpose::Cancel(_) => "cancel",
        Purpose::Retry(_) => "retry",
        Purpose::Pause(_) => "pause",
        Purpose::GetSpec(_) => "open",
        Purpose::PutSpec(_) => "save",
        Purpose::Cordon(_, true) => "cordon",
        Purpose::Cordon(_, false) => "uncordon",
        Purpose::Drain(_) => "drain",
        Purpose::ServiceControl(_, action) => action.as_str(),
        Purpose::MonitorWindow(..) | Purpose::MonitorCounts => "monitors",
        Purpose::MonitorDetail(_) => "monitor",
        Purpose::Incidents => "incidents",
        Purpose::MonitorControl(_, action) => action.as_str(),
    }
}
