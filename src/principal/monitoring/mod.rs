//! The monitor actor: one task that runs every loaded monitor. It owns the set, one
//! [`Health`] machine, one timer [`Wheel`] and a clone of the shared [`Prober`]; each tick it
//! pops the monitors due (a bounded batch), hands their probes to the prober's workers through
//! a [`CheckQueue`] as fast as they take them (bounded concurrency; a check is never awaited in
//! the loop), judges each result as it comes back,
//! records it in the health machine and carries out the resulting steps: store writes
//! (results in batches), board updates, interventions.
//!
//! At rest a monitor costs its slots in dense arrays indexed by its store id (health 24
//! bytes, wheel 12, table 12, due time 8, a bit while a check runs), its board row and its
//! share of the set: no task, no timer, no string of its own here.
//!
//! Beside local checks: [`Actor::intervene`] (interventions), [`Actor::push_due`] (push
//! monitors), [`Actor::check_workflow`] (workflow monitors) and [`Actor::run_located`]
//! (monitors with `from:` locations, a round per tick judged by quorum, see [`located`]).

pub(crate) mod carry;
pub(crate) mod intervene;
pub(crate) mod located;
pub(crate) mod locations;
pub(crate) mod ping_listen;
pub(crate) mod ping_url;
pub(crate) mod push;
pub(crate) mod recover;
pub(crate) mod stats;
pub(crate) mod table;
pub(crate) mod workflow_check;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use self::stats::Stats;
use self::table::{Ids, Table};
use super::EngineClient;
use crate::agent::check::{CheckQueue, Prober};
use crate::monitor::health::{Health, Policy, PolicyId, Step};
use crate::monitor::judge::{Judgement, judge};
use crate::monitor::maintenance::{self, Window};
use crate::monitor::schedule::{Wheel, first_delay};
use crate::protocol::Event;
use crate::protocol::api::{ApiError, ApiErrorKind};
use crate::protocol::board::{
    BoardId, MonitorBoard, MonitorCommand, MonitorLink, RECENT_INCIDENTS, SharedBoard,
};
use crate::protocol::check::{CheckResult, Probe};
use crate::protocol::monitor::{
    Action, Cause, ConditionSeen, IncidentId, LocationSeen, MonitorAction, MonitorDetail,
    MonitorId, MonitorState, MonitorSummary, Outcome, ResultSeen, StoredResult, Trigger, Verdict,
};
use crate::spec::{MonitorSet, MonitorView};
use crate::store::monitor::MonitorWrite;
use crate::store::{SharedReader, StoreSender};

/// Most monitors started in one tick; the rest are due at the next, at once.
const MAX_BATCH: usize = 4096;
/// Checks queued per worker of the prober at most: enough to keep them busy from one tick to
/// the next at any rate they reach.
const QUEUED_PER_WORKER: usize = 8;
/// Results gathered before they go to the store as one batch: below the store's row group
/// (2,048 rows), so each is committed through the WAL and compressed with the others at a
/// checkpoint (see `store::writer::RESULTS_PER_COMMIT`).
const RESULTS_BATCH: usize = 2000;
/// Results handled in one turn of the loop before other work gets a turn.
const RESULTS_TURN: usize = 1024;
/// The longest the store waits for gathered results.
const RESULTS_EVERY: Duration = Duration::from_secs(1);
/// The loop's tick: checks are started within this of their due time.
const TICK: Duration = Duration::from_millis(100);
/// Monitors whose last full result is kept for `monitor NAME` (the rest are read from the
/// store: verdicts and response times, not the values conditions saw).
const RECENT_RESULTS: usize = 512;
/// Most of a kept result's body and output, in bytes.
const KEPT_BODY: usize = 64 << 10;
/// Raw results shown in a monitor's detail.
const DETAIL_RESULTS: usize = 20;

/// What the actor is started with.
pub(crate) struct Setup {
    /// The monitors of the catalog.
    pub set: Arc<MonitorSet>,
    /// The engine sends the new set here when the specs reload.
    pub reloads: watch::Receiver<Arc<MonitorSet>>,
    /// Where monitor writes go.
    pub store: StoreSender,
    /// Where recovery and detail read from.
    pub reader: SharedReader,
    /// The engine, for interventions and workflow checks.
    pub engine: EngineClient,
    /// Runs the checks (shared clients, bounded concurrency).
    pub prober: Prober,
    /// Where command checks and interventions run.
    pub workdir: PathBuf,
    /// Where state changes are published to faces.
    pub events: broadcast::Sender<Event>,
}

/// The most state changes published as events at once. A burst past it (a target behind
/// thousands of monitors went down) would fill the 1,024-deep event ring and make every face
/// lag and lose run events; faces read the rest from the board, which is always whole.
const MAX_NOTES_PER_CARRY: usize = 256;

/// Worker threads of the monitors' own runtime: a million checks a minute need more than one
/// core's worth at times, and these two cores are all there is.
const RUNTIME_THREADS: usize = 2;
/// How long, once the actor has stopped, its checks and interventions still in flight get to
/// end before they are dropped.
const RUNTIME_GRACE: Duration = Duration::from_secs(1);

