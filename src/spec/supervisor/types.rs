//! Validated `kind: supervisor` specs: a tree of services and nested supervisors, every
//! nesting by name already resolved (names exist, no cycles, each document used once).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::spec::template::Template;
use crate::spec::types::{Backoff, CommandSpec};

/// A validated supervisor: a `kind: supervisor` document or a supervisor written inline as a
/// child of another.
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    /// The supervisor's name (unique among documents; among its siblings when inline).
    pub name: String,
    /// Free-form description shown in listings.
    pub description: Option<String>,
    /// File the supervisor was read from.
    pub file: PathBuf,
    /// How the failure of one child affects its siblings.
    pub strategy: Strategy,
    /// More than this many restarts within `period` make the supervisor give up.
    pub intensity: u32,
    /// The sliding window `intensity` is counted over.
    pub period: Duration,
    /// Whether the exit of significant children shuts the supervisor down.
    pub auto_shutdown: AutoShutdown,
    /// Children in start order (stopped in reverse).
    pub children: Vec<ChildSpec>,
    /// The document supervisor whose tree holds this one (`None`: a root, started on its own).
    pub used_by: Option<String>,
}

/// Equal supervisors supervise alike: what it is called, where it was read from and who
/// uses it do not matter to a hot reload.
impl PartialEq for SupervisorSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.strategy == other.strategy
            && self.intensity == other.intensity
            && self.period == other.period
            && self.auto_shutdown == other.auto_shutdown
            && self.children == other.children
    }
}

impl SupervisorSpec {
    /// True for a supervisor no other supervisor uses as a child: it is started on its own.
    pub fn is_root(&self) -> bool {
        self.used_by.is_none()
    }
}

/// One child of a supervisor, with the properties its supervisor applies to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    /// Name, unique among its siblings; path-safe (no `/`), so `web/api` names it.
    pub name: String,
    /// When the child is restarted after it exits.
    pub restart: Restart,
    /// Its exit on its own may shut its supervisor down (see [`AutoShutdown`]).
    pub significant: bool,
    /// A service or a nested supervisor.
    pub kind: ChildKind,
}

/// What a child is.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildKind {
    /// A long-running process.
    Service(Arc<ServiceSpec>),
    /// A nested supervisor (written inline or a `kind: supervisor` document used by name).
    Supervisor(Arc<SupervisorSpec>),
}

/// A long-running process a supervisor keeps up. Templates render `{{ task.name }}` as the
/// service's name and `{{ run.id }}` as its start number; there are no `params` here.
///
/// Equal specs start the same process: a hot reload keeps a service whose spec is equal.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// What to execute.
    pub run: CommandSpec,
    /// Extra environment variables (values are templates).
    pub env: BTreeMap<String, Template>,
    /// Working directory, relative paths resolved against the directory the command runs in.
    pub cwd: Option<PathBuf>,
    /// Delay before each restart after a crash.
    pub backoff: Backoff,
    /// Uptime after which a crash counts as the first one again (backoff from `initial`).
    pub stable_after: Duration,
    /// Most bytes of output stored per start; the lines past it are counted, not stored.
    pub max_output: u64,
    /// How to tell that the service is ready (`None`: as soon as it has been spawned).
    pub ready: Option<Readiness>,
    /// How the service is stopped.
    pub stop: StopPolicy,
}

/// Default backoff of a service: quick first restart, capped at 30 s, no jitter (restarts
/// of one service are spaced already; jitter is for many at once and can be asked for).
pub const SERVICE_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(30),
    multiplier: 2.0,
    jitter: false,
};

/// Default `stable_after` of a service.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(30);
/// Default readiness `timeout`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default stop `grace` before SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Default `intensity` of a supervisor (gentler than OTP's 1: these are OS processes).
pub const DEFAULT_INTENSITY: u32 = 5;
/// Default `period` of a supervisor.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30);

