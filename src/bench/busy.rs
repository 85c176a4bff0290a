//! `bench throughput --monitors N`: the throughput run on a principal with N tcp monitors
//! running (against the bench's own targets) beside the same run on one without monitors, in
//! one process, with the API's latency (`status` requests) while idle and while a run goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::pass;
use super::monitors::write_fleet;
use super::targets::{TargetKind, Targets};
use super::{Scratch, percentile, round, start, wide_workflow, wide_yaml};
use crate::principal::PrincipalHandle;
use crate::protocol::api::ClientExt;

/// How long the principal with monitors runs before it is measured (the actor loads, the
/// first checks go out).
const WARMUP: Duration = Duration::from_secs(10);
/// `status` requests timed while the principal is idle.
const IDLE_REQUESTS: usize = 2000;

/// What one side measured.
struct Side {
    best: Duration,
    idle_ms: Vec<f64>,
    busy_ms: Vec<f64>,
    checks: Option<u64>,
}

/// `bench throughput --monitors N`.
pub async fn throughput_with_monitors(
    tasks: usize,
    slots: usize,
    repeat: usize,
    monitors: usize,
) -> anyhow::Result<Value> {
    anyhow::ensure!(monitors > 0, "--monitors must be at least 1");
    let cmd = ["true"];
    let scratch = Scratch::new("busy")?;
    let targets = Targets::start(TargetKind::Tcp, monitors.min(256))?;
    let dir = scratch.0.join("workflows");
    let every = Duration::from_secs(60);
    write_fleet(
        &dir,
        TargetKind::Tcp,
        monitors,
        targets.addrs(),
        every,
        Duration::from_secs(5),
    )?;
    std::fs::write(dir.join("bench.yaml"), wide_yaml("bench", tasks, &cmd)?)?;
    let (with_catalog, diags) = crate::spec::load_dir(&dir);
    if let Some(d) = diags.first() {
        anyhow::bail!("the generated files have {} problems: {d}", diags.len());
    }
    crate::tell!("bench throughput: without monitors");
    let without = side(
        start(
            wide_workflow("bench", tasks, &cmd)?,
            &scratch.0.join("without"),
            slots,
        )?,
        repeat,
        Duration::ZERO,
    )
    .await?;
    crate::tell!("bench throughput: with {monitors} monitors (warming up {WARMUP:?})");
    let with = side(
        start(with_catalog, &scratch.0.join("with"), slots)?,
        repeat,
        WARMUP,
    )
    .await?;
    let rate = |s: &Side| tasks as f64 / s.best.as_secs_f64();
    let api = |s: &mut Side| {
        s.idle_ms.sort_by(f64::total_cmp);
        s.busy_ms.sort_by(f64::total_cmp);
        json!({
            "idle_p50_ms": round(percentile(&s.idle_ms, 0.5), 3),
            "idle_p99_ms": round(percentile(&s.idle_ms, 0.99), 3),
            "during_run_p50_ms": round(percentile(&s.busy_ms, 0.5), 3),
            "during_run_p99_ms": round(percentile(&s.busy_ms, 0.99), 3),
            "requests": s.idle_ms.len() + s.busy_ms.len(),
        })
    };
    let (mut with, mut without) = (with, without);
    Ok(json!({
        "bench": "throughput_with_monitors",
        "tasks": tasks,
        "slots": slots,
        "repeat": repeat,
        "monitors": monitors,
        "monitor_every_s": every.as_secs_f64(),
        "with_monitors_tasks_per_s": round(rate(&with), 1),
        "without_monitors_tasks_per_s": round(rate(&without), 1),
        "ratio": round(rate(&with) / rate(&without), 3),
        "target_ratio": 0.9,
        "monitor_checks_during": with.checks,
        "api_with_monitors": api(&mut with),
        "api_without_monitors": api(&mut without),
        "target_api_p99_ms": 1.0,
    }))
}

/// Times `status` requests one after another until `stop`.
async fn poll_status(
    p: Arc<PrincipalHandle>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<f64> {
    let mut ms = Vec::new();
    while !stop.is_cancelled() {
        let t = Instant::now();
        if p.status().await.is_err() {
            break;
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    ms
}

async fn side(p: PrincipalHandle, repeat: usize, warmup: Duration) -> anyhow::Result<Side> {
    let p = Arc::new(p);
    tokio::time::sleep(warmup).await;
    let checks0 = p.monitor_stats().map(|s| s.checks);
    let mut idle_ms = Vec::with_capacity(IDLE_REQUESTS);
    for _ in 0..IDLE_REQUESTS {
        let t = Instant::now();
        p.status().await?;
        idle_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    pass(&*p, "bench").await?;
    let mut best = Duration::MAX;
    let mut busy_ms = Vec::new();
    for _ in 0..repeat.max(1) {
        let stop = tokio_util::sync::CancellationToken::new();
        let poller = tokio::spawn(poll_status(p.clone(), stop.clone()));
        let ran = pass(&*p, "bench").await;
        stop.cancel();
        busy_ms.extend(poller.await?);
        best = best.min(ran?);
    }
    let checks = p
        .monitor_stats()
        .map(|s| s.checks)
        .zip(checks0)
        .map(|(b, a)| b.saturating_sub(a));
    p.shutdown().await;
    Ok(Side {
        best,
        idle_ms,
        busy_ms,
        checks,
    })
}
