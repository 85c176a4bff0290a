//! `bench supervise --services N`: N `sleep 3600` services under one one_for_one supervisor:
//! time until all run, crash-to-restarted latency when they are killed at random, and the
//! principal's memory and CPU while idle with all of them up; beside a bare spawn-and-wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Scratch, bare_pass, memory, own_cpu, percentile, round};
use crate::principal::{PrincipalConfig, PrincipalHandle};
use crate::protocol::Event;
use crate::protocol::api::{Client, Request, Response};
use crate::protocol::service::{ServiceEventKind, ServiceNode, ServiceState};
use crate::store::Store;

async fn nodes(p: &PrincipalHandle) -> anyhow::Result<Vec<ServiceNode>> {
    match p.call(Request::Services { path: None }).await? {
        Response::Services { nodes } => Ok(nodes),
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

/// Runs the benchmark with `services` services and `kills` random kills.
pub async fn supervise(services: usize, kills: usize) -> anyhow::Result<Value> {
    let scratch = Scratch::new("supervise")?;
    let dir = scratch.0.join("workflows");
    std::fs::create_dir_all(&dir)?;
    let mut yaml = format!(
        "kind: supervisor\nname: bench\nstrategy: one_for_one\nintensity: {}\nperiod: 1h\nchildren:\n",
        (kills + 10).min(10_000)
    );
    for i in 0..services {
        yaml.push_str(&format!(
            "  - {{ name: s{i}, run: [\"sleep\", \"3600\"], backoff: {{ initial: 0s, max: 0s }}, stop: {{ grace: 1s }} }}\n"
        ));
    }
    std::fs::write(dir.join("bench.yaml"), yaml)?;
    let (catalog, problems) = crate::spec::load_dir(&dir);
    anyhow::ensure!(problems.is_empty(), "bench spec invalid: {problems:?}");
    let (store, recovered) = Store::open(&scratch.0.join("data"))?;
    let t0 = Instant::now();
    let principal = Arc::new(PrincipalHandle::start(
        catalog,
        store,
        recovered,
        PrincipalConfig {
            slots: 2,
            kill_grace: Duration::from_secs(1),
            workdir: std::env::current_dir()?,
            workflows_dir: None,
            spec_problems: Vec::new(),
            watchdog: true,
            one_off: false,
            agent_heartbeat: crate::principal::DEFAULT_AGENT_HEARTBEAT,
        },
    ));
    let up = |n: &[ServiceNode]| {
        n.iter()
            .filter(|x| !x.supervisor && x.state == ServiceState::Running)
            .count()
    };
    loop {
        if up(&nodes(&principal).await?) == services {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "services did not all start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_up = t0.elapsed();

    // Idle with every service up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = own_cpu();
    let idle_t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu = own_cpu().saturating_sub(cpu0).as_secs_f64() / idle_t0.elapsed().as_secs_f64();
    let mem = memory();

    // Crash to restarted: SIGKILL a random service, wait for its next start.
    let mut events = principal.subscribe();
    let mut restart_ms = Vec::with_capacity(kills);
    for _ in 0..kills {
        let list = nodes(&principal).await?;
        let running: Vec<&ServiceNode> = list
            .iter()
            .filter(|n| !n.supervisor && n.state == ServiceState::Running && n.pid.is_some())
            .collect();
        let Some(victim) = running.get(fastrand::usize(..running.len().max(1))) else {
            break;
        };
        let (path, start) = (victim.path.clone(), victim.start_no);
        let pid = victim.pid.unwrap_or_default() as i32;
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
            match ev {
                Ok(Ok(Event::Service(r)))
                    if r.path == path
                        && r.kind == ServiceEventKind::Started
                        && r.start_no > start =>
                {
                    break;
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => anyhow::bail!("events: {e}"),
                Err(_) => anyhow::bail!("{path} was not restarted within 10 s"),
            }
        }
        restart_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let t = Instant::now();
    principal.shutdown().await;
    let stop_all = t.elapsed();

    // The reference: spawn `sleep 0` and wait for it, as often.
    let mut bare_ms = Vec::with_capacity(kills);
    for _ in 0..kills.max(1) {
        let t = Instant::now();
        bare_pass(1, 1, &["true"]).await?;
        bare_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    restart_ms.sort_by(f64::total_cmp);
    bare_ms.sort_by(f64::total_cmp);
    let p = |v: &[f64], q| round(percentile(v, q), 3);
    Ok(json!({
        "bench": "supervise",
        "services": services,
        "kills": restart_ms.len(),
        "all_running_s": round(all_up.as_secs_f64(), 3),
        "restart_p50_ms": p(&restart_ms, 0.5),
        "restart_p99_ms": p(&restart_ms, 0.99),
        "bare_spawn_p50_ms": p(&bare_ms, 0.5),
        "bare_spawn_p99_ms": p(&bare_ms, 0.99),
        "restart_p99_overhead_ms": round(percentile(&restart_ms, 0.99) - percentile(&bare_ms, 0.99), 3),
        "target_restart_p99_overhead_ms": 5.0,
        "idle_cpu_percent": round(idle_cpu * 100.0, 3),
        "target_idle_cpu_percent": 1.0,
        "anon_mib": round(mem.anon, 1),
        "target_anon_mib": 20.0,
        "rss_mib": round(mem.now, 1),
        "stop_all_s": round(stop_all.as_secs_f64(), 3),
    }))
}
