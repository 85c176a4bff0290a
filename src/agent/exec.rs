//! Runs one task attempt as a process group: streams its output, enforces the timeout and
//! cancellation, and reports how it ended.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lines::{LineSplitter, MAX_LINE};
use super::orphans;
use crate::protocol::{AttemptKey, AttemptRecord, LogBatch, LogLine, Outcome, Stream};

/// Everything an agent needs to run one attempt.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Which attempt this is.
    pub key: AttemptKey,
    /// Program and arguments, already rendered.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (`None`: the agent's own).
    pub cwd: Option<PathBuf>,
    /// Per-attempt time limit.
    pub timeout: Option<Duration>,
}

/// What an agent reports while and after running an attempt.
#[derive(Debug)]
pub enum AgentEvent {
    /// The process was started.
    Started {
        /// Which attempt.
        key: AttemptKey,
        /// When.
        at: DateTime<Utc>,
    },
    /// Output lines (every batch of an attempt arrives before its `Finished`).
    Logs(LogBatch),
    /// The attempt is over.
    Finished(AttemptRecord),
}

/// Wall-clock stamps that never go backwards within one attempt.
#[derive(Clone, Copy)]
struct Clock {
    wall: DateTime<Utc>,
    mono: Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            wall: Utc::now(),
            mono: Instant::now(),
        }
    }
    fn now(&self) -> DateTime<Utc> {
        self.wall + self.mono.elapsed()
    }
}

/// Runs `job` to the end; every event goes to `events`.
pub async fn run_attempt(
    job: Assignment,
    cancel: CancellationToken,
    kill_grace: Duration,
    events: mpsc::Sender<AgentEvent>,
    reaper: Option<&super::reaper::Reaper>,
) {
    let clock = Clock::start();
    let key = job.key.clone();
    let token = orphans::Token::next();
    let spawned = orphans::spawn_registered(
        orphans::ChildKind::Leader(token.clone()),
        || spawn(&job, &token),
        Child::id,
    );
    let outcome = match spawned {
        Err(why) => Outcome::SpawnFailed(why),
        Ok((mut child, registration)) => {
            let pid = child.id();
            if let (Some(r), Some(pid)) = (reaper, pid) {
                r.track(pid);
            }
            let _ = events
                .send(AgentEvent::Started {
                    key: key.clone(),
                    at: clock.wall,
                })
                .await;
            let outcome = supervise(
                &mut child,
                registration,
                &job,
                &cancel,
                kill_grace,
                clock,
                &events,
            )
            .await;
            // The group has been killed and reaped by now.
            if let (Some(r), Some(pid)) = (reaper, pid) {
                r.untrack(pid);
            }
            outcome
        }
    };
    let record = AttemptRecord {
        key,
        started_at: clock.wall,
        ended_at: clock.now(),
        outcome,
    };
    let _ = events.send(AgentEvent::Finished(record)).await;
}

fn spawn(job: &Assignment, token: &orphans::Token) -> Result<Child, String> {
    let (program, args) = job
        .argv
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        // Inherited by every descendant, so that one that leaves the group still says whose
        // it is (see `orphans`).
        .env(orphans::TOKEN_ENV, token.value())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so timeout and cancel reach every grandchild. `process_group`
        // keeps std on its posix_spawn fast path (a `pre_exec` hook would force fork).
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &job.cwd {
        cmd.current_dir(dir);
    }
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => match &job.cwd {
            Some(dir) if !dir.is_dir() => {
                format!("working directory `{}` does not exist", dir.display())
            }
            _ => format!("command `{program}` not found: check the name and PATH"),
        },
        std::io::ErrorKind::PermissionDenied => {
            format!("command `{program}` is not executable (permission denied)")
        }
        _ => format!("could not start `{program}`: {e}"),
    })
}

async fn supervise(
    child: &mut Child,
    registration: orphans::Registration,
    job: &Assignment,
    cancel: &CancellationToken,
    kill_grace: Duration,
    clock: Clock,
    events: &mpsc::Sender<AgentEvent>,
) -> Outcome {
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let seq = Arc::new(AtomicU64::new(0));
    let readers = [
        child.stdout.take().map(|r| (r.into(), Stream::Stdout)),
        child.stderr.take().map(|r| (r.into(), Stream::Stderr)),
    ]
    .into_iter()
    .flatten()
    .map(|(reader, stream): (Reader, Stream)| {
        pump(
            reader,
            stream,
            job.key.clone(),
            seq.clone(),
            clock,
            events.clone(),
        )
    })
    .collect::<Vec<_>>();
    // One task reads both pipes: a task spawned per pipe costs more than the reading itself
    // for the many tasks that print little.
    let readers = vec![tokio::spawn(async move {
        futures::future::join_all(readers).await;
    })];

    let deadline = async {
        match job.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        status = child.wait() => from_status(status),
        () = deadline => { terminate(child, pgid, kill_grace).await; Outcome::TimedOut }
        () = cancel.cancelled() => { terminate(child, pgid, kill_grace).await; Outcome::Cancelled }
    };
    // Whatever the leader left behind in its group goes with it, so that the pipes close and
    // nothing outlives its task.
    signal_group(pgid, Signal::SIGKILL);
    // The leader has been waited for: from now on whatever carries its token and escaped the
    // group is stopped by the orphan sweeper, which also closes the pipes it holds.
    drop(registration);
    let given_up = drain(readers, tokio::time::Instant::now() + OUTPUT_GRACE).await;
    if given_up > 0 {
        tracing::warn!(
            key = ?job.key,
            "output still open {OUTPUT_GRACE:?} after the task's leader exited (a process that \
             left its group holds it); stopped reading"
        );
    }
    outcome
}

