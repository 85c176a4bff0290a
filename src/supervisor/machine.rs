//! [`Supervision`]: facts and operator commands in, [`Step`]s out.
//!
//! Every supervisor works through a [`Plan`] (stop a set right to left, then start a set
//! left to right); crashes add to it according to the strategy. Changes that concern another
//! node are queued as [`Work`] and handled after the current one, so no handler re-enters
//! another and the order of the steps is the order of the causes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::plan::{Group, Halt, Plan};
use super::step::{ExitStatus, Lifecycle, LifecycleEvent, Step, StopReason, Timer, TimerKind};
use super::tree::{FOREST, Forest, Kind, NodeId};
use super::view::{NodeKind, NodeState, NodeView};
use super::{At, SupervisionError};
use crate::spec::{
    AutoShutdown, ChildKind, ChildSpec, Restart, ServiceSpec, Strategy, SupervisorSpec,
};

/// Something to handle after the current change.
enum Work {
    /// Let this supervisor carry its plan on.
    Advance(NodeId),
    /// This child went down on its own: its supervisor applies its strategy.
    Down(NodeId, Down),
}

/// How a child went down on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Down {
    /// A service's process exited.
    Exit(ExitStatus),
    /// A service was not ready in time (and has been stopped).
    ReadyTimeout,
    /// A supervisor gave up (abnormal).
    GaveUp,
    /// A supervisor shut itself down (normal).
    AutoShutdown,
}

impl Down {
    fn is_normal(&self) -> bool {
        match self {
            Down::Exit(status) => status.is_normal(),
            Down::AutoShutdown => true,
            Down::ReadyTimeout | Down::GaveUp => false,
        }
    }
}

/// The supervision state of every root supervisor and its tree.
pub struct Supervision {
    forest: Forest,
    /// A number in `[0, 1)` per jittered backoff.
    random: Box<dyn FnMut() -> f64 + Send>,
    work: VecDeque<Work>,
    steps: Vec<Step>,
    /// The time of the fact being handled.
    now: At,
    /// Between `start_all` and `shutdown`: roots a reload adds are started.
    started: bool,
    /// The last start number of every path ever started (by an earlier principal too): a
    /// run is never numbered twice, not after a restart of the principal nor after a reload
    /// removed a child and brought it back.
    last_start: HashMap<String, u64>,
}

impl std::fmt::Debug for Supervision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervision")
            .field("nodes", &self.forest.nodes.len())
            .finish_non_exhaustive()
    }
}

type Outcome = Result<Vec<Step>, SupervisionError>;

impl Supervision {
    /// Every supervisor of `roots` and its tree, all stopped; `random` draws the jitter of
    /// backoffs that ask for it (e.g. `fastrand::f64`; a constant in tests).
    pub fn new(
        roots: &[Arc<SupervisorSpec>],
        random: impl FnMut() -> f64 + Send + 'static,
    ) -> Self {
        Self {
            forest: Forest::new(roots),
            random: Box::new(random),
            work: VecDeque::new(),
            steps: Vec::new(),
            now: At::default(),
            started: false,
            last_start: HashMap::new(),
        }
    }

    /// Continues the start numbers an earlier principal used (`(path, last start)`).
    pub fn continue_starts(&mut self, starts: impl IntoIterator<Item = (String, u64)>) {
        for (path, n) in starts {
            let last = self.last_start.entry(path).or_default();
            *last = (*last).max(n);
        }
    }

    // ---- facts -------------------------------------------------------------------------

    /// Starts every root (each independently; inside a tree children start in order).
    pub fn start_all(&mut self, now: At) -> Vec<Step> {
        self.now = now;
        self.started = true;
        let roots = self.forest.children(FOREST);
        if self.forest.nodes[FOREST].state == NodeState::Stopped {
            self.forest.nodes[FOREST].state = NodeState::Running;
        }
        for &r in &roots {
            self.forest.nodes[r].done = false;
        }
        let indices: Vec<usize> = (0..roots.len()).collect();
        self.merge(FOREST, [], indices, StopReason::Strategy);
        self.work.push_back(Work::Advance(FOREST));
        self.drain()
    }

    /// Stops every tree at once (roots have no order between them, so a shutdown takes the
    /// longest tree's stop, not the sum); inside a tree each child after the ones to its right.
    pub fn shutdown(&mut self, now: At) -> Vec<Step> {
        self.now = now;
        self.started = false;
        self.halt(FOREST, Halt::Requested(StopReason::Shutdown));
        self.drain()
    }

    /// True once nothing runs and nothing is on its way (e.g. a shutdown is complete).
    pub fn is_idle(&self) -> bool {
        self.forest
            .nodes
            .iter()
            .skip(1)
            .all(|n| matches!(n.state, NodeState::Stopped | NodeState::Failed))
    }

    /// The executor spawned run `start_no` of the service at `path` as process `pid` (if it
    /// could tell).
    pub fn child_started(
        &mut self,
        path: &str,
        start_no: u64,
        pid: Option<u32>,
        now: At,
    ) -> Outcome {
        self.now = now;
        let id = self.service_id(path)?;
        let n = &mut self.forest.nodes[id];
        if n.start_no != start_no || !matches!(n.state, NodeState::Starting | NodeState::Stopping) {
            return Ok(Vec::new());
        }
        n.pid = pid;
        let starting = n.state == NodeState::Starting;
        self.record(id, LifecycleEvent::Started { pid });
        if starting && self.service_spec(id).is_some_and(|s| s.ready.is_none()) {
            self.become_ready(id);
        }
        Ok(self.drain())
    }

