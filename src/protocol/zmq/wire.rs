//! The bytes on the wire: one JSON frame per message, an envelope with a version and an id.

use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::MAX_FRAME;
use crate::protocol::api::PROTOCOL_VERSION;

/// An envelope being sent; borrows its body so nothing is cloned to send it.
#[derive(Serialize)]
struct OutEnvelope<'a, T> {
    v: u32,
    id: u64,
    body: &'a T,
}

/// An envelope being received.
#[derive(Deserialize)]
struct InEnvelope<T> {
    v: u32,
    id: u64,
    body: T,
}

/// One frame carrying `body` under `id`.
pub(super) fn encode<T: Serialize>(id: u64, body: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&OutEnvelope {
        v: PROTOCOL_VERSION,
        id,
        body,
    })
}

/// Why a frame was not accepted.
#[derive(Debug)]
pub(super) enum DecodeError {
    /// Bigger than [`MAX_FRAME`]; not even looked at.
    TooLarge(usize),
    /// The sender speaks another protocol version.
    Version {
        /// The envelope's id, when it could be read.
        id: Option<u64>,
        /// The sender's version.
        version: u32,
    },
    /// Not JSON, truncated, or not an envelope of the expected body.
    Malformed {
        /// The envelope's id, when it could be read before the damage.
        id: Option<u64>,
        /// What the parser said.
        reason: String,
    },
}

impl DecodeError {
    /// The id of the message, so that its sender can be answered, when it could be read.
    pub(super) fn id(&self) -> Option<u64> {
        match self {
            DecodeError::TooLarge(_) => None,
            DecodeError::Version { id, .. } | DecodeError::Malformed { id, .. } => *id,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge(len) => write!(
                f,
                "a message of {len} bytes is larger than the {MAX_FRAME} bytes allowed"
            ),
            DecodeError::Version { version, .. } => write!(
                f,
                "the peer speaks protocol version {version} but this opsconsole speaks version \
                 {PROTOCOL_VERSION}; use the same opsconsole release on both sides"
            ),
            DecodeError::Malformed { reason, .. } => write!(f, "malformed message: {reason}"),
        }
    }
}

/// Reads one frame as an envelope of `T`: its id and body.
pub(super) fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<(u64, T), DecodeError> {
    if frame.len() > MAX_FRAME {
        return Err(DecodeError::TooLarge(frame.len()));
    }
    match serde_json::from_slice::<InEnvelope<T>>(frame) {
        Ok(envelope) if envelope.v == PROTOCOL_VERSION => Ok((envelope.id, envelope.body)),
        Ok(envelope) => Err(DecodeError::Version {
            id: Some(envelope.id),
            version: envelope.v,
        }),
        Err(e) => {
            // A body of another version may well not parse; report the version, which is the
            // actual problem, rather than the parse error it causes.
            let header = Header::scan(frame);
            match header.v {
                Some(version) if version != PROTOCOL_VERSION => Err(DecodeError::Version {
                    id: header.id,
                    version,
                }),
                _ => Err(DecodeError::Malformed {
                    id: header.id,
                    reason: e.to_string(),
                }),
            }
        }
    }
}

/// Whatever could be read of an envelope's `v` and `id` before the frame went wrong.
#[derive(Debug, Default)]
struct Header {
    v: Option<u32>,
    id: Option<u64>,
}

impl Header {
    fn scan(frame: &[u8]) -> Header {
        let mut header = Header::default();
        let mut de = serde_json::Deserializer::from_slice(frame);
        // The frame is known to be bad; the error is expected and what was read before it is
        // kept, so that even a truncated request can be answered under its id.
        let _ = HeaderSeed(&mut header).deserialize(&mut de);
        header
    }
}

/// Fills a [`Header`] field by field as the map is read.
struct HeaderSeed<'a>(&'a mut Header);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "v" => self.0.v = Some(map.next_value()?),
                "id" => self.0.id = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::api::{ApiError, ApiErrorKind, Request, Response, RunOutcome};
    use crate::protocol::{RunId, RunState};

    fn round_trip(response: Response) -> Response {
        let frame = encode(3, &response).expect("encodes");
        let (id, decoded) = decode::<Response>(&frame).expect("decodes");
        assert_eq!(id, 3);
        decoded
    }

    #[test]
    fn every_response_shape_survives_the_wire() {
        let outcome = RunOutcome {
            run_id: RunId(4),
            state: RunState::Failed,
            failed_tasks: vec!["a".into()],
        };
        for response in [
            Response::Runs { runs: vec![] },
            Response::RunEnded { outcome: None },
            Response::RunEnded {
                outcome: Some(outcome),
            },
            Response::Accepted { run_id: RunId(9) },
            Response::Cancelled { found: true },
            Response::Lines {
                lines: vec![],
                more: false,
                first: 0,
            },
            Response::Error(ApiError::new(ApiErrorKind::NotFound, "gone")),
        ] {
            assert_eq!(round_trip(response.clone()), response);
        }
    }

    #[test]
    fn damaged_frames_keep_what_id_they_can() {
        let good = encode(7, &Request::Status).expect("encodes");
        let truncated = &good[..good.len() - 4];
        let err = decode::<Request>(truncated).expect_err("truncated");
        assert!(
            matches!(err, DecodeError::Malformed { id: Some(7), .. }),
            "{err:?}"
        );

        let other = br#"{"v":99,"id":8,"body":{"op":"something_new"}}"#;
        let err = decode::<Request>(other).expect_err("wrong version");
        assert!(
            matches!(
                err,
                DecodeError::Version {
                    id: Some(8),
                    version: 99
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("version 99"));

        let err = decode::<Request>(b"\xff\x00 not json").expect_err("garbage");
        assert!(
            matches!(err, DecodeError::Malformed { id: None, .. }),
            "{err:?}"
        );

        let big = vec![b' '; MAX_FRAME + 1];
        assert!(matches!(
            decode::<Request>(&big),
            Err(DecodeError::TooLarge(n)) if n == MAX_FRAME + 1
        ));
    }
}
