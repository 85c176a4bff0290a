//! Checks placed on agents by labels (a monitor's `from:`, issue 21 item 4): real `opsconsole
//! agent` processes on 127.0.0.1 joined to a principal in this process, batches run through
//! the principal's `Locations`. One agent cannot reach the target: each agent runs in a mount
//! namespace of its own (`unshare -m`) where `/etc/hosts` is bind-mounted, so the target's host
//! name resolves to the test's listener for `eu` and to a loopback address nothing listens on
//! for `us`. Agents that lie are counted and dropped.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opsconsole::principal::{LocationError, PrincipalConfig, PrincipalHandle};
use opsconsole::protocol::agent::{AgentId, AgentInfo, FromAgent, Hello, ToAgent};
use opsconsole::protocol::api::Client;
use opsconsole::protocol::batch::{CHECKS_VERSION, CheckResults, MAX_RESULT_BODY};
use opsconsole::protocol::check::{CheckResult, Probe, TcpProbe};
use opsconsole::protocol::zmq::agent_link::AgentConnection;
use opsconsole::protocol::zmq::{Endpoints, serve_principal};
use opsconsole::store::Store;
use tokio_util::sync::CancellationToken;

use crate::agents::{agents, wait_ready};
use crate::common::project::{BIN, Stopped, signal, text};

/// The target's host name, as the agents' own `/etc/hosts` resolve it.
pub(crate) const TARGET: &str = "target.opsconsole.test";

/// A principal in this process with an agents socket on 127.0.0.1.
pub(crate) struct Principal {
    pub(crate) handle: Arc<PrincipalHandle>,
    pub(crate) requests: String,
    pub(crate) agents: String,
    pub(crate) dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Principal {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Principal {
    /// Over `catalog`, with agents heartbeating every `heartbeat`.
    pub(crate) async fn start(catalog: opsconsole::spec::Catalog, heartbeat: Duration) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, recovered) = Store::open(dir.path()).expect("open store");
        let handle = Arc::new(PrincipalHandle::start(
            catalog,
            store,
            recovered,
            PrincipalConfig {
                slots: 2,
                kill_grace: Duration::from_millis(500),
                workflows_dir: None,
                spec_problems: Vec::new(),
                watchdog: false,
                one_off: false,
                agent_heartbeat: heartbeat,
                workdir: dir.path().to_path_buf(),
            },
        ));
        let stop = CancellationToken::new();
        let endpoints = Endpoints::from_listen("tcp://127.0.0.1:0").expect("endpoints");
        let client: Arc<dyn Client> = handle.clone();
        let bound = serve_principal(&endpoints, client, stop.clone(), Some(handle.agent_gate()))
            .await
            .expect("serve");
        Self {
            handle,
            requests: bound.endpoints.requests,
            agents: bound.agents.expect("an agents socket"),
            dir,
            stop,
        }
    }
}

