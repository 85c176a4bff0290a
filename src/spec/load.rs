//! Reading workflow files and directories into a [`Catalog`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_saphyr::{DuplicateKeyPolicy, Error, Location, Spanned};

use super::file::{file_diag, read_text, too_large};
use super::raw::{KindProbe, RawWorkflow};
use super::source::Source;
use super::supervisor::raw::RawSupervisor;
use super::supervisor::{SupervisorDraft, diag_at};
use super::{Catalog, Diagnostic, Document, MAX_FILE_BYTES, WorkflowSpec, check, yaml_error};

const EMPTY_FILE: &str = "empty file: a workflow file starts with `kind: workflow`";

/// See [`super::load_dir`].
pub fn load_dir(dir: &Path) -> (Catalog, Vec<Diagnostic>) {
    let mut loader = Loader::default();
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
        Parsed::Supervisor(_) => {
            let message = "this is a `kind: supervisor` document, where a workflow is expected";
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
}

#[derive(Default)]
struct Loader {
    catalog: Catalog,
    diags: Vec<Diagnostic>,
    /// Files already read (so a file named twice is loaded once).
    seen: HashSet<PathBuf>,
    /// Supervisor documents by name, resolved together by [`Loader::finish`].
    supervisors: Vec<SupervisorDraft>,
}

impl Loader {
    /// Resolves the supervisors used by name (across files) and returns what was loaded.
    fn finish(mut self) -> (Catalog, Vec<Diagnostic>) {
        let (supervisors, mut problems) = super::supervisor::resolve::resolve(self.supervisors);
        self.catalog.supervisors = supervisors;
        self.diags.append(&mut problems);
        (self.catalog, self.diags)
    }

    /// Adds `draft` unless another supervisor document has its name.
    fn add_supervisor(&mut self, draft: SupervisorDraft) {
        if let Some(first) = self.supervisors.iter().find(|s| s.name() == draft.name()) {
            let message = format!(
                "supervisor `{}` is already defined in {}: supervisor names must be unique",
                draft.name(),
                first.file().display()
            );
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
        for file in files {
            self.file(&file);
        }
    }

    fn file(&mut self, path: &Path) {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if !self.seen.insert(key) {
            return;
        }
        let text = match read_text(path) {
            Ok(text) => text,
            Err(d) => return self.diags.push(d),
        };
        match parse_document(path, &text) {
            Ok(Parsed::Workflow(spec, name_at)) => self.add(spec, &text, name_at),
            Ok(Parsed::Supervisor(draft)) => self.add_supervisor(draft),
            Err(mut d) => self.diags.append(&mut d),
        }
    }

    /// Adds `spec` unless its name is taken; `name_at` is where its name is written.
    fn add(&mut self, spec: WorkflowSpec, text: &str, name_at: Location) {
        if let Some(first) = self.catalog.workflows.get(&spec.name) {
            let message = format!(
                "workflow `{}` is already defined in {}: workflow names must be unique",
                spec.name,
                first.file.display()
            );
            let src = Source::new(&spec.file, strip_bom(text));
            self.diags.push(src.at(&name_at, message));
            return;
        }
        self.catalog
            .workflows
            .insert(spec.name.clone(), Arc::new(spec));
    }
}

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
    if is_supervisor(text) {
        return match serde_saphyr::from_str_with_options::<Spanned<RawSupervisor>>(text, options) {
            Ok(doc) => super::supervisor::check::check(&src, doc).map(Parsed::Supervisor),
            Err(err) => Err(vec![yaml_problem::<RawSupervisor>(&src, text, &err)]),
        };
    }
    // Everything else is read as a workflow, whose checks also explain a missing, misspelt
    // or unsupported `kind`.
    match serde_saphyr::from_str_with_options::<Spanned<RawWorkflow>>(text, options) {
        Ok(doc) => check::check(&src, doc).map(|(spec, at)| Parsed::Workflow(spec, at)),
        Err(err) => Err(vec![yaml_problem::<RawWorkflow>(&src, text, &err)]),
    }
}

/// True when the document says `kind: supervisor` (a document that does not parse far
/// enough to tell is read as a workflow, which reports why).
fn is_supervisor(text: &str) -> bool {
    let options = yaml_error::options(DuplicateKeyPolicy::PassThrough);
    matches!(
        serde_saphyr::from_str_with_options::<KindProbe>(text, options),
        Ok(KindProbe { kind: Some(kind) }) if kind.value == "supervisor"
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
