//! Checks of one `kind: monitor` document, and the expansion of its targets. Names used
//! across files (`depends_on`, `restart:`, `run:`) are checked in `set.rs`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::raw::{
    List, MONITOR_KEYS, RawCheck, RawDoc, RawHostPort, RawHttp, RawIntervention, RawMonitor,
    RawTargets, RawWindow, Scalar,
};
use super::rules::Rule;
use super::targets::{self, MAX_CELL_BYTES, MAX_COLUMNS, MAX_TARGETS, Table};
use super::tstr::TStr;
use super::{
    ActionDef, Group, InterventionDef, MaintenanceWindow, MonitorDef, MonitorDoc, PortDef,
    ProbeDef, RunDef, Thresholds,
};
use crate::monitor::condition::Condition;
use crate::protocol::check::{DEFAULT_MAX_BODY, DnsRecord, HttpMethod, PushProbe};
use crate::spec::Diagnostic;
use crate::spec::check::Checker;
use crate::spec::limits::{
    MAX_ACTION_TIMEOUT, MAX_ATTEMPTS, MAX_BODY, MAX_CHECK_TIMEOUT, MAX_CONDITIONS, MAX_COOLDOWN,
    MAX_DEPENDS_ON, MAX_DESCRIPTION_BYTES, MAX_ENTRIES, MAX_EVERY, MAX_ICMP_COUNT,
    MAX_INTERVENTIONS, MAX_LATENESS, MAX_LISTED, MAX_LOCATIONS, MAX_SEND_BYTES, MAX_TAGS,
    MAX_THRESHOLD, MAX_WEBHOOK_RETRIES, MAX_WINDOW, MAX_WINDOWS, MIN_EVERY,
};
use crate::spec::raw::{OrderedMap, RawRun};
use crate::spec::source::Source;
use crate::spec::suggest::one_of;

/// `every` when not written.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);
/// `timeout` when not written (and at most half of `every`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `unhealthy_after` when not written.
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
/// `healthy_after` when not written.
pub const DEFAULT_HEALTHY_AFTER: u32 = 2;
/// `cooldown` of an intervention when not written.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
/// `max_attempts` of an intervention when not written.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// `timeout` of a command intervention when not written.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// `timeout` of a webhook when not written.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// `retries` of a webhook when not written.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;
/// Bad target rows reported one by one per template; the rest are counted.
const MAX_ROW_PROBLEMS: usize = 100;

/// What intervention parameters may leave for the principal to fill in.
const RUN_PARAM_REFS: &[&str] = &["monitor", "state", "cause", "incident"];

const CHECK_KINDS: &[&str] = &[
    "http", "tcp", "tls", "dns", "icmp", "command", "push", "workflow",
];

const METHODS: [(&str, HttpMethod); 7] = [
    ("GET", HttpMethod::Get),
    ("HEAD", HttpMethod::Head),
    ("POST", HttpMethod::Post),
    ("PUT", HttpMethod::Put),
    ("PATCH", HttpMethod::Patch),
    ("DELETE", HttpMethod::Delete),
    ("OPTIONS", HttpMethod::Options),
];

const RECORDS: [(&str, DnsRecord); 7] = [
    ("A", DnsRecord::A),
    ("AAAA", DnsRecord::Aaaa),
    ("CNAME", DnsRecord::Cname),
    ("MX", DnsRecord::Mx),
    ("TXT", DnsRecord::Txt),
    ("NS", DnsRecord::Ns),
    ("SOA", DnsRecord::Soa),
];

/// Validates a monitor document: the monitors that checked out (a fleet without its bad
/// target rows) and every problem found. `None` when nothing could be loaded.
pub fn check(src: &Source<'_>, doc: Spanned<RawDoc>) -> (Option<MonitorDoc>, Vec<Diagnostic>) {
    let start = doc.referenced;
    let raw = doc.value;
    let mut c = Checker::new(src, start);
    c.stray(&raw.stray, super::raw::ALL_DOC_KEYS);
    let mut groups = Vec::new();
    let mut row_diags = Vec::new();
    match &raw.monitors {
        Some(list) => {
            for (key, at) in &raw.body.keys {
                c.err(
                    at,
                    format!(
                        "`{key}` goes under `defaults:` or into each entry of `monitors:` in a \
                         file with `monitors:`"
                    ),
                );
            }
            let defaults = raw.defaults.as_ref().map(|d| {
                c.stray(&d.value.stray, MONITOR_KEYS);
                for (key, at) in &d.value.keys {
                    if matches!(*key, "name" | "targets") {
                        c.err(
                            at,
                            format!("`{key}` does not apply to `defaults:`: write it per monitor"),
                        );
                    }
                }
                &d.value
            });
            if list.value.is_empty() {
                c.err(
                    &list.referenced,
                    "`monitors` is empty: list at least one monitor",
                );
            } else if list.value.len() > MAX_LISTED {
                c.err(
                    &list.referenced,
                    format!(
                        "`monitors` has {} entries, more than the limit of {MAX_LISTED} per \
                         file: split it up, or use `targets:` for a fleet",
                        list.value.len()
                    ),
                );
            } else {
                for entry in &list.value {
                    c.stray(&entry.value.stray, MONITOR_KEYS);
                    let layer = Layer {
                        m: &entry.value,
                        d: defaults,
                    };
                    if let Some(g) = monitor(&mut c, layer, &entry.referenced, &mut row_diags) {
                        groups.push(g);
                    }
                }
            }
        }
        None => {
            if let Some(d) = &raw.defaults {
                c.err(
                    &d.referenced,
                    "`defaults:` applies only to a file with `monitors:` (a list of monitors)",
                );
            }
            let layer = Layer {
                m: &raw.body,
                d: None,
            };
            if let Some(g) = monitor(&mut c, layer, &start, &mut row_diags) {
                groups.push(g);
            }
        }
    }
    let mut diags = c.into_sorted();
    diags.append(&mut row_diags);
    let doc = (!groups.is_empty()).then(|| MonitorDoc {
        file: src.file().to_path_buf(),
        first_name: groups[0].def.name.render(groups[0].table.row(0)),
        groups,
    });
    (doc, diags)
}

/// A monitor's keys over the file's `defaults:`.
#[derive(Clone, Copy)]
struct Layer<'r> {
    m: &'r RawMonitor,
    d: Option<&'r RawMonitor>,
}

