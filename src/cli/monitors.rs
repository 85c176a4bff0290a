//! `opsconsole monitors`, `incidents` and `monitor show|pause|resume|check NAME`: the monitors
//! of the running principal (local, or `--principal`), read from its board and controlled
//! through its monitor actor.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::{Dirs, EXIT_FAILED, client_failure, fail};
use crate::humantime::format_duration;
use crate::protocol::api::{Client, ClientError, MAX_MONITOR_PAGE, Request, Response};
use crate::protocol::monitor::{
    Incident, MonitorAction, MonitorCounts, MonitorDetail, MonitorFilter, MonitorSummary,
};

/// Most incidents `incidents` prints.
pub const INCIDENT_LIMIT: usize = 1000;

/// What `opsconsole monitor` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorCmd {
    /// Print one monitor in full.
    Show {
        /// The monitor.
        name: String,
        /// As JSON.
        json: bool,
    },
    /// Pause, resume or check it now.
    Control {
        /// The monitor.
        name: String,
        /// What to do.
        action: MonitorAction,
    },
}

/// One request, its error mapped to an exit code.
async fn ask(client: &dyn Client, request: Request) -> Result<Response, ExitCode> {
    match client.call(request).await {
        Ok(Response::Error(e)) => Err(client_failure(ClientError::Api(e))),
        Ok(r) => Ok(r),
        Err(e) => Err(client_failure(e)),
    }
}

fn unexpected(r: Response) -> ExitCode {
    fail(EXIT_FAILED, format!("unexpected answer: {r:?}"))
}

/// Lists the monitors `filter` keeps (every page), with the counts per state.
pub async fn monitors(dirs: &Dirs, filter: MonitorFilter, json: bool) -> ExitCode {
    let client = match super::control::connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut all: Vec<MonitorSummary> = Vec::new();
    let (counts, running) = loop {
        let request = Request::Monitors {
            filter: filter.clone(),
            offset: all.len(),
            limit: MAX_MONITOR_PAGE,
        };
        let page = match ask(&client, request).await {
            Ok(Response::Monitors(p)) => p,
            Ok(other) => return unexpected(other),
            Err(code) => return code,
        };
        let done =
            page.monitors.is_empty() || all.len() + page.monitors.len() >= page.matched as usize;
        all.extend(page.monitors);
        if done {
            break (page.counts, page.running);
        }
    };
    if json {
        let out = serde_json::json!({ "counts": counts, "running": running, "monitors": all });
        crate::say!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    if counts.total == 0 {
        crate::say!(
            "{}",
            if running {
                "no monitors: add a `kind: monitor` file to the workflows directory"
            } else {
                "monitors are not running"
            }
        );
        return ExitCode::SUCCESS;
    }
    crate::say_raw!("{}", table(&all, Utc::now()));
    crate::say!("{}", counts_line(&counts, all.len()));
    ExitCode::SUCCESS
}

/// The monitors as a table.
pub fn table(monitors: &[MonitorSummary], now: DateTime<Utc>) -> String {
    let name_w = monitors
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let mut out = format!(
        "{:<name_w$}  {:<5} {:<12} {:>9} {:>9} {:>9}  {}\n",
        "NAME", "KIND", "STATE", "CHECKED", "RESPONSE", "INCIDENT", "TAGS / CAUSE"
    );
    for m in monitors {
        let checked = m
            .last_check
            .map(|t| {
                format!(
                    "{} ago",
                    format_duration((now - t).to_std().unwrap_or_default())
                )
            })
            .unwrap_or_else(|| "-".into());
        let response = m.last_response.map_or("-".into(), format_duration);
        let incident = m.incident.map_or("-".into(), |i| i.to_string());
        let mut notes = vec![m.tags.join(",")];
        if let Some(c) = &m.cause {
            notes.push(c.to_string());
        }
        out.push_str(&format!(
            "{:<name_w$}  {:<5} {:<12} {:>9} {:>9} {:>9}  {}\n",
            m.name,
            m.kind,
            state_label(m),
            checked,
            response,
            incident,
            notes.join("  ").trim()
        ));
    }
    out
}

/// The state with its flags (`unhealthy*` flapping, `+` intervention running).
pub fn state_label(m: &MonitorSummary) -> String {
    let mut s = m.state.to_string();
    if m.flapping {
        s.push_str(" ~");
    }
    if m.intervening {
        s.push_str(" +");
    }
    s
}

/// `200 monitors (3 shown): 176 healthy · 4 unhealthy · ... · 4 open incidents`.
pub fn counts_line(c: &MonitorCounts, shown: usize) -> String {
    let parts = c.parts(true);
    format!(
        "{} monitors ({shown} shown): {}",
        c.total,
        parts.join(" · ")
    )
}

/// Lists incidents: open first, then the recently closed ones.
pub async fn incidents(dirs: &Dirs, open_only: bool, json: bool) -> ExitCode {
    let client = match super::control::connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = Request::Incidents {
        open_only,
        limit: INCIDENT_LIMIT,
    };
    let incidents = match ask(&client, request).await {
        Ok(Response::Incidents { incidents }) => incidents,
        Ok(other) => return unexpected(other),
        Err(code) => return code,
    };
    if json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&incidents).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    if incidents.is_empty() {
        crate::say!(
            "{}",
            if open_only {
                "no open incidents"
            } else {
                "no incidents"
            }
        );
        return ExitCode::SUCCESS;
    }
    crate::say_raw!("{}", incident_table(&incidents, Utc::now()));
    ExitCode::SUCCESS
}

