//! Every monitor loaded: templates with their target tables, a compact name index, and the
//! checks that need every file (unique names, `depends_on` names and cycles, `run:` and
//! `restart:` targets).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use crate::monitor::condition::Condition;
use crate::protocol::check::{
    ClientCert, CommandProbe, DnsProbe, HttpProbe, IcmpProbe, Probe, TcpProbe, TlsProbe,
    WorkflowProbe,
};
use crate::protocol::monitor::{Action, InterventionSpec, Trigger};
use crate::spec::{ChildKind, Diagnostic, SupervisorSpec, WorkflowSpec};

use super::targets::Row;
use super::tstr::TStr;
use super::{
    ActionDef, Group, MaintenanceWindow, MonitorDoc, PortDef, ProbeDef, RunDef, Thresholds,
};

/// A monitor's number in its [`MonitorSet`] (file order, then target order).
pub type MonitorId = u32;

/// Every monitor loaded, kept compact: one template per fleet and its targets as a table.
#[derive(Debug, Clone, Default)]
pub struct MonitorSet {
    groups: Vec<Group>,
    /// The id of each group's first monitor (ascending).
    starts: Vec<u32>,
    /// Name hashes, sorted, and the monitor of each (same order).
    hashes: Vec<u64>,
    ids: Vec<u32>,
    /// Rows left out because their name was taken (sorted): their ids are gaps.
    hidden: Vec<u32>,
}

/// One monitor of a [`MonitorSet`]: its strings are rendered from its target when asked for.
#[derive(Debug, Clone, Copy)]
pub struct MonitorView<'a> {
    group: &'a Group,
    row: usize,
    id: MonitorId,
}

fn name_hash(name: &str) -> u64 {
    // SipHash with fixed keys: the same on every load, no per-process seed needed.
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

impl MonitorSet {
    /// How many monitors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The monitor called `name`.
    pub fn get(&self, name: &str) -> Option<MonitorView<'_>> {
        self.find_id(name).and_then(|id| self.find(id))
    }

    /// The monitor numbered `id`.
    pub fn find(&self, id: MonitorId) -> Option<MonitorView<'_>> {
        if self.hidden.binary_search(&id).is_ok() {
            return None;
        }
        self.row_of(id)
    }

    /// The row numbered `id`, left out or not.
    fn row_of(&self, id: MonitorId) -> Option<MonitorView<'_>> {
        let g = self.starts.partition_point(|&s| s <= id).checked_sub(1)?;
        let group = self.groups.get(g)?;
        let row = (id - self.starts[g]) as usize;
        (row < group.table.len()).then_some(MonitorView { group, row, id })
    }

    /// The number of the monitor called `name`.
    pub fn find_id(&self, name: &str) -> Option<MonitorId> {
        let h = name_hash(name);
        let first = self.hashes.partition_point(|&x| x < h);
        let mut buf = String::new();
        for i in first..self.hashes.len() {
            if self.hashes[i] != h {
                break;
            }
            let id = self.ids[i];
            let view = self.row_of(id)?;
            buf.clear();
            view.name_into(&mut buf);
            if buf == name {
                return Some(id);
            }
        }
        None
    }

    /// Every monitor in id order.
    pub fn iter(&self) -> impl Iterator<Item = MonitorView<'_>> + '_ {
        self.rows()
            .filter(|v| self.hidden.is_empty() || self.hidden.binary_search(&v.id).is_err())
    }

    /// Every row, left out or not.
    fn rows(&self) -> impl Iterator<Item = MonitorView<'_>> + '_ {
        self.groups
            .iter()
            .zip(&self.starts)
            .flat_map(|(group, &start)| {
                (0..group.table.len()).map(move |row| MonitorView {
                    group,
                    row,
                    id: start + row as u32,
                })
            })
    }

    /// Heap bytes held (templates not counted: one per fleet).
    pub fn heap_bytes(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.table.heap_bytes())
            .sum::<usize>()
            + self.hashes.capacity() * 8
            + self.ids.capacity() * 4
            + self.starts.capacity() * 4
            + self.hidden.capacity() * 4
    }
}

