//! Checks of one `kind: supervisor` document. Uses of other documents by name are kept as
//! references here and resolved once every file is read (see `resolve.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::raw::{
    INLINE_KEYS, PROBE_KEYS, READY_KEYS, REFERENCE_KEYS, RawBody, RawChild, RawReady, RawStop,
    RawSupervisor, SERVICE_KEYS, STOP_KEYS, SUPERVISOR_KEYS,
};
use super::types::{
    AutoShutdown, DEFAULT_INTENSITY, DEFAULT_PERIOD, DEFAULT_READY_TIMEOUT, DEFAULT_STABLE_AFTER,
    Readiness, ReadyProbe, Restart, SERVICE_BACKOFF, ServiceSpec, StopPolicy, StopSignal, Strategy,
};
use super::{DraftChild, DraftKind, SupervisorDraft};
use crate::spec::Diagnostic;
use crate::spec::check::Checker;
use crate::spec::limits::{
    MAX_CHILDREN, MAX_GRACE, MAX_INTENSITY, MAX_NESTING, MAX_PERIOD, MAX_READY_TIMEOUT,
    MAX_REGEX_BYTES, MAX_STABLE_AFTER,
};
use crate::spec::raw::is_absent;
use crate::spec::source::Source;
use crate::spec::suggest::{did_you_mean, one_of};
use crate::spec::template::Template;
use crate::spec::types::CommandSpec;

const STRATEGIES: [(&str, Strategy); 3] = [
    ("one_for_one", Strategy::OneForOne),
    ("one_for_all", Strategy::OneForAll),
    ("rest_for_one", Strategy::RestForOne),
];

const RESTARTS: [(&str, Restart); 3] = [
    ("permanent", Restart::Permanent),
    ("transient", Restart::Transient),
    ("temporary", Restart::Temporary),
];

const AUTO_SHUTDOWNS: [(&str, AutoShutdown); 3] = [
    ("never", AutoShutdown::Never),
    ("any_significant", AutoShutdown::AnySignificant),
    ("all_significant", AutoShutdown::AllSignificant),
];

/// Validates the supervisor document `doc` read from `src`, or returns every problem.
pub fn check(
    src: &Source<'_>,
    doc: Spanned<RawSupervisor>,
) -> Result<SupervisorDraft, Vec<Diagnostic>> {
    let start = doc.referenced;
    let raw = doc.value;
    let mut c = Checker::new(src, start);
    let meant = c.stray(&raw.stray, SUPERVISOR_KEYS);
    if is_absent(&raw.name) {
        if !meant.contains(&"name") {
            c.err(&start, "missing required key `name`");
        }
    } else {
        c.name("supervisor", &raw.name);
    }
    let name_at = src.at(&raw.name.referenced, "");
    let mut draft = body(&mut c, &raw.body, &start, 1, meant.contains(&"children"));
    draft.name = raw.name.value;
    draft.description = raw.description;
    draft.name_at = name_at;
    if c.diags.is_empty() {
        Ok(draft)
    } else {
        Err(c.into_sorted())
    }
}

