//! `kind: monitor` documents: their YAML shape (`raw`), the checks of one document (`check`),
//! targets as a compact table (`targets`, `tstr`), and the set of every monitor loaded with
//! the checks across files (`set`).
//!
//! A fleet (`targets:`) is kept as one template plus its table of targets; a
//! [`MonitorView`] renders a monitor's strings from its row when they are asked for, so a
//! million monitors cost their target text and a few integers each.

pub(super) mod check;
pub(super) mod raw;
mod rules;
mod set;
pub(super) mod targets;
mod tstr;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Location;

use crate::monitor::condition::Condition;
use crate::protocol::check::{DnsRecord, HttpMethod, PushProbe};
use crate::spec::types::Schedule;

pub use set::{MonitorId, MonitorSet, MonitorView, Names, build};
use targets::Table;
use tstr::TStr;

/// Consecutive results before a monitor's state flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failed results in a row before it is unhealthy (default 3).
    pub unhealthy_after: u32,
    /// Passed results in a row before it is healthy again (default 2).
    pub healthy_after: u32,
}

/// A maintenance window: from each time `schedule` fires, for `duration`.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    /// When a window opens (cron, optional time zone).
    pub schedule: Schedule,
    /// How long it stays open.
    pub duration: Duration,
}

/// The monitors of one document, checked on their own (names used by `depends_on`,
/// `restart:` and `run:` are looked up once every file is read).
#[derive(Debug, Clone)]
pub struct MonitorDoc {
    pub(super) file: PathBuf,
    pub(super) groups: Vec<Group>,
    /// The first monitor's name (a fleet's rendered for its first target).
    pub(super) first_name: String,
}

impl MonitorDoc {
    /// The first monitor's name (a fleet's rendered for its first target).
    pub fn name(&self) -> &str {
        &self.first_name
    }

    /// How many monitors the document holds.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.table.len()).sum()
    }

    /// True when it holds none (every target was refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file it was read from.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }
}

/// One monitor template and its targets (one row without columns for a plain monitor).
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) def: MonitorDef,
    pub(super) table: Table,
}

/// A checked monitor whose strings may read target columns.
#[derive(Debug, Clone)]
pub(super) struct MonitorDef {
    pub(super) file: PathBuf,
    pub(super) name: TStr,
    pub(super) description: Option<String>,
    pub(super) every: Duration,
    pub(super) timeout: Duration,
    pub(super) probe: ProbeDef,
    pub(super) conditions: Vec<Condition>,
    pub(super) degraded_when: Vec<Condition>,
    pub(super) thresholds: Thresholds,
    pub(super) depends_on: Vec<(TStr, Location)>,
    pub(super) maintenance: Vec<MaintenanceWindow>,
    pub(super) tags: Vec<TStr>,
    pub(super) from: Vec<BTreeMap<String, String>>,
    pub(super) quorum: u32,
    /// `on_unhealthy`, `on_degraded`, `on_recovered`, each with where it is written.
    pub(super) interventions: [Vec<(InterventionDef, Location)>; 3],
}

/// A [`crate::protocol::check::Probe`] whose strings may read target columns.
#[derive(Debug, Clone)]
pub(super) enum ProbeDef {
    Http {
        url: TStr,
        method: HttpMethod,
        headers: Vec<(String, TStr)>,
        body: Option<TStr>,
        follow_redirects: bool,
        insecure_skip_verify: bool,
        client_cert: Option<(PathBuf, PathBuf)>,
        max_body: u64,
    },
    Tcp {
        host: TStr,
        port: PortDef,
        send: Option<TStr>,
        expect: Option<TStr>,
    },
    Tls {
        host: TStr,
        port: PortDef,
    },
    Dns {
        server: Option<TStr>,
        name: TStr,
        record: DnsRecord,
    },
    Icmp {
        host: TStr,
        count: u8,
    },
    Command {
        run: RunDef,
        env: Vec<(String, TStr)>,
        cwd: Option<TStr>,
        max_output: usize,
    },
    Push(PushProbe),
    Workflow {
        name: TStr,
        succeeded_within: Duration,
    },
}

/// A port written as a number, or read from a target column.
#[derive(Debug, Clone)]
pub(super) enum PortDef {
    Fixed(u16),
    Column(TStr),
}

/// A command as a shell string or an argv list.
#[derive(Debug, Clone)]
pub(super) enum RunDef {
    Shell(TStr),
    Argv(Vec<TStr>),
}

/// An [`crate::protocol::monitor::InterventionSpec`] whose strings may read target columns.
#[derive(Debug, Clone)]
pub(super) struct InterventionDef {
    pub(super) action: ActionDef,
    pub(super) cooldown: Duration,
    pub(super) max_attempts: u32,
}

/// An [`crate::protocol::monitor::Action`] whose strings may read target columns.
#[derive(Debug, Clone)]
pub(super) enum ActionDef {
    Restart(TStr),
    Run {
        workflow: TStr,
        params: Vec<(String, TStr)>,
    },
    Command {
        run: RunDef,
        env: Vec<(String, TStr)>,
        cwd: Option<TStr>,
        timeout: Duration,
    },
    Webhook {
        url: TStr,
        headers: Vec<(String, TStr)>,
        timeout: Duration,
        retries: u32,
    },
}

#[cfg(test)]
mod tests;
