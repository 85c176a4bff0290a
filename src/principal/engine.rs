//! The principal's actor: owns every active run and the queue of ready task attempts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::run::RunCtx;
use super::schedule::{OverlapAction, Scheduler, overlap_action};
use super::{Command, PrincipalConfig, RunOutcome, TriggerError};
use crate::agent::{AgentEvent, LocalAgent};
use crate::dag::{Dag, NodeState};
use crate::protocol::api::{
    ApiError, ApiErrorKind, MAX_LOG_PAGE, Request, Response, StatusReport, WorkflowStatus,
};
use crate::protocol::{AttemptRecord, Event, Outcome, RunId, RunState, TaskState};
use crate::spec::{Catalog, Diagnostic};
use crate::store::query::{LogFilter, Reader, RunFilter};
use crate::store::{Recovered, SharedReader, Store, StoreError, StoreSender, UnfinishedRun};

mod detail;
mod specs;

/// Outcomes of finished runs kept for late `wait` calls.
const FINISHED_MEMORY: usize = 4096;

/// What started a run.
enum Origin {
    /// A face asked for it.
    Manual,
    /// A schedule fired; `exclusive` runs wait until the workflow has no other active run.
    Schedule { at: DateTime<Utc>, exclusive: bool },
}

/// Sleeps until `at` (forever when `None`); a time in the past returns at once.
async fn sleep_until(at: Option<DateTime<Utc>>) {
    match at {
        Some(at) => {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}

/// Messages the engine sends itself: timers and results of work done off the actor.
enum Internal {
    /// A task's backoff has passed.
    RetryDue {
        run: RunId,
        task: usize,
        attempt: u32,
    },
    /// Something changed in the workflows directory.
    FilesChanged,
    /// The debounce after [`Internal::FilesChanged`] has passed: rescan.
    ReloadDue,
    /// A rescan of the workflows directory finished.
    Loaded(Box<specs::Scan>),
    /// The stored state of a run to retry was read.
    RetryLoaded {
        snapshot: Box<UnfinishedRun>,
        reply: oneshot::Sender<Response>,
    },
}

/// Event timestamps that strictly increase, so "the last event" is never ambiguous.
struct EventClock {
    last_us: i64,
}

impl EventClock {
    fn now(&mut self) -> DateTime<Utc> {
        let us = Utc::now().timestamp_micros().max(self.last_us + 1);
        self.last_us = us;
        DateTime::from_timestamp_micros(us).unwrap_or_default()
    }
}

pub(super) struct Engine {
    catalog: Catalog,
    dags: HashMap<String, Arc<Dag>>,
    runs: HashMap<RunId, RunCtx>,
    /// Runs held back by `max_active_runs`, in arrival order.
    held: VecDeque<RunId>,
    /// Task attempts waiting for a slot: (run, task, attempt), FIFO.
    ready: VecDeque<(RunId, usize, u32)>,
    agent: LocalAgent,
    agent_rx: mpsc::Receiver<AgentEvent>,
    free_slots: usize,
    store: Option<Store>,
    store_tx: StoreSender,
    store_failed: bool,
    events: broadcast::Sender<Event>,
    next_run_id: u64,
    waiters: HashMap<RunId, Vec<oneshot::Sender<Response>>>,
    finished: HashMap<RunId, RunOutcome>,
    finished_order: VecDeque<RunId>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    clock: EventClock,
    workdir: PathBuf,
    shutting_down: bool,
    reader: SharedReader,
    started_at: DateTime<Utc>,
    scheduler: Scheduler,
    /// Runs left unfinished by the previous principal, taken over when the loop starts.
    unfinished: Vec<UnfinishedRun>,
    /// Stopping for a restart: processes are stopped, runs stay unfinished.
    interrupting: bool,
    /// Where the catalog comes from, watched for changes.
    workflows_dir: Option<PathBuf>,
    /// Problems of the workflow files as last loaded.
    spec_problems: Vec<Diagnostic>,
    /// Content hash of each workflow file as last loaded, to tell real changes from noise.
    spec_hashes: HashMap<PathBuf, [u8; 32]>,
    /// A rescan is scheduled (debouncing bursts of file events).
    reload_scheduled: bool,
    /// Keeps the directory watch alive.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Engine {
    pub fn new(
        catalog: Catalog,
        store: Store,
        recovered: Recovered,
        config: PrincipalConfig,
        events: broadcast::Sender<Event>,
    ) -> Self {
        let (agent_tx, agent_rx) = mpsc::channel(4096);
        let reaper = if config.watchdog {
            std::env::current_exe()
                .ok()
                .and_then(|exe| crate::agent::reaper::Reaper::start(&exe, config.kill_grace))
        } else {
            None
        };
        let agent = LocalAgent::new(config.slots, config.kill_grace, agent_tx, reaper);
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let mut scheduler = Scheduler::new();
        scheduler.set_workflows(catalog.workflows.values().cloned(), Utc::now());
        for s in &recovered.schedules {
            scheduler.restore(&s.workflow, s.last_fire, s.paused);
        }
        let spec_hashes = config
            .workflows_dir
            .as_deref()
            .map(specs::hash_files)
            .unwrap_or_default();
        let watcher = config
            .workflows_dir
            .as_deref()
            .and_then(|dir| specs::watch(dir, internal_tx.clone()));
        Self {
            workflows_dir: config.workflows_dir,
            spec_problems: config.spec_problems,
            spec_hashes,
            reload_scheduled: false,
            _watcher: watcher,
            unfinished: recovered.unfinished,
            interrupting: false,
            scheduler,
            catalog,
            dags: HashMap::new(),
            runs: HashMap::new(),
            held: VecDeque::new(),
            ready: VecDeque::new(),
            free_slots: agent.slots(),
            agent,
            agent_rx,
            store_tx: store.sender(),
            reader: store.reader(),
            started_at: Utc::now(),
            store: Some(store),
            store_failed: false,
            events,
            next_run_id: recovered.next_run_id.0,
            waiters: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            internal_tx,
            internal_rx,
            clock: EventClock { last_us: 0 },
            workdir: config.workdir,
            shutting_down: false,
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let unfinished = std::mem::take(&mut self.unfinished);
        self.resume_runs(unfinished).await;
        loop {
            tokio::select! {
                // Agent reports first: they free slots and carry output that must not pile up.
                biased;
                Some(ev) = self.agent_rx.recv() => self.on_agent(ev).await,
                Some(m) = self.internal_rx.recv() => self.on_internal(m).await,
                () = sleep_until(self.scheduler.next_wakeup()), if !self.shutting_down => {
                    self.on_schedule().await;
                }
                cmd = commands.recv(), if !self.shutting_down => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => self.begin_shutdown(false).await,
                },
            }
            let idle = self.runs.is_empty()
                || (self.interrupting && self.free_slots == self.agent.slots());
            if self.shutting_down && idle {
                break;
            }
        }
        self.finish().await;
    }

    async fn finish(&mut self) {
        if let Some(store) = self.store.take()
            && let Err(e) = store.close().await
        {
            tracing::error!("closing the history store: {e}");
        }
        for (_, waiters) in self.waiters.drain() {
            for w in waiters {
                let _ = w.send(Response::RunEnded { outcome: None });
            }
        }
    }

    async fn emit(&mut self, event: Event) {
        if self.store_tx.send(event.clone()).await.is_err() && !self.store_failed {
            self.store_failed = true;
            tracing::error!("history store is not accepting events; history will be incomplete");
        }
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Api { request, reply } => self.on_request(request, reply).await,
            Command::Shutdown { interrupt } => self.begin_shutdown(interrupt).await,
        }
    }

    async fn on_request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        match request {
            Request::Trigger { workflow, params } => {
                match self.trigger(&workflow, params, Origin::Manual).await {
                    Ok(run_id) => self.accept_when_stored(run_id, reply),
                    Err(e) => {
                        let _ = reply.send(Response::Error(e.into()));
                    }
                }
                self.dispatch();
            }
            Request::Cancel { run_id } => {
                let found = self.runs.contains_key(&run_id);
                if found {
                    self.cancel_run(run_id, "cancelled by user").await;
                }
                let _ = reply.send(Response::Cancelled { found });
            }
            Request::WaitRun { run_id } => {
                if let Some(outcome) = self.finished.get(&run_id) {
                    let _ = reply.send(Response::RunEnded {
                        outcome: Some(outcome.clone()),
                    });
                } else if self.runs.contains_key(&run_id) {
                    self.waiters.entry(run_id).or_default().push(reply);
                } else {
                    let _ = reply.send(Response::RunEnded { outcome: None });
                }
            }
            Request::Pause { workflow } => {
                let response = self.set_paused(&workflow, true).await;
                let _ = reply.send(response);
            }
            Request::Resume { workflow } => {
                let response = self.set_paused(&workflow, false).await;
                let _ = reply.send(response);
            }
            Request::Status => {
                let _ = reply.send(Response::Status(self.status()));
            }
            Request::History { workflow, limit } => {
                self.read(reply, move |r| {
                    r.runs(&RunFilter { workflow, limit })
                        .map(|runs| Response::Runs { runs })
                });
            }
            Request::Logs {
                run_id,
                task,
                stream,
                offset,
                limit,
                from_end,
            } => {
                self.read(reply, move |r| {
                    if !r.run_exists(run_id)? {
                        return Ok(Response::Error(ApiError::new(
                            ApiErrorKind::NotFound,
                            format!("no run {run_id}: `opsconsole history` lists the runs"),
                        )));
                    }
                    let filter = LogFilter { task, stream };
                    let limit = limit.min(MAX_LOG_PAGE);
                    if from_end {
                        let end = r.log_count(run_id, &filter)?.saturating_sub(offset);
                        let first = end.saturating_sub(limit);
                        let (lines, _) = r.logs_page(run_id, &filter, first, end - first)?;
                        return Ok(Response::Lines {
                            lines,
                            more: first > 0,
                            first,
                        });
                    }
                    let (lines, more) = r.logs_page(run_id, &filter, offset, limit)?;
                    Ok(Response::Lines {
                        lines,
                        more,
                        first: offset,
                    })
                });
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
                let _ = reply.send(response);
            }
            Request::Retry { run_id } => self.retry(run_id, reply),
            Request::RunDetail { run_id } => self.run_detail(run_id, reply),
            Request::Queue => {
                let _ = reply.send(Response::Queue(self.queue()));
            }
        }
    }

    /// Answers `Accepted` only once the run is in the file. The flush rides the store's group
    /// commit; waiting for it off the actor keeps the engine running meanwhile.
    fn accept_when_stored(&self, run_id: RunId, reply: oneshot::Sender<Response>) {
        let store = self.store_tx.clone();
        tokio::spawn(async move {
            let response = match store.flush().await {
                Ok(()) => Response::Accepted { run_id },
                Err(e) => Response::Error(TriggerError::NotStored(e.to_string()).into()),
            };
            let _ = reply.send(response);
        });
    }

    /// Runs a query on the store's reader off the actor and answers with its result.
    fn read(
        &self,
        reply: oneshot::Sender<Response>,
        query: impl FnOnce(&Reader) -> Result<Response, StoreError> + Send + 'static,
    ) {
        let reader = self.reader.clone();
        let store = self.store_tx.clone();
        tokio::spawn(async move {
            // Read what has happened so far: commit events still in the group-commit window.
            let _ = store.flush().await;
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
            slots: self.agent.slots(),
            busy_slots: self.agent.slots() - self.free_slots,
            queued_tasks: self.ready.len(),
            spec_problems: self.spec_problems.clone(),
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
            let _ = self.store_tx.flush().await;
        }
        Response::Paused {
            workflow: workflow.to_string(),
            paused,
        }
    }

    /// Starts the runs whose fire times have come, as each workflow's overlap policy says.
    async fn on_schedule(&mut self) {
        for fire in self.scheduler.due(Utc::now()) {
            let Some(spec) = self.catalog.get(&fire.workflow).cloned() else {
                continue;
            };
            let active: Vec<RunId> = self
                .runs
                .values()
                .filter(|r| r.workflow.as_ref() == spec.name)
                .map(|r| r.id)
                .collect();
            let exclusive = match overlap_action(spec.overlap, !active.is_empty()) {
                OverlapAction::Skip => {
                    tracing::info!(
                        workflow = %spec.name,
                        scheduled_for = %fire.scheduled_for,
                        "skipped a fire time: a run is still active (overlap: skip)"
                    );
                    continue;
                }
                OverlapAction::Start => false,
                OverlapAction::Enqueue => true,
                OverlapAction::CancelActiveThenStart => {
                    for id in active {
                        self.cancel_run(
                            id,
                            "replaced by a newer scheduled run (overlap: cancel_previous)",
                        )
                        .await;
                    }
                    false
                }
            };
            let origin = Origin::Schedule {
                at: fire.scheduled_for,
                exclusive,
            };
            if let Err(e) = self.trigger(&spec.name, BTreeMap::new(), origin).await {
                tracing::error!(workflow = %spec.name, "scheduled run not started: {e}");
            }
        }
        self.dispatch();
    }

    async fn begin_shutdown(&mut self, interrupt: bool) {
        self.shutting_down = true;
        if interrupt {
            // Leave the runs as they are in the store; the next principal resumes them.
            self.interrupting = true;
            for run in self.runs.values() {
                for idx in 0..run.tasks.len() {
                    if run.tasks[idx].on_agent {
                        self.agent.cancel(&run.key(idx));
                    }
                }
            }
            return;
        }
        let ids: Vec<RunId> = self.runs.keys().copied().collect();
        for id in ids {
            self.cancel_run(id, "opsconsole is shutting down").await;
        }
    }

    /// Takes over the runs a previous principal left unfinished: finished tasks stay finished,
    /// tasks that were running lose that attempt ("principal restarted") and are retried if
    /// attempts remain, queued ones are queued again, and queued runs wait their turn.
    async fn resume_runs(&mut self, unfinished: Vec<UnfinishedRun>) {
        for u in unfinished {
            let Some(spec) = self.catalog.get(&u.workflow).cloned() else {
                let at = self.clock.now();
                self.emit(Event::RunState {
                    run_id: u.run_id,
                    workflow: Arc::from(u.workflow.as_str()),
                    state: RunState::Failed,
                    at,
                    message: Some(format!(
                        "workflow `{}` is no longer defined (or invalid), so the run cannot resume",
                        u.workflow
                    )),
                })
                .await;
                continue;
            };
            let id = u.run_id;
            let dag = self.dag_for(&spec);
            let mut run = RunCtx::new(id, spec.clone(), dag, u.params);
            let mut interrupted = Vec::new();
            let mut requeue = Vec::new();
            for (idx, task) in spec.tasks.iter().enumerate() {
                let Some(&(state, attempt)) = u.tasks.get(&task.name) else {
                    continue;
                };
                run.tasks[idx].attempt = attempt;
                run.tasks[idx].state = state;
                run.nodes[idx] = match state {
                    TaskState::Succeeded => NodeState::Succeeded,
                    TaskState::Failed | TaskState::TimedOut => NodeState::Failed,
                    TaskState::Skipped => NodeState::Skipped,
                    TaskState::Cancelled => NodeState::Cancelled,
                    TaskState::Pending => NodeState::Waiting,
                    TaskState::Running => {
                        interrupted.push(idx);
                        NodeState::Started
                    }
                    TaskState::Queued => {
                        // It may have started in the last moments before the crash without
                        // that being recorded: run it under the next number, so that no
                        // attempt number runs twice, without using up a retry.
                        run.tasks[idx].extra_attempts += 1;
                        requeue.push((idx, attempt + 1));
                        NodeState::Started
                    }
                    TaskState::Retrying => {
                        // Its backoff has passed while nobody was running.
                        requeue.push((idx, attempt + 1));
                        NodeState::Started
                    }
                };
            }
            let started = u.started;
            self.runs.insert(id, run);
            if !started {
                self.held.push_back(id);
                continue;
            }
            self.emit_run_state(
                id,
                RunState::Running,
                Some("resumed after a restart".into()),
            )
            .await;
            for idx in interrupted {
                self.interrupted_attempt(id, idx).await;
            }
            for (idx, attempt) in requeue {
                if let Some(run) = self.runs.get_mut(&id) {
                    run.tasks[idx].attempt = attempt;
                }
                self.set_task(
                    id,
                    idx,
                    TaskState::Queued,
                    Some("queued again after a restart".into()),
                )
                .await;
                self.ready.push_back((id, idx, attempt));
            }
            self.advance(id).await;
        }
        self.start_held_runs().await;
        self.dispatch();
    }

    /// Records the attempt a dead principal left running as used, then retries or fails it.
    async fn interrupted_attempt(&mut self, id: RunId, idx: usize) {
        let Some(run) = self.runs.get(&id) else {
            return;
        };
        let key = run.key(idx);
        let at = self.clock.now();
        let record = AttemptRecord {
            key,
            started_at: at,
            ended_at: at,
            outcome: Outcome::Interrupted,
        };
        // Same path as an attempt that failed: retry if attempts remain, else fail for good.
        self.on_attempt_finished(record).await;
    }

    fn dag_for(&mut self, spec: &crate::spec::WorkflowSpec) -> Arc<Dag> {
        self.dags
            .entry(spec.name.clone())
            .or_insert_with(|| {
                // Specs in the catalog were validated acyclic; an error here is a bug upstream.
                Arc::new(Dag::for_workflow(spec).unwrap_or_else(|_| {
                    Dag::new(spec.tasks.len(), &[]).expect("a graph without edges is acyclic")
                }))
            })
            .clone()
    }

    async fn trigger(
        &mut self,
        workflow: &str,
        overrides: BTreeMap<String, String>,
        origin: Origin,
    ) -> Result<RunId, TriggerError> {
        if self.shutting_down {
            return Err(TriggerError::ShuttingDown);
        }
        let Some(spec) = self.catalog.get(workflow).cloned() else {
            let suggestion = self
                .catalog
                .workflows
                .keys()
                .map(|k| (strsim::jaro_winkler(k, workflow), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| k.clone());
            return Err(TriggerError::UnknownWorkflow {
                name: workflow.to_string(),
                suggestion,
            });
        };
        let mut params = spec.params.clone();
        for (k, v) in overrides {
            match params.get_mut(&k) {
                Some(slot) => *slot = v,
                None => {
                    return Err(TriggerError::UnknownParam {
                        workflow: workflow.to_string(),
                        param: k,
                        known: spec.params.keys().cloned().collect(),
                    });
                }
            }
        }
        let id = RunId(self.next_run_id);
        self.next_run_id += 1;
        let dag = self.dag_for(&spec);
        let mut run = RunCtx::new(id, spec, dag, params);
        let (trigger, scheduled_for) = match origin {
            Origin::Manual => ("manual", None),
            Origin::Schedule { at, exclusive } => {
                run.exclusive = exclusive;
                ("schedule", Some(at))
            }
        };
        let at = self.clock.now();
        let workflow_name = run.workflow.clone();
        let created = Event::RunCreated {
            run_id: id,
            workflow: workflow_name.clone(),
            params: run
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            trigger: trigger.to_string(),
            scheduled_for,
            at,
        };
        self.runs.insert(id, run);
        self.emit(created).await;
        self.emit_run_state(id, RunState::Queued, None).await;
        self.held.push_back(id);
        self.start_held_runs().await;
        Ok(id)
    }

    async fn emit_run_state(&mut self, id: RunId, state: RunState, message: Option<String>) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        run.state = state;
        let workflow = run.workflow.clone();
        let at = self.clock.now();
        self.emit(Event::RunState {
            run_id: id,
            workflow,
            state,
            at,
            message,
        })
        .await;
    }

    async fn set_task(&mut self, id: RunId, idx: usize, state: TaskState, message: Option<String>) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        run.tasks[idx].state = state;
        let key = run.key(idx);
        let at = self.clock.now();
        self.emit(Event::TaskState {
            key,
            state,
            at,
            message,
        })
        .await;
    }

    /// Starts held runs whose workflow is below its `max_active_runs`, in arrival order.
    async fn start_held_runs(&mut self) {
        let mut i = 0;
        while i < self.held.len() {
            let id = self.held[i];
            let Some(run) = self.runs.get(&id) else {
                self.held.remove(i);
                continue;
            };
            let limit = run.spec.max_active_runs.map(|m| m as usize);
            let active = self
                .runs
                .values()
                .filter(|r| r.workflow == run.workflow && r.state == RunState::Running)
                .count();
            if limit.is_some_and(|l| active >= l) || (run.exclusive && active > 0) {
                i += 1;
                continue;
            }
            self.held.remove(i);
            self.emit_run_state(id, RunState::Running, None).await;
            self.advance(id).await;
        }
    }

    /// Decides every task whose trigger rule can be decided and finishes the run when done.
    fn advance(&mut self, id: RunId) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        // Boxed: finishing a run starts held runs, which advances them in turn.
        Box::pin(self.advance_inner(id))
    }

    async fn advance_inner(&mut self, id: RunId) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        let settled = run.dag.settle(&mut run.nodes, &run.rules);
        for idx in settled.skipped {
            self.set_task(
                id,
                idx,
                TaskState::Skipped,
                Some("upstream tasks did not meet its trigger rule".into()),
            )
            .await;
        }
        for idx in settled.ready {
            // A retried run's tasks go on numbering from their earlier attempts.
            let Some(attempt) = self.runs.get_mut(&id).map(|run| {
                run.tasks[idx].attempt += 1;
                run.tasks[idx].attempt
            }) else {
                continue;
            };
            self.set_task(id, idx, TaskState::Queued, None).await;
            self.ready.push_back((id, idx, attempt));
        }
        self.finish_if_done(id).await;
    }

    async fn finish_if_done(&mut self, id: RunId) {
        let Some(run) = self.runs.get(&id) else {
            return;
        };
        if run.state != RunState::Running
            && !(run.state == RunState::Queued && run.cancel_requested)
            || !run.is_done()
        {
            return;
        }
        let state = run.final_state();
        let failed_tasks = run.failed_tasks();
        let message = match state {
            RunState::Failed => Some(format!("failed tasks: {}", failed_tasks.join(", "))),
            _ => None,
        };
        self.emit_run_state(id, state, message).await;
        self.runs.remove(&id);
        let outcome = RunOutcome {
            run_id: id,
            state,
            failed_tasks,
        };
        for w in self.waiters.remove(&id).unwrap_or_default() {
            let _ = w.send(Response::RunEnded {
                outcome: Some(outcome.clone()),
            });
        }
        self.finished.insert(id, outcome);
        self.finished_order.push_back(id);
        if self.finished_order.len() > FINISHED_MEMORY
            && let Some(old) = self.finished_order.pop_front()
        {
            self.finished.remove(&old);
        }
        self.start_held_runs().await;
    }

    /// Hands queued attempts to the agent while it has free slots.
    /// Hands queued attempts to the agent while it has free slots.
    fn dispatch(&mut self) {
        while self.free_slots > 0 {
            let Some((id, idx, attempt)) = self.ready.pop_front() else {
                return;
            };
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            let task = &mut run.tasks[idx];
            if task.state != TaskState::Queued || task.attempt != attempt || task.on_agent {
                continue; // cancelled or superseded while it waited
            }
            task.on_agent = true;
            let job = run.assignment(idx, &self.workdir);
            self.free_slots -= 1;
            self.agent.assign(job);
        }
    }

    async fn on_agent(&mut self, ev: AgentEvent) {
        match ev {
            AgentEvent::Started { key, .. } => {
                let current = self
                    .runs
                    .get(&key.run_id)
                    .is_some_and(|r| r.tasks[key.task_idx].attempt == key.attempt);
                if current {
                    self.set_task(key.run_id, key.task_idx, TaskState::Running, None)
                        .await;
                }
            }
            AgentEvent::Logs(batch) => self.emit(Event::Logs(Arc::new(batch))).await,
            AgentEvent::Finished(_) if self.interrupting => {
                // Stopped for a restart: the next principal records and retries this attempt.
                self.free_slots += 1;
            }
            AgentEvent::Finished(record) => {
                self.free_slots += 1;
                let id = record.key.run_id;
                self.on_attempt_finished(record).await;
                self.advance(id).await;
                self.dispatch();
            }
        }
    }

    async fn on_attempt_finished(&mut self, record: AttemptRecord) {
        let key = record.key.clone();
        let state = record.outcome.task_state();
        let describe = record.outcome.describe();
        self.emit(Event::Attempt(record)).await;
        let Some(run) = self.runs.get_mut(&key.run_id) else {
            return;
        };
        let idx = key.task_idx;
        run.tasks[idx].on_agent = false;
        if run.tasks[idx].attempt != key.attempt {
            return;
        }
        let retries = run.spec.tasks[idx].retries;
        let extra = run.tasks[idx].extra_attempts;
        let stopping = run.cancel_requested || run.fail_fast_tripped;
        let message = (state != TaskState::Succeeded).then(|| describe.clone());
        match state {
            TaskState::Failed | TaskState::TimedOut
                if key.attempt <= retries + extra && !stopping =>
            {
                let delay = run.spec.tasks[idx].backoff.delay(key.attempt);
                let note = format!(
                    "attempt {}/{} {describe}; retrying in {}",
                    key.attempt,
                    retries + extra + 1,
                    crate::humantime::format_duration(delay)
                );
                self.set_task(key.run_id, idx, TaskState::Retrying, Some(note))
                    .await;
                let tx = self.internal_tx.clone();
                let next = key.attempt + 1;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Internal::RetryDue {
                        run: key.run_id,
                        task: idx,
                        attempt: next,
                    });
                });
            }
            _ => {
                run.nodes[idx] = match state {
                    TaskState::Succeeded => NodeState::Succeeded,
                    TaskState::Cancelled => NodeState::Cancelled,
                    _ => NodeState::Failed,
                };
                let trip = run.nodes[idx] == NodeState::Failed
                    && run.spec.fail_fast
                    && !run.fail_fast_tripped;
                self.set_task(key.run_id, idx, state, message).await;
                if trip {
                    self.stop_run(key.run_id, false, "fail_fast: another task failed")
                        .await;
                }
            }
        }
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::RetryDue { run, task, attempt } => self.retry_due(run, task, attempt).await,
            Internal::FilesChanged => self.files_changed(),
            Internal::ReloadDue => self.reload_due(),
            Internal::Loaded(scan) => self.apply_scan(*scan).await,
            Internal::RetryLoaded { snapshot, reply } => self.reopen(*snapshot, reply).await,
        }
    }

    async fn retry_due(&mut self, run: RunId, task: usize, attempt: u32) {
        let due = self.runs.get_mut(&run).is_some_and(|r| {
            let t = &mut r.tasks[task];
            if t.state == TaskState::Retrying && t.attempt + 1 == attempt {
                t.attempt = attempt;
                true
            } else {
                false
            }
        });
        if due {
            self.set_task(run, task, TaskState::Queued, None).await;
            self.ready.push_back((run, task, attempt));
            self.dispatch();
        }
    }

    async fn cancel_run(&mut self, id: RunId, why: &str) {
        self.stop_run(id, true, why).await;
        self.finish_if_done(id).await;
    }

    /// Stops a run's work: attempts with an agent are cancelled, undecided tasks are marked
    /// cancelled (user cancel) or skipped (fail_fast).
    async fn stop_run(&mut self, id: RunId, user_cancel: bool, why: &str) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        if user_cancel {
            run.cancel_requested = true;
        } else {
            run.fail_fast_tripped = true;
        }
        let mut marked = Vec::new();
        for idx in 0..run.tasks.len() {
            if run.nodes[idx].is_finished() {
                continue;
            }
            if run.tasks[idx].on_agent {
                self.agent.cancel(&run.key(idx));
                continue;
            }
            let (node, state) = if user_cancel {
                (NodeState::Cancelled, TaskState::Cancelled)
            } else {
                (NodeState::Skipped, TaskState::Skipped)
            };
            run.nodes[idx] = node;
            marked.push((idx, state));
        }
        for (idx, state) in marked {
            self.set_task(id, idx, state, Some(why.to_string())).await;
        }
        if user_cancel {
            self.held.retain(|r| *r != id);
        }
    }
}