    /// Run `start_no` of the service at `path` passed its readiness check.
    pub fn child_ready(&mut self, path: &str, start_no: u64, now: At) -> Outcome {
        self.now = now;
        let id = self.service_id(path)?;
        let n = &self.forest.nodes[id];
        if n.start_no == start_no && n.state == NodeState::Starting {
            self.become_ready(id);
        }
        Ok(self.drain())
    }

    /// Run `start_no` of the service at `path` ended with `status` (or could not be spawned).
    /// Whether the state machine asked for it is known here, from the `Stop` it issued.
    pub fn child_exited(
        &mut self,
        path: &str,
        start_no: u64,
        status: ExitStatus,
        now: At,
    ) -> Outcome {
        self.now = now;
        let id = self.service_id(path)?;
        let n = &mut self.forest.nodes[id];
        if n.start_no != start_no || !n.state.is_active() {
            return Ok(Vec::new());
        }
        let requested = n.state == NodeState::Stopping;
        n.pid = None;
        n.last_exit = Some(status.clone());
        n.state = NodeState::Stopped;
        let reason = n.stop_reason.take();
        let parent = n.parent.unwrap_or(FOREST);
        self.record(
            id,
            LifecycleEvent::Exited {
                status: status.clone(),
                requested,
            },
        );
        match (requested, reason) {
            (true, Some(StopReason::ReadyTimeout)) => {
                self.work.push_back(Work::Down(id, Down::ReadyTimeout))
            }
            (true, _) => {
                self.record(id, LifecycleEvent::Stopped);
                self.work.push_back(Work::Advance(parent));
            }
            (false, _) => self.work.push_back(Work::Down(id, Down::Exit(status))),
        }
        Ok(self.drain())
    }

    /// Run `start_no` of the service at `path` did not become ready in time: it is stopped,
    /// and its exit then counts as a crash. (The `ReadyTimeout` timer leads here too.)
    pub fn ready_timeout(&mut self, path: &str, start_no: u64, now: At) -> Outcome {
        self.now = now;
        let id = self.service_id(path)?;
        let n = &self.forest.nodes[id];
        if n.start_no == start_no && n.state == NodeState::Starting {
            self.record(id, LifecycleEvent::ReadyTimedOut);
            self.begin_stop(id, StopReason::ReadyTimeout);
        }
        Ok(self.drain())
    }

    /// A timer from an `Arm` step is due; one that no longer applies is ignored.
    pub fn timer_due(&mut self, timer: &Timer, now: At) -> Outcome {
        match timer.kind {
            // A node a reload removed is forgotten once down: its timers no longer apply.
            _ if !self.forest.by_path.contains_key(&timer.path) => Ok(Vec::new()),
            TimerKind::ReadyTimeout => self.ready_timeout(&timer.path, timer.start_no, now),
            TimerKind::Backoff => {
                self.now = now;
                let id = self.service_id(&timer.path)?;
                let n = &mut self.forest.nodes[id];
                if n.start_no == timer.start_no && matches!(n.state, NodeState::BackingOff { .. }) {
                    n.state = NodeState::Pending;
                    let parent = n.parent.unwrap_or(FOREST);
                    self.work.push_back(Work::Advance(parent));
                }
                Ok(self.drain())
            }
        }
    }

    /// Applies a changed catalog, like `supervisorctl update`: `roots` replace the roots
    /// given to [`Supervision::new`] (or the last reload), matched by name at every level.
    ///
    /// - A child with the same kind and an equal spec is left alone: same run, start number,
    ///   restart count and backoff; its `restart` and `significant` are taken in place.
    /// - A changed service that runs (or is starting) is stopped with the stop policy of its
    ///   run and started with the new spec in its turn; one backing off or pending starts
    ///   afresh with the new spec (backoff from `initial`); one that is down (stopped, held,
    ///   ended) or already stopping keeps its state and gets the new spec for its next start.
    /// - A supervisor takes its new strategy, intensity, period and auto_shutdown in place,
    ///   without restarting anything, and its children are reloaded the same way.
    /// - A child that changed between service and supervisor is stopped like a changed
    ///   service and becomes the new kind once down.
    /// - A removed child (a removed root) is stopped (a supervisor: its tree, right to left)
    ///   and shown as stopping until it is down, then forgotten; its timers no longer apply.
    /// - A new child is started if its supervisor is up: while the supervisor is still
    ///   starting its children, in its place once its left sibling is ready (as at start);
    ///   otherwise at once, as the restarts a reload asks for are, without waiting for a
    ///   sibling backing off. A new root is started if `start_all` was called (and no
    ///   `shutdown` since).
    /// - Operator holds stay: a held node is not started by a reload.
    pub fn reload(&mut self, roots: &[Arc<SupervisorSpec>], now: At) -> Vec<Step> {
        self.now = now;
        // Between calls nothing names a forgotten node any more.
        self.forest.recycle();
        let children: Vec<ChildSpec> = roots
            .iter()
            .map(|r| ChildSpec {
                name: r.name.clone(),
                restart: Restart::Temporary,
                significant: false,
                kind: ChildKind::Supervisor(r.clone()),
            })
            .collect();
        self.reload_children(FOREST, &children);
        self.drain()
    }

