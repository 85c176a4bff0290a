//! Reading one workflow file without trusting what sits at its path.
//!
//! Anything can be dropped into `workflows/`: a FIFO (opening it blocks until someone writes),
//! a symbolic link to `/dev/zero` (reading it never ends), a socket, a device, a directory
//! whose name ends in `.yaml`, a multi-gigabyte log. Every reader of workflow files (loading,
//! hashing for hot reload, the editor's `GetSpec`, the conflict check of `PutSpec`) goes
//! through [`read_bytes`], which reads only regular files (a symbolic link to one is fine) and
//! at most [`MAX_FILE_BYTES`] + 1 bytes of them.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::{Diagnostic, MAX_FILE_BYTES};

/// A diagnostic about a whole file (no line).
pub fn file_diag(file: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line: 0,
        col: 0,
        message: message.into(),
        source_line: None,
    }
}

pub fn too_large(file: &Path, bytes: u64) -> Diagnostic {
    too_large_for(file, bytes, MAX_FILE_BYTES as u64)
}

/// A file of `bytes` over the limit `max`.
fn too_large_for(file: &Path, bytes: u64, max: u64) -> Diagnostic {
    let mib = |b: f64| b / (1024.0 * 1024.0);
    file_diag(
        file,
        format!(
            "file is {:.1} MiB, larger than the {} MiB limit for a workflow file: split it up",
            mib(bytes as f64),
            max / (1024 * 1024)
        ),
    )
}

/// What a non-regular file is, in words; `None` for a regular file.
fn odd_kind(t: &FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

fn not_regular(path: &Path, what: &str, via_link: bool) -> Diagnostic {
    let link = if via_link {
        " (through a symbolic link)"
    } else {
        ""
    };
    file_diag(
        path,
        // The diagnostic already starts with the path.
        format!(
            "is {what}{link}, not a regular file, so it was not read: only regular files (or \
             symbolic links to them) are workflow files; remove it, or rename it so that it \
             does not end in .yaml or .yml"
        ),
    )
}

/// Checks `meta` (of `path`, or of the file opened at `path`) is a regular file under the cap.
fn check_meta(path: &Path, meta: &Metadata, via_link: bool, max: u64) -> Result<(), Diagnostic> {
    if let Some(what) = odd_kind(&meta.file_type()) {
        return Err(not_regular(path, what, via_link));
    }
    if meta.len() > max {
        return Err(too_large_for(path, meta.len(), max));
    }
    Ok(())
}

/// The bytes of the workflow file at `path`, or why it is not read.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    read_bytes_max(path, MAX_FILE_BYTES as u64)
}

/// [`read_bytes`] with another size limit (a monitor's CSV file of targets).
pub fn read_bytes_max(path: &Path, max: u64) -> Result<Vec<u8>, Diagnostic> {
    let cannot =
        |e: std::io::Error| file_diag(path, format!("cannot read {}: {e}", path.display()));
    let link = std::fs::symlink_metadata(path).map_err(cannot)?;
    let via_link = link.file_type().is_symlink();
    // Look before opening: opening a FIFO blocks, opening a device can have side effects.
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if via_link && e.kind() == std::io::ErrorKind::NotFound => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".to_string());
            return Err(file_diag(
                path,
                format!(
                    "is a dangling symbolic link (to {target}, which does not exist): fix or \
                     remove the link"
                ),
            ));
        }
        Err(e) => return Err(cannot(e)),
    };
    check_meta(path, &meta, via_link, max)?;
    // The path may have been swapped for something else since it was looked at: open without
    // blocking and check again what was actually opened.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    check_meta(path, &meta, via_link, max)?;
    let cap = max + 1;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > max {
        // It grew after the check; report what was seen, not the whole of it.
        return Err(too_large_for(path, bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// The text of the workflow file at `path`: [`read_bytes`], and it must be UTF-8.
pub fn read_text(path: &Path) -> Result<String, Diagnostic> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes)
        .map_err(|e| not_utf8(path, e.as_bytes(), e.utf8_error(), "workflow files"))
}

/// Points at the first byte that is not valid UTF-8 in a file of `what` (plural: "workflow
/// files").
pub(crate) fn not_utf8(
    path: &Path,
    bytes: &[u8],
    err: std::str::Utf8Error,
    what: &str,
) -> Diagnostic {
    let valid = err.valid_up_to();
    let line_start = bytes[..valid]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + bytes[..valid].iter().filter(|&&b| b == b'\n').count();
    let col = 1 + String::from_utf8_lossy(&bytes[line_start..valid])
        .chars()
        .count();
    let line_end = bytes[valid..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| valid + i);
    let text = String::from_utf8_lossy(&bytes[line_start..line_end]);
    Diagnostic {
        file: path.to_path_buf(),
        line,
        col,
        message: format!(
            "invalid UTF-8 (byte 0x{:02x}): {what} must be UTF-8 text",
            bytes[valid]
        ),
        source_line: Some(text.trim_end_matches('\r').to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<Vec<u8>, Diagnostic>) -> String {
        match r {
            Ok(b) => panic!("expected a problem, read {} bytes", b.len()),
            Err(d) => {
                assert_eq!((d.line, d.col), (0, 0), "{d}");
                d.message
            }
        }
    }

    #[test]
    fn odd_files_are_refused_without_blocking_or_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(message(read_bytes(&fifo)).contains("named pipe (FIFO)"));

        let zero = dir.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let m = message(read_bytes(&zero));
        assert!(
            m.contains("character device (through a symbolic link)"),
            "{m}"
        );

        let sub = dir.path().join("sub.yaml");
        std::fs::create_dir(&sub).unwrap();
        assert!(message(read_bytes(&sub)).contains("is a directory"));

        let dangling = dir.path().join("gone.yaml");
        std::os::unix::fs::symlink(dir.path().join("nowhere.yaml"), &dangling).unwrap();
        let m = message(read_bytes(&dangling));
        assert!(
            m.contains("dangling symbolic link") && m.contains("nowhere.yaml"),
            "{m}"
        );

        let sock = dir.path().join("sock.yaml");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(message(read_bytes(&sock)).contains("a socket"));

        let big = dir.path().join("big.yaml");
        let f = File::create(&big).unwrap();
        f.set_len(10 << 20).unwrap();
        let m = message(read_bytes(&big));
        assert!(m.contains("10.0 MiB") && m.contains("4 MiB limit"), "{m}");
    }

    #[test]
    fn regular_files_and_links_to_them_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        std::fs::write(&real, "kind: workflow\n").unwrap();
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_text(&real).unwrap(), "kind: workflow\n");
        assert_eq!(read_text(&link).unwrap(), "kind: workflow\n");
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(read_text(&empty).unwrap(), "");
    }
}