impl<'r> Layer<'r> {
    fn get<T: ?Sized>(&self, f: impl Fn(&'r RawMonitor) -> Option<&'r T>) -> Option<&'r T> {
        f(self.m).or_else(|| self.d.and_then(&f))
    }
}

/// A template string that must follow a rule once rendered for each target.
#[derive(Clone)]
struct RowCheck {
    t: TStr,
    rule: Rule,
    what: String,
}

/// Reads the templates of one monitor.
struct Strings<'k> {
    columns: &'k [Box<str>],
    pending: Vec<RowCheck>,
}

impl Strings<'_> {
    /// Parses `value` (written at `at`) as a template; a literal is checked against `rule`
    /// now, a template for every target later.
    fn read(
        &mut self,
        c: &mut Checker<'_>,
        what: &str,
        value: &str,
        at: &Location,
        rule: Option<Rule>,
        keep: &[&str],
    ) -> TStr {
        match TStr::parse(value, self.columns, keep) {
            Err(e) => {
                let d = c.src.value_diag(value, at, e.offset, e.message);
                c.diags.push(d);
                TStr::literal(value)
            }
            Ok(t) => {
                if let Some(rule) = rule {
                    match t.as_literal() {
                        Some(lit) => {
                            if let Err(why) = rule.check(lit) {
                                c.err(at, format!("`{what}` `{lit}` {why}"));
                            }
                        }
                        None => self.pending.push(RowCheck {
                            t: t.clone(),
                            rule,
                            what: what.to_string(),
                        }),
                    }
                }
                t
            }
        }
    }

    fn spanned(
        &mut self,
        c: &mut Checker<'_>,
        what: &str,
        raw: &Spanned<String>,
        rule: Option<Rule>,
    ) -> TStr {
        self.read(c, what, &raw.value, &raw.referenced, rule, &[])
    }
}

/// Where the rows of a monitor's targets come from.
enum Rows<'r> {
    /// No `targets:`: one monitor.
    One,
    /// Rows written in the document.
    List(&'r [Spanned<OrderedMap<Spanned<Scalar>>>]),
    /// A CSV file, read; the header is its line `header_line`.
    Csv {
        path: PathBuf,
        text: String,
        header_line: usize,
    },
}

/// Checks one monitor; `None` when it has problems (reported). Bad target rows are
/// reported into `row_diags` and left out.
fn monitor(
    c: &mut Checker<'_>,
    l: Layer<'_>,
    start: &Location,
    row_diags: &mut Vec<Diagnostic>,
) -> Option<Group> {
    let before = c.diags.len();
    let (columns, rows) = match &l.m.targets {
        Some(t) => targets(c, t)?,
        None => (Vec::new(), Rows::One),
    };
    let mut s = Strings {
        columns: &columns,
        pending: Vec::new(),
    };
    let name = match &l.m.name {
        None => {
            c.err(start, "missing required key `name`");
            TStr::literal("")
        }
        Some(n) => {
            let t = s.spanned(c, "name", n, Some(Rule::Name));
            if !matches!(rows, Rows::One) && t.as_literal().is_some() {
                c.err(
                    &n.referenced,
                    "with `targets:`, `name` must read a column, e.g. `name: \"web-{{ \
                     target.host }}\"`, so that every target's monitor has its own name",
                );
            }
            t
        }
    };
    let description = l.get(|m| m.description.as_ref()).map(|d| {
        if d.value.len() > MAX_DESCRIPTION_BYTES {
            c.err(
                &d.referenced,
                format!("`description` is longer than {MAX_DESCRIPTION_BYTES} bytes"),
            );
        }
        d.value.clone()
    });
    let every = match l.get(|m| m.every.as_ref()) {
        Some(e) => c
            .duration("every", e, MAX_EVERY)
            .and_then(|d| {
                if d < MIN_EVERY {
                    c.err(
                        &e.referenced,
                        format!(
                            "`every` `{}` is shorter than the least of 1s",
                            e.value.trim()
                        ),
                    );
                    return None;
                }
                Some(d)
            })
            .unwrap_or(DEFAULT_EVERY),
        None => DEFAULT_EVERY,
    };
    let timeout = match l.get(|m| m.timeout.as_ref()) {
        Some(t) => match c.duration("timeout", t, MAX_CHECK_TIMEOUT) {
            Some(d) if d.is_zero() => {
                c.err(&t.referenced, "`timeout` must be greater than 0");
                DEFAULT_TIMEOUT
            }
            Some(d) if d >= every => {
                c.err(
                    &t.referenced,
                    format!(
                        "`timeout` ({d:?}) must be shorter than `every` ({every:?}): a check \
                         ends before the next one starts"
                    ),
                );
                d
            }
            Some(d) => d,
            None => DEFAULT_TIMEOUT,
        },
        None => DEFAULT_TIMEOUT.min(every / 2),
    };
    let probe = match l.get(|m| m.check.as_ref()) {
        Some(raw) => probe(c, &mut s, raw),
        None => {
            c.err(
                start,
                format!(
                    "missing required key `check`: one of {}",
                    one_of(CHECK_KINDS)
                ),
            );
            None
        }
    };
    let conditions = match l.get(|m| m.conditions.as_ref()) {
        Some(list) if !list.value.is_empty() => parse_conditions(c, "conditions", list),
        _ => probe.as_ref().map(default_conditions).unwrap_or_default(),
    };
    let degraded_when = l
        .get(|m| m.degraded_when.as_ref())
        .map(|list| parse_conditions(c, "degraded_when", list))
        .unwrap_or_default();
    let threshold = |c: &mut Checker<'_>, what, raw: Option<&Spanned<u64>>, default| match raw {
        Some(r) if r.value == 0 => {
            c.err(&r.referenced, format!("`{what}` must be at least 1"));
            default
        }
        Some(r) => c.count(what, r, MAX_THRESHOLD).unwrap_or(default),
        None => default,
    };
    let thresholds = Thresholds {
        unhealthy_after: threshold(
            c,
            "unhealthy_after",
            l.get(|m| m.unhealthy_after.as_ref()),
            DEFAULT_UNHEALTHY_AFTER,
        ),
        healthy_after: threshold(
            c,
            "healthy_after",
            l.get(|m| m.healthy_after.as_ref()),
            DEFAULT_HEALTHY_AFTER,
        ),
    };
    let depends_on = l
        .get(|m| m.depends_on.as_ref())
        .and_then(|list| bounded(c, "depends_on", list, MAX_DEPENDS_ON))
        .map(|list| {
            list.iter()
                .map(|d| {
                    let t = s.spanned(c, "depends_on", d, Some(Rule::Name));
                    (t, d.referenced)
                })
                .collect()
        })
        .unwrap_or_default();
    let maintenance = l
        .get(|m| m.maintenance.as_ref())
        .and_then(|list| bounded(c, "maintenance", list, MAX_WINDOWS))
        .map(|list| list.iter().filter_map(|w| window(c, w)).collect())
        .unwrap_or_default();
    let tags = l
        .get(|m| m.tags.as_ref())
        .and_then(|list| bounded(c, "tags", list, MAX_TAGS))
        .map(|list| {
            list.iter()
                .map(|t| s.read(c, "tags", &t.value.0, &t.referenced, Some(Rule::Tag), &[]))
                .collect()
        })
        .unwrap_or_default();
    let from = l
        .get(|m| m.from.as_ref())
        .map(|list| locations(c, list))
        .unwrap_or_default();
    let quorum = match l.get(|m| m.quorum.as_ref()) {
        None => 1,
        Some(q) if from.is_empty() => {
            c.err(
                &q.referenced,
                "`quorum` needs `from:` (the locations that check, e.g. `from: [{region: eu}, \
                 {region: us}]`)",
            );
            1
        }
        Some(q) if q.value == 0 || q.value > from.len() as u64 => {
            c.err(
                &q.referenced,
                format!(
                    "`quorum` is {}: it counts failing locations, from 1 to the {} of `from`",
                    q.value,
                    from.len()
                ),
            );
            1
        }
        Some(q) => q.value as u32,
    };
    let mut interventions: [Vec<(InterventionDef, Location)>; 3] = Default::default();
    let lists = [
        ("on_unhealthy", l.get(|m| m.on_unhealthy.as_ref())),
        ("on_degraded", l.get(|m| m.on_degraded.as_ref())),
        ("on_recovered", l.get(|m| m.on_recovered.as_ref())),
    ];
    for (slot, (what, list)) in interventions.iter_mut().zip(lists) {
        let Some(list) = list.and_then(|list| bounded(c, what, list, MAX_INTERVENTIONS)) else {
            continue;
        };
        for entry in list {
            if let Some(i) = intervention(c, &mut s, what, entry) {
                slot.push((i, entry.referenced));
            }
        }
    }
    if c.diags.len() > before {
        return None;
    }
    let probe = probe?;
    let pending = std::mem::take(&mut s.pending);
    let def = MonitorDef {
        file: c.src.file().to_path_buf(),
        name,
        description,
        every,
        timeout,
        probe,
        conditions,
        degraded_when,
        thresholds,
        depends_on,
        maintenance,
        tags,
        from,
        quorum,
        interventions,
    };
    let table = match rows {
        Rows::One => {
            // A monitor is found where its name is written.
            let at = l.m.name.as_ref().map_or(*start, |n| n.referenced);
            Table::single(c.src.file(), at.line(), at.column())
        }
        Rows::List(list) => list_rows(c, &columns, list, &pending, row_diags),
        Rows::Csv {
            path,
            text,
            header_line,
        } => csv_rows(&path, &text, header_line, &columns, &pending, row_diags),
    };
    (table.len() > 0).then_some(Group { def, table })
}

