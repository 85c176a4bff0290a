//! Agent chaos (issue 20, item 1): three agents, each killed (kill -9) and started again under
//! its id in turn every 1.5 s, during a run of 120 tasks with retries. The run succeeds within
//! its retries, every task's effect is there, and no task process outlives its agent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opsconsole::protocol::RunState;
use opsconsole::protocol::api::ClientExt;

use crate::agents::{Principal, agent, agents, wait_ready, wait_state};
use crate::common::project::{Project, signal};

/// Every descendant of `pid` now.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.contains("State:\tZ"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_killed_and_restarted_under_their_ids_during_120_tasks() {
    let tasks: String = (0..120)
        .map(|i| {
            format!(
                "  t{i}: {{ run: \"sleep 0.8; touch done/$OPSCONSOLE_TASK\", retries: 8, backoff: {{ initial: 50ms, max: 200ms }} }}\n"
            )
        })
        .collect();
    let doc = format!("kind: workflow\nname: chaos\ntasks:\n{tasks}");
    let p = Project::new(&[("chaos.yaml", &doc)]);
    std::fs::create_dir_all(p.path().join("done")).expect("mkdir");
    let principal = Principal::start(&p, "tcp://127.0.0.1:0", &[]);
    let ep = principal.endpoints.requests.clone();
    let names = ["c0", "c1", "c2"];
    let mut running: Vec<_> = names
        .iter()
        .map(|n| agent(&p, n, &ep, &["--slots", "4"]))
        .collect();
    let client = principal.client().await;
    wait_ready(&client, &names, Duration::from_secs(20)).await;
    let t0 = Instant::now();
    let run = client
        .trigger("chaos", BTreeMap::new())
        .await
        .expect("trigger");
    let mut kills = 0;
    let mut orphans_watched = Vec::new();
    let mut next = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let ended = client
            .run_detail(run)
            .await
            .map(|d| d.summary.state.is_terminal())
            .unwrap_or(false);
        if ended || t0.elapsed() > Duration::from_secs(12) {
            break;
        }
        let victim = &mut running[next];
        let held = descendants(victim.0.id());
        signal(victim.0.id(), Signal::SIGKILL).expect("kill -9");
        let _ = victim.0.wait();
        orphans_watched.extend(held);
        running[next] = agent(&p, names[next], &ep, &["--slots", "4"]);
        kills += 1;
        next = (next + 1) % names.len();
    }
    let state = wait_state(&client, run, Duration::from_secs(30)).await;
    let elapsed = t0.elapsed();
    assert_eq!(
        state,
        RunState::Succeeded,
        "{}",
        principal.log.lock().unwrap()
    );
    let detail = client.run_detail(run).await.expect("detail");
    let lost = detail
        .attempts
        .iter()
        .filter(|a| a.state.as_str() == "lost")
        .count();
    let done = std::fs::read_dir(p.path().join("done"))
        .expect("done dir")
        .count();
    assert_eq!(done, 120, "every task's effect is there");
    let left: Vec<u32> = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<u32> = orphans_watched
                .iter()
                .copied()
                .filter(|p| alive(*p))
                .collect();
            if left.is_empty() || Instant::now() > deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(left.is_empty(), "processes outlived their agent: {left:?}");
    let busy: usize = agents(&client).await.iter().map(|a| a.busy).sum();
    assert_eq!(busy, 0, "nothing is left running");
    println!(
        "agent chaos: 120 tasks, {kills} kill -9 of agents, {} attempts ({lost} lost), {} processes of killed agents watched, all gone; run succeeded in {:.1} s",
        detail.attempts.len(),
        orphans_watched.len(),
        elapsed.as_secs_f64()
    );
}
