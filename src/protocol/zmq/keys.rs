//! CURVE keys (RFC 26, as libzmq writes them: 40 characters of Z85) and who may use them.
//!
//! - `NAME.pub` / `NAME.secret`: one key each, Z85 text and a newline (`opsconsole keys new`).
//! - The principal's own pair: `<data dir>/server.pub` and `server.secret`, made on first start.
//! - The authorized-keys file (`principal --keys FILE`): lines `ROLE NAME PUBKEY`, roles
//!   `operator`, `viewer`, `agent`; `#` starts a comment. It is read again whenever it changes,
//!   so that removing a line revokes a key without a restart (its open connections are refused
//!   from their next message on).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use zeromq::curve::{
    CurveAuthorizer, CurveKeyPair, CurveRefusal, KEY_BYTES, z85_decode, z85_encode,
};

pub use zeromq::curve::CurveSecurity;

/// Largest key or authorized-keys file read.
const MAX_KEY_FILE: u64 = 1024 * 1024;
/// Longest key name.
const MAX_NAME: usize = 64;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Everything on the requests socket.
    Operator,
    /// Read only on the requests and events sockets.
    Viewer,
    /// Runs work: only the agents socket.
    Agent,
}

impl KeyRole {
    /// As written in the authorized-keys file.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Operator => "operator",
            KeyRole::Viewer => "viewer",
            KeyRole::Agent => "agent",
        }
    }
}

/// Why a key file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, String),
    /// A file's content is not what it must be, at a line.
    #[error("{file}:{line}: {what}")]
    Bad {
        /// The file.
        file: String,
        /// Its line (1-based).
        line: usize,
        /// What is wrong and what to do.
        what: String,
    },
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::Io(path.display().to_string(), e.to_string())
}

fn read_small(path: &Path) -> Result<String, KeyError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE {
        return Err(io_error(
            path,
            format!("not a regular file of at most {MAX_KEY_FILE} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| io_error(path, e))
}

/// The one key of a key file (its first line that is not blank or a comment).
fn read_key_file(path: &Path) -> Result<[u8; KEY_BYTES], KeyError> {
    let text = read_small(path)?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        return z85_decode(line).ok_or_else(|| KeyError::Bad {
            file: path.display().to_string(),
            line: i + 1,
            what: "not a CURVE key (40 characters of Z85, as `opsconsole keys new` writes)"
                .to_string(),
        });
    }
    Err(KeyError::Bad {
        file: path.display().to_string(),
        line: 1,
        what: "no key in this file".to_string(),
    })
}

/// The key pair of a secret key file (`NAME.secret`).
pub fn read_secret(path: &Path) -> Result<CurveKeyPair, KeyError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            crate::tell!(
                "warning: secret key {} can be read by other users (mode {:o}); `chmod 600` it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    read_key_file(path).map(CurveKeyPair::from_secret)
}

/// A public key given as its 40 Z85 characters or as a file holding them (`--server-key`).
pub fn read_public(key_or_file: &str) -> Result<[u8; KEY_BYTES], KeyError> {
    if let Some(key) = z85_decode(key_or_file.trim()) {
        return Ok(key);
    }
    read_key_file(Path::new(key_or_file))
}

/// Writes `text` to a new file `path` with `mode`, refusing to overwrite one.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => io_error(
                path,
                "exists already; remove it first, or choose another name",
            ),
            _ => io_error(path, e),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// Writes a new pair as `PREFIX.pub` and `PREFIX.secret` (0600); returns the two paths.
pub fn write_pair(prefix: &Path) -> Result<(PathBuf, CurveKeyPair), KeyError> {
    let pair = CurveKeyPair::generate();
    let public = PathBuf::from(format!("{}.pub", prefix.display()));
    let secret = PathBuf::from(format!("{}.secret", prefix.display()));
    write_new(&secret, &format!("{}\n", z85_encode(&pair.secret)), 0o600)?;
    write_new(&public, &format!("{}\n", z85_encode(&pair.public)), 0o644)?;
    Ok((public, pair))
}

/// The principal's own pair in `data_dir` (`server.pub`, `server.secret`), made on first use.
pub fn server_pair(data_dir: &Path) -> Result<CurveKeyPair, KeyError> {
    let secret = data_dir.join("server.secret");
    if secret.exists() {
        return read_secret(&secret);
    }
    std::fs::create_dir_all(data_dir).map_err(|e| io_error(data_dir, e))?;
    if secret.exists() {
        return read_secret(&secret);
    }
    write_pair(&data_dir.join("server")).map(|(_, pair)| pair)
}

/// The Z85 text of a public key.
pub fn public_text(pair: &CurveKeyPair) -> String {
    z85_encode(&pair.public)
}

/// The entries of an authorized-keys file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedKeys {
    by_key: HashMap<[u8; KEY_BYTES], (KeyRole, String)>,
}

