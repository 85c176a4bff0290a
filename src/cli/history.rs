//! `opsconsole history` and `opsconsole logs`: through the running principal when there is
//! one (it owns the store), otherwise straight from the history file.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use tokio::sync::broadcast;

use super::connect::running_principal;
use super::{Dirs, EXIT_FAILED, EXIT_INVALID, Style, client_failure, fail};
use crate::humantime::format_secs;
use crate::protocol::api::{Client, ClientExt, MAX_LOG_PAGE, Request, Response};
use crate::protocol::{Event, RunId, RunState, Stream};
use crate::store::query::{LogFilter, Reader, RunFilter, RunSummary, StoredLine};

/// Lists runs, newest first.
pub async fn history(dirs: &Dirs, filter: RunFilter, json: bool) -> ExitCode {
    let runs = if let Some(client) = running_principal(&dirs.data).await {
        let request = Request::History {
            workflow: filter.workflow.clone(),
            limit: filter.limit,
        };
        match client.call(request).await {
            Ok(Response::Runs { runs }) => runs,
            Ok(Response::Error(e)) => return client_failure(e.into()),
            Ok(other) => return fail(EXIT_FAILED, format!("unexpected reply: {other:?}")),
            Err(e) => return client_failure(e),
        }
    } else {
        match Reader::open(&dirs.data).and_then(|r| r.runs(&filter)) {
            Ok(r) => r,
            Err(e) => return fail(EXIT_FAILED, e),
        }
    };
    print_runs(&runs, filter.workflow.as_deref(), json);
    ExitCode::SUCCESS
}

fn print_runs(runs: &[RunSummary], workflow: Option<&str>, json: bool) {
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, runs);
        let _ = writeln!(out);
        return;
    }
    if runs.is_empty() {
        let _ = writeln!(
            out,
            "no runs recorded{}",
            workflow
                .map(|w| format!(" for workflow `{w}`"))
                .unwrap_or_default()
        );
        return;
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
    for r in runs {
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
}

fn write_line(
    out: &mut impl Write,
    l: &StoredLine,
    json: bool,
    style: Style,
) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, l).map_err(std::io::Error::other)?;
        writeln!(out)
    } else {
        let time = l.at.with_timezone(&chrono::Local).format("%H:%M:%S%.3f");
        let tag = match l.stream {
            Stream::Stdout => format!("[{}#{}]", l.task, l.attempt),
            Stream::Stderr => style.paint("31", &format!("[{}#{}:err]", l.task, l.attempt)),
        };
        writeln!(out, "{time} {tag} {}", l.line)
    }
}

/// Prints the stored output of a run in order; with `follow`, then new lines as they come
/// until the run ends.
pub async fn logs(
    dirs: &Dirs,
    run: RunId,
    filter: LogFilter,
    json: bool,
    follow: bool,
) -> ExitCode {
    let style = Style::stdout();
    let mut out = BufWriter::new(std::io::stdout().lock());
    if let Some(client) = running_principal(&dirs.data).await {
        // Subscribe before reading what is stored, and ask whether the run is still active
        // before that: a line is then either in the pages or in the events (or both, which the
        // sequence numbers tell), and an ended run has all its lines in the pages.
        let mut events = client.subscribe();
        let active = follow
            && match client.run_detail(run).await {
                Ok(d) => !d.summary.state.is_terminal(),
                Err(e) => return client_failure(e),
            };
        let mut printed: HashMap<(String, u32), u64> = HashMap::new();
        let mut offset = 0;
        loop {
            let request = Request::Logs {
                run_id: run,
                task: filter.task.clone(),
                stream: filter.stream,
                offset,
                limit: MAX_LOG_PAGE,
                from_end: false,
            };
            let (lines, more) = match client.call(request).await {
                Ok(Response::Lines { lines, more, .. }) => (lines, more),
                Ok(Response::Error(e)) => return client_failure(e.into()),
                Ok(other) => return fail(EXIT_FAILED, format!("unexpected reply: {other:?}")),
                Err(e) => return client_failure(e),
            };
            offset += lines.len();
            for l in &lines {
                let last = printed.entry((l.task.clone(), l.attempt)).or_default();
                *last = (*last).max(l.seq);
                if write_line(&mut out, l, json, style).is_err() {
                    return ExitCode::SUCCESS; // reader went away (`| head`)
                }
            }
            if !more {
                break;
            }
        }
        if out.flush().is_err() || !active {
            return ExitCode::SUCCESS;
        }
        return follow_events(
            &mut events,
            run,
            &filter,
            &mut printed,
            json,
            style,
            &mut out,
        )
        .await;
    }
    if follow {
        eprintln!(
            "note: no principal is running for {}, so no new lines will arrive; printing what is stored",
            dirs.data.display()
        );
    }
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
    let result = reader.logs(run, &filter, |l| write_line(&mut out, &l, json, style));
    let _ = out.flush();
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILED, e),
    }
}

/// Prints the run's new lines from the event stream until the run ends.
async fn follow_events(
    events: &mut broadcast::Receiver<Event>,
    run: RunId,
    filter: &LogFilter,
    printed: &mut HashMap<(String, u32), u64>,
    json: bool,
    style: Style,
    out: &mut impl Write,
) -> ExitCode {
    loop {
        let batch = match events.recv().await {
            Ok(Event::Logs(batch)) if batch.key.run_id == run => batch,
            Ok(Event::RunState { run_id, state, .. }) if run_id == run && state.is_terminal() => {
                let _ = out.flush();
                return ExitCode::SUCCESS;
            }
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                eprintln!(
                    "note: {n} events were missed while following; `opsconsole logs {run}` prints every stored line"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = out.flush();
                return fail(EXIT_FAILED, "the principal went away while following");
            }
        };
        if filter
            .task
            .as_deref()
            .is_some_and(|t| t != &*batch.key.task)
            || filter.stream.is_some_and(|s| s != batch.stream)
        {
            continue;
        }
        let key = (batch.key.task.to_string(), batch.key.attempt);
        let last = printed.get(&key).copied();
        for l in &batch.lines {
            if last.is_some_and(|last| l.seq <= last) {
                continue; // already printed from the store
            }
            let line = StoredLine {
                task: key.0.clone(),
                attempt: key.1,
                stream: batch.stream,
                at: l.at,
                line: l.text.clone(),
                seq: l.seq,
            };
            if write_line(out, &line, json, style).is_err() {
                return ExitCode::SUCCESS;
            }
        }
        if out.flush().is_err() {
            return ExitCode::SUCCESS;
        }
    }
}