/// `list` unless it has more than `max` entries (reported).
fn bounded<'r, T>(
    c: &mut Checker<'_>,
    what: &str,
    list: &'r List<T>,
    max: usize,
) -> Option<&'r [Spanned<T>]> {
    if list.value.len() > max {
        c.err(
            &list.referenced,
            format!(
                "`{what}` has {} entries, more than the limit of {max}",
                list.value.len()
            ),
        );
        return None;
    }
    Some(&list.value)
}

/// The conditions of a kind when none are written: what "it answered" means for it.
fn default_conditions(probe: &ProbeDef) -> Vec<Condition> {
    let text = match probe {
        ProbeDef::Http { .. } => "[STATUS] < 400",
        ProbeDef::Tcp { .. } | ProbeDef::Tls { .. } | ProbeDef::Icmp { .. } => {
            "[CONNECTED] == true"
        }
        ProbeDef::Dns { .. } => "[DNS_RCODE] == NOERROR",
        ProbeDef::Command { .. } => "[EXIT_CODE] == 0",
        ProbeDef::Push(_) | ProbeDef::Workflow { .. } => return Vec::new(),
    };
    Condition::parse(text).into_iter().collect()
}

fn parse_conditions(c: &mut Checker<'_>, what: &str, list: &List<String>) -> Vec<Condition> {
    let Some(list) = bounded(c, what, list, MAX_CONDITIONS) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        match Condition::parse(&entry.value) {
            Ok(cond) => out.push(cond),
            Err(e) => {
                let message = format!("invalid condition in `{what}`: {}", e.message);
                let d = c
                    .src
                    .value_diag(&entry.value, &entry.referenced, e.offset, message);
                c.diags.push(d);
            }
        }
    }
    out
}

fn window(c: &mut Checker<'_>, raw: &Spanned<RawWindow>) -> Option<MaintenanceWindow> {
    let w = &raw.value;
    c.stray(&w.stray, <RawWindow as crate::spec::raw::Fields>::KEYS);
    let Some(cron) = &w.cron else {
        c.err(
            &raw.referenced,
            "a maintenance window needs `cron` (when it opens) and `duration`",
        );
        return None;
    };
    let duration = match &w.duration {
        None => {
            c.err(
                &raw.referenced,
                "a maintenance window needs `duration` (how long it stays open)",
            );
            None
        }
        Some(d) => match c.duration("maintenance.duration", d, MAX_WINDOW) {
            Some(z) if z.is_zero() => {
                c.err(
                    &d.referenced,
                    "`maintenance.duration` must be greater than 0",
                );
                None
            }
            other => other,
        },
    };
    let schedule = c.schedule(Some(cron), w.timezone.as_ref());
    Some(MaintenanceWindow {
        schedule: schedule?,
        duration: duration?,
    })
}

