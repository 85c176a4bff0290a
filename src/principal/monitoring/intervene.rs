//! Interventions: what a monitor does when it enters a state (restart a service, run a
//! workflow, run a command, post a webhook), carried out once and judged as one [`Outcome`].
//!
//! Restarts and runs go through the engine's own requests on behalf of `monitor:NAME`, so the
//! supervision machine, the run machine and the history treat them as an operator's; commands
//! and webhooks go through the [`Prober`], so the executor's bounds (output, timeout, escapees)
//! and the shared HTTP pool apply. Nothing here is awaited by the monitor actor inline: it
//! spawns [`carry_out`] and records the outcome when it comes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::agent::check::Prober;
use crate::principal::{EngineClient, PrincipalHandle};
use crate::protocol::RunState;
use crate::protocol::api::{Caller, Client, ClientError, Request, Response};
use crate::protocol::check::{CheckResult, CommandProbe, Probe};
use crate::protocol::monitor::{Action, Cause, IncidentId, MonitorState, Outcome};
use crate::protocol::service::{ServiceAction, ServiceNode, ServiceState};

/// How long a `run:` intervention waits for its run to end: a remediation that takes longer
/// is not one, and the incident should say so. The run itself goes on.
pub(crate) const RUN_BOUND: Duration = Duration::from_secs(10 * 60);
/// How long a `restart:` waits for every service it restarted to be running (ready) again:
/// room for a stop grace, a start and a readiness check.
pub(crate) const RESTART_BOUND: Duration = Duration::from_secs(60);
/// How often a restart's services are looked at while waiting for them.
const RESTART_POLL: Duration = Duration::from_millis(200);
/// Most output of a command intervention kept (its last line goes into a failure).
const COMMAND_MAX_OUTPUT: usize = 64 << 10;
/// Most characters of a command's last output line quoted in a failure.
const MAX_QUOTED_LINE: usize = 200;

/// What an intervention is about and what it may use.
pub(crate) struct Context {
    /// The monitor's name (the caller is `monitor:NAME`).
    pub monitor: String,
    /// The state it entered.
    pub state: MonitorState,
    /// Why (the first failing condition and what it saw), if anything failed.
    pub cause: Option<Cause>,
    /// The incident the attempt belongs to.
    pub incident: Option<IncidentId>,
    /// Restarts and runs go to the engine through it.
    pub engine: EngineClient,
    /// Commands (as a command check is run) and webhooks.
    pub prober: Prober,
    /// Where commands run (a relative `cwd` is relative to it).
    pub workdir: PathBuf,
}

impl Context {
    fn caller(&self) -> Caller {
        Caller(format!("monitor:{}", self.monitor))
    }

    fn call(&self, request: Request) -> impl Future<Output = Result<Response, ClientError>> + '_ {
        self.engine.call_as(self.caller(), request)
    }
}

/// Carries out `action` for `ctx`'s monitor and says how it went: `Succeeded` when the service
/// is running again, the run succeeded, the command exited 0 or the webhook answered 2xx;
/// `Failed` with what failed and where otherwise; `Skipped` for a restart of a service an
/// operator holds stopped (a monitor does not lift an operator's hold).
pub(crate) async fn carry_out(ctx: Context, action: Action) -> Outcome {
    match action {
        Action::Restart { path } => restart(&ctx, &path, RESTART_BOUND).await,
        Action::Run { workflow, params } => run(&ctx, &workflow, &params, RUN_BOUND).await,
        Action::Command {
            argv,
            env,
            cwd,
            timeout,
        } => command(&ctx, argv, env, cwd, timeout).await,
        Action::Webhook {
            url,
            headers,
            timeout,
            retries,
        } => webhook(&ctx, &url, &headers, timeout, retries).await,
    }
}

