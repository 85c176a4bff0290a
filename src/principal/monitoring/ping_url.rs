//! Ping URLs for jobs that cannot run opsconsole: `http://ADDR/ping/NAME/SECRET` (and
//! `/fail`). SECRET is HMAC-SHA256 of the monitor's name under a key kept in the data dir
//! (`ping.key`, mode 0600, made on first start), so it is unguessable per monitor, survives
//! restarts, and needs nothing stored per monitor.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The key file in the data dir.
pub const KEY_FILE: &str = "ping.key";

/// Hex characters of a secret: 128 bits.
const SECRET_HEX: usize = 32;

/// Why the ping key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PingKeyError {
    /// Reading, creating or securing the file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex characters.
    #[error("{}: not a ping key (64 hex characters); remove it to make a new one (every ping URL changes)", .0.display())]
    Malformed(PathBuf),
}

/// The key every ping URL's secret is derived from.
pub(crate) struct PingKey([u8; 32]);

impl std::fmt::Debug for PingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PingKey(..)")
    }
}

impl PingKey {
    /// The key of `data_dir`, made (random, mode 0600) when there is none yet.
    pub fn load_or_create(data_dir: &Path) -> Result<PingKey, PingKeyError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| PingKeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                // A key others can read makes every secret readable: tighten it.
                let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(io)?;
                }
                let bytes =
                    from_hex(text.trim()).ok_or_else(|| PingKeyError::Malformed(path.clone()))?;
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| PingKeyError::Malformed(path.clone()))?;
                Ok(PingKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut key))
                    .map_err(io)?;
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| {
                        f.write_all(format!("{}\n", to_hex(&key)).as_bytes())?;
                        f.sync_all()
                    });
                match written {
                    Ok(()) => Ok(PingKey(key)),
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(data_dir)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key from bytes (tests).
    #[cfg(test)]
    pub fn from_bytes(key: [u8; 32]) -> PingKey {
        PingKey(key)
    }

    /// The secret of monitor `name`: 32 lower-case hex characters.
    pub fn secret(&self, name: &str) -> String {
        // Domain-separated: HMAC(key, "opsconsole ping " || name).
        let mac = hmac_sha256_parts(&self.0, &[b"opsconsole ping ", name.as_bytes()]);
        let mut hex = to_hex(&mac);
        hex.truncate(SECRET_HEX);
        hex
    }

    /// True when `secret` is the secret of `name` (compared in constant time).
    pub fn verify(&self, name: &str, secret: &str) -> bool {
        let want = self.secret(name);
        let (a, b) = (want.as_bytes(), secret.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Where ping URLs point: the listener's address and the key.
#[derive(Debug, Clone)]
pub(crate) struct PingUrls {
    /// `http://127.0.0.1:8091`.
    pub base: String,
    /// The key secrets come from.
    pub key: Arc<PingKey>,
    /// What the listener has seen.
    pub counts: Arc<super::ping_listen::PingCounts>,
}

/// The ping URLs as the engine and the listener share them: set once the listener is up.
pub(crate) type SharedPingUrls = Arc<std::sync::OnceLock<PingUrls>>;

impl PingUrls {
    /// The ping URL of monitor `name` (`/fail` appended reports a failure).
    pub fn url(&self, name: &str) -> String {
        format!("{}/ping/{name}/{}", self.base, self.key.secret(name))
    }
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
#[cfg(test)]
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    hmac_sha256_parts(key, &[msg])
}

/// HMAC-SHA256 of the concatenation of `parts` under `key` (a key longer than a block is
/// hashed first, as RFC 2104 says).
fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            to_hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn secrets_differ_per_monitor_and_per_key_and_verify() {
        let a = PingKey::from_bytes([1; 32]);
        let b = PingKey::from_bytes([2; 32]);
        let s = a.secret("backup");
        assert_eq!(s.len(), 32);
        assert_ne!(s, a.secret("backup2"));
        assert_ne!(s, b.secret("backup"));
        assert!(a.verify("backup", &s));
        assert!(!a.verify("backup", &b.secret("backup")));
        assert!(!a.verify("backup", &s[..31]));
        assert!(!a.verify("backup", ""));
        let urls = PingUrls {
            base: "http://127.0.0.1:8091".into(),
            key: Arc::new(a),
            counts: Default::default(),
        };
        assert_eq!(
            urls.url("backup"),
            format!("http://127.0.0.1:8091/ping/backup/{s}")
        );
    }

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k1 = PingKey::load_or_create(dir.path()).expect("made");
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let k2 = PingKey::load_or_create(dir.path()).expect("read");
        assert_eq!(k1.secret("x"), k2.secret("x"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        PingKey::load_or_create(dir.path()).expect("read");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "tightened");
        std::fs::write(&path, "nope\n").expect("write");
        let err = PingKey::load_or_create(dir.path()).expect_err("malformed");
        assert!(err.to_string().contains("not a ping key"), "{err}");
    }
}