/// `from:`: agent labels per location.
fn locations(
    c: &mut Checker<'_>,
    list: &List<OrderedMap<Spanned<Scalar>>>,
) -> Vec<BTreeMap<String, String>> {
    const MAX_LABEL_BYTES: usize = 128;
    let Some(list) = bounded(c, "from", list, MAX_LOCATIONS) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for loc in list {
        let entries = &loc.value.entries;
        if entries.is_empty() {
            c.err(
                &loc.referenced,
                "a location in `from` needs at least one agent label, e.g. `{region: eu}`",
            );
            continue;
        }
        if entries.len() > MAX_LOCATIONS {
            c.err(
                &loc.referenced,
                format!("a location has more than {MAX_LOCATIONS} labels"),
            );
            continue;
        }
        let mut labels = BTreeMap::new();
        for (key, value) in entries {
            let bad = |s: &str| {
                s.is_empty()
                    || s.len() > MAX_LABEL_BYTES
                    || s.chars().any(|c| c.is_control() || c == '=' || c == ',')
            };
            if bad(&key.value) {
                c.err(
                    &key.referenced,
                    format!(
                        "invalid agent label `{}`: 1 to {MAX_LABEL_BYTES} bytes, without `=`, \
                         `,` or control characters",
                        key.value
                    ),
                );
            } else if bad(&value.value.0) {
                c.err(
                    &value.referenced,
                    format!(
                        "invalid value `{}` of agent label `{}`: 1 to {MAX_LABEL_BYTES} bytes, \
                         without `=`, `,` or control characters",
                        value.value.0, key.value
                    ),
                );
            } else if labels
                .insert(key.value.clone(), value.value.0.clone())
                .is_some()
            {
                c.err(
                    &key.referenced,
                    format!("duplicate agent label `{}`", key.value),
                );
            }
        }
        if out.contains(&labels) {
            c.err(&loc.referenced, "this location is already in `from`");
            continue;
        }
        out.push(labels);
    }
    out
}

/// Reports keys of `keys` that are not in `allowed`, saying what they do not apply to.
fn not_here(c: &mut Checker<'_>, keys: &[(&'static str, Location)], allowed: &[&str], what: &str) {
    for (key, at) in keys {
        if !allowed.contains(key) {
            c.err(
                at,
                format!(
                    "`{key}` does not apply to {what} (allowed here: {})",
                    allowed.join(", ")
                ),
            );
        }
    }
}

/// A duration more than 0 and at most `max`.
fn positive(
    c: &mut Checker<'_>,
    what: &str,
    raw: &Spanned<String>,
    max: Duration,
) -> Option<Duration> {
    let d = c.duration(what, raw, max)?;
    if d.is_zero() {
        c.err(&raw.referenced, format!("`{what}` must be greater than 0"));
        return None;
    }
    Some(d)
}

fn probe(c: &mut Checker<'_>, s: &mut Strings<'_>, raw: &Spanned<RawCheck>) -> Option<ProbeDef> {
    let r = &raw.value;
    c.stray(&r.stray, CHECK_KINDS);
    match r.keys.as_slice() {
        [] => {
            c.err(
                &raw.referenced,
                format!("`check` needs one kind: {}", one_of(CHECK_KINDS)),
            );
            return None;
        }
        [_] => {}
        [(first, _), (second, at), ..] => {
            c.err(
                at,
                format!("`check` takes one kind, not both `{first}` and `{second}`"),
            );
            return None;
        }
    }
    if let Some(h) = &r.http {
        return http(c, s, h);
    }
    if let Some(t) = &r.tcp {
        return host_port(c, s, t, "tcp");
    }
    if let Some(t) = &r.tls {
        return host_port(c, s, t, "tls");
    }
    if let Some(d) = &r.dns {
        let v = &d.value;
        c.stray(&v.stray, &["server", "name", "type"]);
        let server = v
            .server
            .as_ref()
            .map(|x| s.spanned(c, "check.dns.server", x, Some(Rule::DnsServer)));
        let name = match &v.name {
            Some(n) => s.spanned(c, "check.dns.name", n, Some(Rule::DnsName)),
            None => {
                c.err(
                    &d.referenced,
                    "a dns check needs `name` (the name asked for)",
                );
                return None;
            }
        };
        let record = match &v.record {
            None => DnsRecord::A,
            Some(t) => {
                let upper = Spanned::new(t.value.to_ascii_uppercase(), t.referenced, t.defined);
                c.choice("record type", &upper, &RECORDS)?
            }
        };
        return Some(ProbeDef::Dns {
            server,
            name,
            record,
        });
    }
    if let Some(i) = &r.icmp {
        let v = &i.value;
        c.stray(&v.stray, &["host", "count"]);
        let host = match &v.host {
            Some(h) => s.spanned(c, "check.icmp.host", h, Some(Rule::Host)),
            None => {
                c.err(&i.referenced, "an icmp check needs `host`");
                return None;
            }
        };
        let count = match &v.count {
            None => 1,
            Some(n) if n.value == 0 => {
                c.err(&n.referenced, "`check.icmp.count` must be at least 1");
                1
            }
            Some(n) => c.count("check.icmp.count", n, MAX_ICMP_COUNT).unwrap_or(1) as u8,
        };
        return Some(ProbeDef::Icmp { host, count });
    }
    if let Some(cmd) = &r.command {
        let v = &cmd.value;
        c.stray(&v.stray, &["run", "env", "cwd", "max_output"]);
        let Some(run_raw) = &v.run else {
            c.err(
                &cmd.referenced,
                "a command check needs `run` (a shell string or an argv list, as a task's)",
            );
            return None;
        };
        let env = scalar_map(
            c,
            s,
            "check.command.env",
            v.env.as_ref().map(|m| &m.value),
            None,
            &[],
        );
        env_names(c, v.env.as_ref().map(|m| &m.value));
        exec_size(
            c,
            &cmd.referenced,
            run_raw,
            v.env.as_ref().map(|m| &m.value),
        );
        return Some(ProbeDef::Command {
            run: run(c, s, "check.command.run", run_raw),
            env,
            cwd: v
                .cwd
                .as_ref()
                .map(|x| s.spanned(c, "check.command.cwd", x, None)),
            max_output: usize::try_from(c.max_output(v.max_output.as_ref())).unwrap_or(usize::MAX),
        });
    }
    if let Some(p) = &r.push {
        c.stray(&p.value.stray, &["grace"]);
        let grace = p
            .value
            .grace
            .as_ref()
            .and_then(|g| c.duration("check.push.grace", g, MAX_LATENESS))
            .unwrap_or(Duration::ZERO);
        return Some(ProbeDef::Push(PushProbe { grace }));
    }
    if let Some(w) = &r.workflow {
        let v = &w.value;
        c.stray(&v.stray, &["name", "succeeded_within"]);
        let (Some(name), Some(within)) = (&v.name, &v.succeeded_within) else {
            c.err(
                &w.referenced,
                "a workflow check needs `name` (the workflow) and `succeeded_within` (e.g. 26h)",
            );
            return None;
        };
        let name = s.spanned(c, "check.workflow.name", name, Some(Rule::Name));
        let succeeded_within =
            positive(c, "check.workflow.succeeded_within", within, MAX_LATENESS)?;
        return Some(ProbeDef::Workflow {
            name,
            succeeded_within,
        });
    }
    None
}

