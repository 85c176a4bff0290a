//! `opsconsole history` and `opsconsole logs`: through the running principal when there is
//! one (it owns the store), otherwise straight from the history file.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use tokio::sync::broadcast;

use super::{Dirs, EXIT_FAILED, EXIT_INVALID, Style, client_failure, fail};
use crate::humantime::format_secs;
use crate::principal::bootstrap::{self as connect, Found, Reading};
use crate::protocol::api::{Client, ClientExt, MAX_LOG_PAGE, Request, Response};
use crate::protocol::history::{RunSummary, StoredLine};
use crate::protocol::zmq::ZmqClient;
use crate::protocol::{Event, RunId, RunState, Stream};
use crate::store::query::{LogFilter, Reader, RunFilter};

/// Where `history` and `logs` read from.
enum Source {
    /// The running principal (its pid), which owns the file.
    Principal(ZmqClient, u32),
    /// The file itself: no principal runs.
    File(Reader),
    /// No principal runs and there is no history file: nothing has run here yet.
    Nothing,
}

/// How long a follower waits for an answer (the heartbeat included) before it decides the
/// principal is gone.
const FOLLOW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The running principal if there is one, otherwise the file. A principal that is starting
/// (it holds the file but does not listen yet) is waited for; one that listens but does not
/// answer is an error, as reading the file it holds would be.
async fn source(dirs: &Dirs, request_timeout: std::time::Duration) -> Result<Source, ExitCode> {
    match connect::find_principal(&dirs.data, request_timeout).await {
        Found::Running { client, pid } => return Ok(Source::Principal(client, pid)),
        Found::NotAnswering(n) => return Err(fail(EXIT_FAILED, n)),
        Found::Absent => {}
    }
    if let Ok(reader) = Reader::open(&dirs.data) {
        return Ok(Source::File(reader));
    }
    match connect::await_starting_principal(&dirs.data, request_timeout).await {
        Reading::Principal(client, pid) => Ok(Source::Principal(client, pid)),
        Reading::NotAnswering(n) => Err(fail(EXIT_FAILED, n)),
        Reading::File if !crate::store::db_path(&dirs.data).exists() => Ok(Source::Nothing),
        Reading::File => Reader::open(&dirs.data)
            .map(Source::File)
            .map_err(|e| fail(EXIT_FAILED, e)),
    }
}

/// The answer of `history` and `logs` of runs when there is no history file: the store's own
/// "no history yet: run a workflow first".
fn no_runs_yet(dirs: &Dirs) -> ExitCode {
    match Reader::open(&dirs.data) {
        Err(e) => fail(EXIT_FAILED, e),
        Ok(_) => fail(EXIT_FAILED, "no history yet: run a workflow first"),
    }
}

/// What `history --service` and `logs --service` say when there is no history file: services
/// are not run by `opsconsole run`, so "run a workflow first" would send the reader astray.
fn no_service_history_yet(dirs: &Dirs, path: &str) -> ExitCode {
    crate::say!(
        "no history yet for `{path}`: there is no history file in {} (services run under a \
         principal: `opsconsole principal`)",
        dirs.data.display()
    );
    ExitCode::SUCCESS
}

