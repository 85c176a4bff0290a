//! Workflow files at run time: listing, reading and writing them, and hot reload when the
//! workflows directory changes. Running work keeps the spec it started with.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use notify::Watcher;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Engine, Internal};
use crate::protocol::Event;
use crate::protocol::api::{ApiError, ApiErrorKind, Response, TaskNode, WorkflowInfo};
use crate::spec::{Catalog, Diagnostic, WorkflowSpec};

/// How long file events are collected before a rescan (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Result of rescanning the workflows directory.
pub(super) struct Scan {
    catalog: Catalog,
    problems: Vec<Diagnostic>,
    hashes: HashMap<PathBuf, [u8; 32]>,
}

fn is_workflow_file(path: &Path) -> bool {
    crate::spec::is_workflow_file(path)
}

/// Content hash of every workflow file in `dir`, read as the loader reads them (only regular
/// files, size-capped: a FIFO or a link to `/dev/zero` must not hang or bloat a reload). A file
/// that cannot be read is still listed, by a hash of why, so that it counts as present (its
/// workflows keep their last good version) and a change of what is wrong shows as a change.
pub(super) fn hash_files(dir: &Path) -> HashMap<PathBuf, [u8; 32]> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_workflow_file(p))
        .map(|p| {
            let hash = match crate::spec::read_file_bytes(&p) {
                Ok(bytes) => Sha256::digest(&bytes).into(),
                Err(problem) => Sha256::digest(format!("unreadable: {}", problem.message)).into(),
            };
            (p, hash)
        })
        .collect()
}

fn scan(dir: &Path) -> Scan {
    // Hash first: a file changing while it is loaded then shows up as a change next time.
    let hashes = hash_files(dir);
    let (catalog, problems) = crate::spec::load_dir(dir);
    Scan {
        catalog,
        problems,
        hashes,
    }
}

/// Watches `dir` and tells the engine when something in it changes; `None` (logged) when the
/// platform refuses, in which case specs are only reloaded by `PutSpec`.
pub(super) fn watch(
    dir: &Path,
    tx: mpsc::UnboundedSender<Internal>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(Internal::FilesChanged);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch {}: {e}; edits need a restart", dir.display());
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!("cannot watch {}: {e}; edits need a restart", dir.display());
        return None;
    }
    Some(watcher)
}

/// The file's name relative to the workflows directory, as faces show it.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

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

/// Why a `PutSpec` file name is refused, if it is.
fn check_file_name(file: &str) -> Option<String> {
    let path = Path::new(file);
    let plain = path.components().count() == 1
        && !file.starts_with('.')
        && matches!(
            path.components().next(),
            Some(std::path::Component::Normal(_))
        );
    if !plain {
        return Some(format!(
            "`{file}` is not a plain file name: workflow files live directly in the workflows \
             directory (e.g. `nightly.yaml`)"
        ));
    }
    if !is_workflow_file(path) {
        return Some(format!(
            "`{file}` does not end in .yaml or .yml, so it would not be loaded"
        ));
    }
    None
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

/// A temporary file beside `path` holding `text`, synced; the caller moves it into place.
/// Created fresh (never through something already at that name) with `mode` less the umask.
fn write_temp(path: &Path, text: &str, mode: u32) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.{}.tmp", file_name(path), std::process::id()));
    // Left over from a crash; a stale entry (even a planted link) is removed, not followed.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((tmp, f))
}

