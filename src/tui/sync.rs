//! Engine events and answers to requests, applied to the console state.

use super::app::{App, Effect, Purpose, detail_call, is_background, short, source_name};
use super::dag_view::Layout;
use super::dialogs::Modal;
use super::dialogs::conflict::SpecConflict;
use super::editor::Editor;
use super::keymap::Pane;
use super::logs::PageKind;
use crate::protocol::api::{ClientError, Response};
use crate::protocol::{Event, RunState, TaskState};
use crate::store::query::RunSummary;

impl App {
    /// Applies an engine event.
    pub fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Logs(batch) => {
                if self.data.logs.push_live(&batch) && self.view.pane == Pane::Logs {
                    self.dirty = true;
                }
                return;
            }
            Event::RunCreated {
                run_id,
                workflow,
                at,
                ..
            } => {
                if !self.data.runs.iter().any(|r| r.run_id == run_id) {
                    let pos = self
                        .data
                        .runs
                        .iter()
                        .position(|r| r.run_id < run_id)
                        .unwrap_or(self.data.runs.len());
                    self.data.runs.insert(
                        pos,
                        RunSummary {
                            run_id,
                            workflow: workflow.to_string(),
                            state: RunState::Queued,
                            created_at: at,
                            started_at: None,
                            ended_at: None,
                            duration_secs: None,
                            failed_tasks: Vec::new(),
                            message: None,
                        },
                    );
                    self.anchor_runs();
                }
                self.refresh_wanted = true;
            }
            Event::RunState {
                run_id,
                state,
                at,
                message,
                ..
            } => {
                // As the store reports it: a run (re)started when it last went to running, and
                // a retried run has not ended any more.
                let update = |r: &mut RunSummary| {
                    r.state = state;
                    if state == RunState::Running {
                        r.started_at = Some(at);
                    }
                    if !state.is_terminal() {
                        r.ended_at = None;
                        r.duration_secs = None;
                    } else {
                        r.ended_at = Some(at);
                        let from = r.started_at.unwrap_or(r.created_at);
                        r.duration_secs = Some((at - from).num_milliseconds() as f64 / 1000.0);
                        r.message = message.clone();
                    }
                };
                if let Some(r) = self.data.runs.iter_mut().find(|r| r.run_id == run_id) {
                    update(r);
                }
                if let Some(d) = self
                    .data
                    .detail
                    .as_mut()
                    .filter(|d| d.summary.run_id == run_id)
                {
                    update(&mut d.summary);
                }
                self.refresh_wanted = true;
            }
            Event::TaskState { key, state, at, .. } => {
                if let Some(d) = self
                    .data
                    .detail
                    .as_mut()
                    .filter(|d| d.summary.run_id == key.run_id)
                    && let Some(t) = d.tasks.iter_mut().find(|t| *t.name == *key.task)
                {
                    t.state = state;
                    t.attempt = t.attempt.max(key.attempt);
                    match state {
                        TaskState::Running => {
                            t.started_at = Some(at);
                            t.ended_at = None;
                        }
                        s if (s.is_terminal() || s == TaskState::Retrying)
                            && t.started_at.is_some() =>
                        {
                            t.ended_at = Some(at);
                        }
                        _ => {}
                    }
                    if state.is_terminal()
                        && matches!(state, TaskState::Failed | TaskState::TimedOut)
                        && let Some(r) = self.data.runs.iter_mut().find(|r| r.run_id == key.run_id)
                        && !r.failed_tasks.iter().any(|f| *f == *key.task)
                    {
                        r.failed_tasks.push(key.task.to_string());
                    }
                } else if self.data.runs.iter().any(|r| r.run_id == key.run_id) {
                    // Busy slots changed.
                    self.refresh_wanted = true;
                    return;
                }
                self.refresh_wanted = true;
            }
            Event::Attempt(_) => return,
            Event::WorkflowPaused {
                workflow, paused, ..
            } => self.set_paused(&workflow, paused),
            Event::SpecsReloaded { workflows, .. } => {
                self.say(format!("workflows reloaded: {}", workflows.join(", ")));
                self.refresh_wanted = true;
            }
            Event::StoreHealth { problem, .. } => {
                match &problem {
                    Some(p) => self.warn(format!("history store: {p}; new runs are refused")),
                    None => self.say("history store: writing again, nothing was lost".to_string()),
                }
                if let Some(s) = self.data.status.as_mut() {
                    s.store_problem = problem;
                }
                self.refresh_wanted = true;
            }
            Event::SpecProblems { problems, .. } => {
                let first = problems
                    .first()
                    .map(|p| format!("{}:{}:{}: {}", p.file.display(), p.line, p.col, p.message))
                    .unwrap_or_default();
                self.warn(format!(
                    "{} problem(s) in workflow files (the last good versions stay in effect): {first}",
                    problems.len()
                ));
                self.refresh_wanted = true;
            }
        }
        self.dirty = true;
    }

    /// A save of `file` was answered without being written: the editor may save again.
    fn save_answered(&mut self, file: &str) {
        if let Some(s) = self.view.editor.as_mut().filter(|s| s.file == file) {
            s.editor.save_failed();
        }
    }

    pub(super) fn set_paused(&mut self, workflow: &str, paused: bool) {
        for w in self
            .data
            .workflows
            .iter_mut()
            .filter(|w| w.name == workflow)
        {
            w.paused = paused;
        }
        if let Some(s) = self.data.status.as_mut() {
            for w in s.workflows.iter_mut().filter(|w| w.name == workflow) {
                w.paused = paused;
            }
        }
        self.dirty = true;
    }

    /// The console fell behind the event stream: fetch everything again.
    pub fn on_lagged(&mut self, missed: u64) {
        self.lagged += missed;
        self.refresh_wanted = true;
        // Live lines were lost: read the logs again from the store (duplicates are dropped).
        if let Some(t) = self.data.logs.target().cloned() {
            let pane = self.view.pane;
            let again = self.open_logs(t.run_id, t.task);
            self.outbox.extend(again);
            self.view.pane = pane;
        }
    }

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
                let text = e.to_string();
                if let Purpose::PutSpec(file) = &purpose {
                    self.save_answered(file);
                }
                match &purpose {
                    Purpose::Queue => self.data.queue = Some(Err(text.clone())),
                    Purpose::Logs { kind, .. } if *kind != PageKind::Older => {
                        // Nothing stored: show live lines only.
                        let g = self.data.logs.generation;
                        self.data.logs.on_page(g, *kind, 0, Vec::new(), false);
                    }
                    _ => {}
                }
                if is_background(&purpose) {
                    self.data.errors.insert(source, text);
                } else {
                    self.warn(format!("{source}: {text}"));
                }
                return Vec::new();
            }
        };
        match (purpose, response) {
            (Purpose::Status, Response::Status(s)) => self.data.status = Some(s),
            (Purpose::Workflows, Response::Workflows { workflows }) => {
                self.data.workflows = workflows
            }
            (Purpose::History, Response::Runs { runs }) => {
                self.data.runs = runs;
                self.anchor_runs();
                return self.take_outbox();
            }
            (Purpose::Queue, Response::Queue(q)) => self.data.queue = Some(Ok(q)),
            (Purpose::Detail(id), Response::Run(d)) => {
                if self.view.selected_run == Some(id) {
                    // Events and answers travel separately: an answer taken before the run's
                    // last events can arrive after them. Ask again shortly when it lags behind.
                    let listed = self.data.runs.iter().find(|r| r.run_id == id);
                    if listed
                        .is_some_and(|r| r.state.is_terminal() && !d.summary.state.is_terminal())
                    {
                        self.refresh_wanted = true;
                    }
                    self.view.dag.layout = Layout::new(&d.tasks);
                    self.view.dag.selected =
                        self.view.dag.selected.min(d.tasks.len().saturating_sub(1));
                    self.data.detail = Some(*d);
                }
            }
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
                let next = self
                    .data
                    .logs
                    .on_page(generation, kind, offset, lines, more);
                if !self.view.log_view.follow {
                    // `top` is a store offset, so older lines in front keep the view still.
                    self.view.log_view.top =
                        self.view.log_view.top.max(self.data.logs.first_offset());
                }
                if let Some((offset, limit)) = next {
                    return vec![self.logs_call(offset, limit, PageKind::Forward)];
                }
            }
            (Purpose::Trigger(wf), Response::Accepted { run_id }) => {
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
                        },
                    );
                }
                self.view.lists[Pane::Runs.index()].filter.clear();
                self.view.show(Pane::Runs);
                let i = self
                    .run_rows()
                    .iter()
                    .position(|r| r.run_id == run_id)
                    .unwrap_or(0);
                return self.select_run_at(i).into_iter().collect();
            }
            (Purpose::Retry(old), Response::Accepted { run_id }) => {
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
                return out;
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
            (
                Purpose::PutSpec(_),
                Response::SpecSaved {
                    file,
                    workflows,
                    hash,
                },
            ) => {
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
            (Purpose::PutSpec(file), Response::SpecRejected { problems }) => {
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
            (
                Purpose::PutSpec(_),
                Response::SpecConflict {
                    file,
                    message,
                    hash,
                    text,
                },
            ) => {
                self.save_answered(&file);
                if self.view.editor.as_ref().is_some_and(|s| s.file == file) {
                    let reload = if text.is_some() {
                        "r reload from disk · "
                    } else {
                        ""
                    };
                    self.warn(format!(
                        "not saved: {message}: {reload}o overwrite with your text · Esc keep editing"
                    ));
                    self.view.modal = Some(Modal::SpecConflict(SpecConflict {
                        file,
                        message,
                        hash,
                        text,
                    }));
                }
            }
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
}
