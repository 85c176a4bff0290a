//! The rows each list shows, filtered as shown, and the runs list's selection.

use std::collections::BTreeMap;

use super::app::{App, Effect, detail_call};
use super::dag_view::Layout;
use super::data::{QueueRow, WorkflowRow, WorkflowStats};
use super::keymap::Pane;
use crate::protocol::RunState;
use crate::protocol::agent::AgentStatus;
use crate::protocol::history::RunSummary;

impl App {
    pub(super) fn workflow_rows_all(&self) -> Vec<WorkflowRow> {
        let last_state = |name: &str| {
            self.data
                .runs
                .iter()
                .find(|r| r.workflow == name)
                .map(|r| r.state)
        };
        let active = |name: &str| {
            self.data
                .runs
                .iter()
                .filter(|r| r.workflow == name && !r.state.is_terminal())
                .count()
        };
        let row =
            |name: &String, schedule: &Option<String>, next: &[_], paused: bool| WorkflowRow {
                name: name.clone(),
                schedule: schedule.clone(),
                next_fire: next.first().copied(),
                paused,
                last_state: last_state(name),
                active: active(name),
            };
        let mut rows: Vec<WorkflowRow> = if !self.data.workflows.is_empty() {
            self.data
                .workflows
                .iter()
                .map(|w| row(&w.name, &w.schedule, &w.next_fires, w.paused))
                .collect()
        } else {
            // Until `Workflows` answers, the status report has the essentials.
            self.data
                .status
                .iter()
                .flat_map(|s| &s.workflows)
                .map(|w| row(&w.name, &w.schedule, &w.next_fires, w.paused))
                .collect()
        };
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// Rows of the workflows pane, filtered.
    pub fn workflow_rows(&self) -> Vec<WorkflowRow> {
        let f = self.view.lists[Pane::Workflows.index()]
            .filter
            .text()
            .to_lowercase();
        self.workflow_rows_all()
            .into_iter()
            .filter(|r| r.name.to_lowercase().contains(&f))
            .collect()
    }

    /// Rows of the runs pane, filtered (matches id, workflow, state).
    pub fn run_rows(&self) -> Vec<&RunSummary> {
        let f = self.view.lists[Pane::Runs.index()]
            .filter
            .text()
            .to_lowercase();
        self.data
            .runs
            .iter()
            .filter(|r| {
                f.is_empty()
                    || format!("{} {} {}", r.run_id, r.workflow, r.state).contains(f.as_str())
            })
            .collect()
    }

    /// Rows of the history pane, filtered.
    pub fn history_rows(&self) -> Vec<WorkflowStats> {
        let f = self.view.lists[Pane::History.index()]
            .filter
            .text()
            .to_lowercase();
        let mut by: BTreeMap<&str, WorkflowStats> = BTreeMap::new();
        // Oldest first, so that sparklines read left to right.
        for r in self.data.runs.iter().rev() {
            let s = by
                .entry(r.workflow.as_str())
                .or_insert_with(|| WorkflowStats {
                    name: r.workflow.clone(),
                    runs: 0,
                    failed: 0,
                    ended: 0,
                    mean_secs: None,
                    durations_ms: Vec::new(),
                });
            s.runs += 1;
            if matches!(r.state, RunState::Succeeded | RunState::Failed) {
                s.ended += 1;
                s.failed += usize::from(r.state == RunState::Failed);
            }
            if let Some(d) = r.duration_secs.filter(|_| r.state.is_terminal()) {
                s.durations_ms.push((d * 1000.0).round() as u64);
            }
        }
        let mut rows: Vec<WorkflowStats> = by.into_values().collect();
        for s in &mut rows {
            if !s.durations_ms.is_empty() {
                let sum: u64 = s.durations_ms.iter().sum();
                s.mean_secs = Some(sum as f64 / s.durations_ms.len() as f64 / 1000.0);
            }
        }
        rows.retain(|s| s.name.to_lowercase().contains(&f));
        rows
    }

    /// Rows of the queue pane: held runs, then ready tasks, each with what it waits for.
    pub fn queue_rows(&self) -> Vec<QueueRow> {
        let f = self.view.lists[Pane::Queue.index()]
            .filter
            .text()
            .to_lowercase();
        let Some(Ok(q)) = &self.data.queue else {
            return Vec::new();
        };
        let held = q.held_runs.iter().map(|r| QueueRow {
            run_id: r.run_id,
            workflow: r.workflow.clone(),
            what: "run".into(),
            waiting_for: "max_active_runs".into(),
        });
        let ready = q.ready_tasks.iter().map(|t| QueueRow {
            run_id: t.run_id,
            workflow: t.workflow.clone(),
            what: format!("task {} #{}", t.task, t.attempt),
            // The principal's reason reads as a sentence ("waiting for an agent labelled
            // ..."); under the WAITING FOR header its first words would say it twice.
            waiting_for: t.waiting_for.as_deref().map_or_else(
                || "a free slot".to_string(),
                |why| why.strip_prefix("waiting for ").unwrap_or(why).to_string(),
            ),
        });
        held.chain(ready)
            .filter(|r| {
                format!("{} {} {}", r.workflow, r.what, r.waiting_for)
                    .to_lowercase()
                    .contains(&f)
            })
            .collect()
    }

    /// Rows of the agents pane, filtered (matches id, address, state, labels, running work).
    pub fn agent_rows(&self) -> Vec<&AgentStatus> {
        let f = self.view.lists[Pane::Agents.index()]
            .filter
            .text()
            .to_lowercase();
        self.data
            .agents
            .iter()
            .flatten()
            .filter(|a| {
                f.is_empty() || {
                    let running: Vec<String> = a.running.iter().map(|w| w.to_string()).collect();
                    format!(
                        "{} {} {} {} {}",
                        a.info.id,
                        a.address,
                        a.state,
                        a.info.labels_text(),
                        running.join(" ")
                    )
                    .to_lowercase()
                    .contains(&f)
                }
            })
            .collect()
    }

    /// The selected row of the agents pane.
    pub fn selected_agent(&self) -> Option<&AgentStatus> {
        self.agent_rows()
            .get(self.view.lists[Pane::Agents.index()].selected)
            .copied()
    }

    /// The selected workflow's name (workflows or history pane).
    pub fn selected_workflow(&self) -> Option<String> {
        match self.view.pane {
            Pane::History => {
                let rows = self.history_rows();
                rows.get(self.view.lists[Pane::History.index()].selected)
                    .map(|r| r.name.clone())
            }
            _ => {
                let rows = self.workflow_rows();
                rows.get(self.view.lists[Pane::Workflows.index()].selected)
                    .map(|r| r.name.clone())
            }
        }
    }

    pub(super) fn selected_run_summary(&self) -> Option<&RunSummary> {
        let id = self.view.selected_run?;
        self.data.runs.iter().find(|r| r.run_id == id)
    }

    /// Re-anchors the runs list on the selected run after the list changed; a request for a
    /// newly selected run's detail goes to the outbox.
    pub(super) fn anchor_runs(&mut self) {
        let idx = self
            .view
            .selected_run
            .and_then(|id| self.run_rows().iter().position(|r| r.run_id == id));
        match idx {
            Some(i) => self.view.lists[Pane::Runs.index()].selected = i,
            None => {
                let e = self.select_run_at(self.view.lists[Pane::Runs.index()].selected);
                self.outbox.extend(e);
            }
        }
    }

    /// Requests that arose outside a key or an answer (e.g. from an event).
    pub fn take_outbox(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.outbox)
    }

    /// Selects the run at row `i` of the runs list; returns the detail request when it changed.
    pub(super) fn select_run_at(&mut self, i: usize) -> Option<Effect> {
        let rows = self.run_rows();
        let i = i.min(rows.len().saturating_sub(1));
        let id = rows.get(i).map(|r| r.run_id);
        self.view.lists[Pane::Runs.index()].selected = i;
        if id != self.view.selected_run {
            self.view.selected_run = id;
            self.view.dag.selected = 0;
            self.view.dag.scroll = (0, 0);
            if self.data.detail.as_ref().map(|d| d.summary.run_id) != id {
                self.data.detail = None;
                self.view.dag.layout = Layout::default();
            }
            return id.map(detail_call);
        }
        None
    }
}
