//! Reading workflow files and directories into a [`Catalog`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{DuplicateKeyPolicy, Error, Location, Spanned};

use super::file::{file_diag, read_text, too_large};
use super::monitor::MonitorDoc;
use super::monitor::raw::RawDoc;
use super::raw::{KindProbe, RawWorkflow};
use super::source::Source;
use super::supervisor::raw::RawSupervisor;
use super::supervisor::{SupervisorDraft, diag_at};
use super::{
    Catalog, Diagnostic, Document, MAX_FILE_BYTES, Owners, WorkflowSpec, check, yaml_error,
};

const EMPTY_FILE: &str = "empty file: a workflow file starts with `kind: workflow`";

/// See [`super::load_dir`] and [`super::reload_dir`].
pub fn load_dir(dir: &Path, owners: &Owners) -> (Catalog, Vec<Diagnostic>) {
    let mut loader = Loader {
        owners: owners.clone(),
        ..Loader::default()
    };
    if !dir.exists() {
        loader.diags.push(file_diag(
            dir,
            format!(
                "no workflows directory at {}: create it or pass --workflows DIR",
                dir.display()
            ),
        ));
    } else if !dir.is_dir() {
        loader.diags.push(file_diag(
            dir,
            format!("{} is not a directory: pass --workflows DIR", dir.display()),
        ));
    } else {
        loader.dir(dir);
    }
    loader.finish()
}

/// See [`super::load_paths`].
pub fn load_paths(paths: &[PathBuf]) -> (Catalog, Vec<Diagnostic>) {
    let mut loader = Loader::default();
    for path in paths {
        if path.is_dir() {
            loader.dir(path);
        } else {
            loader.file(path);
        }
    }
    loader.finish()
}

/// See [`super::parse_str`].
pub fn parse_str(file: &Path, text: &str) -> Result<WorkflowSpec, Vec<Diagnostic>> {
    match parse_document(file, text)? {
        Parsed::Workflow(spec, _) => Ok(spec),
        other => {
            let kind = match other {
                Parsed::Monitor(_) => "monitor",
                _ => "supervisor",
            };
            let message =
                format!("this is a `kind: {kind}` document, where a workflow is expected");
            let src = Source::new(file, strip_bom(text));
            let (line, col) = kind_position(&src, text);
            Err(vec![src.diag(line, col, message)])
        }
    }
}

/// See [`super::parse_document`].
pub fn parse_any(file: &Path, text: &str) -> Result<Document, Vec<Diagnostic>> {
    Ok(match parse_document(file, text)? {
        Parsed::Workflow(spec, _) => Document::Workflow(spec),
        Parsed::Supervisor(draft) => Document::Supervisor(draft),
        Parsed::Monitor(doc) => Document::Monitor(doc),
    })
}

/// Where `kind:`'s value is written (1, 1 when it cannot be found).
fn kind_position(src: &Source<'_>, text: &str) -> (usize, usize) {
    let options = yaml_error::options(DuplicateKeyPolicy::PassThrough);
    match serde_saphyr::from_str_with_options::<KindProbe>(strip_bom(text), options) {
        Ok(KindProbe { kind: Some(kind) }) => {
            let d = src.at(&kind.referenced, "");
            (d.line, d.col)
        }
        _ => (1, 1),
    }
}

/// One document read and checked on its own.
enum Parsed {
    /// A workflow and where its name is written.
    Workflow(WorkflowSpec, Location),
    /// A supervisor, its uses by name unresolved.
    Supervisor(SupervisorDraft),
    /// Monitors, the names they use unresolved.
    Monitor(MonitorDoc),
}

/// A document read from its file and checked on its own, not yet added to the catalog.
struct ReadDoc {
    path: PathBuf,
    text: String,
    parsed: Parsed,
}

