//! What the dialogs' answers and the editor's outcomes do to the console: each dialog reads
//! its own keys (`dialogs/`), this turns what it answered into state and requests.

use std::collections::BTreeMap;

use ratatui::crossterm::event::KeyEvent;

use super::app::{App, Effect, Purpose};
use super::dialogs::confirm::{self, Confirmed};
use super::dialogs::conflict::{self, Choice, SpecConflict};
use super::dialogs::file_name::{self, new_file_name};
use super::dialogs::filter::{self, FilterKey};
use super::dialogs::form::TriggerForm;
use super::dialogs::palette::Palette;
use super::dialogs::{Answer, Modal, help, search};
use super::editor::{Editor, EditorOutcome};
use super::keymap::Pane;
use super::line_input::LineInput;
use super::panes;
use super::view::EditSession;
use crate::protocol::api::Request;

impl App {
    /// A key for the open dialog (taken out of the view; put back while it stays open).
    pub(super) fn modal_key(&mut self, modal: Modal, key: KeyEvent) -> Vec<Effect> {
        match modal {
            Modal::Palette(p) => self.palette_key(p, &key),
            Modal::Filter => self.filter_key(&key),
            Modal::Search(s) => {
                self.search_key(s, &key);
                Vec::new()
            }
            Modal::Confirm { question, then } => match confirm::on_key(&key) {
                Answer::Done(true) => self.confirmed(then),
                Answer::Done(false) => {
                    self.say("cancelled");
                    Vec::new()
                }
                Answer::Close => Vec::new(),
                Answer::Stay => {
                    self.view.modal = Some(Modal::Confirm { question, then });
                    Vec::new()
                }
            },
            Modal::Form(form) => self.form_key(form, &key),
            Modal::Help { scroll } => {
                if let Some(scroll) = help::on_key(scroll, &key) {
                    self.view.modal = Some(Modal::Help { scroll });
                }
                Vec::new()
            }
            Modal::SpecConflict(c) => self.conflict_key(c, &key),
            Modal::FileName(name) => {
                self.file_name_key(name, &key);
                Vec::new()
            }
        }
    }

    fn palette_key(&mut self, mut p: Palette, key: &KeyEvent) -> Vec<Effect> {
        match p.on_key(key, &self.names(), panes::table()) {
            Answer::Stay => {
                self.view.modal = Some(Modal::Palette(p));
                Vec::new()
            }
            Answer::Close => Vec::new(),
            Answer::Done(Ok(parsed)) => self.dispatch(parsed.binding, parsed.arg),
            Answer::Done(Err(e)) => {
                self.warn(e.to_string());
                Vec::new()
            }
        }
    }

