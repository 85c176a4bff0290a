//! `opsconsole validate [PATH...] [--workflows DIR]`: checks workflow files and reports every
//! problem as `file:line:col: message`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::spec::{self, Catalog, Diagnostic};

/// Validates `paths` (files or directories), or `workflows_dir` when `paths` is empty.
/// Prints every problem to stderr and exits 1, or prints a summary to stdout and exits 0.
pub fn validate(paths: &[PathBuf], workflows_dir: &Path) -> ExitCode {
    let (catalog, diagnostics) = if paths.is_empty() {
        spec::load_dir(workflows_dir)
    } else {
        spec::load_paths(paths)
    };
    if diagnostics.is_empty() {
        // A closed stdout (e.g. `| head`) is not a validation failure.
        let _ = std::io::stdout().write_all(success_report(&catalog).as_bytes());
        ExitCode::SUCCESS
    } else {
        let _ = std::io::stderr().write_all(failure_report(&diagnostics).as_bytes());
        ExitCode::from(1)
    }
}

/// Every diagnostic, a blank line between them, then `N problem(s) in M file(s)`.
fn failure_report(diagnostics: &[Diagnostic]) -> String {
    let files: BTreeSet<&Path> = diagnostics.iter().map(|d| d.file.as_path()).collect();
    let mut out: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    out.push(format!(
        "{} problem(s) in {} file(s)\n",
        diagnostics.len(),
        files.len()
    ));
    out.join("\n\n")
}

/// `ok: N workflow(s) in M file(s)` (with `, K supervisor(s)` and `, J monitor(s)` when
/// there are any) and one line per workflow, per root supervisor and per monitor (at most
/// [`MONITORS_LISTED`] of them: a fleet may hold a million).
fn success_report(catalog: &Catalog) -> String {
    let mut monitor_files: BTreeSet<&Path> = BTreeSet::new();
    let mut last: Option<&Path> = None;
    for m in catalog.monitors.iter() {
        // Monitors come file by file: only a change of file is looked up.
        if last != Some(m.file()) {
            monitor_files.insert(m.file());
            last = Some(m.file());
        }
    }
    let files: BTreeSet<&Path> = catalog
        .workflows
        .values()
        .map(|w| w.file.as_path())
        .chain(catalog.supervisors.values().map(|s| s.file.as_path()))
        .chain(monitor_files)
        .collect();
    let supervisors = match catalog.supervisors.len() {
        0 => String::new(),
        n => format!(", {n} supervisor(s)"),
    };
    let monitors = match catalog.monitors.len() {
        0 => String::new(),
        n => format!(", {n} monitor(s)"),
    };
    let mut out = format!(
        "ok: {} workflow(s){supervisors}{monitors} in {} file(s)\n",
        catalog.workflows.len(),
        files.len()
    );
    let width = catalog
        .workflows
        .keys()
        .chain(catalog.supervisors.keys())
        .map(String::len)
        .max()
        .unwrap_or(0);
    for (name, wf) in &catalog.workflows {
        let schedule = wf
            .schedule
            .as_ref()
            .map(|s| format!(", schedule `{}`", s.expr))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {name:<width$}  {} ({} task(s){schedule})\n",
            wf.file.display(),
            wf.tasks.len()
        ));
    }
    for sup in catalog.supervisor_roots() {
        out.push_str(&format!(
            "  {:<width$}  {} (supervisor, {} service(s) in its tree)\n",
            sup.name,
            sup.file.display(),
            services(sup)
        ));
    }
    for m in catalog.monitors.iter().take(MONITORS_LISTED) {
        out.push_str(&format!(
            "  {:<width$}  {} (monitor, {} every {:?})\n",
            m.name(),
            m.file().display(),
            m.kind(),
            m.every()
        ));
    }
    if catalog.monitors.len() > MONITORS_LISTED {
        out.push_str(&format!(
            "  ... and {} more monitor(s)\n",
            catalog.monitors.len() - MONITORS_LISTED
        ));
    }
    out
}

/// Monitors listed one per line by a successful `validate`.
const MONITORS_LISTED: usize = 50;

/// How many services the tree of `sup` holds.
fn services(sup: &spec::SupervisorSpec) -> usize {
    sup.children
        .iter()
        .map(|c| match &c.kind {
            spec::ChildKind::Service(_) => 1,
            spec::ChildKind::Supervisor(nested) => services(nested),
        })
        .sum()
}

/// `opsconsole --principal EP validate`: the files the principal at EP has loaded, checked
/// there as it reads them. Prints like [`validate`] and exits the same way (1 on problems).
pub async fn validate_loaded(dirs: &super::Dirs) -> ExitCode {
    use crate::principal::bootstrap::{self, Found};
    use crate::protocol::api::{Client, Request, Response};
    let client = match bootstrap::find_principal(&dirs.data, bootstrap::REQUEST_TIMEOUT).await {
        Found::Running { client, .. } => client,
        Found::NotAnswering(n) => return super::fail(super::EXIT_FAILED, n),
        Found::Absent => {
            return super::fail(
                super::EXIT_FAILED,
                "no principal runs: without --principal, `validate` checks the files here",
            );
        }
    };
    match client.call(Request::ValidateLoaded).await {
        Ok(Response::Validated(report)) if report.problems.is_empty() => {
            let mut out = format!(
                "ok: {} document(s) in {} file(s) of the principal's {}\n",
                report.valid.len(),
                report.files,
                report.dir
            );
            for name in &report.valid {
                out.push_str(&format!("  {name}\n"));
            }
            let _ = std::io::stdout().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Ok(Response::Validated(report)) => {
            let _ = std::io::stderr().write_all(failure_report(&report.problems).as_bytes());
            ExitCode::from(1)
        }
        Ok(Response::Error(e)) => super::client_failure(e.into()),
        Ok(other) => super::fail(super::EXIT_FAILED, format!("unexpected reply: {other:?}")),
        Err(e) => super::client_failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_report_separates_diagnostics_and_counts_files() {
        let d = |file: &str, line| Diagnostic {
            file: PathBuf::from(file),
            line,
            col: 3,
            message: "bad".into(),
            source_line: Some("  x: 1".into()),
        };
        let report = failure_report(&[d("a.yaml", 1), d("a.yaml", 2), d("b.yaml", 1)]);
        assert!(report.starts_with("a.yaml:1:3: bad\n  |    x: 1\n  |    ^\n\na.yaml:2:3"));
        assert!(
            report.ends_with("\n\n3 problem(s) in 2 file(s)\n"),
            "{report}"
        );
    }
}
