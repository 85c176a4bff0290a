//! Message authentication on token-protected endpoints: every message carries, in a second
//! frame, an HMAC-SHA256 over (sender id, sequence number, body) with a key derived from a
//! shared token. Which token's key verifies a request decides the sender's role. Authenticated,
//! not encrypted: tunnel through SSH where confidentiality matters.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use crate::protocol::api::Role;

type HmacSha256 = Hmac<Sha256>;

/// Shortest token accepted, in bytes: a shared secret must not be guessable.
pub const MIN_TOKEN_BYTES: usize = 16;
/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;
/// Longest sender id accepted in a tag.
const MAX_SENDER: usize = 128;
/// Senders whose last sequence number is remembered; past this the oldest are forgotten (a
/// sender needs a valid key to be remembered at all).
const MAX_SENDERS: usize = 4096;

/// A key derived from a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// The key of `token` (surrounding whitespace, such as a final newline, is not part of it).
    pub fn from_token(token: &str) -> Result<Key, AuthError> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(AuthError::TooShort(token.len()));
        }
        let mut mac = mac_with(token.as_bytes());
        mac.update(b"opsconsole frame key v1");
        Ok(Key(mac.finalize().into_bytes().into()))
    }

    /// The key of the token in `path`.
    pub fn from_file(path: &Path) -> Result<Key, AuthError> {
        let read = |e: std::io::Error| AuthError::Read(path.display().to_string(), e.to_string());
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() || meta.len() > MAX_TOKEN_FILE {
            return Err(AuthError::Read(
                path.display().to_string(),
                format!("not a regular file of at most {MAX_TOKEN_FILE} bytes"),
            ));
        }
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                // Not refused (a token in a shared CI secret file is still a token), but said.
                crate::tell!(
                    "warning: token file {} can be read by other users (mode {:o}); `chmod 600` it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Key::from_token(&text)
            .map_err(|e| AuthError::Read(path.display().to_string(), e.to_string()))
    }

    fn mac(&self, sender: &str, seq: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = mac_with(&self.0);
        mac.update(&(sender.len() as u64).to_be_bytes());
        mac.update(sender.as_bytes());
        mac.update(&seq.to_be_bytes());
        mac.update(body);
        mac
    }

    /// The tag frame for `body` sent by `sender` as its message number `seq`.
    pub fn sign(&self, sender: &str, seq: u64, body: &[u8]) -> Vec<u8> {
        let mac = hex(&self.mac(sender, seq, body).finalize().into_bytes());
        serde_json::to_vec(&Tag {
            sender: sender.to_string(),
            seq,
            mac,
        })
        .unwrap_or_default()
    }

    /// The sender and sequence number of `tag`, if it is this key's MAC over `body`.
    pub fn verify(&self, tag: &Tag, body: &[u8]) -> bool {
        let Some(mac) = unhex(&tag.mac) else {
            return false;
        };
        // `verify_slice` compares in constant time.
        self.mac(&tag.sender, tag.seq, body)
            .verify_slice(&mac)
            .is_ok()
    }
}

fn mac_with(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The second frame of an authenticated message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Who sent it; a client picks a fresh id per connection.
    pub sender: String,
    /// Increases with every message of the sender.
    pub seq: u64,
    /// HMAC-SHA256 in lower-case hex.
    pub mac: String,
}

impl Tag {
    /// Reads a tag frame.
    pub fn parse(frame: &[u8]) -> Option<Tag> {
        let tag: Tag = serde_json::from_slice(frame).ok()?;
        (tag.sender.len() <= MAX_SENDER && tag.mac.len() == 64).then_some(tag)
    }
}

/// Why a token could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Too short to be a secret.
    #[error(
        "the token is {0} bytes; use at least {MIN_TOKEN_BYTES} random ones (for example `openssl rand -hex 32`)"
    )]
    TooShort(usize),
    /// The token file could not be read.
    #[error("token file {0}: {1}")]
    Read(String, String),
}

/// The keys a principal accepts on a protected endpoint.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Operator token: everything.
    pub operator: Key,
    /// Viewer token: read only.
    pub viewer: Option<Key>,
}

impl Keys {
    /// The role whose key made `tag` over `body`.
    pub fn role_of(&self, tag: &Tag, body: &[u8]) -> Option<(Role, &Key)> {
        if self.operator.verify(tag, body) {
            return Some((Role::Operator, &self.operator));
        }
        self.viewer
            .as_ref()
            .filter(|k| k.verify(tag, body))
            .map(|k| (Role::Viewer, k))
    }
}

