//! How a face gets a principal: finds the one that owns a data dir, if one is running (and
//! tells "none is running" from "one is running but does not answer"), or starts one in-process.
//! The CLI commands and the console both come through here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::protocol::api::ClientExt;
use crate::protocol::zmq::{Endpoints, ZmqClient};

/// How long a command waits for a principal's answer before deciding it does not answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time limit of ordinary requests once connected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command that reads the history file waits for a principal that holds it while
/// starting (opening the file, then listening).
pub const STARTING_WAIT: Duration = Duration::from_secs(10);

/// Name of the file in the data dir that a starting principal writes its pid to, removed
/// once it listens: tells readers that the writer holding the file will soon answer.
const STARTING_FILE: &str = "principal.starting";

/// What is found at a data dir's socket.
pub enum Found {
    /// A principal answered.
    Running {
        /// Connected with the ordinary request timeout.
        client: ZmqClient,
        /// Its process id.
        pid: u32,
    },
    /// Nothing listens: no principal runs for this data dir.
    Absent,
    /// Something listens but no answer came within the probe's time.
    NotAnswering(NotAnswering),
}

/// A principal that listens but does not answer (saturated, stopped, or its engine gone).
#[derive(Debug, Clone)]
pub struct NotAnswering {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The process holding the history file, when it can be told.
    pub pid: Option<i32>,
    /// What the probe got.
    pub why: String,
    /// It answered that it is shutting down (stopping its services): not stuck.
    pub shutting_down: bool,
}

impl std::fmt::Display for NotAnswering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = self.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        if self.shutting_down {
            return write!(
                f,
                "the principal{pid} for {} is shutting down: it is stopping its services and \
                 tasks (another Ctrl-C or SIGTERM to it kills what is left at once). Try again \
                 once it has stopped, or then start a new one with `opsconsole principal`",
                self.data_dir.display()
            );
        }
        let stop = self
            .pid
            .map(|p| format!("`kill {p}`"))
            .unwrap_or_else(|| "stop it".into());
        write!(
            f,
            "a principal{pid} is running for {} but is not answering ({}): it may be saturated \
             or stuck. Try again in a moment; if it stays like this, look at its output, or \
             {stop} and start a new one with `opsconsole principal`",
            self.data_dir.display(),
            self.why
        )
    }
}

/// A principal elsewhere that every command talks to instead of the data dir's
/// (`--principal ENDPOINT`, with `--server-key` and `--key` for CURVE).
#[derive(Debug, Clone)]
pub struct Remote {
    /// Its requests endpoint.
    pub endpoint: String,
    /// CURVE, for a CURVE endpoint.
    pub curve: Option<crate::protocol::zmq::keys::CurveSecurity>,
}

/// Set once by `main` from the global flags, before any command runs: every face finds its
/// principal through [`find_principal`], so one place decides for all of them.
static REMOTE: std::sync::OnceLock<Remote> = std::sync::OnceLock::new();

/// Makes [`find_principal`] (and so every command) use the principal at `remote`.
pub fn set_remote(remote: Remote) {
    let _ = REMOTE.set(remote);
}

/// The principal at `remote`: running if it answers, otherwise not answering (never absent,
/// so that no command falls back to this machine's data dir).
async fn find_remote(remote: &Remote, data_dir: &Path, request_timeout: Duration) -> Found {
    let not_answering = |why: String| {
        Found::NotAnswering(NotAnswering {
            data_dir: data_dir.to_path_buf(),
            pid: None,
            why,
            shutting_down: false,
        })
    };
    let endpoints = match Endpoints::from_listen(&remote.endpoint) {
        Ok(e) => e,
        Err(e) => return not_answering(format!("--principal {}: {e}", remote.endpoint)),
    };
    let endpoints = &endpoints;
    let connect = |timeout| async move {
        match &remote.curve {
            Some(curve) => ZmqClient::connect_curve(endpoints, timeout, curve.clone()).await,
            None => ZmqClient::connect(endpoints, timeout).await,
        }
    };
    let probe = match connect(PROBE_TIMEOUT * 5).await {
        Ok(p) => p,
        Err(e) => return not_answering(e.to_string()),
    };
    match probe.status().await {
        Ok(status) => match connect(request_timeout).await {
            Ok(client) => Found::Running {
                client,
                pid: status.pid,
            },
            Err(e) => not_answering(e.to_string()),
        },
        Err(e) => not_answering(e.to_string()),
    }
}