/// Incidents as a table.
pub fn incident_table(incidents: &[Incident], now: DateTime<Utc>) -> String {
    let mut out = format!(
        "{:<7} {:<24} {:<7} {:<20} {:>9}  {}\n",
        "ID", "MONITOR", "STATE", "OPENED", "LASTED", "CAUSE / LAST INTERVENTION"
    );
    for i in incidents {
        let end = i.closed.unwrap_or(now);
        let lasted = format_duration((end - i.opened).to_std().unwrap_or_default());
        let last = i
            .attempts
            .last()
            .map(|a| format!("  · {}: {}", a.action, a.outcome))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<7} {:<24} {:<7} {:<20} {:>9}  {}{last}\n",
            i.id.to_string(),
            i.monitor,
            if i.closed.is_some() { "closed" } else { "open" },
            i.opened
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S"),
            lasted,
            i.cause
        ));
    }
    out
}

/// Shows, pauses, resumes or checks one monitor.
pub async fn monitor(dirs: &Dirs, cmd: MonitorCmd) -> ExitCode {
    let client = match super::control::connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        MonitorCmd::Show { name, json } => {
            let d = match ask(&client, Request::Monitor { name }).await {
                Ok(Response::Monitor(d)) => d,
                Ok(other) => return unexpected(other),
                Err(code) => return code,
            };
            let ping_url = if d.summary.kind == "push" {
                ping_url(&client, &d.summary.name).await
            } else {
                None
            };
            if json {
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                if let (Some(url), Some(o)) = (&ping_url, v.as_object_mut()) {
                    o.insert("ping_url".into(), url.clone().into());
                }
                crate::say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                crate::say_raw!("{}", detail_text(&d, Utc::now()));
                if let Some(url) = ping_url {
                    crate::say!("ping URL: {url}");
                }
            }
            ExitCode::SUCCESS
        }
        MonitorCmd::Control { name, action } => {
            let request = Request::MonitorControl { name, action };
            match ask(&client, request).await {
                Ok(Response::MonitorControlled { action, monitor }) => {
                    let done = match action {
                        MonitorAction::Pause => "paused (stays paused until resumed)",
                        MonitorAction::Resume => "resumed",
                        MonitorAction::Check => "checked",
                    };
                    crate::say!("{}: {done}; now {}", monitor.name, state_label(&monitor));
                    ExitCode::SUCCESS
                }
                Ok(other) => unexpected(other),
                Err(code) => code,
            }
        }
    }
}

/// One monitor in full, as `monitor show` prints it.
pub fn detail_text(d: &MonitorDetail, now: DateTime<Utc>) -> String {
    let m = &d.summary;
    let mut out = format!("{} ({}) — {}\n", m.name, m.kind, state_label(m));
    if !m.tags.is_empty() {
        out.push_str(&format!("tags: {}\n", m.tags.join(", ")));
    }
    if let Some(c) = &m.cause {
        out.push_str(&format!("cause: {c}\n"));
    }
    out.push_str("conditions:\n");
    for c in &d.conditions {
        let mark = if c.ok { "✓" } else { "✗" };
        out.push_str(&format!("  {mark} {:<32} saw {}\n", c.condition, c.seen));
    }
    if !d.locations.is_empty() {
        out.push_str("locations:\n");
        for l in &d.locations {
            let mark = match l.ok {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "?",
            };
            out.push_str(&format!("  {mark} {:<20} {}\n", l.location, l.seen));
        }
    }
    out.push_str("results:\n");
    for r in &d.results {
        out.push_str(&format!(
            "  {} {:>9} ago  {:>8}  {}{}\n",
            if r.ok { "ok  " } else { "FAIL" },
            format_duration((now - r.at).to_std().unwrap_or_default()),
            r.response.map_or("-".into(), format_duration),
            r.location
                .as_deref()
                .map(|l| format!("{l}  "))
                .unwrap_or_default(),
            r.message.as_deref().unwrap_or("")
        ));
    }
    if let Some(i) = &d.incident {
        out.push_str(&format!(
            "incident {} opened {}: {}\n",
            i.id,
            i.opened.format("%F %T"),
            i.cause
        ));
        for a in &i.attempts {
            out.push_str(&format!(
                "  {} {}: {}\n",
                a.at.format("%T"),
                a.action,
                a.outcome
            ));
        }
    }
    out
}

/// The ping URL of push monitor `name`, or why there is none as a line to print instead
/// (no listener, a viewer's key).
async fn ping_url(client: &dyn Client, name: &str) -> Option<String> {
    let request = Request::PingUrl {
        name: name.to_string(),
    };
    match client.call(request).await {
        Ok(Response::PingUrl { url, refused, .. }) => Some(format!(
            "{url}  (append /fail to report a failure; {refused} request(s) with a wrong \
             secret or path refused since the principal started)"
        )),
        Ok(Response::Error(e)) => Some(format!("none ({e})")),
        _ => None,
    }
}

/// `opsconsole ping NAME [--fail] [--message TEXT]`: a push monitor's job reports in.
pub async fn ping(dirs: &Dirs, name: String, ok: bool, message: Option<String>) -> ExitCode {
    use crate::protocol::api::MAX_PING_MESSAGE;
    if let Some(m) = &message
        && m.len() > MAX_PING_MESSAGE
    {
        return fail(
            super::EXIT_INVALID,
            format!(
                "--message is {} bytes; at most {MAX_PING_MESSAGE} are taken",
                m.len()
            ),
        );
    }
    let client = match super::control::connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = Request::Ping {
        name: name.clone(),
        ok,
        message,
    };
    match ask(&client, request).await {
        Ok(Response::Pinged { monitor }) => {
            crate::say!(
                "{}: {} recorded; now {}",
                monitor.name,
                if ok { "ping" } else { "failure" },
                state_label(&monitor)
            );
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(other),
        Err(code) => code,
    }
}