impl AuthorizedKeys {
    /// Reads `text` (from `file`, for messages).
    pub fn parse(text: &str, file: &str) -> Result<AuthorizedKeys, KeyError> {
        let mut by_key = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |what: String| KeyError::Bad {
                file: file.to_string(),
                line: i + 1,
                what,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let [role, name, key] = words.as_slice() else {
                return Err(bad(format!(
                    "`{line}` is not `ROLE NAME PUBKEY` (three words, such as `operator alice \
                     <40 characters of NAME.pub>`)"
                )));
            };
            let role = match *role {
                "operator" => KeyRole::Operator,
                "viewer" => KeyRole::Viewer,
                "agent" => KeyRole::Agent,
                other => {
                    return Err(bad(format!(
                        "unknown role `{other}`: use operator, viewer or agent"
                    )));
                }
            };
            if name.len() > MAX_NAME
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                return Err(bad(format!(
                    "name `{name}`: use at most {MAX_NAME} letters, digits, `-`, `_`, `.`, `@`"
                )));
            }
            let Some(key) = z85_decode(key) else {
                return Err(bad(format!(
                    "`{key}` is not a public key (40 characters of Z85, the content of NAME.pub)"
                )));
            };
            if let Some((_, first)) = by_key.get(&key) {
                return Err(bad(format!(
                    "this key is listed already (as `{first}`); one key has one role and name"
                )));
            }
            by_key.insert(key, (role, name.to_string()));
        }
        Ok(AuthorizedKeys { by_key })
    }

    /// The role and name of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&(KeyRole, String)> {
        <[u8; KEY_BYTES]>::try_from(key)
            .ok()
            .and_then(|k| self.by_key.get(&k))
    }
}

/// Connections and messages refused on CURVE sockets, by why, since the principal started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurveCounts {
    /// Greeted with another mechanism (a plain NULL client).
    pub not_curve: u64,
    /// A malformed handshake, or a HELLO not made for this server's key.
    pub bad_handshake: u64,
    /// An INITIATE whose cookie is not its connection's (a replayed session).
    pub bad_cookie: u64,
    /// An INITIATE whose vouch does not prove the client's key.
    pub bad_vouch: u64,
    /// A MESSAGE box that does not open or replays a nonce (tampered, replayed).
    pub bad_message: u64,
    /// A key that is not in the authorized-keys file.
    pub unknown_key: u64,
    /// A key whose role may not use that socket (a viewer's key on the agents socket).
    pub wrong_role: u64,
    /// Messages of a connection whose key was removed from the file since it connected.
    pub revoked: u64,
}

/// What `status` says on a CURVE endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurveStatus {
    /// The name of the key the status was asked with (who am I).
    pub key_name: String,
    /// The principal's public key (Z85).
    pub server_key: String,
    /// What was refused, by why, since the principal started.
    pub refused: CurveCounts,
}

#[derive(Debug, Default)]
struct Counters {
    not_curve: AtomicU64,
    bad_handshake: AtomicU64,
    bad_cookie: AtomicU64,
    bad_vouch: AtomicU64,
    bad_message: AtomicU64,
    unknown_key: AtomicU64,
    wrong_role: AtomicU64,
    revoked: AtomicU64,
}

/// The file's identity as last read: reloaded when any of these change.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// The principal's CURVE setting: its pair, the authorized keys (reloaded when their file
/// changes) and the refusal counts.
#[derive(Debug)]
pub struct KeyRing {
    /// The principal's own pair.
    pub server: CurveKeyPair,
    path: PathBuf,
    current: Mutex<(Stamp, AuthorizedKeys)>,
    counters: Counters,
}

impl KeyRing {
    /// Reads the authorized keys at `path`; an error names the file and line.
    pub fn load(server: CurveKeyPair, path: &Path) -> Result<KeyRing, KeyError> {
        let before = stamp(path);
        let keys = AuthorizedKeys::parse(&read_small(path)?, &path.display().to_string())?;
        Ok(KeyRing {
            server,
            path: path.to_path_buf(),
            current: Mutex::new((before, keys)),
            counters: Counters::default(),
        })
    }