impl<'a> MonitorView<'a> {
    fn row(&self) -> Row<'a> {
        self.group.table.row(self.row)
    }

    fn render(&self, t: &TStr) -> String {
        t.render(self.row())
    }

    /// Its number in the set.
    pub fn id(&self) -> MonitorId {
        self.id
    }

    /// Its name.
    pub fn name(&self) -> String {
        self.render(&self.group.def.name)
    }

    /// Appends its name to `out` (no allocation of its own).
    pub fn name_into(&self, out: &mut String) {
        self.group.def.name.render_into(self.row(), out);
    }

    /// The file it is written in (the document, even when its target is in a CSV file).
    pub fn file(&self) -> &'a Path {
        &self.group.def.file
    }

    /// Where it is written: the document's monitor, or its target's row (file, line, column).
    pub fn defined_at(&self) -> (&'a Path, usize, usize) {
        self.group.table.at(self.row)
    }

    /// `description:`.
    pub fn description(&self) -> Option<&'a str> {
        self.group.def.description.as_deref()
    }

    /// The check's kind (`http`, `tcp`, ...).
    pub fn kind(&self) -> &'static str {
        match &self.group.def.probe {
            ProbeDef::Http { .. } => "http",
            ProbeDef::Tcp { .. } => "tcp",
            ProbeDef::Tls { .. } => "tls",
            ProbeDef::Dns { .. } => "dns",
            ProbeDef::Icmp { .. } => "icmp",
            ProbeDef::Command { .. } => "command",
            ProbeDef::Push(_) => "push",
            ProbeDef::Workflow { .. } => "workflow",
        }
    }

    /// What one check probes, rendered for its target.
    pub fn probe(&self) -> Probe {
        let r = |t: &TStr| self.render(t);
        let port = |p: &PortDef| match p {
            PortDef::Fixed(n) => *n,
            PortDef::Column(t) => r(t).trim().parse().unwrap_or(0),
        };
        match &self.group.def.probe {
            ProbeDef::Http {
                url,
                method,
                headers,
                body,
                follow_redirects,
                insecure_skip_verify,
                client_cert,
                max_body,
            } => Probe::Http(HttpProbe {
                url: r(url),
                method: *method,
                headers: pairs(self, headers),
                body: body.as_ref().map(r),
                follow_redirects: *follow_redirects,
                insecure_skip_verify: *insecure_skip_verify,
                client_cert: client_cert.as_ref().map(|(cert, key)| ClientCert {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                max_body: *max_body,
            }),
            ProbeDef::Tcp {
                host,
                port: p,
                send,
                expect,
            } => Probe::Tcp(TcpProbe {
                host: r(host),
                port: port(p),
                send: send.as_ref().map(r),
                expect: expect.as_ref().map(r),
            }),
            ProbeDef::Tls { host, port: p } => Probe::Tls(TlsProbe {
                host: r(host),
                port: port(p),
            }),
            ProbeDef::Dns {
                server,
                name,
                record,
            } => Probe::Dns(DnsProbe {
                server: server.as_ref().map(r),
                name: r(name),
                record: *record,
            }),
            ProbeDef::Icmp { host, count } => Probe::Icmp(IcmpProbe {
                host: r(host),
                count: *count,
            }),
            ProbeDef::Command {
                run,
                env,
                cwd,
                max_output,
            } => Probe::Command(CommandProbe {
                argv: argv(self, run),
                env: pairs(self, env),
                cwd: cwd.as_ref().map(|c| r(c).into()),
                max_output: *max_output,
            }),
            ProbeDef::Push(p) => Probe::Push(p.clone()),
            ProbeDef::Workflow {
                name,
                succeeded_within,
            } => Probe::Workflow(WorkflowProbe {
                name: r(name),
                succeeded_within: *succeeded_within,
            }),
        }
    }

    /// How often it is checked.
    pub fn every(&self) -> Duration {
        self.group.def.every
    }

    /// How long one check may take (less than `every`).
    pub fn timeout(&self) -> Duration {
        self.group.def.timeout
    }

    /// `conditions:` (the kind's default when none are written), parsed.
    pub fn conditions(&self) -> &'a [Condition] {
        &self.group.def.conditions
    }

    /// `degraded_when:`, parsed.
    pub fn degraded_when(&self) -> &'a [Condition] {
        &self.group.def.degraded_when
    }

    /// `unhealthy_after` and `healthy_after`.
    pub fn thresholds(&self) -> Thresholds {
        self.group.def.thresholds
    }

    /// The names of the monitors it depends on (each exists; no cycles).
    pub fn depends_on(&self) -> Vec<String> {
        self.group
            .def
            .depends_on
            .iter()
            .map(|(t, _)| self.render(t))
            .collect()
    }

    /// `maintenance:` windows.
    pub fn maintenance(&self) -> &'a [MaintenanceWindow] {
        &self.group.def.maintenance
    }

    /// `tags:`, rendered.
    pub fn tags(&self) -> Vec<String> {
        self.group.def.tags.iter().map(|t| self.render(t)).collect()
    }

    /// True when one of its tags is `tag` (no allocation for literal tags).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.group.def.tags.iter().any(|t| match t.as_literal() {
            Some(l) => l == tag,
            None => self.render(t) == tag,
        })
    }

    /// `from:`: the agent labels of each location that runs the check (empty: anywhere).
    pub fn from(&self) -> &'a [BTreeMap<String, String>] {
        &self.group.def.from
    }

    /// Failing locations in one round that make it unhealthy (1 without `from`).
    pub fn quorum(&self) -> u32 {
        self.group.def.quorum
    }

    /// What it does on entering a state, in the order written.
    pub fn interventions(&self, trigger: Trigger) -> Vec<InterventionSpec> {
        let slot = match trigger {
            Trigger::Unhealthy => 0,
            Trigger::Degraded => 1,
            Trigger::Recovered => 2,
        };
        self.group.def.interventions[slot]
            .iter()
            .map(|(i, _)| InterventionSpec {
                action: action(self, &i.action),
                cooldown: i.cooldown,
                max_attempts: i.max_attempts,
            })
            .collect()
    }
}

