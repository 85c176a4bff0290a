//! Agents that lie, impostors, restarts under the same id and principal stalls, against a real
//! principal process over TCP on 127.0.0.1 (issue 20, items 1-4 and 8). Every test here was
//! written to fail on the code before its fix.
//!
//! The liars speak on a loopback agents socket without CURVE (any local user can), through
//! the crate's own agent connection, so that every message is well formed and only its fields
//! lie.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::signal::Signal;
use opsconsole::protocol::agent::{
    AgentEvent, AgentId, AgentInfo, AgentStatus, Exit, FromAgent, Hello, ToAgent, WorkEnd, WorkId,
};
use opsconsole::protocol::api::{Client, ClientExt, Request, Response};
use opsconsole::protocol::zmq::agent_link::AgentConnection;
use opsconsole::protocol::{AttemptKey, LogLine, RunId, RunState, Stream};

use crate::agents::{Principal, agent, agents, lines_of, principal_alive, wait_ready, wait_state};
use crate::common::project::{BIN, Project, Stopped, eventually, signal};

fn hello(name: &str, host: &str, instance: u64) -> Hello {
    Hello {
        info: AgentInfo {
            id: AgentId(name.into()),
            slots: 1,
            labels: BTreeMap::new(),
            version: "liar".into(),
        },
        host: host.into(),
        pid: 7,
        running: Vec::new(),
        instance,
        next_report: 1,
        queue: 0,
        checks: 0,
    }
}

/// A connection that says hello as `hello` and returns what the principal answered first.
async fn join(at: &str, hello: Hello) -> (AgentConnection, ToAgent) {
    let mut conn = AgentConnection::connect(at, Duration::from_secs(3))
        .await
        .expect("connect");
    conn.send(&FromAgent::Hello(hello)).await.expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(5), conn.recv())
        .await
        .expect("an answer to the hello")
        .expect("recv");
    (conn, answer)
}

fn started(id: WorkId) -> AgentEvent {
    AgentEvent::Started {
        id,
        at: Utc::now(),
        pid: Some(1),
    }
}

fn output(id: WorkId, text: &str) -> AgentEvent {
    AgentEvent::Output {
        id,
        stream: Stream::Stdout,
        lines: vec![LogLine {
            seq: 0,
            at: Utc::now(),
            text: text.into(),
        }],
        charge: Default::default(),
    }
}

fn finished(id: WorkId, code: i32) -> AgentEvent {
    AgentEvent::Finished(WorkEnd {
        id,
        started_at: Utc::now(),
        ended_at: Utc::now(),
        exit: Exit::Code(code),
        stopped: None,
        output: None,
    })
}

fn reports(first: u64, events: Vec<AgentEvent>) -> FromAgent {
    FromAgent::Reports { first, events }
}