impl PrincipalHandle {
    /// Carries out one intervention now, as monitor `monitor` would on entering `state`
    /// (recorded as done by `monitor:NAME`); commands run in `workdir`. For tests and tools:
    /// the monitor actor calls the same code.
    pub async fn intervene(
        &self,
        monitor: &str,
        state: MonitorState,
        cause: Option<Cause>,
        incident: Option<IncidentId>,
        action: Action,
        workdir: PathBuf,
    ) -> Outcome {
        let ctx = Context {
            monitor: monitor.to_string(),
            state,
            cause,
            incident,
            engine: self.engine.clone(),
            prober: Prober::shared(),
            workdir,
        };
        carry_out(ctx, action).await
    }
}

// ---- rendering ---------------------------------------------------------------------------

/// `template` with `{{ monitor }}`, `{{ state }}`, `{{ cause }}` and `{{ incident }}` filled
/// in (spaces inside the braces optional, as the spec reads them). The spec refused any other
/// reference, so anything else between braces is left as written.
pub(crate) fn render(template: &str, ctx: &Context) -> String {
    render_with(template, &|name| value(ctx, name))
}

/// What a placeholder stands for: the cause as `condition (saw value)`, the incident as its
/// bare number; empty when there is none.
fn value(ctx: &Context, name: &str) -> Option<String> {
    Some(match name {
        "monitor" => ctx.monitor.clone(),
        "state" => ctx.state.as_str().to_string(),
        "cause" => ctx
            .cause
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        "incident" => ctx.incident.map(|i| i.0.to_string()).unwrap_or_default(),
        _ => return None,
    })
}

fn render_with(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let whole = &rest[open..open + 2 + close + 2];
        match lookup(after[..close].trim()) {
            Some(v) => out.push_str(&v),
            None => out.push_str(whole),
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

/// The JSON a webhook receives: `{monitor, state, cause: {condition, seen} | null,
/// incident: N | null}`.
pub(crate) fn webhook_body(ctx: &Context) -> serde_json::Value {
    serde_json::json!({
        "monitor": ctx.monitor,
        "state": ctx.state.as_str(),
        "cause": ctx.cause,
        "incident": ctx.incident.map(|i| i.0),
    })
}

// ---- restart -----------------------------------------------------------------------------

async fn restart(ctx: &Context, path: &str, bound: Duration) -> Outcome {
    let what = format!("restart of `{path}`");
    // The whole tree the path is in: its supervisors' holds and intensity count too.
    let root = path.split('/').next().unwrap_or(path).to_string();
    let tree = match services(ctx, &root).await {
        Ok(nodes) => nodes,
        Err(why) => return Outcome::Failed(format!("{what} failed: {why}")),
    };
    if !tree.iter().any(|n| n.path == path) {
        return Outcome::Failed(format!(
            "{what} failed: no supervisor or service is called `{path}`"
        ));
    }
    if let Some(refusal) = refusal(&tree, path) {
        return refusal;
    }
    let before: BTreeMap<String, u64> = subtree(&tree, path)
        .filter(|n| !n.supervisor)
        .map(|n| (n.path.clone(), n.start_no))
        .collect();
    let request = Request::ServiceControl {
        path: path.to_string(),
        action: ServiceAction::Restart,
    };
    match ctx.call(request).await {
        Ok(Response::Services { .. }) => {}
        Ok(Response::Error(e)) => return Outcome::Failed(format!("{what} failed: {}", e.message)),
        Ok(other) => return Outcome::Failed(format!("{what} failed: unexpected answer {other:?}")),
        Err(e) => return Outcome::Failed(format!("{what} failed: {e}")),
    }
    // Carried out by the supervision machine; it helped once every service is up again.
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let laggard = match services(ctx, path).await {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| !n.supervisor)
                .find(|n| !restarted(n, &before)),
            Err(why) => return Outcome::Failed(format!("{what}: sent, then {why}")),
        };
        let Some(n) = laggard else {
            return Outcome::Succeeded;
        };
        if tokio::time::Instant::now() >= deadline {
            let last = n
                .last_exit
                .as_deref()
                .map(|e| format!(", last exit: {e}"))
                .unwrap_or_default();
            return Outcome::Failed(format!(
                "{what} was carried out, but `{}` is not running again after {bound:?} \
                 (it is {}{last})",
                n.path,
                n.state.as_str()
            ));
        }
        tokio::time::sleep(RESTART_POLL).await;
    }
}

