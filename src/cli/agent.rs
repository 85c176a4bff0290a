//! `opsconsole agent` (run work for a principal elsewhere) and `opsconsole agents` (list,
//! cordon, uncordon and drain the agents of the running principal).

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::{Dirs, EXIT_FAILED, EXIT_INVALID, client_failure, fail};
use crate::agent::remote::{AgentEnd, AgentOptions};
use crate::humantime;
use crate::protocol::agent::{AgentId, AgentStatus, WorkId};
use crate::protocol::api::{Client, Request, Response};

/// Runs an agent until it is drained or stopped.
pub async fn agent(opts: AgentOptions) -> ExitCode {
    match crate::agent::remote::run(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (AgentEnd::Endpoint(_) | AgentEnd::Id(_))) => fail(EXIT_INVALID, e),
        Err(e) => fail(EXIT_FAILED, e),
    }
}

/// What `opsconsole agents` does.
#[derive(Debug, Clone)]
pub enum AgentsAction {
    /// List them.
    List {
        /// As JSON.
        json: bool,
    },
    /// Cordon (true) or uncordon (false).
    Cordon(String, bool),
    /// Drain.
    Drain(String),
}

/// Lists or changes the running principal's agents.
pub async fn agents(dirs: &Dirs, action: AgentsAction) -> ExitCode {
    let client = match super::control::connect(dirs).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (request, json) = match &action {
        AgentsAction::List { json } => (Request::Agents, *json),
        AgentsAction::Cordon(id, cordon) => (
            Request::Cordon {
                agent: AgentId(id.clone()),
                cordon: *cordon,
            },
            false,
        ),
        AgentsAction::Drain(id) => (
            Request::Drain {
                agent: AgentId(id.clone()),
            },
            false,
        ),
    };
    let agents = match client.call(request).await {
        Ok(Response::Agents { agents }) => agents,
        Ok(Response::Error(e)) => return client_failure(crate::protocol::api::ClientError::Api(e)),
        Ok(other) => return fail(EXIT_FAILED, format!("unexpected answer: {other:?}")),
        Err(e) => return client_failure(e),
    };
    if json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&agents).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match &action {
        AgentsAction::List { .. } => crate::say_raw!("{}", table(&agents)),
        AgentsAction::Cordon(id, _) | AgentsAction::Drain(id) => {
            if let Some(a) = agents.iter().find(|a| &a.info.id.0 == id) {
                crate::say!("agent {id}: {}", a.state);
            }
        }
    }
    ExitCode::SUCCESS
}

/// The agents as a table.
pub fn table(agents: &[AgentStatus]) -> String {
    let mut out = format!(
        "{:<24} {:<9} {:>9} {:>9}  {:<28} {:<16} {:<20} {}\n",
        "AGENT", "STATE", "SLOTS", "HEARD", "ADDRESS", "KEY", "LABELS", "RUNNING"
    );
    for a in agents {
        let labels = a.info.labels_text();
        let heard = a.heartbeat_age_ms.map_or("-".to_string(), |ms| {
            humantime::format_duration(std::time::Duration::from_millis(ms))
        });
        out.push_str(&format!(
            "{:<24} {:<9} {:>9} {:>9}  {:<28} {:<16} {:<20} {}\n",
            a.info.id.0,
            a.state.as_str(),
            format!("{}/{}", a.busy, a.info.slots),
            heard,
            a.address,
            // The key the transport authenticated it with; `-` without CURVE.
            a.key.as_deref().unwrap_or("-"),
            labels,
            running(&a.running)
        ));
    }
    out
}

/// Work in a few words each.
pub fn running(work: &[WorkId]) -> String {
    let mut parts: Vec<String> = work.iter().take(4).map(WorkId::to_string).collect();
    if work.len() > 4 {
        parts.push(format!("+{}", work.len() - 4));
    }
    parts.join(" ")
}

/// `--label k=v` as a map; the error names the bad one.
pub fn labels(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if k.contains([',', '='])
            || v.contains(',')
            || v.is_empty()
            || k.len() > 128
            || v.len() > 128
        {
            return Err(format!(
                "--label {k}={v}: a label is NAME=VALUE, each 1 to 128 bytes without `,`"
            ));
        }
        if map.insert(k.clone(), v.clone()).is_some() {
            return Err(format!("--label {k} is given twice"));
        }
    }
    Ok(map)
}
