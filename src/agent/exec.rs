//! The one process runner behind every kind of work (a task, a service, a command check): a
//! process group of its own, concurrent reading of stdout and stderr, the environment and
//! working directory, the watchdog's tracking, the time limit, and the stop by signal then
//! SIGKILL. It reports the exit status and, apart from it, whether it stopped the work itself.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
use crate::protocol::agent::{
    AgentEvent, Assignment, Exit, StopCause, StopPolicy, WorkEnd, WorkId, WorkKind,
};
use crate::protocol::{LogLine, Stream};

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

/// Runs `job` to the end; every event goes to `events`. Cancelling `stop` stops it by its
/// stop policy.
pub async fn run(
    job: Assignment,
    stop: CancellationToken,
    events: mpsc::Sender<AgentEvent>,
    reaper: Option<&super::reaper::Reaper>,
) {
    let clock = Clock::start();
    let id = job.id.clone();
    let token = orphans::Token::next();
    let spawned = orphans::spawn_registered(
        orphans::ChildKind::Leader(token.clone()),
        || spawn(&job, &token),
        Child::id,
    );
    let (exit, stopped, output) = match spawned {
        Err(why) => (Exit::NotStarted(why), None, None),
        Ok((mut child, registration)) => {
            let pid = child.id();
            if let (Some(r), Some(pid)) = (reaper, pid) {
                r.track(pid);
            }
            let _ = events
                .send(AgentEvent::Started {
                    id: id.clone(),
                    at: clock.wall,
                    pid,
                })
                .await;
            let ended = supervise(&mut child, registration, &job, &stop, clock, &events).await;
            // The group has been killed and reaped by now.
            if let (Some(r), Some(pid)) = (reaper, pid) {
                r.untrack(pid);
            }
            ended
        }
    };
    let end = WorkEnd {
        id,
        started_at: clock.wall,
        ended_at: clock.now(),
        exit,
        stopped,
        output,
    };
    let _ = events.send(AgentEvent::Finished(end)).await;
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

/// Where a stream's lines go: to the principal as they come, or into a check's bounded
/// capture.
#[derive(Clone)]
enum Sink {
    Stream(mpsc::Sender<AgentEvent>),
    Capture(Arc<Mutex<Capture>>),
}

/// A check's output, both streams in the order read, up to a bound.
struct Capture {
    text: String,
    room: usize,
}

impl Capture {
    fn push(&mut self, line: &str) {
        if self.room == 0 {
            return;
        }
        let mut take = line.len().min(self.room);
        while !line.is_char_boundary(take) {
            take -= 1;
        }
        self.text.push_str(&line[..take]);
        self.room -= take;
        if self.room > 0 {
            self.text.push('\n');
            self.room -= 1;
        }
    }
}

async fn supervise(
    child: &mut Child,
    registration: orphans::Registration,
    job: &Assignment,
    stop: &CancellationToken,
    clock: Clock,
    events: &mpsc::Sender<AgentEvent>,
) -> (Exit, Option<StopCause>, Option<String>) {
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let seq = Arc::new(AtomicU64::new(0));
    let (timeout, capture) = match &job.kind {
        WorkKind::Task { timeout } => (*timeout, None),
        WorkKind::Service => (None, None),
        WorkKind::Check {
            timeout,
            max_output,
        } => (
            Some(*timeout),
            Some(Arc::new(Mutex::new(Capture {
                text: String::new(),
                room: *max_output,
            }))),
        ),
    };
    let sink = match &capture {
        Some(c) => Sink::Capture(c.clone()),
        None => Sink::Stream(events.clone()),
    };
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
            job.id.clone(),
            seq.clone(),
            clock,
            sink.clone(),
        )
    })
    .collect::<Vec<_>>();
    // One task reads both pipes: a task spawned per pipe costs more than the reading itself
    // for the many tasks that print little.
    let readers = vec![tokio::spawn(async move {
        futures::future::join_all(readers).await;
    })];

    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let (status, stopped) = tokio::select! {
        status = child.wait() => (status, None),
        () = deadline => (terminate(child, pgid, job.stop).await, Some(StopCause::TimedOut)),
        () = stop.cancelled() => (terminate(child, pgid, job.stop).await, Some(StopCause::Requested)),
    };
    // Whatever the leader left behind in its group goes with it, so that the pipes close and
    // nothing outlives its work.
    signal_group(pgid, Signal::SIGKILL);
    // The leader has been waited for: from now on whatever carries its token and escaped the
    // group is stopped by the orphan sweeper, which also closes the pipes it holds.
    drop(registration);
    let given_up = drain(readers, tokio::time::Instant::now() + OUTPUT_GRACE).await;
    if given_up > 0 {
        tracing::warn!(
            id = ?job.id,
            "output still open {OUTPUT_GRACE:?} after the leader exited (a process that left \
             its group holds it); stopped reading"
        );
    }
    let output =
        capture.map(|c| std::mem::take(&mut c.lock().unwrap_or_else(|e| e.into_inner()).text));
    (exit_of(status), stopped, output)
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

fn exit_of(status: std::io::Result<ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::NotStarted(format!("unknown exit status {s:?}")),
        },
        Err(e) => Exit::NotStarted(format!("could not wait for the process: {e}")),
    }
}

fn signal_group(pgid: Option<Pid>, sig: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (group already gone) is the normal case after exit.
        let _ = killpg(pgid, sig);
    }
}

/// The stop policy's signal to the group, SIGKILL after its grace; returns how it ended.
async fn terminate(
    child: &mut Child,
    pgid: Option<Pid>,
    policy: StopPolicy,
) -> std::io::Result<ExitStatus> {
    match Signal::try_from(policy.signal) {
        Ok(sig) => signal_group(pgid, sig),
        // Refused at validation; should one come over the wire, stop it for good.
        Err(_) => signal_group(pgid, Signal::SIGKILL),
    }
    match tokio::time::timeout(policy.grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(pgid, Signal::SIGKILL);
            child.wait().await
        }
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
    id: WorkId,
    seq: Arc<AtomicU64>,
    clock: Clock,
    sink: Sink,
) {
    let mut splitter = LineSplitter::default();
    loop {
        let n = match reader.read_buf(splitter.buffer()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(?id, ?stream, "reading output failed: {e}");
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
            match &sink {
                Sink::Stream(events) => {
                    let output = AgentEvent::Output {
                        id: id.clone(),
                        stream,
                        lines,
                    };
                    if events.send(output).await.is_err() {
                        return;
                    }
                }
                Sink::Capture(capture) => {
                    let mut c = capture.lock().unwrap_or_else(|e| e.into_inner());
                    for line in &lines {
                        c.push(&line.text);
                    }
                }
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
