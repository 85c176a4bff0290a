//! The workflows directory as files: listing and hashing them, loading them all, watching for
//! changes, and writing a file so that a crash or a concurrent reader never sees half of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use notify::Watcher;
use sha2::{Digest, Sha256};

use super::{Catalog, Diagnostic, is_workflow_file};

/// Result of rescanning the workflows directory.
pub struct Scan {
    /// The valid workflows.
    pub catalog: Catalog,
    /// Every problem found.
    pub problems: Vec<Diagnostic>,
    /// The content hash of every workflow file (see [`hash_files`]).
    pub hashes: HashMap<PathBuf, [u8; 32]>,
}

/// Content hash of every workflow file in `dir`, read as the loader reads them (only regular
/// files, size-capped: a FIFO or a link to `/dev/zero` must not hang or bloat a reload). A file
/// that cannot be read is still listed, by a hash of why, so that it counts as present (its
/// workflows keep their last good version) and a change of what is wrong shows as a change.
pub fn hash_files(dir: &Path) -> HashMap<PathBuf, [u8; 32]> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_workflow_file(p))
        .map(|p| {
            let hash = match super::read_file_bytes(&p) {
                Ok(bytes) => Sha256::digest(&bytes).into(),
                Err(problem) => Sha256::digest(format!("unreadable: {}", problem.message)).into(),
            };
            (p, hash)
        })
        .collect()
}

/// Loads every workflow file of `dir`, with the hashes of what was loaded; the names in
/// `owners` stay with their files (see [`super::reload_dir`]).
pub fn scan(dir: &Path, owners: &super::Owners) -> Scan {
    // Hash first: a file changing while it is loaded then shows up as a change next time.
    let hashes = hash_files(dir);
    let (catalog, problems) = super::reload_dir(dir, owners);
    Scan {
        catalog,
        problems,
        hashes,
    }
}

/// Watches `dir` and calls `changed` when something in it changes (reads do not count);
/// `None` (logged) when the platform refuses, in which case specs are only reloaded by a save
/// through the principal. The watch lasts as long as the returned watcher.
pub fn watch(
    dir: &Path,
    changed: impl Fn() + Send + 'static,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            changed();
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
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Why a file name given for a new or saved workflow file is refused, if it is.
pub fn check_file_name(file: &str) -> Option<String> {
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
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
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
pub fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
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