    /// The filter is the list's own: every key shows at once, with the selection kept in the
    /// rows that still match.
    fn filter_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        let pane = self.view.pane;
        if filter::on_key(&mut self.view.list_mut(pane).filter, key) == FilterKey::Stay {
            self.view.modal = Some(Modal::Filter);
        }
        self.view.list_mut(pane).offset = 0;
        if pane == Pane::Monitors {
            return self.monitors_filtered();
        }
        if pane == Pane::Runs {
            // Keep the selected run if it still matches, else select the first.
            let keep = self
                .view
                .selected_run
                .and_then(|id| self.run_rows().iter().position(|r| r.run_id == id));
            return self.select_run_at(keep.unwrap_or(0)).into_iter().collect();
        }
        let len = self.rows_len();
        let l = self.view.list_mut(pane);
        l.selected = l.selected.min(len.saturating_sub(1));
        Vec::new()
    }

    fn search_key(&mut self, mut s: LineInput, key: &KeyEvent) {
        match search::on_key(&mut s, key) {
            Answer::Stay => self.view.modal = Some(Modal::Search(s)),
            Answer::Close => {}
            Answer::Done(text) => {
                let v = &mut self.view.log_view;
                v.search = text;
                v.current_match = None;
                if !v.search.is_empty() {
                    self.jump_match(true);
                }
            }
        }
    }

    fn form_key(&mut self, mut form: TriggerForm, key: &KeyEvent) -> Vec<Effect> {
        match form.on_key(key) {
            Answer::Stay => {
                self.view.modal = Some(Modal::Form(form));
                Vec::new()
            }
            Answer::Close => Vec::new(),
            Answer::Done(params) => self.trigger(form.workflow, params),
        }
    }

    fn trigger(&mut self, workflow: String, params: BTreeMap<String, String>) -> Vec<Effect> {
        self.say(format!("triggering `{workflow}`..."));
        vec![Effect::Call(
            Request::Trigger {
                workflow: workflow.clone(),
                params,
            },
            Purpose::Trigger(workflow),
        )]
    }

    fn file_name_key(&mut self, mut name: LineInput, key: &KeyEvent) {
        let typed = match file_name::on_key(&mut name, key) {
            Answer::Stay => {
                self.view.modal = Some(Modal::FileName(name));
                return;
            }
            Answer::Close => return,
            Answer::Done(typed) => typed,
        };
        match new_file_name(&typed) {
            Ok(file) if self.file_is_known(&file) => {
                // The principal refuses it too; saying so now saves typing a whole workflow
                // first.
                self.warn(format!(
                    "file exists: {file} is already in the workflows directory; \
                     type another name, or press e on its workflow to edit it"
                ));
                self.view.modal = Some(Modal::FileName(name));
            }
            Ok(file) => {
                self.say(format!("new file {file}: save validates and writes it"));
                self.view.editor =
                    Some(self.edit_session(Editor::new_from_template(file.clone()), file));
            }
            Err(e) => {
                self.warn(e);
                self.view.modal = Some(Modal::FileName(name));
            }
        }
    }

    /// True when a loaded workflow lives in `file`.
    fn file_is_known(&self, file: &str) -> bool {
        self.data.workflows.iter().any(|w| w.file == file)
    }

    /// Keys of the dialog shown when a save found the file changed on disk.
    fn conflict_key(&mut self, c: SpecConflict, key: &KeyEvent) -> Vec<Effect> {
        match conflict::on_key(key) {
            Answer::Stay => {
                self.view.modal = Some(Modal::SpecConflict(c));
                Vec::new()
            }
            Answer::Close => Vec::new(),
            Answer::Done(Choice::Overwrite) => self.overwrite(c),
            Answer::Done(Choice::Reload) => {
                self.reload(c);
                Vec::new()
            }
            Answer::Done(Choice::KeepEditing) => {
                self.say(format!(
                    "not saved: {} changed on disk; Ctrl-S asks again",
                    c.file
                ));
                Vec::new()
            }
        }
    }

    fn overwrite(&mut self, c: SpecConflict) -> Vec<Effect> {
        let Some(session) = self.view.editor.as_mut().filter(|s| s.file == c.file) else {
            return Vec::new();
        };
        let text = session.editor.begin_save();
        self.say(format!("overwriting {}...", c.file));
        vec![Effect::Call(
            Request::PutSpec {
                file: c.file.clone(),
                text,
                // What is there now (nothing, if it was deleted): if it changes again before
                // this arrives, that is refused too.
                base_hash: c.hash,
            },
            Purpose::PutSpec(c.file),
        )]
    }

    fn reload(&mut self, c: SpecConflict) {
        match c.text {
            Some(text) => {
                self.say(format!(
                    "reloaded {} from disk; your edits were discarded",
                    c.file
                ));
                let editor = Editor::open_file(c.file.clone(), text, c.hash);
                self.view.editor = Some(self.edit_session(editor, c.file));
            }
            None => {
                self.warn(format!(
                    "nothing to reload: {} is gone from disk; o saves your text as a new file",
                    c.file
                ));
                self.view.modal = Some(Modal::SpecConflict(c));
            }
        }
    }

    /// An editor session for `file`, styled with the current theme.
    pub(super) fn edit_session(&self, mut editor: Editor, file: String) -> EditSession {
        editor.apply_theme(&self.theme);
        EditSession { editor, file }
    }

    pub(super) fn confirmed(&mut self, then: Confirmed) -> Vec<Effect> {
        match then {
            Confirmed::Quit => vec![Effect::Quit],
            Confirmed::CancelRun(id) => {
                self.say(format!("cancelling run {id}..."));
                vec![Effect::Call(
                    Request::Cancel { run_id: id },
                    Purpose::Cancel(id),
                )]
            }
            Confirmed::DiscardEdits => {
                self.view.editor = None;
                self.say("edits discarded");
                Vec::new()
            }
            Confirmed::DrainAgent(agent) => {
                self.say(format!("draining agent {agent}..."));
                vec![Effect::Call(
                    Request::Drain {
                        agent: agent.clone(),
                    },
                    Purpose::Drain(agent),
                )]
            }
            Confirmed::ServiceControl(path, action) => {
                self.say(format!("{path}: sending {}...", action.as_str()));
                vec![Effect::Call(
                    Request::ServiceControl {
                        path: path.clone(),
                        action,
                    },
                    Purpose::ServiceControl(path, action),
                )]
            }
        }
    }

    pub(super) fn editor_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(session) = self.view.editor.as_mut() else {
            return Vec::new();
        };
        match session.editor.handle_key(key) {
            EditorOutcome::Continue => Vec::new(),
            EditorOutcome::Save(text) => {
                let file = session.file.clone();
                let base_hash = session.editor.base_hash();
                self.say(format!("validating {file}..."));
                vec![Effect::Call(
                    Request::PutSpec {
                        file: file.clone(),
                        text,
                        base_hash,
                    },
                    Purpose::PutSpec(file),
                )]
            }
            EditorOutcome::SaveInProgress => {
                let file = session.file.clone();
                self.say(format!(
                    "still saving {file}: wait for the answer, then Ctrl-S again"
                ));
                Vec::new()
            }
            EditorOutcome::Close => {
                self.view.editor = None;
                Vec::new()
            }
            EditorOutcome::AskDiscard => {
                self.view.modal = Some(Modal::Confirm {
                    question: "Discard unsaved changes?".into(),
                    then: Confirmed::DiscardEdits,
                });
                Vec::new()
            }
        }
    }
}
