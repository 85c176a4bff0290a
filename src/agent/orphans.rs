//! Processes that leave their task: descendants that escape the task's process group (`setsid`)
//! and orphans whose parent exited.
//!
//! The principal makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so every
//! descendant whose parent dies is re-parented to it rather than to init. That does two jobs:
//!
//! - Escaped processes can be found: they are children of this process that it did not spawn.
//!   Each task leader gets a token in its environment ([`TOKEN_ENV`]), inherited by everything
//!   it starts, so an orphan tells which attempt it came from (`/proc/PID/environ`). Once that
//!   attempt's leader has exited, the orphan is stopped: SIGTERM, then SIGKILL after the grace.
//!   An environment can be cleared (`env -i`), so the leader also inherits a mark that no
//!   descendant drops by accident: its soft `RLIMIT_LOCKS`, a limit Linux has not enforced since
//!   2.4, set to a value naming the token ([`Token::mark`]). Limits pass through fork, exec,
//!   `setsid` and `env -i` alike, so an orphan's mark says whose descendant it is.
//!   One with neither (it changed that limit too) is stopped once every task that was running
//!   when it was first seen has ended.
//! - Orphans are reaped. A subreaper (and PID 1 in a container, which is one by birth) must
//!   wait for the orphans it adopts, or every `sleep 30 &` in a task leaves a zombie.
//!
//! A blanket `waitpid(-1)` would steal exit statuses from tokio, which waits for each task
//! leader by pid. So every child this process spawns into its own process group (task leaders,
//! the watchdog) is registered ([`spawn_registered`]) before the sweeper may see it, and the
//! sweeper only ever waits, by pid, for children that are not registered and not in this
//! process's own group (children that other code spawned plainly stay in our group and are
//! waited for by that code). Threads are not children, so tokio's and DuckDB's are never
//! candidates.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::sync::Notify;

/// The environment variable that carries a task's token to all of its descendants.
pub const TOKEN_ENV: &str = "OPSCONSOLE_TASK_TOKEN";

/// How often the sweeper looks for orphans when nothing wakes it.
const IDLE_SWEEP: Duration = Duration::from_secs(1);
/// How often while something is being stopped or a task has just ended.
const BUSY_SWEEP: Duration = Duration::from_millis(100);
/// How long after a task ends the sweeper keeps looking often: its group is killed at its end,
/// and what those members had started is re-parented as they die.
const AFTER_END: Duration = Duration::from_secs(2);
/// The most of `/proc/PID/environ` that is read when looking for the token.
const MAX_ENVIRON: u64 = 1 << 20;
/// A mark is `tag << MARK_BITS | token number` (the number's low bits; see [`Token::mark`]).
const MARK_BITS: u32 = 40;
/// The most of `/proc/PID/limits` that is read when looking for the mark (it is ~1.5 KiB).
const MAX_LIMITS: u64 = 16 << 10;

/// Names this process's tokens, so that tokens of another principal are never taken for ours.
static INSTANCE: LazyLock<String> = LazyLock::new(|| format!("{:016x}", fastrand::u64(..)));
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);
static SWEEPER: OnceLock<Sweeper> = OnceLock::new();
/// Held while this process's own `RLIMIT_LOCKS` carries a leader's mark (see [`with_mark`]).
static MARKING: Mutex<()> = Mutex::new(());

#[derive(Default)]
struct Registry {
    /// Held shared while a child is spawned and registered, exclusively while the sweeper lists
    /// children: a child just spawned is then never taken for an orphan.
    gate: RwLock<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Task leaders running now, with their token numbers.
    leaders: HashMap<u32, u64>,
    /// Other children that their spawner waits for (the watchdog).
    others: HashSet<u32>,
}

fn state() -> std::sync::MutexGuard<'static, State> {
    // A panic while holding the lock cannot leave the sets half-updated; keep going.
    REGISTRY.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's instance name, the prefix of every token it hands out.
pub fn instance() -> &'static str {
    &INSTANCE
}

