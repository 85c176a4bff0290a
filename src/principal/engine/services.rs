//! Supervised services in the engine: the OTP state machine of `crate::supervisor` driven
//! with real facts (spawns, exits, readiness, timers, operators), its steps carried out through
//! the local agent, and its lifecycle recorded as events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Engine, Internal, Timer};
use crate::agent::ready::{NotifySocket, ProbeContext, until_ready};
use crate::protocol::Event;
use crate::protocol::agent::{
    AgentEvent, Assignment, Exit, ServiceStart, StopPolicy, WorkEnd, WorkId, WorkKind,
};
use crate::protocol::api::{ApiError, ApiErrorKind, Response};
use crate::protocol::service::{
    ServiceAction, ServiceEventKind, ServiceLogBatch, ServiceNode, ServiceRecord, ServiceState,
};
use crate::spec::{Readiness, ReadyProbe, RenderContext};
use crate::supervisor::{
    At, ExitStatus, Lifecycle, LifecycleEvent, NodeKind, NodeState, NodeView, Step, Supervision,
};

/// What the engine keeps beside the state machine.
pub(in crate::principal) struct Services {
    pub machine: Supervision,
    /// The monotonic origin of the machine's clock.
    origin: tokio::time::Instant,
    /// Readiness checks under way, by service (dropping one stops it).
    checks: HashMap<String, (u64, ReadyCheck)>,
    /// The environment and working directory of each service's latest run, for its command
    /// readiness check.
    probe_env: HashMap<String, ProbeEnv>,
    /// Spawns waiting for their start number to be durably taken, in order.
    gated: Vec<GatedSpawn>,
    /// The highest start number reserved for each path, and how many emitted events must be
    /// durable for that reservation to be.
    reserved: HashMap<String, (u64, u64)>,
    /// When each service's latest run was spawned, by path: its start number and the time.
    spawned: HashMap<String, (u64, tokio::time::Instant)>,
}

/// A service run whose number is not durably taken yet. A number is taken durably by a
/// `reserved` record for a block of [`RESERVE_BLOCK`] numbers, written before the first of
/// them is spawned (a new principal numbers its runs after the highest number stored, so it
/// never runs one twice). While the history file can be written, a run also waits for its
/// own `starting` record, so that a principal killed at any moment leaves no run the history
/// does not know; while it cannot (a full disk), the service still restarts within its
/// reserved block, and its records are written once there is room again.
struct GatedSpawn {
    path: String,
    start_no: u64,
    /// Its `starting` record is durable once this many emitted events are.
    durable_after: u64,
    /// Its number's reservation is durable once this many emitted events are.
    reserved_after: u64,
}

/// Start numbers reserved per `reserved` record.
const RESERVE_BLOCK: u64 = 16;

/// A service that exits with 0 within this long of its spawn likely forked into the
/// background (a daemon): its restarts loop, and the record says why that may be.
const AT_ONCE: std::time::Duration = std::time::Duration::from_secs(1);

/// What an exit at once says about a daemon.
const DAEMON_HINT: &str = "exited at once; if it forks into the background, run it in the foreground (most daemons have a flag)";

type ProbeEnv = (Vec<(String, String)>, Option<std::path::PathBuf>);

/// A readiness check of one run of a service.
enum ReadyCheck {
    /// A line of its output must match.
    Log(regex::Regex),
    /// A task polls; aborted when dropped.
    Task(tokio::task::AbortHandle),
}

impl Drop for ReadyCheck {
    fn drop(&mut self) {
        if let ReadyCheck::Task(handle) = self {
            handle.abort();
        }
    }
}

impl Services {
    /// Every root supervisor of `catalog`, all stopped.
    pub fn new(catalog: &crate::spec::Catalog) -> Self {
        let roots: Vec<_> = catalog.supervisor_roots().cloned().collect();
        Self {
            machine: Supervision::new(&roots, fastrand::f64),
            origin: tokio::time::Instant::now(),
            checks: HashMap::new(),
            probe_env: HashMap::new(),
            gated: Vec::new(),
            reserved: HashMap::new(),
            spawned: HashMap::new(),
        }
    }

    /// Ends the readiness check of run `start_no` of `path`, if it is that run's.
    fn end_check(&mut self, path: &str, start_no: u64) {
        if self
            .checks
            .get(path)
            .is_some_and(|(start, _)| *start == start_no)
        {
            self.checks.remove(path);
        }
    }

    fn now(&self) -> At {
        At(self.origin.elapsed())
    }

