//! Answers to the console's requests, applied to its data (and to the view where an answer
//! is about something the user did: a run started, a file opened, a save refused).

use super::app::{App, Effect, Purpose, detail_call, is_background, short, source_name};
use super::dag_view::Layout;
use super::dialogs::Modal;
use super::dialogs::conflict::SpecConflict;
use super::editor::Editor;
use super::keymap::Pane;
use super::logs::PageKind;
use crate::protocol::Diagnostic;
use crate::protocol::agent::{AgentId, AgentStatus};
use crate::protocol::api::{ClientError, Response, RunDetail};
use crate::protocol::history::{RunSummary, StoredLine};
use crate::protocol::service::{ServiceAction, ServiceNode};
use crate::protocol::{RunId, RunState};

/// Puts `nodes` (the subtree at `path`, in tree order) where that subtree is in `all`, or at
/// the end when it is not there.
fn replace_subtree(all: &mut Vec<ServiceNode>, path: &str, nodes: Vec<ServiceNode>) {
    let within = |n: &ServiceNode| {
        n.path == path
            || n.path
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let at = all.iter().position(within).unwrap_or(all.len());
    all.retain(|n| !within(n));
    let at = at.min(all.len());
    all.splice(at..at, nodes);
}

impl App {
    /// Applies the answer to a request.
    pub fn on_response(
        &mut self,
        purpose: Purpose,
        result: Result<Response, ClientError>,
    ) -> Vec<Effect> {
        self.dirty = true;
        let source = source_name(&purpose);
        let response = match result {
            Ok(Response::Error(e)) => Err(ClientError::Api(e)),
            other => other,
        };
        let response = match response {
            Ok(r) => {
                self.data.errors.remove(source);
                r
            }
            Err(e) => {
                if matches!(purpose, Purpose::Status) && matches!(e, ClientError::Unreachable(_)) {
                    self.data.unreachable = true;
                }
                self.failed(&purpose, e.to_string());
                return Vec::new();
            }
        };
        match (purpose, response) {
            (Purpose::Status, Response::Status(s)) => {
                if std::mem::take(&mut self.data.unreachable) {
                    // Back: what happened meanwhile came as no events; read it all again.
                    self.say("reconnected");
                    self.refresh_wanted = true;
                }
                self.data.status = Some(s);
            }
            (Purpose::Workflows, Response::Workflows { workflows }) => {
                self.data.workflows = workflows
            }
            (Purpose::History, Response::Runs { runs }) => {
                self.data.runs = runs;
                self.anchor_runs();
                return self.take_outbox();
            }
            (Purpose::Queue, Response::Queue(q)) => self.data.queue = Some(Ok(q)),
            (Purpose::Agents, Response::Agents { agents }) => self.data.agents = Some(agents),
            (Purpose::Cordon(id, _) | Purpose::Drain(id), Response::Agents { agents }) => {
                self.agent_changed(&id, agents)
            }
            (Purpose::Services, Response::Services { nodes }) => {
                self.data.services = Some(nodes);
                self.open_new_supervisors();
            }
            (Purpose::ServiceLines(path), Response::ServiceLines { lines }) => {
                self.data.logs.stored_service_lines(&path, lines)
            }
            (Purpose::ServiceControl(path, action), Response::Services { nodes }) => {
                self.service_changed(&path, action, nodes)
            }
            (Purpose::Detail(id), Response::Run(d)) => self.detail(id, *d),
            (
                Purpose::Logs {
                    generation,
                    kind,
                    offset,
                },
                Response::Lines { lines, more, first },
            ) => {
                // A tail page says where it starts; other pages start where they were asked.
                let offset = if kind == PageKind::Tail {
                    first
                } else {
                    offset
                };
                return self.log_page(generation, kind, offset, lines, more);
            }
            (Purpose::Trigger(wf), Response::Accepted { run_id }) => {
                return self.triggered(wf, run_id);
            }
            (Purpose::Retry(old), Response::Accepted { run_id }) => {
                return self.retried(old, run_id);
            }
            (Purpose::Cancel(id), Response::Cancelled { found }) => {
                if found {
                    self.say(format!("run {id} cancelled"));
                } else {
                    self.warn(format!("run {id} was not active"));
                }
            }
            (Purpose::Pause(_), Response::Paused { workflow, paused }) => {
                self.set_paused(&workflow, paused);
                let what = if paused { "paused" } else { "resumed" };
                self.say(format!("schedule of `{workflow}` {what}"));
            }
            (Purpose::GetSpec(_), Response::Spec { file, text, hash }) => {
                self.spec_opened(file, text, hash)
            }
            (
                Purpose::PutSpec(_),
                Response::SpecSaved {
                    file,
                    workflows,
                    hash,
                },
            ) => self.spec_saved(&file, &workflows, hash),
            (Purpose::PutSpec(file), Response::SpecRejected { problems }) => {
                self.spec_rejected(&file, problems)
            }
            (
                Purpose::PutSpec(_),
                Response::SpecConflict {
                    file,
                    message,
                    hash,
                    text,
                },
            ) => self.spec_conflict(SpecConflict {
                file,
                message,
                hash,
                text,
            }),
            (
                purpose @ (Purpose::MonitorWindow(..)
                | Purpose::MonitorCounts
                | Purpose::MonitorDetail(_)
                | Purpose::Incidents
                | Purpose::MonitorControl(..)),
                response,
            ) => return super::panes::monitors::on_answer(self, purpose, response),
            (purpose, other) => {
                self.warn(format!(
                    "{}: unexpected answer {}",
                    source_name(&purpose),
                    short(&format!("{other:?}"))
                ));
            }
        }
        Vec::new()
    }

    /// A request failed: a background read notes why where its data shows, anything the user
    /// asked for says so on the message line.
    fn failed(&mut self, purpose: &Purpose, text: String) {
        if let Purpose::PutSpec(file) = purpose {
            self.save_answered(file);
        }
        match purpose {
            Purpose::Queue => self.data.queue = Some(Err(text.clone())),
            Purpose::Logs { kind, .. } if *kind != PageKind::Older => {
                // Nothing stored: show live lines only.
                let g = self.data.logs.generation;
                self.data.logs.on_page(g, *kind, 0, Vec::new(), false);
            }
            _ => {}
        }
        let source = source_name(purpose);
        if is_background(purpose) {
            self.data.errors.insert(source, text);
        } else {
            self.warn(format!("{source}: {text}"));
        }
    }

    /// A cordon or drain of agent `id` was answered with the list as it is now.
    fn agent_changed(&mut self, id: &AgentId, agents: Vec<AgentStatus>) {
        match agents.iter().find(|a| a.info.id == *id) {
            Some(a) => self.say(format!("agent {id}: {}", a.state)),
            None => self.warn(format!("agent {id} is no longer listed")),
        }
        self.data.agents = Some(agents);
    }

    /// A start, stop or restart of `path` was answered with its subtree as it is now: that
    /// part of the trees is replaced (the answer holds only the subtree).
    fn service_changed(&mut self, path: &str, action: ServiceAction, nodes: Vec<ServiceNode>) {
        let state = nodes.iter().find(|n| n.path == path).map_or_else(
            || "not listed any more".to_string(),
            |n| n.state.to_string(),
        );
        self.say(format!("{path}: {} sent, now {state}", action.as_str()));
        match self.data.services.as_mut() {
            Some(all) => replace_subtree(all, path, nodes),
            None => self.data.services = Some(nodes),
        }
        self.open_new_supervisors();
        // Events follow as the subtree moves on; the full read after them brings the rest.
        self.services_wanted = true;
    }

    /// The detail of run `id`, if it is still the one selected.
    fn detail(&mut self, id: RunId, d: RunDetail) {
        if self.view.selected_run != Some(id) {
            return;
        }
        // Events and answers travel separately: an answer taken before the run's last events
        // can arrive after them. Ask again shortly when it lags behind.
        let listed = self.data.runs.iter().find(|r| r.run_id == id);
        if listed.is_some_and(|r| r.state.is_terminal() && !d.summary.state.is_terminal()) {
            self.refresh_wanted = true;
        }
        self.view.dag.layout = Layout::new(&d.tasks);
        self.view.dag.selected = self.view.dag.selected.min(d.tasks.len().saturating_sub(1));
        self.data.detail = Some(d);
    }

    /// A page of log lines starting at store offset `offset`; asks for the next page when the
    /// buffer wants one.
    fn log_page(
        &mut self,
        generation: u64,
        kind: PageKind,
        offset: usize,
        lines: Vec<StoredLine>,
        more: bool,
    ) -> Vec<Effect> {
        let next = self
            .data
            .logs
            .on_page(generation, kind, offset, lines, more);
        if !self.view.log_view.follow {
            // `top` is a store offset, so older lines in front keep the view still.
            self.view.log_view.top = self.view.log_view.top.max(self.data.logs.first_offset());
        }
        match next {
            Some((offset, limit)) => vec![self.logs_call(offset, limit, PageKind::Forward)],
            None => Vec::new(),
        }
    }

    /// A trigger was accepted: the new run is shown, selected, in the unfiltered runs pane.
    fn triggered(&mut self, wf: String, run_id: RunId) -> Vec<Effect> {
        self.say(format!("run {run_id} of `{wf}` started"));
        if !self.data.runs.iter().any(|r| r.run_id == run_id) {
            self.data.runs.insert(
                0,
                RunSummary {
                    run_id,
                    workflow: wf,
                    state: RunState::Queued,
                    created_at: self.now,
                    started_at: None,
                    ended_at: None,
                    duration_secs: None,
                    failed_tasks: Vec::new(),
                    message: None,
                    triggered_by: None,
                },
            );
        }
        self.view.list_mut(Pane::Runs).filter.clear();
        self.view.show(Pane::Runs);
        let i = self
            .run_rows()
            .iter()
            .position(|r| r.run_id == run_id)
            .unwrap_or(0);
        self.select_run_at(i).into_iter().collect()
    }

    /// A retry of run `old` was accepted as `run_id`: it runs again and its detail is fetched.
    fn retried(&mut self, old: RunId, run_id: RunId) -> Vec<Effect> {
        self.say(format!(
            "retrying the failed tasks of run {old} (run {run_id})"
        ));
        if let Some(r) = self.data.runs.iter_mut().find(|r| r.run_id == run_id) {
            r.state = RunState::Running;
            r.ended_at = None;
            r.failed_tasks.clear();
        }
        self.view.selected_run = None;
        let i = self
            .run_rows()
            .iter()
            .position(|r| r.run_id == run_id)
            .unwrap_or(0);
        let mut out: Vec<Effect> = self.select_run_at(i).into_iter().collect();
        if out.is_empty() {
            out.push(detail_call(run_id));
        }
        out
    }

    /// A file's text arrived: it opens in the editor unless one is open already.
    fn spec_opened(&mut self, file: String, text: String, hash: Option<String>) {
        if let Some(open) = &self.view.editor {
            // Opened twice (or `n` meanwhile): the open editor may hold edits.
            let open = open.file.clone();
            self.warn(format!(
                "not opening {file}: {open} is open in the editor (Esc closes it)"
            ));
        } else if self.config.read_only.is_none() {
            self.say(format!(
                "editing {file}: Ctrl-S validates and saves, Esc closes"
            ));
            let editor = Editor::open_file(file.clone(), text, hash);
            self.view.editor = Some(self.edit_session(editor, file));
        }
    }

    fn spec_saved(&mut self, file: &str, workflows: &[String], hash: Option<String>) {
        if let Some(s) = self.view.editor.as_mut().filter(|s| s.file == file) {
            s.editor.mark_saved(hash);
        }
        self.say(format!(
            "saved {file} and reloaded: {}",
            if workflows.is_empty() {
                "no workflows".to_string()
            } else {
                workflows.join(", ")
            }
        ));
        self.refresh_wanted = true;
    }

    /// A save was refused as invalid: the first problem on the message line, all of them in
    /// the editor.
    fn spec_rejected(&mut self, file: &str, problems: Vec<Diagnostic>) {
        let first = problems
            .first()
            .map(|p| format!("{file}:{}:{}: {}", p.line, p.col, p.message))
            .unwrap_or_else(|| format!("{file}: rejected"));
        let more = problems.len().saturating_sub(1);
        self.warn(if more > 0 {
            format!("not saved: {first} (+{more} more)")
        } else {
            format!("not saved: {first}")
        });
        if let Some(s) = self.view.editor.as_mut().filter(|s| s.file == file) {
            s.editor.set_problems(problems);
        }
    }

    /// A save was refused because the file changed on disk: the editor may save again, and
    /// the conflict dialog asks what to do.
    fn spec_conflict(&mut self, c: SpecConflict) {
        self.save_answered(&c.file);
        if self.view.editor.as_ref().is_some_and(|s| s.file == c.file) {
            let reload = if c.text.is_some() {
                "r reload from disk · "
            } else {
                ""
            };
            self.warn(format!(
                "not saved: {}: {reload}o overwrite with your text · Esc keep editing",
                c.message
            ));
            self.view.modal = Some(Modal::SpecConflict(c));
        }
    }

    /// A save of `file` was answered without being written: the editor may save again.
    fn save_answered(&mut self, file: &str) {
        if let Some(s) = self.view.editor.as_mut().filter(|s| s.file == file) {
            s.editor.save_failed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexpected_answer_is_reported_not_applied() {
        let mut app = App::new(
            crate::tui::app::AppConfig {
                read_only: None,
                owns_principal: false,
                themes_dir: std::path::PathBuf::from("themes"),
                no_color: true,
                origin: "test".into(),
                local_time: false,
            },
            crate::tui::theme::Theme::monochrome(),
            chrono::Utc::now(),
        );
        app.on_response(Purpose::Status, Ok(Response::Cancelled { found: true }));
        let msg = app.view.message.clone().expect("a message");
        assert!(
            msg.error && msg.text.contains("status: unexpected answer"),
            "{msg:?}"
        );
        assert!(app.data.status.is_none());
    }
}
