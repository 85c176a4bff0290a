//! The principal's actor: owns every active run and the queue of ready task attempts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::agents::{self, Agents};
use super::run::{RunCtx, Step};
use super::schedule::{OverlapAction, Scheduler, overlap_action};
use super::timers::{self, Deadlines};
use super::{Command, PrincipalConfig, RunOutcome, TriggerError};
use crate::dag::Dag;
use crate::protocol::agent::{AgentEvent, AgentId, AgentNews, StopCause, WorkId};
use crate::protocol::api::Response;
use crate::protocol::{AttemptRecord, Event, LogBatch, Outcome, RunId, RunState, TaskState};
use crate::spec::Catalog;
use crate::store::{Recovered, SharedReader, Store, StoreSender, UnfinishedRun};

mod checks;
mod detail;
mod dispatch;
mod monitors;
mod remote;
mod requests;
mod services;
mod specs;

/// The in-process pool's agent id.
const LOCAL: &str = "local";

fn local_id() -> AgentId {
    AgentId(LOCAL.into())
}

/// Outcomes of finished runs kept for late `wait` calls.
const FINISHED_MEMORY: usize = 4096;

/// How long a trigger's answer waits for the run to reach the file.
const ACCEPT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a read waits for recent events to reach the file before it reads anyway.
const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
/// Events a subscriber may be behind before output batches are no longer broadcast (the
/// history still gets them): bounds what the event ring keeps for a slow console.
const LIVE_OUTPUT_BACKLOG: usize = 1024;
/// Longest single sleep of the scheduler: fire times are checked against the wall clock at
/// least this often, so a suspend or a clock step delays a fire by at most this much.
const SCHEDULE_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// What started a run.
enum Origin {
    /// A face asked for it: who, as the transport authenticated them.
    Manual(crate::protocol::api::Caller),
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
    /// Time to send remote agents a heartbeat and to look for expired leases.
    AgentBeat,
    /// Time to make the agents' applied reports durable, so that they can be acknowledged.
    AckDue,
    /// A lease has passed since the start: work of the previous principal that no agent
    /// came back for is run again.
    AdoptionDue,
    /// A timer of the supervision state machine (a restart backoff, a readiness timeout).
    Supervise(crate::supervisor::Timer),
    /// A batch of checks on an agent may be past its deadline.
    ChecksDue,
}

/// Messages the engine sends itself: results of work done off the actor.
enum Internal {
    /// Something changed in the workflows directory.
    FilesChanged,
    /// A rescan of the workflows directory finished.
    Loaded(Box<crate::spec::dir::Scan>),
    /// The stored state of a run to retry was read.
    RetryLoaded {
        snapshot: Box<UnfinishedRun>,
        by: crate::protocol::api::Caller,
        reply: oneshot::Sender<Response>,
    },
    /// The first this-many emitted events are in the file.
    Durable(u64),
    /// A service's readiness check passed.
    ServiceReady { path: String, start_no: u64 },
}

/// The outcomes of the last [`FINISHED_MEMORY`] finished runs.
#[derive(Default)]
struct FinishedRuns {
    outcomes: HashMap<RunId, RunOutcome>,
    order: VecDeque<RunId>,
}

impl FinishedRuns {
    fn insert(&mut self, id: RunId, outcome: RunOutcome) {
        self.outcomes.insert(id, outcome);
        self.order.push_back(id);
        if self.order.len() > FINISHED_MEMORY
            && let Some(old) = self.order.pop_front()
        {
            self.outcomes.remove(&old);
        }
    }

    fn get(&self, id: &RunId) -> Option<&RunOutcome> {
        self.outcomes.get(id)
    }

