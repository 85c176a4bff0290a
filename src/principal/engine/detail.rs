//! Looking into runs (detail, queue) and retrying the failed part of an ended run.

use std::collections::HashMap;

use tokio::sync::oneshot;

use super::super::run::RunCtx;
use super::{Engine, Internal};
use crate::principal::TriggerError;
use crate::protocol::api::Caller;
use crate::protocol::api::{
    ApiError, ApiErrorKind, QueueReport, QueuedRun, QueuedTask, Response, RunDetail, TaskDetail,
};
use crate::protocol::{RunId, RunState, TaskState};
use crate::store::UnfinishedRun;

/// A task as the spec describes it, before anything ran.
struct TaskShape {
    name: String,
    depends_on: Vec<String>,
    max_attempts: u32,
}

fn not_found(run_id: RunId) -> Response {
    Response::Error(ApiError::new(
        ApiErrorKind::NotFound,
        format!("no run {run_id}: `opsconsole history` lists the runs"),
    ))
}

impl Engine {
    pub(super) fn queue(&self) -> QueueReport {
        let workflow_of = |id: &RunId| {
            self.runs
                .get(id)
                .map(|r| r.workflow.to_string())
                .unwrap_or_default()
        };
        QueueReport {
            held_runs: self
                .held
                .iter()
                .map(|id| QueuedRun {
                    run_id: *id,
                    workflow: workflow_of(id),
                })
                .collect(),
            ready_tasks: self
                .gate
                .ready
                .iter()
                .filter_map(|r| {
                    let (id, idx, attempt) = (r.run, r.task, r.attempt);
                    let run = self.runs.get(&id)?;
                    let task = &run.tasks[idx];
                    // Entries superseded by a cancel are skipped by dispatch; hide them too.
                    (task.state == TaskState::Queued && task.attempt == attempt).then(|| {
                        QueuedTask {
                            run_id: id,
                            workflow: run.workflow.to_string(),
                            task: task.name.to_string(),
                            attempt,
                            waiting_for: self.waiting_for(r),
                        }
                    })
                })
                .collect(),
        }
    }