/// Nodes at `path` or under it.
fn subtree<'a>(tree: &'a [ServiceNode], path: &'a str) -> impl Iterator<Item = &'a ServiceNode> {
    tree.iter().filter(move |n| under(&n.path, path))
}

fn under(node: &str, path: &str) -> bool {
    node == path || node.strip_prefix(path).is_some_and(|r| r.starts_with('/'))
}

/// Running (ready) on a start later than the one before the restart.
fn restarted(n: &ServiceNode, before: &BTreeMap<String, u64>) -> bool {
    n.state == ServiceState::Running && before.get(&n.path).is_none_or(|&s| n.start_no > s)
}

/// Why a monitor must not restart `path` now: an operator holds it (or a supervisor above it)
/// stopped, or a supervisor above it gave up or is at its restart intensity (the machine does
/// not count an explicit restart against intensity, so the monitor respects it here).
fn refusal(tree: &[ServiceNode], path: &str) -> Option<Outcome> {
    let chain: Vec<&ServiceNode> = tree.iter().filter(|n| under(path, &n.path)).collect();
    if let Some(held) = chain.iter().find(|n| n.held) {
        return Some(Outcome::Skipped(format!(
            "restart of `{path}` not attempted: `{}` is held stopped by an operator \
             (`opsconsole svc start {}` lifts the hold)",
            held.path, held.path
        )));
    }
    if let Some(gave_up) = chain
        .iter()
        .find(|n| n.supervisor && n.state == ServiceState::Failed)
    {
        return Some(Outcome::Failed(format!(
            "restart of `{path}` refused: supervisor `{}` gave up past its restart intensity; \
             a monitor does not restart past it (`opsconsole svc restart {}` does)",
            gave_up.path, gave_up.path
        )));
    }
    // The nearest supervisor above the path.
    let parent = chain
        .iter()
        .rev()
        .find(|n| n.supervisor && n.path != path)?;
    match (parent.restarts_in_period, parent.intensity) {
        (Some(done), Some(max)) if done >= max => Some(Outcome::Failed(format!(
            "restart of `{path}` refused: supervisor `{}` already restarted its children \
             {done} times in its period (intensity {max})",
            parent.path
        ))),
        _ => None,
    }
}

async fn services(ctx: &Context, path: &str) -> Result<Vec<ServiceNode>, String> {
    let request = Request::Services {
        path: Some(path.to_string()),
    };
    match ctx.call(request).await {
        Ok(Response::Services { nodes }) => Ok(nodes),
        Ok(Response::Error(e)) => Err(e.message),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

// ---- run -----------------------------------------------------------------------------------

async fn run(
    ctx: &Context,
    workflow: &str,
    params: &[(String, String)],
    bound: Duration,
) -> Outcome {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.clone(), render(v, ctx)))
        .collect();
    let request = Request::Trigger {
        workflow: workflow.to_string(),
        params,
    };
    let run_id = match ctx.call(request).await {
        Ok(Response::Accepted { run_id }) => run_id,
        Ok(Response::Error(e)) => {
            return Outcome::Failed(format!("workflow `{workflow}` not started: {}", e.message));
        }
        Ok(other) => {
            return Outcome::Failed(format!(
                "workflow `{workflow}` not started: unexpected answer {other:?}"
            ));
        }
        Err(e) => return Outcome::Failed(format!("workflow `{workflow}` not started: {e}")),
    };
    let what = format!("workflow `{workflow}` run {run_id}");
    let waited = tokio::time::timeout(bound, ctx.call(Request::WaitRun { run_id })).await;
    match waited {
        Err(_) => Outcome::Failed(format!(
            "{what} has not ended after {bound:?} (it goes on; this attempt counts as failed)"
        )),
        Ok(Ok(Response::RunEnded { outcome: Some(end) })) => match end.state {
            RunState::Succeeded => Outcome::Succeeded,
            state => {
                let tasks = if end.failed_tasks.is_empty() {
                    String::new()
                } else {
                    format!(" (failed: {})", end.failed_tasks.join(", "))
                };
                Outcome::Failed(format!("{what} ended {}{tasks}", state_name(state)))
            }
        },
        Ok(Ok(Response::RunEnded { outcome: None })) => {
            Outcome::Failed(format!("{what}: the principal no longer knows it"))
        }
        Ok(Ok(Response::Error(e))) => {
            Outcome::Failed(format!("{what}: waiting for it failed: {}", e.message))
        }
        Ok(Ok(other)) => Outcome::Failed(format!("{what}: unexpected answer {other:?}")),
        Ok(Err(e)) => Outcome::Failed(format!("{what}: waiting for it failed: {e}")),
    }
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Queued => "queued",
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
    }
}