/// The task attempt an agent runs, once it runs one.
async fn running_task(client: &impl Client, agent: &str, limit: Duration) -> AttemptKey {
    let t0 = Instant::now();
    loop {
        let list = agents(client).await;
        if let Some(key) = list
            .iter()
            .filter(|a| a.info.id.0 == agent)
            .flat_map(|a| a.running.iter())
            .find_map(|w| w.as_task().cloned())
        {
            return key;
        }
        assert!(t0.elapsed() < limit, "{agent} took no task: {list:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(client: &impl Client, agent: &str) -> Option<AgentStatus> {
    agents(client)
        .await
        .into_iter()
        .find(|a| a.info.id.0 == agent)
}

/// Every stored line of a run.
async fn logs(client: &impl Client, run: RunId) -> Vec<String> {
    match client
        .call(Request::Logs {
            run_id: run,
            task: None,
            stream: None,
            offset: 0,
            limit: 1000,
            from_end: false,
        })
        .await
    {
        Ok(Response::Lines { lines, .. }) => lines.into_iter().map(|l| l.line).collect(),
        other => panic!("logs: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lying_in_every_field_is_counted_and_dropped_and_speaks_for_nothing_else() {
    let doc = "kind: workflow\nname: victim\ntasks:\n  t: { run: \"sleep 1.5; echo real-output\", agent: { role: real } }\n";
    let p = Project::new(&[("victim.yaml", doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let _real = agent(&p, "real", &ep, &["--slots", "1", "--label", "role=real"]);
    let client = principal.client().await;
    wait_ready(&client, &["real"], Duration::from_secs(20)).await;
    let run = client
        .trigger("victim", BTreeMap::new())
        .await
        .expect("trigger");
    let key = running_task(&client, "real", Duration::from_secs(30)).await;
    let (mut liar, welcome) = join(&principal.agents, hello("liar", "liar-host", 1)).await;
    assert!(matches!(welcome, ToAgent::Welcome { .. }), "{welcome:?}");

    let real = WorkId::Task(key.clone());
    let out_of_range = WorkId::Task(AttemptKey {
        task_idx: 99,
        ..key.clone()
    });
    let never = WorkId::Task(AttemptKey {
        run_id: RunId(99_999),
        task_idx: 0,
        task: "x".into(),
        attempt: 1,
    });
    let lies = [
        // A task index out of range (this crashed the engine).
        reports(1, vec![started(out_of_range.clone())]),
        reports(2, vec![finished(out_of_range, 0)]),
        // Another agent's work: its output and its end.
        reports(
            3,
            vec![output(real.clone(), "INJECTED by liar into real's task")],
        ),
        reports(4, vec![finished(real.clone(), 1)]),
        // Work never given to anyone.
        reports(
            5,
            vec![started(never.clone()), output(never, "INJECTED never")],
        ),
        // Report numbers that overflow, jump, or start at 0.
        reports(u64::MAX, vec![finished(real.clone(), 1)]),
        reports(1000, vec![finished(real.clone(), 1)]),
        reports(0, vec![finished(real.clone(), 1)]),
        // Claims the real agent's work in a heartbeat: changes nothing.
        FromAgent::Heartbeat {
            running: Some(vec![real.clone()]),
        },
    ];
    for lie in &lies {
        liar.send(lie).await.expect("send");
    }
    // Hellos out of bounds, on new connections: refused, nothing registered.
    let mut big = hello("big", "h", 1);
    big.info.labels.insert("l".into(), "x".repeat(1 << 20));
    let (_c1, answer) = join(&principal.agents, big).await;
    assert!(
        matches!(&answer, ToAgent::Refused { reason } if reason.contains("label")),
        "{answer:?}"
    );
    let mut wide = hello("wide", "h", 1);
    wide.info.slots = usize::MAX;
    let (_c2, answer) = join(&principal.agents, wide).await;
    assert!(
        matches!(&answer, ToAgent::Refused { reason } if reason.contains("slots")),
        "{answer:?}"
    );

    // 5 reports about work not the liar's (the two in one message count once each), three
    // batches numbered out of range, two hellos.
    let expected_liar = 3 + 1 + 1 + 1 + 1 + 3;
    assert!(
        eventually(Duration::from_secs(10), || {
            let counted =
                futures::executor::block_on(status_of(&client, "liar")).map_or(0, |a| a.refused);
            counted >= expected_liar - 1
        }),
        "the liar's refused messages are counted: {:#?}",
        status_of(&client, "liar").await
    );
    let liar_status = status_of(&client, "liar").await.expect("liar listed");
    println!("liar refused {} message(s)", liar_status.refused);
    let status = client.status().await.expect("the principal still serves");
    assert!(
        status.agent_messages_refused >= liar_status.refused + 2,
        "status counts them all, hellos too: {}",
        status.agent_messages_refused
    );
    assert!(status_of(&client, "big").await.is_none());
    assert!(status_of(&client, "wide").await.is_none());
    assert_eq!(status.slots, 2, "slot totals: real 1 + liar 1");

    assert_eq!(
        wait_state(&client, run, Duration::from_secs(20)).await,
        RunState::Succeeded,
        "the liar's `finished 1` for the real agent's task was not applied: {}",
        principal.log.lock().unwrap()
    );
    let lines = logs(&client, run).await;
    assert!(lines.iter().any(|l| l == "real-output"), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("INJECTED")),
        "nothing the liar said is stored as another's output: {lines:?}"
    );
    let detail = client.run_detail(run).await.expect("detail");
    assert_eq!(detail.attempts.len(), 1, "{detail:#?}");
    assert!(principal_alive(&principal));
    // And it runs another workflow afterwards.
    let again = client
        .trigger("victim", BTreeMap::new())
        .await
        .expect("trigger");
    assert_eq!(
        wait_state(&client, again, Duration::from_secs(20)).await,
        RunState::Succeeded
    );
}

/// Random well-formed and mutated agent messages for a bounded time: the principal keeps
/// serving, refuses and counts what is not the sender's, and runs a workflow correctly after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_well_formed_agent_messages_never_crash_the_principal_or_touch_real_work() {
    let tasks: String = (0..10)
        .map(|i| {
            format!(
                "  t{i}: {{ run: \"sleep 0.1; echo $OPSCONSOLE_TASK-$OPSCONSOLE_ATTEMPT >> ran\", agent: {{ role: real }} }}\n"
            )
        })
        .collect();
    let doc = format!("kind: workflow\nname: ten\ntasks:\n{tasks}");
    let p = Project::new(&[("ten.yaml", &doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let _real = agent(&p, "real", &ep, &["--slots", "2", "--label", "role=real"]);
    let client = principal.client().await;
    wait_ready(&client, &["real"], Duration::from_secs(20)).await;
    let first = client
        .trigger("ten", BTreeMap::new())
        .await
        .expect("trigger");
    let (mut liar, _) = join(&principal.agents, hello("fuzz", "fuzz-host", 1)).await;
    let mut sent = 0u64;
    let mut next = 1u64;
    let mut hellos = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        // Work ids near the real ones: the live run, neighbouring runs, indexes and attempts
        // in and out of range, services and checks.
        let work = || -> WorkId {
            match fastrand::u8(..6) {
                0 => WorkId::Service(opsconsole::protocol::agent::ServiceStart {
                    path: "web/api".into(),
                    start: fastrand::u64(..3),
                }),
                1 => WorkId::Check(opsconsole::protocol::agent::CheckProbe {
                    monitor: "disk".into(),
                    probe: fastrand::u64(..),
                }),
                _ => WorkId::Task(AttemptKey {
                    run_id: RunId(first.0.wrapping_add(fastrand::u64(..3)).wrapping_sub(1)),
                    task_idx: [0, 1, 9, 10, 99, usize::MAX][fastrand::usize(..6)],
                    task: format!("t{}", fastrand::u8(..12)).into(),
                    attempt: [0, 1, 2, u32::MAX][fastrand::usize(..4)],
                }),
            }
        };
        let message = match fastrand::u8(..10) {
            0 => FromAgent::Heartbeat {
                running: Some((0..fastrand::usize(..4)).map(|_| work()).collect()),
            },
            1 => FromAgent::Heartbeat { running: None },
            2 => {
                // A hello under a random or the real agent's id, from another connection.
                let name = ["real", "fuzz", "other"][fastrand::usize(..3)];
                let mut h = hello(name, "elsewhere", fastrand::u64(..3));
                h.info.slots = [0, 1, usize::MAX][fastrand::usize(..3)];
                h.running = (0..fastrand::usize(..3)).map(|_| work()).collect();
                if hellos.len() < 20 {
                    let (c, _) = join(&principal.agents, h).await;
                    hellos.push(c);
                }
                continue;
            }
            _ => {
                let events: Vec<AgentEvent> = (0..fastrand::usize(1..4))
                    .map(|_| match fastrand::u8(..3) {
                        0 => started(work()),
                        1 => output(work(), "INJECTED by fuzz"),
                        _ => finished(work(), fastrand::i32(..3)),
                    })
                    .collect();
                let first = match fastrand::u8(..5) {
                    0 => 0,
                    1 => u64::MAX - fastrand::u64(..3),
                    2 => fastrand::u64(..),
                    _ => next,
                };
                if first == next {
                    next += events.len() as u64;
                }
                reports(first, events)
            }
        };
        liar.send(&message).await.expect("send");
        sent += 1;
        // A pause now and then keeps the flood from starving the other tests on a busy
        // machine (CI runs them side by side); thousands of messages a second remain.
        if sent.is_multiple_of(64) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let status = client.status().await.expect("the principal still serves");
    println!(
        "fuzz: {sent} messages sent in 3 s, {} refused",
        status.agent_messages_refused
    );
    assert!(sent > 100 && status.agent_messages_refused > 0);
    assert_eq!(
        wait_state(&client, first, Duration::from_secs(30)).await,
        RunState::Succeeded,
        "{}",
        principal.log.lock().unwrap()
    );
    let second = client
        .trigger("ten", BTreeMap::new())
        .await
        .expect("trigger");
    assert_eq!(
        wait_state(&client, second, Duration::from_secs(30)).await,
        RunState::Succeeded
    );
    let mut ran = lines_of(&p.path().join("ran"));
    ran.sort();
    assert_eq!(ran.len(), 20, "every task ran once per run: {ran:?}");
    assert!(ran.iter().all(|l| l.ends_with("-1")), "{ran:?}");
    for run in [first, second] {
        let lines = logs(&client, run).await;
        assert!(!lines.iter().any(|l| l.contains("INJECTED")), "{lines:?}");
    }
    assert!(principal_alive(&principal));
}

/// A hello under a live agent's id from another host is refused and changes nothing: the next
/// assignment, with its environment, goes to the real agent, never to the impostor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_impostor_hello_changes_nothing_and_gets_no_secret() {
    let doc = "kind: workflow\nname: secret\ntasks:\n  t: { run: \"echo $SECRET >> got\", env: { SECRET: hunter2 } }\n";
    let p = Project::new(&[("secret.yaml", doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let _real = agent(&p, "real", &ep, &["--slots", "1"]);
    let client = principal.client().await;
    wait_ready(&client, &["real"], Duration::from_secs(20)).await;
    let (mut impostor, answer) = join(&principal.agents, hello("real", "impostor-host", 9)).await;
    assert!(
        matches!(&answer, ToAgent::Refused { reason } if reason.contains("in use")),
        "{answer:?}"
    );
    let run = client
        .trigger("secret", BTreeMap::new())
        .await
        .expect("trigger");
    // Whatever reaches the impostor within two seconds, none of it is work.
    let t0 = Instant::now();
    while let Some(left) = Duration::from_secs(2).checked_sub(t0.elapsed()) {
        match tokio::time::timeout(left, impostor.recv()).await {
            Ok(Ok(message)) => assert!(
                !matches!(message, ToAgent::Assign { .. }),
                "the impostor was given work: {message:?}"
            ),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(20)).await,
        RunState::Succeeded,
        "{}",
        principal.log.lock().unwrap()
    );
    assert_eq!(lines_of(&p.path().join("got")), ["hunter2"]);
    let real = status_of(&client, "real").await.expect("listed");
    assert!(real.address.contains("(pid "), "{real:?}");
    assert!(!real.address.contains("impostor"), "{real:?}");
}

/// An agent process started in its own data dir, with its stderr in a file.
fn agent_logged(p: &Project, name: &str, dir: &str, principal: &str, extra: &[&str]) -> Stopped {
    let dir = p.path().join(dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let log = std::fs::File::create(dir.join("stderr")).expect("log file");
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
        .stderr(log);
    Stopped(cmd.spawn().expect("spawn agent"))
}

/// A second live agent process under an id in use is refused with a clear error, and the
/// first one's work is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_process_with_the_same_id_is_refused() {
    let tasks: String = (0..10)
        .map(|i| format!("  t{i}: {{ run: \"sleep 0.2; echo $OPSCONSOLE_TASK >> ran\" }}\n"))
        .collect();
    let doc = format!("kind: workflow\nname: ten\ntasks:\n{tasks}");
    let p = Project::new(&[("ten.yaml", &doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let _first = agent_logged(&p, "a1", "first", &ep, &["--slots", "2"]);
    let client = principal.client().await;
    wait_ready(&client, &["a1"], Duration::from_secs(20)).await;
    let mut second = agent_logged(&p, "a1", "second", &ep, &["--slots", "2"]);
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = second.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the second agent was not refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(p.path().join("second/stderr")).unwrap_or_default();
    println!("second agent: {}", said.trim());
    assert!(!status.success());
    assert!(
        said.contains("in use by another agent process") && said.contains("another --id"),
        "{said}"
    );
    let run = client
        .trigger("ten", BTreeMap::new())
        .await
        .expect("trigger");
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(30)).await,
        RunState::Succeeded
    );
    assert_eq!(
        lines_of(&p.path().join("ran")).len(),
        10,
        "each task ran once"
    );
}

/// An agent restarted under its id mid-run (SIGTERM, then kill -9, each time started again
/// at once in its directory, as systemd would): its new reports are applied, what the old
/// process held is given up and retried, and the run ends with every task done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_under_its_id_mid_run_lets_the_run_end() {
    let tasks: String = (0..20)
        .map(|i| {
            format!("  t{i}: {{ run: \"sleep 0.3; echo $OPSCONSOLE_TASK >> ran\", retries: 3 }}\n")
        })
        .collect();
    let doc = format!("kind: workflow\nname: twenty\ntasks:\n{tasks}");
    let p = Project::new(&[("twenty.yaml", &doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let mut a = agent(&p, "a", &ep, &["--slots", "2"]);
    let client = principal.client().await;
    wait_ready(&client, &["a"], Duration::from_secs(20)).await;
    let run = client
        .trigger("twenty", BTreeMap::new())
        .await
        .expect("trigger");
    for sig in [Signal::SIGTERM, Signal::SIGKILL, Signal::SIGKILL] {
        running_task(&client, "a", Duration::from_secs(30)).await;
        std::thread::sleep(Duration::from_millis(150));
        signal(a.0.id(), sig).expect("signal");
        let _ = a.0.wait();
        a = agent(&p, "a", &ep, &["--slots", "2"]);
    }
    let state = wait_state(&client, run, Duration::from_secs(30)).await;
    assert_eq!(
        state,
        RunState::Succeeded,
        "{}",
        principal.log.lock().unwrap()
    );
    let mut done: Vec<String> = lines_of(&p.path().join("ran"));
    done.sort();
    done.dedup();
    assert_eq!(done.len(), 20, "every task's effect is there: {done:?}");
    let busy: usize = agents(&client).await.iter().map(|a| a.busy).sum();
    assert_eq!(busy, 0, "nothing is left running on the restarted agent");
}

/// A principal that stood still (SIGSTOP) longer than the lease does not blame the agents:
/// what they finished meanwhile is applied, nothing is lost, nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_stall_is_not_an_agent_loss() {
    let tasks: String = (0..4)
        .map(|i| {
            format!(
                "  t{i}: {{ run: \"sleep 0.2; echo $OPSCONSOLE_TASK-$OPSCONSOLE_ATTEMPT >> ran\", retries: 2 }}\n"
            )
        })
        .collect();
    let doc = format!("kind: workflow\nname: four\ntasks:\n{tasks}");
    let p = Project::new(&[("four.yaml", &doc)]);
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &["--agent-heartbeat", "500ms"]);
    let ep = principal.endpoints.requests.clone();
    let _a = agent(&p, "a", &ep, &["--slots", "4"]);
    let client = principal.client().await;
    wait_ready(&client, &["a"], Duration::from_secs(20)).await;
    let run = client
        .trigger("four", BTreeMap::new())
        .await
        .expect("trigger");
    running_task(&client, "a", Duration::from_secs(30)).await;
    signal(principal.pid(), Signal::SIGSTOP).expect("SIGSTOP");
    std::thread::sleep(Duration::from_secs(10));
    signal(principal.pid(), Signal::SIGCONT).expect("SIGCONT");
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(20)).await,
        RunState::Succeeded
    );
    let detail = client.run_detail(run).await.expect("detail");
    let states: Vec<String> = detail
        .attempts
        .iter()
        .map(|a| a.state.to_string())
        .collect();
    assert_eq!(states, ["succeeded"; 4], "nothing lost: {detail:#?}");
    let mut ran = lines_of(&p.path().join("ran"));
    ran.sort();
    assert_eq!(ran, ["t0-1", "t1-1", "t2-1", "t3-1"], "nothing ran twice");
}