/// Starts the monitor actor; the link is what the engine answers monitor requests from.
///
/// The actor, its checks and its interventions run on a runtime of their own, so that a
/// turn of a million monitors never holds a worker that a console's request or the engine
/// waits for; they reach the engine and the store through channels as before.
pub(crate) fn start(setup: Setup) -> MonitorLink {
    let board = MonitorBoard::shared();
    let (link, rx) = MonitorLink::new(board.clone());
    let actor = run(setup, board, rx);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .thread_name("monitors")
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => {
            let handle = runtime.spawn(actor);
            let spawned = std::thread::Builder::new()
                .name("monitors-main".into())
                .spawn(move || {
                    if let Err(e) = runtime.block_on(handle) {
                        tracing::error!("the monitor actor died: {e}");
                    }
                    runtime.shutdown_timeout(RUNTIME_GRACE);
                });
            if let Err(e) = spawned {
                // The runtime went down with the closure: the actor is gone too.
                tracing::error!("monitors cannot run: no thread for their runtime: {e}");
            }
        }
        Err(e) => {
            tracing::warn!("monitors run beside the engine: no runtime of their own: {e}");
            tokio::spawn(actor);
        }
    }
    link
}

/// A check came back: whose, and what it saw.
type Done = (MonitorId, CheckResult);

/// An intervention came back.
struct Intervened {
    monitor: MonitorId,
    incident: Option<IncidentId>,
    no: u32,
    trigger: Trigger,
    action: Action,
    outcome: Outcome,
}

/// Policies shared by monitors made from one template (found again cheaply: a fleet's
/// monitors come one after the other with the same policy).
#[derive(Default)]
struct Policies {
    by_text: HashMap<String, PolicyId>,
    last: Option<(Policy, PolicyId)>,
}

impl Policies {
    fn id(&mut self, health: &mut Health, policy: Policy) -> PolicyId {
        if let Some((p, id)) = &self.last
            && *p == policy
        {
            return *id;
        }
        let key = format!("{policy:?}");
        let id = *self
            .by_text
            .entry(key)
            .or_insert_with(|| health.add_policy(policy.clone()));
        self.last = Some((policy, id));
        id
    }
}

fn policy_of(view: &MonitorView<'_>) -> Policy {
    let t = view.thresholds();
    Policy {
        unhealthy_after: t.unhealthy_after.clamp(1, u16::MAX as u32) as u16,
        healthy_after: t.healthy_after.clamp(1, u16::MAX as u32) as u16,
        on_unhealthy: view.interventions(Trigger::Unhealthy),
        on_degraded: view.interventions(Trigger::Degraded),
        on_recovered: view.interventions(Trigger::Recovered),
    }
}

fn windows_of(view: &MonitorView<'_>) -> Vec<Window> {
    view.maintenance()
        .iter()
        .filter_map(|w| {
            Window::from_cron(
                w.schedule.cron.clone(),
                w.duration,
                w.schedule.timezone.unwrap_or(chrono_tz::UTC),
            )
            .ok()
        })
        .collect()
}

/// A bit per store id.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn get(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn set(&mut self, i: u32, on: bool) {
        let w = i as usize / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        if on {
            self.0[w] |= 1 << (i % 64);
        } else {
            self.0[w] &= !(1 << (i % 64));
        }
    }
}

/// The last full result of the monitors checked most recently, bounded.
#[derive(Default)]
struct Recent {
    map: HashMap<u32, Arc<CheckResult>>,
    order: VecDeque<u32>,
}