/// Looks for the principal of `data_dir` (or the one of `--principal`); a client found uses
/// `request_timeout`.
pub async fn find_principal(data_dir: &Path, request_timeout: Duration) -> Found {
    if let Some(remote) = REMOTE.get() {
        return find_remote(remote, data_dir, request_timeout).await;
    }
    let endpoints = Endpoints::for_data_dir(data_dir);
    let Some(socket) = socket_file(&endpoints.requests) else {
        return Found::Absent;
    };
    // A socket file nobody listens on (left by a crash) refuses at once; without this check
    // every command would wait out the probe timeout.
    let listening = || std::os::unix::net::UnixStream::connect(socket).is_ok();
    if !Path::new(socket).exists() || !listening() {
        return Found::Absent;
    }
    let answer = |why: String, shutting_down: bool| {
        Found::NotAnswering(NotAnswering {
            data_dir: data_dir.to_path_buf(),
            pid: lock_holder(data_dir).map(|h| h.pid()),
            why,
            shutting_down,
        })
    };
    let not_answering = |why: String| answer(why, false);
    let probe = match ZmqClient::connect(&endpoints, PROBE_TIMEOUT).await {
        Ok(p) => p,
        Err(e) => return not_answering(e.to_string()),
    };
    match probe.status().await {
        Ok(status) => {
            drop(probe);
            match ZmqClient::connect(&endpoints, request_timeout).await {
                Ok(client) => Found::Running {
                    client,
                    pid: status.pid,
                },
                Err(e) => not_answering(e.to_string()),
            }
        }
        // It answers every request so while it stops its services.
        Err(crate::protocol::api::ClientError::Api(e))
            if e.kind == crate::protocol::api::ApiErrorKind::Unavailable =>
        {
            answer(e.message, true)
        }
        // A principal that stopped meanwhile removed its socket or stopped listening.
        Err(_) if !Path::new(socket).exists() || !listening() => Found::Absent,
        Err(e) => not_answering(e.to_string()),
    }
}

/// A client of the principal running for `data_dir`, or `None` when none answers.
pub async fn running_principal(data_dir: &Path) -> Option<ZmqClient> {
    match find_principal(data_dir, REQUEST_TIMEOUT).await {
        Found::Running { client, .. } => Some(client),
        Found::Absent | Found::NotAnswering(_) => None,
    }
}

/// Who holds the lock of the history file. DuckDB locks the whole file with `fcntl`: shared
/// for a reader, exclusive for a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A read-only reader (`history` or `logs` without a principal).
    Reader(i32),
    /// A writer: a principal, or an embedded one (`run`, `retry`, the console).
    Writer(i32),
}

impl Holder {
    /// The holder's process id.
    pub fn pid(self) -> i32 {
        match self {
            Holder::Reader(p) | Holder::Writer(p) => p,
        }
    }
}

/// The process holding the history file's lock, if any.
///
/// Only for a process that has not opened the history file itself: closing any descriptor of
/// a file drops every `fcntl` lock the process holds on it, DuckDB's included.
pub fn lock_holder(data_dir: &Path) -> Option<Holder> {
    let file = std::fs::File::open(crate::store::db_path(data_dir)).ok()?;
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETLK(&mut lock)).ok()?;
    match i32::from(lock.l_type) {
        libc::F_UNLCK => None,
        libc::F_RDLCK => Some(Holder::Reader(lock.l_pid)),
        _ => Some(Holder::Writer(lock.l_pid)),
    }
}

/// Marks the data dir as having a principal on its way (see [`STARTING_FILE`]); the mark is
/// removed when the returned guard is dropped.
pub fn mark_starting(data_dir: &Path) -> StartingMark {
    let path = data_dir.join(STARTING_FILE);
    let pid = std::process::id();
    let written = std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&path, format!("{pid}\n")))
        .is_ok();
    StartingMark {
        path: written.then_some(path),
        pid,
    }
}

/// Removes the starting mark, if it is still this process's.
pub struct StartingMark {
    path: Option<PathBuf>,
    pid: u32,
}

