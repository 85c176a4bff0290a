//! Keys while a dialog or the editor is open.

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{
    App, Confirmed, EditSession, Effect, Modal, Purpose, SpecConflict, new_file_name,
};
use super::editor::{Editor, EditorOutcome};
use super::keymap::Pane;
use crate::protocol::api::Request;

impl App {
    pub(super) fn modal_key(&mut self, modal: Modal, key: KeyEvent) -> Vec<Effect> {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        match modal {
            Modal::Palette(mut p) => match key.code {
                KeyCode::Esc => Vec::new(),
                _ if ctrl_c => Vec::new(),
                KeyCode::Tab => {
                    p.complete(&self.names());
                    self.modal = Some(Modal::Palette(p));
                    Vec::new()
                }
                KeyCode::Enter => match p.parse() {
                    Ok(parsed) => self.dispatch(parsed.binding, parsed.arg),
                    Err(e) => {
                        self.warn(e.to_string());
                        Vec::new()
                    }
                },
                KeyCode::Backspace => {
                    if p.input.pop().is_some() {
                        self.modal = Some(Modal::Palette(p));
                    }
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    p.input.push(c);
                    self.modal = Some(Modal::Palette(p));
                    Vec::new()
                }
                _ => {
                    self.modal = Some(Modal::Palette(p));
                    Vec::new()
                }
            },
            Modal::Filter => {
                let pane = self.pane;
                match key.code {
                    KeyCode::Esc => self.lists[pane.index()].filter.clear(),
                    KeyCode::Enter => {}
                    KeyCode::Backspace => {
                        self.lists[pane.index()].filter.pop();
                        self.modal = Some(Modal::Filter);
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.lists[pane.index()].filter.push(c);
                        self.modal = Some(Modal::Filter);
                    }
                    _ => self.modal = Some(Modal::Filter),
                }
                self.lists[pane.index()].offset = 0;
                if pane == Pane::Runs {
                    // Keep the selected run if it still matches, else select the first.
                    let keep = self
                        .selected_run
                        .and_then(|id| self.run_rows().iter().position(|r| r.run_id == id));
                    return self.select_run_at(keep.unwrap_or(0)).into_iter().collect();
                }
                let len = self.rows_len();
                let l = &mut self.lists[pane.index()];
                l.selected = l.selected.min(len.saturating_sub(1));
                Vec::new()
            }
            Modal::Search(mut s) => {
                match key.code {
                    KeyCode::Esc => {}
                    KeyCode::Enter => {
                        self.log_view.search = s;
                        self.log_view.current_match = None;
                        if !self.log_view.search.is_empty() {
                            self.jump_match(true);
                        }
                    }
                    KeyCode::Backspace => {
                        s.pop();
                        self.modal = Some(Modal::Search(s));
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                        s.push(c);
                        self.modal = Some(Modal::Search(s));
                    }
                    _ => self.modal = Some(Modal::Search(s)),
                }
                Vec::new()
            }
            Modal::Confirm { question, then } => match key.code {
                // Only an explicit `y`: Enter out of habit must not discard edits or cancel runs.
                KeyCode::Char('y') | KeyCode::Char('Y') => self.confirmed(then),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.say("cancelled");
                    Vec::new()
                }
                _ if ctrl_c => Vec::new(),
                _ => {
                    self.modal = Some(Modal::Confirm { question, then });
                    Vec::new()
                }
            },
            Modal::Form(mut form) => match key.code {
                KeyCode::Esc => Vec::new(),
                _ if ctrl_c => Vec::new(),
                KeyCode::Enter => {
                    let params: BTreeMap<String, String> = form.fields.into_iter().collect();
                    self.say(format!("triggering `{}`...", form.workflow));
                    vec![Effect::Call(
                        Request::Trigger {
                            workflow: form.workflow.clone(),
                            params,
                        },
                        Purpose::Trigger(form.workflow),
                    )]
                }
                KeyCode::Up | KeyCode::BackTab => {
                    form.focus = form.focus.saturating_sub(1);
                    self.modal = Some(Modal::Form(form));
                    Vec::new()
                }
                KeyCode::Down | KeyCode::Tab => {
                    form.focus = (form.focus + 1).min(form.fields.len().saturating_sub(1));
                    self.modal = Some(Modal::Form(form));
                    Vec::new()
                }
                KeyCode::Backspace => {
                    if let Some(f) = form.fields.get_mut(form.focus) {
                        f.1.pop();
                    }
                    self.modal = Some(Modal::Form(form));
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    if let Some(f) = form.fields.get_mut(form.focus) {
                        f.1.push(c);
                    }
                    self.modal = Some(Modal::Form(form));
                    Vec::new()
                }
                _ => {
                    self.modal = Some(Modal::Form(form));
                    Vec::new()
                }
            },
            Modal::Help { scroll } => {
                let scroll = match key.code {
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') => return Vec::new(),
                    KeyCode::Down | KeyCode::Char('j') => scroll + 1,
                    KeyCode::Up | KeyCode::Char('k') => scroll.saturating_sub(1),
                    KeyCode::PageDown => scroll + 10,
                    KeyCode::PageUp => scroll.saturating_sub(10),
                    _ if ctrl_c => return Vec::new(),
                    _ => scroll,
                };
                self.modal = Some(Modal::Help { scroll });
                Vec::new()
            }
            Modal::SpecConflict(c) => self.conflict_key(c, key),
            Modal::FileName(mut name) => {
                match key.code {
                    KeyCode::Esc => {}
                    _ if ctrl_c => {}
                    KeyCode::Enter => match new_file_name(&name) {
                        Ok(file) if self.file_is_known(&file) => {
                            // The principal refuses it too; saying so now saves typing a whole
                            // workflow first.
                            self.warn(format!(
                                "file exists: {file} is already in the workflows directory; \
                                 type another name, or press e on its workflow to edit it"
                            ));
                            self.modal = Some(Modal::FileName(name));
                        }
                        Ok(file) => {
                            self.say(format!("new file {file}: save validates and writes it"));
                            self.editor = Some(EditSession {
                                editor: Editor::new_from_template(file.clone()),
                                file,
                            });
                        }
                        Err(e) => {
                            self.warn(e);
                            self.modal = Some(Modal::FileName(name));
                        }
                    },
                    KeyCode::Backspace => {
                        name.pop();
                        self.modal = Some(Modal::FileName(name));
                    }
                    KeyCode::Char(c) => {
                        name.push(c);
                        self.modal = Some(Modal::FileName(name));
                    }
                    _ => self.modal = Some(Modal::FileName(name)),
                }
                Vec::new()
            }
        }
    }

    /// True when a loaded workflow lives in `file`.
    fn file_is_known(&self, file: &str) -> bool {
        self.data.workflows.iter().any(|w| w.file == file)
    }

    /// Keys of the dialog shown when a save found the file changed on disk.
    fn conflict_key(&mut self, c: SpecConflict, key: KeyEvent) -> Vec<Effect> {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('o' | 'O') => {
                let Some(session) = self.editor.as_mut().filter(|s| s.file == c.file) else {
                    return Vec::new();
                };
                let text = session.editor.begin_save();
                self.say(format!("overwriting {}...", c.file));
                vec![Effect::Call(
                    Request::PutSpec {
                        file: c.file.clone(),
                        text,
                        // What is there now (nothing, if it was deleted): if it changes again
                        // before this arrives, that is refused too.
                        base_hash: c.hash,
                    },
                    Purpose::PutSpec(c.file),
                )]
            }
            KeyCode::Char('r' | 'R') => match c.text {
                Some(text) => {
                    self.say(format!(
                        "reloaded {} from disk; your edits were discarded",
                        c.file
                    ));
                    self.editor = Some(EditSession {
                        editor: Editor::open_file(c.file.clone(), text, c.hash),
                        file: c.file,
                    });
                    Vec::new()
                }
                None => {
                    self.warn(format!(
                        "nothing to reload: {} is gone from disk; o saves your text as a new file",
                        c.file
                    ));
                    self.modal = Some(Modal::SpecConflict(c));
                    Vec::new()
                }
            },
            KeyCode::Esc => {
                self.say(format!(
                    "not saved: {} changed on disk; Ctrl-S asks again",
                    c.file
                ));
                Vec::new()
            }
            _ if ctrl_c => Vec::new(),
            _ => {
                self.modal = Some(Modal::SpecConflict(c));
                Vec::new()
            }
        }
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
                self.editor = None;
                self.say("edits discarded");
                Vec::new()
            }
        }
    }

    pub(super) fn editor_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(session) = self.editor.as_mut() else {
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
                self.editor = None;
                Vec::new()
            }
            EditorOutcome::AskDiscard => {
                self.modal = Some(Modal::Confirm {
                    question: "Discard unsaved changes?".into(),
                    then: Confirmed::DiscardEdits,
                });
                Vec::new()
            }
        }
    }
}
