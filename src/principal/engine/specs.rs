//! Workflow files at run time, as the engine serves them: listing, reading and saving them, and
//! hot reload when the workflows directory changes (the files themselves: `spec::dir`). Running work keeps the spec it started with.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Engine, Internal};
use crate::protocol::Event;
use crate::protocol::api::{ApiError, ApiErrorKind, Response, TaskNode, WorkflowInfo};
use crate::spec::dir::{Scan, check_file_name, file_name, scan, write_atomically, write_new};
use crate::spec::{Diagnostic, WorkflowSpec};

/// How long file events are collected before a rescan (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);

fn info(spec: &WorkflowSpec) -> (String, Option<String>, Vec<TaskNode>) {
    let tasks = spec
        .tasks
        .iter()
        .map(|t| TaskNode {
            name: t.name.clone(),
            depends_on: spec.parent_names(t),
        })
        .collect();
    (
        file_name(&spec.file),
        spec.schedule.as_ref().map(|s| s.expr.clone()),
        tasks,
    )
}

/// Where `name:` is written in `text`, for a diagnostic about the workflow's name.
fn name_position(text: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, line)| {
            let rest = line.strip_prefix("name:")?;
            let col = 6 + rest.len() - rest.trim_start().len();
            Some((i + 1, col))
        })
        .unwrap_or((0, 0))
}

/// Why a save based on `base_hash` must not replace what is at `path` now, if it must not.
fn conflict(file: &str, path: &Path, base_hash: Option<&str>) -> Option<Response> {
    let exists = std::fs::symlink_metadata(path).is_ok();
    let Some(base) = base_hash else {
        return exists.then(|| {
            Response::Error(ApiError::new(
                ApiErrorKind::Conflict,
                format!(
                    "file exists: {file} is already in the workflows directory and a new file \
                     never replaces one: choose another name, or open the existing file to edit it"
                ),
            ))
        });
    };
    if !exists {
        return Some(Response::SpecConflict {
            file: file.to_string(),
            message: format!("{file} was deleted since it was opened"),
            hash: None,
            text: None,
        });
    }
    match crate::spec::read_file_bytes(path) {
        Ok(bytes) => {
            let now = crate::spec::content_hash(&bytes);
            (now != base).then(|| Response::SpecConflict {
                file: file.to_string(),
                message: format!("{file} changed on disk since it was opened"),
                hash: Some(now),
                text: String::from_utf8(bytes).ok(),
            })
        }
        Err(problem) => Some(Response::Error(ApiError::new(
            ApiErrorKind::Conflict,
            format!("not saved: {problem}"),
        ))),
    }
}

/// The workflows directory as the engine last loaded it.
pub(super) struct Files {
    /// Where the catalog comes from, watched for changes.
    pub workflows_dir: Option<PathBuf>,
    /// Problems of the workflow files as last loaded.
    pub spec_problems: Vec<Diagnostic>,
    /// Content hash of each workflow file as last loaded, to tell real changes from noise.
    pub spec_hashes: std::collections::HashMap<PathBuf, [u8; 32]>,
    /// A rescan is scheduled (debouncing bursts of file events).
    pub reload_scheduled: bool,
    /// Keeps the directory watch alive.
    pub _watcher: Option<notify::RecommendedWatcher>,
    /// Where reloaded monitors go (the monitor actor), once one runs.
    pub monitor_reloads: Option<tokio::sync::watch::Sender<Arc<crate::spec::MonitorSet>>>,
}

impl Engine {
    /// The monitors loaded now, and where reloaded ones will be sent (for the monitor actor).
    pub(crate) fn monitor_reloads(
        &mut self,
    ) -> (
        Arc<crate::spec::MonitorSet>,
        tokio::sync::watch::Receiver<Arc<crate::spec::MonitorSet>>,
    ) {
        let set = self.catalog.monitors.clone();
        let (tx, rx) = tokio::sync::watch::channel(set.clone());
        self.files.monitor_reloads = Some(tx);
        (set, rx)
    }

    pub(super) fn workflows(&self) -> Response {
        let now = Utc::now();
        let workflows = self
            .catalog
            .workflows
            .values()
            .map(|spec| {
                let (file, schedule, tasks) = info(spec);
                WorkflowInfo {
                    name: spec.name.clone(),
                    description: spec.description.clone(),
                    file,
                    params: spec.params.clone(),
                    tasks,
                    schedule,
                    paused: self.scheduler.is_paused(&spec.name),
                    next_fires: self.scheduler.upcoming(&spec.name, now, 3),
                }
            })
            .collect();
        Response::Workflows { workflows }
    }

