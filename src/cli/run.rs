//! `opsconsole run NAME`: runs one workflow on an embedded principal and reports as it goes.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast::error::RecvError;

use super::{Dirs, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_TERMINATED, Style, fail};
use crate::humantime::format_duration;
use crate::principal::RunOutcome;
use crate::protocol::api::{
    ApiError, ApiErrorKind, Client, ClientError, ClientExt, Request, Response,
};
use crate::protocol::{Event, RunId, RunState, Stream, TaskState};

/// Options of `opsconsole run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Workflow to run.
    pub workflow: String,
    /// `--param` overrides.
    pub params: BTreeMap<String, String>,
    /// Stream states and output while it runs.
    pub wait: bool,
    /// Agent slots.
    pub slots: usize,
    /// SIGTERM-to-SIGKILL grace.
    pub kill_grace: Duration,
    /// Instead of a new run, run the failed part of this ended run again (`opsconsole retry`).
    pub retry_of: Option<RunId>,
}

impl RunOptions {
    /// Starts the run this face is about: a new one, or a retry.
    async fn start(&self, client: &dyn Client) -> Result<RunId, ClientError> {
        match self.retry_of {
            Some(id) => client.retry(id).await,
            None => client.trigger(&self.workflow, self.params.clone()).await,
        }
    }

    /// "run 7 of `etl`" or "retry of run 7".
    fn describe(&self, id: RunId) -> String {
        match self.retry_of {
            Some(_) => format!("retry of run {id}"),
            None => format!("run {id} of `{}`", self.workflow),
        }
    }
}

/// Runs the workflow to the end; exit 0 succeeded, 1 failed, 2 invalid input, 130 Ctrl-C.
///
/// With a principal running for the data dir, the run goes through it; otherwise this
/// process runs an embedded principal for the duration of the run.
pub async fn run(dirs: &Dirs, opts: RunOptions) -> ExitCode {
    use crate::principal::bootstrap::{Found, REQUEST_TIMEOUT, Reading};
    let client = match crate::principal::bootstrap::find_principal(&dirs.data, REQUEST_TIMEOUT)
        .await
    {
        Found::Running { client, .. } => Some(client),
        // Running here instead would only fail on the file it holds.
        Found::NotAnswering(n) => return fail(EXIT_FAILED, n),
        // One that is starting holds the file: wait and go through it.
        Found::Absent => {
            match crate::principal::bootstrap::await_starting_principal(&dirs.data, REQUEST_TIMEOUT)
                .await
            {
                Reading::Principal(client, _) => Some(client),
                Reading::NotAnswering(n) => return fail(EXIT_FAILED, n),
                Reading::File => None,
            }
        }
    };
    if let Some(client) = client {
        if !opts.wait {
            // The principal runs it; nothing here needs to stay.
            return match opts.start(&client).await {
                Ok(id) => {
                    crate::say!(
                        "{} accepted; follow it with `opsconsole logs {id} --follow`",
                        opts.describe(id)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => Driven::failed(e).report(),
            };
        }
        let driven = drive(&client, &opts).await;
        return driven.report();
    }
    let needed = opts.retry_of.is_none().then_some(opts.workflow.as_str());
    let principal = match crate::principal::bootstrap::start_embedded(
        dirs,
        opts.slots,
        opts.kill_grace,
        needed,
        true,
        crate::principal::DEFAULT_AGENT_HEARTBEAT,
    ) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let driven = drive(&principal, &opts).await;
    // Writes every accepted event and log line to the store before we exit.
    principal.shutdown().await;
    driven.report()
}

/// What happened while driving a run, reported once the principal is done with it.
struct Driven {
    run_id: Option<RunId>,
    outcome: Result<Option<RunOutcome>, ClientError>,
    interrupted: Option<u8>,
    printer: Printer,
    started: Instant,
}

impl Driven {
    fn failed(e: ClientError) -> Self {
        Self {
            run_id: None,
            outcome: Err(e),
            interrupted: None,
            printer: Printer::new(false),
            started: Instant::now(),
        }
    }

    fn report(self) -> ExitCode {
        self.printer.finish();
        let Some(run_id) = self.run_id else {
            let code = match &self.outcome {
                Err(ClientError::Api(ApiError {
                    kind: ApiErrorKind::InvalidInput | ApiErrorKind::NotFound,
                    ..
                })) => EXIT_INVALID,
                _ => EXIT_FAILED,
            };
            return match self.outcome {
                Err(e) => fail(code, e),
                Ok(_) => fail(EXIT_FAILED, "the run was not started"),
            };
        };
        let style = self.printer.style;
        let elapsed = format_duration(self.started.elapsed());
        match self.outcome {
            Ok(Some(RunOutcome {
                state,
                failed_tasks,
                ..
            })) => {
                let line = match state {
                    RunState::Succeeded => {
                        style.paint("32", &format!("run {run_id} succeeded in {elapsed}"))
                    }
                    RunState::Failed => style.paint(
                        "31",
                        &format!(
                            "run {run_id} failed in {elapsed}; failed tasks: {}",
                            failed_tasks.join(", ")
                        ),
                    ),
                    other => style.paint("33", &format!("run {run_id} {other} after {elapsed}")),
                };
                crate::say!("{line}");
                crate::say!("  history: opsconsole logs {run_id}");
                match (self.interrupted, state) {
                    (Some(code), _) => ExitCode::from(code),
                    (None, RunState::Succeeded) => ExitCode::SUCCESS,
                    _ => ExitCode::from(EXIT_FAILED),
                }
            }
            Ok(None) => fail(EXIT_FAILED, format!("lost track of run {run_id}")),
            Err(e) => fail(EXIT_FAILED, format!("run {run_id}: {e}")),
        }
    }
}

/// Triggers the run through `client`, prints as it goes, and waits for its end; Ctrl-C and
/// SIGTERM cancel it.
async fn drive(client: &dyn Client, opts: &RunOptions) -> Driven {
    let started = Instant::now();
    let mut events = client.subscribe();
    let mut printer = Printer::new(opts.wait);
    let mut driven = Driven {
        run_id: None,
        outcome: Ok(None),
        interrupted: None,
        printer,
        started,
    };
    // Before the trigger: its task may start (and a Ctrl-C arrive) before the trigger's
    // acknowledgement does, and a signal must find the handler, not the default action.
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        driven.outcome = Err(ClientError::Unreachable(
            "cannot install signal handlers".into(),
        ));
        return driven;
    };
    let run_id = match opts.start(client).await {
        Ok(id) => id,
        Err(e) => {
            driven.outcome = Err(e);
            return driven;
        }
    };
    printer.run_id = run_id;
    if !opts.wait {
        crate::say!("{} started", opts.describe(run_id));
    }
    let mut interrupted: Option<u8> = None;
    let outcome = {
        let wait = client.wait(run_id);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                outcome = &mut wait => break outcome,
                ev = events.recv() => printer.on(ev),
                _ = sigint.recv(), if interrupted.is_none() => {
                    interrupted = Some(EXIT_INTERRUPTED);
                    crate::tell!("interrupted: cancelling run {run_id} (its tasks get SIGTERM)...");
                    let _ = client.cancel(run_id).await;
                }
                _ = sigterm.recv(), if interrupted.is_none() => {
                    interrupted = Some(EXIT_TERMINATED);
                    crate::tell!("terminated: cancelling run {run_id}...");
                    let _ = client.cancel(run_id).await;
                }
            }
        }
    };
    // Print what is still buffered (the run's last events arrive before the wait returns).
    while let Ok(ev) = events.try_recv() {
        printer.on(Ok(ev));
    }
    // Over a network socket a subscription takes effect a moment after it is made; a run that
    // ended within that moment (a quick task on an idle agent) printed nothing: its output
    // comes from the history instead.
    if printer.verbose && !printer.saw_output {
        stored_output(client, run_id, &printer).await;
    }
    Driven {
        run_id: Some(run_id),
        outcome,
        interrupted,
        printer,
        started,
    }
}

