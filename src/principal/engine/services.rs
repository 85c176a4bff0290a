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
}

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
        let mut steps = Vec::new();
        for path in held {
            // A path that no longer exists was held in an older spec: nothing to hold.
            if let Ok(s) = self.services.machine.stop(&path, now) {
                steps.extend(s);
            }
        }
        steps.extend(self.services.machine.start_all(now));
        self.carry_out_services(steps).await;
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
                Step::Spawn { path, start_no } => self.spawn_service(path, start_no).await,
                Step::Stop { path, start_no, .. } => {
                    self.services.checks.remove(&path);
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
        };
        self.services
            .probe_env
            .insert(path.clone(), (probe_env, spec.cwd.clone()));
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
                let message = if *requested {
                    format!("{how} (stopped by its supervisor)")
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
            let hold = match action {
                ServiceAction::Stop => Some((ServiceEventKind::Held, "stopped by an operator")),
                ServiceAction::Start => {
                    Some((ServiceEventKind::Released, "started by an operator"))
                }
                ServiceAction::Restart => None,
            };
            if let Some((kind, message)) = hold {
                let at = self.clock.now();
                self.emit(Event::Service(ServiceRecord {
                    path: path.clone(),
                    start_no: 0,
                    kind,
                    pid: None,
                    exit_code: None,
                    signal: None,
                    message: Some(message.into()),
                    at,
                }))
                .await;
            }
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