    // ---- operator commands -------------------------------------------------------------

    /// Starts the node at `path` (and the supervisors above it that are down); it is no
    /// longer held stopped. Starting a child of a held supervisor starts that supervisor for
    /// this child only: its other children stay down, each now held in its own right.
    pub fn start(&mut self, path: &str, now: At) -> Outcome {
        self.now = now;
        let id = self.id(path)?;
        let chain = self.release(id);
        // The highest node that is down is started; it starts what is below it.
        if let Some(&top) = chain
            .iter()
            .find(|&&n| Self::is_down(self.forest.nodes[n].state))
        {
            self.start_child(top);
        }
        Ok(self.drain())
    }

    /// Stops the node at `path` (a supervisor: its whole subtree, right to left) and holds it
    /// stopped: its supervisor does not restart it until an operator starts it.
    pub fn stop(&mut self, path: &str, now: At) -> Outcome {
        self.now = now;
        let id = self.id(path)?;
        self.hold(id);
        match self.forest.nodes[id].state {
            NodeState::Starting | NodeState::Running => self.begin_stop(id, StopReason::Operator),
            NodeState::Pending | NodeState::BackingOff { .. } => {
                self.forest.nodes[id].state = NodeState::Stopped;
                self.record(id, LifecycleEvent::Stopped);
                let parent = self.forest.nodes[id].parent.unwrap_or(FOREST);
                self.work.push_back(Work::Advance(parent));
            }
            NodeState::Stopping | NodeState::Stopped | NodeState::Failed => {}
        }
        Ok(self.drain())
    }

    /// The holds an earlier principal recorded (paths; those no node has yet are kept for
    /// when one does): applied before `start_all`, without recording them again.
    pub fn restore_holds(&mut self, paths: impl IntoIterator<Item = String>) {
        for path in paths {
            match self.forest.by_path.get(&path) {
                Some(&id) if id != FOREST => {
                    self.forest.set_held(id, true);
                }
                _ => {
                    self.forest.holds.insert(path);
                }
            }
        }
    }

    /// Stops the node at `path` and starts it again right away (no backoff, not counted
    /// against its supervisor's intensity); starts it if it is down.
    pub fn restart(&mut self, path: &str, now: At) -> Outcome {
        self.now = now;
        let id = self.id(path)?;
        let chain = self.release(id);
        let above_down = chain[..chain.len() - 1]
            .iter()
            .find(|&&n| Self::is_down(self.forest.nodes[n].state))
            .copied();
        if let Some(top) = above_down {
            self.start_child(top);
            return Ok(self.drain());
        }
        let parent = self.forest.nodes[id].parent.unwrap_or(FOREST);
        let index = self.forest.nodes[id].index;
        match self.forest.nodes[id].state {
            NodeState::Starting | NodeState::Running => {
                self.merge(parent, [index], [index], StopReason::Restart);
            }
            NodeState::BackingOff { .. } | NodeState::Pending => {
                self.forest.nodes[id].state = NodeState::Pending;
                self.merge(parent, [], [index], StopReason::Restart);
            }
            NodeState::Stopped | NodeState::Failed | NodeState::Stopping => {
                self.merge(parent, [], [index], StopReason::Restart);
            }
        }
        self.work.push_back(Work::Advance(parent));
        Ok(self.drain())
    }

    // ---- queries -----------------------------------------------------------------------

    /// Slots of the node arena, used or free (bounded over any number of reloads).
    pub fn slots(&self) -> usize {
        self.forest.slots()
    }

    /// Every node, depth first in start order (each root, then its children).
    pub fn view(&self, now: At) -> Vec<NodeView> {
        let mut out = Vec::with_capacity(self.forest.nodes.len().saturating_sub(1));
        let mut stack: Vec<NodeId> = self.shown(FOREST);
        stack.reverse();
        while let Some(id) = stack.pop() {
            out.push(self.node_view(id, now));
            let mut children = self.shown(id);
            children.reverse();
            stack.extend(children);
        }
        out
    }

    /// The node at `path`.
    pub fn node(&self, path: &str, now: At) -> Option<NodeView> {
        let id = *self.forest.by_path.get(path)?;
        (id != FOREST).then(|| self.node_view(id, now))
    }

    /// The spec of the service at `path` (what a `Spawn` step starts).
    pub fn service(&self, path: &str) -> Option<&Arc<ServiceSpec>> {
        let id = *self.forest.by_path.get(path)?;
        self.service_spec(id)
    }

    fn node_view(&self, id: NodeId, now: At) -> NodeView {
        let n = &self.forest.nodes[id];
        let sup = self.forest.sup(id);
        NodeView {
            path: n.path.clone(),
            name: n.name.clone(),
            depth: n.depth,
            kind: if sup.is_some() {
                NodeKind::Supervisor
            } else {
                NodeKind::Service
            },
            state: n.state,
            pid: n.pid,
            start_no: n.start_no,
            since: n
                .since
                .filter(|_| matches!(n.state, NodeState::Starting | NodeState::Running)),
            last_exit: n.last_exit.clone(),
            restarts: n.restarts,
            restarts_in_period: sup.map(|s| s.restarts_in_period(now)),
            intensity: sup.map(|s| s.intensity),
            held: n.held,
        }
    }