    /// The wall-clock time of `at`.
    fn wall(&self, at: At) -> chrono::DateTime<chrono::Utc> {
        let ago = self.origin.elapsed().saturating_sub(at.0);
        chrono::Utc::now() - chrono::Duration::from_std(ago).unwrap_or_default()
    }
}

fn exit_status(exit: &Exit) -> ExitStatus {
    match exit {
        Exit::Code(c) => ExitStatus::Code(*c),
        Exit::Signal(s) => ExitStatus::Signal(*s),
        Exit::NotStarted(why) => ExitStatus::SpawnFailed(why.clone()),
    }
}

fn describe_exit(status: &ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exit code {c}"),
        ExitStatus::Signal(s) => crate::protocol::Outcome::Signaled(*s).describe(),
        ExitStatus::SpawnFailed(why) => format!("could not start: {why}"),
    }
}

impl Engine {
    /// Starts every supervision tree, leaving the services an operator held stopped.
    pub(super) async fn start_services(&mut self, held: Vec<String>) {
        let now = self.services.now();
        // Applied as recorded, not recorded again; a path no node has now keeps its hold for
        // when its file comes back.
        self.services.machine.restore_holds(held);
        let steps = self.services.machine.start_all(now);
        self.carry_out_services(steps).await;
    }

    /// Ends the starts the previous principal left without an end: it died meanwhile.
    pub(super) async fn record_interrupted(&mut self, starts: Vec<(String, u64)>) {
        for (path, start_no) in starts {
            let at = self.clock.now();
            self.emit(Event::Service(ServiceRecord {
                path,
                start_no,
                kind: ServiceEventKind::Interrupted,
                pid: None,
                exit_code: None,
                signal: None,
                message: Some(
                    "the principal stopped while this start was under way or running (it was \
                     killed, or the machine went down)"
                        .into(),
                ),
                at,
            }))
            .await;
        }
    }

    /// Applies changed supervisor files to the running trees: unchanged children keep
    /// running, changed ones restart with their new spec, removed ones stop, new ones start.
    pub(super) async fn reload_services(&mut self) {
        let roots: Vec<_> = self.catalog.supervisor_roots().cloned().collect();
        let now = self.services.now();
        let steps = self.services.machine.reload(&roots, now);
        self.carry_out_services(steps).await;
    }

    /// Stops every tree, in order; the loop ends once they are all stopped.
    pub(super) async fn stop_services(&mut self) {
        let now = self.services.now();
        let steps = self.services.machine.shutdown(now);
        self.carry_out_services(steps).await;
    }

