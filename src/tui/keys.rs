//! What keys, the mouse and key-table actions do to the console state.

use ratatui::crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};

use super::app::{App, Confirmed, Effect, Modal, Purpose, TriggerForm};
use super::keymap::{self, Action, Binding, Context, Pane};
use super::palette::Palette;
use super::theme::Theme;
use crate::protocol::RunId;
use crate::protocol::api::Request;

impl App {
    /// The run a command names (`:cancel 12`), else the selected one; `Err` (already warned)
    /// when the argument is not a run id.
    fn run_arg(&mut self, arg: Option<String>) -> Result<Option<RunId>, ()> {
        match arg.map(|a| a.parse::<RunId>()) {
            Some(Ok(id)) => Ok(Some(id)),
            Some(Err(e)) => {
                self.warn(e);
                Err(())
            }
            None => Ok(self.selected_run),
        }
    }

    /// Handles a key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.dirty = true;
        if let Some(modal) = self.modal.take() {
            return self.modal_key(modal, key);
        }
        if self.editor.is_some() {
            return self.editor_key(key);
        }
        match keymap::lookup(self.context(), &key) {
            Some(b) => self.dispatch(b, None),
            None => Vec::new(),
        }
    }

    /// Handles the mouse: the wheel scrolls the focused list (three rows a notch).
    pub fn on_mouse(&mut self, ev: MouseEvent) -> Vec<Effect> {
        let action = match ev.kind {
            MouseEventKind::ScrollUp => Action::Up,
            MouseEventKind::ScrollDown => Action::Down,
            _ => return Vec::new(),
        };
        if self.modal.is_some() || self.editor.is_some() {
            return Vec::new();
        }
        self.dirty = true;
        (0..3).flat_map(|_| self.act(action, None)).collect()
    }

    /// Runs a key-table row (from a key or the palette), unless read-only forbids it.
    pub fn dispatch(&mut self, b: &'static Binding, arg: Option<String>) -> Vec<Effect> {
        if b.mutates
            && let Some(reason) = &self.config.read_only
        {
            let text = format!("disabled: {} — {reason}", b.help);
            self.warn(text);
            return Vec::new();
        }
        self.act(b.action, arg)
    }

    pub(super) fn act(&mut self, action: Action, arg: Option<String>) -> Vec<Effect> {
        let mut out = Vec::new();
        match action {
            Action::Quit => {
                let active = self.active_runs();
                if self.config.owns_principal && active > 0 {
                    self.modal = Some(Modal::Confirm {
                        question: format!(
                            "{active} run(s) are active; quitting cancels them. Quit?"
                        ),
                        then: Confirmed::Quit,
                    });
                } else {
                    out.push(Effect::Quit);
                }
            }
            Action::NextPane | Action::PrevPane => {
                let n = Pane::ALL.len();
                let step = if action == Action::NextPane { 1 } else { n - 1 };
                self.pane = Pane::ALL[(self.pane.index() + step) % n];
                self.dag_focus = false;
            }
            Action::Show(p) => {
                if p == Pane::Logs
                    && let Some(a) = arg
                {
                    match a.parse::<RunId>() {
                        Ok(id) => out.extend(self.open_logs(id, None)),
                        Err(e) => self.warn(e),
                    }
                } else if p == Pane::Logs && self.logs.target().is_none() {
                    match self.selected_run {
                        Some(id) => out.extend(self.open_logs(id, None)),
                        None => self.show(Pane::Logs),
                    }
                } else {
                    self.show(p);
                }
            }
            Action::Up | Action::Down | Action::PageUp | Action::PageDown => {
                let page = if self.pane == Pane::Logs {
                    self.log_height
                } else {
                    self.page
                }
                .max(1) as isize;
                let delta: isize = match action {
                    Action::Up => -1,
                    Action::Down => 1,
                    Action::PageUp => -page,
                    _ => page,
                };
                out.extend(self.move_by(delta));
            }
            Action::Top => out.extend(self.move_by(isize::MIN / 2)),
            Action::Bottom => {
                if self.pane == Pane::Logs {
                    out.extend(self.set_follow(true));
                } else {
                    out.extend(self.move_by(isize::MAX / 2));
                }
            }
            Action::Left | Action::Right => {
                let d = if action == Action::Left { -1 } else { 1 };
                if self.context() == Context::Dag {
                    self.dag_selected = self.dag_layout.step(self.dag_selected, d, 0);
                } else if self.pane == Pane::Logs && !self.log_view.wrap {
                    self.log_view.hscroll =
                        (self.log_view.hscroll as isize + d * 8).max(0) as usize;
                }
            }
            Action::Enter => out.extend(self.enter()),
            Action::Back => self.back(),
            Action::Filter => {
                if self.pane == Pane::Logs {
                    self.modal = Some(Modal::Search(self.log_view.search.clone()));
                } else if self.rows_len() > 0 || !self.list().filter.is_empty() {
                    self.modal = Some(Modal::Filter);
                } else {
                    self.say("nothing to filter here");
                }
            }
            Action::Palette => self.modal = Some(Modal::Palette(Palette::default())),
            Action::Help => self.modal = Some(Modal::Help { scroll: 0 }),
            Action::Trigger => {
                if let Some(wf) = arg.or_else(|| self.selected_workflow()) {
                    let fields = self
                        .data
                        .workflows
                        .iter()
                        .find(|w| w.name == wf)
                        .map(|w| {
                            w.params
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.modal = Some(Modal::Form(TriggerForm {
                        workflow: wf,
                        fields,
                        focus: 0,
                    }));
                } else {
                    self.warn("select a workflow to trigger");
                }
            }
            Action::Cancel => {
                let Ok(id) = self.run_arg(arg) else {
                    return out;
                };
                match id {
                    None => self.warn("select a run to cancel"),
                    Some(id) => {
                        let known = self.data.runs.iter().find(|r| r.run_id == id);
                        if known.is_some_and(|r| r.state.is_terminal()) {
                            self.warn(format!("run {id} has already ended"));
                        } else {
                            let wf = known.map(|r| r.workflow.clone()).unwrap_or_default();
                            self.modal = Some(Modal::Confirm {
                                question: format!(
                                    "Cancel run {id} of `{wf}`? Its tasks get SIGTERM."
                                ),
                                then: Confirmed::CancelRun(id),
                            });
                        }
                    }
                }
            }
            Action::Retry => {
                let Ok(id) = self.run_arg(arg) else {
                    return out;
                };
                match (id, self.selected_run_summary()) {
                    (None, _) => self.warn("select a run to retry"),
                    (Some(id), Some(r))
                        if Some(id) == self.selected_run && !r.state.is_terminal() =>
                    {
                        self.warn(format!("run {id} is still active; retry it once it ended"))
                    }
                    (Some(id), _) => {
                        self.say(format!("retrying the failed tasks of run {id}..."));
                        out.push(Effect::Call(
                            Request::Retry { run_id: id },
                            Purpose::Retry(id),
                        ));
                    }
                }
            }
            Action::TogglePause => {
                let wf = arg.or_else(|| self.selected_workflow());
                match wf {
                    None => self.warn("select a workflow"),
                    Some(wf) => {
                        let paused = self
                            .workflow_rows_all()
                            .iter()
                            .find(|r| r.name == wf)
                            .is_some_and(|r| r.paused);
                        let request = if paused {
                            Request::Resume {
                                workflow: wf.clone(),
                            }
                        } else {
                            Request::Pause {
                                workflow: wf.clone(),
                            }
                        };
                        out.push(Effect::Call(request, Purpose::Pause(wf)));
                    }
                }
            }
            Action::Edit => match arg.or_else(|| self.selected_workflow()) {
                None => self.warn("select a workflow to edit"),
                Some(wf) => {
                    self.say(format!("opening `{wf}`..."));
                    out.push(Effect::Call(
                        Request::GetSpec {
                            workflow: wf.clone(),
                        },
                        Purpose::GetSpec(wf),
                    ));
                }
            },
            Action::NewWorkflow => self.modal = Some(Modal::FileName(String::new())),
            Action::OpenLogs => {
                let task = if self.context() == Context::Dag {
                    self.data
                        .detail
                        .as_ref()
                        .and_then(|d| d.tasks.get(self.dag_selected))
                        .map(|t| t.name.clone())
                } else {
                    None
                };
                match self.selected_run {
                    Some(id) => out.extend(self.open_logs(id, task)),
                    None => self.warn("select a run first"),
                }
            }
            Action::Follow => {
                let on = !self.log_view.follow;
                out.extend(self.set_follow(on));
            }
            Action::Wrap => self.log_view.wrap = !self.log_view.wrap,
            Action::Timestamps => self.log_view.timestamps = !self.log_view.timestamps,
            Action::NextMatch | Action::PrevMatch => self.jump_match(action == Action::NextMatch),
            Action::Refresh => out.extend(self.refresh_effects()),
            Action::Workflow => {
                if let Some(wf) = arg {
                    if !self.workflow_rows_all().iter().any(|r| r.name == wf) {
                        self.warn(format!("no workflow `{wf}`"));
                    } else {
                        self.lists[Pane::Runs.index()].filter = wf;
                        self.show(Pane::Runs);
                        out.extend(self.select_run_at(0));
                    }
                }
            }
            Action::Theme => {
                if let Some(name) = arg {
                    let (theme, warning) =
                        Theme::resolve(&self.config.themes_dir, &name, self.config.no_color);
                    self.theme = theme;
                    match warning {
                        Some(w) => self.warn(w),
                        None => self.say(format!("theme `{name}`")),
                    }
                }
            }
        }
        out
    }

    pub(super) fn show(&mut self, p: Pane) {
        if p == Pane::Logs && self.pane != Pane::Logs {
            self.before_logs = self.pane;
        }
        self.pane = p;
        self.dag_focus = false;
    }

    pub(super) fn move_by(&mut self, delta: isize) -> Vec<Effect> {
        match self.context() {
            Context::Dag => {
                let len = self
                    .dag_layout
                    .columns
                    .iter()
                    .map(Vec::len)
                    .max()
                    .unwrap_or(0) as isize;
                let d = delta.clamp(-len, len);
                self.dag_selected = self.dag_layout.step(self.dag_selected, 0, d);
                Vec::new()
            }
            Context::Pane(Pane::Logs) => self.scroll_logs(delta),
            Context::Pane(pane) => {
                let len = self.rows_len();
                let cur = self.lists[pane.index()].selected as isize;
                let next =
                    (cur.saturating_add(delta)).clamp(0, len.saturating_sub(1) as isize) as usize;
                if pane == Pane::Runs {
                    self.select_run_at(next).into_iter().collect()
                } else {
                    self.lists[pane.index()].selected = next;
                    Vec::new()
                }
            }
        }
    }

    pub(super) fn enter(&mut self) -> Vec<Effect> {
        match self.pane {
            Pane::Overview => {
                self.show(Pane::Runs);
                Vec::new()
            }
            Pane::Workflows | Pane::History => match self.selected_workflow() {
                Some(wf) => {
                    self.lists[Pane::Runs.index()].filter = wf;
                    self.show(Pane::Runs);
                    self.select_run_at(0).into_iter().collect()
                }
                None => Vec::new(),
            },
            Pane::Runs => {
                if self
                    .data
                    .detail
                    .as_ref()
                    .is_some_and(|d| !d.tasks.is_empty())
                {
                    self.dag_focus = true;
                } else if self.selected_run.is_some() {
                    self.say("loading the run's tasks...");
                }
                Vec::new()
            }
            Pane::Queue => {
                let rows = self.queue_rows();
                let Some((id, _, _)) = rows.get(self.lists[Pane::Queue.index()].selected) else {
                    return Vec::new();
                };
                let id = *id;
                self.lists[Pane::Runs.index()].filter.clear();
                self.show(Pane::Runs);
                match self.run_rows().iter().position(|r| r.run_id == id) {
                    Some(i) => self.select_run_at(i).into_iter().collect(),
                    None => Vec::new(),
                }
            }
            Pane::Logs | Pane::Agents => Vec::new(),
        }
    }

    pub(super) fn back(&mut self) {
        if self.message.is_some() {
            self.message = None;
        }
        if self.context() == Context::Dag {
            self.dag_focus = false;
        } else if self.pane == Pane::Logs {
            if !self.log_view.search.is_empty() {
                self.log_view.search.clear();
                self.log_view.current_match = None;
            } else {
                self.pane = self.before_logs;
            }
        } else if !self.list().filter.is_empty() {
            self.list().filter.clear();
            if self.pane == Pane::Runs {
                self.anchor_runs();
            }
        }
    }
}
