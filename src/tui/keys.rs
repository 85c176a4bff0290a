//! What keys, the mouse and the global rows of the key table do. A pane's own rows go to the
//! pane that declared them; a global row goes first to the focused pane (which may do it its
//! own way: Enter, moving, Esc) and then to the handlers here.

use ratatui::crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};

use super::app::{App, Effect};
use super::dialogs::Modal;
use super::dialogs::confirm::Confirmed;
use super::dialogs::palette::Palette;
use super::keymap::{Action, Pane, Row};
use super::panes;
use super::theme::Theme;

impl App {
    /// Handles a key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.dirty = true;
        if let Some(modal) = self.view.modal.take() {
            return self.modal_key(modal, key);
        }
        if self.view.editor.is_some() {
            return self.editor_key(key);
        }
        match panes::table().lookup(self.context(), &key) {
            Some(row) => self.dispatch(row, None),
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
        if self.view.modal.is_some() || self.view.editor.is_some() {
            return Vec::new();
        }
        self.dirty = true;
        (0..3).flat_map(|_| self.act_global(action, None)).collect()
    }

    /// Runs a key-table row (from a key or the palette), unless read-only forbids it.
    pub fn dispatch(&mut self, row: Row, arg: Option<String>) -> Vec<Effect> {
        if row.mutates
            && let Some(reason) = &self.config.read_only
        {
            let text = format!("disabled: {} — {reason}", row.help);
            self.warn(text);
            return Vec::new();
        }
        match row.owner {
            Some(pane) => {
                (panes::def(pane).act)(self, row.action, arg.as_deref()).unwrap_or_default()
            }
            None => self.act_global(row.action, arg.as_deref()),
        }
    }

    /// A global action: the focused pane's way of doing it, else the common one.
    fn act_global(&mut self, action: Action, arg: Option<&str>) -> Vec<Effect> {
        if action == Action::Back {
            self.view.message = None;
        }
        if let Some(out) = (panes::def(self.view.pane).act)(self, action, arg) {
            return out;
        }
        match action {
            Action::Quit => return self.quit(),
            Action::NextPane => self.cycle_pane(1),
            Action::PrevPane => self.cycle_pane(Pane::ALL.len() - 1),
            Action::Show(p) => return self.show_pane(p, arg),
            Action::Back => self.clear_filter(),
            Action::Filter => self.open_filter(),
            Action::Palette => self.view.modal = Some(Modal::Palette(Palette::default())),
            Action::Help => self.view.modal = Some(Modal::Help { scroll: 0 }),
            Action::Refresh => return self.refresh_effects(),
            Action::Workflow => return self.workflow_runs(arg),
            Action::Theme => self.switch_theme(arg),
            _ => {
                if let Some(delta) = action.step(self.view.page) {
                    self.move_selection(delta);
                }
            }
        }
        Vec::new()
    }

    /// Quits, asking first while quitting would stop active runs.
    fn quit(&mut self) -> Vec<Effect> {
        let active = self.active_runs();
        if self.config.owns_principal && active > 0 {
            self.view.modal = Some(Modal::Confirm {
                question: format!("{active} run(s) are active; quitting cancels them. Quit?"),
                then: Confirmed::Quit,
            });
            Vec::new()
        } else {
            vec![Effect::Quit]
        }
    }

    /// Focuses the pane `step` places further in Tab order.
    fn cycle_pane(&mut self, step: usize) {
        let n = Pane::ALL.len();
        self.view.pane = Pane::ALL[(self.view.pane.index() + step) % n];
        self.view.dag.focus = false;
    }

    /// Shows `p` (the pane's own way first: `:logs 12` opens a run's logs).
    fn show_pane(&mut self, p: Pane, arg: Option<&str>) -> Vec<Effect> {
        (panes::def(p).act)(self, Action::Show(p), arg).unwrap_or_else(|| {
            self.view.show(p);
            Vec::new()
        })
    }

    /// Esc on a list: clears its filter.
    fn clear_filter(&mut self) {
        let pane = self.view.pane;
        self.view.list_mut(pane).filter.clear();
    }

    /// `/` on a list: opens its filter.
    fn open_filter(&mut self) {
        let pane = self.view.pane;
        if self.rows_len() > 0 || !self.view.filter(pane).is_empty() {
            self.view.list_mut(pane).filter.end();
            self.view.modal = Some(Modal::Filter);
        } else {
            self.say("nothing to filter here");
        }
    }

    /// Moves the selection of the focused list by `delta` rows.
    fn move_selection(&mut self, delta: isize) {
        let pane = self.view.pane;
        let len = self.rows_len();
        let list = self.view.list_mut(pane);
        let cur = list.selected as isize;
        list.selected =
            (cur.saturating_add(delta)).clamp(0, len.saturating_sub(1) as isize) as usize;
    }

    /// `:wf NAME`: the runs of one workflow.
    fn workflow_runs(&mut self, arg: Option<&str>) -> Vec<Effect> {
        let Some(wf) = arg else {
            return Vec::new();
        };
        if !self.workflow_rows_all().iter().any(|r| r.name == wf) {
            self.warn(format!("no workflow `{wf}`"));
            return Vec::new();
        }
        self.view.list_mut(Pane::Runs).filter.set(wf);
        self.view.show(Pane::Runs);
        self.select_run_at(0).into_iter().collect()
    }

    /// Enter on a workflow (workflows or history pane): its runs.
    pub(super) fn runs_of_selected_workflow(&mut self) -> Vec<Effect> {
        let Some(wf) = self.selected_workflow() else {
            return Vec::new();
        };
        self.view.list_mut(Pane::Runs).filter.set(wf);
        self.view.show(Pane::Runs);
        self.select_run_at(0).into_iter().collect()
    }

    /// `:theme NAME`.
    fn switch_theme(&mut self, arg: Option<&str>) {
        let Some(name) = arg else {
            return;
        };
        let (theme, warning) = Theme::resolve(&self.config.themes_dir, name, self.config.no_color);
        self.theme = theme;
        if let Some(session) = self.view.editor.as_mut() {
            session.editor.apply_theme(&self.theme);
        }
        match warning {
            Some(w) => self.warn(w),
            None => self.say(format!("theme `{name}`")),
        }
    }

    /// Rows of the focused list as shown.
    pub(super) fn rows_len(&self) -> usize {
        (panes::def(self.view.pane).rows)(self)
    }
}
