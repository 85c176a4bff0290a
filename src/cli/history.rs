//! `opsconsole history` and `opsconsole logs`: read the stored history.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use super::{Dirs, EXIT_FAILED, EXIT_INVALID, Style, fail};
use crate::humantime::format_secs;
use crate::protocol::{RunId, RunState, Stream};
use crate::store::query::{LogFilter, Reader, RunFilter};

/// Lists runs, newest first.
pub fn history(dirs: &Dirs, filter: RunFilter, json: bool) -> ExitCode {
    let reader = match Reader::open(&dirs.data) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let runs = match reader.runs(&filter) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, &runs);
        let _ = writeln!(out);
        return ExitCode::SUCCESS;
    }
    if runs.is_empty() {
        let _ = writeln!(
            out,
            "no runs recorded{}",
            match &filter.workflow {
                Some(w) => format!(" for workflow `{w}`"),
                None => String::new(),
            }
        );
        return ExitCode::SUCCESS;
    }
    let style = Style::stdout();
    let wf_width = runs
        .iter()
        .map(|r| r.workflow.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        out,
        "{:>6}  {:<wf_width$}  {:<9}  {:<19}  {:>9}  FAILED TASKS",
        "RUN", "WORKFLOW", "STATE", "STARTED", "DURATION"
    );
    for r in &runs {
        let state = format!("{:<9}", r.state.as_str());
        let state = match r.state {
            RunState::Succeeded => style.paint("32", &state),
            RunState::Failed => style.paint("31", &state),
            RunState::Cancelled => style.paint("33", &state),
            _ => style.paint("36", &state),
        };
        let started = r
            .started_at
            .unwrap_or(r.created_at)
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S");
        let duration = r
            .duration_secs
            .map(format_secs)
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:>6}  {:<wf_width$}  {state}  {started}  {duration:>9}  {}",
            r.run_id,
            r.workflow,
            r.failed_tasks.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// Prints the stored output of a run in order.
pub fn logs(dirs: &Dirs, run: RunId, filter: LogFilter, json: bool) -> ExitCode {
    let reader = match Reader::open(&dirs.data) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    match reader.run_exists(run) {
        Ok(true) => {}
        Ok(false) => {
            return fail(
                EXIT_INVALID,
                format!(
                    "no run {run} in {}: `opsconsole history` lists the runs",
                    dirs.data.display()
                ),
            );
        }
        Err(e) => return fail(EXIT_FAILED, e),
    }
    let style = Style::stdout();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let result = reader.logs(run, &filter, |l| {
        if json {
            serde_json::to_writer(&mut out, &l).map_err(std::io::Error::other)?;
            writeln!(out)
        } else {
            let time = l.at.with_timezone(&chrono::Local).format("%H:%M:%S%.3f");
            let tag = match l.stream {
                Stream::Stdout => format!("[{}#{}]", l.task, l.attempt),
                Stream::Stderr => style.paint("31", &format!("[{}#{}:err]", l.task, l.attempt)),
            };
            writeln!(out, "{time} {tag} {}", l.line)
        }
    });
    let _ = out.flush();
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILED, e),
    }
}
