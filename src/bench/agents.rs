//! `bench throughput --agents K`: the same workload through K agent processes on loopback
//! beside the in-process pool, with the same slots in all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Scratch, api, engine_pass, round, start, wide_workflow};
use crate::protocol::agent::AgentState;
use crate::protocol::api::{Client, Request, Response};
use crate::protocol::zmq::{self, Endpoints, keys};

/// Stops the agent processes when dropped, however the bench ends.
struct Agents(Vec<std::process::Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Tasks/s of `tasks` trivial tasks through `k` agents (`slots` split among them) beside the
/// in-process pool with `slots`, best of `repeat` each; and the same agents over CURVE (each
/// with its own key of role agent), measured in the same run: `curve_ratio` is encrypted over
/// plain.
pub async fn throughput_agents(
    tasks: usize,
    slots: usize,
    repeat: usize,
    k: usize,
) -> anyhow::Result<Value> {
    let k = k.clamp(1, slots.max(1));
    let cmd = ["true"];
    engine_pass(10.min(tasks), slots, &cmd).await?;
    let mut best_local = Duration::MAX;
    for _ in 0..repeat.max(1) {
        best_local = best_local.min(engine_pass(tasks, slots, &cmd).await?);
    }
    let best_plain = agents_pass(tasks, slots, repeat, k, false).await?;
    let best_curve = agents_pass(tasks, slots, repeat, k, true).await?;
    let local = tasks as f64 / best_local.as_secs_f64();
    let remote = tasks as f64 / best_plain.as_secs_f64();
    let curve = tasks as f64 / best_curve.as_secs_f64();
    Ok(json!({
        "bench": "throughput_agents",
        "tasks": tasks,
        "slots": slots,
        "agents": k,
        "repeat": repeat,
        "agents_tasks_per_s": round(remote, 1),
        "in_process_tasks_per_s": round(local, 1),
        "ratio": round(remote / local, 3),
        "target_ratio": 0.8,
        "transport": "tcp://127.0.0.1",
        "curve": {
            "agents_tasks_per_s": round(curve, 1),
            "ratio": round(curve / local, 3),
            "mechanism": "CURVE (RFC 25/26), a key of role agent per agent",
        },
        "curve_ratio": round(curve / remote, 3),
        "target_curve_ratio": 0.9,
    }))
}

/// The best of `repeat` passes of `tasks` tasks through `k` agent processes on loopback,
/// with CURVE on every socket when `curve`.
async fn agents_pass(
    tasks: usize,
    slots: usize,
    repeat: usize,
    k: usize,
    curve: bool,
) -> anyhow::Result<Duration> {
    let cmd = ["true"];
    let scratch = Scratch::new(if curve { "agents-curve" } else { "agents" })?;
    let principal = Arc::new(start(wide_workflow("bench", tasks, &cmd)?, &scratch.0, 0)?);
    let stop = CancellationToken::new();
    let listen = Endpoints::from_listen("tcp://127.0.0.1:0").map_err(anyhow::Error::msg)?;
    let client: Arc<dyn Client> = principal.clone();
    let gate = Some(principal.agent_gate());
    let (bound, server_pub) = if curve {
        let server = keys::server_pair(&scratch.0.join("server"))?;
        let server_pub = keys::public_text(&server);
        let mut authorized = String::new();
        for i in 0..k {
            let (_, pair) = keys::write_pair(&scratch.0.join(format!("agent-{i}")))?;
            authorized.push_str(&format!("agent bench-{i} {}\n", keys::public_text(&pair)));
        }
        let file = scratch.0.join("authorized");
        std::fs::write(&file, authorized)?;
        let ring = Arc::new(keys::KeyRing::load(server, &file)?);
        let bound = zmq::serve_principal_curve(&listen, client, stop.clone(), ring, gate).await?;
        (bound, Some(server_pub))
    } else {
        let bound = zmq::serve_principal(&listen, client, stop.clone(), gate).await?;
        (bound, None)
    };
    let exe = std::env::current_exe()?;
    let mut children = Agents(Vec::new());
    for i in 0..k {
        let share = slots / k + usize::from(i < slots % k);
        let dir = scratch.0.join(format!("agent-{i}"));
        let mut command = std::process::Command::new(&exe);
        command
            .arg("--data-dir")
            .arg(&dir)
            .args(["agent", "--principal", &bound.endpoints.requests])
            .args(["--id", &format!("bench-{i}"), "--slots", &share.to_string()]);
        if let Some(server_pub) = &server_pub {
            command
                .args(["--server-key", server_pub, "--key"])
                .arg(scratch.0.join(format!("agent-{i}.secret")));
        }
        children.0.push(
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?,
        );
    }
    let t0 = Instant::now();
    loop {
        let ready = match principal.call(Request::Agents).await? {
            Response::Agents { agents } => agents
                .iter()
                .filter(|a| a.state == AgentState::Ready && a.info.id.0 != "local")
                .count(),
            _ => 0,
        };
        if ready == k {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "only {ready} of {k} agents joined within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api::pass(principal.as_ref(), "bench").await?;
    let mut best = Duration::MAX;
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        api::pass(principal.as_ref(), "bench").await?;
        best = best.min(t0.elapsed());
    }
    drop(children);
    stop.cancel();
    principal.shutdown().await;
    Ok(best)
}