/// The part of a supervisor a document and an inline one share; `start` is where its mapping
/// starts, `depth` its nesting level (the document is 1).
fn body(
    c: &mut Checker<'_>,
    raw: &RawBody,
    start: &Location,
    depth: usize,
    misspelt_children: bool,
) -> SupervisorDraft {
    let strategy = raw
        .strategy
        .as_ref()
        .and_then(|s| c.choice("strategy", s, &STRATEGIES))
        .unwrap_or_default();
    let intensity = raw
        .intensity
        .as_ref()
        .and_then(|i| c.count("intensity", i, MAX_INTENSITY))
        .unwrap_or(DEFAULT_INTENSITY);
    let period = raw
        .period
        .as_ref()
        .and_then(|p| positive(c, "period", p, MAX_PERIOD))
        .unwrap_or(DEFAULT_PERIOD);
    let auto_shutdown = raw
        .auto_shutdown
        .as_ref()
        .and_then(|a| c.choice("auto_shutdown policy", a, &AUTO_SHUTDOWNS))
        .unwrap_or_default();
    let children = children(c, raw, start, depth, auto_shutdown, misspelt_children);
    SupervisorDraft {
        name: String::new(),
        description: None,
        file: c.src.file().to_path_buf(),
        strategy,
        intensity,
        period,
        auto_shutdown,
        children,
        name_at: c.src.diag(0, 0, ""),
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

fn children(
    c: &mut Checker<'_>,
    raw: &RawBody,
    start: &Location,
    depth: usize,
    auto_shutdown: AutoShutdown,
    misspelt: bool,
) -> Vec<DraftChild> {
    let Some(list) = &raw.children else {
        if !misspelt {
            c.err(
                start,
                "missing required key `children`: a supervisor needs at least one child",
            );
        }
        return Vec::new();
    };
    if list.value.is_empty() {
        c.err(
            &list.referenced,
            "`children` is empty: a supervisor needs at least one child",
        );
        return Vec::new();
    }
    if list.value.len() > MAX_CHILDREN {
        c.err(
            &list.referenced,
            format!(
                "`children` has {} entries, more than the limit of {MAX_CHILDREN}",
                list.value.len()
            ),
        );
        return Vec::new();
    }
    let mut out = Vec::with_capacity(list.value.len());
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for entry in &list.value {
        let Some((child, name_loc)) = child(c, &entry.value, &entry.referenced, depth) else {
            continue;
        };
        if let Some(line) = first_line.get(&child.name) {
            c.err(
                &name_loc,
                format!(
                    "duplicate child name `{}` (first defined at line {line}): names of the \
                     children of one supervisor must be unique",
                    child.name
                ),
            );
            continue;
        }
        first_line.insert(child.name.clone(), name_loc.line());
        significance(c, &entry.value, &child, auto_shutdown);
        out.push(child);
    }
    out
}

/// Reports a `significant: true` that OTP would refuse.
fn significance(c: &mut Checker<'_>, raw: &RawChild, child: &DraftChild, auto: AutoShutdown) {
    let Some(sig) = raw.significant.as_ref().filter(|s| s.value) else {
        return;
    };
    if auto == AutoShutdown::Never {
        c.err(
            &sig.referenced,
            format!(
                "child `{}` is significant but its supervisor's `auto_shutdown` is `never`: \
                 set `auto_shutdown: any_significant` or `all_significant`, or remove \
                 `significant`",
                child.name
            ),
        );
    } else if child.restart == Restart::Permanent {
        c.err(
            &sig.referenced,
            format!(
                "child `{}` is significant but `permanent`: a permanent child is always \
                 restarted, so it never ends its supervisor; make it `restart: transient` or \
                 `temporary`",
                child.name
            ),
        );
    }
}

/// The three forms a child may take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Service,
    Inline,
    Reference,
}

impl Form {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Form::Service => SERVICE_KEYS,
            Form::Inline => INLINE_KEYS,
            Form::Reference => REFERENCE_KEYS,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Form::Service => "a service (it has `run`)",
            Form::Inline => "an inline supervisor (it has `children`)",
            Form::Reference => "a use of a supervisor document (it has `supervisor`)",
        }
    }
}

