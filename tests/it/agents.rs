//! Remote agents (`opsconsole agent`) against a real principal process over TCP on 127.0.0.1:
//! every task runs exactly once across agents; a killed or silent agent's task is retried
//! elsewhere and its late result is not applied; agents come back after the principal is
//! killed, join a principal that starts after them, and need the operator's token; forged and
//! replayed frames are dropped and counted; agents that come and go leave nothing behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::project::{BIN, Project, Stopped, eventually, free_port_triple, signal};
use crate::common::{numbered_tasks, workflow};
use nix::sys::signal::Signal;
use opsconsole::protocol::agent::{
    AgentEvent, AgentId, AgentInfo, AgentNoteKind, AgentState, AgentStatus, FromAgent, Hello,
};
use opsconsole::protocol::api::{Client, ClientExt, Request, Response};
use opsconsole::protocol::zmq::agent_link::AgentConnection;
use opsconsole::protocol::zmq::{Endpoints, ZmqClient};
use opsconsole::protocol::{Event, RunId, RunState};

pub(crate) const HEARTBEAT: &str = "200ms";

/// A principal process and where it listens.
pub(crate) struct Principal {
    pub(crate) child: Stopped,
    pub(crate) endpoints: Endpoints,
    pub(crate) agents: String,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Principal {
    pub(crate) fn start(p: &Project, listen: &str, extra: &[&str]) -> Principal {
        let mut args = vec!["principal", "--listen", listen, "--remote-only"];
        if !extra.contains(&"--agent-heartbeat") {
            args.extend_from_slice(&["--agent-heartbeat", HEARTBEAT]);
        }
        args.extend_from_slice(extra);
        let mut child = p.spawn(&args);
        let stderr = child.stderr.take().expect("stderr");
        let child = Stopped(child);
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let (endpoints, agents) = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!(
                    "the principal stopped before listening: {}",
                    log.lock().unwrap()
                ),
            };
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(rest) = line.split("listening on tcp://").nth(1) {
                let field = |after: &str| {
                    line.split(after)
                        .nth(1)
                        .and_then(|s| s.split([',', ')']).next())
                        .expect("endpoint in the line")
                        .to_string()
                };
                let requests = format!("tcp://{}", rest.split_whitespace().next().unwrap());
                break (
                    Endpoints {
                        requests,
                        events: field("(events on "),
                    },
                    field("agents on "),
                );
            }
        };
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Principal {
            child,
            endpoints,
            agents,
            log,
        }
    }

    pub(crate) async fn client(&self) -> ZmqClient {
        ZmqClient::connect(&self.endpoints, Duration::from_secs(3))
            .await
            .expect("endpoints")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// An agent process with its own data dir under `p`.
pub(crate) fn agent(p: &Project, name: &str, principal: &str, extra: &[&str]) -> Stopped {
    let dir = p.path().join(format!("agent-{name}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(&dir)
        .args([
            "agent",
            "--principal",
            principal,
            "--id",
            name,
            "--kill-grace",
            "1s",
        ])
        .args(extra)
        .current_dir(p.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    Stopped(cmd.spawn().expect("spawn agent"))
}

pub(crate) async fn agents(client: &impl Client) -> Vec<AgentStatus> {
    match client.call(Request::Agents).await {
        Ok(Response::Agents { agents }) => agents,
        other => panic!("agents: {other:?}"),
    }
}

/// Waits until the agents named are all connected and ready.
pub(crate) async fn wait_ready(client: &impl Client, names: &[&str], limit: Duration) {
    let t0 = Instant::now();
    loop {
        let list = agents(client).await;
        let ready = names.iter().all(|n| {
            list.iter()
                .any(|a| a.info.id.0 == *n && a.state == AgentState::Ready)
        });
        if ready {
            return;
        }
        assert!(
            t0.elapsed() < limit,
            "agents {names:?} not ready within {limit:?}: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn wait_state(client: &impl Client, run: RunId, limit: Duration) -> RunState {
    let t0 = Instant::now();
    loop {
        if let Ok(detail) = client.run_detail(run).await
            && detail.summary.state.is_terminal()
        {
            return detail.summary.state;
        }
        assert!(
            t0.elapsed() < limit,
            "run {run} did not end within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_run_a_thousand_tasks_each_exactly_once() {
    let run = r#""echo $OPSCONSOLE_RUN_ID-$OPSCONSOLE_TASK-$OPSCONSOLE_ATTEMPT >> ran""#;
    let tasks = numbered_tasks(250, run, false);
    let doc = workflow("many", "", &tasks);
    let p = Project::new(&[("many.yaml", &doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let _agents: Vec<Stopped> = ["a", "b", "c"]
        .iter()
        .map(|n| agent(&p, n, &principal.endpoints.requests, &["--slots", "4"]))
        .collect();
    let client = principal.client().await;
    wait_ready(&client, &["a", "b", "c"], Duration::from_secs(20)).await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(
            client
                .trigger("many", BTreeMap::new())
                .await
                .expect("trigger"),
        );
    }
    for run in &runs {
        assert_eq!(
            wait_state(&client, *run, Duration::from_secs(90)).await,
            RunState::Succeeded,
            "{}",
            principal.log.lock().unwrap()
        );
    }
    let ran = lines_of(&p.path().join("ran"));
    assert_eq!(ran.len(), 1000, "every task ran once, none twice");
    let unique: std::collections::HashSet<&String> = ran.iter().collect();
    assert_eq!(unique.len(), 1000);
    assert!(
        ran.iter().all(|l| l.ends_with("-1")),
        "no task needed a second attempt"
    );
    let busy: usize = agents(&client).await.iter().map(|a| a.busy).sum();
    assert_eq!(busy, 0, "every slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agents_task_is_retried_elsewhere_and_its_late_result_is_discarded() {
    let doc = "kind: workflow\nname: slow\ntasks:\n  s: { run: \"echo $OPSCONSOLE_ATTEMPT >> began; sleep 1.2; echo $OPSCONSOLE_ATTEMPT >> ran\", retries: 3 }\n";
    let p = Project::new(&[("slow.yaml", doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let a = agent(&p, "a", &ep, &["--slots", "1"]);
    let b = agent(&p, "b", &ep, &["--slots", "1"]);
    let client = principal.client().await;
    let mut events = client.subscribe();
    wait_ready(&client, &["a", "b"], Duration::from_secs(20)).await;

    // kill -9 of the agent running the task: it is retried on the other one.
    let run = client
        .trigger("slow", BTreeMap::new())
        .await
        .expect("trigger");
    let holder = running_on(&client, Duration::from_secs(5)).await;
    let (victim, b) = if holder == "a" { (a, b) } else { (b, a) };
    signal(victim.0.id(), Signal::SIGKILL).expect("kill -9");
    drop(victim);
    let killed = holder;
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(20)).await,
        RunState::Succeeded
    );
    let detail = client.run_detail(run).await.expect("detail");
    let attempts: Vec<String> = detail
        .attempts
        .iter()
        .map(|a| a.state.to_string())
        .collect();
    assert_eq!(attempts, ["lost", "succeeded"], "{detail:#?}");
    assert_eq!(
        lines_of(&p.path().join("ran")),
        ["2"],
        "the killed attempt's process died with its agent"
    );

    // A silent agent (its machine stopped, SIGSTOP) loses its lease; the attempt it started
    // runs to its end meanwhile, and when the agent comes back that result is late: it is
    // recorded and discarded, never applied.
    std::fs::remove_file(p.path().join("ran")).expect("rm");
    std::fs::remove_file(p.path().join("began")).expect("rm");
    // The killed agent's machine comes back.
    let a = agent(&p, &killed, &ep, &["--slots", "1"]);
    wait_ready(&client, &["a", "b"], Duration::from_secs(20)).await;
    let run = client
        .trigger("slow", BTreeMap::new())
        .await
        .expect("trigger");
    let holder = running_on(&client, Duration::from_secs(5)).await;
    let silent = if holder == killed { &a } else { &b };
    // Placed is not yet started: stopped before it spawned the task, the agent would run
    // nothing while silent.
    assert!(
        eventually(Duration::from_secs(10), || p.path().join("began").exists()),
        "the task started on its agent"
    );
    signal(silent.0.id(), Signal::SIGSTOP).expect("SIGSTOP");
    assert!(
        // Generous: the suite runs tests side by side, and a loaded machine delays the lease.
        eventually(Duration::from_secs(30), || lines_of(&p.path().join("ran"))
            .len()
            >= 2),
        "the silent agent's attempt ran to its end, and a retry ran on the other agent"
    );
    signal(silent.0.id(), Signal::SIGCONT).expect("SIGCONT");
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(20)).await,
        RunState::Succeeded
    );
    let late = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(Event::Agent(note)) if note.kind == AgentNoteKind::LateResult => break note,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("the late result is recorded");
    assert_eq!(late.agent.0, holder);
    let detail = client.run_detail(run).await.expect("detail");
    let attempts: Vec<String> = detail
        .attempts
        .iter()
        .map(|a| a.state.to_string())
        .collect();
    assert_eq!(attempts, ["lost", "succeeded"], "applied once: {detail:#?}");
}

/// The agent running the one active task.
async fn running_on(client: &impl Client, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(a) = agents(client)
            .await
            .into_iter()
            .find(|a| !a.running.is_empty())
        {
            return a.info.id.0;
        }
        assert!(t0.elapsed() < limit, "no agent took the task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reconnect_after_the_principal_is_killed_and_the_queue_drains() {
    let tasks = numbered_tasks(20, r#""sleep 0.1; echo $OPSCONSOLE_TASK >> ran""#, false);
    let doc = workflow("batch", "", &tasks);
    let p = Project::new(&[("batch.yaml", &doc)]);
    let listen = format!("tcp://127.0.0.1:{}", free_port_triple());
    let principal = Principal::start(&p, &listen, &[]);
    let _a = agent(&p, "a", &listen, &["--slots", "2"]);
    let _b = agent(&p, "b", &listen, &["--slots", "2"]);
    let client = principal.client().await;
    wait_ready(&client, &["a", "b"], Duration::from_secs(20)).await;
    let run = client
        .trigger("batch", BTreeMap::new())
        .await
        .expect("trigger");
    assert!(eventually(Duration::from_secs(10), || lines_of(
        &p.path().join("ran")
    )
    .len()
        >= 4));
    signal(principal.pid(), Signal::SIGKILL).expect("kill -9 the principal");
    drop(client);
    drop(principal);
    let principal = Principal::start(&p, &listen, &[]);
    let client = principal.client().await;
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(40)).await,
        RunState::Succeeded,
        "{}",
        principal.log.lock().unwrap()
    );
    let list = agents(&client).await;
    for name in ["a", "b"] {
        assert!(
            list.iter()
                .any(|a| a.info.id.0 == name && a.state == AgentState::Ready),
            "{name} came back: {list:#?}"
        );
    }
    let mut ran = lines_of(&p.path().join("ran"));
    ran.sort();
    ran.dedup();
    assert_eq!(ran.len(), 20, "every task ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_before_its_principal_joins_when_it_comes_up() {
    let doc = "kind: workflow\nname: one\ntasks:\n  t: { run: \"echo on-agent\" }\n";
    let p = Project::new(&[("one.yaml", doc)]);
    let listen = format!("tcp://127.0.0.1:{}", free_port_triple());
    let _early = agent(&p, "early", &listen, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let principal = Principal::start(&p, &listen, &[]);
    let client = principal.client().await;
    wait_ready(&client, &["early"], Duration::from_secs(20)).await;
    let run = client
        .trigger("one", BTreeMap::new())
        .await
        .expect("trigger");
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(20)).await,
        RunState::Succeeded
    );
}

fn hello(name: &str) -> FromAgent {
    FromAgent::Hello(Hello {
        info: AgentInfo {
            id: AgentId(name.into()),
            slots: 1,
            labels: BTreeMap::new(),
            version: "test".into(),
        },
        host: "test-host".into(),
        pid: 1,
        running: Vec::new(),
        instance: 1,
        next_report: 1,
        queue: 0,
        checks: 0,
    })
}

/// A DEALER that sends frames exactly as given.
struct RawDealer(zeromq::DealerSocket);

impl RawDealer {
    async fn connect(endpoint: &str) -> RawDealer {
        use zeromq::Socket;
        let mut s = zeromq::DealerSocket::new();
        s.connect(endpoint).await.expect("connect");
        RawDealer(s)
    }

    async fn send(&mut self, frames: Vec<Vec<u8>>) {
        use zeromq::SocketSend;
        let mut message = zeromq::ZmqMessage::from(frames[0].clone());
        for f in &frames[1..] {
            message.push_back(f.clone().into());
        }
        self.0.send(message).await.expect("send");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_coming_and_going_leave_descriptors_and_memory_flat() {
    let doc = "kind: workflow\nname: one\ntasks:\n  t: { run: \"true\" }\n";
    let p = Project::new(&[("one.yaml", doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let client = principal.client().await;
    let round = |n: usize| {
        let at = principal.agents.clone();
        async move {
            let mut conns = Vec::new();
            for i in 0..50 {
                let mut c = AgentConnection::connect(&at, Duration::from_secs(3))
                    .await
                    .expect("connect");
                c.send(&hello(&format!("churn-{i}"))).await.expect("hello");
                conns.push(c);
            }
            for c in &mut conns {
                // The welcome: each was registered.
                let m = tokio::time::timeout(Duration::from_secs(5), c.recv()).await;
                assert!(m.is_ok(), "round {n}: no welcome");
                c.send(&FromAgent::Reports {
                    first: 1,
                    events: Vec::<AgentEvent>::new(),
                })
                .await
                .expect("report");
            }
            drop(conns);
        }
    };
    round(0).await;
    round(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = client.status().await;
    let (fds0, rss0) = usage(principal.pid());
    for n in 2..20 {
        round(n).await;
    }
    // Disconnects are seen, and the agents' leases run out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = client.status().await;
    let (fds1, rss1) = usage(principal.pid());
    assert!(fds1 <= fds0 + 5, "descriptors grew: {fds0} -> {fds1}");
    assert!(
        rss1 < rss0 + 16 * 1024,
        "memory grew: {rss0} KiB -> {rss1} KiB"
    );
    let list = agents(&client).await;
    assert_eq!(
        list.len(),
        51,
        "50 agents (now lost) and the local pool: {}",
        list.len()
    );
    assert!(
        list.iter()
            .filter(|a| a.info.id.0 != "local")
            .all(|a| a.state == AgentState::Lost)
    );
}

/// Open descriptors and resident memory (KiB) of a process.
fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Hellos under two ids sent at once on one connection (the second before the engine has
/// answered the first) make one agent, not two: the second is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_saying_hello_under_two_ids_at_once_is_one_agent() {
    let doc = "kind: workflow\nname: one\ntasks:\n  t: { run: \"true\" }\n";
    let p = Project::new(&[("one.yaml", doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let client = principal.client().await;
    let mut c = AgentConnection::connect(&principal.agents, Duration::from_secs(5))
        .await
        .expect("connect");
    for round in 0..20 {
        c.send(&hello(&format!("first-{round}")))
            .await
            .expect("hello");
        c.send(&hello(&format!("second-{round}")))
            .await
            .expect("hello");
    }
    let mut refused = 0;
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), c.recv()).await {
        if matches!(m, opsconsole::protocol::agent::ToAgent::Refused { .. }) {
            refused += 1;
        }
    }
    let remote: Vec<_> = agents(&client)
        .await
        .into_iter()
        .filter(|a| a.info.id.0 != "local")
        .map(|a| a.info.id.0)
        .collect();
    assert_eq!(remote, vec!["first-0".to_string()], "refusals: {refused}");
    assert_eq!(refused, 39);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_on_the_agents_socket_change_nothing() {
    let doc = "kind: workflow\nname: one\ntasks:\n  t: { run: \"true\" }\n";
    let p = Project::new(&[("one.yaml", doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let client = principal.client().await;
    let mut raw = RawDealer::connect(&principal.agents).await;
    let valid = serde_json::to_vec(&serde_json::json!({"v":1,"id":0,"body":{"msg":"hello","info":{"id":"x","slots":1,"labels":{},"version":"t"},"host":"h","pid":1,"running":[]}})).unwrap();
    let t0 = Instant::now();
    let mut sent = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        let mut frame = if fastrand::bool() {
            let mut v = valid.clone();
            for _ in 0..fastrand::usize(1..8) {
                let i = fastrand::usize(..v.len());
                v[i] = fastrand::u8(..);
            }
            v.truncate(fastrand::usize(1..=v.len()));
            v
        } else {
            (0..fastrand::usize(1..512))
                .map(|_| fastrand::u8(..))
                .collect()
        };
        if frame.is_empty() {
            frame.push(b'{');
        }
        raw.send(vec![frame]).await;
        sent += 1;
    }
    assert!(sent > 100);
    client.status().await.expect("the principal still serves");
    // A mutation may leave a valid hello (another host name, say): at most that agent joined.
    assert!(agents(&client).await.len() <= 2);
    assert!(principal_alive(&principal));
}

pub(crate) fn principal_alive(p: &Principal) -> bool {
    signal(p.pid(), Signal::SIGCONT).is_ok()
        && std::fs::read_to_string(format!("/proc/{}/status", p.pid()))
            .map(|s| !s.contains("State:\tZ"))
            .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_tasks_wait_for_a_matching_agent_and_a_drained_agent_exits() {
    let doc = "kind: workflow\nname: gpu\ntasks:\n  train: { run: \"echo trained >> ran\", agent: { gpu: \"true\" } }\n";
    let p = Project::new(&[("gpu.yaml", doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let _plain = agent(&p, "plain", &ep, &[]);
    let client = principal.client().await;
    wait_ready(&client, &["plain"], Duration::from_secs(20)).await;
    let run = client
        .trigger("gpu", BTreeMap::new())
        .await
        .expect("trigger");
    // It waits, and says why.
    let t0 = Instant::now();
    let why = loop {
        if let Ok(Response::Queue(q)) = client.call(Request::Queue).await
            && let Some(w) = q.ready_tasks.first().and_then(|t| t.waiting_for.clone())
        {
            break w;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no reason given");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(why.contains("gpu=true"), "{why}");
    let mut gpu = agent(&p, "gpu", &ep, &["--label", "gpu=true"]);
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(20)).await,
        RunState::Succeeded
    );
    assert_eq!(lines_of(&p.path().join("ran")), ["trained"]);

    // Drained: it finishes (nothing runs), is let go, and exits 0.
    match client
        .call(Request::Drain {
            agent: AgentId("gpu".into()),
        })
        .await
    {
        Ok(Response::Agents { .. }) => {}
        other => panic!("drain: {other:?}"),
    }
    let exited = eventually(Duration::from_secs(10), || {
        matches!(gpu.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "a drained agent exits");
    assert!(gpu.0.wait().expect("status").success());
    let list = agents(&client).await;
    let state = list.iter().find(|a| a.info.id.0 == "gpu").map(|a| a.state);
    assert_eq!(state, Some(AgentState::Drained));
    // Cordoning an unknown agent names the known ones.
    match client
        .call(Request::Cordon {
            agent: AgentId("nope".into()),
            cordon: true,
        })
        .await
    {
        Ok(Response::Error(e)) => assert!(e.message.contains("plain"), "{e:?}"),
        other => panic!("cordon: {other:?}"),
    }
}

#[test]
fn two_agents_cannot_share_a_data_dir() {
    // One data dir is one agent id: a second agent on it would evict the first one's work.
    let p = Project::new(&[]);
    let listen = format!("tcp://127.0.0.1:{}", free_port_triple());
    let _first = agent(&p, "one", &listen, &[]);
    let dir = p.path().join("agent-one");
    assert!(eventually(Duration::from_secs(5), || dir
        .join("agent.lock")
        .exists()));
    std::thread::sleep(Duration::from_millis(200));
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["agent", "--principal", &listen])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another agent") && err.contains("--data-dir"),
        "{err}"
    );
}