/// How long the output pipes may stay open after the leader exited, all of them together.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// Waits for the output readers until one shared `deadline`, then stops those still reading
/// (a process that escaped the group may hold a pipe open forever). Returns how many were
/// stopped.
async fn drain(readers: Vec<JoinHandle<()>>, deadline: tokio::time::Instant) -> usize {
    let mut given_up = 0;
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout_at(deadline, reader).await.is_err() {
            abort.abort();
            given_up += 1;
        }
    }
    given_up
}

fn from_status(status: std::io::Result<ExitStatus>) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Outcome::Exited(code),
            (None, Some(sig)) => Outcome::Signaled(sig),
            (None, None) => Outcome::SpawnFailed(format!("unknown exit status {s:?}")),
        },
        Err(e) => Outcome::SpawnFailed(format!("could not wait for the process: {e}")),
    }
}

fn signal_group(pgid: Option<Pid>, sig: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (group already gone) is the normal case after exit.
        let _ = killpg(pgid, sig);
    }
}

/// SIGTERM to the group, SIGKILL after the grace period.
async fn terminate(child: &mut Child, pgid: Option<Pid>, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Either output pipe of a child.
enum Reader {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

impl From<tokio::process::ChildStdout> for Reader {
    fn from(r: tokio::process::ChildStdout) -> Self {
        Reader::Out(r)
    }
}

impl From<tokio::process::ChildStderr> for Reader {
    fn from(r: tokio::process::ChildStderr) -> Self {
        Reader::Err(r)
    }
}

impl Reader {
    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Reader::Out(r) => read_into(r, buf).await,
            Reader::Err(r) => read_into(r, buf).await,
        }
    }
}

async fn read_into<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    // Start small so that thousands of quiet tasks cost little memory; grow for chatty ones.
    if buf.capacity() - buf.len() < 256 {
        let grow = buf.capacity().clamp(512, MAX_LINE);
        buf.reserve(grow);
    }
    r.read_buf(buf).await
}

async fn pump(
    mut reader: Reader,
    stream: Stream,
    key: AttemptKey,
    seq: Arc<AtomicU64>,
    clock: Clock,
    events: mpsc::Sender<AgentEvent>,
) {
    let mut splitter = LineSplitter::default();
    loop {
        let n = match reader.read_buf(splitter.buffer()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(?key, ?stream, "reading task output failed: {e}");
                0
            }
        };
        let mut lines = Vec::new();
        let at = clock.now();
        let mut push = |text| {
            lines.push(LogLine {
                seq: seq.fetch_add(1, Ordering::Relaxed),
                at,
                text,
            })
        };
        if n == 0 {
            splitter.finish(&mut push);
        } else {
            splitter.drain(&mut push);
        }
        if !lines.is_empty() {
            let batch = LogBatch {
                key: key.clone(),
                stream,
                lines,
            };
            if events.send(AgentEvent::Logs(batch)).await.is_err() {
                return;
            }
        }
        if n == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The readers share one deadline: one that would finish a while after the grace, waited
    /// for behind one that never finishes, is given up at the same deadline rather than getting
    /// a grace of its own (which it would outlast by 0.6 s, so this does not hang on timing).
    #[tokio::test]
    async fn output_readers_share_one_deadline() {
        let grace = Duration::from_secs(1);
        let never = tokio::spawn(std::future::pending::<()>());
        let late = tokio::spawn(tokio::time::sleep(grace * 8 / 5));
        let given_up = drain(vec![never, late], tokio::time::Instant::now() + grace).await;
        assert_eq!(given_up, 2, "both readers stop at the one deadline");
    }

    #[tokio::test]
    async fn readers_that_finish_are_not_given_up() {
        let done = tokio::spawn(async {});
        let soon = tokio::spawn(tokio::time::sleep(Duration::from_millis(10)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        assert_eq!(drain(vec![done, soon], deadline).await, 0);
    }
}
