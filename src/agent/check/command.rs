//! command checks: a process run by the one executor (`agent/exec.rs`) as its check kind of
//! work: own process group, both streams captured up to `max_output`, killed with its group at
//! the timeout, and whatever escaped the group (`setsid`) killed too: found by a marker in its
//! environment at the timeout and at the end, whether or not this process adopts orphans (the
//! orphan sweeper, when it runs, also finds those that cleared their environment).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::ExecSetup;
use crate::protocol::agent::{
    AgentEvent, Assignment, CheckProbe, Exit, StopCause, StopPolicy, WorkId, WorkKind,
};
use crate::protocol::check::{CheckResult, CommandProbe};

/// How long an escaped process of an ended check has after SIGTERM, if this process is the
/// first to adopt orphans (a principal adopts them itself, with its own grace).
const ESCAPEE_GRACE: Duration = Duration::from_secs(1);

static PROBES: AtomicU64 = AtomicU64::new(1);

/// The environment variable that marks every process of one command check.
const MARK_ENV: &str = "OPSCONSOLE_CHECK";
/// How often, from its timeout on, a check's escapees are looked for until it has ended (the
/// executor kills the group at the timeout; they are re-parented as its members die).
const SWEEP_AFTER: Duration = Duration::from_millis(100);
/// The most of `/proc/PID/environ` read when looking for the marker.
const MAX_ENVIRON: u64 = 1 << 20;

/// Runs the command to its end or to `timeout`; its exit code and output are the result.
pub(super) async fn run(
    exec: &ExecSetup,
    p: &CommandProbe,
    t0: Instant,
    timeout: Duration,
) -> CheckResult {
    // Processes that leave the group (`setsid`) are found and stopped only by a subreaper.
    static ADOPT: std::sync::Once = std::sync::Once::new();
    ADOPT.call_once(|| {
        if let Some(warning) = super::super::orphans::adopt(ESCAPEE_GRACE) {
            tracing::warn!("{warning}");
        }
    });
    let cwd = match (&exec.workdir, &p.cwd) {
        (Some(base), Some(dir)) => Some(base.join(dir)),
        (None, dir) => dir.clone(),
        (base, None) => base.clone(),
    };
    let number = PROBES.fetch_add(1, Ordering::Relaxed);
    let mark = format!("{}-{number}", super::super::orphans::instance());
    let mut env = p.env.clone();
    env.push((MARK_ENV.to_string(), mark.clone()));
    let job = Assignment {
        id: WorkId::Check(CheckProbe {
            monitor: Arc::from("command"),
            probe: number,
        }),
        kind: WorkKind::Check {
            timeout,
            max_output: p.max_output,
        },
        argv: p.argv.clone(),
        env,
        cwd,
        // A check past its time has nothing to save: its group is killed at once.
        stop: StopPolicy {
            signal: Signal::SIGKILL as i32,
            grace: Duration::ZERO,
        },
        max_output: p.max_output as u64,
    };
    // Checks capture their output instead of sending it: the channel carries the start and
    // the end only, and the output budget is never drawn on.
    let (tx, mut rx) = mpsc::channel(4);
    let budget = Arc::new(Semaphore::new(1));
    let stop = CancellationToken::new();
    let run = super::super::exec::run(
        job,
        (stop, exec.kill.clone()),
        tx,
        budget,
        exec.reaper.as_deref(),
    );
    let wait_end = async {
        while let Some(event) = rx.recv().await {
            if let AgentEvent::Finished(end) = event {
                return Some(end);
            }
        }
        None
    };
    // At the timeout the executor kills the group; what left it would hold the output pipes
    // open (and outlive the check) until found by its marker.
    let sweep = sweep_from(timeout, &mark);
    let end = tokio::select! {
        ((), end) = async { tokio::join!(run, wait_end) } => end,
        never = sweep => match never {},
    };
    // A check that ended on its own may have left something behind too.
    kill_marked(mark).await;
    let mut result = CheckResult {
        response_time: t0.elapsed(),
        ..CheckResult::default()
    };
    let Some(end) = end else {
        result.error = Some("the executor ended without a result".into());
        return result;
    };
    result.output = end.output.unwrap_or_default();
    match end.exit {
        Exit::NotStarted(why) => result.error = Some(why),
        Exit::Code(code) => {
            result.connected = true;
            result.exit_code = Some(code);
        }
        Exit::Signal(sig) => {
            result.connected = true;
            if end.stopped.is_none() {
                result.error = Some(format!("killed by signal {sig}"));
            }
        }
    }
    match end.stopped {
        Some(StopCause::TimedOut) => {
            result.error = Some(format!(
                "timed out after {timeout:?} in phase run: killed with its process group"
            ));
        }
        Some(other) => result.error = Some(format!("stopped ({other:?})")),
        None => {}
    }
    result
}

/// From `timeout` on, kills what carries `mark` every [`SWEEP_AFTER`]; never ends.
async fn sweep_from(timeout: Duration, mark: &str) -> std::convert::Infallible {
    tokio::time::sleep(timeout).await;
    loop {
        tokio::time::sleep(SWEEP_AFTER).await;
        kill_marked(mark.to_string()).await;
    }
}

/// Kills every process (and its group) whose environment carries `mark`.
async fn kill_marked(mark: String) {
    let _ = tokio::task::spawn_blocking(move || {
        let needle = format!("{MARK_ENV}={mark}");
        let me = std::process::id() as i32;
        let my_group = nix::unistd::getpgrp().as_raw();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for pid in procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            // Once the check's group is gone, what is left of it has been re-parented to init
            // or to this process (a subreaper); what those started goes with their group.
            let Some(st) = super::super::orphans::stat(pid) else {
                continue;
            };
            if pid == me || !(st.ppid == 1 || st.ppid == me) || !carries(pid, needle.as_bytes()) {
                continue;
            }
            if st.pgid > 1 && st.pgid != my_group {
                let _ = killpg(Pid::from_raw(st.pgid), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    })
    .await;
}

/// Whether `/proc/PID/environ` holds the entry `needle` exactly.
fn carries(pid: i32, needle: &[u8]) -> bool {
    use std::io::Read;
    let mut environ = Vec::new();
    let read = std::fs::File::open(format!("/proc/{pid}/environ"))
        .and_then(|f| f.take(MAX_ENVIRON).read_to_end(&mut environ));
    read.is_ok() && environ.split(|&b| b == 0).any(|kv| kv == needle)
}
