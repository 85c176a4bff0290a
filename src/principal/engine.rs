//! The principal's actor: owns every active run and the queue of ready task attempts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::agents::Agents;
use super::run::{RunCtx, Step};
use super::schedule::{OverlapAction, Scheduler, overlap_action};
use super::timers::{self, Deadlines};
use super::{Command, PrincipalConfig, RunOutcome, TriggerError};
use crate::dag::Dag;
use crate::protocol::agent::{AgentEvent, StopPolicy, WorkId};
use crate::protocol::api::{
    ApiError, ApiErrorKind, MAX_LOG_PAGE, Request, Response, StatusReport, WorkflowStatus,
};
use crate::protocol::{AttemptRecord, Event, LogBatch, Outcome, RunId, RunState, TaskState};
use crate::spec::{Catalog, Diagnostic};
use crate::store::query::{LogFilter, Reader, RunFilter};
use crate::store::{Recovered, SharedReader, Store, StoreError, StoreSender, UnfinishedRun};

mod detail;
mod specs;

/// Outcomes of finished runs kept for late `wait` calls.
const FINISHED_MEMORY: usize = 4096;

/// How long a trigger's answer waits for the run to reach the file.
const ACCEPT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a read waits for recent events to reach the file before it reads anyway.
const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest single sleep of the scheduler: fire times are checked against the wall clock at
/// least this often, so a suspend or a clock step delays a fire by at most this much.
const SCHEDULE_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// A task attempt waiting for a slot.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadyAttempt {
    pub run: RunId,
    pub task: usize,
    pub attempt: u32,
    /// Dispatched only once this many emitted events are durable: a task that became ready
    /// because of its parents' results never starts before those results are in the file.
    pub durable_after: u64,
}

/// What started a run.
enum Origin {
    /// A face asked for it.
    Manual,
    /// A schedule fired; `exclusive` runs wait until the workflow has no other active run.
    Schedule { at: DateTime<Utc>, exclusive: bool },
}

/// How long to sleep before looking at the schedule again: until `at`, but never longer than
/// [`SCHEDULE_RECHECK`], because a monotonic sleep does not follow the wall clock across a
/// suspend or a clock step.
fn schedule_wait(at: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    (at - now)
        .to_std()
        .unwrap_or_default()
        .min(SCHEDULE_RECHECK)
}

/// What the engine's deadlines are for.
enum Timer {
    /// A task's backoff has passed.
    RetryDue {
        run: RunId,
        task: usize,
        attempt: u32,
    },
    /// The debounce after [`Internal::FilesChanged`] has passed: rescan.
    ReloadDue,
    /// Time for the scheduler to look at the clock; only the latest `generation` counts.
    Schedule { generation: u64 },
}