impl Recent {
    fn put(&mut self, id: MonitorId, result: CheckResult) {
        let mut kept = result;
        crate::protocol::truncate_within(&mut kept.body, KEPT_BODY);
        crate::protocol::truncate_within(&mut kept.output, KEPT_BODY);
        if self.map.insert(id.0, Arc::new(kept)).is_none() {
            self.order.push_back(id.0);
            if self.order.len() > RECENT_RESULTS
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, id: MonitorId) -> Option<Arc<CheckResult>> {
        self.map.get(&id.0).cloned()
    }
}

/// The actor's state.
struct Actor {
    set: Arc<MonitorSet>,
    table: Table,
    ids: Ids,
    /// Names the store knows that are not loaded (a reload may bring them back).
    retired: HashMap<Box<str>, MonitorId>,
    health: Health,
    policies: Policies,
    wheel: Wheel,
    /// By store id: when the next check is due, in ms since `origin`.
    due_ms: Vec<u64>,
    origin: Instant,
    /// Store ids with a check in flight.
    running: Bits,
    /// Next maintenance changes: when, and whose.
    maintenance: BTreeMap<DateTime<Utc>, Vec<MonitorId>>,
    board: SharedBoard,
    store: StoreSender,
    reader: SharedReader,
    engine: EngineClient,
    prober: Prober,
    /// Where local checks wait for one of the prober's workers.
    checks: CheckQueue<MonitorId>,
    /// Local checks due that the workers have no room for yet, with when each was due (ms
    /// since `origin`), oldest first.
    deferred: VecDeque<(MonitorId, u64)>,
    workdir: PathBuf,
    done_tx: mpsc::Sender<Done>,
    /// State changes go out here.
    events: broadcast::Sender<Event>,
    /// Rounds of `from:` monitors come back here.
    located_tx: mpsc::Sender<located::Round>,
    /// Runs `from:` checks on agents by their labels.
    locations: locations::Locations,
    /// Per `from:` monitor (by store id), what each location saw in its last round.
    seen_at: HashMap<u32, Vec<LocationSeen>>,
    intervened_tx: mpsc::Sender<Intervened>,
    /// Store ids with an intervention under way.
    intervening: HashSet<u32>,
    /// Results not yet handed to the store.
    pending: Vec<(MonitorId, StoredResult)>,
    /// Store writes to send at the end of this turn.
    outbox: Vec<MonitorWrite>,
    steps: Vec<Step>,
    /// Results recorded this turn, for the board at the end of it: row, when, how long, cause.
    checked: Vec<(BoardId, DateTime<Utc>, Duration, Option<Cause>)>,
    recent: Recent,
    stats: Stats,
    /// The dead man's switches of the push monitors.
    pushes: push::Pushes,
}

async fn run(setup: Setup, board: SharedBoard, mut commands: mpsc::Receiver<MonitorCommand>) {
    let reader = setup.reader.clone();
    let stored =
        tokio::task::spawn_blocking(move || recover::read(&reader, RECENT_INCIDENTS)).await;
    let stored = match stored {
        Ok(Ok(s)) => s,
        Ok(Err(why)) => {
            tracing::warn!("monitor states could not be read from the store: {why}");
            recover::Stored::default()
        }
        Err(e) => {
            tracing::warn!("monitor recovery failed: {e}");
            recover::Stored::default()
        }
    };
    let (done_tx, mut done_rx) = mpsc::channel(4096);
    let (intervened_tx, mut intervened_rx) = mpsc::channel(256);
    let (located_tx, mut located_rx) = mpsc::channel(64);
    let mut reloads = setup.reloads;
    reloads.mark_unchanged();
    let mut actor = Actor {
        set: Arc::new(MonitorSet::default()),
        table: Table::default(),
        ids: Ids::default(),
        retired: HashMap::new(),
        health: Health::new(),
        policies: Policies::default(),
        wheel: Wheel::default(),
        due_ms: Vec::new(),
        origin: Instant::now(),
        running: Bits::default(),
        maintenance: BTreeMap::new(),
        board,
        store: setup.store,
        reader: setup.reader,
        locations: locations::Locations::new(setup.engine.clone()),
        engine: setup.engine,
        checks: CheckQueue::new(setup.prober.clone(), done_tx.clone()),
        deferred: VecDeque::new(),
        prober: setup.prober,
        workdir: setup.workdir,
        done_tx,
        located_tx,
        events: setup.events,
        seen_at: HashMap::new(),
        intervened_tx,
        intervening: HashSet::new(),
        pending: Vec::new(),
        outbox: Vec::new(),
        steps: Vec::new(),
        checked: Vec::new(),
        recent: Recent::default(),
        stats: Stats::default(),
        pushes: push::Pushes::new(),
    };
    actor.recover(setup.set, stored, Utc::now());
    actor.send_outbox().await;
    // First checks were spread from when the load began; loading a million monitors and
    // handing their names to the store takes a moment, and the checks due in it would all
    // start late at once. The clock of due times starts now instead (nothing ran yet).
    actor.origin = Instant::now();

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut results_flushed = Instant::now();
    let mut done = Vec::with_capacity(RESULTS_TURN);
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(cmd) => actor.on_command(cmd),
                None => break,
            },
            n = done_rx.recv_many(&mut done, RESULTS_TURN) => {
                if n == 0 { break; }
                actor.on_results(done.drain(..), Utc::now());
            }
            Some(i) = intervened_rx.recv() => actor.on_intervened(i, Utc::now()),
            Some(round) = located_rx.recv() => actor.on_located(round, Utc::now()),
            Ok(()) = reloads.changed() => {
                let set = reloads.borrow_and_update().clone();
                actor.reload(set, Utc::now());
            }
            _ = tick.tick() => {
                let more = actor.tick(Utc::now());
                if more {
                    // Still due: the next turn comes at once, after other work.
                    tick.reset_immediately();
                }
            }
        }
        if actor.pending.len() >= RESULTS_BATCH
            || (!actor.pending.is_empty() && results_flushed.elapsed() >= RESULTS_EVERY)
        {
            actor.flush_results();
            results_flushed = Instant::now();
        }
        actor.send_outbox().await;
    }
    actor.flush_results();
    actor.send_outbox().await;
}

impl Actor {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Loads `set` on start: ids from the store, states and incidents back as they were. The
    /// board is held throughout, so no answer shows the monitors before their states are back.
    fn recover(&mut self, set: Arc<MonitorSet>, stored: recover::Stored, now: DateTime<Utc>) {
        let recovery = stored.recovery;
        let known = recover::known_names(recovery.as_ref());
        self.ids = Ids::after(known.values().copied());
        let shared = self.board.clone();
        let mut board = shared.write().unwrap_or_else(|e| e.into_inner());
        self.load(&mut board, set, known, now);
        if let Some(r) = recovery {
            let steps = self
                .health
                .restore(&r.states, &r.open, r.next_incident, now);
            for incident in stored.closed.into_iter().rev() {
                board.put_incident(incident);
            }
            for (m, _) in &r.states {
                if let (Some(row), Some(s)) = (self.table.board_id(*m), self.health.status(*m)) {
                    board.set_state(row, s.state, s.flapping, false);
                }
            }
            for (m, incident) in &r.open {
                if self.health.incident(*m) == Some(incident.id) {
                    board.put_incident(incident.clone());
                }
            }
            self.steps.extend(steps);
        }
        drop(board);
        self.carry_steps(now);
    }

