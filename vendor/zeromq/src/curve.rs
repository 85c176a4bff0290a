//! PATCH(opsconsole): the CURVE security mechanism of ZMTP 3.0 (RFC 25) with the CurveZMQ
//! handshake (RFC 26), interoperable with libzmq: HELLO, WELCOME (with a cookie), INITIATE
//! (with a vouch), READY, then every frame as a MESSAGE box with a strictly increasing nonce.
//!
//! A server knows its long-term key pair and asks a [`CurveAuthorizer`] whether the client's
//! long-term public key may connect; the client's key becomes the first 32 bytes of its peer
//! identity, so that every message a ROUTER receives names the key that sent it. A client
//! knows its own pair and the server's public key.

use crate::codec::{FramedIo, Message};
use crate::error::{ZmqError, ZmqResult};
use crate::util::PeerIdentity;
use crate::SocketType;

use bytes::{BufMut, Bytes, BytesMut};
use crypto_box::aead::{AeadInPlace, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use futures::{SinkExt, StreamExt};

use std::collections::HashMap;
use std::convert::TryFrom;
use std::fmt;
use std::sync::Arc;

/// Length of a CURVE key (public or secret) in bytes.
pub const KEY_BYTES: usize = 32;
/// Length of a CURVE key in Z85 text.
pub const KEY_Z85_CHARS: usize = 40;
/// Largest frame accepted before the handshake has finished: a HELLO is 200 bytes, an
/// INITIATE 257 plus its metadata (a few dozen bytes in practice), a NULL READY well under
/// 300. Anything declaring more is refused before it is read.
pub const HANDSHAKE_FRAME_LIMIT: usize = 1024;
/// Bytes a MESSAGE box adds to a frame: name (8), nonce (8), MAC (16), flags (1).
pub const MESSAGE_OVERHEAD: usize = 33;

const MESSAGE_NAME: &[u8] = b"\x07MESSAGE";

/// A long-term (or transient) CURVE key pair.
#[derive(Clone)]
pub struct CurveKeyPair {
    /// The public key, shareable.
    pub public: [u8; KEY_BYTES],
    /// The secret key.
    pub secret: [u8; KEY_BYTES],
}

impl fmt::Debug for CurveKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurveKeyPair({}, secret …)", z85_encode(&self.public))
    }
}

impl CurveKeyPair {
    /// A new random pair (as `zmq_curve_keypair`).
    pub fn generate() -> Self {
        Self::from_secret(SecretKey::generate(&mut OsRng).to_bytes())
    }

    /// The pair of a secret key.
    pub fn from_secret(secret: [u8; KEY_BYTES]) -> Self {
        let public = SecretKey::from(secret).public_key().to_bytes();
        Self { public, secret }
    }

    fn secret_key(&self) -> SecretKey {
        SecretKey::from(self.secret)
    }
}

/// Z85 text of a 32-byte key (40 characters, as libzmq writes keys).
pub fn z85_encode(key: &[u8; KEY_BYTES]) -> String {
    z85::encode(key)
}

/// The 32-byte key of 40 characters of Z85 text; `None` for anything else.
pub fn z85_decode(text: &str) -> Option<[u8; KEY_BYTES]> {
    if text.len() != KEY_Z85_CHARS {
        return None;
    }
    let bytes = z85::decode(text).ok()?;
    <[u8; KEY_BYTES]>::try_from(bytes.as_slice()).ok()
}

/// Why a server refused a connection during (or right after) the CURVE handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurveRefusal {
    /// The peer greeted with another mechanism (such as NULL) where CURVE is required.
    NotCurve,
    /// A handshake command was malformed, out of order, or its box did not open (wrong
    /// server key, a forged HELLO).
    BadHandshake,
    /// The cookie of an INITIATE did not open or did not match this connection: an
    /// INITIATE captured from another session and replayed.
    BadCookie,
    /// The INITIATE's vouch did not prove the client holds its long-term secret key.
    BadVouch,
    /// A MESSAGE box did not open (tampered, or from another session) or its nonce did not
    /// increase (replayed).
    BadMessage,
}