fn http(c: &mut Checker<'_>, s: &mut Strings<'_>, raw: &Spanned<RawHttp>) -> Option<ProbeDef> {
    let v = &raw.value;
    c.stray(&v.stray, <RawHttp as crate::spec::raw::Fields>::KEYS);
    let Some(url) = &v.url else {
        c.err(
            &raw.referenced,
            "an http check needs `url` (e.g. `http://127.0.0.1:8080/health`)",
        );
        return None;
    };
    let url = s.spanned(c, "check.http.url", url, Some(Rule::HttpUrl));
    let method = match &v.method {
        None => HttpMethod::Get,
        Some(m) => {
            let upper = Spanned::new(m.value.to_ascii_uppercase(), m.referenced, m.defined);
            c.choice("method", &upper, &METHODS)?
        }
    };
    let headers = headers(
        c,
        s,
        "check.http.headers",
        v.headers.as_ref().map(|m| &m.value),
    );
    let body = v.body.as_ref().map(|b| {
        if b.value.len() > MAX_SEND_BYTES {
            c.err(
                &b.referenced,
                format!("`check.http.body` is longer than {MAX_SEND_BYTES} bytes"),
            );
        }
        s.spanned(c, "check.http.body", b, None)
    });
    let client_cert = v.client_cert.as_ref().and_then(|cc| {
        c.stray(&cc.value.stray, &["cert", "key"]);
        let (Some(cert), Some(key)) = (&cc.value.cert, &cc.value.key) else {
            c.err(
                &cc.referenced,
                "`client_cert` needs `cert` and `key` (PEM files)",
            );
            return None;
        };
        let dir = c.src.file().parent().unwrap_or(Path::new("."));
        Some((dir.join(&cert.value), dir.join(&key.value)))
    });
    let max_body = match &v.max_body {
        None => DEFAULT_MAX_BODY,
        Some(m) => match crate::spec::size::parse_size(&m.value) {
            Ok(n) if (1024..=MAX_BODY).contains(&n) => n,
            Ok(_) => {
                c.err(
                    &m.referenced,
                    format!(
                        "`check.http.max_body` `{}` is out of bounds: from 1 KiB to {}",
                        m.value.trim(),
                        crate::spec::size::format_size(MAX_BODY)
                    ),
                );
                DEFAULT_MAX_BODY
            }
            Err(e) => {
                c.err(&m.referenced, format!("`check.http.max_body`: {e}"));
                DEFAULT_MAX_BODY
            }
        },
    };
    Some(ProbeDef::Http {
        url,
        method,
        headers,
        body,
        follow_redirects: v.follow_redirects.as_ref().is_none_or(|f| f.value),
        insecure_skip_verify: v.insecure_skip_verify.as_ref().is_some_and(|f| f.value),
        client_cert,
        max_body,
    })
}

fn host_port(
    c: &mut Checker<'_>,
    s: &mut Strings<'_>,
    raw: &Spanned<RawHostPort>,
    kind: &str,
) -> Option<ProbeDef> {
    let v = &raw.value;
    let allowed: &[&str] = if kind == "tcp" {
        &["host", "port", "send", "expect"]
    } else {
        &["host", "port"]
    };
    c.stray(&v.stray, allowed);
    not_here(c, &v.keys, allowed, &format!("a {kind} check"));
    let (Some(host), Some(port)) = (&v.host, &v.port) else {
        c.err(
            &raw.referenced,
            format!("a {kind} check needs `host` and `port`"),
        );
        return None;
    };
    let host = s.spanned(c, &format!("check.{kind}.host"), host, Some(Rule::Host));
    let what = format!("check.{kind}.port");
    let port_t = s.read(
        c,
        &what,
        &port.value.0,
        &port.referenced,
        Some(Rule::Port),
        &[],
    );
    let port = match port_t.as_literal() {
        Some(p) => PortDef::Fixed(p.trim().parse().unwrap_or(0)),
        None => PortDef::Column(port_t),
    };
    let mut text = |c: &mut Checker<'_>, key: &str, raw: Option<&Spanned<String>>| {
        raw.map(|x| {
            if x.value.len() > MAX_SEND_BYTES {
                c.err(
                    &x.referenced,
                    format!("`check.{kind}.{key}` is longer than {MAX_SEND_BYTES} bytes"),
                );
            }
            s.spanned(c, &format!("check.{kind}.{key}"), x, None)
        })
    };
    if kind == "tls" {
        return Some(ProbeDef::Tls { host, port });
    }
    let send = text(c, "send", v.send.as_ref());
    let expect = text(c, "expect", v.expect.as_ref());
    Some(ProbeDef::Tcp {
        host,
        port,
        send,
        expect,
    })
}

/// `headers:` of a request: names as HTTP tokens, values templates.
fn headers(
    c: &mut Checker<'_>,
    s: &mut Strings<'_>,
    what: &str,
    raw: Option<&OrderedMap<Spanned<Scalar>>>,
) -> Vec<(String, TStr)> {
    let Some(map) = raw else { return Vec::new() };
    for (key, _) in &map.entries {
        let token = !key.value.is_empty()
            && key
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            c.err(
                &key.referenced,
                format!(
                    "invalid header name `{}`: letters, digits and `-` (e.g. `Authorization`)",
                    key.value
                ),
            );
        }
    }
    scalar_map(c, s, what, Some(map), Some(Rule::HeaderValue), &[])
}