fn pairs(v: &MonitorView<'_>, list: &[(String, TStr)]) -> Vec<(String, String)> {
    list.iter().map(|(k, t)| (k.clone(), v.render(t))).collect()
}

fn argv(v: &MonitorView<'_>, run: &RunDef) -> Vec<String> {
    match run {
        RunDef::Shell(t) => vec!["sh".into(), "-c".into(), v.render(t)],
        RunDef::Argv(args) => args.iter().map(|a| v.render(a)).collect(),
    }
}

fn action(v: &MonitorView<'_>, a: &ActionDef) -> Action {
    match a {
        ActionDef::Restart(path) => Action::Restart {
            path: v.render(path),
        },
        ActionDef::Run { workflow, params } => Action::Run {
            workflow: v.render(workflow),
            params: pairs(v, params),
        },
        ActionDef::Command {
            run,
            env,
            cwd,
            timeout,
        } => Action::Command {
            argv: argv(v, run),
            env: pairs(v, env),
            cwd: cwd.as_ref().map(|c| v.render(c).into()),
            timeout: *timeout,
        },
        ActionDef::Webhook {
            url,
            headers,
            timeout,
            retries,
        } => Action::Webhook {
            url: v.render(url),
            headers: pairs(v, headers),
            timeout: *timeout,
            retries: *retries,
        },
    }
}

/// What monitors may name in other documents.
pub struct Names<'c> {
    /// Workflows by name (not checked when empty: a file checked on its own).
    pub workflows: &'c BTreeMap<String, std::sync::Arc<WorkflowSpec>>,
    /// Supervisors by name (not checked when empty).
    pub supervisors: &'c BTreeMap<String, std::sync::Arc<SupervisorSpec>>,
}

/// Most problems of one kind reported across the whole set (a million bad references must
/// not make a million diagnostics).
const MAX_SET_PROBLEMS: usize = 200;

/// Builds the set from every document (in load order): a monitor whose name is taken is
/// left out; references that do not resolve and cycles are reported.
pub fn build(docs: Vec<MonitorDoc>, names: &Names<'_>) -> (MonitorSet, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut set = MonitorSet::default();
    let mut total: u64 = 0;
    for doc in docs {
        for group in doc.groups {
            total += group.table.len() as u64;
            if total > u64::from(u32::MAX) {
                diags.push(Diagnostic {
                    file: doc.file.clone(),
                    line: 0,
                    col: 0,
                    message: "more than 4 billion monitors: the rest are not loaded".into(),
                    source_line: None,
                });
                break;
            }
            set.starts.push(set.len_groups_total());
            set.groups.push(group);
        }
    }
    index(&mut set, &mut diags);
    references(&set, names, &mut diags);
    (set, diags)
}