    pub(super) fn run_detail(&self, run_id: RunId, reply: oneshot::Sender<Response>) {
        // The shape comes from the spec the run uses (an active run) or the current one.
        // For an ended run the workflow's current spec is the best guess of its shape; tasks it
        // no longer has are still listed, from the history.
        let spec = self.runs.get(&run_id).map(|r| r.spec.clone());
        let catalog = self.catalog.clone();
        let shape = move |workflow: &str| -> Vec<TaskShape> {
            let spec = spec.clone().or_else(|| catalog.get(workflow).cloned());
            spec.map(|spec| {
                spec.tasks
                    .iter()
                    .map(|t| TaskShape {
                        name: t.name.clone(),
                        depends_on: spec.parent_names(t),
                        max_attempts: t.retries + 1,
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        self.read(reply, move |r| {
            let Some(summary) = r.run(run_id)? else {
                return Ok(not_found(run_id));
            };
            let mut progress: HashMap<String, _> = r
                .task_progress(run_id)?
                .into_iter()
                .map(|p| (p.task.clone(), p))
                .collect();
            let mut tasks: Vec<TaskDetail> = shape(&summary.workflow)
                .into_iter()
                .map(|s| {
                    let p = progress.remove(&s.name);
                    TaskDetail {
                        state: p.as_ref().map_or(TaskState::Pending, |p| p.state),
                        attempt: p.as_ref().map_or(0, |p| p.attempt),
                        started_at: p.as_ref().and_then(|p| p.started_at),
                        ended_at: p.as_ref().and_then(|p| p.ended_at),
                        name: s.name,
                        depends_on: s.depends_on,
                        max_attempts: s.max_attempts,
                    }
                })
                .collect();
            let mut gone: Vec<_> = progress.into_values().collect();
            gone.sort_by(|a, b| a.task.cmp(&b.task));
            tasks.extend(gone.into_iter().map(|p| TaskDetail {
                max_attempts: p.attempt,
                name: p.task,
                depends_on: Vec::new(),
                state: p.state,
                attempt: p.attempt,
                started_at: p.started_at,
                ended_at: p.ended_at,
            }));
            let attempts = r.attempts(run_id)?;
            // A finished attempt's own clock is the process's real run time; the state events
            // are stamped when the principal handled them, which for a quick task can be
            // microseconds apart.
            for t in &mut tasks {
                if let Some(a) = attempts
                    .iter()
                    .find(|a| a.task == t.name && a.attempt == t.attempt)
                {
                    t.started_at = Some(a.started_at);
                    t.ended_at = Some(a.ended_at);
                }
            }
            Ok(Response::Run(Box::new(RunDetail {
                params: r.params(run_id)?,
                attempts,
                summary,
                tasks,
            })))
        });
    }

    /// Reads the ended run's stored state off the actor, then [`reopen`](Self::reopen)s it.
    pub(super) fn retry(&self, run_id: RunId, by: Caller, reply: oneshot::Sender<Response>) {
        if self.runs.contains_key(&run_id) {
            let _ = reply.send(Response::Error(ApiError::new(
                ApiErrorKind::InvalidInput,
                format!("run {run_id} is still active: wait for it to end or cancel it first"),
            )));
            return;
        }
        let reader = self.reader.clone();
        let store = self.store_tx.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let _ = store.flush().await;
            let loaded = tokio::task::spawn_blocking(move || {
                let guard = reader.lock().unwrap_or_else(|e| e.into_inner());
                guard.snapshot(run_id)
            })
            .await;
            let answer = match loaded {
                Ok(Ok(Some((_, RunState::Succeeded)))) => Err(ApiError::new(
                    ApiErrorKind::InvalidInput,
                    format!("run {run_id} succeeded: there is nothing to retry"),
                )),
                Ok(Ok(Some((snapshot, _)))) => Ok(snapshot),
                Ok(Ok(None)) => Err(ApiError::new(
                    ApiErrorKind::NotFound,
                    format!("no run {run_id}: `opsconsole history` lists the runs"),
                )),
                Ok(Err(e)) => Err(ApiError::new(ApiErrorKind::Internal, e.to_string())),
                Err(e) => Err(ApiError::new(ApiErrorKind::Internal, e.to_string())),
            };
            match answer {
                Ok(snapshot) => {
                    let _ = tx.send(Internal::RetryLoaded {
                        snapshot: Box::new(snapshot),
                        by,
                        reply,
                    });
                }
                Err(e) => {
                    let _ = reply.send(Response::Error(e));
                }
            }
        });
    }

    /// Puts an ended run back in the queue: tasks that succeeded keep their result, the others
    /// run again under their next attempt numbers with a fresh retry budget.
    pub(super) async fn reopen(
        &mut self,
        u: UnfinishedRun,
        by: Caller,
        reply: oneshot::Sender<Response>,
    ) {
        let id = u.run_id;
        let refuse = |kind, message: String| Response::Error(ApiError::new(kind, message));
        if self.shutting_down {
            let _ = reply.send(refuse(
                ApiErrorKind::Unavailable,
                "opsconsole is shutting down and accepts no new runs".into(),
            ));
            return;
        }
        if self.runs.contains_key(&id) {
            let _ = reply.send(refuse(
                ApiErrorKind::InvalidInput,
                format!("run {id} is already active again"),
            ));
            return;
        }
        if let Some(problem) = self.store_tx.problem() {
            let _ = reply.send(Response::Error(TriggerError::NotStored(problem).into()));
            return;
        }
        let Some(spec) = self.catalog.get(&u.workflow).cloned() else {
            let _ = reply.send(refuse(
                ApiErrorKind::InvalidInput,
                format!(
                    "workflow `{}` is no longer defined (or invalid), so run {id} cannot be retried",
                    u.workflow
                ),
            ));
            return;
        };
        let dag = self.dag_for(&spec);
        let mut run = RunCtx::new(id, spec.clone(), dag, u.params);
        let mut again = 0;
        // Tasks that ran before and go back to pending (the others were pending all along).
        let mut reset = Vec::new();
        for (idx, task) in spec.tasks.iter().enumerate() {
            let (state, attempt) = u
                .tasks
                .get(&task.name)
                .copied()
                .unwrap_or((TaskState::Pending, 0));
            run.tasks[idx].attempt = attempt;
            if state == TaskState::Succeeded {
                run.restore(idx, state);
            } else {
                run.tasks[idx].extra_attempts = attempt;
                again += 1;
                if attempt > 0 {
                    reset.push(idx);
                }
            }
        }
        self.finished.remove(id);
        self.runs.insert(id, run);
        self.emit_run_state(
            id,
            RunState::Queued,
            Some(format!("retry: {again} task(s) to run again")),
        )
        .await;
        for idx in reset {
            self.set_task(id, idx, TaskState::Pending, Some("retry requested".into()))
                .await;
        }
        self.record_action(&by, "retry", format!("run {id}")).await;
        self.held.push_back(id);
        self.start_held_runs().await;
        self.dispatch();
        self.accept_when_stored(id, reply);
    }
}
