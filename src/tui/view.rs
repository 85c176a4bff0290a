//! How the console shows the data: focus, per-pane selection, scroll and filter, the open
//! dialog or editor, the message line. Keys and the screen's size change it; drawing only
//! reads it.

use std::collections::HashSet;

use tui_tree_widget::TreeState;

use super::dag_view::Layout;
use super::dialogs::Modal;
use super::editor::Editor;
use super::keymap::{Context, Pane};
use super::line_input::LineInput;
use crate::protocol::RunId;

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
    /// `/` filter text (edited in place by the filter dialog).
    pub filter: LineInput,
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

/// Selection and scroll of the selected run's DAG.
#[derive(Debug, Clone, Default)]
pub struct DagView {
    /// The DAG has focus instead of the runs list.
    pub focus: bool,
    /// Selected task.
    pub selected: usize,
    /// Scroll (x, y).
    pub scroll: (usize, usize),
    /// Layout of the detail's tasks (made when the detail arrives, fitted to the screen).
    pub layout: Layout,
}

/// The Supervisors pane's tree: each node is identified by its path, and a node's identifier
/// in the tree is the paths from its root down to it.
#[derive(Debug, Default)]
pub struct ServicesView {
    /// Selection, open subtrees, scroll.
    pub tree: TreeState<String>,
    /// Supervisors seen: a new one shows open once, then stays as the user left it.
    pub seen: HashSet<String>,
    /// First line shown (worked out by `fit`, as for lists).
    pub offset: usize,
}

/// Everything about how the console shows its data.
#[derive(Debug)]
pub struct View {
    /// Focused pane.
    pub pane: Pane,
    /// The pane shown before the logs (Esc goes back to it).
    pub before_logs: Pane,
    /// Per-pane list state (by [`Pane::index`]).
    pub lists: [ListState; Pane::ALL.len()],
    /// The run whose detail is shown.
    pub selected_run: Option<RunId>,
    /// The selected run's DAG.
    pub dag: DagView,
    /// The Supervisors pane's tree.
    pub services: ServicesView,
    /// How logs are shown.
    pub log_view: LogView,
    /// Open dialog.
    pub modal: Option<Modal>,
    /// Open editor.
    pub editor: Option<EditSession>,
    /// Bottom-line message.
    pub message: Option<Message>,
    /// Rows in the focused list's view (fitted to the screen; used for paging).
    pub page: usize,
    /// Text rows of the logs view (fitted to the screen).
    pub log_height: usize,
    /// The Monitors pane's own state beside its list.
    pub monitors: MonitorsView,
}

/// The Monitors pane beside its list state: which view, and the incidents' selection.
#[derive(Debug, Clone, Default)]
pub struct MonitorsView {
    /// Incidents are shown instead of monitors.
    pub incidents: bool,
    /// Selected incident.
    pub incident_selected: usize,
    /// First incident shown.
    pub incident_offset: usize,
    /// The window last asked for (filter, offset), so that it is not asked twice.
    pub asked: Option<(String, usize)>,
}

impl Default for View {
    fn default() -> Self {
        Self {
            pane: Pane::Overview,
            before_logs: Pane::Runs,
            lists: Default::default(),
            selected_run: None,
            dag: DagView::default(),
            services: ServicesView::default(),
            log_view: LogView::default(),
            modal: None,
            editor: None,
            message: None,
            page: 10,
            log_height: 10,
            monitors: MonitorsView::default(),
        }
    }
}

impl View {
    /// Where keys are looked up now.
    pub fn context(&self) -> Context {
        if self.pane == Pane::Runs && self.dag.focus {
            Context::Dag
        } else {
            Context::Pane(self.pane)
        }
    }

    /// The list state of `pane`.
    pub fn list(&self, pane: Pane) -> &ListState {
        &self.lists[pane.index()]
    }

    /// The list state of `pane`, to change.
    pub fn list_mut(&mut self, pane: Pane) -> &mut ListState {
        &mut self.lists[pane.index()]
    }

    /// The filter of `pane`'s list.
    pub fn filter(&self, pane: Pane) -> &str {
        self.lists[pane.index()].filter.text()
    }

    /// Focuses `p`, remembering where the logs were opened from.
    pub fn show(&mut self, p: Pane) {
        if p == Pane::Logs && self.pane != Pane::Logs {
            self.before_logs = self.pane;
        }
        self.pane = p;
        self.dag.focus = false;
    }
}