    fn remove(&mut self, id: RunId) {
        self.outcomes.remove(&id);
        self.order.retain(|r| *r != id);
    }
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
    /// Attempts waiting for a slot, and what of the history is known to be durable.
    gate: dispatch::Gate,
    /// A one-off principal (`opsconsole run` without a running principal): it fires no
    /// schedules and leaves runs of earlier principals for the next real one.
    one_off: bool,
    /// Every agent work can go to, with its free capacity.
    agents: Agents,
    agent_rx: mpsc::Receiver<AgentEvent>,
    /// What remote agents say, from the agents sockets.
    agent_news: mpsc::Receiver<AgentNews>,
    /// A [`Timer::AgentBeat`] is set.
    /// When the armed [`Timer::AgentBeat`] is due; `None` while none is armed.
    beat_due: Option<tokio::time::Instant>,
    /// A [`Timer::AckDue`] is set.
    ack_armed: bool,
    /// Events decided where nothing can wait (the dispatcher); emitted next in the loop.
    notes: Vec<Event>,
    /// The supervision trees of long-running services.
    services: services::Services,
    /// Services an operator held stopped, from the store: they stay stopped at start.
    held_services: Vec<String>,
    /// The last start number of every service path, from the store.
    service_starts: Vec<(String, u64)>,
    /// Starts the previous principal left without an end, from the store.
    interrupted_services: Vec<(String, u64)>,
    /// How a task is stopped: SIGTERM, then SIGKILL after this long.
    kill_grace: std::time::Duration,
    store: Option<Store>,
    store_tx: StoreSender,
    store_failed: bool,
    /// Output batches not broadcast since subscribers fell behind.
    live_output_skipped: u64,
    events: broadcast::Sender<Event>,
    next_run_id: u64,
    waiters: HashMap<RunId, Vec<oneshot::Sender<Response>>>,
    /// How recently finished runs ended, for late `wait` calls.
    finished: FinishedRuns,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    clock: EventClock,
    shutting_down: bool,
    /// Kills every process of the local pool at once (a second signal during a shutdown).
    kill_switch: tokio_util::sync::CancellationToken,
    /// Faces may still send commands (while shutting down they are told so).
    commands_open: bool,
    reader: SharedReader,
    started_at: DateTime<Utc>,
    scheduler: Scheduler,
    /// Runs left unfinished by the previous principal, taken over when the loop starts.
    unfinished: Vec<UnfinishedRun>,
    /// Stopping for a restart: processes are stopped, runs stay unfinished.
    interrupting: bool,
    /// The workflow files the catalog was loaded from.
    files: specs::Files,
    /// Every timer: backoffs, the reload debounce, the scheduler's wake-ups.
    timers: Deadlines<Timer>,
    /// The scheduler wake-up the armed [`Timer::Schedule`] is for, and its generation.
    schedule_armed: Option<DateTime<Utc>>,
    schedule_generation: u64,
    /// Attempts a previous principal dispatched that this one adopted (or waits to adopt):
    /// a stop that this principal did not ask for ends them as interrupted.
    adopted: std::collections::HashSet<WorkId>,
    /// The previous principal recorded its dispatches: a queued attempt without one never
    /// reached an agent and stays queued as it is.
    dispatches_recorded: bool,
    /// Per active run, per (task, attempt, stream): the next line number not yet stored, so
    /// that lines an agent sends again (after a restart) are stored once.
    output_marks: HashMap<RunId, HashMap<(usize, u32, crate::protocol::Stream), u64>>,
    /// The monitors' board and actor (idle until one runs).
    monitors: crate::protocol::board::MonitorLink,
    /// Batches of checks in flight on agents (a monitor's `from:`).
    batches: super::batches::Batches,
    /// Where the in-process pool sends the results of its batches of checks.
    checked_tx: mpsc::Sender<crate::protocol::batch::CheckResults>,
    checked_rx: mpsc::Receiver<crate::protocol::batch::CheckResults>,
    /// Where ping URLs point, once `principal --ping-listen` listens.
    ping_urls: crate::principal::monitoring::ping_url::SharedPingUrls,
}

