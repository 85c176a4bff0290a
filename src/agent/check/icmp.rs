//! icmp checks: echo requests through ONE socket per prober, opened on first use: an
//! unprivileged datagram ICMP socket where `net.ipv4.ping_group_range` lets this process's
//! group have one, else a raw socket (CAP_NET_RAW); replies are matched by address and
//! sequence number (and identifier on a raw socket, which sees every ICMP packet).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{OnceCell, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Deadline;
use crate::protocol::check::{CheckResult, IcmpProbe};

/// Time between two echo requests of one check.
const ECHO_GAP: Duration = Duration::from_millis(100);
/// The sysctl that lets unprivileged groups open datagram ICMP sockets.
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// Which kind of socket carries the echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpMode {
    /// `SOCK_DGRAM` + `IPPROTO_ICMP`, allowed by `net.ipv4.ping_group_range`.
    Datagram,
    /// `SOCK_RAW`, which needs CAP_NET_RAW.
    Raw,
}

impl std::fmt::Display for IcmpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IcmpMode::Datagram => "unprivileged datagram ICMP socket",
            IcmpMode::Raw => "raw ICMP socket",
        })
    }
}

type Waiting = Mutex<HashMap<(Ipv4Addr, u16), oneshot::Sender<Instant>>>;

/// The prober's ICMP socket, opened on first use (or the reason it cannot be).
#[derive(Default)]
pub(super) struct Shared(OnceCell<Result<Arc<Pinger>, String>>);

impl Shared {
    pub(super) async fn get(&self) -> Result<Arc<Pinger>, String> {
        self.0
            .get_or_init(|| async { Pinger::open().map(Arc::new) })
            .await
            .clone()
    }
}

/// One ICMP socket, the echo requests waiting for replies, and the task that reads them.
pub(super) struct Pinger {
    socket: Arc<UdpSocket>,
    mode: IcmpMode,
    /// Our identifier (a datagram socket's is replaced by the kernel's, so not checked there).
    id: u16,
    seq: AtomicU16,
    waiting: Arc<Waiting>,
    /// Stops the reader when the prober goes.
    _reader: DropGuard,
}

impl Pinger {
    pub(super) fn mode(&self) -> IcmpMode {
        self.mode
    }

    fn open() -> Result<Self, String> {
        let (socket, mode) = open_socket()?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("ICMP socket: {e}"))?;
        let std: std::net::UdpSocket = socket.into();
        // Only a socket address goes through it, as with UDP; tokio does not look further.
        let socket = Arc::new(UdpSocket::from_std(std).map_err(|e| format!("ICMP socket: {e}"))?);
        let waiting: Arc<Waiting> = Arc::default();
        let stop = CancellationToken::new();
        let id = fastrand::u16(..);
        tokio::spawn(read_replies(
            socket.clone(),
            mode,
            id,
            waiting.clone(),
            stop.clone(),
        ));
        Ok(Self {
            socket,
            mode,
            id,
            seq: AtomicU16::new(fastrand::u16(..)),
            waiting,
            _reader: stop.drop_guard(),
        })
    }
}

/// A datagram ICMP socket, else a raw one, else an error that names the sysctl.
fn open_socket() -> Result<(Socket, IcmpMode), String> {
    let dgram = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4));
    let dgram_err = match dgram {
        Ok(s) => return Ok((s, IcmpMode::Datagram)),
        Err(e) => e,
    };
    match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => Ok((s, IcmpMode::Raw)),
        Err(raw_err) => {
            let range = std::fs::read_to_string(PING_GROUP_RANGE)
                .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unreadable".into());
            // /proc/self belongs to this process's effective user and group.
            let gid = std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::gid(&m).to_string())
                .unwrap_or_else(|_| "?".into());
            Err(format!(
                "icmp checks cannot run here: no unprivileged ICMP socket ({dgram_err}; \
                 sysctl net.ipv4.ping_group_range is \"{range}\" and does not include group \
                 {gid}: set it with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`) \
                 and no raw socket ({raw_err}; it needs CAP_NET_RAW)"
            ))
        }
    }
}

/// Reads every reply and hands it to the check waiting for it.
async fn read_replies(
    socket: Arc<UdpSocket>,
    mode: IcmpMode,
    id: u16,
    waiting: Arc<Waiting>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let got = tokio::select! {
            () = stop.cancelled() => return,
            got = socket.recv_from(&mut buf) => got,
        };
        let Ok((n, from)) = got else {
            // A transient error (ICMP errors reported on the socket); the checks time out.
            continue;
        };
        let at = Instant::now();
        let IpAddr::V4(from) = from.ip() else {
            continue;
        };
        let Some((reply_id, seq)) = parse_reply(&buf[..n], mode) else {
            continue;
        };
        if mode == IcmpMode::Raw && reply_id != id {
            continue; // another process's ping
        }
        let tx = waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(from, seq));
        if let Some(tx) = tx {
            let _ = tx.send(at);
        }
    }
}

