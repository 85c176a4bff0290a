//! One handler per kind of request a face sends, and the answers that wait for the file.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::oneshot;

use super::{ACCEPT_PATIENCE, Engine, Origin, READ_PATIENCE};
use crate::principal::TriggerError;
use crate::protocol::api::{
    ApiError, ApiErrorKind, Caller, MAX_LOG_PAGE, Request, Response, StatusReport, WorkflowStatus,
};
use crate::protocol::{Event, RunId};
use crate::store::StoreError;
use crate::store::query::{LogFilter, Reader, RunFilter};

/// Which page of a run's output a `Logs` request asks for.
struct LogPage {
    offset: usize,
    limit: usize,
    from_end: bool,
}

impl Engine {
    /// Serves one request of `caller` (as the transport authenticated it); each kind has its
    /// own handler. What changes something is recorded as an action of `caller`.
    pub(super) async fn on_request(
        &mut self,
        request: Request,
        caller: Caller,
        reply: oneshot::Sender<Response>,
    ) {
        match request {
            Request::Trigger { workflow, params } => {
                self.on_trigger(&workflow, params, caller, reply).await
            }
            Request::Cancel { run_id } => self.on_cancel(run_id, caller, reply).await,
            Request::WaitRun { run_id } => self.on_wait_run(run_id, reply),
            Request::Pause { workflow } => {
                let response = self.set_paused(&workflow, true).await;
                if !matches!(response, Response::Error(_)) {
                    self.record_action(&caller, "pause", workflow).await;
                }
                let _ = reply.send(response);
            }
            Request::Resume { workflow } => {
                let response = self.set_paused(&workflow, false).await;
                if !matches!(response, Response::Error(_)) {
                    self.record_action(&caller, "resume", workflow).await;
                }
                let _ = reply.send(response);
            }
            Request::Status => {
                let _ = reply.send(Response::Status(self.status()));
            }
            Request::History { workflow, limit } => self.on_history(workflow, limit, reply),
            Request::Logs {
                run_id,
                task,
                stream,
                offset,
                limit,
                from_end,
            } => {
                let page = LogPage {
                    offset,
                    limit,
                    from_end,
                };
                self.on_logs(run_id, LogFilter { task, stream }, page, reply);
            }
            Request::Workflows => {
                let _ = reply.send(self.workflows());
            }
            Request::GetSpec { workflow } => {
                let _ = reply.send(self.get_spec(&workflow));
            }
            Request::PutSpec {
                file,
                text,
                base_hash,
            } => {
                let response = self.put_spec(&file, &text, base_hash.as_deref()).await;
                if matches!(response, Response::SpecSaved { .. }) {
                    self.record_action(&caller, "edit", file).await;
                }
                let _ = reply.send(response);
            }
            Request::Retry { run_id } => self.retry(run_id, caller, reply),
            Request::RunDetail { run_id } => self.run_detail(run_id, reply),
            Request::Queue => {
                let _ = reply.send(Response::Queue(self.queue()));
            }
            Request::Agents => {
                let _ = reply.send(self.on_agents_request(None).await);
            }
            Request::Cordon { agent, cordon } => {
                let target = agent.0.clone();
                let response = self.on_agents_request(Some((agent, Some(cordon)))).await;
                if !matches!(response, Response::Error(_)) {
                    let action = if cordon { "cordon" } else { "uncordon" };
                    self.record_action(&caller, action, target).await;
                }
                let _ = reply.send(response);
            }
            Request::Drain { agent } => {
                let target = agent.0.clone();
                let response = self.on_agents_request(Some((agent, None))).await;
                if !matches!(response, Response::Error(_)) {
                    self.record_action(&caller, "drain", target).await;
                }
                let _ = reply.send(response);
            }
            Request::Services { path } => {
                let _ = reply.send(self.on_services_request(path, None).await);
            }
            Request::ServiceHistory { path, limit } => self.read(reply, move |r| {
                r.service_events(path.as_deref(), limit)
                    .map(|events| Response::ServiceEvents { events })
            }),
            Request::ServiceLogs {
                path,
                limit,
                offset,
            } => self.read(reply, move |r| {
                let limit = limit.min(MAX_LOG_PAGE);
                match offset {
                    None => r.service_lines(path.as_deref(), limit),
                    Some(offset) => r.service_lines_from(path.as_deref(), offset, limit),
                }
                .map(|lines| Response::ServiceLines { lines })
            }),
            Request::Actions { limit } => self.read(reply, move |r| {
                r.actions(limit.min(MAX_LOG_PAGE))
                    .map(|actions| Response::Actions { actions })
            }),
            Request::ValidateLoaded => self.validate_loaded(reply),
            Request::ServiceControl { path, action } => {
                let response = self
                    .on_services_request(Some(path.clone()), Some(action))
                    .await;
                if matches!(response, Response::Error(_)) {
                    let _ = reply.send(response);
                    return;
                }
                self.record_action(&caller, action.as_str(), path).await;
                // An operator's stop is a hold that must survive a crash: answer once it is
                // in the file (off the actor, so that a full disk does not stall it).
                self.when_stored(move |stored| {
                    let _ = reply.send(match stored {
                        Ok(()) => response,
                        Err(e) => Response::Error(ApiError::new(
                            ApiErrorKind::Unavailable,
                            format!("the change is in effect but not yet stored: {e}"),
                        )),
                    });
                });
            }
            Request::Monitors {
                filter,
                offset,
                limit,
            } => self.on_monitors(filter, offset, limit, reply),
            Request::Monitor { name } => self.on_monitor_detail(name, reply),
            Request::Incidents { open_only, limit } => self.on_incidents(open_only, limit, reply),
            Request::MonitorControl { name, action } => {
                self.on_monitor_control(name, action, reply)
            }
            Request::Ping { name, ok, message } => self.on_ping(name, ok, message, reply),
            Request::PingUrl { name } => self.on_ping_url(name, reply),
        }
    }