    /// The role and name of `key` in the file as it is now. A file that became unreadable or
    /// invalid keeps the last good keys (said in the log), so that an editor's half-written
    /// save does not lock everyone out.
    pub fn lookup(&self, key: &[u8]) -> Option<(KeyRole, String)> {
        let Ok(mut current) = self.current.lock() else {
            return None;
        };
        let now = stamp(&self.path);
        if now != current.0 {
            current.0 = now;
            match read_small(&self.path)
                .and_then(|t| AuthorizedKeys::parse(&t, &self.path.display().to_string()))
            {
                Ok(keys) => {
                    tracing::info!(file = %self.path.display(), "authorized keys reloaded");
                    current.1 = keys;
                }
                Err(e) => {
                    tracing::warn!("authorized keys not reloaded, the last good ones stay: {e}")
                }
            }
        }
        current.1.get(key).cloned()
    }

    /// Counts a message of a connection whose key is no longer authorized.
    pub fn count_revoked(&self) {
        self.counters.revoked.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> CurveCounts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CurveCounts {
            not_curve: get(&c.not_curve),
            bad_handshake: get(&c.bad_handshake),
            bad_cookie: get(&c.bad_cookie),
            bad_vouch: get(&c.bad_vouch),
            bad_message: get(&c.bad_message),
            unknown_key: get(&c.unknown_key),
            wrong_role: get(&c.wrong_role),
            revoked: get(&c.revoked),
        }
    }

    /// The server side of CURVE for a socket that lets in the keys of `roles`.
    pub fn server_for(self: &std::sync::Arc<Self>, roles: &'static [KeyRole]) -> CurveSecurity {
        CurveSecurity::Server {
            keys: self.server.clone(),
            authorizer: std::sync::Arc::new(SocketGate {
                ring: self.clone(),
                roles,
            }),
        }
    }
}

/// Lets in the keys of some roles on one socket.
struct SocketGate {
    ring: std::sync::Arc<KeyRing>,
    roles: &'static [KeyRole],
}

impl CurveAuthorizer for SocketGate {
    fn authorize(&self, client_public: &[u8; KEY_BYTES]) -> Result<(), String> {
        let counters = &self.ring.counters;
        match self.ring.lookup(client_public) {
            None => {
                counters.unknown_key.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %z85_encode(client_public), "refused an unknown key");
                Err("this key is not in the principal's authorized keys".to_string())
            }
            Some((role, _)) if self.roles.contains(&role) => Ok(()),
            Some((role, name)) => {
                counters.wrong_role.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%name, role = role.as_str(), "refused a key on a socket its role may not use");
                Err(if self.roles == [KeyRole::Agent] {
                    format!(
                        "this key ({name}) is a {}'s: it is not allowed to run work; give the agent a key of role agent",
                        role.as_str()
                    )
                } else {
                    format!(
                        "this key ({name}) is an agent's: it may only run work, not send requests"
                    )
                })
            }
        }
    }

    fn refused(&self, why: CurveRefusal) {
        let c = &self.ring.counters;
        let counter = match why {
            CurveRefusal::NotCurve => &c.not_curve,
            CurveRefusal::BadHandshake => &c.bad_handshake,
            CurveRefusal::BadCookie => &c.bad_cookie,
            CurveRefusal::BadVouch => &c.bad_vouch,
            CurveRefusal::BadMessage => &c.bad_message,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(why = why.as_str(), "refused a CURVE peer");
    }
}

/// A client's CURVE setting from its secret key file and the server's public key.
pub fn client_security(secret_file: &Path, server_key: &str) -> Result<CurveSecurity, KeyError> {
    Ok(CurveSecurity::Client {
        keys: read_secret(secret_file)?,
        server_public: read_public(server_key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_keys_errors_name_the_line() {
        let good = z85_encode(&CurveKeyPair::generate().public);
        let text = format!("# team\noperator alice {good}\n\nviewer bob\n");
        let err = AuthorizedKeys::parse(&text, "keys").unwrap_err();
        assert_eq!(
            err.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["keys", "4"]
        );
        let err = AuthorizedKeys::parse(&format!("admin x {good}"), "k").unwrap_err();
        assert!(err.to_string().contains("unknown role `admin`"), "{err}");
        let err =
            AuthorizedKeys::parse(&format!("agent a {good}\nagent b {good}"), "k").unwrap_err();
        assert!(err.to_string().starts_with("k:2:"), "{err}");
        let keys = AuthorizedKeys::parse(&format!("operator alice {good}"), "k").unwrap();
        let key = z85_decode(&good).unwrap();
        assert_eq!(
            keys.get(&key),
            Some(&(KeyRole::Operator, "alice".to_string()))
        );
    }
}