/// A task's token, handed to its leader through [`TOKEN_ENV`].
#[derive(Debug, Clone)]
pub struct Token {
    number: u64,
    value: String,
}

impl Token {
    /// A token no other task of this process has.
    pub fn next() -> Self {
        let number = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        Self {
            number,
            value: format!("{}-{number}", instance()),
        }
    }

    /// The value of [`TOKEN_ENV`].
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The soft `RLIMIT_LOCKS` its leader is started with: this instance's tag above the
    /// token's number (its low [`MARK_BITS`] bits, which wrap only after a trillion tasks).
    pub fn mark(&self) -> u64 {
        (instance_tag(instance()) << MARK_BITS) | (self.number & ((1 << MARK_BITS) - 1))
    }
}

/// The tag of `instance` in marks: 24 bits with the top one set, so a mark is never 0, never
/// a limit anyone sets by hand, and never `RLIM_INFINITY`.
fn instance_tag(instance: &str) -> u64 {
    let bits = u64::from_str_radix(instance, 16).unwrap_or(0);
    (bits & 0x7f_ffff) | 0x80_0000
}

/// The token number in `mark` if it is a mark of `instance`.
pub(crate) fn mark_number(mark: u64, instance: &str) -> Option<u64> {
    (mark >> MARK_BITS == instance_tag(instance)).then_some(mark & ((1 << MARK_BITS) - 1))
}

/// Runs `spawn` with this process's soft `RLIMIT_LOCKS` set to `token`'s mark, so that the
/// child (and everything it starts) inherits it, then puts the old limit back.
///
/// Setting it in the child instead would need a `pre_exec` hook, which forces std off its
/// posix_spawn fast path (see `exec.rs`). Spawns that mark are serialised; a plain spawn
/// elsewhere in the process meanwhile may inherit the mark, and is then stopped with that task
/// if it ever escapes, which is the safe side ([`spawn_apart`] keeps a spawn clear of it).
/// Where the hard limit is too low for a mark, nothing is marked and the token alone tells.
pub fn with_mark<T>(token: &Token, spawn: impl FnOnce() -> T) -> T {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let _marking = MARKING.lock().unwrap_or_else(|e| e.into_inner());
    let mark = token.mark();
    let marked = match getrlimit(Resource::RLIMIT_LOCKS) {
        Ok((soft, hard)) if mark <= hard => setrlimit(Resource::RLIMIT_LOCKS, mark, hard)
            .ok()
            .map(|()| (soft, hard)),
        _ => None,
    };
    let spawned = spawn();
    if let Some((soft, hard)) = marked {
        let _ = setrlimit(Resource::RLIMIT_LOCKS, soft, hard);
    }
    spawned
}

/// The number in `value` if it is a token of `instance`.
pub(crate) fn token_number(value: &str, instance: &str) -> Option<u64> {
    value
        .strip_prefix(instance)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// What a registered child is to this process.
#[derive(Debug, Clone)]
pub enum ChildKind {
    /// The leader of a task's process group, running under this token.
    Leader(Token),
    /// A child that whoever spawned it waits for.
    Other,
}

/// A child's registration; dropping it (once the child has been waited for) ends it, and for
/// a task leader marks the task as ended, so that what it left behind is stopped.
#[derive(Debug)]
pub struct Registration {
    pid: Option<u32>,
    leader: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(pid) = self.pid else { return };
        {
            let mut s = state();
            s.leaders.remove(&pid);
            s.others.remove(&pid);
        }
        if self.leader
            && let Some(sweeper) = SWEEPER.get()
        {
            sweeper.task_ended();
        }
    }
}