/// The identifier and sequence number of an echo reply.
fn parse_reply(packet: &[u8], mode: IcmpMode) -> Option<(u16, u16)> {
    let icmp = match mode {
        IcmpMode::Datagram => packet,
        // A raw IPv4 socket hands over the IP header too.
        IcmpMode::Raw => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            packet.get(ihl..)?
        }
    };
    if icmp.len() < 8 || icmp[0] != 0 || icmp[1] != 0 {
        return None; // not an echo reply (our own request seen on loopback, say)
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// An echo request with its checksum.
fn echo_request(id: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 8;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(b"opsconsl");
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Removes what a check still waits for when it ends (on time or not).
struct Forget<'a> {
    waiting: &'a Waiting,
    keys: Vec<(Ipv4Addr, u16)>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            w.remove(k);
        }
    }
}

/// Sends `count` echo requests and waits for the replies until the deadline; connected
/// when any came back, the response time is their mean round trip.
pub(super) async fn run(
    pinger: &Pinger,
    p: &IcmpProbe,
    t0: Instant,
    deadline: Deadline,
) -> CheckResult {
    let mut result = CheckResult::default();
    let ip = match deadline
        .within("dns", resolve_v4(&p.host))
        .await
        .and_then(|r| r)
    {
        Ok((ip, dns)) => {
            result.phases.dns = dns;
            ip
        }
        Err(e) => return CheckResult::failed(None, t0.elapsed(), e),
    };
    result.ip = Some(IpAddr::V4(ip));
    let count = p.count.max(1);
    let mut forget = Forget {
        waiting: &pinger.waiting,
        keys: Vec::new(),
    };
    let mut replies = Vec::new();
    let mut sent_at = Vec::new();
    for i in 0..count {
        if i > 0 {
            let _ = deadline.within("echo", tokio::time::sleep(ECHO_GAP)).await;
        }
        let seq = pinger.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pinger
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((ip, seq), tx);
        forget.keys.push((ip, seq));
        let packet = echo_request(pinger.id, seq);
        let at = Instant::now();
        if let Err(e) = pinger
            .socket
            .send_to(&packet, SocketAddr::from((ip, 0)))
            .await
        {
            result.error = Some(format!("sending an echo request to {ip}: {e}"));
            break;
        }
        sent_at.push(at);
        replies.push(rx);
    }
    let sent = sent_at.len();
    let mut rtts = Vec::new();
    for (rx, at) in replies.into_iter().zip(sent_at) {
        match deadline.within("echo", rx).await {
            Ok(Ok(got)) => rtts.push(got.saturating_duration_since(at)),
            Ok(Err(_)) => {}
            Err(_) => break, // the deadline: what came back counts
        }
    }
    drop(forget);
    result.connected = !rtts.is_empty();
    result.response_time = match rtts.len() {
        0 => t0.elapsed(),
        n => rtts.iter().sum::<Duration>() / n as u32,
    };
    result.body = format!("{}/{} replies", rtts.len(), count);
    if rtts.is_empty() && result.error.is_none() {
        result.error = Some(format!(
            "timed out after {:?} in phase echo: no echo reply from {ip} ({sent} sent)",
            deadline.total
        ));
    }
    result
}

async fn resolve_v4(host: &str) -> Result<(Ipv4Addr, Option<Duration>), String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => Ok((v4, None)),
            IpAddr::V6(_) => Err(format!(
                "icmp checks of IPv6 addresses ({host}) are not supported yet"
            )),
        };
    }
    let t = Instant::now();
    let addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in addrs {
        if let IpAddr::V4(v4) = a.ip() {
            return Ok((v4, Some(t.elapsed())));
        }
    }
    Err(format!("{host} has no IPv4 address"))
}

#[cfg(test)]
mod packet_tests {
    use super::*;

    #[test]
    fn an_echo_request_checks_out_and_a_reply_is_parsed() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        let mut reply = p;
        reply[0] = 0;
        assert_eq!(parse_reply(&reply, IcmpMode::Datagram), Some((0x1234, 7)));
        let mut raw = vec![0x45u8];
        raw.extend_from_slice(&[0; 19]);
        raw.extend_from_slice(&reply);
        assert_eq!(parse_reply(&raw, IcmpMode::Raw), Some((0x1234, 7)));
        assert_eq!(parse_reply(&p, IcmpMode::Datagram), None, "a request");
    }
}