/// Checks one child; returns it with where its name is written, or `None` when it is too
/// broken to name.
fn child(
    c: &mut Checker<'_>,
    raw: &RawChild,
    start: &Location,
    depth: usize,
) -> Option<(DraftChild, Location)> {
    let form = form(c, raw, start)?;
    let allowed = form.keys();
    let meant = c.stray(&raw.stray, allowed);
    for (key, at) in &raw.keys {
        if !allowed.contains(key) {
            c.err(
                at,
                format!(
                    "`{key}` does not apply to {} (allowed here: {})",
                    form.what(),
                    allowed.join(", ")
                ),
            );
        }
    }
    let restart = raw
        .restart
        .as_ref()
        .and_then(|r| c.choice("restart type", r, &RESTARTS))
        .unwrap_or_default();
    let significant = raw.significant.as_ref().is_some_and(|s| s.value);
    let (name, name_loc) = match (form, &raw.name, &raw.supervisor) {
        (Form::Reference, _, Some(target)) => {
            c.name("supervisor", target);
            (target.value.clone(), target.referenced)
        }
        (_, Some(name), _) => {
            child_name(c, name);
            (name.value.clone(), name.referenced)
        }
        _ => {
            if !meant.contains(&"name") {
                c.err(start, "missing required key `name` in this child");
            }
            return None;
        }
    };
    let kind = match form {
        Form::Service => DraftKind::Service(Arc::new(service(c, raw))),
        Form::Reference => DraftKind::Ref {
            at: c.src.at(&name_loc, ""),
        },
        Form::Inline => {
            if depth >= MAX_NESTING {
                c.err(start, super::nesting::message());
                return None;
            }
            let mut inline = body(c, &raw.body, start, depth + 1, meant.contains(&"children"));
            inline.name = name.clone();
            inline.name_at = c.src.at(&name_loc, "");
            DraftKind::Inline(Box::new(inline))
        }
    };
    let child = DraftChild {
        name,
        restart,
        significant,
        kind,
    };
    Some((child, name_loc))
}

/// Which form `raw` takes; reports a child with none or several.
fn form(c: &mut Checker<'_>, raw: &RawChild, start: &Location) -> Option<Form> {
    let markers = [
        ("run", Form::Service),
        ("children", Form::Inline),
        ("supervisor", Form::Reference),
    ];
    let found: Vec<(&str, Form, Location)> = markers
        .iter()
        .filter_map(|&(key, form)| {
            let at = raw.keys.iter().find(|(k, _)| *k == key)?.1;
            Some((key, form, at))
        })
        .collect();
    match found.as_slice() {
        [] => {
            c.err(
                start,
                "a child needs `run` (a service), `children` (an inline supervisor) or \
                 `supervisor: NAME` (a supervisor document used by name)",
            );
            None
        }
        [(_, form, _)] => Some(*form),
        [(first, ..), (second, _, at), ..] => {
            c.err(
                at,
                format!(
                    "a child has either `run` (a service), `children` (an inline supervisor) \
                     or `supervisor` (a supervisor document used by name), not both \
                     `{first}` and `{second}`"
                ),
            );
            None
        }
    }
}

/// A child's name must also be one path segment (`web/api` names `api` of `web`).
fn child_name(c: &mut Checker<'_>, name: &Spanned<String>) {
    if name.value == "." || name.value == ".." {
        c.err(
            &name.referenced,
            format!(
                "invalid child name `{}`: it cannot be part of a path",
                name.value
            ),
        );
        return;
    }
    c.name("child", name);
}

fn service(c: &mut Checker<'_>, raw: &RawChild) -> ServiceSpec {
    let no_params = BTreeMap::new();
    let run = match &raw.run {
        Some(run) => c.command(run, &no_params),
        None => CommandSpec::Shell(Template::literal("")),
    };
    let backoff = raw
        .backoff
        .as_ref()
        .map(|b| c.backoff_from(b, SERVICE_BACKOFF))
        .unwrap_or(SERVICE_BACKOFF);
    let stable_after = raw
        .stable_after
        .as_ref()
        .and_then(|s| c.duration("stable_after", s, MAX_STABLE_AFTER))
        .unwrap_or(DEFAULT_STABLE_AFTER);
    if let (Some(run_raw), Some(name)) = (&raw.run, &raw.name) {
        c.exec_size(&name.referenced, run_raw, raw.env.as_ref());
    }
    ServiceSpec {
        run,
        env: c.env(raw.env.as_ref(), &no_params),
        cwd: raw.cwd.as_ref().map(Into::into),
        backoff,
        stable_after,
        max_output: c.max_output(raw.max_output.as_ref()),
        ready: raw.ready.as_ref().and_then(|r| ready(c, r)),
        stop: raw.stop.as_ref().map(|s| stop(c, s)).unwrap_or_default(),
    }
}