/// Whether this machine lets a test bind-mount a file over `/etc/hosts` in a mount namespace
/// of its own (root, `unshare`); the reason when not.
pub(crate) fn can_unshare() -> Result<(), String> {
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind /etc/hostname /etc/hosts && echo ok",
        ])
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if String::from_utf8_lossy(&out.stdout).contains("ok") {
        Ok(())
    } else {
        Err(format!(
            "unshare -m with a bind mount over /etc/hosts failed (root is needed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// An `opsconsole agent` labelled `region=NAME` whose `/etc/hosts` says `TARGET` is `address`.
pub(crate) fn agent_seeing(dir: &Path, name: &str, requests: &str, address: &str) -> Stopped {
    let data = dir.join(format!("agent-{name}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    let hosts = data.join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n{address} {TARGET}\n"))
        .expect("write hosts");
    let script = format!(
        "mount --bind '{}' /etc/hosts && exec '{BIN}' --data-dir '{}' agent --principal {requests} \
         --id {name} --label region={name} --kill-grace 1s",
        hosts.display(),
        data.display()
    );
    let child = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn agent");
    Stopped(child)
}

/// A TCP server on 127.0.0.1 that accepts and holds each connection open without a word,
/// until the test ends.
pub(crate) fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

pub(crate) fn labels(k: &str, v: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(k.to_string(), v.to_string())])
}

fn tcp(host: &str, port: u16, expect: Option<&str>) -> Probe {
    Probe::Tcp(TcpProbe {
        host: host.into(),
        port,
        send: expect.map(|_| "ping\n".to_string()),
        expect: expect.map(str::to_string),
    })
}

fn show(results: &[(u32, CheckResult)]) -> String {
    results
        .iter()
        .map(|(k, r)| {
            format!(
                "{k}: connected={} ip={:?} error={:?}",
                r.connected, r.ip, r.error
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_run_a_batch_each_and_only_the_one_that_reaches_the_target_succeeds() {
    if let Err(why) = can_unshare() {
        return crate::common::skip(why);
    }
    let port = silent_server();
    let p = Principal::start(Default::default(), Duration::from_millis(300)).await;
    let _eu = agent_seeing(p.dir.path(), "eu", &p.requests, "127.0.0.1");
    // A loopback address the test's listener is not bound to: refused at once.
    let us = agent_seeing(p.dir.path(), "us", &p.requests, "127.0.0.2");
    wait_ready(p.handle.as_ref(), &["eu", "us"], Duration::from_secs(30)).await;
    let locations = p.handle.locations();
    let batch: Vec<(u32, Probe, Duration)> = (0..5)
        .map(|k| (100 + k, tcp(TARGET, port, None), Duration::from_secs(3)))
        .collect();

    let eu = locations
        .run(&labels("region", "eu"), batch.clone())
        .await
        .expect("eu answers");
    println!("eu: {}", show(&eu));
    assert_eq!(
        eu.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![100, 101, 102, 103, 104]
    );
    assert!(
        eu.iter().all(|(_, r)| r.connected && r.error.is_none()),
        "{}",
        show(&eu)
    );

    let us_results = locations
        .run(&labels("region", "us"), batch.clone())
        .await
        .expect("us answers");
    println!("us: {}", show(&us_results));
    assert_eq!(us_results.len(), 5);
    assert!(
        us_results
            .iter()
            .all(|(_, r)| !r.connected && r.error.is_some()),
        "{}",
        show(&us_results)
    );

    // The in-process pool is a location too (`local: "true"`).
    let local = locations
        .run(
            &labels("local", "true"),
            vec![(7, tcp("127.0.0.1", port, None), Duration::from_secs(3))],
        )
        .await
        .expect("the local pool answers");
    assert!(local[0].1.connected, "{}", show(&local));

    // No agent with the labels: an error that says so, at once.
    let none = locations
        .run(&labels("region", "mars"), batch.clone())
        .await;
    println!("mars: {none:?}");
    assert!(
        matches!(&none, Err(LocationError::NoAgent { why, .. }) if why.contains("region=mars")),
        "{none:?}"
    );

    // An agent lost before it answers: its location is unknown (an error), not failed.
    let slow = vec![(
        1,
        tcp("127.0.0.1", port, Some("pong")),
        Duration::from_secs(30),
    )];
    let waiting = {
        let locations = locations.clone();
        tokio::spawn(async move { locations.run(&labels("region", "us"), slow).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(us.0.id(), Signal::SIGKILL).expect("kill us");
    let t0 = Instant::now();
    let lost = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("answered within 20 s")
        .expect("task");
    println!("us killed: {lost:?} after {:?}", t0.elapsed());
    assert!(
        matches!(&lost, Err(LocationError::Lost { agent }) if agent == "us"),
        "{lost:?}"
    );
    drop(us);
}

/// An agent connection that says hello as `name` (labels `region=NAME`, runs check batches).
async fn liar(at: &str, name: &str) -> AgentConnection {
    let mut conn = AgentConnection::connect(at, Duration::from_secs(3))
        .await
        .expect("connect");
    let hello = Hello {
        info: AgentInfo {
            id: AgentId(name.into()),
            slots: 1,
            labels: labels("region", name),
            version: "liar".into(),
        },
        host: "liar-host".into(),
        pid: 7,
        running: Vec::new(),
        instance: 1,
        next_report: 1,
        queue: 0,
        checks: CHECKS_VERSION,
    };
    conn.send(&FromAgent::Hello(hello)).await.expect("hello");
    match tokio::time::timeout(Duration::from_secs(5), conn.recv()).await {
        Ok(Ok(ToAgent::Welcome { .. })) => conn,
        other => panic!("{name} not welcomed: {other:?}"),
    }
}

/// The next batch `conn` is sent (heartbeats answered meanwhile).
async fn next_batch(conn: &mut AgentConnection) -> opsconsole::protocol::batch::CheckBatch {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), conn.recv())
            .await
            .expect("a batch within 10 s")
            .expect("recv");
        match m {
            ToAgent::Checks(batch) => return batch,
            ToAgent::Heartbeat => {
                let _ = conn.send(&FromAgent::Heartbeat { running: None }).await;
            }
            _ => {}
        }
    }
}

fn ok_result(ms: u64) -> CheckResult {
    CheckResult {
        connected: true,
        response_time: Duration::from_millis(ms),
        ..CheckResult::default()
    }
}

async fn refused_of(client: &impl Client, name: &str) -> u64 {
    agents(client)
        .await
        .into_iter()
        .find(|a| a.info.id.0 == name)
        .map_or(0, |a| a.refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lying_in_each_field_of_its_check_results_is_counted_and_dropped() {
    let p = Principal::start(Default::default(), Duration::from_secs(2)).await;
    let mut a = liar(&p.agents, "liar-a").await;
    let mut b = liar(&p.agents, "liar-b").await;
    let locations = p.handle.locations();
    let batch = |n: u32| -> Vec<(u32, Probe, Duration)> {
        (0..n)
            .map(|k| (50 + k, tcp("127.0.0.1", 9, None), Duration::from_secs(2)))
            .collect()
    };
    let for_a = {
        let l = locations.clone();
        let batch = batch(2);
        tokio::spawn(async move { l.run(&labels("region", "liar-a"), batch).await })
    };
    let for_b = {
        let l = locations.clone();
        let batch = batch(1);
        tokio::spawn(async move { l.run(&labels("region", "liar-b"), batch).await })
    };
    let batch_a = next_batch(&mut a).await;
    let batch_b = next_batch(&mut b).await;
    assert_eq!(batch_a.checks.len(), 2);
    let send = |results: Vec<(u32, CheckResult)>, batch| {
        FromAgent::Checked(CheckResults { batch, results })
    };
    let huge = CheckResult {
        body: "x".repeat(MAX_RESULT_BODY + 1),
        ..ok_result(1)
    };
    let unknown = opsconsole::protocol::batch::BatchId(batch_a.id.0 + 1000);
    for lie in [
        // A batch never issued.
        send(vec![(0, ok_result(1))], unknown),
        // Keys out of range.
        send(
            vec![(2, ok_result(1)), (u32::MAX, ok_result(1))],
            batch_a.id,
        ),
        // A body over the cap.
        send(vec![(1, huge)], batch_a.id),
        // The same key twice (the first is kept).
        send(vec![(0, ok_result(5)), (0, ok_result(6))], batch_a.id),
    ] {
        a.send(&lie).await.expect("send");
    }
    // Someone else's batch: b answers a's.
    b.send(&send(vec![(1, ok_result(9))], batch_a.id))
        .await
        .expect("send");
    let client = p.handle.as_ref();
    let t0 = Instant::now();
    while refused_of(client, "liar-a").await < 5 || refused_of(client, "liar-b").await < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "refusals not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ra, rb) = (
        refused_of(client, "liar-a").await,
        refused_of(client, "liar-b").await,
    );
    println!("refused: liar-a {ra}, liar-b {rb}");
    assert_eq!(
        (ra, rb),
        (5, 1),
        "1 unknown + 2 out of range + 1 huge + 1 twice; 1 foreign"
    );
    assert!(!for_a.is_finished(), "a's batch still waits for index 1");

    // The honest end: a answers index 1; b answers its own.
    a.send(&send(vec![(1, ok_result(7))], batch_a.id))
        .await
        .expect("send");
    b.send(&send(vec![(0, ok_result(3))], batch_b.id))
        .await
        .expect("send");
    let got_a = for_a.await.expect("task").expect("a answered");
    let got_b = for_b.await.expect("task").expect("b answered");
    println!("a: {}; b: {}", show(&got_a), show(&got_b));
    assert_eq!(
        got_a
            .iter()
            .map(|(k, r)| (*k, r.response_time.as_millis()))
            .collect::<Vec<_>>(),
        vec![(50, 5), (51, 7)],
        "the first answer of key 0 is kept, b's answer for a's batch is not"
    );
    assert_eq!(got_b.len(), 1);
    // The principal still serves.
    let local = locations
        .run(
            &labels("local", "true"),
            vec![(
                1,
                tcp("127.0.0.1", silent_server(), None),
                Duration::from_secs(3),
            )],
        )
        .await
        .expect("local answers");
    assert!(local[0].1.connected);
}

// ---- `from:` monitors through the real binary ----------------------------------------------

/// Two monitors of one target checked from `eu` (reaches it) and `us` (refused): with
/// `quorum: 2` one failing location pages nobody, with `quorum: 1` it does.
fn located_monitors(port: u16) -> String {
    format!(
        "kind: monitor\ndefaults:\n  every: 1s\n  timeout: 500ms\n  unhealthy_after: 2\n  healthy_after: 1\n  \
         from: [{{region: eu}}, {{region: us}}]\n  \
         check: {{ tcp: {{ host: {TARGET}, port: {port} }} }}\n\
         monitors:\n  - {{ name: edge, quorum: 2 }}\n  - {{ name: edge-strict, quorum: 1 }}\n"
    )
}

/// `monitor show NAME --json` through the principal at `at`.
fn located_detail(p: &crate::common::project::Project, at: &str, name: &str) -> serde_json::Value {
    let out = p.run(&["--principal", at, "monitor", "show", name, "--json"]);
    // Not JSON: what it said instead, for the failure message.
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        serde_json::Value::String(format!(
            "{}: {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        ))
    })
}

fn located_state(detail: &serde_json::Value) -> String {
    detail["summary"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until `name`'s detail satisfies `want`; the last detail seen.
fn wait_detail(
    p: &crate::common::project::Project,
    at: &str,
    name: &str,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let d = located_detail(p, at, name);
        if want(&d) {
            return d;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{name}: {what} not seen within 60 s; last: {d:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn location<'a>(detail: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    detail["locations"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["location"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn a_quorum_of_two_locations_holds_one_failing_path_and_a_lost_agent_is_unknown() {
    if let Err(why) = can_unshare() {
        return crate::common::skip(why);
    }
    let port = silent_server();
    let p = crate::common::project::Project::new(&[("edge.yaml", &located_monitors(port))]);
    let principal = crate::agents::Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let at = principal.endpoints.requests.clone();
    let eu = agent_seeing(p.path(), "eu", &at, "127.0.0.1");
    let _us = agent_seeing(p.path(), "us", &at, "127.0.0.2");

    let strict = wait_detail(&p, &at, "edge-strict", "unhealthy", |d| {
        located_state(d) == "unhealthy"
    });
    println!("quorum 1: {}", strict["summary"]);
    let cause = strict["summary"]["cause"].to_string();
    assert!(cause.contains("1 of 2 locations failed"), "{cause}");

    let edge = wait_detail(&p, &at, "edge", "healthy with both locations seen", |d| {
        located_state(d) == "healthy"
            && location(d, "region=eu")["ok"] == true
            && location(d, "region=us")["ok"] == false
    });
    println!("quorum 2: {} {}", edge["summary"], edge["locations"]);
    // A few rounds later it still is: one failing path pages nobody.
    std::thread::sleep(Duration::from_secs(3));
    let edge = located_detail(&p, &at, "edge");
    assert_eq!(located_state(&edge), "healthy", "{edge:#}");
    assert!(edge["incident"].is_null(), "no incident: {edge:#}");

    // eu's agent is lost: its location is unknown, not failed, so the quorum of 2 is still
    // not met and `edge` stays as it was.
    signal(eu.0.id(), Signal::SIGKILL).expect("kill eu");
    let edge = wait_detail(&p, &at, "edge", "eu unknown", |d| {
        location(d, "region=eu")["ok"].is_null()
            && location(d, "region=eu")["seen"]
                .as_str()
                .is_some_and(|s| s.starts_with("unknown"))
    });
    println!("eu lost: {} {}", edge["summary"], edge["locations"]);
    std::thread::sleep(Duration::from_secs(3));
    let edge = located_detail(&p, &at, "edge");
    assert_eq!(located_state(&edge), "healthy", "{edge:#}");
    let out = p.run(&["--principal", &at, "incidents", "--open", "--json"]);
    let open: serde_json::Value = serde_json::from_slice(&out.stdout).expect("incidents");
    let names: Vec<&str> = open
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["monitor"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["edge-strict"], "{open:#}");
    drop(principal);
}
