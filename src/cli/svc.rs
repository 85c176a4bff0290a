//! `opsconsole svc`: the supervision trees of the running principal, and starting, stopping
//! and restarting their services.

use std::process::ExitCode;

use super::{Dirs, EXIT_FAILED, client_failure, fail};
use crate::humantime;
use crate::protocol::api::{Client, ClientError, Request, Response};
use crate::protocol::service::{ServiceAction, ServiceNode, ServiceState};

/// Prints the trees (or the subtree at `path`), or carries out `action` on `path` first.
pub async fn svc(
    dirs: &Dirs,
    path: Option<String>,
    action: Option<ServiceAction>,
    json: bool,
) -> ExitCode {
    let client = match super::control::connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = match (&path, action) {
        (Some(path), Some(action)) => Request::ServiceControl {
            path: path.clone(),
            action,
        },
        _ => Request::Services { path: path.clone() },
    };
    let nodes = match client.call(request).await {
        Ok(Response::Services { nodes }) => nodes,
        Ok(Response::Error(e)) => return client_failure(ClientError::Api(e)),
        Ok(other) => return fail(EXIT_FAILED, format!("unexpected answer: {other:?}")),
        Err(e) => return client_failure(e),
    };
    if json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&nodes).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    if let (Some(path), Some(action)) = (&path, action) {
        let done = match action {
            ServiceAction::Start => "starting",
            ServiceAction::Stop => "stopping (held stopped until started)",
            ServiceAction::Restart => "restarting",
        };
        crate::say!("{path}: {done}");
        return ExitCode::SUCCESS;
    }
    if nodes.is_empty() {
        crate::say!("no supervisors: add a `kind: supervisor` file to the workflows directory");
        return ExitCode::SUCCESS;
    }
    crate::say_raw!("{}", tree(&nodes, chrono::Utc::now()));
    ExitCode::SUCCESS
}

/// The nodes as an indented table.
pub fn tree(nodes: &[ServiceNode], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = format!(
        "{:<28} {:<12} {:>8} {:>9} {:>9}  {}\n",
        "PATH", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"
    );
    // A subtree asked for by path starts at its own depth, named in full.
    let base = nodes.first().map_or(0, |n| n.depth);
    for n in nodes {
        let name = if n.depth == base {
            n.path.clone()
        } else {
            format!("{}{}", "  ".repeat(n.depth - base), n.name)
        };
        let mut state = n.state.to_string();
        if n.held {
            state.push_str(" (held)");
        }
        let uptime = match (n.state, n.up_since) {
            (ServiceState::Running | ServiceState::Starting, Some(t)) => {
                humantime::format_duration((now - t).to_std().unwrap_or_default())
            }
            _ => "-".into(),
        };
        let restarts = match (n.restarts_in_period, n.intensity) {
            (Some(r), Some(i)) => format!("{r}/{i}"),
            _ => n.restarts.to_string(),
        };
        out.push_str(&format!(
            "{:<28} {:<12} {:>8} {:>9} {:>9}  {}\n",
            name,
            state,
            n.pid.map_or("-".into(), |p| p.to_string()),
            uptime,
            restarts,
            n.last_exit.as_deref().unwrap_or("-")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtree_is_named_in_full_and_indented_from_its_own_depth() {
        let text = tree(
            &[
                ServiceNode::example("web/jobs", ServiceState::Running),
                ServiceNode::example("web/jobs/worker", ServiceState::Running),
            ],
            chrono::Utc::now(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("web/jobs "), "{text}");
        assert!(lines[2].starts_with("  worker "), "{text}");
    }
}