/// Prints the stored output of a run, as the events would have.
async fn stored_output(client: &dyn Client, run_id: RunId, printer: &Printer) {
    let request = Request::Logs {
        run_id,
        task: None,
        stream: None,
        offset: 0,
        limit: crate::protocol::api::MAX_LOG_PAGE,
        from_end: false,
    };
    if let Ok(Response::Lines { lines, .. }) = client.call(request).await {
        let mut out = std::io::stdout().lock();
        for l in lines {
            let tag = match l.stream {
                Stream::Stdout => format!("[{}]", l.task),
                Stream::Stderr => printer.style.paint("31", &format!("[{}:err]", l.task)),
            };
            let _ = writeln!(out, "{tag} {}", l.line);
        }
    }
}

#[derive(Clone, Copy)]
struct Printer {
    run_id: RunId,
    style: Style,
    verbose: bool,
    dropped: u64,
    /// Output of the run was printed from events.
    saw_output: bool,
}

impl Printer {
    /// A printer for a run not yet known; `verbose` prints states and output.
    fn new(verbose: bool) -> Self {
        Self {
            run_id: RunId(0),
            style: Style::stdout(),
            verbose,
            dropped: 0,
            saw_output: false,
        }
    }

    fn on(&mut self, ev: Result<Event, RecvError>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(RecvError::Lagged(n)) => {
                self.dropped += n;
                return;
            }
            Err(RecvError::Closed) => return,
        };
        if !self.verbose {
            return;
        }
        let mut out = std::io::stdout().lock();
        let s = self.style;
        // A closed stdout (`| head`) must not stop the run: ignore write errors.
        let _ = match ev {
            Event::Logs(batch) if batch.key.run_id == self.run_id => {
                self.saw_output = true;
                let tag = match batch.stream {
                    Stream::Stdout => format!("[{}]", batch.key.task),
                    Stream::Stderr => s.paint("31", &format!("[{}:err]", batch.key.task)),
                };
                batch
                    .lines
                    .iter()
                    .try_for_each(|l| writeln!(out, "{tag} {}", l.text))
            }
            Event::TaskState {
                key,
                state,
                message,
                ..
            } if key.run_id == self.run_id => {
                let code = match state {
                    TaskState::Succeeded => "32",
                    TaskState::Failed | TaskState::TimedOut => "31",
                    TaskState::Retrying | TaskState::Skipped | TaskState::Cancelled => "33",
                    _ => "36",
                };
                let detail = match (state, message) {
                    (TaskState::Running, _) => format!(" (attempt {})", key.attempt),
                    (_, Some(m)) => format!(": {m}"),
                    _ => String::new(),
                };
                // Queued says something only when it waits for a reason (no agent has its labels).
                if state == TaskState::Queued && detail.is_empty() {
                    Ok(())
                } else {
                    writeln!(
                        out,
                        "{}",
                        s.paint(code, &format!("-- {}: {state}{detail}", key.task))
                    )
                }
            }
            Event::RunState {
                run_id,
                state,
                workflow,
                ..
            } if run_id == self.run_id && !state.is_terminal() => {
                writeln!(
                    out,
                    "{}",
                    s.paint("1", &format!("run {run_id} of `{workflow}`: {state}"))
                )
            }
            _ => Ok(()),
        };
    }

    fn finish(&self) {
        if self.dropped > 0 {
            crate::tell!(
                "note: {} events were not shown because output could not keep up; all are stored (opsconsole logs {})",
                self.dropped,
                self.run_id
            );
        }
    }
}