/// A bounded `name: template` map.
fn scalar_map(
    c: &mut Checker<'_>,
    s: &mut Strings<'_>,
    what: &str,
    raw: Option<&OrderedMap<Spanned<Scalar>>>,
    rule: Option<Rule>,
    keep: &[&str],
) -> Vec<(String, TStr)> {
    let Some(map) = raw else { return Vec::new() };
    if map.entries.len() > MAX_ENTRIES {
        if let Some((key, _)) = map.entries.get(MAX_ENTRIES) {
            c.err(
                &key.referenced,
                format!("`{what}` has more than {MAX_ENTRIES} entries"),
            );
        }
        return Vec::new();
    }
    let mut out: Vec<(String, TStr)> = Vec::with_capacity(map.entries.len());
    for (key, value) in &map.entries {
        if out.iter().any(|(k, _)| *k == key.value) {
            c.err(
                &key.referenced,
                format!("duplicate key `{}` in `{what}`", key.value),
            );
            continue;
        }
        let t = s.read(c, what, &value.value.0, &value.referenced, rule, keep);
        out.push((key.value.clone(), t));
    }
    out
}

fn env_names(c: &mut Checker<'_>, raw: Option<&OrderedMap<Spanned<Scalar>>>) {
    for (key, _) in raw.map(|m| m.entries.as_slice()).unwrap_or_default() {
        if key.value.is_empty() || key.value.contains(['=', '\0']) {
            c.err(
                &key.referenced,
                format!(
                    "invalid environment variable name `{}`: it must be non-empty and contain \
                     no `=`",
                    key.value
                ),
            );
        }
    }
}

/// [`Checker::exec_size`] for a command whose environment values are scalars.
fn exec_size(
    c: &mut Checker<'_>,
    at: &Location,
    run: &Spanned<RawRun>,
    env: Option<&OrderedMap<Spanned<Scalar>>>,
) {
    let env = env.map(|m| OrderedMap {
        entries: m
            .entries
            .iter()
            .map(|(k, v)| {
                let value = Spanned::new(v.value.0.clone(), v.referenced, v.defined);
                (k.clone(), value)
            })
            .collect(),
    });
    c.exec_size(at, run, env.as_ref());
}

fn run(c: &mut Checker<'_>, s: &mut Strings<'_>, what: &str, raw: &Spanned<RawRun>) -> RunDef {
    const EMPTY: &str = "empty command: it needs a program, e.g. `[\"./check.sh\"]` or \
                         `\"curl -fsS http://127.0.0.1/\"`";
    match &raw.value {
        RawRun::Missing => {
            c.err(&raw.referenced, EMPTY);
            RunDef::Shell(TStr::literal(""))
        }
        RawRun::Shell(text) => {
            if text.trim().is_empty() {
                // Said once: the string's own rule would say it again.
                c.err(&raw.referenced, EMPTY);
                return RunDef::Shell(TStr::literal(""));
            }
            RunDef::Shell(s.read(c, what, text, &raw.defined, Some(Rule::NotEmpty), &[]))
        }
        RawRun::Argv(args) => {
            if args.is_empty() {
                c.err(&raw.referenced, EMPTY);
            }
            let argv = args
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let rule = (i == 0).then_some(Rule::NotEmpty);
                    s.read(c, what, &a.value, &a.defined, rule, &[])
                })
                .collect();
            RunDef::Argv(argv)
        }
    }
}

const ACTION_KEYS: &[&str] = &["restart", "run", "command", "webhook"];

fn intervention(
    c: &mut Checker<'_>,
    s: &mut Strings<'_>,
    list: &str,
    raw: &Spanned<RawIntervention>,
) -> Option<InterventionDef> {
    let v = &raw.value;
    c.stray(
        &v.stray,
        <RawIntervention as crate::spec::raw::Fields>::KEYS,
    );
    let found: Vec<&(&str, Location)> = v
        .keys
        .iter()
        .filter(|(k, _)| ACTION_KEYS.contains(k))
        .collect();
    let kind = match found.as_slice() {
        [] => {
            c.err(
                &raw.referenced,
                format!(
                    "an entry of `{list}` needs one action: `restart: SUPERVISOR/PATH`, `run: \
                     WORKFLOW`, `command: ...` or `webhook: {{url: ...}}`"
                ),
            );
            return None;
        }
        [(k, _)] => *k,
        [(first, _), (second, at), ..] => {
            c.err(
                at,
                format!("an intervention does one thing, not both `{first}` and `{second}`"),
            );
            return None;
        }
    };
    let allowed: &[&str] = match kind {
        "restart" => &["restart", "cooldown", "max_attempts"],
        "run" => &["run", "params", "cooldown", "max_attempts"],
        "command" => &[
            "command",
            "env",
            "cwd",
            "timeout",
            "cooldown",
            "max_attempts",
        ],
        _ => &["webhook", "cooldown", "max_attempts"],
    };
    not_here(c, &v.keys, allowed, &format!("a `{kind}` intervention"));
    let cooldown = v
        .cooldown
        .as_ref()
        .and_then(|d| c.duration("cooldown", d, MAX_COOLDOWN))
        .unwrap_or(DEFAULT_COOLDOWN);
    let max_attempts = match &v.max_attempts {
        None => DEFAULT_MAX_ATTEMPTS,
        Some(m) if m.value == 0 => {
            c.err(&m.referenced, "`max_attempts` must be at least 1");
            DEFAULT_MAX_ATTEMPTS
        }
        Some(m) => c
            .count("max_attempts", m, MAX_ATTEMPTS)
            .unwrap_or(DEFAULT_MAX_ATTEMPTS),
    };
    let action = match kind {
        "restart" => {
            let path = v.restart.as_ref()?;
            ActionDef::Restart(s.spanned(c, "restart", path, Some(Rule::ServicePath)))
        }
        "run" => {
            let workflow = v.run.as_ref()?;
            ActionDef::Run {
                workflow: s.spanned(c, "run", workflow, Some(Rule::Name)),
                params: scalar_map(
                    c,
                    s,
                    "params",
                    v.params.as_ref().map(|m| &m.value),
                    None,
                    RUN_PARAM_REFS,
                ),
            }
        }
        "command" => {
            let cmd = v.command.as_ref()?;
            env_names(c, v.env.as_ref().map(|m| &m.value));
            exec_size(c, &raw.referenced, cmd, v.env.as_ref().map(|m| &m.value));
            ActionDef::Command {
                run: run(c, s, "command", cmd),
                env: scalar_map(c, s, "env", v.env.as_ref().map(|m| &m.value), None, &[]),
                cwd: v.cwd.as_ref().map(|x| s.spanned(c, "cwd", x, None)),
                timeout: v
                    .timeout
                    .as_ref()
                    .and_then(|t| positive(c, "timeout", t, MAX_ACTION_TIMEOUT))
                    .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            }
        }
        _ => {
            let hook = v.webhook.as_ref()?;
            let h = &hook.value;
            c.stray(&h.stray, &["url", "headers", "timeout", "retries"]);
            let Some(url) = &h.url else {
                c.err(&hook.referenced, "a webhook needs `url`");
                return None;
            };
            ActionDef::Webhook {
                url: s.spanned(c, "webhook.url", url, Some(Rule::HttpUrl)),
                headers: headers(
                    c,
                    s,
                    "webhook.headers",
                    h.headers.as_ref().map(|m| &m.value),
                ),
                timeout: h
                    .timeout
                    .as_ref()
                    .and_then(|t| positive(c, "webhook.timeout", t, MAX_ACTION_TIMEOUT))
                    .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT),
                retries: h
                    .retries
                    .as_ref()
                    .and_then(|r| c.count("webhook.retries", r, MAX_WEBHOOK_RETRIES))
                    .unwrap_or(DEFAULT_WEBHOOK_RETRIES),
            }
        }
    };
    Some(InterventionDef {
        action,
        cooldown,
        max_attempts,
    })
}

