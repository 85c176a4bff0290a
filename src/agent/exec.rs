//! The one process runner behind every kind of work (a task, a service, a command check): a
//! process group of its own, concurrent reading of stdout and stderr, the environment and
//! working directory, the watchdog's tracking, the time limit, and the stop by signal then
//! SIGKILL. It reports the exit status and, apart from it, whether it stopped the work itself.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::{Child, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::lines::LineSplitter;
use super::orphans;
use crate::protocol::agent::{
    AgentEvent, Assignment, Exit, StopCause, StopPolicy, WorkEnd, WorkId, WorkKind,
};
use crate::protocol::{Charge, LINE_OVERHEAD, LogLine, Stream};

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

/// Runs `job` to the end; every event goes to `events`, each batch of output with its share
/// of `budget` (see [`Charge`]). Cancelling `stop` stops it by its stop policy; cancelling
/// `kill` kills it at once, whatever its policy (a second Ctrl-C during a shutdown).
pub async fn run(
    job: Assignment,
    (stop, kill): (CancellationToken, CancellationToken),
    events: mpsc::Sender<AgentEvent>,
    budget: Arc<Semaphore>,
    reaper: Option<&super::reaper::Reaper>,
) {
    let clock = Clock::start();
    let id = job.id.clone();
    let token = orphans::Token::next();
    let spawned = orphans::spawn_registered(
        orphans::ChildKind::Leader(token.clone()),
        || spawn(&job, &token),
        |(child, _)| child.id(),
    );
    let (exit, stopped, output) = match spawned {
        Err(why) => (Exit::NotStarted(why), None, None),
        Ok(((mut child, merged), registration)) => {
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
            let ended = supervise(
                &mut child,
                merged,
                registration,
                &job,
                (&stop, &kill),
                clock,
                (&events, &budget),
            )
            .await;
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

/// Starts the work's leader. A check's two streams share one pipe, as `2>&1` would, so its
/// output keeps the order it was written in (the last line of a failing command is its last
/// word, whichever stream said it); that pipe's read end comes back beside the child.
fn spawn(
    job: &Assignment,
    token: &orphans::Token,
) -> Result<(Child, Option<std::io::PipeReader>), String> {
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
        // Own process group, so timeout and cancel reach every grandchild. `process_group`
        // keeps std on its posix_spawn fast path (a `pre_exec` hook would force fork).
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &job.cwd {
        cmd.current_dir(dir);
    }
    let merged = if matches!(job.kind, WorkKind::Check { .. }) {
        let no_pipe = |e: std::io::Error| format!("could not make a pipe for its output: {e}");
        let (read, write) = std::io::pipe().map_err(no_pipe)?;
        cmd.stdout(write.try_clone().map_err(no_pipe)?)
            .stderr(write);
        Some(read)
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    };
    // The mark, like the token, says whose every descendant is, even one that clears its
    // environment (see `orphans`). The write ends held by `cmd` close as it goes, so the pipe
    // ends when the work's processes do.
    let spawned = orphans::with_mark(token, || cmd.spawn());
    drop(cmd);
    spawned
        .map(|child| (child, merged))
        .map_err(|e| match e.kind() {
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

/// A check's output, both streams in the order written, up to a bound.
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

/// Where the work stands, apart from its output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Running; the timer, when armed, is its time limit.
    Running,
    /// Sent its stop signal; the timer is the end of its grace.
    Stopping,
    /// Sent SIGKILL after the grace; waiting for the exit.
    Killed,
    /// The leader has exited; the timer bounds how long its pipes may stay open.
    Draining,
}

/// Runs the process to its end and reads its output, all in this one task: a service costs
/// one task whose state is a few hundred bytes, and a quiet pipe holds no buffer (see
/// [`Pipe`]). Output keeps being read while a stop's grace runs, so that a process that
/// writes as it shuts down is not blocked on a full pipe, and a stop is heard even while the
/// output waits for room in `events`.
async fn supervise(
    child: &mut Child,
    merged: Option<std::io::PipeReader>,
    registration: orphans::Registration,
    job: &Assignment,
    (stop, kill): (&CancellationToken, &CancellationToken),
    clock: Clock,
    (events, budget): (&mpsc::Sender<AgentEvent>, &Arc<Semaphore>),
) -> (Exit, Option<StopCause>, Option<String>) {
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let (timeout, mut capture) = match &job.kind {
        WorkKind::Task { timeout } => (*timeout, None),
        WorkKind::Service => (None, None),
        WorkKind::Check {
            timeout,
            max_output,
        } => (
            Some(*timeout),
            Some(Capture {
                text: String::new(),
                room: *max_output,
            }),
        ),
    };
    // A merged pipe that tokio cannot watch is read as if closed at once: the check then
    // ends with its exit code and no output, never blocking.
    let merged = merged.and_then(|r| {
        tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(r))
            .map_err(|e| tracing::warn!("cannot watch a check's output pipe: {e}"))
            .ok()
    });
    let mut pipes = [
        Pipe::new(
            child
                .stdout
                .take()
                .map(Reader::from)
                .or(merged.map(Reader::Merged)),
            Stream::Stdout,
        ),
        Pipe::new(child.stderr.take().map(Reader::from), Stream::Stderr),
    ];
    let mut seq = 0u64;
    let mut quota = Quota::new(job.max_output);
    let mut registration = Some(registration);
    let mut phase = Phase::Running;
    let mut stopped = None;
    let mut status = None;
    // Nobody listens any more (the agent is going away): output is read and dropped, so that
    // the process is never blocked writing it.
    let mut unheard = false;
    let timer = tokio::time::sleep(timeout.unwrap_or(Duration::ZERO));
    tokio::pin!(timer);
    let mut armed = timeout.is_some();
    // The budget share for the next batch, and which pipe's it is.
    let mut charged: Option<(Stream, OwnedSemaphorePermit)> = None;
    loop {
        let [out, err] = &mut pipes;
        let waiting = out.has_lines() || err.has_lines();
        let next = if out.has_lines() { &*out } else { &*err };
        let (next_stream, (_, next_cost)) = (next.stream, next.next_batch());
        if status.is_some() && !waiting && !out.is_open() && !err.is_open() {
            // Said once, after everything before it: the lines past `max_output`.
            match quota.marker(clock.now()) {
                Some((stream, line)) if !unheard => {
                    let pipe = if out.stream == stream { out } else { err };
                    pipe.waiting.push(line);
                    continue;
                }
                _ => break,
            }
        }
        let stop_heard = stopped.is_some() || phase == Phase::Draining;
        tokio::select! {
            ended = child.wait(), if status.is_none() => {
                status = Some(ended);
                // Whatever the leader left behind in its group goes with it, so that the
                // pipes close and nothing outlives its work.
                signal_group(pgid, Signal::SIGKILL);
                // The leader has been waited for: from now on whatever carries its token and
                // escaped the group is stopped by the orphan sweeper, which also closes the
                // pipes it holds.
                registration = None;
                phase = Phase::Draining;
                timer.as_mut().reset(tokio::time::Instant::now() + OUTPUT_GRACE);
                armed = true;
            }
            () = stop.cancelled(), if !stop_heard => {
                stopped = Some(StopCause::Requested);
                phase = begin_stop(pgid, job.stop, timer.as_mut());
                armed = true;
            }
            () = kill.cancelled(), if status.is_none() && phase != Phase::Killed => {
                stopped.get_or_insert(StopCause::Requested);
                signal_group(pgid, Signal::SIGKILL);
                phase = Phase::Killed;
                armed = false;
            }
            () = &mut timer, if armed => match phase {
                Phase::Running => {
                    stopped = Some(StopCause::TimedOut);
                    phase = begin_stop(pgid, job.stop, timer.as_mut());
                }
                Phase::Stopping => {
                    signal_group(pgid, Signal::SIGKILL);
                    phase = Phase::Killed;
                    armed = false;
                }
                Phase::Killed => armed = false,
                Phase::Draining => {
                    tracing::warn!(
                        id = ?job.id,
                        "output still open {OUTPUT_GRACE:?} after the leader exited (a process \
                         that left its group holds it); stopped reading"
                    );
                    if let Some((stream, line)) = quota.marker(clock.now()) {
                        let pipe = if out.stream == stream { &mut *out } else { &mut *err };
                        pipe.waiting.push(line);
                    }
                    for pipe in [out, err] {
                        pipe.close();
                        while let Some(lines) = pipe.take_lines() {
                            let _ = events.try_send(lines.into_event(&job.id));
                        }
                    }
                    break;
                }
            },
            share = budget.clone().acquire_many_owned(next_cost), if waiting && charged.is_none() && !unheard => match share {
                Ok(share) => charged = Some((next_stream, share)),
                // Never closed; should it be, output goes on uncharged.
                Err(_) => unheard = true,
            },
            permit = events.reserve(), if charged.is_some() && !unheard => match (permit, charged.take()) {
                (Ok(permit), Some((stream, share))) => {
                    let pipe = if out.stream == stream { out } else { err };
                    if let Some(mut lines) = pipe.take_lines() {
                        lines.charge = Charge::new(share);
                        permit.send(lines.into_event(&job.id));
                    }
                }
                _ => {
                    unheard = true;
                    out.waiting.clear();
                    err.waiting.clear();
                }
            },
            read = out.read(), if out.is_open() && !out.has_lines() => {
                let at = clock.now();
                out.keep(read, at, (&mut seq, &mut quota), capture.as_mut(), unheard);
            }
            read = err.read(), if err.is_open() && !err.has_lines() => {
                let at = clock.now();
                err.keep(read, at, (&mut seq, &mut quota), capture.as_mut(), unheard);
            }
        }
    }
    drop(registration);
    let output = capture.map(|c| c.text);
    let status =
        status.unwrap_or_else(|| Err(std::io::Error::other("the process was not waited for")));
    (exit_of(status), stopped, output)
}

/// Sends the stop policy's signal and sets `timer` to the end of its grace.
fn begin_stop(
    pgid: Option<Pid>,
    policy: StopPolicy,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Phase {
    match Signal::try_from(policy.signal) {
        Ok(sig) => signal_group(pgid, sig),
        // Refused at validation; should one come over the wire, stop it for good.
        Err(_) => signal_group(pgid, Signal::SIGKILL),
    }
    timer.reset(tokio::time::Instant::now() + policy.grace);
    Phase::Stopping
}

/// How long the output pipes may stay open after the leader exited, all of them together.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

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

/// Either output pipe of a child.
enum Reader {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
    /// Both streams of a check through one pipe.
    Merged(tokio::net::unix::pipe::Receiver),
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
    fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self {
            Reader::Out(r) => std::pin::Pin::new(r).poll_read(cx, buf),
            Reader::Err(r) => std::pin::Pin::new(r).poll_read(cx, buf),
            Reader::Merged(r) => std::pin::Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// Bytes read from a pipe at once. They live on the stack only while one read is copied into
/// lines, never in the task.
const READ_CHUNK: usize = 16 * 1024;

/// What one read of a pipe gave: its complete lines, and whether the pipe is still open.
struct Read {
    lines: Vec<String>,
    open: bool,
}

/// One output stream of the work: its pipe (until it ends), the partial line read so far,
/// and lines waiting for room in the events channel.
struct Pipe {
    reader: Option<Reader>,
    stream: Stream,
    splitter: LineSplitter,
    waiting: Vec<LogLine>,
}

/// Lines of one stream on their way to the principal.
struct Batch {
    stream: Stream,
    lines: Vec<LogLine>,
    charge: Charge,
}

impl Batch {
    fn into_event(self, id: &WorkId) -> AgentEvent {
        AgentEvent::Output {
            id: id.clone(),
            stream: self.stream,
            lines: self.lines,
            charge: self.charge,
        }
    }
}

/// What one batch of output may cost (see [`crate::protocol::output_cost`]), past its first line: a flood of
/// short lines goes in many small batches, each charged on its own.
const BATCH_COST: usize = 32 * 1024;

impl Pipe {
    fn new(reader: Option<Reader>, stream: Stream) -> Self {
        Self {
            reader,
            stream,
            splitter: LineSplitter::default(),
            waiting: Vec::new(),
        }
    }

    fn is_open(&self) -> bool {
        self.reader.is_some()
    }

    fn has_lines(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn close(&mut self) {
        self.reader = None;
    }

    /// How many lines the next batch takes (up to [`BATCH_COST`], at least one) and what
    /// they cost, as budget permits.
    fn next_batch(&self) -> (usize, u32) {
        let (mut n, mut cost) = (0, 0);
        for line in &self.waiting {
            if cost >= BATCH_COST {
                break;
            }
            cost += line.text.len() + LINE_OVERHEAD;
            n += 1;
        }
        (n, u32::try_from(cost).unwrap_or(u32::MAX))
    }

    fn take_lines(&mut self) -> Option<Batch> {
        if self.waiting.is_empty() {
            return None;
        }
        let (n, _) = self.next_batch();
        let lines = if n == self.waiting.len() {
            std::mem::take(&mut self.waiting)
        } else {
            self.waiting.drain(..n).collect()
        };
        Some(Batch {
            stream: self.stream,
            lines,
            charge: Charge::default(),
        })
    }

    /// Waits until the pipe has something, then reads what it has. The read goes through a
    /// buffer on the stack, and only a partial line stays behind: an idle service's pipes hold
    /// no memory at all.
    fn read(&mut self) -> impl std::future::Future<Output = Read> + '_ {
        std::future::poll_fn(move |cx| {
            let Some(reader) = self.reader.as_mut() else {
                return Poll::Ready(Read {
                    lines: Vec::new(),
                    open: false,
                });
            };
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            let open = match reader.poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => !buf.filled().is_empty(),
                Poll::Ready(Err(e)) => {
                    tracing::warn!(stream = ?self.stream, "reading output failed: {e}");
                    false
                }
            };
            let mut lines = Vec::new();
            if open {
                self.splitter.feed(buf.filled(), |l| lines.push(l));
            } else {
                self.splitter.finish(|l| lines.push(l));
            }
            Poll::Ready(Read { lines, open })
        })
    }

    /// Numbers the lines of one read and keeps them: in the check's capture, or to be sent.
    fn keep(
        &mut self,
        read: Read,
        at: DateTime<Utc>,
        (seq, quota): (&mut u64, &mut Quota),
        capture: Option<&mut Capture>,
        unheard: bool,
    ) {
        if !read.open {
            self.reader = None;
        }
        match capture {
            Some(c) => read.lines.iter().for_each(|l| c.push(l)),
            None if unheard => {}
            None => {
                for text in read.lines {
                    *seq += 1;
                    if quota.admit(self.stream, *seq - 1, &text) {
                        self.waiting.push(LogLine {
                            seq: *seq - 1,
                            at,
                            text,
                        });
                    }
                }
            }
        }
    }
}

/// What a task attempt or a service start may still store (its `max_output`), and what
/// went past it: from the first line that does not fit, every line is counted, not sent, and
/// one line in its place says how many there were, as CI systems do.
struct Quota {
    room: u64,
    cut: Option<Cut>,
}

/// Where the output was cut, and what has been counted since.
struct Cut {
    seq: u64,
    stream: Stream,
    lines: u64,
    bytes: u64,
    told: bool,
}

impl Quota {
    fn new(max_output: u64) -> Self {
        Self {
            room: max_output,
            cut: None,
        }
    }

    /// Whether the line numbered `seq` is sent to be stored; counts it if not.
    fn admit(&mut self, stream: Stream, seq: u64, text: &str) -> bool {
        let len = text.len() as u64;
        match &mut self.cut {
            Some(cut) => {
                cut.lines += 1;
                cut.bytes += len;
                false
            }
            None if len <= self.room => {
                self.room -= len;
                true
            }
            None => {
                self.cut = Some(Cut {
                    seq,
                    stream,
                    lines: 1,
                    bytes: len,
                    told: false,
                });
                false
            }
        }
    }

    /// The line that takes the place of what was cut, numbered as its first line, once.
    fn marker(&mut self, at: DateTime<Utc>) -> Option<(Stream, LogLine)> {
        let cut = self.cut.as_mut().filter(|c| !c.told)?;
        cut.told = true;
        Some((
            cut.stream,
            LogLine {
                seq: cut.seq,
                at,
                text: format!(
                    "{} lines ({} bytes) not stored: max_output",
                    cut.lines, cut.bytes
                ),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::agent::ServiceStart;

    fn service(script: &str) -> Assignment {
        Assignment {
            id: WorkId::Service(ServiceStart {
                path: "t/s".into(),
                start: 1,
            }),
            kind: WorkKind::Service,
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: Vec::new(),
            cwd: None,
            stop: StopPolicy {
                signal: Signal::SIGTERM as i32,
                grace: Duration::from_secs(5),
            },
            max_output: crate::protocol::agent::DEFAULT_MAX_OUTPUT,
        }
    }

    fn budget() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(crate::agent::OUTPUT_BUDGET))
    }

    fn state_of(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')').next()?.trim_start().chars().next()
    }

    /// A stop is heard while output waits for room in a full channel: a process flooding its
    /// pipe is signalled although nobody reads its lines.
    #[tokio::test]
    async fn a_stop_is_heard_while_output_waits_for_room() {
        let (tx, mut rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let work = tokio::spawn(run(
            service("yes flood"),
            (stop.clone(), CancellationToken::new()),
            tx,
            budget(),
            None,
        ));
        let Some(AgentEvent::Started { pid: Some(pid), .. }) = rx.recv().await else {
            panic!("no start");
        };
        // Let the channel fill and the pipe with it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
        let t = Instant::now();
        while matches!(state_of(pid), Some(s) if s != 'Z') {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "the stop was not heard while the output waited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let end = loop {
            match rx.recv().await {
                Some(AgentEvent::Finished(end)) => break end,
                Some(_) => {}
                None => panic!("no end"),
            }
        };
        assert_eq!(end.stopped, Some(StopCause::Requested));
        work.await.expect("run ends");
    }

    /// Output written during the stop's grace is read and kept, on both streams, in order.
    #[tokio::test]
    async fn output_written_while_stopping_is_kept() {
        let (tx, mut rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let script =
            "trap 'echo bye; echo gone >&2; exit 0' TERM; echo hi; while :; do sleep 0.02; done";
        let work = tokio::spawn(run(
            service(script),
            (stop.clone(), CancellationToken::new()),
            tx,
            budget(),
            None,
        ));
        let mut lines = Vec::new();
        let end = loop {
            match rx.recv().await {
                Some(AgentEvent::Output { lines: l, .. }) => {
                    if l.iter().any(|l| l.text == "hi") {
                        stop.cancel();
                    }
                    lines.extend(l);
                }
                Some(AgentEvent::Finished(end)) => break end,
                Some(_) => {}
                None => panic!("no end"),
            }
        };
        work.await.expect("run ends");
        // The shell may also report its `sleep` ended by the group's signal ("Terminated").
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        let at = |t: &str| texts.iter().position(|x| *x == t);
        assert!(at("hi") < at("bye") && at("bye").is_some(), "{texts:?}");
        assert!(texts.contains(&"gone"), "{texts:?}");
        let mut seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..lines.len() as u64).collect();
        assert_eq!(seqs, expected, "one counter over both streams");
        assert_eq!(end.exit, Exit::Code(0));
        assert_eq!(end.stopped, Some(StopCause::Requested));
    }

    /// A process that ignores its stop signal is killed at the end of its grace.
    #[tokio::test]
    async fn a_process_ignoring_its_signal_is_killed_after_the_grace() {
        let (tx, mut rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let mut job = service("trap '' TERM; echo up; while :; do sleep 0.02; done");
        job.stop.grace = Duration::from_millis(300);
        let work = tokio::spawn(run(
            job,
            (stop.clone(), CancellationToken::new()),
            tx,
            budget(),
            None,
        ));
        let end = loop {
            match rx.recv().await {
                Some(AgentEvent::Output { .. }) => stop.cancel(),
                Some(AgentEvent::Finished(end)) => break end,
                Some(_) => {}
                None => panic!("no end"),
            }
        };
        work.await.expect("run ends");
        assert_eq!(end.exit, Exit::Signal(Signal::SIGKILL as i32));
        assert_eq!(end.stopped, Some(StopCause::Requested));
    }
}