/// Messages the engine sends itself: results of work done off the actor.
enum Internal {
    /// Something changed in the workflows directory.
    FilesChanged,
    /// A rescan of the workflows directory finished.
    Loaded(Box<specs::Scan>),
    /// The stored state of a run to retry was read.
    RetryLoaded {
        snapshot: Box<UnfinishedRun>,
        reply: oneshot::Sender<Response>,
    },
    /// The first this-many emitted events are in the file.
    Durable(u64),
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
    /// Task attempts waiting for a slot, FIFO.
    ready: VecDeque<ReadyAttempt>,
    /// Events handed to the store so far, and how many of them are known to be durable.
    emitted: u64,
    durable: u64,
    /// A flush is under way to move `durable` forward.
    syncing: bool,
    /// A one-off principal (`opsconsole run` without a running principal): it fires no
    /// schedules and leaves runs of earlier principals for the next real one.
    one_off: bool,
    /// Every agent work can go to, with its free capacity.
    agents: Agents,
    agent_rx: mpsc::Receiver<AgentEvent>,
    /// How a task is stopped: SIGTERM, then SIGKILL after this long.
    kill_grace: std::time::Duration,
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
    /// Every timer: backoffs, the reload debounce, the scheduler's wake-ups.
    timers: Deadlines<Timer>,
    /// The scheduler wake-up the armed [`Timer::Schedule`] is for, and its generation.
    schedule_armed: Option<DateTime<Utc>>,
    schedule_generation: u64,
    /// Keeps the directory watch alive.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Engine {
    pub fn new(
        catalog: Catalog,
        store: Store,
        recovered: Recovered,
        config: PrincipalConfig,
        (agents, agent_rx): (Agents, mpsc::Receiver<AgentEvent>),
        events: broadcast::Sender<Event>,
    ) -> Self {
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
            timers: Deadlines::default(),
            schedule_armed: None,
            schedule_generation: 0,
            _watcher: watcher,
            // A one-off principal leaves them alone: the next real principal resumes them.
            unfinished: if config.one_off {
                Vec::new()
            } else {
                recovered.unfinished
            },
            interrupting: false,
            scheduler,
            catalog,
            dags: HashMap::new(),
            runs: HashMap::new(),
            held: VecDeque::new(),
            ready: VecDeque::new(),
            emitted: 0,
            durable: 0,
            syncing: false,
            one_off: config.one_off,
            agents,
            agent_rx,
            kill_grace: config.kill_grace,
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
        let mut store_health = self.store_tx.health();
        loop {
            self.arm_schedule();
            tokio::select! {
                // Agent reports first: they free slots and carry output that must not pile up.
                biased;
                Some(ev) = self.agent_rx.recv() => self.on_agent(ev).await,
                Some(m) = self.internal_rx.recv() => self.on_internal(m).await,
                Ok(()) = store_health.changed() => {
                    let problem = store_health.borrow_and_update().clone();
                    let at = self.clock.now();
                    // News for faces; the store cannot record its own failure.
                    let _ = self.events.send(Event::StoreHealth { problem, at });
                }
                () = timers::sleep_until(self.timers.next_deadline()) => self.on_timers().await,
                cmd = commands.recv(), if !self.shutting_down => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => self.begin_shutdown(false).await,
                },
            }
            let idle = self.runs.is_empty() || (self.interrupting && self.agents.is_idle());
            if self.shutting_down && idle {
                break;
            }
        }
        self.finish().await;
    }

    /// Makes sure a [`Timer::Schedule`] is set for the scheduler's next wake-up, whenever that
    /// changed (a fire, a pause, a reload). A monotonic deadline does not follow the wall clock
    /// across a suspend or a clock step, so it is never further than [`SCHEDULE_RECHECK`].
    fn arm_schedule(&mut self) {
        if self.shutting_down || self.one_off {
            return;
        }
        let wakeup = self.scheduler.next_wakeup();
        if wakeup == self.schedule_armed {
            return;
        }
        self.schedule_armed = wakeup;
        self.schedule_generation += 1;
        if let Some(at) = wakeup {
            let due = tokio::time::Instant::now() + schedule_wait(at, Utc::now());
            let generation = self.schedule_generation;
            self.timers.insert(due, Timer::Schedule { generation });
        }
    }

    /// Makes `timer` due after `delay`.
    fn set_timer(&mut self, delay: std::time::Duration, timer: Timer) {
        let now = tokio::time::Instant::now();
        // Delays are bounded by the spec's limits; a sum past the clock's range is "never".
        let at = now
            .checked_add(delay)
            .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 86_400));
        self.timers.insert(at, timer);
    }

    /// Serves every timer that is due.
    async fn on_timers(&mut self) {
        while let Some(timer) = self.timers.pop_due(tokio::time::Instant::now()) {
            match timer {
                Timer::RetryDue { run, task, attempt } => self.retry_due(run, task, attempt).await,
                Timer::ReloadDue => self.reload_due(),
                Timer::Schedule { generation } => {
                    if generation == self.schedule_generation {
                        // Looked at again after this, whether or not anything fired.
                        self.schedule_armed = None;
                        if !self.shutting_down && !self.one_off {
                            self.on_schedule().await;
                        }
                    }
                }
            }
        }
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
        if self.store_tx.send(event.clone()).await.is_ok() {
            self.emitted += 1;
        } else if !self.store_failed {
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
    fn when_stored(&self, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        let store = self.store_tx.clone();
        tokio::spawn(async move { then(store.flush_within(ACCEPT_PATIENCE).await) });
    }

    /// Tells `waiters` that a run ended once its end is in the file, so that a face never
    /// reports an end that a crash could still undo. While the disk is full it tells them
    /// after [`ACCEPT_PATIENCE`] anyway: the end is real, only not yet durable.
    fn answer_when_stored(&self, waiters: Vec<oneshot::Sender<Response>>, response: Response) {
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
    fn read(
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
            queued_tasks: self.ready.len(),
            spec_problems: self.spec_problems.clone(),
            store_problem: self.store_tx.problem(),
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
                        self.agents.stop(&WorkId::Task(run.key(idx)));
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
    /// attempts that were running are recorded as interrupted and run again under a new
    /// attempt number (not using up a retry, but bounded), queued ones are queued again, and
    /// queued runs wait their turn. A run whose resumption fails is failed with the reason.
    async fn resume_runs(&mut self, unfinished: Vec<UnfinishedRun>) {
        use futures::FutureExt;
        for u in unfinished {
            let id = u.run_id;
            let workflow: Arc<str> = Arc::from(u.workflow.as_str());
            let resumed = std::panic::AssertUnwindSafe(self.resume_run(u))
                .catch_unwind()
                .await;
            if let Err(panic) = resumed {
                let why = panic_text(panic.as_ref());
                tracing::error!(run = %id, "run could not be resumed: {why}");
                self.runs.remove(&id);
                self.held.retain(|r| *r != id);
                self.ready.retain(|r| r.run != id);
                let at = self.clock.now();
                self.emit(Event::RunState {
                    run_id: id,
                    workflow,
                    state: RunState::Failed,
                    at,
                    message: Some(format!("could not be resumed after a restart: {why}")),
                })
                .await;
            }
        }
        self.start_held_runs().await;
        self.dispatch();
    }

    async fn resume_run(&mut self, u: UnfinishedRun) {
        if crate::failpoint::hit("resume-panic") {
            panic!("failpoint resume-panic");
        }
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
            return;
        };
        let id = u.run_id;
        let dag = self.dag_for(&spec);
        let mut run = RunCtx::new(id, spec.clone(), dag, u.params);
        // (task, the attempt that may have been running): recorded as interrupted.
        let mut interrupted = Vec::new();
        let mut requeue = Vec::new();
        for (idx, task) in spec.tasks.iter().enumerate() {
            let Some(&(state, attempt)) = u.tasks.get(&task.name) else {
                continue;
            };
            let t = &mut run.tasks[idx];
            t.attempt = attempt;
            t.state = state;
            // Earlier interruptions did not use up retries either.
            t.extra_attempts = u.interrupted.get(&task.name).copied().unwrap_or(0);
            match state {
                // A queued attempt may have started in the last moments before the crash
                // without that being recorded: treat it like a running one, so that no
                // attempt number runs twice.
                TaskState::Running | TaskState::Queued => interrupted.push(idx),
                // Its backoff has passed while nobody was running.
                TaskState::Retrying => requeue.push(idx),
                _ => {}
            }
        }
        let started = u.started;
        self.runs.insert(id, run);
        if !started {
            self.held.push_back(id);
            return;
        }
        self.emit_run_state(
            id,
            RunState::Running,
            Some("resumed after a restart".into()),
        )
        .await;
        for idx in interrupted {
            self.step(id, |run| run.interrupted(idx)).await;
        }
        for idx in requeue {
            let why = Some("queued again after a restart".to_string());
            self.step(id, |run| run.requeue(idx, why)).await;
        }
        self.advance(id).await;
    }

    /// Applies one transition of run `id` and carries out its steps, in order.
    async fn step(&mut self, id: RunId, transition: impl FnOnce(&mut RunCtx) -> Vec<Step>) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        let steps = transition(run);
        for step in steps {
            self.carry_out(id, step).await;
        }
    }

    async fn carry_out(&mut self, id: RunId, step: Step) {
        let Some(run) = self.runs.get(&id) else {
            return;
        };
        let key = |idx: usize, attempt: u32| crate::protocol::AttemptKey {
            attempt,
            ..run.key(idx)
        };
        match step {
            Step::Task {
                idx,
                attempt,
                state,
                message,
            } => {
                let key = key(idx, attempt);
                let at = self.clock.now();
                self.emit(Event::TaskState {
                    key,
                    state,
                    at,
                    message,
                })
                .await;
            }
            Step::Interrupted { idx, attempt } => {
                let key = key(idx, attempt);
                let at = self.clock.now();
                self.emit(Event::Attempt(AttemptRecord {
                    key,
                    started_at: at,
                    ended_at: at,
                    outcome: Outcome::Interrupted,
                }))
                .await;
            }
            Step::Queue {
                idx,
                attempt,
                gated,
            } => self.push_ready(id, idx, attempt, gated),
            Step::RetryAfter {
                idx,
                attempt,
                delay,
            } => self.set_timer(
                delay,
                Timer::RetryDue {
                    run: id,
                    task: idx,
                    attempt,
                },
            ),
            Step::Stop { idx } => self.agents.stop(&WorkId::Task(run.key(idx))),
        }
    }

    /// Queues an attempt for a slot; a `gated` one waits until every event emitted so far is
    /// durable (its parents' results, its own earlier attempt).
    fn push_ready(&mut self, run: RunId, task: usize, attempt: u32, gated: bool) {
        self.ready.push_back(ReadyAttempt {
            run,
            task,
            attempt,
            durable_after: if gated { self.emitted } else { 0 },
        });
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
        if crate::failpoint::hit("engine-panic-on-trigger") {
            panic!("failpoint engine-panic-on-trigger");
        }
        // Refused before anything is created: an accepted run must be a stored run.
        if let Some(problem) = self.store_tx.problem() {
            return Err(TriggerError::NotStored(problem));
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
        self.step(id, |run| run.set_state(idx, state, message))
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
        self.step(id, RunCtx::settle).await;
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
        let waiters = self.waiters.remove(&id).unwrap_or_default();
        self.answer_when_stored(
            waiters,
            Response::RunEnded {
                outcome: Some(outcome.clone()),
            },
        );
        self.finished.insert(id, outcome);
        self.finished_order.push_back(id);
        if self.finished_order.len() > FINISHED_MEMORY
            && let Some(old) = self.finished_order.pop_front()
        {
            self.finished.remove(&old);
        }
        self.start_held_runs().await;
    }

    /// Hands queued attempts to the agent while it has free slots; attempts that wait for
    /// durable events stay queued (in order) until the store confirms them.
    fn dispatch(&mut self) {
        let mut waiting = 0;
        let mut i = 0;
        while self.agents.has_free_slot() && i < self.ready.len() {
            let r = self.ready[i];
            let Some(run) = self.runs.get_mut(&r.run) else {
                self.ready.remove(i);
                continue;
            };
            let task = &mut run.tasks[r.task];
            if task.state != TaskState::Queued || task.attempt != r.attempt || task.on_agent {
                self.ready.remove(i); // cancelled or superseded while it waited
                continue;
            }
            if r.durable_after > self.durable {
                waiting += 1;
                i += 1;
                continue;
            }
            self.ready.remove(i);
            task.on_agent = true;
            let job = run.assignment(r.task, &self.workdir, StopPolicy::term(self.kill_grace));
            if let Err(job) = self.agents.assign(job) {
                // Cannot happen while a slot is free; put it back rather than lose it.
                run.tasks[r.task].on_agent = false;
                self.ready.insert(i, r);
                tracing::error!(id = ?job.id, "no agent took a task despite a free slot");
                break;
            }
        }
        if waiting > 0 {
            self.sync();
        }
    }

    /// Asks the store to commit what has been emitted, then dispatches what waited for it.
    fn sync(&mut self) {
        if self.syncing {
            return;
        }
        self.syncing = true;
        let mark = self.emitted;
        let store = self.store_tx.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            // While the disk is full this waits: dependents wait with it, nothing is lost.
            let done = store.flush().await;
            let _ = tx.send(Internal::Durable(if done.is_ok() { mark } else { 0 }));
        });
    }

    async fn on_agent(&mut self, ev: AgentEvent) {
        match ev {
            AgentEvent::Started {
                id: WorkId::Task(key),
                ..
            } => {
                let current = self
                    .runs
                    .get(&key.run_id)
                    .is_some_and(|r| r.tasks[key.task_idx].attempt == key.attempt);
                if current {
                    self.set_task(key.run_id, key.task_idx, TaskState::Running, None)
                        .await;
                }
            }
            AgentEvent::Output {
                id: WorkId::Task(key),
                stream,
                lines,
            } => {
                let batch = LogBatch { key, stream, lines };
                self.emit(Event::Logs(Arc::new(batch))).await;
            }
            // Services and checks have no engine of their own yet.
            AgentEvent::Started { .. } | AgentEvent::Output { .. } => {}
            AgentEvent::Finished(end) if self.interrupting => {
                // Stopped for a restart: the next principal records and retries this attempt.
                self.agents.finished(&end.id);
            }
            AgentEvent::Finished(end) => {
                if !self.agents.finished(&end.id) {
                    tracing::warn!(id = ?end.id, "an agent reported the end of work it was not given");
                    return;
                }
                let Some(key) = end.id.as_task().cloned() else {
                    return; // services and checks have no engine of their own yet
                };
                let record = AttemptRecord {
                    outcome: end.outcome(),
                    key,
                    started_at: end.started_at,
                    ended_at: end.ended_at,
                };
                let id = record.key.run_id;
                self.on_attempt_finished(record).await;
                self.advance(id).await;
                self.dispatch();
            }
        }
    }

    async fn on_attempt_finished(&mut self, record: AttemptRecord) {
        let key = record.key.clone();
        let outcome = record.outcome.clone();
        self.emit(Event::Attempt(record)).await;
        self.step(key.run_id, |run| run.attempt_finished(&key, &outcome))
            .await;
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::FilesChanged => self.files_changed(),
            Internal::Loaded(scan) => self.apply_scan(*scan).await,
            Internal::RetryLoaded { snapshot, reply } => self.reopen(*snapshot, reply).await,
            Internal::Durable(mark) => {
                self.syncing = false;
                if mark > self.durable {
                    self.durable = mark;
                    self.dispatch();
                }
            }
        }
    }

    async fn retry_due(&mut self, run: RunId, task: usize, attempt: u32) {
        self.step(run, |r| r.retry_due(task, attempt)).await;
        self.dispatch();
    }

    async fn cancel_run(&mut self, id: RunId, why: &str) {
        self.stop_run(id, true, why).await;
        self.finish_if_done(id).await;
    }

    /// Stops a run's work: attempts with an agent are stopped, undecided tasks are marked
    /// cancelled (user cancel) or skipped (fail_fast).
    async fn stop_run(&mut self, id: RunId, user_cancel: bool, why: &str) {
        self.step(id, |run| run.stop(user_cancel, why)).await;
        if user_cancel {
            self.held.retain(|r| *r != id);
        }
    }
}

/// The message of a caught panic.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "an internal error".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_looks_at_the_wall_clock_again_at_least_every_recheck() {
        let now = Utc::now();
        // A fire hours away is not one long monotonic sleep: a suspend or a clock step would
        // make it late by as much.
        assert_eq!(
            schedule_wait(now + chrono::Duration::hours(5), now),
            SCHEDULE_RECHECK
        );
        assert!(SCHEDULE_RECHECK <= std::time::Duration::from_secs(60));
        assert_eq!(
            schedule_wait(now + chrono::Duration::seconds(3), now),
            std::time::Duration::from_secs(3)
        );
        // A fire time already past (a wake after a suspend) is due at once.
        assert_eq!(
            schedule_wait(now - chrono::Duration::hours(1), now),
            std::time::Duration::ZERO
        );
    }
}
