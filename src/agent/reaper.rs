//! Task processes must not outlive a principal that dies (kill -9, OOM killer, crash).
//!
//! Linux's parent-death signal would need a `pre_exec` hook in every spawn, which forces std
//! off its posix_spawn fast path onto fork (costly for a process that maps DuckDB). Instead
//! one small watchdog process — this binary, `opsconsole __reap` — is told over a pipe which
//! process groups are live. When the pipe reaches end-of-file, the principal is gone (the
//! kernel closes its end however it died), and the watchdog stops every group still listed:
//! SIGTERM, then SIGKILL after a grace period.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::lock;

/// The hidden subcommand that runs the watchdog.
pub const REAP_COMMAND: &str = "__reap";

/// How long the watchdog lets messages gather before it reads them.
const COALESCE: Duration = Duration::from_millis(10);

/// What the watchdog prints once it listens.
const READY: &str = "opsconsole watchdog ready";

/// The principal's side: tells the watchdog which process groups are live.
pub struct Reaper {
    feed: Arc<Feed>,
    writer: Option<std::thread::JoinHandle<()>>,
    child: Mutex<Child>,
    /// Held until the watchdog has been waited for, so the orphan sweeper leaves it alone.
    _registration: super::orphans::Registration,
}

/// Changes to the live groups not yet written to the watchdog. Written in batches by one
/// thread: a busy principal starts thousands of groups a second, most of which end before the
/// next batch, and writing a line per start and end cost more than the rest of the watchdog.
/// A group that starts and ends within one batch is never written at all; one the watchdog has
/// not heard of yet still carries the task token it finds by.
struct Feed {
    state: Mutex<FeedState>,
    wake: Condvar,
}

#[derive(Default)]
struct FeedState {
    /// Started since the last batch and not yet written.
    added: HashSet<u32>,
    /// Written as live and ended since.
    removed: HashSet<u32>,
    /// The writer has been woken for the next batch.
    scheduled: bool,
    closing: bool,
}