/// Makes a directory entry change durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Replaces the existing file `path` with `text` so that readers see the old or the new
/// content, never a mix. A symbolic link stays a link: its target is what is replaced (the
/// temporary file is written in the target's directory so the rename stays on one file
/// system). The file keeps its permissions (a 0600 file stays 0600) and, where allowed, its
/// owner.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let is_link = std::fs::symlink_metadata(path)?.file_type().is_symlink();
    let target = if is_link {
        std::fs::canonicalize(path)?
    } else {
        path.to_path_buf()
    };
    let old = std::fs::metadata(&target)?;
    // Owner-only until it has the old file's mode: it may be a 0600 file's new content.
    let (tmp, f) = write_temp(&target, text, 0o600)?;
    let result = (|| {
        f.set_permissions(old.permissions())?;
        // Only root may give a file away; for anyone else it is already theirs or fails.
        let _ = std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()));
        std::fs::rename(&tmp, &target)?;
        // The rename itself must survive a crash too.
        sync_dir(&target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` holding `text`, atomically, failing with `AlreadyExists` when anything is
/// at that name (a new file never replaces one, even one created a moment ago).
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    // The mode a plain create gives.
    let (tmp, _f) = write_temp(path, text, 0o666)?;
    let result = (|| {
        // A hard link, unlike a rename, never replaces what is there.
        std::fs::hard_link(&tmp, path)?;
        std::fs::remove_file(&tmp)?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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

impl Engine {
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
        let Some(dir) = self.workflows_dir.clone() else {
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
        let spec = match crate::spec::parse_str(&path, text) {
            Ok(spec) => spec,
            Err(problems) => return Response::SpecRejected { problems },
        };
        if let Some(other) = self.catalog.get(&spec.name)
            && file_name(&other.file) != file
        {
            let (line, col) = name_position(text);
            return Response::SpecRejected {
                problems: vec![Diagnostic {
                    file: path,
                    line,
                    col,
                    message: format!(
                        "workflow `{}` is already defined in {}: choose another name",
                        spec.name,
                        file_name(&other.file)
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
        let scan = match tokio::task::spawn_blocking(move || scan(&dir)).await {
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
        if self.reload_scheduled || self.workflows_dir.is_none() {
            return;
        }
        self.reload_scheduled = true;
        self.set_timer(DEBOUNCE, super::Timer::ReloadDue);
    }

    pub(super) fn reload_due(&mut self) {
        self.reload_scheduled = false;
        let Some(dir) = self.workflows_dir.clone() else {
            return;
        };
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            if let Ok(scan) = tokio::task::spawn_blocking(move || scan(&dir)).await {
                let _ = tx.send(Internal::Loaded(Box::new(scan)));
            }
        });
    }

    /// Takes a rescan into effect: valid workflows replace their old versions, a workflow whose
    /// file now has problems keeps its last good version, a deleted file's workflows go away.
    /// Runs already started keep the spec they started with.
    pub(super) async fn apply_scan(&mut self, scan: Scan) {
        if scan.hashes == self.spec_hashes && scan.problems == self.spec_problems {
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
        let changed_files: BTreeSet<&PathBuf> = scan
            .hashes
            .iter()
            .filter(|(p, h)| self.spec_hashes.get(*p) != Some(h))
            .map(|(p, _)| p)
            .chain(
                self.spec_hashes
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
        self.catalog = catalog;
        self.spec_hashes = scan.hashes;
        self.scheduler
            .set_workflows(self.catalog.workflows.values().cloned(), Utc::now());
        let problems_changed = scan.problems != self.spec_problems;
        self.spec_problems = scan.problems;
        let at = self.clock.now();
        if !changed.is_empty() {
            tracing::info!(workflows = ?changed, "workflow files reloaded");
            self.emit(Event::SpecsReloaded {
                workflows: changed,
                at,
            })
            .await;
        }
        if problems_changed && !self.spec_problems.is_empty() {
            let at = self.clock.now();
            for p in &self.spec_problems {
                tracing::warn!("{p}");
            }
            self.emit(Event::SpecProblems {
                problems: self.spec_problems.clone(),
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
    fn file_names_must_be_plain_yaml_files() {
        assert_eq!(check_file_name("nightly.yaml"), None);
        assert_eq!(check_file_name("a.yml"), None);
        for bad in [
            "../x.yaml",
            "sub/x.yaml",
            "/etc/x.yaml",
            ".hidden.yaml",
            "x.txt",
            "",
        ] {
            assert!(check_file_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn name_position_points_at_the_value() {
        assert_eq!(name_position("kind: workflow\nname:   etl\n"), (2, 9));
        assert_eq!(name_position("tasks: []\n"), (0, 0));
    }

    #[test]
    fn atomic_write_replaces_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        write_new(&path, "one").unwrap();
        write_atomically(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_new_file_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        write_new(&path, "first").unwrap();
        let err = write_new(&path, "second").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_save_keeps_the_mode_and_writes_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("real.yaml");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("a.yaml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomically(&link, "new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 1);
    }
}