    pub(super) fn get_spec(&self, workflow: &str) -> Response {
        let Some(spec) = self.catalog.get(workflow) else {
            return Response::Error(ApiError::new(
                ApiErrorKind::NotFound,
                format!("no workflow `{workflow}` is loaded"),
            ));
        };
        // The same bounded reader as loading: the file may have been replaced by anything.
        match crate::spec::read_file(&spec.file) {
            Ok(text) => Response::Spec {
                file: file_name(&spec.file),
                hash: Some(crate::spec::content_hash(text.as_bytes())),
                text,
            },
            Err(problem) => Response::Error(ApiError::new(
                ApiErrorKind::Unavailable,
                problem.to_string(),
            )),
        }
    }

    pub(super) async fn put_spec(
        &mut self,
        file: &str,
        text: &str,
        base_hash: Option<&str>,
    ) -> Response {
        let Some(dir) = self.files.workflows_dir.clone() else {
            return Response::Error(ApiError::new(
                ApiErrorKind::Unavailable,
                "this principal was started without a workflows directory",
            ));
        };
        if let Some(why) = check_file_name(file) {
            return Response::Error(ApiError::new(ApiErrorKind::InvalidInput, why));
        }
        let path = dir.join(file);
        // Before validating: "someone else changed this file" matters more than typos.
        if let Some(refused) = conflict(file, &path, base_hash) {
            return refused;
        }
        let document = match crate::spec::parse_document(&path, text) {
            Ok(document) => document,
            Err(problems) => return Response::SpecRejected { problems },
        };
        let (kind, name) = match &document {
            crate::spec::Document::Workflow(w) => ("workflow", w.name.clone()),
            crate::spec::Document::Supervisor(s) => ("supervisor", s.name().to_string()),
            crate::spec::Document::Monitor(m) => ("monitor", m.name().to_string()),
        };
        let elsewhere = match &document {
            crate::spec::Document::Workflow(_) => self
                .catalog
                .get(&name)
                .map(|other| file_name(&other.file))
                .filter(|f| f != file),
            crate::spec::Document::Supervisor(_) => self
                .catalog
                .supervisors
                .get(&name)
                .map(|other| file_name(&other.file))
                .filter(|f| f != file),
            crate::spec::Document::Monitor(_) => self
                .catalog
                .monitors
                .get(&name)
                .map(|other| file_name(other.file()))
                .filter(|f| f != file),
        };
        if let Some(other_file) = elsewhere {
            let (line, col) = name_position(text);
            return Response::SpecRejected {
                problems: vec![Diagnostic {
                    file: path,
                    line,
                    col,
                    message: format!(
                        "{kind} `{name}` is already defined in {other_file}: choose another name"
                    ),
                    source_line: (line > 0)
                        .then(|| text.lines().nth(line - 1).map(str::to_string))
                        .flatten(),
                }],
            };
        }
        let written = match base_hash {
            Some(_) => write_atomically(&path, text),
            None => write_new(&path, text),
        };
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Response::Error(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!(
                        "file exists: {file} was created a moment ago by someone else and was \
                         not replaced: choose another name, or open that file to edit it"
                    ),
                ));
            }
            Err(e) => {
                return Response::Error(ApiError::new(
                    ApiErrorKind::Unavailable,
                    format!("cannot write {}: {e}", path.display()),
                ));
            }
        }
        // Reload now rather than waiting for the watcher, so the answer reflects the change.
        let owners = self.catalog.owners();
        let scan = match tokio::task::spawn_blocking(move || scan(&dir, &owners)).await {
            Ok(scan) => scan,
            Err(e) => {
                return Response::Error(ApiError::new(ApiErrorKind::Internal, e.to_string()));
            }
        };
        self.apply_scan(scan).await;
        let workflows = self
            .catalog
            .workflows
            .values()
            .filter(|s| file_name(&s.file) == file)
            .map(|s| s.name.clone())
            .collect();
        Response::SpecSaved {
            file: file.to_string(),
            workflows,
            hash: Some(crate::spec::content_hash(text.as_bytes())),
        }
    }

    pub(super) fn files_changed(&mut self) {
        if self.files.reload_scheduled || self.files.workflows_dir.is_none() {
            return;
        }
        self.files.reload_scheduled = true;
        self.set_timer(DEBOUNCE, super::Timer::ReloadDue);
    }

    pub(super) fn reload_due(&mut self) {
        self.files.reload_scheduled = false;
        let Some(dir) = self.files.workflows_dir.clone() else {
            return;
        };
        let tx = self.internal_tx.clone();
        // The files that define the names now keep them: a new file never takes over.
        let owners = self.catalog.owners();
        tokio::spawn(async move {
            if let Ok(scan) = tokio::task::spawn_blocking(move || scan(&dir, &owners)).await {
                let _ = tx.send(Internal::Loaded(Box::new(scan)));
            }
        });
    }

    /// Takes a rescan into effect: valid workflows replace their old versions, a workflow whose
    /// file now has problems keeps its last good version, a deleted file's workflows go away.
    /// Runs already started keep the spec they started with.
    pub(super) async fn apply_scan(&mut self, scan: Scan) {
        if scan.hashes == self.files.spec_hashes && scan.problems == self.files.spec_problems {
            return; // touched, or our own write already applied
        }
        let broken: BTreeSet<&Path> = scan.problems.iter().map(|d| d.file.as_path()).collect();
        let mut catalog = scan.catalog;
        for (name, old) in &self.catalog.workflows {
            let file_still_there = scan.hashes.contains_key(&old.file);
            if !catalog.workflows.contains_key(name)
                && file_still_there
                && broken.contains(old.file.as_path())
            {
                catalog.workflows.insert(name.clone(), old.clone());
            }
        }
        // A supervisor whose file is broken keeps running as it was, like a workflow.
        for (name, old) in &self.catalog.supervisors {
            let file_still_there = scan.hashes.contains_key(&old.file);
            if !catalog.supervisors.contains_key(name)
                && file_still_there
                && broken.contains(old.file.as_path())
            {
                catalog.supervisors.insert(name.clone(), old.clone());
            }
        }
        // Monitors too: a group whose document or CSV file is broken, and that the new set has
        // nothing from, keeps its last good monitors while the document is there.
        let new_sources = catalog.monitors.sources();
        let keep: BTreeSet<(&Path, &Path)> = self
            .catalog
            .monitors
            .sources()
            .into_iter()
            .filter(|&(doc, rows)| {
                (broken.contains(doc) || broken.contains(rows))
                    && scan.hashes.contains_key(doc)
                    && !new_sources.contains(&(doc, rows))
            })
            .collect();
        drop(new_sources);
        if !keep.is_empty() {
            let fresh = std::mem::take(Arc::make_mut(&mut catalog.monitors));
            catalog.monitors = Arc::new(fresh.keeping(&self.catalog.monitors, &keep));
        }
        let changed_files: BTreeSet<&PathBuf> = scan
            .hashes
            .iter()
            .filter(|(p, h)| self.files.spec_hashes.get(*p) != Some(h))
            .map(|(p, _)| p)
            .chain(
                self.files
                    .spec_hashes
                    .keys()
                    .filter(|p| !scan.hashes.contains_key(*p)),
            )
            .collect();
        let mut changed: Vec<String> = Vec::new();
        for (name, spec) in &catalog.workflows {
            match self.catalog.get(name) {
                Some(old) if Arc::ptr_eq(old, spec) => {}
                Some(old) if !changed_files.contains(&spec.file) && old.file == spec.file => {}
                _ => changed.push(name.clone()),
            }
        }
        changed.extend(
            self.catalog
                .workflows
                .keys()
                .filter(|n| !catalog.workflows.contains_key(*n))
                .cloned(),
        );
        changed.sort();
        for name in &changed {
            self.dags.remove(name);
        }
        // Unchanged workflows keep their Arc, so nothing downstream sees a difference.
        for (name, spec) in catalog.workflows.iter_mut() {
            if !changed.contains(name)
                && let Some(old) = self.catalog.get(name)
            {
                *spec = old.clone();
            }
        }
        let supervisors_changed = catalog.supervisors.len() != self.catalog.supervisors.len()
            || catalog.supervisors.iter().any(|(name, s)| {
                changed_files.contains(&s.file)
                    || self
                        .catalog
                        .supervisors
                        .get(name)
                        .is_none_or(|o| o.file != s.file)
            })
            || self
                .catalog
                .supervisors
                .values()
                .any(|s| changed_files.contains(&s.file));
        if let Some(tx) = &self.files.monitor_reloads
            && !Arc::ptr_eq(&self.catalog.monitors, &catalog.monitors)
        {
            let _ = tx.send(catalog.monitors.clone());
        }
        self.catalog = catalog;
        self.files.spec_hashes = scan.hashes;
        if supervisors_changed && !self.shutting_down && !self.one_off {
            self.reload_services().await;
        }
        self.scheduler
            .set_workflows(self.catalog.workflows.values().cloned(), Utc::now());
        let problems_changed = scan.problems != self.files.spec_problems;
        self.files.spec_problems = scan.problems;
        let at = self.clock.now();
        if !changed.is_empty() {
            tracing::info!(workflows = ?changed, "workflow files reloaded");
            self.emit(Event::SpecsReloaded {
                workflows: changed,
                at,
            })
            .await;
        }
        // Also when they went away: listeners that showed them must learn they are gone.
        if problems_changed {
            let at = self.clock.now();
            for p in &self.files.spec_problems {
                tracing::warn!("{p}");
            }
            self.emit(Event::SpecProblems {
                problems: self.files.spec_problems.clone(),
                at,
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_position_points_at_the_value() {
        assert_eq!(name_position("kind: workflow\nname:   etl\n"), (2, 9));
        assert_eq!(name_position("tasks: []\n"), (0, 0));
    }
}