/// Where a group of monitors comes from: its document, and the file its rows are written in
/// (a CSV file beside it, or the document itself).
pub type Source<'a> = (&'a Path, &'a Path);

impl MonitorSet {
    /// This set with the monitors that `old` loaded from `sources` (whose files have problems
    /// now and gave this set nothing) added after its own: a broken file keeps its last good
    /// monitors, as it keeps its last good workflow. A name this set has stays with it.
    pub fn keeping(mut self, old: &MonitorSet, sources: &BTreeSet<Source<'_>>) -> Self {
        let kept: Vec<Group> = old
            .groups
            .iter()
            .filter(|g| sources.contains(&(g.def.file.as_path(), g.table.file())))
            .cloned()
            .collect();
        if kept.is_empty() {
            return self;
        }
        for group in kept {
            self.starts.push(self.len_groups_total());
            self.groups.push(group);
        }
        self.hashes.clear();
        self.ids.clear();
        self.hidden.clear();
        // What the kept monitors' names clash with was said when they loaded; not again.
        index(&mut self, &mut Vec::new());
        self
    }

    /// Where its groups of monitors come from.
    pub fn sources(&self) -> BTreeSet<Source<'_>> {
        self.groups
            .iter()
            .map(|g| (g.def.file.as_path(), g.table.file()))
            .collect()
    }
}

impl MonitorSet {
    /// Monitors in the groups added so far.
    fn len_groups_total(&self) -> u32 {
        match (self.groups.last(), self.starts.last()) {
            (Some(g), Some(&s)) => s + g.table.len() as u32,
            _ => 0,
        }
    }
}

fn at_row(view: &MonitorView<'_>, message: String) -> Diagnostic {
    let (file, line, col) = view.defined_at();
    Diagnostic {
        file: file.to_path_buf(),
        line,
        col,
        message,
        source_line: None,
    }
}