    async fn on_trigger(
        &mut self,
        workflow: &str,
        params: BTreeMap<String, String>,
        caller: Caller,
        reply: oneshot::Sender<Response>,
    ) {
        match self
            .trigger(workflow, params, Origin::Manual(caller.clone()))
            .await
        {
            Ok(run_id) => {
                let target = format!("run {run_id} ({workflow})");
                self.record_action(&caller, "trigger", target).await;
                self.accept_when_stored(run_id, reply)
            }
            Err(e) => {
                let _ = reply.send(Response::Error(e.into()));
            }
        }
        self.dispatch();
    }

    async fn on_cancel(&mut self, run_id: RunId, caller: Caller, reply: oneshot::Sender<Response>) {
        let found = self.runs.contains_key(&run_id);
        if found {
            self.record_action(&caller, "cancel", format!("run {run_id}"))
                .await;
            let why = if caller.0 == Caller::LOCAL {
                "cancelled by user".to_string()
            } else {
                format!("cancelled by {caller}")
            };
            self.cancel_run(run_id, &why).await;
        }
        let _ = reply.send(Response::Cancelled { found });
    }

    fn on_wait_run(&mut self, run_id: RunId, reply: oneshot::Sender<Response>) {
        if let Some(outcome) = self.finished.get(&run_id) {
            // It may have ended a moment ago: its end is told once it is stored.
            let response = Response::RunEnded {
                outcome: Some(outcome.clone()),
            };
            self.answer_when_stored(vec![reply], response);
        } else if self.runs.contains_key(&run_id) {
            let waiters = self.waiters.entry(run_id).or_default();
            // Long polls of peers that went away are dropped, not kept to the run's end.
            waiters.retain(|w| !w.is_closed());
            waiters.push(reply);
        } else {
            // Ended before this principal started (the caller may have waited across a
            // restart), or never existed: the history knows which.
            self.read(reply, move |r| {
                let outcome = r.run(run_id)?.filter(|s| s.state.is_terminal()).map(|s| {
                    crate::principal::RunOutcome {
                        run_id,
                        state: s.state,
                        failed_tasks: s.failed_tasks,
                    }
                });
                Ok(Response::RunEnded { outcome })
            });
        }
    }

    fn on_history(&self, workflow: Option<String>, limit: usize, reply: oneshot::Sender<Response>) {
        self.read(reply, move |r| {
            r.runs(&RunFilter { workflow, limit })
                .map(|runs| Response::Runs { runs })
        });
    }

