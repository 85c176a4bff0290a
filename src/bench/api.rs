//! Benchmarks of the protocol: request latency over ZeroMQ beside the in-process client, and
//! throughput driven through a principal running as its own process.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Scratch, percentile, round, start, wide_workflow, wide_yaml};
use crate::protocol::api::{Client, ClientExt, Request, Response};
use crate::protocol::zmq::{self, Endpoints, ZmqClient};

/// Latencies of `requests` status calls from each of `clients` concurrent callers, in ms.
async fn hammer(
    clients: Vec<Arc<dyn Client>>,
    requests: usize,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    let t0 = Instant::now();
    let mut joins = Vec::new();
    for client in clients {
        joins.push(tokio::spawn(async move {
            let mut ms = Vec::with_capacity(requests);
            for _ in 0..requests {
                let t = Instant::now();
                match client.call(Request::Status).await {
                    Ok(Response::Status(_)) => {}
                    other => anyhow::bail!("status request failed: {other:?}"),
                }
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(ms)
        }));
    }
    let mut all = Vec::new();
    for j in joins {
        all.extend(j.await??);
    }
    let elapsed = t0.elapsed();
    all.sort_by(f64::total_cmp);
    Ok((all, elapsed))
}

fn summary(ms: &[f64], elapsed: Duration) -> Value {
    json!({
        "requests_per_s": round(ms.len() as f64 / elapsed.as_secs_f64(), 1),
        "p50_ms": round(percentile(ms, 0.5), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(ms.last().copied().unwrap_or(0.0), 3),
    })
}

/// `bench api`: status requests from `clients` concurrent ZeroMQ clients over loopback TCP,
/// beside the same load on the in-process client.
pub async fn api(clients: usize, requests: usize) -> anyhow::Result<Value> {
    let clients = clients.max(1);
    let scratch = Scratch::new("api")?;
    let principal = Arc::new(start(wide_workflow("one", 1, &["true"])?, &scratch.0, 2)?);
    let stop = tokio_util::sync::CancellationToken::new();
    let bound = zmq::serve(
        &Endpoints::from_listen("tcp://127.0.0.1:0").map_err(anyhow::Error::msg)?,
        principal.clone(),
        stop.clone(),
    )
    .await?;
    let mut remote: Vec<Arc<dyn Client>> = Vec::new();
    for _ in 0..clients {
        remote.push(Arc::new(
            ZmqClient::connect(&bound, Duration::from_secs(10)).await?,
        ));
    }
    let local: Vec<Arc<dyn Client>> = (0..clients)
        .map(|_| principal.clone() as Arc<dyn Client>)
        .collect();
    // Warm up: connections established, caches and allocator primed on both sides.
    hammer(remote.clone(), 50).await?;
    hammer(local.clone(), 50).await?;
    let (zmq_ms, zmq_time) = hammer(remote, requests).await?;
    let (local_ms, local_time) = hammer(local, requests).await?;
    stop.cancel();
    principal.shutdown().await;
    Ok(json!({
        "bench": "api",
        "request": "status",
        "clients": clients,
        "requests_per_client": requests,
        "zeromq_tcp_loopback": summary(&zmq_ms, zmq_time),
        "in_process": summary(&local_ms, local_time),
        "p99_ratio_zeromq_to_in_process": round(
            percentile(&zmq_ms, 0.99) / percentile(&local_ms, 0.99).max(1e-6),
            1
        ),
        "target_p99_ms": 1.0,
    }))
}

/// Kills the principal process on drop, so a failed benchmark leaves nothing behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `opsconsole principal` (this binary) over `dir` and connects to it.
async fn spawn_principal(dir: &Path, slots: usize) -> anyhow::Result<(Child, ZmqClient)> {
    let exe = std::env::current_exe()?;
    let data = dir.join("data");
    let child = Child(
        std::process::Command::new(exe)
            .arg("--workflows")
            .arg(dir.join("workflows"))
            .arg("--data-dir")
            .arg(&data)
            .args(["principal", "--slots", &slots.to_string()])
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let endpoints = Endpoints::for_data_dir(&data);
    let t0 = Instant::now();
    while !data.join("principal.sock").exists() {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "the principal did not start listening within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = ZmqClient::connect(&endpoints, Duration::from_secs(60)).await?;
    // The first call proves the connection; its time is not measured.
    client.status().await?;
    Ok((child, client))
}

/// Trigger to the end of a run of `workflow` through `client`; fails unless it succeeded.
pub(super) async fn pass(client: &dyn Client, workflow: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let id = client.trigger(workflow, BTreeMap::new()).await?;
    let outcome = client.wait(id).await?;
    let elapsed = t0.elapsed();
    anyhow::ensure!(
        outcome.is_some_and(|o| o.state == crate::protocol::RunState::Succeeded),
        "bench run did not succeed"
    );
    Ok(elapsed)
}

/// `bench throughput --via-principal`: the throughput run triggered and awaited through a
/// principal process over its local socket, beside the same run on an embedded principal.
pub async fn throughput_via_principal(
    tasks: usize,
    slots: usize,
    repeat: usize,
) -> anyhow::Result<Value> {
    let cmd = ["true"];
    let scratch = Scratch::new("via")?;
    std::fs::create_dir_all(scratch.0.join("workflows"))?;
    std::fs::write(
        scratch.0.join("workflows/bench.yaml"),
        wide_yaml("bench", tasks, &cmd)?,
    )?;
    let (mut child, remote) = spawn_principal(&scratch.0, slots).await?;
    let embedded_dir = Scratch::new("via-embedded")?;
    let embedded = start(wide_workflow("bench", tasks, &cmd)?, &embedded_dir.0, slots)?;
    // Warm both: binary pages, DuckDB, the socket.
    pass(&remote, "bench").await?;
    pass(&embedded, "bench").await?;
    let (mut best_via, mut best_embedded) = (Duration::MAX, Duration::MAX);
    for _ in 0..repeat.max(1) {
        best_embedded = best_embedded.min(pass(&embedded, "bench").await?);
        best_via = best_via.min(pass(&remote, "bench").await?);
    }
    embedded.shutdown().await;
    drop(remote);
    // SIGTERM, as a user would stop it; `Child`'s drop only covers failures.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.0.wait();
    let via = tasks as f64 / best_via.as_secs_f64();
    let embedded = tasks as f64 / best_embedded.as_secs_f64();
    Ok(json!({
        "bench": "throughput_via_principal",
        "tasks": tasks,
        "slots": slots,
        "repeat": repeat,
        "via_principal_tasks_per_s": round(via, 1),
        "embedded_tasks_per_s": round(embedded, 1),
        "ratio": round(via / embedded, 3),
        "target_ratio": 0.9,
    }))
}