    async fn carry_out_services(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Spawn { path, start_no } => {
                    // Its `starting` record was emitted just before.
                    let durable_after = self.gate.emitted;
                    let reserved_after = self.reserve(&path, start_no).await;
                    self.services.gated.push(GatedSpawn {
                        path,
                        start_no,
                        durable_after,
                        reserved_after,
                    });
                    self.sync();
                }
                Step::Stop { path, start_no, .. } => {
                    self.services.checks.remove(&path);
                    if let Some(i) = self
                        .services
                        .gated
                        .iter()
                        .position(|g| g.path == path && g.start_no == start_no)
                    {
                        // Never spawned: it ends here, as a stop of it would have.
                        self.services.gated.remove(i);
                        let now = self.services.now();
                        let status = ExitStatus::SpawnFailed(
                            "stopped before its start was recorded and it could be spawned".into(),
                        );
                        if let Ok(steps) = self
                            .services
                            .machine
                            .child_exited(&path, start_no, status, now)
                        {
                            Box::pin(self.carry_out_services(steps)).await;
                        }
                        continue;
                    }
                    let id = WorkId::Service(ServiceStart {
                        path: Arc::from(path.as_str()),
                        start: start_no,
                    });
                    self.agents.stop(&id);
                }
                Step::Arm { timer, after } => self.set_timer(after, Timer::Supervise(timer)),
                Step::Record(lifecycle) => self.record_service(lifecycle).await,
            }
        }
    }

    /// Makes sure `start_no` of `path` is in a reserved block, recording a new block when
    /// it is not; the mark after which the reservation is durable.
    async fn reserve(&mut self, path: &str, start_no: u64) -> u64 {
        if let Some(&(top, mark)) = self.services.reserved.get(path)
            && start_no <= top
        {
            return mark;
        }
        let top = start_no.saturating_add(RESERVE_BLOCK - 1);
        let at = self.clock.now();
        self.emit(Event::Service(ServiceRecord {
            path: path.to_string(),
            start_no: top,
            kind: ServiceEventKind::Reserved,
            pid: None,
            exit_code: None,
            signal: None,
            message: Some(format!(
                "start numbers {start_no} to {top} reserved: a later principal starts after them"
            )),
            at,
        }))
        .await;
        let mark = self.gate.emitted;
        self.services.reserved.insert(path.to_string(), (top, mark));
        mark
    }

    /// Spawns the gated runs whose numbers are now durably taken (see [`GatedSpawn`]), and
    /// asks for another flush while some wait: at once after a flush that went through
    /// (`flushed`), shortly otherwise.
    pub(super) async fn spawn_gated(&mut self, flushed: bool) {
        let durable = self.gate.durable;
        let store_down = self.store_tx.problem().is_some();
        let ready: Vec<GatedSpawn>;
        (ready, self.services.gated) = std::mem::take(&mut self.services.gated)
            .into_iter()
            .partition(|g| {
                g.durable_after <= durable || (store_down && g.reserved_after <= durable)
            });
        for g in ready {
            self.spawn_service(g.path, g.start_no).await;
        }
        if !self.services.gated.is_empty() {
            if flushed {
                self.sync();
            } else {
                // Not in a tight loop: a failed flush or a store that cannot write.
                self.ack_soon();
            }
        }
    }

    async fn spawn_service(&mut self, path: String, start_no: u64) {
        let Some(spec) = self.services.machine.service(&path).cloned() else {
            return;
        };
        let name = path.rsplit('/').next().unwrap_or(&path).to_string();
        let params = BTreeMap::new();
        let ctx = RenderContext {
            params: &params,
            run_id: start_no,
            task_name: &name,
        };
        let argv = spec.run.argv(&ctx);
        let mut env = vec![
            ("OPSCONSOLE_SERVICE".to_string(), path.clone()),
            ("OPSCONSOLE_SERVICE_START".to_string(), start_no.to_string()),
        ];
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.render(&ctx))));
        // sd_notify: the socket exists before the process does, so no READY=1 is missed.
        if let Some(Readiness {
            probe: ReadyProbe::Notify,
            ..
        }) = &spec.ready
        {
            match NotifySocket::bind(&std::env::temp_dir()) {
                Ok(socket) => {
                    env.push(("NOTIFY_SOCKET".to_string(), socket.env_value()));
                    let tx = self.internal_tx.clone();
                    let p = path.clone();
                    let task = tokio::spawn(async move {
                        if socket.ready().await.is_ok() {
                            let _ = tx.send(Internal::ServiceReady { path: p, start_no });
                        }
                    });
                    let check = ReadyCheck::Task(task.abort_handle());
                    self.services.checks.insert(path.clone(), (start_no, check));
                }
                // Without the socket it never becomes ready: its timeout counts as a crash.
                Err(e) => tracing::error!(service = %path, "cannot make its NOTIFY_SOCKET: {e}"),
            }
        }
        let probe_env = env.clone();
        let job = Assignment {
            id: WorkId::Service(ServiceStart {
                path: Arc::from(path.as_str()),
                start: start_no,
            }),
            kind: WorkKind::Service,
            argv,
            env,
            cwd: spec.cwd.clone(),
            stop: StopPolicy {
                signal: spec.stop.signal.number(),
                grace: spec.stop.grace,
            },
            max_output: spec.max_output,
        };
        self.services
            .probe_env
            .insert(path.clone(), (probe_env, spec.cwd.clone()));
        self.services
            .spawned
            .insert(path.clone(), (start_no, tokio::time::Instant::now()));
        // Services run beside the principal, in the in-process pool.
        let local = BTreeMap::from([("local".to_string(), "true".to_string())]);
        if self.agents.assign(job, &local).is_err() {
            let now = self.services.now();
            let status = ExitStatus::SpawnFailed("no local agent to run it".into());
            if let Ok(steps) = self
                .services
                .machine
                .child_exited(&path, start_no, status, now)
            {
                Box::pin(self.carry_out_services(steps)).await;
            }
        }
    }

    /// A report of the in-process pool about a service run.
    pub(super) async fn on_service_event(&mut self, ev: AgentEvent) {
        match ev {
            AgentEvent::Started {
                id: WorkId::Service(s),
                pid,
                ..
            } => {
                let now = self.services.now();
                let path = s.path.to_string();
                let steps = self
                    .services
                    .machine
                    .child_started(&path, s.start, pid, now)
                    .unwrap_or_default();
                self.begin_ready_check(&path, s.start);
                self.carry_out_services(steps).await;
            }
            AgentEvent::Output {
                id: WorkId::Service(s),
                stream,
                lines,
                charge,
            } => {
                let ready = match self.services.checks.get(s.path.as_ref()) {
                    Some((start, ReadyCheck::Log(re))) if *start == s.start => {
                        lines.iter().any(|l| re.is_match(&l.text))
                    }
                    _ => false,
                };
                self.emit(Event::ServiceLogs(Arc::new(ServiceLogBatch {
                    path: s.path.clone(),
                    start_no: s.start,
                    stream,
                    lines,
                    charge,
                })))
                .await;
                if ready {
                    self.service_ready(s.path.to_string(), s.start).await;
                }
            }
            AgentEvent::Finished(end) => self.service_ended(end).await,
            AgentEvent::Started { .. } | AgentEvent::Output { .. } => {}
        }
    }

    async fn service_ended(&mut self, end: WorkEnd) {
        self.agents.finished(&super::local_id(), &end.id);
        let WorkId::Service(s) = &end.id else {
            return;
        };
        let path = s.path.to_string();
        self.services.end_check(&path, s.start);
        let now = self.services.now();
        let steps = self
            .services
            .machine
            .child_exited(&path, s.start, exit_status(&end.exit), now)
            .unwrap_or_default();
        self.carry_out_services(steps).await;
    }

    /// Starts the readiness check of a run that was just spawned, when its spec has one.
    fn begin_ready_check(&mut self, path: &str, start_no: u64) {
        let Some(ready) = self
            .services
            .machine
            .service(path)
            .and_then(|s| s.ready.clone())
        else {
            return;
        };
        let check = match ready.probe {
            ReadyProbe::Log(re) => ReadyCheck::Log(re),
            // Its socket is waiting since the spawn.
            ReadyProbe::Notify => return,
            probe => {
                let tx = self.internal_tx.clone();
                let path = path.to_string();
                let (env, cwd) = self
                    .services
                    .probe_env
                    .get(&path)
                    .cloned()
                    .unwrap_or_default();
                let ctx = ProbeContext::new(path.clone(), start_no, env, cwd);
                let task = tokio::spawn(async move {
                    match until_ready(&probe, &ctx).await {
                        Ok(()) => {
                            let _ = tx.send(Internal::ServiceReady { path, start_no });
                        }
                        // It can never pass; its timeout counts as a crash, and says why.
                        Err(e) => tracing::error!(service = %path, "readiness check: {e}"),
                    }
                });
                ReadyCheck::Task(task.abort_handle())
            }
        };
        self.services
            .checks
            .insert(path.to_string(), (start_no, check));
    }

    /// A run's readiness check passed.
    pub(super) async fn service_ready(&mut self, path: String, start_no: u64) {
        self.services.end_check(&path, start_no);
        let now = self.services.now();
        let steps = self
            .services
            .machine
            .child_ready(&path, start_no, now)
            .unwrap_or_default();
        self.carry_out_services(steps).await;
    }

    /// A timer of the state machine is due.
    pub(super) async fn service_timer(&mut self, timer: crate::supervisor::Timer) {
        let now = self.services.now();
        let steps = self
            .services
            .machine
            .timer_due(&timer, now)
            .unwrap_or_default();
        self.carry_out_services(steps).await;
    }

    async fn record_service(&mut self, l: Lifecycle) {
        let (kind, pid, exit_code, signal, message) = match &l.event {
            LifecycleEvent::Starting => (ServiceEventKind::Starting, None, None, None, None),
            LifecycleEvent::Started { pid } => (ServiceEventKind::Started, *pid, None, None, None),
            LifecycleEvent::Ready => (ServiceEventKind::Ready, None, None, None, None),
            LifecycleEvent::Exited { status, requested } => {
                let (code, signal) = match status {
                    ExitStatus::Code(c) => (Some(*c), None),
                    ExitStatus::Signal(s) => (None, Some(*s)),
                    ExitStatus::SpawnFailed(_) => (None, None),
                };
                let how = describe_exit(status);
                let at_once = match self.services.spawned.get(&l.path) {
                    Some(&(no, t)) if no == l.start_no => {
                        self.services.spawned.remove(&l.path);
                        t.elapsed() < AT_ONCE
                    }
                    _ => false,
                };
                let message = if *requested {
                    format!("{how} (stopped by its supervisor)")
                } else if status.is_normal() && at_once {
                    format!("{how}: {DAEMON_HINT}")
                } else {
                    how
                };
                (ServiceEventKind::Exited, None, code, signal, Some(message))
            }
            LifecycleEvent::ReadyTimedOut => (
                ServiceEventKind::ReadyTimedOut,
                None,
                None,
                None,
                Some("not ready within its timeout: counted as a crash".into()),
            ),
            LifecycleEvent::Restarting { after } => (
                ServiceEventKind::Restarting,
                None,
                None,
                None,
                Some(format!(
                    "restarting in {}",
                    crate::humantime::format_duration(*after)
                )),
            ),
            LifecycleEvent::Stopping { reason } => (
                ServiceEventKind::Stopping,
                None,
                None,
                None,
                Some(format!("{reason:?}").to_lowercase()),
            ),
            LifecycleEvent::Stopped => (ServiceEventKind::Stopped, None, None, None, None),
            LifecycleEvent::GaveUp { restarts, period } => (
                ServiceEventKind::GaveUp,
                None,
                None,
                None,
                Some(format!(
                    "{restarts} restarts within {}: gave up",
                    crate::humantime::format_duration(*period)
                )),
            ),
            LifecycleEvent::AutoShutdown => {
                (ServiceEventKind::AutoShutdown, None, None, None, None)
            }
            // Every change of a hold is one record; a new principal applies the last of each
            // path's as it finds them.
            LifecycleEvent::Held => (
                ServiceEventKind::Held,
                None,
                None,
                None,
                Some("held stopped until an operator starts it".into()),
            ),
            LifecycleEvent::Released => (
                ServiceEventKind::Released,
                None,
                None,
                None,
                Some("hold lifted by an operator".into()),
            ),
        };
        let at = self.clock.now();
        self.emit(Event::Service(ServiceRecord {
            path: l.path,
            start_no: l.start_no,
            kind,
            pid,
            exit_code,
            signal,
            message,
            at,
        }))
        .await;
    }

    /// Serves `Services` and `ServiceControl`.
    pub(super) async fn on_services_request(
        &mut self,
        path: Option<String>,
        action: Option<ServiceAction>,
    ) -> Response {
        if let (Some(path), Some(action)) = (&path, action) {
            if action != ServiceAction::Restart
                && let Some(problem) = self.store_tx.problem()
            {
                return Response::Error(ApiError::new(
                    ApiErrorKind::Unavailable,
                    format!(
                        "cannot record the change, the history file cannot be written: {problem}"
                    ),
                ));
            }
            let now = self.services.now();
            let machine = &mut self.services.machine;
            let done = match action {
                ServiceAction::Start => machine.start(path, now),
                ServiceAction::Stop => machine.stop(path, now),
                ServiceAction::Restart => machine.restart(path, now),
            };
            let steps = match done {
                Ok(steps) => steps,
                Err(e) => {
                    return Response::Error(ApiError::new(
                        ApiErrorKind::NotFound,
                        format!("{e}; `opsconsole svc status` lists them"),
                    ));
                }
            };
            self.carry_out_services(steps).await;
        }
        let now = self.services.now();
        let views = self.services.machine.view(now);
        let nodes: Vec<ServiceNode> = views
            .into_iter()
            .filter(|v| {
                path.as_deref()
                    .is_none_or(|p| v.path == p || v.path.starts_with(&format!("{p}/")))
            })
            .map(|v| self.service_node(v))
            .collect();
        if let Some(p) = &path
            && nodes.is_empty()
        {
            return Response::Error(ApiError::new(
                ApiErrorKind::NotFound,
                format!(
                    "no supervisor or service is called `{p}`; `opsconsole svc status` lists them"
                ),
            ));
        }
        Response::Services { nodes }
    }

    fn service_node(&self, v: NodeView) -> ServiceNode {
        let state = match v.state {
            NodeState::Stopped => ServiceState::Stopped,
            NodeState::Pending => ServiceState::Pending,
            NodeState::Starting => ServiceState::Starting,
            NodeState::Running => ServiceState::Running,
            NodeState::BackingOff { .. } => ServiceState::BackingOff,
            NodeState::Stopping => ServiceState::Stopping,
            NodeState::Failed => ServiceState::Failed,
        };
        let backoff_until = match v.state {
            NodeState::BackingOff { until } => Some(self.services.wall(until)),
            _ => None,
        };
        let has_ready_check = v.kind == NodeKind::Service
            && self
                .services
                .machine
                .service(&v.path)
                .is_some_and(|s| s.ready.is_some());
        ServiceNode {
            supervisor: v.kind == NodeKind::Supervisor,
            state,
            pid: v.pid,
            start_no: v.start_no,
            up_since: v.since.map(|at| self.services.wall(at)),
            backoff_until,
            last_exit: v.last_exit.as_ref().map(describe_exit),
            restarts: v.restarts,
            restarts_in_period: v.restarts_in_period,
            intensity: v.intensity,
            held: v.held,
            has_ready_check,
            path: v.path,
            name: v.name,
            depth: v.depth,
        }
    }
}