impl Reaper {
    /// Starts the watchdog (`exe __reap`); `None`, logged, when it cannot start — tasks then
    /// run without the guarantee rather than not at all.
    pub fn start(exe: &std::path::Path, grace: Duration) -> Option<Reaper> {
        let mut command = Command::new(exe);
        command
            .args([
                REAP_COMMAND,
                &grace.as_millis().to_string(),
                super::orphans::instance(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own group: a Ctrl-C in the terminal reaches the foreground group, and the
            // principal, not the terminal, decides what happens to its tasks.
            .process_group(0);
        let spawned = super::orphans::spawn_registered(
            super::orphans::ChildKind::Other,
            || command.spawn(),
            |c| Some(c.id()),
        );
        match spawned {
            Ok((mut child, registration)) => {
                // Only a real watchdog answers; anything else (say, a test harness binary)
                // is not relied upon.
                let mut hello = String::new();
                let ok = child
                    .stdout
                    .take()
                    .map(std::io::BufReader::new)
                    .is_some_and(|mut out| out.read_line(&mut hello).is_ok())
                    && hello.trim_end() == READY;
                if !ok {
                    let _ = child.kill();
                    let _ = child.wait();
                    tracing::warn!("{} is not an opsconsole watchdog", exe.display());
                    return None;
                }
                let feed = Arc::new(Feed {
                    state: Mutex::default(),
                    wake: Condvar::new(),
                });
                let pipe = child.stdin.take();
                let writer = {
                    let feed = feed.clone();
                    std::thread::Builder::new()
                        .name("watchdog-feed".into())
                        .spawn(move || feed_loop(&feed, pipe))
                };
                let writer = match writer {
                    Ok(w) => Some(w),
                    Err(e) => {
                        // The pipe went with the thread that did not start: the watchdog has
                        // seen its end, with nothing running yet.
                        let _ = child.wait();
                        tracing::warn!(
                            "cannot start the watchdog's feed ({e}); tasks may outlive a crash"
                        );
                        return None;
                    }
                };
                Some(Reaper {
                    feed,
                    writer,
                    child: Mutex::new(child),
                    _registration: registration,
                })
            }
            Err(e) => {
                tracing::warn!(
                    "cannot start the watchdog that stops tasks if opsconsole dies: {e}; \
                     tasks may outlive a crash"
                );
                None
            }
        }
    }

    /// A task's process group has started.
    pub fn track(&self, pgid: u32) {
        self.feed.track(pgid);
    }

    /// A task's process group has been stopped or has ended.
    pub fn untrack(&self, pgid: u32) {
        self.feed.untrack(pgid);
    }
}

impl Feed {
    fn change(&self, f: impl FnOnce(&mut FeedState)) {
        let mut st = lock(&self.state);
        f(&mut st);
        if !st.scheduled {
            st.scheduled = true;
            self.wake.notify_one();
        }
    }

    fn track(&self, pgid: u32) {
        self.change(|st| {
            if !st.removed.remove(&pgid) {
                st.added.insert(pgid);
            }
        });
    }

    fn untrack(&self, pgid: u32) {
        self.change(|st| {
            if !st.added.remove(&pgid) {
                st.removed.insert(pgid);
            }
        });
    }

    fn close(&self) {
        lock(&self.state).closing = true;
        self.wake.notify_one();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Closing the pipe is the normal way out; every group was untracked by now.
        self.feed.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let mut child = lock(&self.child);
        let _ = child.wait();
    }
}

/// How long the feed gathers changes before it writes them in one go.
const FEED_BATCH: Duration = Duration::from_millis(10);

/// Writes batches of changes to the watchdog until the reaper is dropped, then closes the pipe.
fn feed_loop(feed: &Feed, mut pipe: Option<impl Write>) {
    let mut text = String::new();
    loop {
        {
            let mut st = lock(&feed.state);
            while !st.scheduled && !st.closing {
                st = feed.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.closing {
                return;
            }
        }
        std::thread::sleep(FEED_BATCH);
        text.clear();
        {
            let mut st = lock(&feed.state);
            st.scheduled = false;
            for g in st.added.drain() {
                text.push_str(&format!("+{g}\n"));
            }
            for g in st.removed.drain() {
                text.push_str(&format!("-{g}\n"));
            }
        }
        if let Some(p) = pipe.as_mut()
            && p.write_all(text.as_bytes()).is_err()
        {
            tracing::warn!("the task watchdog has gone away; tasks may outlive a crash");
            pipe = None;
        }
    }
}

fn signal_all(groups: &HashSet<i32>, sig: Signal) -> bool {
    let mut any = false;
    for &g in groups {
        // ESRCH: the group is already gone.
        any |= killpg(Pid::from_raw(g), sig).is_ok();
    }
    any
}

/// Processes carrying a task token or mark of principal `instance`: what escaped its tasks'
/// groups.
fn escaped(instance: &str) -> HashSet<i32> {
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|&pid| super::orphans::owner(pid, instance).is_some())
        .collect()
}

/// Signals each process of `pids`, and the group of each that leads one (it ran setsid, and
/// what it started is in that group). True if any was reached.
fn signal_escaped(pids: &HashSet<i32>, sig: Signal) -> bool {
    let mut any = false;
    for &pid in pids {
        if super::orphans::stat(pid).is_some_and(|s| s.pgid == pid) {
            let _ = killpg(Pid::from_raw(pid), sig);
        }
        any |= kill(Pid::from_raw(pid), sig).is_ok();
    }
    any
}

/// True while a process of `pids` runs (zombies, waiting for init, do not count).
fn any_running(pids: &HashSet<i32>) -> bool {
    pids.iter()
        .any(|&pid| super::orphans::stat(pid).is_some_and(|s| s.state != 'Z'))
}

/// The watchdog's main loop: reads `+PGID` / `-PGID` lines until end-of-file, then stops the
/// groups left and every process that carries a task token or mark of the principal `instance`
/// (descendants that escaped their group with setsid). Returns the process exit code.
pub fn watchdog(grace_ms: &str, instance: &str) -> u8 {
    let grace = Duration::from_millis(grace_ms.parse().unwrap_or(5000));
    // A principal that died already is noticed below, at end-of-file: no panic here.
    let _ = writeln!(std::io::stdout(), "{READY}").and_then(|()| std::io::stdout().flush());
    let mut groups: HashSet<i32> = HashSet::new();
    let mut input = std::io::BufReader::with_capacity(64 * 1024, std::io::stdin());
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if input.buffer().is_empty() {
            // Coalesce: a busy principal tracks thousands of groups a second, and waking for
            // each line would take CPU from its tasks. What arrives meanwhile is read in one go;
            // the principal's death is still noticed within this pause.
            std::thread::sleep(COALESCE);
        }
        let line = line.trim_end();
        let (op, num) = line.split_at(line.len().min(1));
        let Ok(pgid) = num.parse::<i32>() else {
            continue;
        };
        if pgid <= 1 {
            continue; // never signal "every process" or init's group
        }
        match op {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    // Escaped processes are found by their token or mark only now: while the principal lived, it
    // stopped them itself.
    let escaped = if instance.is_empty() {
        HashSet::new()
    } else {
        escaped(instance)
    };
    if groups.is_empty() && escaped.is_empty() {
        return 0;
    }
    signal_all(&groups, Signal::SIGTERM);
    signal_escaped(&escaped, Signal::SIGTERM);
    // After the signals, and never `eprintln!`: stderr is often a pipe whose reader died with
    // the principal, and a failed write must not stop the watchdog before its work is done.
    let _ = writeln!(
        std::io::stderr(),
        "opsconsole watchdog: the principal is gone; stopping {} task process group(s) and {} \
         process(es) that left them",
        groups.len(),
        escaped.len()
    );
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
        // Signal 0 probes whether any member of a group is left.
        if !groups
            .iter()
            .any(|&g| killpg(Pid::from_raw(g), None).is_ok())
            && !any_running(&escaped)
        {
            return 0;
        }
    }
    signal_all(&groups, Signal::SIGKILL);
    signal_escaped(&escaped, Signal::SIGKILL);
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_feed_writes_live_groups_in_batches_and_skips_groups_that_came_and_went() {
        let feed = Arc::new(Feed {
            state: Mutex::default(),
            wake: Condvar::new(),
        });
        let (mut rx, tx) = std::io::pipe().expect("pipe");
        let writer = {
            let feed = feed.clone();
            std::thread::spawn(move || feed_loop(&feed, Some(tx)))
        };
        feed.track(101);
        feed.track(102);
        feed.untrack(102); // within one batch: never written
        std::thread::sleep(FEED_BATCH * 5);
        feed.untrack(101);
        std::thread::sleep(FEED_BATCH * 5);
        feed.close();
        writer.join().expect("feed thread");
        let mut text = String::new();
        rx.read_to_string(&mut text).expect("read");
        assert_eq!(text, "+101\n-101\n");
    }
}
