//! Console state. What keys do to it lives in `keys.rs` and `modals.rs`, what engine events and
//! answers do in `sync.rs`. No terminal here: the event loop feeds it and executes the
//! [`Effect`]s it returns, so all of it is unit-testable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::dag_view::Layout;
use super::editor::Editor;
use super::keymap::{Context, Pane};
use super::logs::{LogBuffer, PageKind};
use super::palette::{Names, Palette};
use super::theme::Theme;
use crate::protocol::api::{QueueReport, Request, RunDetail, StatusReport, WorkflowInfo};
use crate::protocol::{RunId, RunState};
use crate::store::query::RunSummary;

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
}

/// Something the event loop must do for the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a request; feed the answer to [`App::on_response`] with the purpose.
    Call(Request, Purpose),
    /// Leave the console.
    Quit,
}

/// What a confirmation leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Cancel this run.
    CancelRun(RunId),
    /// Quit (stopping active runs).
    Quit,
    /// Close the editor without saving.
    DiscardEdits,
}

/// The parameter form of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerForm {
    /// The workflow.
    pub workflow: String,
    /// Parameter names and values, prefilled with defaults.
    pub fields: Vec<(String, String)>,
    /// The field being edited.
    pub focus: usize,
}

/// A dialog on top of the panes; it gets every key while open.
#[derive(Debug, Clone)]
pub enum Modal {
    /// `:` command line.
    Palette(Palette),
    /// `/` filter of the focused list (edited live).
    Filter,
    /// `/` search in the logs.
    Search(String),
    /// Yes/no question.
    Confirm {
        /// The question.
        question: String,
        /// What yes does.
        then: Confirmed,
    },
    /// Parameters of a trigger.
    Form(TriggerForm),
    /// Help generated from the key table.
    Help {
        /// First line shown.
        scroll: usize,
    },
    /// File name of a new workflow.
    FileName(String),
    /// A save was refused because the file changed on disk: reload it or overwrite it.
    SpecConflict(SpecConflict),
}

/// What the principal said about a file that changed under the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecConflict {
    /// File name relative to the workflows directory.
    pub file: String,
    /// What changed.
    pub message: String,
    /// Hash of the file now (`None`: it is gone); overwriting sends this as the base.
    pub hash: Option<String>,
    /// Its text now, to reload (`None`: gone or not text).
    pub text: Option<String>,
}

/// A line at the bottom telling what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The text.
    pub text: String,
    /// Shown as an error.
    pub error: bool,
}

/// An open editor and the file it edits.
#[derive(Debug)]
pub struct EditSession {
    /// The editor.
    pub editor: Editor,
    /// File name relative to the workflows directory.
    pub file: String,
}

/// Selection and filter of one pane's list.
#[derive(Debug, Clone, Default)]
pub struct ListState {
    /// Selected row in the filtered list.
    pub selected: usize,
    /// First row shown.
    pub offset: usize,
    /// `/` filter text.
    pub filter: String,
}

/// How the log pane shows its buffer.
#[derive(Debug, Clone)]
pub struct LogView {
    /// Stick to the newest line.
    pub follow: bool,
    /// Wrap long lines.
    pub wrap: bool,
    /// Show timestamps.
    pub timestamps: bool,
    /// Store offset of the first line shown when not following.
    pub top: usize,
    /// Columns scrolled right when not wrapping.
    pub hscroll: usize,
    /// Search text.
    pub search: String,
    /// Line of the current match (buffer index).
    pub current_match: Option<usize>,
}

impl Default for LogView {
    fn default() -> Self {
        Self {
            follow: true,
            wrap: false,
            timestamps: false,
            top: 0,
            hscroll: 0,
            search: String::new(),
            current_match: None,
        }
    }
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
    /// Per source, why it could not be read.
    pub errors: BTreeMap<&'static str, String>,
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

/// The whole console state.
pub struct App {
    /// Settings.
    pub config: AppConfig,
    /// Colours.
    pub theme: Theme,
    /// Focused pane.
    pub pane: Pane,
    /// In the runs pane: the DAG has focus instead of the list.
    pub dag_focus: bool,
    /// Engine data.
    pub data: Data,
    /// Per-pane list state (by [`Pane::index`]).
    pub lists: [ListState; 7],
    /// The run whose detail is shown.
    pub selected_run: Option<RunId>,
    /// Selected task of the DAG.
    pub dag_selected: usize,
    /// Scroll of the DAG (x, y).
    pub dag_scroll: (usize, usize),
    /// Layout of the detail's DAG (recomputed when the detail changes).
    pub dag_layout: Layout,
    /// Log buffer.
    pub logs: LogBuffer,
    /// How logs are shown.
    pub log_view: LogView,
    /// Open dialog.
    pub modal: Option<Modal>,
    /// Open editor.
    pub editor: Option<EditSession>,
    /// Bottom-line message.
    pub message: Option<Message>,
    /// "Now" used for durations and "last hour" (set by the loop before drawing).
    pub now: DateTime<Utc>,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// A refresh of status, queue and history is wanted.
    pub refresh_wanted: bool,
    /// Rows in the focused list's view (set while drawing; used for paging).
    pub page: usize,
    /// Text rows of the logs view (set while drawing).
    pub log_height: usize,
    /// The pane shown before the logs (Esc goes back to it).
    pub before_logs: Pane,
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
            pane: Pane::Overview,
            dag_focus: false,
            data: Data::default(),
            lists: Default::default(),
            selected_run: None,
            dag_selected: 0,
            dag_scroll: (0, 0),
            dag_layout: Layout::default(),
            logs: LogBuffer::default(),
            log_view: LogView::default(),
            modal: None,
            editor: None,
            message: None,
            now,
            dirty: true,
            refresh_wanted: false,
            page: 10,
            log_height: 10,
            before_logs: Pane::Runs,
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
        if let Some(id) = self.selected_run {
            out.push(detail_call(id));
        }
        out
    }

    /// Where keys are looked up now.
    pub fn context(&self) -> Context {
        if self.pane == Pane::Runs && self.dag_focus {
            Context::Dag
        } else {
            Context::Pane(self.pane)
        }
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
        self.message = Some(Message {
            text: text.into(),
            error: false,
        });
        self.dirty = true;
    }

    /// Shows an error at the bottom.
    pub fn warn(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
        });
        self.dirty = true;
    }

    pub(super) fn list(&mut self) -> &mut ListState {
        &mut self.lists[self.pane.index()]
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

pub(super) fn is_background(p: &Purpose) -> bool {
    matches!(
        p,
        Purpose::Status
            | Purpose::Workflows
            | Purpose::History
            | Purpose::Queue
            | Purpose::Detail(_)
            | Purpose::Logs { .. }
    )
}

pub(super) fn source_name(p: &Purpose) -> &'static str {
    match p {
        Purpose::Status => "status",
        Purpose::Workflows => "workflows",
        Purpose::History => "history",
        Purpose::Queue => "queue",
        Purpose::Detail(_) => "run detail",
        Purpose::Logs { .. } => "logs",
        Purpose::Trigger(_) => "trigger",
        Purpose::Cancel(_) => "cancel",
        Purpose::Retry(_) => "retry",
        Purpose::Pause(_) => "pause",
        Purpose::GetSpec(_) => "open",
        Purpose::PutSpec(_) => "save",
    }
}

/// A new workflow file name: a plain name, `.yaml` added when missing.
pub fn new_file_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("type a file name, e.g. backup.yaml".into());
    }
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(format!(
            "`{name}`: a plain file name in the workflows directory, e.g. backup.yaml"
        ));
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}.yaml"))
    }
}