// ---- command -------------------------------------------------------------------------------

async fn command(
    ctx: &Context,
    argv: Vec<String>,
    mut env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
) -> Outcome {
    let shown = shown_argv(&argv);
    // What the intervention is about, for the command to read (its argv cannot: the spec
    // keeps it literal).
    for name in ["monitor", "state", "cause", "incident"] {
        let v = value(ctx, name).unwrap_or_default();
        env.push((format!("OPSCONSOLE_{}", name.to_ascii_uppercase()), v));
    }
    let probe = Probe::Command(CommandProbe {
        argv,
        env,
        cwd: Some(match cwd {
            Some(dir) => ctx.workdir.join(dir),
            None => ctx.workdir.clone(),
        }),
        max_output: COMMAND_MAX_OUTPUT,
    });
    let r = ctx.prober.run(&probe, timeout).await;
    command_outcome(&shown, &r)
}

fn command_outcome(shown: &str, r: &CheckResult) -> Outcome {
    let last = last_line(&r.output)
        .map(|l| format!("; last output line: {l}"))
        .unwrap_or_default();
    match (&r.error, r.exit_code) {
        (None, Some(0)) => Outcome::Succeeded,
        (None, Some(code)) => {
            Outcome::Failed(format!("command `{shown}` exited with code {code}{last}"))
        }
        (Some(why), _) => Outcome::Failed(format!("command `{shown}` failed: {why}{last}")),
        (None, None) => Outcome::Failed(format!(
            "command `{shown}` ended without an exit code{last}"
        )),
    }
}

fn shown_argv(argv: &[String]) -> String {
    match argv {
        [sh, c, script] if sh == "sh" && c == "-c" => script.clone(),
        _ => argv.join(" "),
    }
}

/// The output's last non-blank line, cut to [`MAX_QUOTED_LINE`] characters.
fn last_line(output: &str) -> Option<String> {
    let line = output.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let mut cut: String = line.chars().take(MAX_QUOTED_LINE).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    Some(cut)
}

// ---- webhook -------------------------------------------------------------------------------