impl CurveRefusal {
    /// A short name for counters and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            CurveRefusal::NotCurve => "not_curve",
            CurveRefusal::BadHandshake => "bad_handshake",
            CurveRefusal::BadCookie => "bad_cookie",
            CurveRefusal::BadVouch => "bad_vouch",
            CurveRefusal::BadMessage => "bad_message",
        }
    }
}

/// Decides which client keys a CURVE server lets in (the job of ZAP, RFC 27, in libzmq).
pub trait CurveAuthorizer: Send + Sync {
    /// `Ok` lets the client with this long-term public key in; `Err(reason)` refuses it,
    /// and the reason is sent to the client in an ERROR command (the client proved it
    /// holds the key, so telling it why leaks nothing).
    fn authorize(&self, client_public: &[u8; KEY_BYTES]) -> Result<(), String>;
    /// Counts a refusal for another reason than the authorizer's own.
    fn refused(&self, why: CurveRefusal);
}

/// The CURVE role of a socket.
#[derive(Clone)]
pub enum CurveSecurity {
    /// Accepts CURVE clients whose key `authorizer` lets in.
    Server {
        /// The server's long-term pair.
        keys: CurveKeyPair,
        /// Who may connect.
        authorizer: Arc<dyn CurveAuthorizer>,
    },
    /// Connects to a CURVE server whose long-term public key is `server_public`.
    Client {
        /// The client's long-term pair.
        keys: CurveKeyPair,
        /// The server's long-term public key.
        server_public: [u8; KEY_BYTES],
    },
}

impl fmt::Debug for CurveSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurveSecurity::Server { keys, .. } => write!(f, "CurveServer({keys:?})"),
            CurveSecurity::Client { keys, .. } => write!(f, "CurveClient({keys:?})"),
        }
    }
}

impl CurveSecurity {
    pub(crate) fn is_server(&self) -> bool {
        matches!(self, CurveSecurity::Server { .. })
    }

    fn refused(&self, why: CurveRefusal) {
        if let CurveSecurity::Server { authorizer, .. } = self {
            authorizer.refused(why);
        }
    }
}

fn nonce(prefix: &[u8], tail: &[u8]) -> crypto_box::Nonce {
    let mut n = [0u8; 24];
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(tail);
    n.into()
}

fn random<const N: usize>() -> [u8; N] {
    use crypto_box::aead::rand_core::RngCore;
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// Box `plain` (MAC first, as libzmq sends it).
fn seal(key: &SalsaBox, n: &crypto_box::Nonce, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + plain.len());
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(plain);
    let tag = key
        .encrypt_in_place_detached(n, b"", &mut out[16..])
        .unwrap_or_default();
    out[..16].copy_from_slice(&tag);
    out
}

/// Opens a box made by [`seal`]; `None` if it does not open.
fn open(key: &SalsaBox, n: &crypto_box::Nonce, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 16 {
        return None;
    }
    let mut plain = sealed[16..].to_vec();
    let tag = crypto_box::aead::Tag::<SalsaBox>::from_slice(&sealed[..16]);
    key.decrypt_in_place_detached(n, b"", &mut plain, tag)
        .ok()?;
    Some(plain)
}

fn salsa(public: &[u8; KEY_BYTES], secret: &SecretKey) -> SalsaBox {
    SalsaBox::new(&PublicKey::from(*public), secret)
}

/// Encrypts outgoing frames as MESSAGE boxes (held by a connection's encoder).
pub(crate) struct CurveSender {
    key: SalsaBox,
    prefix: &'static [u8; 16],
    nonce: u64,
}

impl fmt::Debug for CurveSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurveSender(nonce {})", self.nonce)
    }
}