    fn on_logs(
        &self,
        run_id: RunId,
        filter: LogFilter,
        page: LogPage,
        reply: oneshot::Sender<Response>,
    ) {
        self.read(reply, move |r| {
            if !r.run_exists(run_id)? {
                return Ok(Response::Error(ApiError::new(
                    ApiErrorKind::NotFound,
                    format!("no run {run_id}: `opsconsole history` lists the runs"),
                )));
            }
            let LogPage {
                offset,
                limit,
                from_end,
            } = page;
            let limit = limit.min(MAX_LOG_PAGE);
            if from_end {
                let end = r.log_count(run_id, &filter)?.saturating_sub(offset);
                let mut first = end.saturating_sub(limit);
                loop {
                    let (lines, _) = r.logs_page(run_id, &filter, first, end - first)?;
                    // Long lines may not all fit in one page: then the last ones that do.
                    if lines.len() >= end - first || lines.len() <= 1 {
                        return Ok(Response::Lines {
                            lines,
                            more: first > 0,
                            first,
                        });
                    }
                    first = end - lines.len();
                }
            }
            let (lines, more) = r.logs_page(run_id, &filter, offset, limit)?;
            Ok(Response::Lines {
                lines,
                more,
                first: offset,
            })
        });
    }

    /// Answers `Accepted` only once the run is in the file. The flush rides the store's group
    /// commit; waiting for it off the actor keeps the engine running meanwhile.
    pub(super) fn accept_when_stored(&self, run_id: RunId, reply: oneshot::Sender<Response>) {
        self.when_stored(move |stored| {
            let response = match stored {
                Ok(()) => Response::Accepted { run_id },
                // Truthful: the run exists in memory and will be stored once the disk has
                // room, but it is not durable, so it is not reported as accepted.
                Err(e) => Response::Error(
                    TriggerError::NotStored(format!(
                        "run {run_id} is held in memory but not yet in the history file: {e}"
                    ))
                    .into(),
                ),
            };
            let _ = reply.send(response);
        });
    }

    /// Calls `then`, off the actor, once everything emitted so far is in the file, or with
    /// the store's problem after [`ACCEPT_PATIENCE`].
    pub(super) fn when_stored(&self, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        let store = self.store_tx.clone();
        tokio::spawn(async move { then(store.flush_within(ACCEPT_PATIENCE).await) });
    }

    /// Tells `waiters` that a run ended once its end is in the file, so that a face never
    /// reports an end that a crash could still undo. While the disk is full it tells them
    /// after [`ACCEPT_PATIENCE`] anyway: the end is real, only not yet durable.
    pub(super) fn answer_when_stored(
        &self,
        waiters: Vec<oneshot::Sender<Response>>,
        response: Response,
    ) {
        if waiters.is_empty() {
            return;
        }
        self.when_stored(move |_| {
            for w in waiters {
                let _ = w.send(response.clone());
            }
        });
    }

    /// Runs a query on the store's reader off the actor and answers with its result.
    pub(super) fn read(
        &self,
        reply: oneshot::Sender<Response>,
        query: impl FnOnce(&Reader) -> Result<Response, StoreError> + Send + 'static,
    ) {
        let reader = self.reader.clone();
        let store = self.store_tx.clone();
        tokio::spawn(async move {
            // Read what has happened so far: commit events still in the group-commit window
            // (while the disk is full, read what is there rather than wait for it).
            let _ = store.flush_within(READ_PATIENCE).await;
            let answer = tokio::task::spawn_blocking(move || {
                let guard = reader.lock().unwrap_or_else(|e| e.into_inner());
                query(&guard).unwrap_or_else(|e| {
                    Response::Error(ApiError::new(ApiErrorKind::Internal, e.to_string()))
                })
            })
            .await
            .unwrap_or_else(|e| {
                Response::Error(ApiError::new(ApiErrorKind::Internal, e.to_string()))
            });
            let _ = reply.send(answer);
        });
    }

