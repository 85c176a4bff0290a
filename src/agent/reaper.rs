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
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The hidden subcommand that runs the watchdog.
pub const REAP_COMMAND: &str = "__reap";

/// How long the watchdog lets messages gather before it reads them.
const COALESCE: Duration = Duration::from_millis(10);

/// What the watchdog prints once it listens.
const READY: &str = "opsconsole watchdog ready";

/// The principal's side: tells the watchdog which process groups are live.
pub struct Reaper {
    pipe: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
    /// Held until the watchdog has been waited for, so the orphan sweeper leaves it alone.
    _registration: super::orphans::Registration,
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
                Some(Reaper {
                    pipe: Mutex::new(child.stdin.take()),
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

    fn send(&self, line: &str) {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipe.as_mut()
            && p.write_all(line.as_bytes()).is_err()
        {
            tracing::warn!("the task watchdog has gone away; tasks may outlive a crash");
            *pipe = None;
        }
    }

    /// A task's process group has started.
    pub fn track(&self, pgid: u32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// A task's process group has been stopped or has ended.
    pub fn untrack(&self, pgid: u32) {
        self.send(&format!("-{pgid}\n"));
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Closing the pipe is the normal way out; every group was untracked by now.
        self.pipe.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.wait();
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

/// Processes carrying a task token of principal `instance`: what escaped its tasks' groups.
fn escaped(instance: &str) -> HashSet<i32> {
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|&pid| {
            super::orphans::token_of(pid)
                .is_some_and(|t| super::orphans::token_number(&t, instance).is_some())
        })
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
/// groups left and every process that carries a task token of the principal `instance`
/// (descendants that escaped their group with setsid). Returns the process exit code.
pub fn watchdog(grace_ms: &str, instance: &str) -> u8 {
    let grace = Duration::from_millis(grace_ms.parse().unwrap_or(5000));
    println!("{READY}");
    let _ = std::io::stdout().flush();
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
    // Escaped processes are found by their token only now: while the principal lived, it
    // stopped them itself.
    let escaped = if instance.is_empty() {
        HashSet::new()
    } else {
        escaped(instance)
    };
    if groups.is_empty() && escaped.is_empty() {
        return 0;
    }
    eprintln!(
        "opsconsole watchdog: the principal is gone; stopping {} task process group(s) and {} \
         process(es) that left them",
        groups.len(),
        escaped.len()
    );
    signal_all(&groups, Signal::SIGTERM);
    signal_escaped(&escaped, Signal::SIGTERM);
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