    /// Takes `set` as the loaded monitors: ids for every name (`known` first), health,
    /// schedule and board rows for the new ones; monitors no longer in it are dropped. The
    /// steps it makes are left for the caller to carry once it lets go of `board`.
    fn load(
        &mut self,
        board: &mut MonitorBoard,
        set: Arc<MonitorSet>,
        known: HashMap<Box<str>, MonitorId>,
        now: DateTime<Utc>,
    ) {
        let assigned = recover::assign(&set, known, &mut self.ids);
        if !assigned.new_names.is_empty() {
            self.outbox.push(MonitorWrite::Names(assigned.new_names));
        }
        self.retired = assigned.retired;
        // Drop what is gone.
        let keep: HashSet<u32> = if self.table.len() > 0 {
            assigned.store_ids.iter().copied().collect()
        } else {
            HashSet::new()
        };
        let gone: Vec<MonitorId> = self
            .table
            .store_ids()
            .filter(|m| !keep.contains(&m.0))
            .collect();
        for m in &gone {
            // Its open incident closes: the board row and the set entry are gone, so the
            // board's incident list and the store are told here rather than through steps.
            if let Some(closed) = self.health.remove(*m, now) {
                if let Step::IncidentClosed { incident, at, .. } = &closed
                    && let Some(open) = board.incident(*incident)
                {
                    let mut open = open.clone();
                    open.closed = Some(*at);
                    if let Some(note) = carry::note(&closed, &open.monitor, now) {
                        let _ = self.events.send(Event::Monitor(note));
                    }
                    board.put_incident(open);
                }
                self.outbox.extend(carry::store_write(&closed));
            }
            self.wheel.cancel(m.0);
            self.running.set(m.0, false);
            self.intervening.remove(&m.0);
            self.pushes.unwatch(*m);
            self.seen_at.remove(&m.0);
        }
        let was_loaded: HashSet<u32> = self.table.store_ids().map(|m| m.0).collect();
        drop(keep);

        if !gone.is_empty() {
            board.retain(|name| set.find_id(name).is_some());
        }
        let mut board_ids = vec![table::NONE; assigned.store_ids.len()];
        self.wheel.reserve(
            assigned
                .store_ids
                .iter()
                .filter(|&&s| s != table::NONE)
                .count(),
        );
        let now_ms = self.now_ms();
        let mut name = String::new();
        for view in set.iter() {
            let sid = view.id();
            let store_id = assigned.store_ids[sid as usize];
            let m = MonitorId(store_id);
            name.clear();
            view.name_into(&mut name);
            board_ids[sid as usize] = board.upsert(&name, view.kind(), &view.tags()).0;
            let policy = self.policies.id(&mut self.health, policy_of(&view));
            let deps: Vec<MonitorId> = view
                .depends_on()
                .iter()
                .filter_map(|d| set.find_id(d))
                .filter_map(|d| assigned.store_ids.get(d as usize).copied())
                .filter(|&s| s != table::NONE)
                .map(MonitorId)
                .collect();
            if let Err(e) = self.health.add(m, policy, &deps, now) {
                tracing::warn!("monitor {name}: {e}");
            }
            if !was_loaded.contains(&store_id) {
                let at = now_ms + first_delay(&name, view.every(), now).as_millis() as u64;
                self.schedule(m, at);
            }
            // A push monitor's clock starts when it is first loaded; a reload keeps it.
            if view.kind() == "push" {
                self.pushes.watch(m, now);
            } else {
                self.pushes.unwatch(m);
            }
            if !view.maintenance().is_empty() {
                let windows = windows_of(&view);
                let inside = maintenance::inside(&windows, now);
                self.health.set_maintenance(m, inside, now, &mut self.steps);
                if let Some(next) = maintenance::next_change(&windows, now) {
                    self.maintenance.entry(next).or_default().push(m);
                }
            }
        }
        self.table = Table::new(assigned.store_ids, &board_ids);
        self.set = set;
        self.stats.loaded = self.table.len() as u64;
    }

    fn schedule(&mut self, m: MonitorId, at_ms: u64) {
        let i = m.0 as usize;
        if self.due_ms.len() <= i {
            self.due_ms.resize(i + 1, 0);
        }
        self.due_ms[i] = at_ms;
        self.wheel.set(m.0, Duration::from_millis(at_ms));
    }

    /// A reload: monitors added are scheduled, removed ones dropped, kept ones keep their
    /// state (they keep their store id, which the health machine and wheel are indexed by).
    fn reload(&mut self, set: Arc<MonitorSet>, now: DateTime<Utc>) {
        if Arc::ptr_eq(&set, &self.set) {
            return;
        }
        let mut known = std::mem::take(&mut self.retired);
        let mut name = String::new();
        for view in self.set.iter() {
            if let Some(m) = self.table.store_id(view.id()) {
                name.clear();
                view.name_into(&mut name);
                known.insert(Box::from(name.as_str()), m);
            }
        }
        // Maintenance timers are recomputed for the new set.
        self.maintenance.clear();
        let shared = self.board.clone();
        let mut board = shared.write().unwrap_or_else(|e| e.into_inner());
        self.load(&mut board, set, known, now);
        drop(board);
        self.carry_steps(now);
        tracing::info!(monitors = self.table.len(), "monitors reloaded");
    }