#[derive(Default)]
struct Loader {
    catalog: Catalog,
    diags: Vec<Diagnostic>,
    /// Files already read (so a file named twice is loaded once).
    seen: HashSet<PathBuf>,
    /// Supervisor documents by name, resolved together by [`Loader::finish`].
    supervisors: Vec<SupervisorDraft>,
    /// Monitor documents in load order, indexed together by [`Loader::finish`].
    monitors: Vec<MonitorDoc>,
    /// The files that defined each name before this load (empty on a first load).
    owners: Owners,
    /// Files that could not be read or had problems.
    broken: HashSet<PathBuf>,
    /// Workflow and supervisor names whose owner file is broken: kept for it (the engine keeps
    /// its last good version), so no other file may take them meanwhile.
    held_workflows: HashMap<String, PathBuf>,
    held_supervisors: HashMap<String, PathBuf>,
}

impl Loader {
    /// Resolves the supervisors used by name (across files) and returns what was loaded.
    fn finish(mut self) -> (Catalog, Vec<Diagnostic>) {
        let (supervisors, mut problems) = super::supervisor::resolve::resolve(self.supervisors);
        self.catalog.supervisors = supervisors;
        self.diags.append(&mut problems);
        let names = super::monitor::Names {
            workflows: &self.catalog.workflows,
            supervisors: &self.catalog.supervisors,
        };
        let (monitors, mut problems) = super::monitor::build(self.monitors, &names);
        self.catalog.monitors = Arc::new(monitors);
        self.diags.append(&mut problems);
        (self.catalog, self.diags)
    }

    /// Why a document may not have `name`: `other` defines it already.
    fn taken(kind: &str, name: &str, other: &Path, why: &str) -> String {
        format!(
            "{kind} `{name}` is already defined in {}{why}: {kind} names must be unique",
            other.display()
        )
    }

    /// Adds `draft` unless another supervisor document has its name.
    fn add_supervisor(&mut self, draft: SupervisorDraft) {
        if let Some(first) = self.supervisors.iter().find(|s| s.name() == draft.name()) {
            let message = Self::taken("supervisor", draft.name(), first.file(), "");
            self.diags.push(diag_at(&draft.name_at, message));
            return;
        }
        if let Some(owner) = self.held_supervisors.get(draft.name())
            && owner != draft.file()
        {
            let message = Self::taken("supervisor", draft.name(), owner, HELD);
            self.diags.push(diag_at(&draft.name_at, message));
            return;
        }
        self.supervisors.push(draft);
    }