/// Messages dropped on a protected endpoint, by why.
#[derive(Debug, Default)]
pub struct Rejected {
    /// No tag, or one that could not be read.
    pub unsigned: AtomicU64,
    /// A tag no accepted key made.
    pub bad_mac: AtomicU64,
    /// A sequence number not above the sender's last one.
    pub replayed: AtomicU64,
    /// From an agent connection that never said hello.
    pub unknown_sender: AtomicU64,
}

impl Rejected {
    /// The counts now.
    pub fn counts(&self) -> crate::protocol::api::AuthCounts {
        crate::protocol::api::AuthCounts {
            unsigned: self.unsigned.load(Ordering::Relaxed),
            bad_mac: self.bad_mac.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            unknown_sender: self.unknown_sender.load(Ordering::Relaxed),
        }
    }
}

/// The last sequence number seen of each sender, to refuse replays.
#[derive(Debug, Default)]
pub struct Replays {
    last: HashMap<String, (u64, u64)>,
    /// Counts insertions, to forget the least recently used sender first.
    tick: u64,
}

impl Replays {
    /// Accepts `seq` from `sender` only if it is above the last one accepted.
    pub fn accept(&mut self, sender: &str, seq: u64) -> bool {
        self.tick += 1;
        if let Some((last, used)) = self.last.get_mut(sender) {
            if seq <= *last {
                return false;
            }
            *last = seq;
            *used = self.tick;
            return true;
        }
        if self.last.len() >= MAX_SENDERS
            && let Some(oldest) = self
                .last
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(s, _)| s.clone())
        {
            self.last.remove(&oldest);
        }
        self.last.insert(sender.to_string(), (seq, self.tick));
        true
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_tag_verifies_only_with_its_key_over_its_own_body_sender_and_number() {
        let key = Key::from_token(TOKEN).unwrap();
        let other = Key::from_token("another token of enough length").unwrap();
        let tag = Tag::parse(&key.sign("client-1", 7, b"body")).unwrap();
        assert!(key.verify(&tag, b"body"));
        assert!(!other.verify(&tag, b"body"), "another key");
        assert!(!key.verify(&tag, b"bodx"), "another body");
        let moved = Tag {
            seq: 8,
            ..tag.clone()
        };
        assert!(!key.verify(&moved, b"body"), "another number");
        let renamed = Tag {
            sender: "client-2".into(),
            ..tag
        };
        assert!(!key.verify(&renamed, b"body"), "another sender");
    }

    #[test]
    fn the_role_is_the_one_whose_key_signed() {
        let keys = Keys {
            operator: Key::from_token(TOKEN).unwrap(),
            viewer: Some(Key::from_token("viewer token of enough length").unwrap()),
        };
        let viewer = Key::from_token("viewer token of enough length\n").unwrap();
        let tag = Tag::parse(&viewer.sign("v", 1, b"x")).unwrap();
        assert_eq!(keys.role_of(&tag, b"x").map(|r| r.0), Some(Role::Viewer));
        let tag = Tag::parse(&keys.operator.sign("o", 1, b"x")).unwrap();
        assert_eq!(keys.role_of(&tag, b"x").map(|r| r.0), Some(Role::Operator));
        let stranger = Key::from_token("a stranger's token, long enough").unwrap();
        let tag = Tag::parse(&stranger.sign("s", 1, b"x")).unwrap();
        assert!(keys.role_of(&tag, b"x").is_none());
    }

    #[test]
    fn short_tokens_and_odd_tags_are_refused() {
        assert_eq!(
            Key::from_token("short\n").unwrap_err(),
            AuthError::TooShort(5)
        );
        assert!(Tag::parse(b"not json").is_none());
        assert!(Tag::parse(br#"{"sender":"a","seq":1,"mac":"00"}"#).is_none());
        let key = Key::from_token(TOKEN).unwrap();
        let bad = Tag {
            sender: "a".into(),
            seq: 1,
            mac: "zz".repeat(32),
        };
        assert!(!key.verify(&bad, b""));
    }

    #[test]
    fn a_number_not_above_the_last_is_a_replay() {
        let mut r = Replays::default();
        assert!(r.accept("a", 1));
        assert!(r.accept("a", 5));
        assert!(!r.accept("a", 5));
        assert!(!r.accept("a", 2));
        assert!(r.accept("b", 1), "each sender has its own numbers");
        for i in 0..(MAX_SENDERS as u64 + 10) {
            assert!(r.accept(&format!("s{i}"), 1));
        }
        assert!(r.last.len() <= MAX_SENDERS, "bounded");
    }
}