/// Spawns a child with `spawn` and registers its pid (from `pid`) before the sweeper can look.
///
/// Every child this process puts in a process group of its own must come through here, or the
/// sweeper would take it for an orphan.
pub fn spawn_registered<C, E>(
    kind: ChildKind,
    spawn: impl FnOnce() -> Result<C, E>,
    pid: impl FnOnce(&C) -> Option<u32>,
) -> Result<(C, Registration), E> {
    let _gate = REGISTRY.gate.read().unwrap_or_else(|e| e.into_inner());
    let child = spawn()?;
    let id = pid(&child);
    let leader = matches!(kind, ChildKind::Leader(_));
    if let Some(id) = id {
        let mut s = state();
        match kind {
            ChildKind::Leader(token) => {
                s.leaders.insert(id, token.number);
            }
            ChildKind::Other => {
                s.others.insert(id);
            }
        }
    }
    Ok((child, Registration { pid: id, leader }))
}

/// Runs `spawn` while no task's mark is in force, and nothing more: [`spawn_apart`] is what a
/// child of this process in a group of its own needs; this is for a child left unregistered on
/// purpose (a test of how the sweeper treats such a one).
pub fn unmarked<T>(spawn: impl FnOnce() -> T) -> T {
    let _marking = MARKING.lock().unwrap_or_else(|e| e.into_inner());
    spawn()
}

/// Spawns a child that this process puts in a process group or session of its own and waits
/// for itself (`timeout`, `setsid`, a pseudo-terminal's shell): registered, so the sweeper never
/// takes it for an orphan, and spawned clear of any task's mark, which a spawn beside a marking
/// one would inherit (see [`with_mark`]).
pub fn spawn_apart<C, E>(
    spawn: impl FnOnce() -> Result<C, E>,
    pid: impl FnOnce(&C) -> Option<u32>,
) -> Result<(C, Registration), E> {
    // The registry's gate first, then the mark, in the order a task's spawn takes them.
    spawn_registered(ChildKind::Other, || unmarked(spawn), pid)
}

/// Makes this process adopt the orphans of its tasks and starts the sweeper that reaps them
/// and stops what ended tasks left behind (after `grace`, SIGKILL). Call it once, from the
/// runtime, in a process that runs a principal; later calls do nothing.
///
/// Returns a warning when the process cannot be a subreaper: escaped processes then go to init
/// as before, and only orphans that are this process's own children are handled.
pub fn adopt(grace: Duration) -> Option<String> {
    if SWEEPER.get().is_some() {
        return None;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Some("orphans of tasks are not adopted: no async runtime to sweep them".into());
    };
    let warning = nix::sys::prctl::set_child_subreaper(true).err().map(|e| {
        format!(
            "cannot make this process a child subreaper ({e}): processes that a task starts \
             with setsid may outlive it"
        )
    });
    let sweeper = Sweeper {
        wake: Notify::new(),
        ended_at: Mutex::new(None),
    };
    if SWEEPER.set(sweeper).is_ok() {
        runtime.spawn(sweep_loop(grace));
    }
    warning
}

/// The sweeper's wake-up calls.
struct Sweeper {
    wake: Notify,
    /// When a task last ended.
    ended_at: Mutex<Option<Instant>>,
}

impl Sweeper {
    fn task_ended(&self) {
        *self.ended_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.wake.notify_one();
    }

    fn recently_ended(&self) -> bool {
        self.ended_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < AFTER_END)
    }
}