    /// The children of `id` as shown: in order, then those a reload removed that are still
    /// on their way down.
    fn shown(&self, id: NodeId) -> Vec<NodeId> {
        let mut out = self.forest.children(id);
        if let Some(s) = self.forest.sup(id) {
            out.extend(s.leaving.iter().copied());
        }
        out
    }

    // ---- internals ---------------------------------------------------------------------

    /// The node at `path` for an operator command: not one a reload removed.
    fn id(&self, path: &str) -> Result<NodeId, SupervisionError> {
        let id = self.lookup(path)?;
        if self
            .forest
            .chain(id)
            .iter()
            .any(|&n| self.forest.nodes[n].removed)
        {
            return Err(SupervisionError::UnknownPath(path.to_string()));
        }
        Ok(id)
    }

    /// The node at `path`, removed ones (still on their way down) included.
    fn lookup(&self, path: &str) -> Result<NodeId, SupervisionError> {
        match self.forest.by_path.get(path) {
            Some(&id) if id != FOREST => Ok(id),
            _ => Err(SupervisionError::UnknownPath(path.to_string())),
        }
    }

    fn service_id(&self, path: &str) -> Result<NodeId, SupervisionError> {
        let id = self.lookup(path)?;
        match self.forest.nodes[id].kind {
            Kind::Service(_) => Ok(id),
            Kind::Supervisor(_) => Err(SupervisionError::NotAService(path.to_string())),
        }
    }

    fn service_spec(&self, id: NodeId) -> Option<&Arc<ServiceSpec>> {
        match &self.forest.nodes[id].kind {
            Kind::Service(s) => Some(&s.spec),
            Kind::Supervisor(_) => None,
        }
    }

    /// Down for the purpose of an operator start: nothing runs or is on its way back.
    fn is_down(state: NodeState) -> bool {
        matches!(
            state,
            NodeState::Stopped | NodeState::Failed | NodeState::Stopping
        )
    }

    /// Lifts the operator holds on `id` and its ancestors and clears their ended marks; the
    /// chain, root first. A held ancestor is released for this chain only: its other
    /// children are held in its place, so that they stay down as they were. Every change of
    /// a hold is recorded.
    fn release(&mut self, id: NodeId) -> Vec<NodeId> {
        let chain = self.forest.chain(id);
        for (k, &n) in chain.iter().enumerate() {
            if let Some(&next) = chain.get(k + 1)
                && self.forest.nodes[n].held
            {
                self.unhold(n);
                for c in self.forest.children(n) {
                    if c != next {
                        self.hold(c);
                    }
                }
            }
            self.forest.nodes[n].done = false;
        }
        self.unhold(id);
        chain
    }

    /// Holds `id` stopped, recording it if it was not.
    fn hold(&mut self, id: NodeId) {
        if self.forest.set_held(id, true) {
            self.record(id, LifecycleEvent::Held);
        }
    }

    /// Lifts the hold on `id`, recording it if there was one.
    fn unhold(&mut self, id: NodeId) {
        if self.forest.set_held(id, false) {
            self.record(id, LifecycleEvent::Released);
        }
    }

    /// Has the supervisor of `id` start it in its turn.
    fn start_child(&mut self, id: NodeId) {
        let parent = self.forest.nodes[id].parent.unwrap_or(FOREST);
        let index = self.forest.nodes[id].index;
        self.merge(parent, [], [index], StopReason::Restart);
        self.work.push_back(Work::Advance(parent));
    }

    fn record(&mut self, id: NodeId, event: LifecycleEvent) {
        let n = &self.forest.nodes[id];
        self.steps.push(Step::Record(Lifecycle {
            path: n.path.clone(),
            start_no: n.start_no,
            at: self.now,
            event,
        }));
    }

    fn drain(&mut self) -> Vec<Step> {
        while let Some(work) = self.work.pop_front() {
            match work {
                Work::Advance(id) => self.advance(id),
                Work::Down(id, down) => self.down(id, down),
            }
        }
        std::mem::take(&mut self.steps)
    }

    /// Adds to the plan of supervisor `sup` (creating it), unless it is down; a plan that
    /// takes it down ignores this.
    fn merge(
        &mut self,
        sup: NodeId,
        stop: impl IntoIterator<Item = usize>,
        start: impl IntoIterator<Item = usize>,
        reason: StopReason,
    ) {
        if matches!(
            self.forest.nodes[sup].state,
            NodeState::Stopped | NodeState::Failed
        ) {
            return;
        }
        if let Some(s) = self.forest.sup_mut(sup) {
            s.plan
                .get_or_insert_with(Plan::default)
                .merge(stop, start, reason);
        }
    }

