//! Engine events applied to the console's data (and the view where the data it shows moved).

use chrono::{DateTime, Utc};

use super::app::App;
use super::keymap::Pane;
use crate::protocol::history::RunSummary;
use crate::protocol::monitor::MonitorChange;
use crate::protocol::service::ServiceLogBatch;
use crate::protocol::{AttemptKey, Event, RunId, RunState, TaskState};

impl App {
    /// Applies an engine event.
    pub fn on_event(&mut self, ev: Event) {
        let changed = match ev {
            Event::Logs(batch) => {
                if self.data.logs.push_live(&batch) && self.view.pane == Pane::Logs {
                    self.dirty = true;
                }
                false
            }
            Event::RunCreated {
                run_id,
                workflow,
                at,
                ..
            } => {
                self.run_created(run_id, &workflow, at);
                true
            }
            Event::RunState {
                run_id,
                state,
                at,
                message,
                ..
            } => {
                self.run_state(run_id, state, at, message);
                true
            }
            Event::TaskState { key, state, at, .. } => self.task_state(&key, state, at),
            Event::Attempt(_) => false,
            // The history's record of where work went; the agents list says it live.
            Event::Dispatched(_) => false,
            Event::Service(_) => {
                // The trees are read again (coalesced): the pane and the Overview's summary.
                self.services_wanted = true;
                false
            }
            Event::ServiceLogs(batch) => self.service_lines(&batch),
            // Who did what is history; the change itself arrives as its own event.
            Event::Action(_) => false,
            Event::Agent(note) => {
                // Rare: the agents list is read again (and the status, whose slots changed),
                // whichever pane is shown.
                self.say(format!("agent {}: {}", note.agent, note.message));
                self.agents_wanted = true;
                self.refresh_wanted = true;
                true
            }
            // The pane reads the board on its own pace; an incident is news wherever one is.
            Event::Monitor(note) => match note.change {
                MonitorChange::IncidentOpened { .. } => {
                    self.warn(format!("monitor {note}"));
                    true
                }
                MonitorChange::IncidentClosed { .. } => {
                    self.say(format!("monitor {note}"));
                    true
                }
                _ => false,
            },
            Event::WorkflowPaused {
                workflow, paused, ..
            } => {
                self.set_paused(&workflow, paused);
                true
            }
            Event::SpecsReloaded { workflows, .. } => {
                self.say(format!("workflows reloaded: {}", workflows.join(", ")));
                self.refresh_wanted = true;
                true
            }
            Event::StoreHealth { problem, .. } => {
                self.store_health(problem);
                true
            }
            Event::SpecProblems { problems, .. } if problems.is_empty() => {
                self.say("workflow files: no problems left".to_string());
                true
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
                true
            }
        };
        if changed {
            self.dirty = true;
        }
    }

    /// A new run goes into the list in id order (newest first), the selection staying on its
    /// run.
    fn run_created(&mut self, run_id: RunId, workflow: &str, at: DateTime<Utc>) {
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
                    triggered_by: None,
                },
            );
            self.anchor_runs();
        }
        self.refresh_wanted = true;
    }

    fn run_state(
        &mut self,
        run_id: RunId,
        state: RunState,
        at: DateTime<Utc>,
        message: Option<String>,
    ) {
        // As the store reports it: a run (re)started when it last went to running, and a
        // retried run has not ended any more.
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

    /// Updates the task in the detail shown; false when nothing on screen changed (a task of
    /// another run: only the busy slots, which the refresh brings).
    fn task_state(&mut self, key: &AttemptKey, state: TaskState, at: DateTime<Utc>) -> bool {
        self.refresh_wanted = true;
        let Some(t) = self
            .data
            .detail
            .as_mut()
            .filter(|d| d.summary.run_id == key.run_id)
            .and_then(|d| d.tasks.iter_mut().find(|t| *t.name == *key.task))
        else {
            return !self.data.runs.iter().any(|r| r.run_id == key.run_id);
        };
        t.state = state;
        t.attempt = t.attempt.max(key.attempt);
        match state {
            TaskState::Running => {
                t.started_at = Some(at);
                t.ended_at = None;
            }
            s if (s.is_terminal() || s == TaskState::Retrying) && t.started_at.is_some() => {
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
        true
    }

    /// Keeps a service's new lines; true when they are on screen (the logs pane follows the
    /// service, or it is the one selected in the Supervisors pane).
    fn service_lines(&mut self, batch: &ServiceLogBatch) -> bool {
        let entries = self.data.service_logs.push(batch);
        let followed = self.data.logs.push_service(&batch.path, &entries);
        match self.view.pane {
            Pane::Logs => followed,
            Pane::Supervisors => self
                .selected_service()
                .is_some_and(|n| *n.path == *batch.path),
            _ => false,
        }
    }

    fn store_health(&mut self, problem: Option<String>) {
        match &problem {
            Some(p) => self.warn(format!("history store: {p}; new runs are refused")),
            None => self.say("history store: writing again, nothing was lost".to_string()),
        }
        if let Some(s) = self.data.status.as_mut() {
            s.store_problem = problem;
        }
        self.refresh_wanted = true;
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
        // A service's output is not read from the store: what was missed stays missed.
        if let Some(t) = self.data.logs.target().cloned() {
            let pane = self.view.pane;
            let again = self.open_logs(t.run_id, t.task);
            self.outbox.extend(again);
            self.view.pane = pane;
        }
    }
}