/// Reads `targets:`: the column names and where the rows come from; `None` when the targets
/// cannot be read (reported).
fn targets<'r>(
    c: &mut Checker<'_>,
    raw: &'r Spanned<RawTargets>,
) -> Option<(Vec<Box<str>>, Rows<'r>)> {
    match &raw.value {
        RawTargets::List(rows) => {
            if rows.is_empty() {
                c.err(
                    &raw.referenced,
                    "`targets` is empty: list at least one target",
                );
                return None;
            }
            if rows.len() > MAX_LISTED {
                c.err(
                    &raw.referenced,
                    format!(
                        "`targets` lists {} targets, more than the limit of {MAX_LISTED} in a \
                         document: put them in a CSV file (`targets: {{ csv: targets.csv }}`)",
                        rows.len()
                    ),
                );
                return None;
            }
            let mut columns: Vec<Box<str>> = Vec::new();
            let before = c.diags.len();
            for row in rows {
                for (key, _) in &row.value.entries {
                    if columns.iter().any(|c| **c == *key.value) {
                        continue;
                    }
                    if !targets::valid_column(&key.value) {
                        c.err(&key.referenced, column_problem(&key.value));
                    } else if columns.len() == MAX_COLUMNS {
                        c.err(
                            &key.referenced,
                            format!("targets have more than {MAX_COLUMNS} columns"),
                        );
                    } else {
                        columns.push(key.value.as_str().into());
                    }
                }
            }
            (c.diags.len() == before).then_some((columns, Rows::List(rows)))
        }
        RawTargets::Csv { file, stray } => {
            for key in stray {
                c.err(
                    &key.referenced,
                    format!(
                        "unknown key `{}` in `targets`: write a list of targets, or `{{ csv: \
                         FILE }}`",
                        key.value
                    ),
                );
            }
            let Some(file) = file else {
                c.err(
                    &raw.referenced,
                    "`targets` is a list of targets, or `{ csv: FILE }` with the CSV file beside \
                     this one",
                );
                return None;
            };
            let dir = c.src.file().parent().unwrap_or(Path::new(""));
            let path = dir.join(&file.value);
            let bytes = match crate::spec::file::read_bytes_max(&path, targets::MAX_CSV_BYTES) {
                Ok(b) => b,
                Err(d) => {
                    c.err(&file.referenced, format!("`targets.csv`: {}", d.message));
                    return None;
                }
            };
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    c.diags.push(crate::spec::file::not_utf8(
                        &path,
                        e.as_bytes(),
                        e.utf8_error(),
                        "targets files",
                    ));
                    return None;
                }
            };
            let text = text
                .strip_prefix('\u{feff}')
                .map(str::to_string)
                .unwrap_or(text);
            let Some((header_line, header)) = targets::lines(&text).next() else {
                c.err(
                    &file.referenced,
                    format!(
                        "{} has no header line: its first line names the columns, e.g. \
                         `host,port`",
                        path.display()
                    ),
                );
                return None;
            };
            let at = |col: usize, message: String| Diagnostic {
                file: path.clone(),
                line: header_line,
                col,
                message,
                source_line: Some(header.to_string()),
            };
            let cells = match targets::split_line(header) {
                Ok(cells) => cells,
                Err(p) => {
                    c.diags
                        .push(at(targets::char_col(header, p.offset), p.message));
                    return None;
                }
            };
            if cells.len() > MAX_COLUMNS {
                c.diags.push(at(
                    1,
                    format!(
                        "{} columns, more than the limit of {MAX_COLUMNS}",
                        cells.len()
                    ),
                ));
                return None;
            }
            let mut columns: Vec<Box<str>> = Vec::new();
            let mut ok = true;
            for (name, offset) in &cells {
                let col = targets::char_col(header, *offset);
                if !targets::valid_column(name) {
                    c.diags.push(at(col, column_problem(name)));
                    ok = false;
                } else if columns.iter().any(|c| **c == **name) {
                    c.diags.push(at(col, format!("duplicate column `{name}`")));
                    ok = false;
                } else {
                    columns.push(Box::from(&**name));
                }
            }
            drop(cells);
            ok.then_some((
                columns,
                Rows::Csv {
                    path,
                    text,
                    header_line,
                },
            ))
        }
    }
}