async fn sweep_loop(grace: Duration) {
    let Some(sweeper) = SWEEPER.get() else { return };
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch SIGCHLD ({e}); orphans are reaped once a second");
            None
        }
    };
    let mut orphans = Orphans::default();
    loop {
        let every = if orphans.stopping.is_empty() && !sweeper.recently_ended() {
            IDLE_SWEEP
        } else {
            BUSY_SWEEP
        };
        tokio::select! {
            () = sweeper.wake.notified() => {}
            () = tokio::time::sleep(every) => {}
            Some(()) = async {
                match sigchld.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        sweep(&mut orphans, grace);
        // Coalesce bursts: thousands of tasks a second end with as many SIGCHLDs, and a pass
        // reads /proc once per thread of this process.
        tokio::time::sleep(BUSY_SWEEP).await;
    }
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub session: i32,
}

/// Parses `/proc/PID/stat`; the command name in parentheses may contain anything.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(") ")?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgid,
        session,
    })
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The value of [`TOKEN_ENV`] in a process's initial environment.
pub(crate) fn token_of(pid: i32) -> Option<String> {
    use std::io::Read;
    let mut environ = Vec::new();
    std::fs::File::open(format!("/proc/{pid}/environ"))
        .ok()?
        .take(MAX_ENVIRON)
        .read_to_end(&mut environ)
        .ok()?;
    let key = format!("{TOKEN_ENV}=");
    environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(key.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The soft `RLIMIT_LOCKS` of a process (`None` when unlimited or unreadable): the mark of the
/// task it descends from, if it has one.
pub(crate) fn mark_of(pid: i32) -> Option<u64> {
    use std::io::Read;
    let mut limits = String::new();
    std::fs::File::open(format!("/proc/{pid}/limits"))
        .ok()?
        .take(MAX_LIMITS)
        .read_to_string(&mut limits)
        .ok()?;
    parse_locks_limit(&limits)
}

/// The soft limit on the `Max file locks` line of a `/proc/PID/limits` text.
fn parse_locks_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max file locks"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The number of the task of `instance` that `pid` descends from: by the token in its
/// environment, or, when that was cleared, by the mark in its limits.
pub(crate) fn owner(pid: i32, instance: &str) -> Option<u64> {
    token_of(pid)
        .and_then(|t| token_number(&t, instance))
        .or_else(|| mark_of(pid).and_then(|m| mark_number(m, instance)))
}

/// The children of this process: every thread's `children` list, or, on kernels without
/// those, every process whose parent is this one.
/// This process's session id.
fn my_session() -> i32 {
    nix::unistd::getsid(None).map(|s| s.as_raw()).unwrap_or(-1)
}

fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let mut listed = false;
    if let Ok(threads) = std::fs::read_dir("/proc/self/task") {
        for t in threads.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                listed = true;
                found.extend(
                    list.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    if !listed && let Ok(procs) = std::fs::read_dir("/proc") {
        found.extend(
            procs
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == me)),
        );
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// What the sweeper remembers between passes.
#[derive(Default)]
struct Orphans {
    /// Orphans sent SIGTERM, with when SIGKILL is due.
    stopping: HashMap<i32, Instant>,
    /// Orphans with neither a token nor a mark of ours (a task cleared its environment and
    /// changed its limits), with the tasks that were running when each was first seen: it came from one of those, or from one that had
    /// already ended, so once all of them have ended, its own task has too.
    untokened: HashMap<i32, HashSet<u64>>,
}

/// Whether a live orphan's task has ended: by its token or mark, or, without either, once every
/// task that was running when it was first seen has ended. As PID 1 an orphan without our token
/// or mark may come from anywhere in the container, so only those count there. Nor does a
/// child without either that leads its own group in this process's session: that is what code
/// of this process starts through `timeout` or `setpgid` (a test binary hosting the executor
/// beside its own children), and a task's descendant would have to clear its environment,
/// change its mark and make itself a group, all three, to look like one.
fn task_ended(
    pid: i32,
    st: &Stat,
    live: &HashSet<u64>,
    untokened: &mut HashMap<i32, HashSet<u64>>,
) -> bool {
    match owner(pid, instance()) {
        Some(n) => !live.contains(&n),
        None if std::process::id() == 1 => false,
        None if st.pgid == pid && st.session == my_session() => false,
        None => untokened
            .entry(pid)
            .or_insert_with(|| live.clone())
            .is_disjoint(live),
    }
}

/// One pass: reaps exited orphans and stops live ones whose task has ended.
fn sweep(orphans: &mut Orphans, grace: Duration) {
    let (children, leaders, others) = {
        let _gate = REGISTRY.gate.write().unwrap_or_else(|e| e.into_inner());
        let s = state();
        (children(), s.leaders.clone(), s.others.clone())
    };
    let live: HashSet<u64> = leaders.values().copied().collect();
    let my_group = nix::unistd::getpgrp().as_raw();
    let now = Instant::now();
    let mut seen = HashSet::new();
    for pid in children {
        if pid <= 1 || leaders.contains_key(&(pid as u32)) || others.contains(&(pid as u32)) {
            continue;
        }
        let Some(st) = stat(pid) else { continue };
        if st.pgid == my_group {
            continue; // spawned plainly by code of this process, which waits for it
        }
        if st.state == 'Z' {
            // An orphan, so ours to wait for; by pid, never -1 (see the module docs).
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            continue;
        }
        seen.insert(pid);
        if !task_ended(pid, &st, &live, &mut orphans.untokened) {
            continue; // its task still runs, or it is not from one of ours (PID 1)
        }
        // Its own group (it ran setsid) holds what it started; a group of a live leader is
        // never signalled.
        let group = (st.pgid > 1 && !leaders.contains_key(&(st.pgid as u32)))
            .then(|| Pid::from_raw(st.pgid));
        match orphans.stopping.get(&pid) {
            None => {
                tracing::info!(pid, "stopping a process left behind by an ended task");
                if let Some(g) = group {
                    let _ = killpg(g, Signal::SIGTERM);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                orphans.stopping.insert(pid, now + grace);
            }
            Some(&due) if due <= now => {
                tracing::warn!(
                    pid,
                    "a process left behind by an ended task ignored SIGTERM"
                );
                if let Some(g) = group {
                    let _ = killpg(g, Signal::SIGKILL);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Some(_) => {}
        }
    }
    orphans.stopping.retain(|pid, _| seen.contains(pid));
    orphans.untokened.retain(|pid, _| seen.contains(pid));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let s = parse_stat("42 (a) b) (c) S 7 42 42 0 -1 4194560").expect("parsed");
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 7,
                pgid: 42,
                session: 42
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn marks_name_the_token_of_this_instance_only() {
        let t = Token::next();
        assert_eq!(mark_number(t.mark(), instance()), Some(t.number));
        assert_ne!(t.mark(), nix::sys::resource::RLIM_INFINITY);
        let other = if instance() == "0000000000000000" {
            "0000000000000001"
        } else {
            "0000000000000000"
        };
        assert_eq!(mark_number(t.mark(), other), None);
        assert_eq!(mark_number(0, instance()), None);
    }

    #[test]
    fn the_locks_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max file locks            9876543210           unlimited            locks     \n";
        assert_eq!(parse_locks_limit(text), Some(9_876_543_210));
        let unlimited =
            "Max file locks            unlimited            unlimited            locks\n";
        assert_eq!(parse_locks_limit(unlimited), None);
    }

    #[test]
    fn a_spawned_child_inherits_the_mark_and_this_process_keeps_its_limit() {
        use nix::sys::resource::{Resource, getrlimit};
        // Read while no spawn of another test holds a mark in this process's limit.
        let limit = || {
            let _marking = MARKING.lock().unwrap_or_else(|e| e.into_inner());
            getrlimit(Resource::RLIMIT_LOCKS).expect("getrlimit")
        };
        let before = limit();
        let t = Token::next();
        let mut child = with_mark(&t, || {
            std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .expect("spawn sleep")
        });
        assert_eq!(limit(), before);
        let pid = child.id() as i32;
        let mark = mark_of(pid);
        let _ = child.kill();
        let _ = child.wait();
        if before.1 == nix::sys::resource::RLIM_INFINITY {
            assert_eq!(mark, Some(t.mark()));
            assert_eq!(
                mark.and_then(|m| mark_number(m, instance())),
                Some(t.number)
            );
        }
    }

    #[test]
    fn tokens_of_other_instances_are_not_ours() {
        let t = Token::next();
        assert_eq!(token_number(t.value(), instance()), Some(t.number));
        assert_eq!(token_number("0123456789abcdef-5", "fedcba9876543210"), None);
        assert_eq!(token_number(&format!("{}-x", instance()), instance()), None);
    }
}
