//! Restarts waste nothing (issue 20, item 9): a principal killed (-9) while remote agents run
//! its work adopts what they still hold when it comes back, instead of running it again;
//! output an agent sends again after a restart is stored once; and a task that never left the
//! queue is not "interrupted" by a graceful restart. An assignment an agent holds in its queue
//! (sent ahead of a free slot) is adopted like running work, and one stopped there never runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opsconsole::protocol::api::{Client, ClientExt};
use opsconsole::protocol::{RunId, RunState, TaskState};

use crate::agents::{Principal, agent, agents, lines_of, wait_ready, wait_state};
use crate::common::project::{Project, Stopped, eventually, free_port_triple, signal};
use crate::common::{numbered_tasks, workflow};

/// Agent heartbeat of these tests: a lease (3 heartbeats) long enough for a principal to
/// start again before its agents give its work up.
const HEARTBEAT: &str = "2s";

/// Kills the principal with `sig` and waits for it to be gone.
fn stop(mut principal: Principal, sig: Signal) {
    signal(principal.pid(), sig).expect("signal the principal");
    let t0 = Instant::now();
    while principal.child.0.try_wait().ok().flatten().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the principal did not stop after {sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Attempts of `run` by state name, as the principal lists them.
async fn attempt_states(client: &impl Client, run: RunId) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    if let Ok(detail) = client.run_detail(run).await {
        for a in detail.attempts {
            *out.entry(a.state.as_str().to_string()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_killed_during_200_tasks_adopts_what_its_agents_ran() {
    let tasks = numbered_tasks(
        200,
        r#""echo $OPSCONSOLE_TASK >> ran; sleep 0.1", retries: 2"#,
        false,
    );
    let doc = workflow("many", "", &tasks);
    let p = Project::new(&[("many.yaml", &doc)]);
    let listen = format!("tcp://127.0.0.1:{}", free_port_triple());
    let extra = ["--agent-heartbeat", HEARTBEAT];
    let principal = Principal::start(&p, &listen, &extra);
    let names = ["a", "b", "c"];
    let _agents: Vec<Stopped> = names
        .iter()
        .map(|n| agent(&p, n, &listen, &["--slots", "4"]))
        .collect();
    let client = principal.client().await;
    wait_ready(&client, &names, Duration::from_secs(20)).await;
    let run = client
        .trigger("many", BTreeMap::new())
        .await
        .expect("trigger");
    let ran = p.path().join("ran");
    assert!(
        eventually(Duration::from_secs(60), || lines_of(&ran).len() >= 70),
        "70 tasks started"
    );
    let started_at_kill = lines_of(&ran).len();
    drop(client);
    stop(principal, Signal::SIGKILL);
    let principal = Principal::start(&p, &listen, &extra);
    let client = principal.client().await;
    let state = wait_state(&client, run, Duration::from_secs(90)).await;
    let log = principal.log.lock().unwrap().clone();
    assert_eq!(state, RunState::Succeeded, "{log}");
    let executions = lines_of(&ran);
    let distinct: HashSet<&String> = executions.iter().collect();
    let twice = executions.len() - distinct.len();
    let states = attempt_states(&client, run).await;
    let count = |s: &str| states.get(s).copied().unwrap_or(0);
    println!(
        "restart: 200 tasks on 3 agents, principal killed (-9) after {started_at_kill} had \
         started; {} executions of {} distinct tasks, {twice} ran twice; attempts: {} \
         succeeded, {} interrupted (dispatched, never run), {} lost",
        executions.len(),
        distinct.len(),
        count("succeeded"),
        count("interrupted"),
        count("lost"),
    );
    assert_eq!(twice, 0, "no task ran twice: {log}");
    assert_eq!(distinct.len(), 200, "every task ran");
    assert_eq!(executions.len(), 200, "200 executions");
    assert_eq!(count("lost"), 0, "nothing lost: {states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_sent_again_after_two_principal_kills_are_stored_once() {
    const LINES: usize = 400;
    let script = format!(r#""for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.01; done""#);
    let tasks = numbered_tasks(4, &script, false);
    let doc = workflow("chatty", "", &tasks);
    let p = Project::new(&[("chatty.yaml", &doc)]);
    let listen = format!("tcp://127.0.0.1:{}", free_port_triple());
    let extra = ["--agent-heartbeat", HEARTBEAT];
    let mut principal = Principal::start(&p, &listen, &extra);
    let _agents: Vec<Stopped> = ["a", "b"]
        .iter()
        .map(|n| agent(&p, n, &listen, &["--slots", "2"]))
        .collect();
    let client = principal.client().await;
    wait_ready(&client, &["a", "b"], Duration::from_secs(20)).await;
    let run = client
        .trigger("chatty", BTreeMap::new())
        .await
        .expect("trigger");
    drop(client);
    // Killed twice while the four tasks write: once a second in, once after its successor
    // took the work over.
    for _ in 0..2 {
        let client = principal.client().await;
        let t0 = Instant::now();
        loop {
            let running = client
                .run_detail(run)
                .await
                .is_ok_and(|d| d.tasks.iter().all(|t| t.state == TaskState::Running));
            if running {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "tasks running: {}",
                principal.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        drop(client);
        stop(principal, Signal::SIGKILL);
        principal = Principal::start(&p, &listen, &extra);
    }
    let client = principal.client().await;
    let state = wait_state(&client, run, Duration::from_secs(90)).await;
    let log = principal.log.lock().unwrap().clone();
    assert_eq!(state, RunState::Succeeded, "{log}");
    let succeeded: Vec<(String, u32)> = client
        .run_detail(run)
        .await
        .expect("detail")
        .tasks
        .iter()
        .map(|t| (t.name.clone(), t.attempt))
        .collect();
    drop(client);
    stop(principal, Signal::SIGTERM);
    let conn = duckdb::Connection::open(p.data().join("state.duckdb")).expect("open history");
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT (run_id, task, attempt, stream, seq, part))
             FROM logs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    let mut complete = 0;
    for (task, attempt) in &succeeded {
        let (n, lines): (i64, i64) = conn
            .query_row(
                "SELECT count(*), count(DISTINCT line) FROM logs
                 WHERE task = ? AND attempt = ? AND stream = 'stdout'",
                duckdb::params![task, attempt],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("count a task's lines");
        assert_eq!(
            (n, lines),
            (LINES as i64, LINES as i64),
            "{task} attempt {attempt}: every line stored exactly once"
        );
        complete += 1;
    }
    println!(
        "restart: 4 tasks x {LINES} lines, principal killed (-9) twice while they wrote; {rows} \
         line rows stored, {distinct} distinct (attempt, stream, seq), {} stored twice; {complete} \
         of 4 succeeded attempts have all {LINES} lines once",
        rows - distinct
    );
    assert_eq!(rows, distinct, "no line stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_survives_five_graceful_restarts_and_runs_once() {
    let doc = "kind: workflow\nname: gpu\ntasks:\n  t: { run: \"echo $OPSCONSOLE_ATTEMPT >> ran\", agent: { gpu: \"true\" } }\n";
    let p = Project::new(&[("gpu.yaml", doc)]);
    let listen = format!("tcp://127.0.0.1:{}", free_port_triple());
    let mut principal = Principal::start(&p, &listen, &[]);
    let client = principal.client().await;
    let run = client
        .trigger("gpu", BTreeMap::new())
        .await
        .expect("trigger");
    drop(client);
    let restarts = 5;
    for _ in 0..restarts {
        // The task waits in the queue: no agent has the label.
        let client = principal.client().await;
        let t0 = Instant::now();
        while !client
            .run_detail(run)
            .await
            .is_ok_and(|d| d.summary.state == RunState::Running)
        {
            assert!(t0.elapsed() < Duration::from_secs(20), "run running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(client);
        stop(principal, Signal::SIGTERM);
        principal = Principal::start(&p, &listen, &[]);
    }
    let client = principal.client().await;
    let detail = client.run_detail(run).await.expect("detail");
    let interrupted = detail
        .attempts
        .iter()
        .filter(|a| a.state.as_str() == "interrupted")
        .count();
    let task = &detail.tasks[0];
    println!(
        "restart: a task queued for a label no agent has, {restarts} graceful (SIGTERM) \
         restarts: run {}, task {} at attempt {}, {interrupted} interrupted attempts",
        detail.summary.state, task.state, task.attempt
    );
    assert_eq!(interrupted, 0, "{:?}", detail.attempts);
    assert_eq!(task.state, TaskState::Queued);
    assert_eq!(detail.summary.state, RunState::Running);
    // An agent with the label joins: the task runs, once.
    let _gpu = agent(&p, "gpu", &listen, &["--label", "gpu=true"]);
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(30)).await,
        RunState::Succeeded,
        "{}",
        principal.log.lock().unwrap()
    );
    let ran = lines_of(&p.path().join("ran"));
    println!(
        "restart: then an agent labelled gpu=true joined; the task ran {} time(s)",
        ran.len()
    );
    assert_eq!(ran, ["1"], "ran once, as attempt 1");
}

/// Waits until agent `name` holds `count` pieces of work (running or in its queue).
async fn holds(client: &impl Client, name: &str, count: usize) {
    let t0 = Instant::now();
    loop {
        let list = agents(client).await;
        let held = list
            .iter()
            .find(|a| a.info.id.0 == name)
            .map_or(0, |a| a.running.len());
        if held == count {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "agent {name} was not sent {count} assignments (one slot, one ahead in its queue): \
             {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_held_in_an_agents_queue_is_adopted_after_a_kill_and_runs_once() {
    // Both wait for their run's `go` file: one runs on the agent's one slot, the other waits
    // in its queue.
    let task = r#"{ run: "while [ ! -e go-$OPSCONSOLE_RUN_ID ]; do sleep 0.02; done; echo $OPSCONSOLE_TASK-$OPSCONSOLE_ATTEMPT >> ran" }"#;
    let doc = format!("kind: workflow\nname: two\ntasks:\n  first: {task}\n  second: {task}\n");
    let p = Project::new(&[("two.yaml", &doc)]);
    let listen = format!("tcp://127.0.0.1:{}", free_port_triple());
    let extra = ["--agent-heartbeat", HEARTBEAT];
    let principal = Principal::start(&p, &listen, &extra);
    let _q = agent(&p, "q", &listen, &["--slots", "1"]);
    let client = principal.client().await;
    wait_ready(&client, &["q"], Duration::from_secs(20)).await;
    let run = client
        .trigger("two", BTreeMap::new())
        .await
        .expect("trigger");
    holds(&client, "q", 2).await;
    let ran = p.path().join("ran");
    assert!(lines_of(&ran).is_empty(), "nothing has ended yet");

    // kill -9 while the agent holds one running and one queued: both are adopted, none runs
    // again under another attempt.
    drop(client);
    stop(principal, Signal::SIGKILL);
    let principal = Principal::start(&p, &listen, &extra);
    let client = principal.client().await;
    wait_ready(&client, &["q"], Duration::from_secs(20)).await;
    std::fs::write(p.path().join(format!("go-{run}")), "").expect("go");
    let state = wait_state(&client, run, Duration::from_secs(30)).await;
    let log = principal.log.lock().unwrap().clone();
    assert_eq!(state, RunState::Succeeded, "{log}");
    let mut lines = lines_of(&ran);
    lines.sort();
    assert_eq!(
        lines,
        ["first-1", "second-1"],
        "each ran once, as dispatched: {log}"
    );
    let states = attempt_states(&client, run).await;
    assert_eq!(states, HashMap::from([("succeeded".to_string(), 2)]));

    // Cancelled while one waits in the agent's queue: it ends without having run.
    let run = client
        .trigger("two", BTreeMap::new())
        .await
        .expect("trigger");
    holds(&client, "q", 2).await;
    assert!(client.cancel(run).await.expect("cancel"));
    assert_eq!(
        wait_state(&client, run, Duration::from_secs(30)).await,
        RunState::Cancelled
    );
    let states = attempt_states(&client, run).await;
    assert_eq!(states, HashMap::from([("cancelled".to_string(), 2)]));
    assert_eq!(lines_of(&ran).len(), 2, "neither ran");
    holds(&client, "q", 0).await;
}