    /// The supervisor `sup` stops all its children, then goes down as `halt` says.
    fn halt(&mut self, sup: NodeId, halt: Halt) {
        let n = self.forest.children(sup).len();
        if let Some(s) = self.forest.sup_mut(sup) {
            s.plan = Some(Plan::halt(n, halt));
        }
        self.forest.nodes[sup].state = NodeState::Stopping;
        self.forest.nodes[sup].stop_reason = Some(halt.reason());
        self.work.push_back(Work::Advance(sup));
    }

    fn become_ready(&mut self, id: NodeId) {
        self.forest.nodes[id].state = NodeState::Running;
        self.record(id, LifecycleEvent::Ready);
        let parent = self.forest.nodes[id].parent.unwrap_or(FOREST);
        self.work.push_back(Work::Advance(parent));
    }

    /// Begins a run of `id`: a service is spawned, a supervisor starts its children.
    fn begin_start(&mut self, id: NodeId) {
        let now = self.now;
        let n = &mut self.forest.nodes[id];
        let last = self.last_start.entry(n.path.clone()).or_default();
        n.start_no = n.start_no.max(*last) + 1;
        *last = n.start_no;
        n.state = NodeState::Starting;
        n.since = Some(now);
        n.pid = None;
        n.stop_reason = None;
        let (path, start_no) = (n.path.clone(), n.start_no);
        if let Kind::Service(s) = &mut n.kind {
            s.run_stop = s.spec.stop;
        }
        self.record(id, LifecycleEvent::Starting);
        match &self.forest.nodes[id].kind {
            Kind::Service(s) => {
                let ready = s.spec.ready.as_ref().map(|r| r.timeout);
                self.steps.push(Step::Spawn {
                    path: path.clone(),
                    start_no,
                });
                if let Some(after) = ready {
                    let timer = Timer {
                        path,
                        start_no,
                        kind: TimerKind::ReadyTimeout,
                    };
                    self.steps.push(Step::Arm { timer, after });
                }
            }
            Kind::Supervisor(_) => {
                // A supervisor only starts from down, as a new incarnation (as OTP starts a
                // new supervisor process): no restarts counted, every child from its first
                // backoff, ended children back.
                let children = self.forest.children(id);
                for &c in &children {
                    let child = &mut self.forest.nodes[c];
                    child.done = false;
                    if let Kind::Service(s) = &mut child.kind {
                        s.failures = 0;
                    }
                }
                if let Some(s) = self.forest.sup_mut(id) {
                    s.history.clear();
                    s.plan = Some(Plan::startup(children.len()));
                }
                self.work.push_back(Work::Advance(id));
            }
        }
    }

    /// Asks `id` to stop: a service gets a `Stop`, a supervisor stops its children.
    fn begin_stop(&mut self, id: NodeId, reason: StopReason) {
        match &self.forest.nodes[id].kind {
            Kind::Service(s) => {
                let policy = s.run_stop;
                let n = &mut self.forest.nodes[id];
                n.state = NodeState::Stopping;
                n.stop_reason = Some(reason);
                let step = Step::Stop {
                    path: n.path.clone(),
                    start_no: n.start_no,
                    policy,
                };
                self.record(id, LifecycleEvent::Stopping { reason });
                self.steps.push(step);
            }
            Kind::Supervisor(_) => {
                self.record(id, LifecycleEvent::Stopping { reason });
                self.halt(id, Halt::Requested(reason));
            }
        }
    }

    /// Carries the plan of supervisor `sup` on as far as it can go without waiting.
    ///
    /// Stops come first: in a supervisor one child at a time, the rightmost first; among the
    /// roots (which have no order between them) all at once. Then starts, left to right: a
    /// child whose group has an earlier child not yet ready waits; other groups go ahead.
    fn advance(&mut self, sup: NodeId) {
        self.sweep(sup);
        loop {
            let Some(s) = self.forest.sup(sup) else {
                return;
            };
            let ordered = s.ordered;
            let Some(plan) = &s.plan else { return };
            let children = s.children.clone();
            let halting = plan.halt.is_some();
            let reason = plan.reason.unwrap_or(StopReason::Strategy);
            if let Some(&last) = plan.stop.last() {
                let order: Vec<usize> = if ordered {
                    vec![last]
                } else {
                    plan.stop.iter().rev().copied().collect()
                };
                let keep: Vec<bool> = order
                    .iter()
                    .map(|i| !halting && plan.start.contains_key(i))
                    .collect();
                let mut busy = false;
                for (i, keep) in order.into_iter().zip(keep) {
                    let c = children[i];
                    match self.forest.nodes[c].state {
                        NodeState::Starting | NodeState::Running => {
                            self.begin_stop(c, reason);
                            busy = true;
                            continue;
                        }
                        NodeState::Stopping => {
                            busy = true;
                            continue;
                        }
                        NodeState::Pending | NodeState::BackingOff { .. } if !keep => {
                            self.forest.nodes[c].state = NodeState::Stopped;
                            self.record(c, LifecycleEvent::Stopped);
                        }
                        _ => {}
                    }
                    self.plan_mut(sup).stop.remove(&i);
                }
                if busy {
                    return;
                }
                continue;
            }
            let starts: Vec<(usize, Group)> = plan.start.iter().map(|(&i, &g)| (i, g)).collect();
            // Groups with a child on its way up: the children after it in the group wait.
            let mut waiting: HashSet<Group> = HashSet::new();
            for (i, group) in starts {
                if ordered && waiting.contains(&group) {
                    continue;
                }
                let c = children[i];
                let node = &self.forest.nodes[c];
                let done = if node.held || node.done {
                    true
                } else {
                    match node.state {
                        NodeState::Stopped | NodeState::Failed | NodeState::Pending => {
                            self.settle(c);
                            self.begin_start(c);
                            !ordered
                        }
                        NodeState::Running => true,
                        NodeState::Stopping => false,
                        NodeState::Starting | NodeState::BackingOff { .. } => !ordered,
                    }
                };
                if done {
                    self.plan_mut(sup).start.remove(&i);
                } else {
                    waiting.insert(group);
                }
            }
            let Some(s) = self.forest.sup(sup) else {
                return;
            };
            let Some(plan) = &s.plan else { return };
            if !plan.start.is_empty() {
                return;
            }
            let halt = plan.halt;
            // A supervisor goes down after the children a reload removed, too.
            if halt.is_some()
                && s.leaving
                    .iter()
                    .any(|&c| self.forest.nodes[c].state.is_active())
            {
                return;
            }
            if let Some(s) = self.forest.sup_mut(sup) {
                s.plan = None;
            }
            return self.finish(sup, halt);
        }
    }