/// Lists runs, newest first.
pub async fn history(dirs: &Dirs, filter: RunFilter, json: bool) -> ExitCode {
    let runs = match source(dirs, connect::REQUEST_TIMEOUT).await {
        Err(code) => return code,
        Ok(Source::Principal(client, _)) => {
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
        }
        Ok(Source::Nothing) => return no_runs_yet(dirs),
        Ok(Source::File(reader)) => match reader.runs(&filter) {
            Ok(r) => r,
            Err(e) => return fail(EXIT_FAILED, e),
        },
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
    let by_width = runs
        .iter()
        .map(|r| r.triggered_by.as_deref().map_or(1, str::len))
        .max()
        .unwrap_or(2)
        .clamp(2, 32);
    let _ = writeln!(
        out,
        "{:>6}  {:<wf_width$}  {:<9}  {:<19}  {:>9}  {:<by_width$}  FAILED TASKS",
        "RUN", "WORKFLOW", "STATE", "STARTED", "DURATION", "BY"
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
            "{:>6}  {:<wf_width$}  {state}  {started}  {duration:>9}  {:<by_width$}  {}",
            r.run_id,
            r.workflow,
            r.triggered_by.as_deref().unwrap_or("-"),
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
    let timeout = if follow {
        FOLLOW_TIMEOUT
    } else {
        connect::REQUEST_TIMEOUT
    };
    let reader = match source(dirs, timeout).await {
        Err(code) => return code,
        Ok(Source::Nothing) => return no_runs_yet(dirs),
        Ok(Source::File(reader)) => reader,
        Ok(Source::Principal(client, pid)) => {
            // Subscribe before reading what is stored, and ask whether the run is still active
            // before that: a line is then either in the pages or in the events (or both, which
            // the sequence numbers tell), and an ended run has all its lines in the pages.
            let mut events = client.subscribe();
            let active = follow
                && match client.run_detail(run).await {
                    Ok(d) => !d.summary.state.is_terminal(),
                    Err(e) => return client_failure(e),
                };
            let mut follower = Follower {
                client: &client,
                pid,
                run,
                filter: &filter,
                printed: HashMap::new(),
                offset: 0,
                json,
                style,
            };
            if let Err(code) = follower.print_stored(&mut out).await {
                return code;
            }
            if out.flush().is_err() || !active {
                return ExitCode::SUCCESS;
            }
            return follower.follow(&mut events, &mut out).await;
        }
    };
    if follow {
        crate::tell!(
            "note: no principal is running for {}, so no new lines will arrive; printing what is stored",
            dirs.data.display()
        );
    }
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

/// How long after the principal said the run ended its last events may take to arrive before
/// the rest is read from the store instead.
const LAST_EVENTS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prints a run's lines through the principal: the stored ones, then the live ones.
struct Follower<'a> {
    client: &'a ZmqClient,
    pid: u32,
    run: RunId,
    filter: &'a LogFilter,
    /// The highest line number printed per task attempt.
    printed: HashMap<(String, u32), u64>,
    /// How many stored lines have been paged through.
    offset: usize,
    json: bool,
    style: Style,
}

impl Follower<'_> {
    /// Prints the stored lines from `offset` on that were not printed yet.
    async fn print_stored(&mut self, out: &mut impl Write) -> Result<(), ExitCode> {
        let before = self.printed.clone();
        loop {
            let request = Request::Logs {
                run_id: self.run,
                task: self.filter.task.clone(),
                stream: self.filter.stream,
                offset: self.offset,
                limit: MAX_LOG_PAGE,
                from_end: false,
            };
            let (lines, more) = match self.client.call(request).await {
                Ok(Response::Lines { lines, more, .. }) => (lines, more),
                Ok(Response::Error(e)) => return Err(client_failure(e.into())),
                Ok(other) => return Err(fail(EXIT_FAILED, format!("unexpected reply: {other:?}"))),
                Err(e) => return Err(client_failure(e)),
            };
            self.offset += lines.len();
            for l in &lines {
                let key = (l.task.clone(), l.attempt);
                if before.get(&key).is_some_and(|&last| l.seq <= last) {
                    continue; // printed already
                }
                let last = self.printed.entry(key).or_default();
                *last = (*last).max(l.seq);
                if write_line(out, l, self.json, self.style).is_err() {
                    return Err(ExitCode::SUCCESS); // reader went away (`| head`)
                }
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Prints the run's new lines from the event stream until the run ends. A long poll for
    /// the run's end runs alongside: it carries the client's heartbeat, so a principal that
    /// died or stopped answering ends the follow with an error instead of a silent wait.
    async fn follow(
        &mut self,
        events: &mut broadcast::Receiver<Event>,
        out: &mut impl Write,
    ) -> ExitCode {
        let run = self.run;
        let client = self.client;
        let wait = client.wait(run);
        tokio::pin!(wait);
        let mut ended: Option<tokio::time::Instant> = None;
        loop {
            let last_events = async {
                match ended {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                event = events.recv() => event,
                result = &mut wait, if ended.is_none() => match result {
                    Ok(_) => {
                        ended = Some(tokio::time::Instant::now() + LAST_EVENTS_WAIT);
                        continue;
                    }
                    Err(e) => {
                        let _ = out.flush();
                        return fail(
                            EXIT_FAILED,
                            format!(
                                "lost the principal (pid {}) while following run {run}: {e}. It \
                                 may have been killed or be stuck; `opsconsole status` tells \
                                 whether one runs, `opsconsole logs {run}` prints what was stored",
                                self.pid
                            ),
                        );
                    }
                },
                () = last_events => {
                    // The end event was not seen (dropped on the way): the store has the rest.
                    let result = self.print_stored(out).await;
                    let _ = out.flush();
                    return match result {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(code) => code,
                    };
                }
            };
            let batch = match event {
                Ok(Event::Logs(batch)) if batch.key.run_id == run => batch,
                Ok(Event::RunState { run_id, state, .. })
                    if run_id == run && state.is_terminal() =>
                {
                    let _ = out.flush();
                    return ExitCode::SUCCESS;
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    crate::tell!(
                        "note: {n} events were missed while following; `opsconsole logs {run}` prints every stored line"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = out.flush();
                    return fail(EXIT_FAILED, "the principal went away while following");
                }
            };
            if self
                .filter
                .task
                .as_deref()
                .is_some_and(|t| t != &*batch.key.task)
                || self.filter.stream.is_some_and(|s| s != batch.stream)
            {
                continue;
            }
            let key = (batch.key.task.to_string(), batch.key.attempt);
            let last = self.printed.get(&key).copied();
            let mut newest = last;
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
                if write_line(out, &line, self.json, self.style).is_err() {
                    return ExitCode::SUCCESS;
                }
                newest = Some(newest.map_or(l.seq, |n| n.max(l.seq)));
            }
            if let Some(n) = newest {
                self.printed.insert(key, n);
            }
            if out.flush().is_err() {
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Lists a service's (or subtree's) lifecycle events, oldest first.
pub async fn service_history(dirs: &Dirs, path: &str, limit: usize, json: bool) -> ExitCode {
    let events = match source(dirs, connect::REQUEST_TIMEOUT).await {
        Err(code) => return code,
        Ok(Source::Principal(client, _)) => {
            let request = Request::ServiceHistory {
                path: Some(path.to_string()),
                limit,
            };
            match client.call(request).await {
                Ok(Response::ServiceEvents { events }) => events,
                Ok(Response::Error(e)) => return client_failure(e.into()),
                Ok(other) => return fail(EXIT_FAILED, format!("unexpected reply: {other:?}")),
                Err(e) => return client_failure(e),
            }
        }
        Ok(Source::Nothing) => return no_service_history_yet(dirs, path),
        Ok(Source::File(reader)) => match reader.service_events(Some(path), limit) {
            Ok(e) => e,
            Err(e) => return fail(EXIT_FAILED, e),
        },
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, &events);
        let _ = writeln!(out);
        return ExitCode::SUCCESS;
    }
    if events.is_empty() {
        let _ = writeln!(
            out,
            "no history for `{path}`: `opsconsole svc status` lists the services"
        );
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(
        out,
        "{:<26} {:<24} {:>5}  {:<16} DETAILS",
        "TIME", "PATH", "START", "EVENT"
    );
    for e in &events {
        let mut details = e.message.clone().unwrap_or_default();
        if let Some(pid) = e.pid {
            details = format!("pid {pid} {details}");
        }
        let _ = writeln!(
            out,
            "{:<26} {:<24} {:>5}  {:<16} {}",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.path,
            e.start_no,
            e.kind.as_str(),
            details.trim()
        );
    }
    ExitCode::SUCCESS
}

/// The lines of a page read no later than `until`, in order.
fn stored_until(
    lines: &[crate::protocol::service::ServiceLine],
    until: chrono::DateTime<chrono::Utc>,
) -> &[crate::protocol::service::ServiceLine] {
    let n = lines.iter().take_while(|l| l.at <= until).count();
    &lines[..n]
}

/// Tells (on stderr) that `path` has printed nothing that is stored.
fn nothing_stored(path: &str) {
    crate::tell!("no stored output for `{path}` yet");
}

/// Prints a service's (or subtree's) stored output; with `follow`, then its new lines as they
/// come, until Ctrl-C or the principal stops.
pub async fn service_logs(dirs: &Dirs, path: &str, json: bool, follow: bool) -> ExitCode {
    use crate::protocol::service::ServiceLine;
    let style = Style::stdout();
    let print = |line: &ServiceLine| {
        if json {
            crate::say!("{}", serde_json::to_string(line).unwrap_or_default());
        } else {
            let mark = match line.stream {
                Stream::Stdout => format!("[{}#{}]", line.path, line.start_no),
                Stream::Stderr => {
                    style.paint("31", &format!("[{}#{}:err]", line.path, line.start_no))
                }
            };
            let at = line.at.with_timezone(&chrono::Local).format("%H:%M:%S%.3f");
            crate::say!("{at} {mark} {}", line.text);
        }
    };
    // What was stored when the command started: a service that keeps printing would
    // otherwise keep the paging going for ever (`--follow` shows the rest as it comes).
    let until = chrono::Utc::now();
    let source = match source(dirs, connect::REQUEST_TIMEOUT).await {
        Err(code) => return code,
        Ok(s) => s,
    };
    let (client, mut events) = match source {
        Source::Nothing => return no_service_history_yet(dirs, path),
        Source::File(reader) => {
            if follow {
                return fail(
                    EXIT_INVALID,
                    "--follow needs a running principal (`opsconsole principal`)",
                );
            }
            let mut printed = 0;
            loop {
                match reader.service_lines_from(Some(path), printed, MAX_LOG_PAGE) {
                    Ok(lines) => {
                        let shown = stored_until(&lines, until);
                        shown.iter().for_each(print);
                        printed += shown.len();
                        // A page may hold fewer lines than asked for (long lines): the end
                        // is an empty page, or a line stored after this command started.
                        if lines.is_empty() || shown.len() < lines.len() {
                            break;
                        }
                    }
                    Err(e) => return fail(EXIT_FAILED, e),
                }
            }
            if printed == 0 {
                nothing_stored(path);
            }
            return ExitCode::SUCCESS;
        }
        Source::Principal(client, _) => {
            // Subscribed first, so that no line between the page and the stream is missed.
            let events = follow.then(|| client.subscribe());
            (client, events)
        }
    };
    // Every stored line, a page at a time, oldest first.
    let mut printed = 0;
    let mut last = None;
    loop {
        let request = Request::ServiceLogs {
            path: Some(path.to_string()),
            limit: MAX_LOG_PAGE,
            offset: Some(printed),
        };
        let lines = match client.call(request).await {
            Ok(Response::ServiceLines { lines }) => lines,
            Ok(Response::Error(e)) => return client_failure(e.into()),
            Ok(other) => return fail(EXIT_FAILED, format!("unexpected reply: {other:?}")),
            Err(e) => return client_failure(e),
        };
        let shown = stored_until(&lines, until);
        shown.iter().for_each(print);
        printed += shown.len();
        last = shown.last().map(|l| (l.at, l.start_no)).or(last);
        // A page may hold fewer lines than asked for (long lines; see `PAGE_BYTES`).
        if lines.is_empty() || shown.len() < lines.len() {
            break;
        }
    }
    if printed == 0 {
        // Nothing stored: say whether the path names anything at all.
        let known = client.call(Request::Services {
            path: Some(path.to_string()),
        });
        if let Ok(Response::Error(e)) = known.await {
            return client_failure(e.into());
        }
    }
    if printed == 0 && !follow {
        nothing_stored(path);
    }
    let Some(events) = events.as_mut() else {
        return ExitCode::SUCCESS;
    };
    let subtree = format!("{path}/");
    loop {
        let batch = tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            ev = events.recv() => match ev {
                Ok(Event::ServiceLogs(b)) => b,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    crate::tell!(
                        "(fell behind: {n} event(s) not shown; `opsconsole logs --service {path}` \
                         has every line)"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return fail(EXIT_FAILED, "the principal stopped");
                }
            },
        };
        if batch.path.as_ref() != path && !batch.path.starts_with(&subtree) {
            continue;
        }
        for l in &batch.lines {
            // Lines already on the page came in before the subscription took effect.
            if last.is_some_and(|(at, start)| l.at <= at && batch.start_no <= start) {
                continue;
            }
            print(&ServiceLine {
                path: batch.path.to_string(),
                start_no: batch.start_no,
                stream: batch.stream,
                at: l.at,
                text: l.text.clone(),
            });
        }
    }
}

/// `history --actions`: who did what to what, newest first (through the principal when one
/// runs, otherwise from the file).
pub async fn actions(dirs: &Dirs, limit: usize, json: bool) -> ExitCode {
    let actions = match source(dirs, connect::REQUEST_TIMEOUT).await {
        Err(code) => return code,
        Ok(Source::Principal(client, _)) => match client.call(Request::Actions { limit }).await {
            Ok(Response::Actions { actions }) => actions,
            Ok(Response::Error(e)) => return client_failure(e.into()),
            Ok(other) => return fail(EXIT_FAILED, format!("unexpected reply: {other:?}")),
            Err(e) => return client_failure(e),
        },
        Ok(Source::Nothing) => Vec::new(),
        Ok(Source::File(reader)) => match reader.actions(limit) {
            Ok(a) => a,
            Err(e) => return fail(EXIT_FAILED, e),
        },
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, &actions);
        let _ = writeln!(out);
        return ExitCode::SUCCESS;
    }
    if actions.is_empty() {
        let _ = writeln!(out, "no actions recorded");
        return ExitCode::SUCCESS;
    }
    let by_width = actions
        .iter()
        .map(|a| a.by.len())
        .max()
        .unwrap_or(2)
        .clamp(2, 32);
    let _ = writeln!(
        out,
        "{:<19}  {:<by_width$}  {:<8}  TARGET",
        "WHEN", "BY", "ACTION"
    );
    for a in &actions {
        let when =
            a.at.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S");
        let _ = writeln!(
            out,
            "{when}  {:<by_width$}  {:<8}  {}",
            a.by, a.action, a.target
        );
    }
    ExitCode::SUCCESS
}
