//! YAML documents in `workflows/` -> validated specs.
//!
//! Every problem is reported as a [`Diagnostic`] (`file:line:col: message` plus the offending
//! source line), and as many problems per file as can be found are reported together.

mod check;
pub mod dir;
mod duration;
mod file;
pub mod limits;
mod load;
mod monitor;
mod raw;
pub mod size;
mod source;
mod suggest;
mod supervisor;
pub mod template;
mod types;
mod yaml_error;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::protocol::Diagnostic;
pub use monitor::{MaintenanceWindow, MonitorDoc, MonitorId, MonitorSet, MonitorView, Thresholds};
pub use suggest::did_you_mean;
pub use supervisor::SupervisorDraft;
pub use supervisor::types::*;
pub use template::{RenderContext, Template, TemplateError};
pub use types::*;

/// Largest workflow file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// All validated workflows and supervisors by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Workflows keyed by their unique name.
    pub workflows: BTreeMap<String, Arc<WorkflowSpec>>,
    /// Every `kind: supervisor` document keyed by its unique name (a name may also be a
    /// workflow's), nested ones included: see [`Catalog::supervisor_roots`].
    pub supervisors: BTreeMap<String, Arc<SupervisorSpec>>,
    /// Every monitor (`kind: monitor` documents, fleets expanded on access).
    pub monitors: Arc<MonitorSet>,
}

impl Catalog {
    /// The workflow called `name`, if it was loaded.
    pub fn get(&self, name: &str) -> Option<&Arc<WorkflowSpec>> {
        self.workflows.get(name)
    }

    /// The supervisors started on their own: those no other supervisor uses as a child.
    pub fn supervisor_roots(&self) -> impl Iterator<Item = &Arc<SupervisorSpec>> {
        self.supervisors.values().filter(|s| s.is_root())
    }
}

/// Which file defines each name now: on a reload, that file keeps the name, and another file
/// that defines it too is refused (a new file never takes over a running tree or workflow).
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Workflow name -> its file.
    pub workflows: HashMap<String, PathBuf>,
    /// Supervisor name -> its file.
    pub supervisors: HashMap<String, PathBuf>,
}

impl Catalog {
    /// The files that define this catalog's names, for the next reload.
    pub fn owners(&self) -> Owners {
        Owners {
            workflows: self
                .workflows
                .iter()
                .map(|(name, w)| (name.clone(), w.file.clone()))
                .collect(),
            supervisors: self
                .supervisors
                .iter()
                .map(|(name, s)| (name.clone(), s.file.clone()))
                .collect(),
        }
    }
}

/// One document, validated on its own.
#[derive(Debug, Clone)]
pub enum Document {
    /// A `kind: workflow` document.
    Workflow(WorkflowSpec),
    /// A `kind: supervisor` document; its uses of other supervisor documents by name are
    /// checked only when the whole directory is loaded.
    Supervisor(SupervisorDraft),
    /// A `kind: monitor` document (one monitor, a list, or a fleet); the monitors it names
    /// are looked up only when the whole directory is loaded.
    Monitor(MonitorDoc),
}

impl Document {
    /// The document's name.
    pub fn name(&self) -> &str {
        match self {
            Document::Workflow(w) => &w.name,
            Document::Supervisor(s) => s.name(),
            Document::Monitor(m) => m.name(),
        }
    }
}

/// Loads every `*.yaml` / `*.yml` file in `dir` (sorted, not recursive). A workflow with
/// problems is left out of the catalog; all problems are returned.
/// Two files that define the same name: the first in sorted order keeps it.
pub fn load_dir(dir: &Path) -> (Catalog, Vec<Diagnostic>) {
    load::load_dir(dir, &Owners::default())
}

/// [`load_dir`] for a reload: a name that `owners` gives to a file of `dir` stays with that
/// file, even while the file has problems; another file that defines it is refused with the
/// problem at its own name. Names without an owner go by sorted order, as on a first load.
pub fn reload_dir(dir: &Path, owners: &Owners) -> (Catalog, Vec<Diagnostic>) {
    load::load_dir(dir, owners)
}

/// Same as [`load_dir`] for explicit files (or directories among them).
pub fn load_paths(paths: &[PathBuf]) -> (Catalog, Vec<Diagnostic>) {
    load::load_paths(paths)
}

/// The bytes of the workflow file at `path`, read only if it is a regular file (or a symbolic
/// link to one) of at most [`MAX_FILE_BYTES`]; never blocks on a FIFO, never reads a device.
/// Every reader of workflow files goes through this (or [`read_file`]).
pub fn read_file_bytes(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    file::read_bytes(path)
}

/// [`read_file_bytes`] as UTF-8 text.
pub fn read_file(path: &Path) -> Result<String, Diagnostic> {
    file::read_text(path)
}

/// SHA-256 of a file's content in lower-case hex: what the editor's saves are based on.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// True for names the workflows directory loads: `*.yaml` / `*.yml`, not hidden.
pub fn is_workflow_file(path: &Path) -> bool {
    load::is_workflow_file(path)
}

/// Validates one workflow document's text; `file` is only for messages. A document of
/// another kind is a problem here: use [`parse_document`] to accept every kind.
pub fn parse_str(file: &Path, text: &str) -> Result<WorkflowSpec, Vec<Diagnostic>> {
    load::parse_str(file, text)
}

/// Validates one document of any kind (what the editor checks on save); `file` is only for
/// messages. Supervisors used by name are not looked up (that needs the other files).
pub fn parse_document(file: &Path, text: &str) -> Result<Document, Vec<Diagnostic>> {
    load::parse_any(file, text)
}

/// Parses `250ms`, `30s`, `5m`, `1h`, `1h30m`, `1.5s`; the error text names the accepted forms.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    duration::parse_duration(s)
}

#[cfg(test)]
mod tests;