impl Engine {
    pub fn new(
        catalog: Catalog,
        store: Store,
        recovered: Recovered,
        config: PrincipalConfig,
        (agents, agent_rx, kill_switch): (
            Agents,
            mpsc::Receiver<AgentEvent>,
            tokio_util::sync::CancellationToken,
        ),
        agent_news: mpsc::Receiver<AgentNews>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (checked_tx, checked_rx) = mpsc::channel(64);
        let services = services::Services::new(&catalog);
        let mut scheduler = Scheduler::new();
        scheduler.set_workflows(catalog.workflows.values().cloned(), Utc::now());
        for s in &recovered.schedules {
            scheduler.restore(&s.workflow, s.last_fire, s.paused);
        }
        let spec_hashes = config
            .workflows_dir
            .as_deref()
            .map(crate::spec::dir::hash_files)
            .unwrap_or_default();
        let watcher = config.workflows_dir.as_deref().and_then(|dir| {
            let tx = internal_tx.clone();
            crate::spec::dir::watch(dir, move || {
                let _ = tx.send(Internal::FilesChanged);
            })
        });
        Self {
            files: specs::Files {
                workflows_dir: config.workflows_dir,
                spec_problems: config.spec_problems,
                spec_hashes,
                reload_scheduled: false,
                _watcher: watcher,
                monitor_reloads: None,
            },
            timers: Deadlines::default(),
            schedule_armed: None,
            schedule_generation: 0,
            adopted: std::collections::HashSet::new(),
            dispatches_recorded: recovered.dispatches_recorded,
            output_marks: HashMap::new(),
            monitors: crate::protocol::board::MonitorLink::idle(),
            batches: super::batches::Batches::default(),
            checked_tx,
            checked_rx,
            ping_urls: Default::default(),
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
            gate: dispatch::Gate::default(),
            one_off: config.one_off,
            agents,
            agent_rx,
            agent_news,
            beat_due: None,
            ack_armed: false,
            services,
            held_services: if config.one_off {
                Vec::new()
            } else {
                recovered.held_services.clone()
            },
            service_starts: recovered.service_starts.clone(),
            interrupted_services: if config.one_off {
                Vec::new()
            } else {
                recovered.interrupted_services.clone()
            },
            notes: Vec::new(),
            kill_grace: config.kill_grace,
            store_tx: store.sender(),
            reader: store.reader(),
            started_at: Utc::now(),
            store: Some(store),
            store_failed: false,
            live_output_skipped: 0,
            events,
            next_run_id: recovered.next_run_id.0,
            waiters: HashMap::new(),
            finished: FinishedRuns::default(),
            internal_tx,
            internal_rx,
            clock: EventClock { last_us: 0 },
            shutting_down: false,
            kill_switch,
            commands_open: true,
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let unfinished = std::mem::take(&mut self.unfinished);
        self.resume_runs(unfinished).await;
        if self.agents.adopting() {
            let lease = self.agents.lease();
            tracing::info!(
                "waiting up to {lease:?} for the agents that hold dispatched work to come back"
            );
            self.set_timer(lease, Timer::AdoptionDue);
        }
        self.end_turn().await;
        if !self.one_off {
            let held = std::mem::take(&mut self.held_services);
            let starts = std::mem::take(&mut self.service_starts);
            self.services.machine.continue_starts(starts);
            let interrupted = std::mem::take(&mut self.interrupted_services);
            self.record_interrupted(interrupted).await;
            self.start_services(held).await;
        }
        let mut store_health = self.store_tx.health();
        loop {
            self.arm_schedule();
            // Not biased: a service flooding its output keeps the agents' channel full, and
            // requests, timers and the store's news must still get their turns. Output
            // cannot pile up meanwhile: the channel is bounded and the pipes wait.
            tokio::select! {
                Some(ev) = self.agent_rx.recv() => self.on_agent(&AgentId(LOCAL.into()), ev).await,
                Some(news) = self.agent_news.recv() => self.on_agent_news(news).await,
                Some(results) = self.checked_rx.recv() => self.on_checked(&local_id(), results),
                Some(m) = self.internal_rx.recv() => self.on_internal(m).await,
                Ok(()) = store_health.changed() => {
                    let problem = store_health.borrow_and_update().clone();
                    let at = self.clock.now();
                    // News for faces; the store cannot record its own failure.
                    let _ = self.events.send(Event::StoreHealth { problem, at });
                    // A store that cannot write lets services restart within their
                    // reserved numbers.
                    self.spawn_gated(false).await;
                }
                () = timers::sleep_until(self.timers.next_deadline()) => self.on_timers().await,
                // Served while shutting down too: faces are told so at once, instead of
                // waiting for an answer that comes only after every service has stopped.
                cmd = commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        self.commands_open = false;
                        if !self.shutting_down {
                            self.begin_shutdown(false).await;
                        }
                    }
                },
            }
            self.end_turn().await;
            let idle = (self.runs.is_empty() || (self.interrupting && self.agents.is_idle()))
                && self.services.machine.is_idle();
            if self.shutting_down && idle {
                break;
            }
        }
        self.finish().await;
    }

    /// What every turn of the loop ends with: the events decided where nothing could wait
    /// are emitted, and the turn's dispatches wait for one commit.
    async fn end_turn(&mut self) {
        loop {
            for note in std::mem::take(&mut self.notes) {
                self.emit(note).await;
            }
            // Ending a held assignment that was stopped may dispatch more: sealed too.
            self.seal_dispatches().await;
            if self.notes.is_empty() {
                break;
            }
        }
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
                Timer::AgentBeat => self.agent_beat().await,
                Timer::Supervise(timer) => self.service_timer(timer).await,
                Timer::AckDue => {
                    self.ack_armed = false;
                    self.sync();
                }
                Timer::AdoptionDue => self.adoption_due().await,
                Timer::ChecksDue => self.checks_due(),
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
        self.batches.end_all(super::batches::LocationError::Stopped);
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
            self.gate.emitted += 1;
        } else if !self.store_failed {
            self.store_failed = true;
            tracing::error!("history store is not accepting events; history will be incomplete");
        }
        if matches!(event, Event::Dispatched(_)) {
            return; // the history's record; faces see the agents list
        }
        // Output is not news for a subscriber this far behind (the history has it): the ring
        // would keep every batch for it, and a flood would keep the ring full of them.
        let output = matches!(event, Event::Logs(_) | Event::ServiceLogs(_));
        if output && self.events.len() >= LIVE_OUTPUT_BACKLOG {
            self.live_output_skipped += 1;
            return;
        }
        if self.live_output_skipped > 0 && !output {
            tracing::debug!(
                "{} output batch(es) not sent live to a subscriber that fell behind",
                self.live_output_skipped
            );
            self.live_output_skipped = 0;
        }
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Api { reply, .. } if self.shutting_down => {
                let _ = reply.send(Response::Error(crate::protocol::api::ApiError::new(
                    crate::protocol::api::ApiErrorKind::Unavailable,
                    "the principal is shutting down: it is stopping its services and tasks \
                     (a second Ctrl-C or SIGTERM to it kills what is left at once); try again \
                     once it has stopped, or start a new one with `opsconsole principal`",
                )));
            }
            Command::Api {
                request,
                caller,
                reply,
            } => self.on_request(request, caller, reply).await,
            // A second shutdown request changes nothing: one is under way.
            Command::Shutdown { .. } if self.shutting_down => {}
            Command::Shutdown { interrupt } => self.begin_shutdown(interrupt).await,
            Command::KillNow if self.shutting_down => {
                tracing::warn!("second signal: killing every process that is left at once");
                self.kill_switch.cancel();
            }
            // Only a shutdown's second signal kills: the switch stays thrown.
            Command::KillNow => {}
            Command::RunChecks(ask) if self.shutting_down => {
                let _ = ask.reply.send(Err(super::batches::LocationError::Stopped));
            }
            Command::RunChecks(ask) => self.run_checks(ask),
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
        self.stop_services().await;
        if interrupt {
            // Leave the runs as they are in the store; the next principal resumes them.
            self.interrupting = true;
            // Work of the previous principal no agent came back for stays for the next one.
            let _ = self.agents.unclaimed();
            let mut on_agents = Vec::new();
            for run in self.runs.values() {
                for idx in 0..run.tasks.len() {
                    if run.tasks[idx].on_agent {
                        on_agents.push(WorkId::Task(run.key(idx)));
                    }
                }
            }
            for work in on_agents {
                self.stop_work(work);
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
                self.gate.ready.retain(|r| r.run != id);
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
        // (task, agent, instance): dispatched to a remote agent that may still hold it.
        let mut adopt = Vec::new();
        // Queued attempts that never reached an agent: they wait for a slot as they are.
        let mut still_queued = Vec::new();
        for (idx, task) in spec.tasks.iter().enumerate() {
            let Some(&(state, attempt)) = u.tasks.get(&task.name) else {
                continue;
            };
            let t = &mut run.tasks[idx];
            t.attempt = attempt;
            // Earlier interruptions did not use up retries either.
            t.extra_attempts = u.interrupted.get(&task.name).copied().unwrap_or(0);
            run.restore(idx, state);
            let dispatched = u
                .dispatched
                .get(&task.name)
                .filter(|d| d.attempt == attempt && attempt > 0);
            match state {
                TaskState::Running | TaskState::Queued => match dispatched {
                    // A remote agent may still run it, or hold its result: it has a lease to
                    // come back and say so.
                    Some(d) if d.agent.0 != LOCAL => {
                        adopt.push((idx, d.agent.clone(), d.instance));
                    }
                    // Every dispatch is durable before its agent is told: without one, the
                    // attempt never left the queue.
                    None if state == TaskState::Queued && self.dispatches_recorded => {
                        still_queued.push(idx);
                    }
                    // Ran in the previous principal's own pool, which died with it; or a
                    // file from before dispatches were recorded, where a queued attempt may
                    // have started unrecorded: run again under a new number, so that no
                    // attempt number runs twice.
                    _ => interrupted.push(idx),
                },
                // Its backoff has passed while nobody was running.
                TaskState::Retrying => requeue.push(idx),
                _ => {}
            }
        }
        let started = u.started;
        for &(idx, _, _) in &adopt {
            run.tasks[idx].on_agent = true;
        }
        let marks = self.output_marks.entry(id).or_default();
        for m in &u.output_marks {
            if let Some(idx) = spec.tasks.iter().position(|t| t.name == m.task) {
                marks.insert((idx, m.attempt, m.stream), m.last_seq.saturating_add(1));
            }
        }
        let keys: Vec<(usize, crate::protocol::AttemptKey)> = adopt
            .iter()
            .map(|&(idx, _, _)| (idx, run.key(idx)))
            .collect();
        self.runs.insert(id, run);
        if !started {
            self.held.push_back(id);
            return;
        }
        for ((_, agent, instance), (_, key)) in adopt.into_iter().zip(keys) {
            let work = WorkId::Task(key);
            self.adopted.insert(work.clone());
            self.agents.expect(work, agent, instance);
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
        for idx in still_queued {
            if let Some(attempt) = self.runs.get(&id).map(|r| r.tasks[idx].attempt) {
                self.push_ready(id, idx, attempt, true);
            }
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
            Step::Stop { idx } => {
                let work = WorkId::Task(run.key(idx));
                self.stop_work(work);
            }
        }
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
        let (trigger, by, scheduled_for) = match origin {
            Origin::Manual(by) => ("manual", by.0, None),
            Origin::Schedule { at, exclusive } => {
                run.exclusive = exclusive;
                (
                    "schedule",
                    crate::protocol::api::Caller::SCHEDULE.to_string(),
                    Some(at),
                )
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
            triggered_by: Some(by),
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
        self.output_marks.remove(&id);
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
        self.start_held_runs().await;
    }

    /// A report of agent `from` (the in-process pool or a remote agent) about its work.
    async fn on_agent(&mut self, from: &AgentId, ev: AgentEvent) {
        let service = match &ev {
            AgentEvent::Started { id, .. } | AgentEvent::Output { id, .. } => {
                matches!(id, WorkId::Service(_))
            }
            AgentEvent::Finished(end) => matches!(end.id, WorkId::Service(_)),
        };
        if service {
            return self.on_service_event(ev).await;
        }
        match ev {
            AgentEvent::Started {
                id: WorkId::Task(key),
                ..
            } => {
                let current = self.runs.get(&key.run_id).is_some_and(|r| {
                    r.tasks
                        .get(key.task_idx)
                        .is_some_and(|t| t.attempt == key.attempt && t.on_agent)
                });
                if current {
                    self.set_task(key.run_id, key.task_idx, TaskState::Running, None)
                        .await;
                }
            }
            AgentEvent::Output {
                id: WorkId::Task(key),
                stream,
                mut lines,
                charge,
            } => {
                // Lines are numbered per attempt; an agent sends again what was not
                // acknowledged, and after a restart that includes lines already stored.
                if self.runs.contains_key(&key.run_id) {
                    let next = self
                        .output_marks
                        .entry(key.run_id)
                        .or_default()
                        .entry((key.task_idx, key.attempt, stream))
                        .or_insert(0);
                    lines.retain(|l| l.seq >= *next);
                    match lines.last() {
                        Some(last) => *next = last.seq.saturating_add(1),
                        None => {
                            charge.release();
                            return;
                        }
                    }
                }
                // Output of an attempt given up on is still what it printed: kept.
                let batch = LogBatch {
                    key,
                    stream,
                    lines,
                    charge,
                };
                self.emit(Event::Logs(Arc::new(batch))).await;
            }
            // Services and checks have no engine of their own yet.
            AgentEvent::Started { .. } | AgentEvent::Output { .. } => {}
            AgentEvent::Finished(end) if self.interrupting => {
                // Stopped for a restart: the next principal records and retries this attempt.
                self.agents.finished(from, &end.id);
                self.release_drained().await;
            }
            AgentEvent::Finished(end) => {
                if self.agents.finished(from, &end.id) == agents::End::Late {
                    self.late_result(from, &end).await;
                    self.dispatch();
                    return;
                }
                let Some(key) = end.id.as_task().cloned() else {
                    return; // services and checks have no engine of their own yet
                };
                if self.adopted.remove(&end.id) && end.stopped == Some(StopCause::Requested) {
                    // The previous principal stopped it for its restart: interrupted, not
                    // cancelled (this principal asked for no stop).
                    self.interrupt_attempt(&key).await;
                    self.release_drained().await;
                    self.dispatch();
                    return;
                }
                let outcome = match end.stopped {
                    Some(StopCause::AgentStopped) => Outcome::Lost(from.to_string()),
                    _ => end.outcome(),
                };
                let record = AttemptRecord {
                    outcome,
                    key,
                    started_at: end.started_at,
                    ended_at: end.ended_at,
                };
                let id = record.key.run_id;
                self.on_attempt_finished(record).await;
                self.advance(id).await;
                self.release_drained().await;
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
            Internal::RetryLoaded {
                snapshot,
                by,
                reply,
            } => self.reopen(*snapshot, by, reply).await,
            Internal::ServiceReady { path, start_no } => self.service_ready(path, start_no).await,
            Internal::Durable(mark) => {
                self.gate.syncing = false;
                if mark > self.gate.durable {
                    self.gate.durable = mark;
                    self.agents.stored(mark);
                    self.release_held().await;
                    self.dispatch();
                }
                self.spawn_gated(mark > 0).await;
                if self.agents.awaiting_store() {
                    self.ack_soon();
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