/// A readiness probe and how long to wait for it to pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// What must succeed.
    pub probe: ReadyProbe,
    /// Not ready within this long after the spawn counts as a crash.
    pub timeout: Duration,
}

/// The ways a service can be seen to be ready.
#[derive(Debug, Clone)]
pub enum ReadyProbe {
    /// A TCP connection to `host:port` is accepted.
    Tcp {
        /// Host name or address (brackets of an IPv6 literal removed).
        host: String,
        /// Port, 1-65535.
        port: u16,
    },
    /// A GET of the `http://` or `https://` URL answers 2xx.
    Http {
        /// The URL as written.
        url: String,
    },
    /// The command exits 0.
    Command(CommandSpec),
    /// A line of the service's output matches.
    Log(regex::Regex),
    /// The service writes `READY=1` to the socket named by `$NOTIFY_SOCKET` (sd_notify).
    Notify,
}

/// Equal probes check the same thing (regexes by their source, `Regex` has no `PartialEq`).
impl PartialEq for ReadyProbe {
    fn eq(&self, other: &Self) -> bool {
        use ReadyProbe::*;
        match (self, other) {
            (Tcp { host: h1, port: p1 }, Tcp { host: h2, port: p2 }) => h1 == h2 && p1 == p2,
            (Http { url: a }, Http { url: b }) => a == b,
            (Command(a), Command(b)) => a == b,
            (Log(a), Log(b)) => a.as_str() == b.as_str(),
            (Notify, Notify) => true,
            _ => false,
        }
    }
}

/// How a service is stopped: `signal` to its process group, SIGKILL after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StopPolicy {
    /// The first signal sent.
    pub signal: StopSignal,
    /// How long to wait for the exit before SIGKILL.
    pub grace: Duration,
}

impl Default for StopPolicy {
    fn default() -> Self {
        Self {
            signal: StopSignal::Term,
            grace: DEFAULT_GRACE,
        }
    }
}

/// Signals a service may be asked to stop with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StopSignal {
    /// SIGTERM (the default).
    #[default]
    Term,
    /// SIGINT.
    Int,
    /// SIGHUP.
    Hup,
    /// SIGQUIT.
    Quit,
    /// SIGKILL (no grace is possible).
    Kill,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
}

impl StopSignal {
    /// Every signal with its name as written without `SIG`.
    pub const ALL: [(&'static str, StopSignal); 7] = [
        ("TERM", StopSignal::Term),
        ("INT", StopSignal::Int),
        ("HUP", StopSignal::Hup),
        ("QUIT", StopSignal::Quit),
        ("KILL", StopSignal::Kill),
        ("USR1", StopSignal::Usr1),
        ("USR2", StopSignal::Usr2),
    ];

    /// The signal's number on this platform.
    pub fn number(self) -> i32 {
        match self {
            StopSignal::Term => libc::SIGTERM,
            StopSignal::Int => libc::SIGINT,
            StopSignal::Hup => libc::SIGHUP,
            StopSignal::Quit => libc::SIGQUIT,
            StopSignal::Kill => libc::SIGKILL,
            StopSignal::Usr1 => libc::SIGUSR1,
            StopSignal::Usr2 => libc::SIGUSR2,
        }
    }
}

/// OTP restart strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the crashed child is restarted.
    #[default]
    OneForOne,
    /// Every child is stopped (in reverse order) and all are started again (in order).
    OneForAll,
    /// The crashed child and every child after it are stopped and started again.
    RestForOne,
}

/// OTP restart types of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always restarted.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (a stop the supervisor asked for is normal).
    Transient,
    /// Never restarted, not even when its siblings are.
    Temporary,
}

/// When significant children shut their supervisor down (OTP's `auto_shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoShutdown {
    /// Never; `significant` is not allowed.
    #[default]
    Never,
    /// As soon as one significant child exits on its own and is not restarted.
    AnySignificant,
    /// Once every significant child has exited on its own and is not restarted.
    AllSignificant,
}
