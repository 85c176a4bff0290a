//! `opsconsole check NAME|FILE [--json]`: runs one monitor's check now, without a principal,
//! and prints what it saw and each condition with the value it read (for writing
//! conditions). Exits 0 when every condition holds, 1 when one does not, 2 on a spec error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::agent::check::Prober;
use crate::monitor::condition::{Condition, Judged, judge_all};
use crate::protocol::check::{CheckResult, Probe};
use crate::spec::{self, Diagnostic, MonitorView};

use super::{EXIT_FAILED, EXIT_INVALID, fail};

/// Runs the check of the monitor named `target` in `workflows_dir`, or of the one monitor in
/// the file `target`.
pub async fn check(target: &str, workflows_dir: &Path, json: bool) -> ExitCode {
    let path = Path::new(target);
    let is_file = path.is_file() || spec::is_workflow_file(path) || target.contains('/');
    let catalog = if is_file {
        let (catalog, diags) = spec::load_paths(&[path.to_path_buf()]);
        if !diags.is_empty() {
            return spec_error(&diags);
        }
        match catalog.monitors.len() {
            1 => catalog,
            0 => {
                return fail(
                    EXIT_INVALID,
                    format!("{target} holds no monitor (`kind: monitor`)"),
                );
            }
            n => {
                let some: Vec<String> = catalog.monitors.iter().take(5).map(|v| v.name()).collect();
                return fail(
                    EXIT_INVALID,
                    format!(
                        "{target} holds {n} monitors ({}{}): check one by name, `opsconsole \
                         check NAME --workflows DIR`",
                        some.join(", "),
                        if n > 5 { ", ..." } else { "" }
                    ),
                );
            }
        }
    } else {
        let (catalog, diags) = spec::load_dir(workflows_dir);
        if catalog.monitors.get(target).is_none() {
            if !diags.is_empty() {
                let _ = spec_error(&diags);
            }
            let names = catalog.monitors.iter().take(5_000).map(|v| v.name());
            let names: Vec<String> = names.collect();
            return fail(
                EXIT_INVALID,
                format!(
                    "no monitor `{target}` in {}{}",
                    workflows_dir.display(),
                    spec::did_you_mean(target, names.iter().map(String::as_str))
                ),
            );
        }
        catalog
    };
    let found = if is_file {
        catalog.monitors.find(0)
    } else {
        catalog.monitors.get(target)
    };
    let view = match found {
        Some(v) => v,
        None => return fail(EXIT_INVALID, format!("no monitor `{target}`")),
    };
    let report = run(&view).await;
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => crate::say!("{text}"),
            Err(e) => return fail(EXIT_FAILED, format!("cannot write JSON: {e}")),
        }
    } else {
        crate::say_raw!("{}", text_report(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// Prints every problem and exits 2.
fn spec_error(diags: &[Diagnostic]) -> ExitCode {
    for d in diags {
        crate::tell!("{d}\n");
    }
    crate::tell!("{} problem(s)", diags.len());
    ExitCode::from(EXIT_INVALID)
}

/// One condition as `check` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionReport {
    /// As written.
    pub condition: String,
    /// The value it read.
    pub seen: String,
    /// Whether it holds.
    pub passed: bool,
}

/// What `check` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The monitor's name.
    pub monitor: String,
    /// Where it is written.
    pub file: PathBuf,
    /// What was probed.
    pub probe: Probe,
    /// The check's timeout in milliseconds.
    pub timeout_ms: u64,
    /// What the check saw.
    pub result: CheckResult,
    /// Each condition with the value it saw.
    pub conditions: Vec<ConditionReport>,
    /// Each `degraded_when` condition with the value it saw.
    pub degraded_when: Vec<ConditionReport>,
    /// `healthy`, `degraded` or `unhealthy`, as this one result would count.
    pub state: &'static str,
    /// Every condition holds (and the probe worked, when there are none).
    pub ok: bool,
}

/// Runs the check of `view` once.
pub async fn run(view: &MonitorView<'_>) -> CheckReport {
    let probe = view.probe();
    let timeout = view.timeout();
    let result = Prober::new().run(&probe, timeout).await;
    let conditions = reports(view.conditions(), &result);
    let degraded_when = reports(view.degraded_when(), &result);
    let held = conditions.iter().all(|c| c.passed);
    let ok = held && !(conditions.is_empty() && result.error.is_some());
    let state = if !ok {
        "unhealthy"
    } else if degraded_when.iter().all(|c| c.passed) {
        "healthy"
    } else {
        "degraded"
    };
    CheckReport {
        monitor: view.name(),
        file: view.file().to_path_buf(),
        probe,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        result,
        conditions,
        degraded_when,
        state,
        ok,
    }
}

fn reports(conditions: &[Condition], result: &CheckResult) -> Vec<ConditionReport> {
    conditions
        .iter()
        .zip(judge_all(conditions, result))
        .map(|(c, Judged { passed, seen })| ConditionReport {
            condition: c.text.to_string(),
            seen,
            passed,
        })
        .collect()
}

/// What was probed, in one line.
fn target(probe: &Probe) -> String {
    match probe {
        Probe::Http(h) => format!("{} {}", h.method.as_str(), h.url),
        Probe::Tcp(t) => format!("{}:{}", t.host, t.port),
        Probe::Tls(t) => format!("{}:{}", t.host, t.port),
        Probe::Dns(d) => format!(
            "{:?} {} @{}",
            d.record,
            d.name,
            d.server.as_deref().unwrap_or("system")
        ),
        Probe::Icmp(i) => format!("{} x{}", i.host, i.count),
        Probe::Command(c) => c.argv.join(" "),
        Probe::Push(p) => format!("grace {:?}", p.grace),
        Probe::Workflow(w) => format!("{} within {:?}", w.name, w.succeeded_within),
    }
}

/// The report as text for a terminal.
pub fn text_report(r: &CheckReport) -> String {
    let res = &r.result;
    let mut out = format!(
        "{}  {} {}  (timeout {} ms)\n",
        r.monitor,
        r.probe.kind(),
        target(&r.probe),
        r.timeout_ms
    );
    let mut seen = vec![
        format!("connected {}", if res.connected { "yes" } else { "no" }),
        format!("response {} ms", res.response_time.as_millis()),
    ];
    if let Some(ip) = res.ip {
        seen.push(format!("ip {ip}"));
    }
    if let Some(s) = res.status {
        seen.push(format!("status {s}"));
    }
    if let Some(c) = res.exit_code {
        seen.push(format!("exit {c}"));
    }
    if let Some(rc) = res.dns_rcode {
        seen.push(format!("rcode {rc}"));
    }
    if let Some(ms) = res.certificate_expiration_ms {
        seen.push(format!("certificate expires in {} h", ms / 3_600_000));
    }
    out.push_str(&format!("  {}\n", seen.join("  ")));
    let p = &res.phases;
    let phases: Vec<String> = [
        ("dns", p.dns),
        ("connect", p.connect),
        ("tls", p.tls),
        ("first byte", p.first_byte),
        ("transfer", p.transfer),
    ]
    .into_iter()
    .filter_map(|(n, d)| d.map(|d| format!("{n} {:.1} ms", d.as_secs_f64() * 1000.0)))
    .collect();
    if !phases.is_empty() {
        out.push_str(&format!("  phases: {}\n", phases.join(", ")));
    }
    if let Some(e) = &res.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    let width = r
        .conditions
        .iter()
        .chain(&r.degraded_when)
        .map(|c| c.condition.chars().count())
        .max()
        .unwrap_or(0);
    let line = |c: &ConditionReport| {
        format!(
            "  {}  {:<width$}  saw {}\n",
            if c.passed { "PASS" } else { "FAIL" },
            c.condition,
            c.seen
        )
    };
    if r.conditions.is_empty() {
        out.push_str("  (no conditions)\n");
    }
    for c in &r.conditions {
        out.push_str(&line(c));
    }
    if !r.degraded_when.is_empty() {
        out.push_str("  degraded_when:\n");
        for c in &r.degraded_when {
            out.push_str(&line(c));
        }
    }
    let failed = r.conditions.iter().filter(|c| !c.passed).count();
    out.push_str(&format!(
        "{}: {failed} of {} condition(s) failed\n",
        r.state,
        r.conditions.len()
    ));
    out
}