    fn dir(&mut self, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.diags.push(file_diag(
                    dir,
                    format!("cannot read directory {}: {e}", dir.display()),
                ));
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_workflow_file(p))
            .collect();
        files.sort();
        let docs: Vec<ReadDoc> = files.iter().filter_map(|f| self.read(f)).collect();
        self.add_all(docs);
    }

    fn file(&mut self, path: &Path) {
        if let Some(doc) = self.read(path) {
            self.add_all(vec![doc]);
        }
    }

    /// Reads and checks one file; its problems are recorded.
    fn read(&mut self, path: &Path) -> Option<ReadDoc> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if !self.seen.insert(key) {
            return None;
        }
        let text = match read_text(path) {
            Ok(text) => text,
            Err(d) => {
                self.broken.insert(path.to_path_buf());
                self.diags.push(d);
                return None;
            }
        };
        // A monitor document may load in part: a fleet without its bad target rows.
        let (parsed, mut problems) = parse_partial(path, &text);
        if !problems.is_empty() {
            self.broken.insert(path.to_path_buf());
            self.diags.append(&mut problems);
        }
        parsed.map(|parsed| ReadDoc {
            path: path.to_path_buf(),
            text,
            parsed,
        })
    }

    /// Adds documents: first those whose file already defined their name (it keeps it), then
    /// the others in the order given (sorted by file name), so that on a reload the newcomer,
    /// not the file in use, is the one refused.
    fn add_all(&mut self, docs: Vec<ReadDoc>) {
        for (name, file) in &self.owners.workflows {
            if self.broken.contains(file) {
                self.held_workflows.insert(name.clone(), file.clone());
            }
        }
        for (name, file) in &self.owners.supervisors {
            if self.broken.contains(file) {
                self.held_supervisors.insert(name.clone(), file.clone());
            }
        }
        let (owned, newcomers): (Vec<_>, Vec<_>) = docs.into_iter().partition(|d| self.owns(d));
        for doc in owned.into_iter().chain(newcomers) {
            match doc.parsed {
                Parsed::Workflow(spec, name_at) => self.add(spec, &doc.text, name_at),
                Parsed::Supervisor(draft) => self.add_supervisor(draft),
                Parsed::Monitor(monitors) => self.monitors.push(monitors),
            }
        }
    }

    /// Whether `doc`'s file defined its name before this load.
    fn owns(&self, doc: &ReadDoc) -> bool {
        let owner = match &doc.parsed {
            Parsed::Workflow(spec, _) => self.owners.workflows.get(&spec.name),
            Parsed::Supervisor(draft) => self.owners.supervisors.get(draft.name()),
            Parsed::Monitor(_) => None,
        };
        owner == Some(&doc.path)
    }

    /// Adds `spec` unless its name is taken; `name_at` is where its name is written.
    fn add(&mut self, spec: WorkflowSpec, text: &str, name_at: Location) {
        let other = match self.catalog.workflows.get(&spec.name) {
            Some(first) => Some((first.file.clone(), "")),
            None => self
                .held_workflows
                .get(&spec.name)
                .filter(|owner| **owner != spec.file)
                .map(|owner| (owner.clone(), HELD)),
        };
        if let Some((other, why)) = other {
            let message = Self::taken("workflow", &spec.name, &other, why);
            let src = Source::new(&spec.file, strip_bom(text));
            self.diags.push(src.at(&name_at, message));
            return;
        }
        self.catalog
            .workflows
            .insert(spec.name.clone(), Arc::new(spec));
    }
}

/// Why a name stays with a file that has problems.
const HELD: &str = " (which has problems now, and keeps its last good version running)";

/// `*.yaml` / `*.yml` names, skipping hidden ones (editor lock and swap files). Whatever sits
/// at such a name is then read or reported by [`read_text`]: a FIFO or a directory called
/// `x.yaml` is a problem to show, not something to skip in silence.
pub fn is_workflow_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    yaml && !hidden
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// [`parse_document`], keeping what loads of a monitor document with problems.
fn parse_partial(file: &Path, text: &str) -> (Option<Parsed>, Vec<Diagnostic>) {
    if text.len() <= MAX_FILE_BYTES && is_kind(strip_bom(text), "monitor") {
        let (doc, problems) = parse_monitor(file, text);
        return (doc.map(Parsed::Monitor), problems);
    }
    match parse_document(file, text) {
        Ok(parsed) => (Some(parsed), Vec::new()),
        Err(problems) => (None, problems),
    }
}

/// Reads and checks a `kind: monitor` document: what loads, and every problem.
fn parse_monitor(file: &Path, text: &str) -> (Option<MonitorDoc>, Vec<Diagnostic>) {
    let text = strip_bom(text);
    let src = Source::new(file, text);
    let options = yaml_error::options(DuplicateKeyPolicy::PassThrough);
    match serde_saphyr::from_str_with_options::<Spanned<RawDoc>>(text, options) {
        Ok(doc) => super::monitor::check::check(&src, doc),
        Err(err) => (None, vec![yaml_problem::<RawDoc>(&src, text, &err)]),
    }
}

