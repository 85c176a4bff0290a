//! `bench monitors`: N monitors against local targets, loaded from one file with `targets:`
//! (CSV) and run by the real monitor actor, beside a raw async loop of the same probes with
//! the same concurrency in the same run: once asked the same rate (`ratio_to_raw`), once flat
//! out (its capacity, and the CPU a bare probe costs: `cpu_ratio_to_raw`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::gauges;
use super::raw;
use super::targets::{TargetKind, Targets};
use super::{Scratch, round};

/// How `bench monitors` runs.
#[derive(Debug, Clone)]
pub struct MonitorBench {
    /// Monitors.
    pub count: usize,
    /// Their interval.
    pub every: Duration,
    /// What they check.
    pub kind: TargetKind,
    /// The measured window of the actor.
    pub duration: Duration,
    /// Time the actor runs before the window opens.
    pub warmup: Duration,
    /// The measured window of the raw loop.
    pub raw_duration: Duration,
    /// Listeners (each on its own loopback address) the monitors are spread over.
    pub listeners: usize,
    /// Each check's timeout.
    pub timeout: Duration,
}

/// The file of `count` monitors of `kind`, every one a row of a CSV file next to it (`i`,
/// `host`, `port`), monitor `i` against `addrs[i % addrs.len()]`. Returns the YAML's path.
pub fn write_fleet(
    dir: &Path,
    kind: TargetKind,
    count: usize,
    addrs: &[SocketAddr],
    every: Duration,
    timeout: Duration,
) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(!addrs.is_empty(), "no targets to point monitors at");
    std::fs::create_dir_all(dir)?;
    let mut csv =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("fleet.csv"))?);
    writeln!(csv, "i,host,port")?;
    for i in 0..count {
        let a = addrs[i % addrs.len()];
        writeln!(csv, "{i},{},{}", a.ip(), a.port())?;
    }
    csv.flush()?;
    let check = match kind {
        TargetKind::Tcp => {
            "{ tcp: { host: \"{{ target.host }}\", port: \"{{ target.port }}\" } }".to_string()
        }
        TargetKind::Http | TargetKind::Https => format!(
            "{{ http: {{ url: \"{}://{{{{ target.host }}}}:{{{{ target.port }}}}/\"{} }} }}",
            kind.name(),
            if kind == TargetKind::Https {
                ", insecure_skip_verify: true"
            } else {
                ""
            }
        ),
    };
    let yaml = format!(
        "# {count} monitors written by `opsconsole bench monitors`.\n\
         kind: monitor\n\
         name: \"bench-{{{{ target.i }}}}\"\n\
         every: {}ms\n\
         timeout: {}ms\n\
         check: {check}\n\
         targets: {{ csv: fleet.csv }}\n",
        every.as_millis(),
        timeout.as_millis().max(1),
    );
    let path = dir.join("fleet.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// What loading the fleet took.
pub struct Loaded {
    /// The catalog holding the monitors.
    pub catalog: crate::spec::Catalog,
    /// Parse + validate + build, in seconds.
    pub load_s: f64,
    /// Anonymous memory held after the load minus before, in bytes.
    pub anon_bytes: u64,
    /// Anonymous memory before the load, in bytes.
    pub anon_before: u64,
}

/// Loads the monitors of `dir`, timing it and measuring the memory they hold at rest; fails
/// unless exactly `count` loaded without a problem.
pub fn load(dir: &Path, count: usize) -> anyhow::Result<Loaded> {
    gauges::trim_heap();
    let before = gauges::anon_bytes();
    let t0 = Instant::now();
    let (catalog, diags) = crate::spec::load_dir(dir);
    let load_s = t0.elapsed().as_secs_f64();
    if let Some(d) = diags.first() {
        anyhow::bail!("the generated monitors have {} problems: {d}", diags.len());
    }
    anyhow::ensure!(
        catalog.monitors.len() == count,
        "{} monitors loaded, not {count}",
        catalog.monitors.len()
    );
    // What parsing left free is not held by the monitors.
    gauges::trim_heap();
    let anon_bytes = gauges::anon_bytes().saturating_sub(before);
    Ok(Loaded {
        catalog,
        load_s,
        anon_bytes,
        anon_before: before,
    })
}

/// `bench monitors`: see the module's doc; progress goes to stderr.
pub async fn monitors(o: MonitorBench) -> anyhow::Result<Value> {
    anyhow::ensure!(o.count > 0, "--count must be at least 1");
    anyhow::ensure!(
        o.every >= Duration::from_secs(1),
        "--every must be at least 1s"
    );
    anyhow::ensure!(
        o.timeout < o.every,
        "--timeout must be shorter than --every"
    );
    // The actor runs its checks through the process's shared prober; the raw loop gets the
    // same bound.
    let concurrency = crate::agent::check::Prober::shared().max_in_flight();
    let scratch = Scratch::new("monitors")?;
    let targets = Targets::start(o.kind, o.listeners.min(o.count))?;
    crate::tell!(
        "bench monitors: {} {} targets on 127.0.x.y; writing {} monitors",
        targets.addrs().len(),
        o.kind.name(),
        o.count
    );
    let workflows = scratch.0.join("workflows");
    write_fleet(
        &workflows,
        o.kind,
        o.count,
        targets.addrs(),
        o.every,
        o.timeout,
    )?;

    // The reference twice: asked what the monitors are asked (the same probes at the same
    // rate), and flat out (its capacity, and its CPU per check when nothing waits).
    let asked = raw::Pace::Asked {
        count: o.count,
        every: o.every,
    };
    let mut raws = Vec::new();
    for (pace, name) in [
        (asked, "at the asked rate"),
        (raw::Pace::FlatOut, "flat out"),
    ] {
        crate::tell!(
            "bench monitors: raw loop {name}, {concurrency} in flight for {:?}",
            o.raw_duration
        );
        let cpu0 = super::own_cpu();
        let served0 = targets.cpu();
        let figures = raw::run(
            o.kind,
            targets.addrs(),
            concurrency,
            o.raw_duration,
            o.timeout,
            pace,
        )
        .await?;
        let cpu = super::own_cpu()
            .saturating_sub(cpu0)
            .saturating_sub(targets.cpu().saturating_sub(served0));
        raws.push((figures, cpu));
    }
    let [(raw, _), (raw_flat, raw_cpu)] = raws[..] else {
        anyhow::bail!("the raw loop did not run");
    };

    crate::tell!("bench monitors: loading {} monitors", o.count);
    let loaded = load(&workflows, o.count)?;
    crate::tell!("bench monitors: loaded in {:.2} s", loaded.load_s);

    // What an empty history file takes, to leave out of the bytes per result.
    let empty_db = {
        let empty = Scratch::new("monitors-empty")?;
        let (store, _) = crate::store::Store::open(&empty.0)?;
        store.close().await?;
        gauges::db_bytes(&crate::store::db_path(&empty.0))
    };
    let data = scratch.0.join("data");
    let Loaded {
        catalog,
        load_s,
        anon_bytes,
        anon_before,
    } = loaded;
    let (principal, store) = super::start_with_store(catalog, &data, 2)?;
    crate::tell!(
        "bench monitors: actor started; warming up for {:?}",
        o.warmup
    );
    tokio::time::sleep(o.warmup).await;
    let stats = || {
        principal
            .monitor_stats()
            .ok_or_else(|| anyhow::anyhow!("the monitor actor did not start"))
    };
    // The window's bytes on disk are the file's growth from a checkpoint at its start (the
    // names and first states of the load stay out), over the results stored in it.
    store.checkpoint().await?;
    let db0 = gauges::db_bytes(&crate::store::db_path(&data));
    let s0 = stats()?;
    let (cpu0, served0, t0) = (super::own_cpu(), targets.cpu(), Instant::now());
    let mut shown = Instant::now();
    while t0.elapsed() < o.duration {
        let left = o.duration.saturating_sub(t0.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(500))).await;
        if shown.elapsed() >= Duration::from_secs(10) {
            shown = Instant::now();
            let s = stats()?;
            crate::tell!(
                "bench monitors: {:.0} s: {:.0} checks/s, lag p99 {} ms",
                t0.elapsed().as_secs_f64(),
                (s.checks - s0.checks) as f64 / t0.elapsed().as_secs_f64(),
                s.lag_ms_p99
            );
        }
    }
    let s1 = stats()?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = super::own_cpu()
        .saturating_sub(cpu0)
        .saturating_sub(targets.cpu().saturating_sub(served0));
    gauges::trim_heap();
    let anon_running = gauges::anon_bytes().saturating_sub(anon_before);
    crate::tell!("bench monitors: stopping (the store checkpoints)");
    principal.shutdown().await;
    let db = gauges::db_bytes(&crate::store::db_path(&data));
    let (table_rows, table_bytes) = gauges::results_table(&crate::store::db_path(&data))
        .unwrap_or_else(|e| {
            crate::tell!("bench monitors: the results table could not be measured: {e:#}");
            (0, 0)
        });

    // Results stored after the window opened, the few flushed at the shutdown included.
    let window_rows = table_rows.saturating_sub(s0.results_stored);
    let n = o.count as f64;
    let checks = s1.checks.saturating_sub(s0.checks) as f64;
    let checks_per_s = checks / elapsed.max(1e-9);
    let raw_per_s = raw.checks_per_s();
    let raw_flat_checks = (raw_flat.passed + raw_flat.failed) as f64;
    let raw_cpu_per_check = raw_cpu.as_secs_f64() / raw_flat_checks.max(1.0);
    let cpu_per_check = cpu.as_secs_f64() / checks.max(1.0);
    let asked_per_s = n / o.every.as_secs_f64();
    Ok(json!({
        "bench": "monitors",
        "kind": o.kind.name(),
        "count": o.count,
        "every_s": o.every.as_secs_f64(),
        "listeners": targets.addrs().len(),
        "concurrency": concurrency,
        "load_s": round(load_s, 3),
        "asked_per_s": round(asked_per_s, 1),
        "checks_per_s": round(checks_per_s, 1),
        "window_s": round(elapsed, 1),
        "lag_ms": { "p50": s1.lag_ms_p50, "p99": s1.lag_ms_p99 },
        // The monitor set held at rest after the load (what a monitor costs loaded).
        "anon_bytes_per_monitor": round(anon_bytes as f64 / n, 1),
        // Everything added since before the load, at the end of the window: the set, the
        // actor's arrays, the board, connections in flight and DuckDB's cache.
        "anon_bytes_per_monitor_running": round(anon_running as f64 / n, 1),
        // This process less the targets' thread.
        "cpu_s_per_1000_checks": round(cpu.as_secs_f64() * 1000.0 / checks.max(1.0), 4),
        // What the file grew by in the window (checkpointed at both ends), over the results
        // stored in it: a result in steady state, with the states, rollups and incidents
        // written beside it.
        "disk_bytes_per_result": round(
            db.saturating_sub(db0) as f64 / window_rows.max(1) as f64,
            2
        ),
        "results_stored_in_window": window_rows,
        // The whole file less an empty one, over every result stored: the load's monitor
        // names and first states included, which a short run does not amortise.
        "disk_bytes_per_result_all": round(
            db.saturating_sub(empty_db) as f64 / table_rows.max(1) as f64,
            2
        ),
        "results_stored": table_rows,
        // The raw results table alone: its storage blocks over its rows.
        "results_table_bytes_per_row": round(table_bytes as f64 / table_rows.max(1) as f64, 2),
        "results_table_rows": table_rows,
        "db_bytes": db,
        // The actor's rate over the raw loop's, both asked for the same probes at the same
        // rate with the same concurrency: below 1 when the actor falls behind where bare
        // probes keep up.
        "ratio_to_raw": round(checks_per_s / raw_per_s.max(1e-9), 3),
        "ratio_to_asked": round(checks_per_s / asked_per_s, 3),
        "raw_checks_per_s": round(raw_per_s, 1),
        "raw_failed": raw.failed + raw_flat.failed,
        // The raw loop flat out: what bare probes can do on this machine.
        "raw_capacity_checks_per_s": round(raw_flat.checks_per_s(), 1),
        "raw_cpu_s_per_1000_checks": round(raw_cpu_per_check * 1000.0, 4),
        // The raw loop's CPU per check over the actor's: the share of the raw loop's
        // capacity the actor reaches flat out when CPU is what limits both.
        "cpu_ratio_to_raw": round(raw_cpu_per_check / cpu_per_check.max(1e-12), 3),
        "targets": {
            "load_s_under": 30.0, "checks_per_s_tcp_at_1m": 16_700, "lag_p99_ms_under": 1000,
            "http_ratio_to_raw_at_least": 0.8, "anon_bytes_per_monitor_under": 1024,
            "disk_bytes_per_result_at_most": 16,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_loads_its_monitors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from((super::super::targets::loopback(i), 4000 + i as u16)))
            .collect();
        for kind in [TargetKind::Tcp, TargetKind::Http, TargetKind::Https] {
            let sub = dir.path().join(kind.name());
            write_fleet(
                &sub,
                kind,
                1000,
                &addrs,
                Duration::from_secs(60),
                Duration::from_secs(5),
            )
            .expect("written");
            let loaded = load(&sub, 1000).expect("loads");
            let set = &loaded.catalog.monitors;
            let m = set.get("bench-4").expect("bench-4");
            assert_eq!(m.every(), Duration::from_secs(60));
            assert_eq!(m.timeout(), Duration::from_secs(5));
            match m.probe() {
                crate::protocol::check::Probe::Tcp(t) => {
                    assert_eq!(kind, TargetKind::Tcp);
                    assert_eq!((t.host.as_str(), t.port), ("127.0.1.2", 4001));
                }
                crate::protocol::check::Probe::Http(h) => {
                    assert_eq!(h.url, format!("{}://127.0.1.2:4001/", kind.name()));
                    assert_eq!(h.insecure_skip_verify, kind == TargetKind::Https);
                }
                other => panic!("{other:?}"),
            }
            println!(
                "{}: 1000 monitors loaded in {:.3} s",
                kind.name(),
                loaded.load_s
            );
        }
    }
}