    fn plan_mut(&mut self, sup: NodeId) -> &mut Plan {
        self.forest
            .sup_mut(sup)
            .and_then(|s| s.plan.as_mut())
            .expect("advance only runs a plan that exists")
    }

    /// The plan of `sup` is done: it is up, or down as `halt` says.
    fn finish(&mut self, sup: NodeId, halt: Option<Halt>) {
        let parent = self.forest.nodes[sup].parent;
        let Some(halt) = halt else {
            if self.forest.nodes[sup].state == NodeState::Starting {
                self.become_ready(sup);
            }
            return;
        };
        let n = &mut self.forest.nodes[sup];
        n.stop_reason = None;
        n.state = if halt == Halt::GiveUp {
            NodeState::Failed
        } else {
            NodeState::Stopped
        };
        if sup == FOREST {
            return;
        }
        if halt != Halt::GiveUp {
            self.record(sup, LifecycleEvent::Stopped);
        }
        let parent = parent.unwrap_or(FOREST);
        self.work.push_back(match halt {
            Halt::Requested(_) => Work::Advance(parent),
            Halt::GiveUp => Work::Down(sup, Down::GaveUp),
            Halt::AutoShutdown => Work::Down(sup, Down::AutoShutdown),
        });
    }

    /// Child `c` went down on its own: its supervisor restarts it (and siblings, by its
    /// strategy), gives up, shuts down, or lets it be, as OTP would.
    fn down(&mut self, c: NodeId, down: Down) {
        let now = self.now;
        let p = self.forest.nodes[c].parent.unwrap_or(FOREST);
        let i = self.forest.nodes[c].index;
        let Some(sup) = self.forest.sup(p) else {
            return;
        };
        if self.forest.nodes[c].removed {
            if matches!(self.forest.nodes[c].kind, Kind::Service(_)) {
                self.record(c, LifecycleEvent::Stopped);
            }
            self.work.push_back(Work::Advance(p));
            return;
        }
        let going = sup
            .plan
            .as_ref()
            .is_some_and(|pl| pl.halt.is_some() || pl.stop.contains(&i));
        let parent_down = matches!(
            self.forest.nodes[p].state,
            NodeState::Stopping | NodeState::Stopped | NodeState::Failed
        );
        // Held by an operator meanwhile, or about to be stopped (and restarted) anyway.
        let service = matches!(self.forest.nodes[c].kind, Kind::Service(_));
        if self.forest.nodes[c].held || going || parent_down {
            if service {
                self.record(c, LifecycleEvent::Stopped);
            }
            self.work.push_back(Work::Advance(p));
            return;
        }
        let restart = match self.forest.nodes[c].restart {
            Restart::Permanent => true,
            Restart::Transient => !down.is_normal(),
            Restart::Temporary => false,
        };
        if !restart {
            self.forest.nodes[c].done = true;
            if service {
                self.record(c, LifecycleEvent::Stopped);
            }
            if self.forest.nodes[c].significant && self.auto_shutdown_due(p) {
                self.record(p, LifecycleEvent::AutoShutdown);
                self.halt(p, Halt::AutoShutdown);
            }
            self.work.push_back(Work::Advance(p));
            return;
        }
        let Some(sup) = self.forest.sup_mut(p) else {
            return;
        };
        while sup
            .history
            .front()
            .is_some_and(|&t| now.since(t) >= sup.period)
        {
            sup.history.pop_front();
        }
        sup.history.push_back(now);
        let (count, intensity, period, strategy) =
            (sup.history.len(), sup.intensity, sup.period, sup.strategy);
        if count > intensity as usize {
            let restarts = u32::try_from(count).unwrap_or(u32::MAX);
            self.record(p, LifecycleEvent::GaveUp { restarts, period });
            self.halt(p, Halt::GiveUp);
            return;
        }
        let siblings = self.forest.children(p);
        let (stop, start): (Vec<usize>, Vec<usize>) = match strategy {
            Strategy::OneForOne => (vec![], vec![i]),
            Strategy::OneForAll => (
                (0..siblings.len()).filter(|&j| j != i).collect(),
                (0..siblings.len()).collect(),
            ),
            Strategy::RestForOne => (
                (i + 1..siblings.len()).collect(),
                (i..siblings.len()).collect(),
            ),
        };
        // Temporary siblings are stopped with the others but never started again.
        for &j in &stop {
            let sib = &mut self.forest.nodes[siblings[j]];
            if sib.restart == Restart::Temporary && sib.state.is_active() {
                sib.done = true;
            }
        }
        let delay = self.backoff(c, now);
        let n = &mut self.forest.nodes[c];
        n.restarts += 1;
        n.state = if delay.is_zero() {
            NodeState::Pending
        } else {
            NodeState::BackingOff {
                until: now.after(delay),
            }
        };
        let start_no = n.start_no;
        let path = n.path.clone();
        self.record(c, LifecycleEvent::Restarting { after: delay });
        if !delay.is_zero() {
            let timer = Timer {
                path,
                start_no,
                kind: TimerKind::Backoff,
            };
            self.steps.push(Step::Arm {
                timer,
                after: delay,
            });
        }
        self.merge(p, stop, start, StopReason::Strategy);
        self.work.push_back(Work::Advance(p));
    }

