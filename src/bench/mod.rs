//! Load generators behind `opsconsole bench`. Each measures a reference in the same run and
//! prints JSON with the ratio, because absolute times on shared machines are noise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::principal::{PrincipalConfig, PrincipalHandle};
use crate::protocol::api::ClientExt;
use crate::spec::{Catalog, parse_str};
use crate::store::Store;

mod agents;
mod api;
mod supervise;
pub use agents::throughput_agents;
pub use api::{api, throughput_via_principal};
pub use supervise::supervise;

mod busy;
mod gauges;
pub mod monitors;
mod raw;
pub mod targets;
pub use busy::throughput_with_monitors;
pub use monitors::{MonitorBench, monitors};

/// A scratch data dir removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "opsconsole-bench-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The YAML of a workflow of `tasks` independent tasks running `command`.
fn wide_yaml(name: &str, tasks: usize, command: &[&str]) -> anyhow::Result<String> {
    let argv = serde_json::to_string(command)?;
    let mut yaml = format!("kind: workflow\nname: {name}\ntasks:\n");
    for i in 0..tasks {
        yaml.push_str(&format!("  t{i}: {{ run: {argv} }}\n"));
    }
    Ok(yaml)
}

/// A workflow of `tasks` independent tasks running `command`.
fn wide_workflow(name: &str, tasks: usize, command: &[&str]) -> anyhow::Result<Catalog> {
    let yaml = wide_yaml(name, tasks, command)?;
    let spec = parse_str(Path::new("<bench>"), &yaml).map_err(|d| {
        anyhow::anyhow!(
            "bench workflow invalid: {}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let mut catalog = Catalog::default();
    catalog.workflows.insert(name.to_string(), Arc::new(spec));
    Ok(catalog)
}

fn start(catalog: Catalog, dir: &Path, slots: usize) -> anyhow::Result<PrincipalHandle> {
    Ok(start_with_store(catalog, dir, slots)?.0)
}

/// [`start`], with a sender to the principal's store (to flush or checkpoint it).
fn start_with_store(
    catalog: Catalog,
    dir: &Path,
    slots: usize,
) -> anyhow::Result<(PrincipalHandle, crate::store::StoreSender)> {
    // As the opsconsole binary runs: adopting what tasks leave behind has its cost too.
    if let Some(warning) = crate::agent::orphans::adopt(Duration::from_secs(5)) {
        tracing::warn!("{warning}");
    }
    let (store, recovered) = Store::open(dir)?;
    let sender = store.sender();
    let principal = PrincipalHandle::start(
        catalog,
        store,
        recovered,
        PrincipalConfig {
            slots,
            kill_grace: Duration::from_secs(5),
            workflows_dir: None,
            spec_problems: Vec::new(),
            watchdog: true,
            one_off: false,
            agent_heartbeat: crate::principal::DEFAULT_AGENT_HEARTBEAT,
            workdir: std::env::current_dir()?,
        },
    );
    Ok((principal, sender))
}

/// Runs one workflow through the full path (spec, queue, agent, process, DuckDB) and returns
/// the time from trigger until the run's end is reported, which is once every event of the
/// run is committed to the file.
async fn engine_pass(tasks: usize, slots: usize, command: &[&str]) -> anyhow::Result<Duration> {
    Ok(engine_pass_cpu(tasks, slots, command).await?.0)
}

/// [`engine_pass`], with the CPU time this process (every thread, not the tasks) spent in it.
async fn engine_pass_cpu(
    tasks: usize,
    slots: usize,
    command: &[&str],
) -> anyhow::Result<(Duration, Duration)> {
    let scratch = Scratch::new("engine")?;
    let principal = start(wide_workflow("bench", tasks, command)?, &scratch.0, slots)?;
    let cpu0 = own_cpu();
    let t0 = Instant::now();
    // The run's end is answered once every event of the run is in the file; closing the
    // store afterwards (DuckDB's checkpoint) is a one-off cost of stopping, not of tasks.
    let ran = api::pass(&principal, "bench").await;
    let elapsed = t0.elapsed();
    let cpu = own_cpu().saturating_sub(cpu0);
    principal.shutdown().await;
    ran?;
    Ok((elapsed, cpu))
}

/// User and system time of this process so far (all threads; children not included).
fn own_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
        };
        tv(u.user_time()) + tv(u.system_time())
    })
}

/// Spawns `command` `n` times, at most `parallel` at once, waiting for each.
async fn bare_pass(n: usize, parallel: usize, command: &[&str]) -> anyhow::Result<Duration> {
    let sem = Arc::new(Semaphore::new(parallel.max(1)));
    let t0 = Instant::now();
    let mut joins = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (program, args) = command
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("empty command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        joins.push(tokio::spawn(async move {
            let status = cmd.status().await;
            drop(permit);
            status
        }));
    }
    for j in joins {
        j.await??;
    }
    Ok(t0.elapsed())
}

/// Memory figures of this process from /proc/self/status, in MiB.
struct Memory {
    /// Peak resident set size so far.
    peak: f64,
    /// Resident set size now.
    now: f64,
    /// Resident anonymous memory (heap, stacks) now.
    anon: f64,
    /// Resident file-backed memory (mostly the binary's code, shared and reclaimable) now.
    file: f64,
}

fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    Memory {
        peak: field("VmHWM:"),
        now: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// `bench throughput`: tasks/s through the engine beside bare spawns, best of `repeat`.
pub async fn throughput(tasks: usize, slots: usize, repeat: usize) -> anyhow::Result<Value> {
    let cmd = ["true"];
    // Warm caches (binary pages, DuckDB) so that neither side pays for them.
    engine_pass(10.min(tasks), slots, &cmd).await?;
    bare_pass(10.min(tasks), slots, &cmd).await?;
    let (mut best_engine, mut best_bare) = (Duration::MAX, Duration::MAX);
    let (mut engine_cpu, mut bare_cpu) = (Duration::MAX, Duration::MAX);
    for _ in 0..repeat.max(1) {
        let cpu0 = own_cpu();
        best_bare = best_bare.min(bare_pass(tasks, slots, &cmd).await?);
        bare_cpu = bare_cpu.min(own_cpu().saturating_sub(cpu0));
        let (elapsed, cpu) = engine_pass_cpu(tasks, slots, &cmd).await?;
        best_engine = best_engine.min(elapsed);
        engine_cpu = engine_cpu.min(cpu);
    }
    let per_task_us = |d: Duration| round(d.as_secs_f64() * 1e6 / tasks.max(1) as f64, 1);
    let engine = tasks as f64 / best_engine.as_secs_f64();
    let bare = tasks as f64 / best_bare.as_secs_f64();
    Ok(json!({
        "bench": "throughput",
        "tasks": tasks,
        "slots": slots,
        "repeat": repeat,
        "engine_tasks_per_s": round(engine, 1),
        "bare_spawns_per_s": round(bare, 1),
        "ratio": round(engine / bare, 3),
        "target_ratio": 0.85,
        // What this process itself spends per task (less noisy than wall time on a shared
        // machine): the engine beside a bare spawn-and-wait.
        "engine_cpu_us_per_task": per_task_us(engine_cpu),
        "bare_cpu_us_per_spawn": per_task_us(bare_cpu),
        "peak_rss_mib": round(memory().peak, 1),
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// `bench latency`: trigger-to-completed of a one-task run beside a bare spawn-and-wait.
pub async fn latency(runs: usize) -> anyhow::Result<Value> {
    let scratch = Scratch::new("latency")?;
    let principal = start(wide_workflow("one", 1, &["true"])?, &scratch.0, 2)?;
    let mut engine_ms = Vec::with_capacity(runs);
    let mut bare_ms = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let t0 = Instant::now();
        let id = principal.trigger("one", BTreeMap::new()).await?;
        principal.wait(id).await?;
        let e = t0.elapsed().as_secs_f64() * 1e3;
        let t0 = Instant::now();
        bare_pass(1, 1, &["true"]).await?;
        let b = t0.elapsed().as_secs_f64() * 1e3;
        if i >= 5 {
            // The first few warm up caches on both sides.
            engine_ms.push(e);
            bare_ms.push(b);
        }
    }
    principal.shutdown().await;
    engine_ms.sort_by(f64::total_cmp);
    bare_ms.sort_by(f64::total_cmp);
    let p = |v: &[f64], q| round(percentile(v, q), 3);
    Ok(json!({
        "bench": "latency",
        "runs": runs,
        "engine_ms": { "p50": p(&engine_ms, 0.5), "p95": p(&engine_ms, 0.95), "p99": p(&engine_ms, 0.99) },
        "bare_spawn_ms": { "p50": p(&bare_ms, 0.5), "p95": p(&bare_ms, 0.95), "p99": p(&bare_ms, 0.99) },
        "p99_overhead_ms": round(percentile(&engine_ms, 0.99) - percentile(&bare_ms, 0.99), 3),
        "target_p99_overhead_ms": 5.0,
    }))
}

/// `bench rss`: peak resident memory with `tasks` processes running at once, beside the same
/// engine running a single task (the reference: what the process costs before any load).
pub async fn rss(tasks: usize, slots: usize, sleep_secs: f64) -> anyhow::Result<Value> {
    let secs = format!("{sleep_secs}");
    let before = memory();
    engine_pass(1, 1, &["sleep", "0.2"]).await?;
    let one = memory();
    // Sample while the tasks run: the split between anonymous and file-backed memory is only
    // reported for "now", so take it at its largest.
    let done = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut worst = memory();
            while !done.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let m = memory();
                if m.now > worst.now {
                    worst = m;
                }
            }
            worst
        }
    });
    let elapsed = engine_pass(tasks, slots, &["sleep", &secs]).await?;
    done.cancel();
    let busiest = sampler.await?;
    let peak = memory().peak;
    Ok(json!({
        "bench": "rss",
        "tasks": tasks,
        "slots": slots,
        "task": format!("sleep {secs}"),
        "elapsed_s": round(elapsed.as_secs_f64(), 3),
        "rss_before_engine_mib": round(before.now, 1),
        "peak_rss_one_task_mib": round(one.peak, 1),
        "peak_rss_mib": round(peak, 1),
        "added_by_tasks_mib": round(peak - one.peak, 1),
        "at_busiest": {
            "rss_mib": round(busiest.now, 1),
            "anon_mib": round(busiest.anon, 1),
            "file_backed_mib": round(busiest.file, 1),
        },
        "target_peak_rss_mib": 40.0,
    }))
}