async fn webhook(
    ctx: &Context,
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
    retries: u32,
) -> Outcome {
    let body = webhook_body(ctx);
    let tries = ctx
        .prober
        .post_webhook(url, headers, &body, timeout, retries)
        .await;
    match tries.last() {
        Some(t) if t.succeeded() => Outcome::Succeeded,
        Some(t) => {
            let why = t
                .error
                .clone()
                .or_else(|| t.status.map(|s| format!("answered {s}")))
                .unwrap_or_else(|| "no answer".into());
            let n = tries.len();
            let tries = if n == 1 { "try" } else { "tries" };
            Outcome::Failed(format!(
                "webhook POST {url} failed after {n} {tries}: {why}"
            ))
        }
        None => Outcome::Failed(format!("webhook POST {url} was not tried")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "monitor" => Some("api".into()),
            "state" => Some("unhealthy".into()),
            "cause" => Some("[STATUS] == 200 (saw 503)".into()),
            "incident" => Some("7".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_render_with_or_without_spaces() {
        let r = |t: &str| render_with(t, &lookup);
        assert_eq!(r("{{ monitor }}"), "api");
        assert_eq!(r("{{monitor}}/{{  state  }}"), "api/unhealthy");
        assert_eq!(
            r("#{{ incident }}: {{ cause }}"),
            "#7: [STATUS] == 200 (saw 503)"
        );
        assert_eq!(r("plain"), "plain");
        assert_eq!(r(""), "");
    }

    #[test]
    fn unknown_or_unclosed_braces_stay_as_written() {
        let r = |t: &str| render_with(t, &lookup);
        assert_eq!(r("{{ other }} {{ monitor }}"), "{{ other }} api");
        assert_eq!(r("a {{ monitor"), "a {{ monitor");
        assert_eq!(r("}} {{ state }} {{"), "}} unhealthy {{");
    }

    #[test]
    fn a_value_is_not_rendered_again() {
        let tricky = |name: &str| (name == "monitor").then(|| "{{ state }}".to_string());
        assert_eq!(render_with("{{ monitor }}", &tricky), "{{ state }}");
    }

    #[test]
    fn last_line_skips_blank_lines_and_is_cut() {
        assert_eq!(last_line("a\nb\n\n  \n").as_deref(), Some("b"));
        assert_eq!(last_line(""), None);
        let long = "x".repeat(500);
        let cut = last_line(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_QUOTED_LINE + 1);
    }

    #[test]
    fn command_outcomes_name_the_command_the_code_and_the_last_line() {
        let ok = CheckResult {
            exit_code: Some(0),
            ..CheckResult::default()
        };
        assert_eq!(command_outcome("true", &ok), Outcome::Succeeded);
        let failed = CheckResult {
            exit_code: Some(3),
            output: "starting\nno route to host\n".into(),
            ..CheckResult::default()
        };
        assert_eq!(
            command_outcome("./fix.sh", &failed),
            Outcome::Failed(
                "command `./fix.sh` exited with code 3; last output line: no route to host".into()
            )
        );
        let timed_out = CheckResult {
            error: Some("timed out after 1s in phase run".into()),
            ..CheckResult::default()
        };
        assert_eq!(
            command_outcome("sleep 9", &timed_out),
            Outcome::Failed("command `sleep 9` failed: timed out after 1s in phase run".into())
        );
        assert_eq!(
            shown_argv(&["sh".into(), "-c".into(), "echo hi".into()]),
            "echo hi"
        );
    }

    fn node(path: &str, supervisor: bool, state: ServiceState) -> ServiceNode {
        ServiceNode {
            supervisor,
            ..ServiceNode::example(path, state)
        }
    }

    #[test]
    fn a_hold_or_a_supervisor_past_its_intensity_refuses_the_restart() {
        let web = node("web", true, ServiceState::Running);
        let api = node("web/api", false, ServiceState::Running);
        let other = node("webx", true, ServiceState::Running);
        assert_eq!(refusal(&[web.clone(), api.clone(), other], "web/api"), None);

        let held = ServiceNode {
            held: true,
            ..web.clone()
        };
        let Some(Outcome::Skipped(why)) = refusal(&[held, api.clone()], "web/api") else {
            panic!("a held supervisor must skip the restart");
        };
        assert!(why.contains("`web` is held"), "{why}");

        let busy = ServiceNode {
            restarts_in_period: Some(5),
            intensity: Some(5),
            ..web.clone()
        };
        let Some(Outcome::Failed(why)) = refusal(&[busy.clone(), api.clone()], "web/api") else {
            panic!("a supervisor at its intensity must refuse");
        };
        assert!(why.contains("intensity 5"), "{why}");
        // Its own intensity does not keep the supervisor itself from a restart by its parent.
        assert_eq!(refusal(&[busy], "web"), None);

        let gave_up = node("web", true, ServiceState::Failed);
        let Some(Outcome::Failed(why)) = refusal(&[gave_up, api], "web/api") else {
            panic!("a supervisor that gave up must refuse");
        };
        assert!(why.contains("gave up"), "{why}");
    }

    #[test]
    fn paths_under_a_path_are_its_subtree_only() {
        assert!(under("web/api", "web"));
        assert!(under("web", "web"));
        assert!(!under("webx/api", "web"));
        assert!(!under("web", "web/api"));
    }
}