    /// The delay before restarting `c` after a crash at `now`: the service's backoff (from
    /// `initial` again once it was up for `stable_after`); none for a supervisor.
    fn backoff(&mut self, c: NodeId, now: At) -> Duration {
        let since = self.forest.nodes[c].since;
        let Kind::Service(s) = &mut self.forest.nodes[c].kind else {
            return Duration::ZERO;
        };
        if since.is_some_and(|t| now.since(t) >= s.spec.stable_after) {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        let (backoff, failures) = (s.spec.backoff, s.failures);
        let unit = if backoff.jitter { (self.random)() } else { 0.0 };
        backoff.delay_with(failures, unit)
    }

    /// True when the significant children of `p` have ended as its `auto_shutdown` wants.
    fn auto_shutdown_due(&self, p: NodeId) -> bool {
        let Some(sup) = self.forest.sup(p) else {
            return false;
        };
        match sup.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => sup.children.iter().all(|&c| {
                let n = &self.forest.nodes[c];
                !n.significant || (n.done && !n.state.is_active())
            }),
        }
    }
}

/// Hot reload.
impl Supervision {
    /// Reloads the children of supervisor `sup` from `new` (see [`Supervision::reload`]).
    fn reload_children(&mut self, sup: NodeId, new: &[ChildSpec]) {
        let old = self.forest.children(sup);
        let up = if sup == FOREST {
            self.started
        } else {
            matches!(
                self.forest.nodes[sup].state,
                NodeState::Starting | NodeState::Running
            )
        };
        let mut next = Vec::with_capacity(new.len());
        // New positions to stop and start again, and to start.
        let (mut restart, mut start) = (Vec::new(), Vec::new());
        for (i, spec) in new.iter().enumerate() {
            let leaving = self
                .forest
                .sup(sup)
                .map(|s| s.leaving.clone())
                .unwrap_or_default();
            let found = old
                .iter()
                .chain(&leaving)
                .copied()
                .find(|&c| self.forest.nodes[c].name == spec.name);
            let Some(c) = found else {
                next.push(self.forest.add(sup, spec, i));
                start.push(i);
                continue;
            };
            next.push(c);
            let n = &mut self.forest.nodes[c];
            if n.removed {
                // Removed by an earlier reload and still going down: back in its place.
                n.removed = false;
                start.push(i);
                if let Some(s) = self.forest.sup_mut(sup) {
                    s.leaving.retain(|&l| l != c);
                }
            }
            let n = &mut self.forest.nodes[c];
            n.restart = spec.restart;
            n.significant = spec.significant;
            n.pending = None;
            let state = n.state;
            match (&mut n.kind, &spec.kind) {
                (Kind::Service(s), ChildKind::Service(spec)) => {
                    if Arc::ptr_eq(&s.spec, spec) || s.spec == *spec {
                        continue;
                    }
                    s.spec = spec.clone();
                    match state {
                        NodeState::Starting | NodeState::Running => restart.push(i),
                        NodeState::Pending | NodeState::BackingOff { .. } => {
                            s.failures = 0;
                            n.state = NodeState::Pending;
                            start.push(i);
                        }
                        // Ended (a temporary or transient child) or given up on: the new
                        // spec gets its chance, unless an operator holds it stopped.
                        NodeState::Stopping | NodeState::Stopped | NodeState::Failed if !n.held => {
                            s.failures = 0;
                            n.done = false;
                            start.push(i);
                        }
                        NodeState::Stopping | NodeState::Stopped | NodeState::Failed => {}
                    }
                }
                (Kind::Supervisor(_), ChildKind::Supervisor(spec)) => {
                    let spec = spec.clone();
                    let changed = self.reload_supervisor(c, &spec);
                    let n = &mut self.forest.nodes[c];
                    // A supervisor that gave up (or ended by auto_shutdown) whose file was
                    // changed is tried again as a new incarnation.
                    if changed
                        && !n.held
                        && matches!(n.state, NodeState::Stopped | NodeState::Failed)
                    {
                        n.done = false;
                        start.push(i);
                    }
                }
                (_, kind) => {
                    n.pending = Some(kind.clone());
                    match state {
                        NodeState::Starting | NodeState::Running => restart.push(i),
                        NodeState::Pending | NodeState::BackingOff { .. } => {
                            n.state = NodeState::Pending;
                            self.settle(c);
                            start.push(i);
                        }
                        NodeState::Stopped | NodeState::Failed => self.settle(c),
                        // Taken once it is down (see `sweep`).
                        NodeState::Stopping => {}
                    }
                }
            }
        }
        for &c in old.iter().rev() {
            if !next.contains(&c) {
                self.remove(c);
            }
        }
        // The new order; the plan in progress follows its children to their new places.
        let place: HashMap<NodeId, usize> = next.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        for (i, &c) in next.iter().enumerate() {
            self.forest.nodes[c].index = i;
        }
        if let Some(s) = self.forest.sup_mut(sup) {
            if let Some(plan) = &mut s.plan {
                plan.stop = plan
                    .stop
                    .iter()
                    .filter_map(|&j| place.get(&old[j]).copied())
                    .collect();
                plan.start = plan
                    .start
                    .iter()
                    .filter_map(|(&j, &g)| Some((place.get(&old[j]).copied()?, g)))
                    .collect();
            }
            s.children = next;
        }
        if up && !(restart.is_empty() && start.is_empty()) {
            let both: Vec<usize> = restart.iter().chain(&start).copied().collect();
            // Restarts a reload asks for are independent of each other (and of a sibling
            // backing off), as an operator's restarts are; a child added while the supervisor
            // starts its children takes its place in that start.
            if !matches!(
                self.forest.nodes[sup].state,
                NodeState::Stopped | NodeState::Failed
            ) && let Some(s) = self.forest.sup_mut(sup)
            {
                s.plan.get_or_insert_with(Plan::default).merge_reload(
                    restart,
                    both,
                    StopReason::Reload,
                );
            }
        }
        self.work.push_back(Work::Advance(sup));
    }