    fn status(&self) -> StatusReport {
        let now = Utc::now();
        let mut active: HashMap<&str, Vec<RunId>> = HashMap::new();
        for run in self.runs.values() {
            active
                .entry(run.workflow.as_ref())
                .or_default()
                .push(run.id);
        }
        StatusReport {
            pid: std::process::id(),
            started_at: self.started_at,
            slots: self.agents.slots(),
            busy_slots: self.agents.busy(),
            queued_tasks: self.gate.ready.len(),
            spec_problems: self.files.spec_problems.clone(),
            store_problem: self.store_tx.problem(),
            role: None,
            agents_endpoint: None,
            curve: None,
            agent_messages_refused: self.agents.refused(),
            peers_closed: None,
            requests: None,
            workflows: self
                .catalog
                .workflows
                .values()
                .map(|spec| {
                    let mut runs = active.remove(spec.name.as_str()).unwrap_or_default();
                    runs.sort();
                    WorkflowStatus {
                        name: spec.name.clone(),
                        schedule: spec.schedule.as_ref().map(|s| s.expr.clone()),
                        paused: self.scheduler.is_paused(&spec.name),
                        next_fires: self.scheduler.upcoming(&spec.name, now, 3),
                        active_runs: runs,
                    }
                })
                .collect(),
        }
    }

    async fn set_paused(&mut self, workflow: &str, paused: bool) -> Response {
        let Some(spec) = self.catalog.get(workflow) else {
            return Response::Error(ApiError::new(
                ApiErrorKind::NotFound,
                format!("no workflow `{workflow}`"),
            ));
        };
        if spec.schedule.is_none() {
            return Response::Error(ApiError::new(
                ApiErrorKind::InvalidInput,
                format!(
                    "workflow `{workflow}` has no schedule; pause and resume apply to scheduled runs"
                ),
            ));
        }
        let changed = self.scheduler.is_paused(workflow) != paused;
        if changed && let Some(problem) = self.store_tx.problem() {
            return Response::Error(ApiError::new(
                ApiErrorKind::Unavailable,
                format!("cannot record the change, the history file cannot be written: {problem}"),
            ));
        }
        if paused {
            self.scheduler.pause(workflow);
        } else {
            self.scheduler.resume(workflow, Utc::now());
        }
        if changed {
            let at = self.clock.now();
            self.emit(Event::WorkflowPaused {
                workflow: Arc::from(workflow),
                paused,
                at,
            })
            .await;
            // Persist before answering: a paused schedule must stay paused after a crash.
            if let Err(e) = self.store_tx.flush_within(ACCEPT_PATIENCE).await {
                return Response::Error(ApiError::new(
                    ApiErrorKind::Unavailable,
                    format!("the change is in effect but not yet stored: {e}"),
                ));
            }
        }
        Response::Paused {
            workflow: workflow.to_string(),
            paused,
        }
    }
}

impl Engine {
    /// Records that `by` did `action` to `target`, in the history's actions (and live for
    /// faces).
    pub(super) async fn record_action(&mut self, by: &Caller, action: &str, target: String) {
        let record = crate::protocol::history::ActionRecord {
            at: Utc::now(),
            by: by.0.clone(),
            action: action.to_string(),
            target,
        };
        self.emit(Event::Action(record)).await;
    }
}

impl Engine {
    /// Checks the principal's own workflows directory as it loads it, off the actor (reading
    /// files may be slow), and answers with every problem.
    fn validate_loaded(&self, reply: oneshot::Sender<Response>) {
        let Some(dir) = self.files.workflows_dir.clone() else {
            let _ = reply.send(Response::Error(ApiError::new(
                ApiErrorKind::Unavailable,
                "this principal has no workflows directory (its workflows are fixed)",
            )));
            return;
        };
        tokio::spawn(async move {
            let answer = tokio::task::spawn_blocking(move || {
                let (catalog, problems) = crate::spec::load_dir(&dir);
                let files: std::collections::BTreeSet<&std::path::Path> = catalog
                    .workflows
                    .values()
                    .map(|w| w.file.as_path())
                    .chain(catalog.supervisors.values().map(|s| s.file.as_path()))
                    .chain(problems.iter().map(|d| d.file.as_path()))
                    .collect();
                let valid = catalog
                    .workflows
                    .keys()
                    .chain(catalog.supervisors.keys())
                    .cloned()
                    .collect();
                // Absolute, so that a caller elsewhere knows which directory it is.
                let shown = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
                Response::Validated(crate::protocol::api::ValidateReport {
                    dir: shown.display().to_string(),
                    files: files.len(),
                    valid,
                    problems,
                })
            })
            .await
            .unwrap_or_else(|e| {
                Response::Error(ApiError::new(ApiErrorKind::Internal, e.to_string()))
            });
            let _ = reply.send(answer);
        });
    }
}