fn column_problem(name: &str) -> String {
    format!(
        "invalid column name `{name}`: letters, digits, `_` and `-`, starting with a letter or \
         `_` (templates read it as `{{{{ target.{name} }}}}`)"
    )
}

/// Renders every pending template for the last row of `table`: the first problem, with the
/// column it comes from.
fn row_problem(
    table: &Table,
    pending: &[RowCheck],
    buf: &mut String,
) -> Option<(Option<usize>, String)> {
    let row = table.row(table.len() - 1);
    for check in pending {
        buf.clear();
        check.t.render_into(row, buf);
        if let Err(why) = check.rule.check(buf) {
            let shown: String = buf.chars().take(80).collect();
            return Some((
                check.t.first_column(),
                format!("`{}` renders as `{shown}`, which {why}", check.what),
            ));
        }
    }
    None
}

/// Counts bad rows; reports the first [`MAX_ROW_PROBLEMS`] one by one and the rest at once.
struct RowProblems<'d> {
    diags: &'d mut Vec<Diagnostic>,
    count: usize,
    file: PathBuf,
}

impl RowProblems<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.count += 1;
        if self.count <= MAX_ROW_PROBLEMS {
            self.diags.push(d);
        }
    }

    fn finish(self) {
        if self.count > MAX_ROW_PROBLEMS {
            self.diags.push(Diagnostic {
                file: self.file,
                line: 0,
                col: 0,
                message: format!(
                    "{} more bad target rows, not loaded (only the first {MAX_ROW_PROBLEMS} are \
                     shown)",
                    self.count - MAX_ROW_PROBLEMS
                ),
                source_line: None,
            });
        }
    }
}

fn csv_rows(
    path: &Path,
    text: &str,
    header_line: usize,
    columns: &[Box<str>],
    pending: &[RowCheck],
    diags: &mut Vec<Diagnostic>,
) -> Table {
    let mut table = Table::new(columns.to_vec(), path.to_path_buf());
    let mut problems = RowProblems {
        diags,
        count: 0,
        file: path.to_path_buf(),
    };
    let mut buf = String::new();
    let mut cells_of_row: Vec<Cow<'_, str>> = Vec::with_capacity(columns.len());
    for (line_no, line) in targets::lines(text) {
        if line_no <= header_line {
            continue;
        }
        let at = |col: usize, message: String| Diagnostic {
            file: path.to_path_buf(),
            line: line_no,
            col,
            message,
            source_line: Some(line.to_string()),
        };
        if table.len() >= MAX_TARGETS {
            problems.push(at(
                1,
                format!("more than {MAX_TARGETS} targets: the rest of the file is not loaded"),
            ));
            break;
        }
        let cells = match targets::split_line(line) {
            Ok(cells) => cells,
            Err(p) => {
                problems.push(at(targets::char_col(line, p.offset), p.message));
                continue;
            }
        };
        if cells.len() != columns.len() {
            let (col, what) = match cells.get(columns.len()) {
                Some((_, offset)) => (targets::char_col(line, *offset), "more"),
                None => (line.chars().count() + 1, "fewer"),
            };
            let names: Vec<&str> = columns.iter().map(|c| &**c).collect();
            problems.push(at(
                col,
                format!(
                    "this row has {} cells, {what} than the {} columns of the header ({})",
                    cells.len(),
                    columns.len(),
                    names.join(",")
                ),
            ));
            continue;
        }
        if let Some((_, offset)) = cells.iter().find(|(c, _)| c.len() > MAX_CELL_BYTES) {
            problems.push(at(
                targets::char_col(line, *offset),
                format!("a cell longer than {MAX_CELL_BYTES} bytes"),
            ));
            continue;
        }
        cells_of_row.clear();
        cells_of_row.extend(cells.iter().map(|(c, _)| c.clone()));
        if !table.push(&cells_of_row, line_no, 1) {
            problems.push(at(
                1,
                "the targets' text passes 4 GiB: the rest is not loaded".into(),
            ));
            break;
        }
        if let Some((col, message)) = row_problem(&table, pending, &mut buf) {
            table.pop();
            let col = col
                .and_then(|c| cells.get(c))
                .map_or(1, |(_, offset)| targets::char_col(line, *offset));
            problems.push(at(col, message));
        }
    }
    problems.finish();
    table.shrink();
    table
}

fn list_rows(
    c: &Checker<'_>,
    columns: &[Box<str>],
    rows: &[Spanned<OrderedMap<Spanned<Scalar>>>],
    pending: &[RowCheck],
    diags: &mut Vec<Diagnostic>,
) -> Table {
    let mut table = Table::new(columns.to_vec(), c.src.file().to_path_buf());
    let mut problems = RowProblems {
        diags,
        count: 0,
        file: c.src.file().to_path_buf(),
    };
    let mut buf = String::new();
    for row in rows {
        let mut cells: Vec<Cow<'_, str>> = Vec::with_capacity(columns.len());
        let mut at: Vec<&Location> = Vec::with_capacity(columns.len());
        let mut missing = None;
        for col in columns {
            match row.value.entries.iter().find(|(k, _)| *k.value == **col) {
                Some((_, v)) => {
                    cells.push(Cow::Borrowed(v.value.0.as_str()));
                    at.push(&v.referenced);
                }
                None => {
                    missing.get_or_insert(col);
                    cells.push(Cow::Borrowed(""));
                    at.push(&row.referenced);
                }
            }
        }
        if let Some(col) = missing {
            problems.push(c.src.at(
                &row.referenced,
                format!("this target has no `{col}` (every target needs every column)"),
            ));
            continue;
        }
        if let Some(i) = cells.iter().position(|c| c.len() > MAX_CELL_BYTES) {
            problems.push(
                c.src
                    .at(at[i], format!("a value longer than {MAX_CELL_BYTES} bytes")),
            );
            continue;
        }
        let (line, col) = (
            row.referenced.line() as usize,
            row.referenced.column() as usize,
        );
        table.push(&cells, line, col);
        if let Some((col, message)) = row_problem(&table, pending, &mut buf) {
            table.pop();
            let loc = col
                .and_then(|i| at.get(i).copied())
                .unwrap_or(&row.referenced);
            problems.push(c.src.at(loc, message));
        }
    }
    problems.finish();
    table.shrink();
    table
}