fn ready(c: &mut Checker<'_>, raw: &Spanned<RawReady>) -> Option<Readiness> {
    let r = &raw.value;
    c.stray(&r.stray, READY_KEYS);
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| positive(c, "ready.timeout", t, MAX_READY_TIMEOUT))
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    let probe = match r.keys.as_slice() {
        [] => {
            c.err(
                &raw.referenced,
                format!("`ready` needs one check: {}", one_of(PROBE_KEYS)),
            );
            return None;
        }
        [_] => probe(c, r)?,
        [(first, _), (second, at), ..] => {
            c.err(
                at,
                format!("`ready` takes one check, not both `{first}` and `{second}`"),
            );
            return None;
        }
    };
    Some(Readiness { probe, timeout })
}

/// The one probe of `r` (the caller made sure there is exactly one).
fn probe(c: &mut Checker<'_>, r: &RawReady) -> Option<ReadyProbe> {
    if let Some(tcp) = &r.tcp {
        let Some((host, port)) = host_port(&tcp.value) else {
            c.err(
                &tcp.referenced,
                format!(
                    "`ready.tcp` `{}` is not HOST:PORT with a port from 1 to 65535 (e.g. \
                     `127.0.0.1:8080` or `[::1]:8080`)",
                    tcp.value
                ),
            );
            return None;
        };
        return Some(ReadyProbe::Tcp { host, port });
    }
    if let Some(http) = &r.http {
        if !is_http_url(&http.value) {
            c.err(
                &http.referenced,
                format!(
                    "`ready.http` `{}` is not an http:// or https:// URL with a host (e.g. \
                     `http://127.0.0.1:8080/health`)",
                    http.value
                ),
            );
            return None;
        }
        return Some(ReadyProbe::Http {
            url: http.value.clone(),
        });
    }
    if let Some(command) = &r.command {
        return Some(ReadyProbe::Command(c.command(command, &BTreeMap::new())));
    }
    if let Some(log) = &r.log {
        return match regex::RegexBuilder::new(&log.value)
            .size_limit(MAX_REGEX_BYTES)
            .build()
        {
            Ok(re) => Some(ReadyProbe::Log(re)),
            Err(e) => {
                c.err(
                    &log.referenced,
                    format!(
                        "invalid regular expression in `ready.log`: {}",
                        regex_problem(&e)
                    ),
                );
                None
            }
        };
    }
    if let Some(notify) = &r.notify {
        if !notify.value {
            c.err(
                &notify.referenced,
                "`ready.notify` can only be `true` (remove `ready` for no readiness check)",
            );
            return None;
        }
        return Some(ReadyProbe::Notify);
    }
    None
}

/// `host:port` or `[v6]:port` with a non-empty host and a port of 1-65535.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        // An unbracketed IPv6 literal would be ambiguous with its port.
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host.to_string(), port))
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let authority = r.split(['/', '?', '#']).next().unwrap_or_default();
        !authority.is_empty() && !r.contains(char::is_whitespace)
    })
}

/// The regex crate's multi-line error as one line: its final `error: ...` line.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn stop(c: &mut Checker<'_>, raw: &RawStop) -> StopPolicy {
    c.stray(&raw.stray, STOP_KEYS);
    let mut policy = StopPolicy::default();
    if let Some(signal) = &raw.signal
        && let Some(s) = stop_signal(c, signal)
    {
        policy.signal = s;
    }
    if let Some(grace) = raw
        .grace
        .as_ref()
        .and_then(|g| c.duration("stop.grace", g, MAX_GRACE))
    {
        policy.grace = grace;
    }
    policy
}

/// `TERM`, `SIGTERM`, `term`, ...
fn stop_signal(c: &mut Checker<'_>, raw: &Spanned<String>) -> Option<StopSignal> {
    let upper = raw.value.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, s)) = StopSignal::ALL.iter().find(|(n, _)| *n == bare) {
        return Some(*s);
    }
    let names: Vec<&str> = StopSignal::ALL.iter().map(|(n, _)| *n).collect();
    c.err(
        &raw.referenced,
        format!(
            "unknown stop signal `{}`{} (expected {}, with or without `SIG`)",
            raw.value,
            did_you_mean(bare, names.iter().copied()),
            one_of(&names)
        ),
    );
    None
}