impl CurveSender {
    /// Writes one frame (`more` set when more frames of its message follow, `command` for
    /// a ZMTP command) into `dst` as a MESSAGE box, with its ZMTP frame header.
    pub(crate) fn encode_frame(&mut self, payload: &[u8], more: bool, command: bool, dst: &mut BytesMut) {
        let n = self.nonce;
        self.nonce = self.nonce.wrapping_add(1);
        let body_len = MESSAGE_OVERHEAD + payload.len();
        if body_len > 255 {
            dst.reserve(body_len + 9);
            dst.put_u8(0x02);
            dst.put_u64(body_len as u64);
        } else {
            dst.reserve(body_len + 2);
            dst.put_u8(0x00);
            dst.put_u8(body_len as u8);
        }
        let start = dst.len();
        dst.extend_from_slice(MESSAGE_NAME);
        dst.put_u64(n);
        dst.extend_from_slice(&[0u8; 16]);
        dst.put_u8(u8::from(more) | (u8::from(command) << 1));
        dst.extend_from_slice(payload);
        let tag = self
            .key
            .encrypt_in_place_detached(&nonce(self.prefix, &n.to_be_bytes()), b"", &mut dst[start + 32..])
            .unwrap_or_default();
        dst[start + 16..start + 32].copy_from_slice(&tag);
    }
}

/// Opens incoming MESSAGE boxes (held by a connection's decoder).
pub(crate) struct CurveReceiver {
    key: SalsaBox,
    prefix: &'static [u8; 16],
    last: u64,
    refusals: Option<Arc<dyn CurveAuthorizer>>,
}

impl fmt::Debug for CurveReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurveReceiver(last nonce {})", self.last)
    }
}

/// A frame taken out of its MESSAGE box.
pub(crate) struct OpenedFrame {
    pub(crate) more: bool,
    pub(crate) command: bool,
    pub(crate) payload: BytesMut,
}

impl CurveReceiver {
    /// Opens the MESSAGE box `frame`; `None` (and the refusal counted) when it is not one,
    /// does not open, or its nonce does not increase.
    pub(crate) fn open_frame(&mut self, mut frame: BytesMut) -> Option<OpenedFrame> {
        let opened = self.try_open(&mut frame);
        if opened.is_none() {
            if let Some(refusals) = &self.refusals {
                refusals.refused(CurveRefusal::BadMessage);
            }
            return None;
        }
        let flags = frame[32];
        let _ = frame.split_to(MESSAGE_OVERHEAD);
        Some(OpenedFrame {
            more: flags & 0x01 != 0,
            command: flags & 0x02 != 0,
            payload: frame,
        })
    }

    fn try_open(&mut self, frame: &mut BytesMut) -> Option<()> {
        if frame.len() < MESSAGE_OVERHEAD || &frame[..8] != MESSAGE_NAME {
            return None;
        }
        let n = u64::from_be_bytes(<[u8; 8]>::try_from(&frame[8..16]).ok()?);
        if n <= self.last {
            return None;
        }
        let tag = *crypto_box::aead::Tag::<SalsaBox>::from_slice(&frame[16..32]);
        self.key
            .decrypt_in_place_detached(&nonce(self.prefix, &frame[8..16]), b"", &mut frame[32..], &tag)
            .ok()?;
        self.last = n;
        Some(())
    }
}