    /// Starts the checks due; true when more are due than one batch took.
    fn tick(&mut self, now: DateTime<Utc>) -> bool {
        self.maintenance_due(now);
        let now_ms = self.now_ms();
        let mut due = Vec::new();
        self.wheel
            .pop_due(Duration::from_millis(now_ms), MAX_BATCH, &mut due);
        let more = due.len() >= MAX_BATCH;
        let mut located = Vec::new();
        let set = self.set.clone();
        for id in due {
            let m = MonitorId(id);
            let Some(sid) = self.table.set_id(m) else {
                continue; // removed since
            };
            let Some(view) = set.find(sid) else {
                continue;
            };
            let every = view.every().as_millis().max(1) as u64;
            let due_at = self.due_ms.get(id as usize).copied().unwrap_or(now_ms);
            let next = if due_at + every > now_ms {
                due_at + every
            } else {
                now_ms + every
            };
            self.schedule(m, next);
            if self.running.get(id) || self.health.status(m).is_some_and(|s| s.paused) {
                continue;
            }
            match view.kind() {
                "push" => self.push_due(m, now),
                "workflow" => self.check_workflow(m, now),
                _ if !view.from().is_empty() => located.push((m, sid)),
                _ => {
                    // Its lag is counted when a worker can take it (see `feed`).
                    self.running.set(id, true);
                    self.deferred.push_back((m, due_at));
                    continue;
                }
            }
            self.stats.lag(now_ms.saturating_sub(due_at), now);
        }
        self.feed(now);
        self.run_located(located);
        more
    }

    /// Hands the local checks waiting in `deferred` to the prober's workers, as many as keep
    /// them busy until the next tick: the rest wait here, 16 bytes each, rather than in the
    /// workers' queue with their probes built; the wheel is emptied on time either way, so
    /// that push deadlines and workflow checks never wait behind slow targets.
    fn feed(&mut self, now: DateTime<Utc>) {
        let room = (QUEUED_PER_WORKER * self.prober.max_in_flight())
            .saturating_sub(self.checks.waiting())
            .min(self.deferred.len());
        if room == 0 {
            return;
        }
        let now_ms = self.now_ms();
        let set = self.set.clone();
        let mut jobs = Vec::with_capacity(room);
        for (m, due_at) in self.deferred.drain(..room) {
            // Removed, or paused, since it was due: its turn is dropped.
            let view = self.table.set_id(m).and_then(|sid| set.find(sid));
            let paused = self.health.status(m).is_some_and(|s| s.paused);
            match view {
                Some(view) if !paused => {
                    self.stats.lag(now_ms.saturating_sub(due_at), now);
                    jobs.push((m, view.probe(), view.timeout()));
                }
                _ => self.running.set(m.0, false),
            }
        }
        self.checks.push(jobs);
    }

    /// Runs `batch` (store id, set id) of monitors with `from:` locations as one round: each
    /// location's share as one batch on an agent with its labels; each monitor's round comes
    /// back whole to the loop.
    fn run_located(&mut self, batch: Vec<(MonitorId, u32)>) {
        let planned: Vec<located::Planned> = batch
            .into_iter()
            .filter_map(|(m, sid)| {
                let view = self.set.find(sid)?;
                Some(located::Planned {
                    monitor: m,
                    from: view.from().to_vec(),
                    probe: view.probe(),
                    timeout: view.timeout(),
                })
            })
            .collect();
        if planned.is_empty() {
            return;
        }
        for p in &planned {
            self.running.set(p.monitor.0, true);
        }
        let locations = self.locations.clone();
        let tx = self.located_tx.clone();
        tokio::spawn(async move {
            for round in located::run(&locations, planned).await {
                if tx.send(round).await.is_err() {
                    return;
                }
            }
        });
    }

    /// A `from:` monitor's round came back: each location judged, the round by quorum. A
    /// location without a result is unknown, never failed; a round where nothing passed and
    /// too few failed decides nothing (the state stays, the locations show why).
    fn on_located(&mut self, round: located::Round, now: DateTime<Utc>) {
        let m = round.monitor;
        self.running.set(m.0, false);
        let Some(view) = self.table.set_id(m).and_then(|s| self.set.find(s)) else {
            return;
        };
        let judged: Vec<Option<Judgement>> = round
            .at
            .iter()
            .map(|at| {
                at.result
                    .as_ref()
                    .ok()
                    .map(|r| judge(view.conditions(), view.degraded_when(), r))
            })
            .collect();
        let seen = round
            .at
            .iter()
            .zip(&judged)
            .map(|(at, j)| located::seen(at, j.as_ref(), now))
            .collect();
        self.seen_at.insert(m.0, seen);
        let Some(j) = crate::monitor::judge::quorum(&judged, view.quorum()) else {
            return;
        };
        // The result kept is the first location's that agrees with the round.
        let failed = j.verdict == Verdict::Failed;
        let shown = round
            .at
            .iter()
            .zip(&judged)
            .find(|(_, lj)| {
                lj.as_ref()
                    .is_some_and(|lj| (lj.verdict == Verdict::Failed) == failed)
            })
            .and_then(|(at, _)| at.result.as_ref().ok());
        if let Some(result) = shown {
            self.record(m, &j, result.clone(), now);
            self.carry_steps(now);
        }
    }