    /// Takes the new settings of supervisor `id` in place and reloads its children; true
    /// when its spec (its whole subtree) changed.
    fn reload_supervisor(&mut self, id: NodeId, spec: &Arc<SupervisorSpec>) -> bool {
        let mut changed = false;
        if let Some(s) = self.forest.sup_mut(id) {
            changed = s
                .spec
                .as_ref()
                .is_none_or(|old| !Arc::ptr_eq(old, spec) && **old != **spec);
            s.strategy = spec.strategy;
            s.intensity = spec.intensity;
            s.period = spec.period;
            s.auto_shutdown = spec.auto_shutdown;
            s.spec = Some(spec.clone());
        }
        self.reload_children(id, &spec.children);
        changed
    }

    /// Child `c` is no longer in the spec: it is stopped (in its turn, see
    /// [`Supervision::sweep`]), and forgotten once down.
    fn remove(&mut self, c: NodeId) {
        let p = self.forest.nodes[c].parent.unwrap_or(FOREST);
        let n = &mut self.forest.nodes[c];
        n.removed = true;
        n.pending = None;
        match n.state {
            // Stopped by `sweep`, one removed sibling at a time.
            NodeState::Starting | NodeState::Running => {}
            NodeState::Pending | NodeState::BackingOff { .. } => {
                n.state = NodeState::Stopped;
                self.record(c, LifecycleEvent::Stopped);
            }
            NodeState::Stopping | NodeState::Stopped | NodeState::Failed => {}
        }
        if let Some(s) = self.forest.sup_mut(p) {
            s.leaving.push(c);
        }
    }

    /// Forgets the removed children of `sup` that are down and stops the next one that is
    /// up (right to left, one at a time, as a supervisor stops its children), and gives the
    /// children a reload turned into another kind that kind once they are down.
    fn sweep(&mut self, sup: NodeId) {
        let Some(s) = self.forest.sup(sup) else {
            return;
        };
        let (leaving, children) = (s.leaving.clone(), s.children.clone());
        for &c in &leaving {
            if !self.forest.nodes[c].state.is_active() {
                self.forest.forget(c, true);
                if let Some(s) = self.forest.sup_mut(sup) {
                    s.leaving.retain(|&l| l != c);
                }
            }
        }
        // `leaving` lists them right to left.
        let states = || leaving.iter().map(|&c| (c, self.forest.nodes[c].state));
        if !states().any(|(_, s)| s == NodeState::Stopping)
            && let Some((next, _)) =
                states().find(|(_, s)| matches!(s, NodeState::Starting | NodeState::Running))
        {
            self.begin_stop(next, StopReason::Reload);
        }
        for c in children {
            self.settle(c);
        }
    }

    /// Gives `c` the kind a reload asked for, if it is down (its old subtree is forgotten).
    fn settle(&mut self, c: NodeId) {
        if self.forest.nodes[c].state.is_active() {
            return;
        }
        let Some(kind) = self.forest.nodes[c].pending.take() else {
            return;
        };
        self.forest.forget(c, false);
        self.forest.set_kind(c, &kind);
    }
}
