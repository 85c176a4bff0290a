//! `status`, `cancel`, `pause`, `resume`: requests to the running principal.

use std::process::ExitCode;

use super::{Dirs, EXIT_FAILED, EXIT_INVALID, client_failure, fail};
use crate::principal::bootstrap::{Found, REQUEST_TIMEOUT, find_principal};
use crate::protocol::RunId;
use crate::protocol::api::{Client, ClientExt, Request, Response};
use crate::protocol::zmq::ZmqClient;

/// The running principal of the data dir, or the exit code after saying why there is none.
pub(super) async fn connect(dirs: &Dirs) -> Result<ZmqClient, ExitCode> {
    match find_principal(&dirs.data, REQUEST_TIMEOUT).await {
        Found::Running { client, .. } => Ok(client),
        Found::NotAnswering(n) => Err(fail(EXIT_FAILED, n)),
        Found::Absent => Err(fail(
            EXIT_FAILED,
            format!(
                "no principal is running for {}: start one with `opsconsole principal`",
                dirs.data.display()
            ),
        )),
    }
}

/// Prints the principal's status: slots, queue, and per workflow its schedule, next fire
/// times, paused state and active runs.
pub async fn status(dirs: &Dirs, json: bool) -> ExitCode {
    let client = match connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = match client.status().await {
        Ok(s) => s,
        Err(e) => return client_failure(e),
    };
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    crate::say!(
        "principal pid {} since {}; slots {}/{} busy; {} task(s) queued",
        s.pid,
        s.started_at
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S"),
        s.busy_slots,
        s.slots,
        s.queued_tasks
    );
    // Who the principal took this caller for: the CURVE key's name, or local.
    match &s.curve {
        Some(c) => {
            let r = &c.refused;
            crate::say!(
                "asked as key {} ({}) over CURVE, server key {}; refused since start: {} \
                 unknown key, {} wrong role, {} not CURVE, {} bad handshake, {} bad cookie, \
                 {} bad vouch, {} bad message, {} revoked",
                c.key_name,
                s.role.map_or("-", |r| r.as_str()),
                c.server_key,
                r.unknown_key,
                r.wrong_role,
                r.not_curve,
                r.bad_handshake,
                r.bad_cookie,
                r.bad_vouch,
                r.bad_message,
                r.revoked
            );
        }
        None => crate::say!("asked as local"),
    }
    for w in &s.workflows {
        let schedule = match &w.schedule {
            Some(expr) if w.paused => format!("{expr} (paused)"),
            Some(expr) => expr.clone(),
            None => "manual".into(),
        };
        let next = w
            .next_fires
            .iter()
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%m-%d %H:%M:%S")
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(", ");
        let active = w
            .active_runs
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        crate::say!(
            "  {:<24} {:<24} next: {:<44} active: {}",
            w.name,
            schedule,
            if next.is_empty() { "-" } else { &next },
            if active.is_empty() { "-" } else { &active }
        );
    }
    if let Some(problem) = &s.store_problem {
        crate::say!(
            "\nhistory store: {problem}\n  events are held in memory and written when the disk has \
             room again; new runs are refused until then"
        );
    }
    if s.agent_messages_refused > 0 {
        crate::say!(
            "\nagents: {} message(s) refused and dropped (see `opsconsole agents --json` for \
             which agent sent them, and the principal's log for why)",
            s.agent_messages_refused
        );
    }
    // Issue 20, items 6 and 7: what the network limits did (counted since the start).
    if let Some(closed) = s.peers_closed.filter(|c| c.over_budget + c.too_slow > 0) {
        crate::say!(
            "\npeers_closed: over_budget {}, too_slow {} (a message over a receive budget, a \
             large frame sent too slowly)",
            closed.over_budget,
            closed.too_slow
        );
    }
    if let Some(r) = s.requests.filter(|r| r.busy.total() > 0) {
        crate::say!(
            "\nrequests: {} served, {} refused busy (role_share {}, long_polls_per_key {}, \
             per_connection {}, all_slots {})",
            r.served,
            r.busy.total(),
            r.busy.role_share,
            r.busy.long_polls_per_key,
            r.busy.per_connection,
            r.busy.all_slots
        );
    }
    if !s.spec_problems.is_empty() {
        crate::say!(
            "\n{} problem(s) in workflow files (the last good version of each stays in effect):",
            s.spec_problems.len()
        );
        for p in &s.spec_problems {
            crate::say!("{p}\n");
        }
    }
    ExitCode::SUCCESS
}

/// Cancels a run.
pub async fn cancel(dirs: &Dirs, run: RunId) -> ExitCode {
    let client = match connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.cancel(run).await {
        Ok(true) => {
            crate::say!("run {run}: cancelling");
            ExitCode::SUCCESS
        }
        Ok(false) => fail(EXIT_INVALID, format!("run {run} is not active")),
        Err(e) => client_failure(e),
    }
}

/// Pauses or resumes a workflow's schedule.
pub async fn set_paused(dirs: &Dirs, workflow: String, paused: bool) -> ExitCode {
    let client = match connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = if paused {
        Request::Pause { workflow }
    } else {
        Request::Resume { workflow }
    };
    match client.call(request).await {
        Ok(Response::Paused { workflow, paused }) => {
            crate::say!(
                "{workflow}: schedule {}",
                if paused { "paused" } else { "resumed" }
            );
            ExitCode::SUCCESS
        }
        Ok(Response::Error(e)) => client_failure(e.into()),
        Ok(other) => fail(EXIT_FAILED, format!("unexpected reply: {other:?}")),
        Err(e) => client_failure(e),
    }
}