/// ZMTP metadata: name-length (1), name, value-length (4, big-endian), value.
fn encode_metadata(properties: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in properties {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn parse_metadata(mut data: &[u8]) -> Option<HashMap<String, Vec<u8>>> {
    let mut properties = HashMap::new();
    while !data.is_empty() {
        let name_len = usize::from(data[0]);
        let name = data.get(1..1 + name_len)?;
        data = &data[1 + name_len..];
        let len = u32::from_be_bytes(<[u8; 4]>::try_from(data.get(..4)?).ok()?) as usize;
        let value = data.get(4..4usize.checked_add(len)?)?;
        properties.insert(String::from_utf8_lossy(name).into_owned(), value.to_vec());
        data = &data[4 + len..];
    }
    Some(properties)
}

fn our_metadata(socket_type: SocketType, identity: Option<&PeerIdentity>) -> Vec<u8> {
    let mut properties: Vec<(&str, &[u8])> = vec![("Socket-Type", socket_type.as_str().as_bytes())];
    if let Some(identity) = identity {
        properties.push(("Identity", identity.as_ref()));
    }
    encode_metadata(&properties)
}

fn check_peer_type(socket_type: SocketType, metadata: &HashMap<String, Vec<u8>>) -> ZmqResult<()> {
    let other = match metadata.get("Socket-Type") {
        Some(s) => SocketType::try_from(s.as_slice())?,
        None => return Err(ZmqError::Other("Failed to parse other socket type")),
    };
    if socket_type.compatible(other) {
        Ok(())
    } else {
        Err(ZmqError::Other("Provided sockets combination is not compatible"))
    }
}

async fn next_command(io: &mut FramedIo) -> ZmqResult<Bytes> {
    match io.read_half.next().await {
        Some(Ok(Message::Raw(body))) => Ok(body),
        Some(Ok(_)) => Err(ZmqError::Other("CURVE: expected a handshake command")),
        Some(Err(e)) => Err(e.into()),
        None => Err(ZmqError::Other("CURVE: the peer closed the connection during the handshake")),
    }
}

/// The server side of the handshake, after the greetings. Returns the peer identity:
/// the client's long-term public key followed by 8 random bytes (unique per connection).
pub(crate) async fn server_handshake(
    io: &mut FramedIo,
    security: &CurveSecurity,
    socket_type: SocketType,
    our_identity: Option<&PeerIdentity>,
) -> ZmqResult<PeerIdentity> {
    let CurveSecurity::Server { keys, authorizer } = security else {
        return Err(ZmqError::Other("CURVE: not a server"));
    };
    let fail = |why: CurveRefusal, what: &'static str| {
        authorizer.refused(why);
        ZmqError::Other(what)
    };
    // HELLO: name(6) version(2) padding(72) C'(32) nonce(8) box(80).
    let hello = next_command(io).await.map_err(|e| {
        authorizer.refused(CurveRefusal::BadHandshake);
        e
    })?;
    if hello.len() != 200 || &hello[..6] != b"\x05HELLO" || hello[6] != 1 || hello[7] != 0 {
        return Err(fail(CurveRefusal::BadHandshake, "CURVE: malformed HELLO"));
    }
    let client_transient: [u8; 32] = hello[80..112].try_into().unwrap_or_default();
    let server_secret = keys.secret_key();
    let to_client_transient = salsa(&client_transient, &server_secret);
    if open(&to_client_transient, &nonce(b"CurveZMQHELLO---", &hello[112..120]), &hello[120..200]).is_none() {
        return Err(fail(CurveRefusal::BadHandshake, "CURVE: HELLO box does not open (wrong server key?)"));
    }

    // WELCOME: a transient pair for this connection and a cookie only this connection opens.
    let transient = CurveKeyPair::generate();
    let cookie_key = SalsaBox::new(&PublicKey::from(random::<32>()), &SecretKey::from(random::<32>()));
    let cookie_nonce = random::<16>();
    let mut cookie_plain = client_transient.to_vec();
    cookie_plain.extend_from_slice(&transient.secret);
    let cookie = seal(&cookie_key, &nonce(b"COOKIE--", &cookie_nonce), &cookie_plain);
    let mut welcome_plain = transient.public.to_vec();
    welcome_plain.extend_from_slice(&cookie_nonce);
    welcome_plain.extend_from_slice(&cookie);
    let welcome_nonce = random::<16>();
    let welcome_box = seal(&to_client_transient, &nonce(b"WELCOME-", &welcome_nonce), &welcome_plain);
    let mut welcome = BytesMut::with_capacity(168);
    welcome.extend_from_slice(b"\x07WELCOME");
    welcome.extend_from_slice(&welcome_nonce);
    welcome.extend_from_slice(&welcome_box);
    io.write_half.send(Message::Raw(welcome.freeze())).await?;

    // INITIATE: name(9) cookie(16+80) nonce(8) box[C + vouch nonce + vouch + metadata].
    let initiate = next_command(io).await.map_err(|e| {
        authorizer.refused(CurveRefusal::BadHandshake);
        e
    })?;
    if initiate.len() < 257 || &initiate[..9] != b"\x08INITIATE" {
        return Err(fail(CurveRefusal::BadHandshake, "CURVE: malformed INITIATE"));
    }
    match open(&cookie_key, &nonce(b"COOKIE--", &initiate[9..25]), &initiate[25..105]) {
        Some(plain) if plain == cookie_plain => {}
        _ => return Err(fail(CurveRefusal::BadCookie, "CURVE: INITIATE cookie is not this connection's")),
    }
    let session = salsa(&client_transient, &transient.secret_key());
    let initiate_nonce = u64::from_be_bytes(initiate[105..113].try_into().unwrap_or_default());
    let Some(plain) = open(&session, &nonce(b"CurveZMQINITIATE", &initiate[105..113]), &initiate[113..]) else {
        return Err(fail(CurveRefusal::BadHandshake, "CURVE: INITIATE box does not open"));
    };
    if plain.len() < 128 {
        return Err(fail(CurveRefusal::BadHandshake, "CURVE: INITIATE box too short"));
    }
    let client_key: [u8; 32] = plain[..32].try_into().unwrap_or_default();
    let vouch_key = salsa(&client_key, &transient.secret_key());
    match open(&vouch_key, &nonce(b"VOUCH---", &plain[32..48]), &plain[48..128]) {
        Some(v) if v.len() == 64 && v[..32] == client_transient && v[32..] == keys.public => {}
        _ => return Err(fail(CurveRefusal::BadVouch, "CURVE: INITIATE vouch does not prove the client's key")),
    }
    if let Err(reason) = authorizer.authorize(&client_key) {
        // As libzmq after a ZAP denial: an ERROR command, then close.
        let reason = reason.as_bytes();
        let reason = &reason[..reason.len().min(255)];
        let mut error = BytesMut::with_capacity(7 + reason.len());
        error.extend_from_slice(b"\x05ERROR");
        error.put_u8(reason.len() as u8);
        error.extend_from_slice(reason);
        let _ = io.write_half.send(Message::Raw(error.freeze())).await;
        return Err(ZmqError::Other("CURVE: the client's key is not authorized"));
    }
    let Some(metadata) = parse_metadata(&plain[128..]) else {
        return Err(fail(CurveRefusal::BadHandshake, "CURVE: INITIATE metadata is malformed"));
    };
    check_peer_type(socket_type, &metadata)?;

    // READY: name(6) nonce(8) box[metadata].
    let ready_box = seal(&session, &nonce(b"CurveZMQREADY---", &1u64.to_be_bytes()), &our_metadata(socket_type, our_identity));
    let mut ready = BytesMut::with_capacity(14 + ready_box.len());
    ready.extend_from_slice(b"\x05READY");
    ready.put_u64(1);
    ready.extend_from_slice(&ready_box);
    io.write_half.send(Message::Raw(ready.freeze())).await?;

    install(
        io,
        CurveSender { key: salsa(&client_transient, &transient.secret_key()), prefix: b"CurveZMQMESSAGES", nonce: 2 },
        CurveReceiver { key: session, prefix: b"CurveZMQMESSAGEC", last: initiate_nonce, refusals: Some(authorizer.clone()) },
    );
    let mut identity = client_key.to_vec();
    identity.extend_from_slice(&random::<8>());
    PeerIdentity::try_from(identity)
}

/// The client side of the handshake, after the greetings.
pub(crate) async fn client_handshake(
    io: &mut FramedIo,
    security: &CurveSecurity,
    socket_type: SocketType,
    our_identity: Option<&PeerIdentity>,
) -> ZmqResult<PeerIdentity> {
    let CurveSecurity::Client { keys, server_public } = security else {
        return Err(ZmqError::Other("CURVE: not a client"));
    };
    let transient = CurveKeyPair::generate();
    let to_server = salsa(server_public, &transient.secret_key());
    let mut hello = BytesMut::with_capacity(200);
    hello.extend_from_slice(b"\x05HELLO\x01\x00");
    hello.extend_from_slice(&[0u8; 72]);
    hello.extend_from_slice(&transient.public);
    hello.put_u64(1);
    hello.extend_from_slice(&seal(&to_server, &nonce(b"CurveZMQHELLO---", &1u64.to_be_bytes()), &[0u8; 64]));
    io.write_half.send(Message::Raw(hello.freeze())).await?;

    let welcome = next_command(io).await?;
    if let Some(reason) = error_reason(&welcome) {
        return Err(ZmqError::Refused(reason));
    }
    if welcome.len() != 168 || &welcome[..8] != b"\x07WELCOME" {
        return Err(ZmqError::Other("CURVE: malformed WELCOME"));
    }
    let Some(plain) = open(&to_server, &nonce(b"WELCOME-", &welcome[8..24]), &welcome[24..168]) else {
        return Err(ZmqError::Refused(
            "the server's WELCOME does not open: is the server key the right one?".into(),
        ));
    };
    let server_transient: [u8; 32] = plain[..32].try_into().unwrap_or_default();
    let cookie = &plain[32..128];

    let vouch_nonce = random::<16>();
    let mut vouch_plain = transient.public.to_vec();
    vouch_plain.extend_from_slice(server_public);
    let vouch = seal(&salsa(&server_transient, &keys.secret_key()), &nonce(b"VOUCH---", &vouch_nonce), &vouch_plain);
    let mut initiate_plain = keys.public.to_vec();
    initiate_plain.extend_from_slice(&vouch_nonce);
    initiate_plain.extend_from_slice(&vouch);
    initiate_plain.extend_from_slice(&our_metadata(socket_type, our_identity));
    let session = salsa(&server_transient, &transient.secret_key());
    let mut initiate = BytesMut::new();
    initiate.extend_from_slice(b"\x08INITIATE");
    initiate.extend_from_slice(cookie);
    initiate.put_u64(2);
    initiate.extend_from_slice(&seal(&session, &nonce(b"CurveZMQINITIATE", &2u64.to_be_bytes()), &initiate_plain));
    io.write_half.send(Message::Raw(initiate.freeze())).await?;

    let ready = next_command(io).await?;
    if let Some(reason) = error_reason(&ready) {
        return Err(ZmqError::Refused(reason));
    }
    if ready.len() < 30 || &ready[..6] != b"\x05READY" {
        return Err(ZmqError::Other("CURVE: malformed READY"));
    }
    let ready_nonce = u64::from_be_bytes(ready[6..14].try_into().unwrap_or_default());
    let Some(metadata) = open(&session, &nonce(b"CurveZMQREADY---", &ready[6..14]), &ready[14..]) else {
        return Err(ZmqError::Other("CURVE: READY box does not open"));
    };
    let Some(metadata) = parse_metadata(&metadata) else {
        return Err(ZmqError::Other("CURVE: READY metadata is malformed"));
    };
    check_peer_type(socket_type, &metadata)?;
    install(
        io,
        CurveSender { key: salsa(&server_transient, &transient.secret_key()), prefix: b"CurveZMQMESSAGEC", nonce: 3 },
        CurveReceiver { key: session, prefix: b"CurveZMQMESSAGES", last: ready_nonce, refusals: None },
    );
    let identity = metadata.get("Identity").cloned().unwrap_or_default();
    PeerIdentity::try_from(identity)
}

fn error_reason(command: &[u8]) -> Option<String> {
    let rest = command.strip_prefix(b"\x05ERROR")?;
    let len = usize::from(*rest.first()?);
    let reason = rest.get(1..1 + len).unwrap_or(&rest[1..]);
    Some(String::from_utf8_lossy(reason).into_owned())
}

fn install(io: &mut FramedIo, sender: CurveSender, receiver: CurveReceiver) {
    io.write_half.encoder_mut().curve_sender = Some(sender);
    io.read_half.codec_mut().curve_receiver = Some(receiver);
}

/// Runs the CURVE handshake of `security` on `io`, after the greetings.
pub(crate) async fn handshake(
    io: &mut FramedIo,
    security: &CurveSecurity,
    socket_type: SocketType,
    our_identity: Option<&PeerIdentity>,
) -> ZmqResult<PeerIdentity> {
    if security.is_server() {
        server_handshake(io, security, socket_type, our_identity).await
    } else {
        client_handshake(io, security, socket_type, our_identity).await
    }
}

/// Counts a greeting of the wrong mechanism on a CURVE server.
pub(crate) fn refuse_mechanism(security: &CurveSecurity) {
    security.refused(CurveRefusal::NotCurve);
}

/// Counts a greeting broken off or garbled on a CURVE server.
pub(crate) fn refuse_handshake(security: &CurveSecurity) {
    security.refused(CurveRefusal::BadHandshake);
}