    /// A push monitor's turn came: a failed result when nothing arrived within every +
    /// grace, and its next look exactly at its deadline.
    fn push_due(&mut self, m: MonitorId, now: DateTime<Utc>) {
        let Some(view) = self.table.set_id(m).and_then(|s| self.set.find(s)) else {
            return;
        };
        let Probe::Push(probe) = view.probe() else {
            return;
        };
        let (failed, next) = self.pushes.due(m, view.every(), probe.grace, now);
        let at = self.now_ms() + next.as_millis() as u64;
        self.schedule(m, at);
        if let Some(result) = failed {
            self.judge_and_record(m, result, now);
            self.carry_steps(now);
        }
    }

    /// A workflow monitor is due: the engine is asked off the loop (it may be waiting on
    /// this actor); the result comes back as any check's.
    fn check_workflow(&mut self, m: MonitorId, now: DateTime<Utc>) {
        let Some(view) = self.table.set_id(m).and_then(|s| self.set.find(s)) else {
            return;
        };
        let Probe::Workflow(probe) = view.probe() else {
            return;
        };
        self.running.set(m.0, true);
        let engine = self.engine.clone();
        let tx = self.done_tx.clone();
        tokio::spawn(async move {
            let result = workflow_check::workflow_result(&engine, &probe, now).await;
            let _ = tx.send((m, result)).await;
        });
    }