/// Parses and checks one document, of the kind its `kind:` names.
fn parse_document(file: &Path, text: &str) -> Result<Parsed, Vec<Diagnostic>> {
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![too_large(file, text.len() as u64)]);
    }
    let text = strip_bom(text);
    let src = Source::new(file, text);
    let options = yaml_error::options(DuplicateKeyPolicy::PassThrough);
    if is_blank(text) {
        return Err(vec![src.diag(1, 1, EMPTY_FILE)]);
    }
    if is_kind(text, "monitor") {
        return match parse_monitor(file, text) {
            (Some(doc), problems) if problems.is_empty() => Ok(Parsed::Monitor(doc)),
            (_, problems) => Err(problems),
        };
    }
    if is_kind(text, "supervisor") {
        return match serde_saphyr::from_str_with_options::<Spanned<RawSupervisor>>(text, options) {
            Ok(doc) => super::supervisor::check::check(&src, doc).map(Parsed::Supervisor),
            Err(err) => {
                Err(vec![too_deep(&src, text, &err).unwrap_or_else(|| {
                    yaml_problem::<RawSupervisor>(&src, text, &err)
                })])
            }
        };
    }
    // Everything else is read as a workflow, whose checks also explain a missing, misspelt
    // or unsupported `kind`. A supervisor document nested too deep for the parser is read here
    // too (its `kind` could not be read either), and still gets the nesting rule.
    match serde_saphyr::from_str_with_options::<Spanned<RawWorkflow>>(text, options) {
        Ok(doc) => check::check(&src, doc).map(|(spec, at)| Parsed::Workflow(spec, at)),
        Err(err) => {
            Err(vec![too_deep(&src, text, &err).unwrap_or_else(|| {
                yaml_problem::<RawWorkflow>(&src, text, &err)
            })])
        }
    }
}

/// True when the document says `kind: KIND` (a document that does not parse far enough to
/// tell is read as a workflow, which reports why).
fn is_kind(text: &str, kind: &str) -> bool {
    let options = yaml_error::options(DuplicateKeyPolicy::PassThrough);
    matches!(
        serde_saphyr::from_str_with_options::<KindProbe>(text, options),
        Ok(KindProbe { kind: Some(k) }) if k.value == kind
    )
}

/// The one diagnostic for a document the YAML layer rejected when read as a `T`.
fn yaml_problem<T: DeserializeOwned>(src: &Source<'_>, text: &str, err: &Error) -> Diagnostic {
    // A document of another kind fails as a workflow; say what is really wrong.
    let options = yaml_error::options(DuplicateKeyPolicy::PassThrough);
    if let Ok(KindProbe { kind: Some(kind) }) = serde_saphyr::from_str_with_options(text, options)
        && let Some(problem) = check::kind_problem(&kind.value)
    {
        return src.at(&kind.referenced, problem);
    }
    match located(err) {
        Some(loc) => src.at(&loc, yaml_error::message(err)),
        None => strict_reparse::<T>(src, text)
            .unwrap_or_else(|| src.diag(0, 0, yaml_error::message(err))),
    }
}

/// When the YAML layer refused a document as nested too deep, and that is because supervisors
/// are nested beyond their own limit (`children` within `children`, which only a supervisor
/// document has): that rule, where it is first broken.
fn too_deep(src: &Source<'_>, text: &str, err: &Error) -> Option<Diagnostic> {
    let Error::Budget {
        breach: BudgetBreach::Depth { .. },
        ..
    } = yaml_error::original(err)
    else {
        return None;
    };
    let options = yaml_error::options(DuplicateKeyPolicy::PassThrough);
    let at = super::supervisor::nesting::too_deep(text, options)?;
    Some(src.at(&at, super::supervisor::nesting::message()))
}

/// The error's location, unless it is unknown.
fn located(err: &Error) -> Option<Location> {
    err.location().filter(|l| l.line() > 0)
}

/// Some errors (a repeated key of a fixed mapping) carry no location when duplicate keys are
/// passed through; parsing again with duplicates as errors finds it.
fn strict_reparse<T: DeserializeOwned>(src: &Source<'_>, text: &str) -> Option<Diagnostic> {
    let options = yaml_error::options(DuplicateKeyPolicy::Error);
    let err = serde_saphyr::from_str_with_options::<Spanned<T>>(text, options).err()?;
    let loc = located(&err)?;
    Some(src.at(&loc, yaml_error::message(&err)))
}

/// True when `text` holds nothing but whitespace, comments and document markers.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}