impl Drop for StartingMark {
    fn drop(&mut self) {
        if let Some(path) = &self.path
            && starting_pid(path) == Some(self.pid as i32)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn starting_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// What a command that reads the history file should do when it cannot open it.
pub enum Reading {
    /// Read it through this principal (its pid), which started meanwhile.
    Principal(ZmqClient, u32),
    /// The file is free again (or held by someone who will not answer): try opening it.
    File,
    /// A principal listens but does not answer.
    NotAnswering(NotAnswering),
}

/// After opening the history file failed: if a principal holds it while starting, waits (up to
/// [`STARTING_WAIT`]) until it answers or lets go of the file. Any other holder is not waited
/// for: the caller reports its open error.
pub async fn await_starting_principal(data_dir: &Path, request_timeout: Duration) -> Reading {
    let until = Instant::now() + STARTING_WAIT;
    let mark = data_dir.join(STARTING_FILE);
    loop {
        match lock_holder(data_dir) {
            None => return Reading::File,
            // A reader never blocks another reader; nothing to wait for.
            Some(Holder::Reader(_)) => return Reading::File,
            Some(Holder::Writer(pid)) => {
                let starting = starting_pid(&mark) == Some(pid);
                match find_principal(data_dir, request_timeout).await {
                    Found::Running { client, pid } => return Reading::Principal(client, pid),
                    // A `run` or a console holds it: its open error names it.
                    Found::Absent if !starting => return Reading::File,
                    Found::NotAnswering(n) if !starting => return Reading::NotAnswering(n),
                    Found::Absent | Found::NotAnswering(_) => {}
                }
            }
        }
        if Instant::now() >= until {
            return Reading::File;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The path of an `ipc://` endpoint.
pub fn socket_file(endpoint: &str) -> Option<&str> {
    endpoint.strip_prefix("ipc://")
}

/// Removes the socket files of `endpoints` (on a clean stop, so that later commands do not
/// try to reach a principal that is gone).
pub fn remove_socket_files(endpoints: &Endpoints) {
    let agents = Endpoints::agents_for(&endpoints.requests);
    for e in [&endpoints.requests, &endpoints.events, &agents] {
        if let Some(path) = socket_file(e) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Paths every command works from.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Where workflow specs are read.
    pub workflows: std::path::PathBuf,
    /// Where history and runtime files live.
    pub data: std::path::PathBuf,
}

/// Starts an in-process principal over the data dir, printing spec problems: all of them when
/// `needed` names a workflow that did not load, otherwise a one-line warning. A `one_off`
/// principal serves one command's run only (see [`crate::principal::PrincipalConfig`]).
/// Fails when the history file cannot be opened for writing.
pub fn start_embedded(
    dirs: &Dirs,
    slots: usize,
    kill_grace: std::time::Duration,
    needed: Option<&str>,
    one_off: bool,
    agent_heartbeat: std::time::Duration,
) -> Result<crate::principal::PrincipalHandle, crate::store::StoreError> {
    let (catalog, problems) = crate::spec::load_dir(&dirs.workflows);
    let missing = needed.is_some_and(|n| catalog.get(n).is_none());
    if missing {
        for p in &problems {
            crate::tell!("{p}\n");
        }
    } else if !problems.is_empty() {
        crate::tell!(
            "warning: {} problem(s) in workflow files; `opsconsole validate` lists them",
            problems.len()
        );
    }
    let (store, recovered) = open_store(&dirs.data)?;
    // This process now runs tasks: it adopts what they leave behind (see `agent::orphans`).
    if let Some(warning) = crate::agent::orphans::adopt(kill_grace) {
        tracing::warn!("{warning}");
    }
    let workdir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    Ok(crate::principal::PrincipalHandle::start(
        catalog,
        store,
        recovered,
        crate::principal::PrincipalConfig {
            slots,
            kill_grace,
            workdir,
            workflows_dir: Some(dirs.workflows.clone()),
            spec_problems: problems,
            watchdog: true,
            one_off,
            agent_heartbeat,
        },
    ))
}

/// How long a principal waits for commands that read the history file (`history`, `logs`
/// without a principal) to let go of it.
const READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store for writing. Readers are short-lived, so while only readers hold the file
/// this retries (up to [`READERS_WAIT`]); a writer holding it is reported at once.
fn open_store(
    data_dir: &std::path::Path,
) -> Result<(crate::store::Store, crate::store::Recovered), crate::store::StoreError> {
    let until = std::time::Instant::now() + READERS_WAIT;
    loop {
        let err = match crate::store::Store::open(data_dir) {
            Ok(opened) => return Ok(opened),
            Err(e) => e,
        };
        // The failed open closed its descriptor, so this process holds no lock on the file
        // and may look at who does. A reader that has let go meanwhile (no holder now) is
        // worth another try as much as one still reading; only a writer is final.
        let locked = matches!(err, crate::store::StoreError::Open { locked: true, .. });
        let writer = matches!(lock_holder(data_dir), Some(Holder::Writer(_)));
        if !locked || writer || std::time::Instant::now() >= until {
            return Err(err);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