    /// `ping NAME`: the push monitor's result now (none while paused: only its clock moves).
    fn on_ping(
        &mut self,
        name: &str,
        ok: bool,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<MonitorSummary, ApiError> {
        let m = self
            .table
            .by_name(&self.set, name)
            .ok_or_else(|| Self::unknown(name))?;
        let result = self.pushes.ping(m, ok, message, now).map_err(|_| {
            ApiError::new(
                ApiErrorKind::InvalidInput,
                format!("monitor `{name}` is not a push monitor: only push monitors take pings"),
            )
        })?;
        if !self.health.status(m).is_some_and(|s| s.paused) {
            self.judge_and_record(m, result, now);
            self.carry_steps(now);
        }
        self.summary(m).ok_or_else(|| Self::unknown(name))
    }

    /// Maintenance windows that opened or closed by `now`.
    fn maintenance_due(&mut self, now: DateTime<Utc>) {
        while let Some(entry) = self.maintenance.first_entry() {
            if *entry.key() > now {
                break;
            }
            for m in entry.remove() {
                let Some(view) = self.table.set_id(m).and_then(|s| self.set.find(s)) else {
                    continue;
                };
                let windows = windows_of(&view);
                let inside = maintenance::inside(&windows, now);
                self.health.set_maintenance(m, inside, now, &mut self.steps);
                if let Some(next) = maintenance::next_change(&windows, now) {
                    self.maintenance.entry(next).or_default().push(m);
                }
            }
        }
        self.carry_steps(now);
    }

    fn on_results(&mut self, done: impl Iterator<Item = Done>, now: DateTime<Utc>) {
        for (monitor, result) in done {
            self.running.set(monitor.0, false);
            let Some(view) = self.table.set_id(monitor).and_then(|s| self.set.find(s)) else {
                continue;
            };
            let j = judge(view.conditions(), view.degraded_when(), &result);
            self.record(monitor, &j, result, now);
        }
        self.carry_steps(now);
    }

    /// Judges `result` against the conditions of `m` and records it.
    fn judge_and_record(&mut self, m: MonitorId, result: CheckResult, now: DateTime<Utc>) {
        let Some(view) = self.table.set_id(m).and_then(|s| self.set.find(s)) else {
            return;
        };
        let j = judge(view.conditions(), view.degraded_when(), &result);
        self.record(m, &j, result, now);
    }

    /// Records one judged result: health, board, store (batched), the detail cache (which
    /// keeps it: moved, not copied, a million times a minute).
    fn record(&mut self, m: MonitorId, j: &Judgement, result: CheckResult, now: DateTime<Utc>) {
        let at = result.started.unwrap_or(now);
        self.health.record(m, j, now, &mut self.steps);
        if let Some(row) = self.table.board_id(m) {
            self.checked
                .push((row, at, result.response_time, j.cause.clone()));
        }
        self.pending.push((
            m,
            StoredResult {
                at,
                response_ms: result.response_time.as_millis().min(u32::MAX as u128) as u32,
                verdict: j.verdict,
            },
        ));
        self.recent.put(m, result);
        self.stats.checks += 1;
    }

    /// Carries out the steps gathered: board now, store writes at the end of the turn,
    /// interventions spawned.
    fn carry_steps(&mut self, now: DateTime<Utc>) {
        if !self.checked.is_empty() {
            // One hold of the board for a turn's results, not one per result.
            let mut board = self.board.write().unwrap_or_else(|e| e.into_inner());
            for (row, at, response, cause) in self.checked.drain(..) {
                board.set_check(row, at, Some(response), cause);
            }
        }
        if self.steps.is_empty() {
            return;
        }
        let steps = std::mem::take(&mut self.steps);
        let mut name = String::new();
        let mut notes = 0;
        for step in &steps {
            if let Some(w) = carry::store_write(step) {
                self.outbox.push(w);
            }
            if let Step::Intervene {
                monitor,
                incident,
                no,
                trigger,
                action,
            } = step
            {
                self.intervening.insert(monitor.0);
                self.intervene(*monitor, *incident, *no, *trigger, action.clone(), now);
                self.show_flags(*monitor);
                continue;
            }
            let m = step_monitor(step);
            let (Some(row), Some(view)) = (
                self.table.board_id(m),
                self.table.set_id(m).and_then(|s| self.set.find(s)),
            ) else {
                // Removed since: its closed incident, still listed, gets the outcome.
                let mut board = self.board.write().unwrap_or_else(|e| e.into_inner());
                carry::show_unloaded(&mut board, step);
                continue;
            };
            name.clear();
            view.name_into(&mut name);
            let intervening = self.intervening.contains(&m.0);
            let mut board = self.board.write().unwrap_or_else(|e| e.into_inner());
            carry::show(&mut board, row, &name, step, intervening);
            drop(board);
            // Nobody listening is not an error. Past the cap the board tells (see
            // MAX_NOTES_PER_CARRY).
            if notes < MAX_NOTES_PER_CARRY
                && self.events.receiver_count() > 0
                && let Some(note) = carry::note(step, &name, now)
            {
                notes += 1;
                let _ = self.events.send(Event::Monitor(note));
            }
        }
        self.steps = steps;
        self.steps.clear();
    }

    /// Carries out one intervention. It must not be awaited in the
    /// loop (the engine may be waiting on the actor): spawn it and send its outcome on
    /// `intervened_tx`; the loop records it through `Health::attempt_done`.
    fn intervene(
        &mut self,
        monitor: MonitorId,
        incident: Option<IncidentId>,
        no: u32,
        trigger: Trigger,
        action: Action,
        _now: DateTime<Utc>,
    ) {
        let tx = self.intervened_tx.clone();
        let mut name = String::new();
        if let Some(view) = self.table.set_id(monitor).and_then(|s| self.set.find(s)) {
            view.name_into(&mut name);
        }
        // The state it entered, and why: the incident's cause, else the last check's.
        let state = match trigger {
            Trigger::Unhealthy => MonitorState::Unhealthy,
            Trigger::Degraded => MonitorState::Degraded,
            Trigger::Recovered => MonitorState::Healthy,
        };
        let cause = {
            let board = self.board.read().unwrap_or_else(|e| e.into_inner());
            incident
                .and_then(|id| board.incident(id).map(|i| i.cause.clone()))
                .or_else(|| {
                    self.table
                        .board_id(monitor)
                        .and_then(|row| board.summary(row))
                        .and_then(|s| s.cause)
                })
        };
        let ctx = intervene::Context {
            monitor: name,
            state,
            cause,
            incident,
            engine: self.engine.clone(),
            prober: self.prober.clone(),
            workdir: self.workdir.clone(),
        };
        // Spawned, never awaited here: a restart or a run waits on the engine, which may be
        // waiting on this actor.
        tokio::spawn(async move {
            let outcome = intervene::carry_out(ctx, action.clone()).await;
            let _ = tx
                .send(Intervened {
                    monitor,
                    incident,
                    no,
                    trigger,
                    action,
                    outcome,
                })
                .await;
        });
    }

    fn on_intervened(&mut self, i: Intervened, now: DateTime<Utc>) {
        self.intervening.remove(&i.monitor.0);
        let step = Health::attempt_done(
            i.monitor, i.incident, i.no, i.trigger, &i.action, i.outcome, now,
        );
        self.steps.push(step);
        self.carry_steps(now);
        self.show_flags(i.monitor);
    }

    /// Shows a monitor's state with its flags as they are now.
    fn show_flags(&mut self, m: MonitorId) {
        let (Some(row), Some(s)) = (self.table.board_id(m), self.health.status(m)) else {
            return;
        };
        let intervening = self.intervening.contains(&m.0);
        let mut board = self.board.write().unwrap_or_else(|e| e.into_inner());
        board.set_state(row, s.state, s.flapping, intervening);
    }

    /// Hands the gathered results to the store (sent at the end of the turn).
    fn flush_results(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.stats.results_stored += batch.len() as u64;
        self.outbox.push(MonitorWrite::Results(batch));
    }

    /// Sends the store writes of this turn (waits only when the writer is far behind).
    async fn send_outbox(&mut self) {
        let now = Utc::now();
        if self.stats.publish(&self.board, now) {
            let f = self.stats.figures(now);
            tracing::info!(
                loaded = f.loaded,
                checks = f.checks,
                results_stored = f.results_stored,
                lag_ms_p50 = f.lag_ms_p50,
                lag_ms_p99 = f.lag_ms_p99,
                "monitors"
            );
        }
        let writes = std::mem::take(&mut self.outbox);
        for w in writes {
            if self.store.send_monitor(w).await.is_err() {
                // The store is closing: the principal is stopping.
                return;
            }
        }
    }

    fn unknown(name: &str) -> ApiError {
        ApiError::new(
            ApiErrorKind::NotFound,
            format!("no monitor named `{}`", crate::protocol::shown_name(name)),
        )
    }

    fn summary(&self, m: MonitorId) -> Option<MonitorSummary> {
        let row = self.table.board_id(m)?;
        self.board
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .summary(row)
    }

    fn on_command(&mut self, cmd: MonitorCommand) {
        let now = Utc::now();
        match cmd {
            MonitorCommand::Control {
                name,
                action,
                reply,
            } => {
                let Some(m) = self.table.by_name(&self.set, &name) else {
                    let _ = reply.send(Err(Self::unknown(&name)));
                    return;
                };
                match action {
                    MonitorAction::Pause | MonitorAction::Resume => {
                        let pause = action == MonitorAction::Pause;
                        self.health.pause(m, pause, now, &mut self.steps);
                        self.carry_steps(now);
                        if !pause {
                            // Resumed: checked at once.
                            self.schedule(m, self.now_ms());
                        }
                        let summary = self.summary(m).ok_or_else(|| Self::unknown(&name));
                        // Durable before it is answered: the write is sent at the end of this
                        // turn, the flush waits for it off the loop.
                        let store = self.store.clone();
                        let writes = std::mem::take(&mut self.outbox);
                        tokio::spawn(async move {
                            for w in writes {
                                let _ = store.send_monitor(w).await;
                            }
                            // Answered only once in the file (a slow writer makes the asker
                            // wait, and its patience says so), never before.
                            let answer = match store.flush().await {
                                Ok(()) => summary,
                                Err(why) => Err(ApiError::new(
                                    ApiErrorKind::Unavailable,
                                    format!("the pause could not be stored: {why}"),
                                )),
                            };
                            let _ = reply.send(answer);
                        });
                    }
                    MonitorAction::Check => {
                        self.schedule(m, self.now_ms());
                        let _ = reply.send(self.summary(m).ok_or_else(|| Self::unknown(&name)));
                    }
                }
            }
            MonitorCommand::Detail { name, reply } => self.detail(name, reply, now),
            MonitorCommand::Ping {
                name,
                ok,
                message,
                reply,
            } => {
                let _ = reply.send(self.on_ping(&name, ok, message.as_deref(), now));
            }
        }
    }

    /// `monitor NAME`: what the actor knows now (the last full result, the results not yet
    /// stored), the rest read from the store off the loop.
    fn detail(
        &mut self,
        name: String,
        reply: oneshot::Sender<Result<MonitorDetail, ApiError>>,
        now: DateTime<Utc>,
    ) {
        let Some(m) = self.table.by_name(&self.set, &name) else {
            let _ = reply.send(Err(Self::unknown(&name)));
            return;
        };
        let Some(summary) = self.summary(m) else {
            let _ = reply.send(Err(Self::unknown(&name)));
            return;
        };
        let view = self.table.set_id(m).and_then(|s| self.set.find(s));
        let conditions = match (view, self.recent.get(m)) {
            (Some(view), Some(result)) => conditions_seen(&view, &result),
            _ => Vec::new(),
        };
        let unsaved: Vec<StoredResult> = self
            .pending
            .iter()
            .filter(|(id, _)| *id == m)
            .map(|(_, r)| *r)
            .collect();
        let incident = summary.incident.and_then(|id| {
            self.board
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .incident(id)
                .cloned()
        });
        let locations = self.seen_at.get(&m.0).cloned().unwrap_or_default();
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let (mut stored, series) = match reader.lock() {
                Ok(r) => (
                    r.monitor_results(m, DETAIL_RESULTS).unwrap_or_default(),
                    r.response_series(
                        m,
                        now - chrono::Duration::hours(1),
                        now,
                        Duration::from_secs(60),
                    )
                    .unwrap_or_default(),
                ),
                Err(_) => (Vec::new(), Vec::new()),
            };
            stored.extend(unsaved);
            let skip = stored.len().saturating_sub(DETAIL_RESULTS);
            let results = stored
                .iter()
                .skip(skip)
                .rev()
                .map(|r| ResultSeen {
                    at: r.at,
                    ok: r.verdict != Verdict::Failed,
                    response: Some(Duration::from_millis(u64::from(r.response_ms))),
                    location: None,
                    message: None,
                })
                .collect();
            let start = now - chrono::Duration::hours(1);
            let mut series_ms = vec![None; 60];
            for p in series {
                let k = (p.at - start).num_minutes();
                if (0..60).contains(&k) {
                    series_ms[k as usize] = Some(p.avg_ms);
                }
            }
            let _ = reply.send(Ok(MonitorDetail {
                summary,
                results,
                conditions,
                series_ms,
                locations,
                incident,
            }));
        });
    }
}

/// Each condition of `view` judged against `result`, with the value it saw.
fn conditions_seen(view: &MonitorView<'_>, result: &CheckResult) -> Vec<ConditionSeen> {
    let mut out = Vec::new();
    for (list, degraded_when) in [(view.conditions(), false), (view.degraded_when(), true)] {
        for (c, j) in list
            .iter()
            .zip(crate::monitor::condition::judge_all(list, result))
        {
            out.push(ConditionSeen {
                condition: c.text.to_string(),
                ok: j.passed,
                seen: j.seen,
                degraded_when,
            });
        }
    }
    out
}

fn step_monitor(step: &Step) -> MonitorId {
    match step {
        Step::Changed { monitor, .. }
        | Step::IncidentOpened { monitor, .. }
        | Step::IncidentClosed { monitor, .. }
        | Step::Attempt { monitor, .. }
        | Step::Intervene { monitor, .. } => *monitor,
    }
}