/// Hashes every name, finds duplicates (the later one is reported and left out of the index).
fn index(set: &mut MonitorSet, diags: &mut Vec<Diagnostic>) {
    let total = set.len_groups_total() as usize;
    let mut pairs: Vec<(u64, u32)> = Vec::with_capacity(total);
    let mut buf = String::new();
    for view in set.rows() {
        buf.clear();
        view.name_into(&mut buf);
        pairs.push((name_hash(&buf), view.id));
    }
    pairs.sort_unstable();
    let mut keep = vec![true; pairs.len()];
    let mut reported = 0usize;
    let (mut a, mut b) = (String::new(), String::new());
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i + 1;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        // Same hash: compare names pairwise (runs are almost always of length 1).
        for x in i + 1..j {
            for y in i..x {
                if !keep[y] {
                    continue;
                }
                let (Some(vx), Some(vy)) = (set.row_of(pairs[x].1), set.row_of(pairs[y].1)) else {
                    continue;
                };
                a.clear();
                b.clear();
                vx.name_into(&mut a);
                vy.name_into(&mut b);
                if a == b {
                    keep[x] = false;
                    reported += 1;
                    if reported <= MAX_SET_PROBLEMS {
                        let (file, line, _) = vy.defined_at();
                        diags.push(at_row(
                            &vx,
                            format!(
                                "monitor `{a}` is already defined at {}:{line}: monitor names \
                                 must be unique",
                                file.display()
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        i = j;
    }
    if reported > MAX_SET_PROBLEMS {
        diags.push(Diagnostic {
            file: Default::default(),
            line: 0,
            col: 0,
            message: format!(
                "{} more duplicate monitor names",
                reported - MAX_SET_PROBLEMS
            ),
            source_line: None,
        });
    }
    let mut hashes = Vec::with_capacity(pairs.len());
    let mut ids = Vec::with_capacity(pairs.len());
    let mut hidden = Vec::new();
    for ((h, id), k) in pairs.into_iter().zip(keep) {
        if k {
            hashes.push(h);
            ids.push(id);
        } else {
            hidden.push(id);
        }
    }
    hidden.sort_unstable();
    set.hashes = hashes;
    set.ids = ids;
    set.hidden = hidden;
}

/// `depends_on` names exist and make no cycle; `run:` names a workflow and `restart:` a
/// supervised path, when those are loaded.
fn references(set: &MonitorSet, names: &Names<'_>, diags: &mut Vec<Diagnostic>) {
    let mut reported = 0usize;
    let mut report = |d: Diagnostic, diags: &mut Vec<Diagnostic>| {
        reported += 1;
        if reported <= MAX_SET_PROBLEMS {
            diags.push(d);
        }
    };
    // Only monitors with dependencies take part in the graph.
    let mut edges: Vec<(u32, u32)> = Vec::new();
    for (group, &start) in set.groups.iter().zip(&set.starts) {
        let def = &group.def;
        let workflow_check = match &def.probe {
            ProbeDef::Workflow { name, .. } => Some(name),
            _ => None,
        };
        // With only literal names in `run:`, `restart:` and a workflow check, the first
        // target's findings hold for every target.
        let literal_refs = workflow_check.is_none_or(|t| t.as_literal().is_some())
            && def
                .interventions
                .iter()
                .flatten()
                .all(|(i, _)| match &i.action {
                    ActionDef::Restart(t) => t.as_literal().is_some(),
                    ActionDef::Run { workflow, .. } => workflow.as_literal().is_some(),
                    _ => true,
                });
        if def.depends_on.is_empty()
            && workflow_check.is_none()
            && def.interventions.iter().all(Vec::is_empty)
        {
            continue;
        }
        // Literal names are the same for every target: looked up (and reported) once.
        let literal: Vec<Option<u32>> = def
            .depends_on
            .iter()
            .map(|(t, at)| {
                let name = t.as_literal()?;
                let found = set.find_id(name);
                if found.is_none() {
                    let d = Diagnostic {
                        file: def.file.clone(),
                        line: at.line() as usize,
                        col: at.column() as usize,
                        message: format!("`depends_on` names unknown monitor `{name}`"),
                        source_line: None,
                    };
                    report(d, diags);
                }
                found
            })
            .collect();
        for row in 0..group.table.len() {
            let view = MonitorView {
                group,
                row,
                id: start + row as u32,
            };
            if !set.hidden.is_empty() && set.hidden.binary_search(&view.id).is_ok() {
                continue;
            }
            for ((t, _), lit) in def.depends_on.iter().zip(&literal) {
                if t.as_literal().is_some() {
                    if let Some(id) = lit {
                        edges.push((view.id, *id));
                    }
                    continue;
                }
                let dep = view.render(t);
                match set.find_id(&dep) {
                    Some(id) => edges.push((view.id, id)),
                    None => {
                        let message = format!(
                            "monitor `{}` depends on unknown monitor `{dep}`",
                            view.name()
                        );
                        report(at_row(&view, message), diags);
                    }
                }
            }
            if literal_refs && row > 0 {
                continue;
            }
            if let Some(name) = workflow_check
                && !names.workflows.is_empty()
            {
                let wf = view.render(name);
                if !names.workflows.contains_key(&wf) {
                    let d = at_row(
                        &view,
                        format!(
                            "monitor `{}` watches unknown workflow `{wf}`{}",
                            view.name(),
                            crate::spec::suggest::did_you_mean(
                                &wf,
                                names.workflows.keys().map(String::as_str)
                            )
                        ),
                    );
                    report(d, diags);
                }
            }
            for (i, at) in def.interventions.iter().flatten() {
                let problem = match &i.action {
                    ActionDef::Run { workflow, .. } if !names.workflows.is_empty() => {
                        let wf = view.render(workflow);
                        (!names.workflows.contains_key(&wf)).then(|| {
                            format!(
                                "`run: {wf}` names no workflow{}",
                                crate::spec::suggest::did_you_mean(
                                    &wf,
                                    names.workflows.keys().map(String::as_str)
                                )
                            )
                        })
                    }
                    ActionDef::Restart(path) if !names.supervisors.is_empty() => {
                        let path = view.render(path);
                        service_path_problem(&path, names.supervisors)
                    }
                    _ => None,
                };
                if let Some(message) = problem {
                    let d = Diagnostic {
                        file: def.file.clone(),
                        line: at.line() as usize,
                        col: at.column() as usize,
                        message,
                        source_line: None,
                    };
                    report(d, diags);
                }
            }
        }
    }
    cycles(set, &edges, diags);
    if reported > MAX_SET_PROBLEMS {
        diags.push(Diagnostic {
            file: Default::default(),
            line: 0,
            col: 0,
            message: format!("{} more unresolved references", reported - MAX_SET_PROBLEMS),
            source_line: None,
        });
    }
}

/// Why `path` (`web/api`) names no supervised service or supervisor, if it does not.
fn service_path_problem(
    path: &str,
    supervisors: &BTreeMap<String, std::sync::Arc<SupervisorSpec>>,
) -> Option<String> {
    let mut segments = path.split('/');
    let root_name = segments.next().unwrap_or_default();
    let Some(root) = supervisors.get(root_name).filter(|s| s.is_root()) else {
        let roots: Vec<&str> = supervisors
            .values()
            .filter(|s| s.is_root())
            .map(|s| s.name.as_str())
            .collect();
        return Some(format!(
            "`restart: {path}` names no supervisor: `{root_name}` is not a top-level \
             supervisor{}",
            crate::spec::suggest::did_you_mean(root_name, roots.iter().copied())
        ));
    };
    let mut node: &SupervisorSpec = root;
    let mut walked = root_name.to_string();
    for seg in segments {
        let Some(child) = node.children.iter().find(|c| c.name == seg) else {
            let names: Vec<&str> = node.children.iter().map(|c| c.name.as_str()).collect();
            return Some(format!(
                "`restart: {path}`: supervisor `{walked}` has no child `{seg}`{}",
                crate::spec::suggest::did_you_mean(seg, names.iter().copied())
            ));
        };
        match &child.kind {
            ChildKind::Supervisor(nested) => node = nested,
            ChildKind::Service(_) => {
                if walked.len() + seg.len() + 1 < path.len() {
                    return Some(format!(
                        "`restart: {path}`: `{walked}/{seg}` is a service, it has no children"
                    ));
                }
            }
        }
        walked.push('/');
        walked.push_str(seg);
    }
    None
}

/// Reports each dependency cycle once, at the monitor that closes it.
fn cycles(set: &MonitorSet, edges: &[(u32, u32)], diags: &mut Vec<Diagnostic>) {
    if edges.is_empty() {
        return;
    }
    // Number the monitors that take part, densely.
    let mut dense: HashMap<u32, usize> = HashMap::new();
    let mut ids: Vec<u32> = Vec::new();
    let mut number = |id: u32, ids: &mut Vec<u32>| {
        *dense.entry(id).or_insert_with(|| {
            ids.push(id);
            ids.len() - 1
        })
    };
    let mut dense_edges = Vec::with_capacity(edges.len());
    for &(from, to) in edges {
        let a = number(from, &mut ids);
        let b = number(to, &mut ids);
        // dag::cycles reads (parent, child): the dependency comes first.
        dense_edges.push((b, a));
    }
    for (n, members) in crate::dag::cycles(ids.len(), &dense_edges)
        .into_iter()
        .enumerate()
    {
        if n >= MAX_SET_PROBLEMS {
            break;
        }
        let names: Vec<String> = members
            .iter()
            .take(12)
            .filter_map(|&m| set.find(ids[m]).map(|v| v.name()))
            .collect();
        let Some(first) = members.first().and_then(|&m| set.find(ids[m])) else {
            continue;
        };
        let message = if members.len() == 1 {
            format!("monitor `{}` depends on itself", names.join(""))
        } else {
            format!(
                "dependency cycle between monitors: {}{} (each depends on another of them)",
                names.join(", "),
                if members.len() > 12 { ", ..." } else { "" }
            )
        };
        let def = &first.group.def;
        let d = match def.depends_on.first() {
            Some((t, at)) if t.as_literal().is_some() => Diagnostic {
                file: def.file.clone(),
                line: at.line() as usize,
                col: at.column() as usize,
                message,
                source_line: None,
            },
            _ => at_row(&first, message),
        };
        diags.push(d);
    }
}
