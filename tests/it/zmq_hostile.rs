//! Hostile and vanished peers against a real `opsconsole principal` process (issue 10, item
//! 6): frame headers declaring absurd lengths, a flood of long polls from a peer that then
//! disconnects, a subscriber that stops reading during heavy output, and idle connections
//! under a low descriptor limit. After each the principal answers `status` and runs a
//! workflow, and its memory stays bounded.
//!
//! Raw ZMTP 3.0 is written by hand on plain Unix and TCP streams, so nothing here relies on
//! the crate being tested.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opsconsole::protocol::RunState;
use opsconsole::protocol::api::{ApiErrorKind, ClientError, ClientExt, PROTOCOL_VERSION};
use opsconsole::protocol::zmq::{
    Endpoints, MAX_FRAME, MAX_IN_FLIGHT_PER_PEER, MAX_SUBSCRIBER_MESSAGE, ZmqClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_opsconsole");

/// Upper bound of every wait; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(30);

/// A principal child process in a temp dir, killed when dropped.
struct Principal {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Principal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Principal {
    /// Starts `opsconsole principal` over `workflows` (file name, text), with `extra` args.
    fn start(workflows: &[(&str, &str)], extra: &[&str]) -> Principal {
        let dir = tempfile::tempdir().expect("temp dir");
        let wf = dir.path().join("workflows");
        std::fs::create_dir(&wf).expect("mkdir workflows");
        for (name, text) in workflows {
            std::fs::write(wf.join(name), text).expect("write workflow");
        }
        let log = std::fs::File::create(dir.path().join("principal.log")).expect("log file");
        let child = Command::new(BIN)
            .args(["principal", "--slots", "4"])
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn principal");
        let principal = Principal { child, dir };
        let t0 = Instant::now();
        while !principal.events_socket().exists() {
            assert!(t0.elapsed() < WAIT, "principal started");
            std::thread::sleep(Duration::from_millis(20));
        }
        principal
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join(".opsconsole")
    }

    fn requests_socket(&self) -> PathBuf {
        self.data().join("principal.sock")
    }

    fn events_socket(&self) -> PathBuf {
        self.data().join("principal.sock.events")
    }

    async fn client(&self) -> ZmqClient {
        ZmqClient::connect(
            &Endpoints::for_data_dir(&self.data()),
            Duration::from_secs(10),
        )
        .await
        .expect("valid endpoints")
    }

    /// The last lines of the principal's log, newest first.
    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("principal.log")).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    /// Panics (with the principal's log) unless the process still runs.
    fn assert_alive(&mut self, after: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the principal died after {after}: {status}; last log lines (newest first):\n{}",
                self.log_tail()
            );
        }
    }

    /// A raw connection to one of its sockets; a refused one is blamed on a dead principal
    /// when it is one.
    fn connect(&mut self, path: &Path, after: &str) -> std::os::unix::net::UnixStream {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .expect("timeout");
                s
            }
            Err(e) => {
                std::thread::sleep(Duration::from_secs(1));
                self.assert_alive(after);
                panic!("connecting after {after}: {e}");
            }
        }
    }

    /// Resident memory, in MiB.
    fn rss_mib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kib / 1024
    }

    /// CPU time used so far (user + system), from /proc (in USER_HZ = 100 ticks a second).
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("/proc stat");
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        Duration::from_millis((fields[11] + fields[12]) * 10)
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(usize::MAX)
    }
}

/// `status` answers, and `quick` runs to success, over a fresh client.
async fn still_serves(principal: &mut Principal, after: &str) {
    principal.assert_alive(after);
    let client = principal.client().await;
    let status = tokio::time::timeout(WAIT, client.status())
        .await
        .unwrap_or_else(|_| panic!("status after {after} within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("status after {after}: {e}"));
    assert_eq!(status.pid, principal.pid());
    let run = async {
        let id = client.trigger("quick", Default::default()).await?;
        client.wait(id).await
    };
    let outcome = tokio::time::timeout(WAIT, run)
        .await
        .unwrap_or_else(|_| panic!("a run after {after} within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("a run after {after}: {e}"))
        .expect("run known");
    assert_eq!(outcome.state, RunState::Succeeded, "a run after {after}");
    principal.assert_alive(after);
}

const QUICK: (&str, &str) = (
    "quick.yaml",
    "kind: workflow\nname: quick\ntasks:\n  q: { run: \"true\" }\n",
);

// ---- raw ZMTP 3.0 -------------------------------------------------------------------------

/// The 64-byte ZMTP 3.0 greeting of a client, NULL mechanism.
fn greeting() -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    g.extend_from_slice(&mechanism);
    g.push(0); // as-server: no
    g.resize(64, 0); // filler
    g
}

/// A READY command announcing `socket_type`.
fn ready(socket_type: &str) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    let mut frame = vec![0x04, body.len() as u8]; // short command frame
    frame.extend_from_slice(&body);
    frame
}

/// A long frame header declaring `len` bytes (`command`: a command frame).
fn long_header(len: u64, command: bool) -> Vec<u8> {
    let mut h = vec![if command { 0x06 } else { 0x02 }];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// A short message frame.
fn short_frame(body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x00, body.len() as u8];
    f.extend_from_slice(body);
    f
}

/// Reads (and discards) until the peer closes the connection; false if it is still open
/// after `within`.
fn closed_within(stream: &mut impl Read, within: Duration) -> bool {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset by the peer, or similar: closed too.
            Err(_) => return true,
        }
    }
    false
}

fn unix(path: &Path) -> std::os::unix::net::UnixStream {
    let s = std::os::unix::net::UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

// ---- the tests ----------------------------------------------------------------------------

/// Frame headers declaring 2^63-1, 2^40 and max+1 bytes, on both sockets, during the
/// handshake (as the READY command) and after it (as a message): each closes that connection
/// only; the principal keeps serving with flat memory. So do garbage bytes and a truncated
/// header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frame_headers_close_the_connection_not_the_principal() {
    let mut principal = Principal::start(&[QUICK], &[]);
    still_serves(&mut principal, "starting").await;
    let rss_before = principal.rss_mib();

    let sockets = [
        ("requests", principal.requests_socket(), "DEALER", MAX_FRAME),
        (
            "events",
            principal.events_socket(),
            "SUB",
            MAX_SUBSCRIBER_MESSAGE,
        ),
    ];
    for (name, path, socket_type, max) in &sockets {
        for len in [u64::MAX >> 1, 1 << 40, *max as u64 + 1] {
            for after_ready in [false, true] {
                let case = format!(
                    "a header of {len} bytes on the {name} socket {}",
                    if after_ready {
                        "after READY"
                    } else {
                        "as READY"
                    }
                );
                let mut s = principal.connect(path, "the previous hostile header");
                let mut hostile = greeting();
                if after_ready {
                    hostile.extend(ready(socket_type));
                }
                hostile.extend(long_header(len, !after_ready));
                // A few bytes of the body, as a real sender would start streaming it.
                hostile.extend_from_slice(b"{\"v\":1");
                s.write_all(&hostile).expect("write");
                assert!(
                    closed_within(&mut s, Duration::from_secs(10)),
                    "{case}: the connection was not closed"
                );
                principal.assert_alive(&case);
            }
        }
        // Not ZMTP at all, and a header cut short before its connection closes.
        let mut s = principal.connect(path, "the hostile headers");
        s.write_all(&[0x13; 1024]).expect("write");
        assert!(
            closed_within(&mut s, Duration::from_secs(10)),
            "garbage on the {name} socket: the connection was not closed"
        );
        let mut s = principal.connect(path, "garbage bytes");
        let mut cut = greeting();
        cut.extend(ready(socket_type));
        cut.extend_from_slice(&long_header(1 << 40, false)[..5]);
        s.write_all(&cut).expect("write");
        drop(s);
        still_serves(
            &mut principal,
            &format!("hostile frames on the {name} socket"),
        )
        .await;
    }
    let rss_after = principal.rss_mib();
    assert!(
        rss_after < rss_before + 64,
        "resident memory grew from {rss_before} MiB to {rss_after} MiB"
    );
}

/// One peer sends 4,000 long polls and disconnects, twice: it gets only its share of the
/// in-flight budget, other clients are served meanwhile, and once it is gone its polls give
/// their slots back (before, they held them until their run ended, and the principal
/// refused everyone as busy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_flood_that_disconnects_gives_its_slots_back() {
    let long = (
        "long.yaml",
        "kind: workflow\nname: long\ntasks:\n  s: { run: \"sleep 600\" }\n",
    );
    let mut principal = Principal::start(&[QUICK, long], &[]);
    let client = principal.client().await;
    let run = tokio::time::timeout(WAIT, client.trigger("long", Default::default()))
        .await
        .expect("trigger in time")
        .expect("long run accepted");

    for flood in 0..2 {
        let mut raw =
            std::os::unix::net::UnixStream::connect(principal.requests_socket()).expect("connect");
        raw.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut out = greeting();
        out.extend(ready("DEALER"));
        for id in 0..4000u64 {
            let poll = format!(
                r#"{{"v":{PROTOCOL_VERSION},"id":{id},"body":{{"op":"wait_run","run_id":{}}}}}"#,
                run.0
            );
            // Long frames throughout: simpler than choosing by length.
            out.extend(long_header(poll.len() as u64, false));
            out.extend_from_slice(poll.as_bytes());
        }
        // Written beside the reading below: a principal that answers while the flood is
        // still arriving blocks on a peer that does not read (and then so would the flood).
        let mut writer = raw.try_clone().expect("clone the socket");
        let flooding = std::thread::spawn(move || {
            let _ = writer.write_all(&out);
        });
        // The flood is refused beyond its share: answers come back naming this connection.
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 65536];
        while !String::from_utf8_lossy(&seen).contains("this connection has") {
            assert!(
                t0.elapsed() < WAIT,
                "flood {flood}: no refusal for the connection's share within {WAIT:?}; \
                 {} bytes came back, ending {:?}; the principal's log:\n{}",
                seen.len(),
                String::from_utf8_lossy(&seen[seen.len().saturating_sub(600)..]),
                principal.log_tail()
            );
            match raw.read(&mut buf) {
                Ok(0) => panic!("flood {flood}: the principal closed the connection"),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        // Meanwhile others are served.
        let status = tokio::time::timeout(WAIT, client.status()).await;
        assert!(
            matches!(status, Ok(Ok(_))),
            "flood {flood}: status while flooded: {status:?}"
        );
        let _ = raw.shutdown(std::net::Shutdown::Both);
        drop(raw);
        let _ = flooding.join();
    }

    // The floods are gone: the in-flight budget is back. Their disconnects take effect
    // asynchronously, so allow a moment.
    let t0 = Instant::now();
    loop {
        match tokio::time::timeout(WAIT, client.status()).await {
            Ok(Ok(_)) => break,
            Ok(Err(ClientError::Api(e))) if e.kind == ApiErrorKind::Unavailable => {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "the principal still refuses as busy after the floods left: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("status after the floods: {other:?}"),
        }
    }
    // A well-behaved client may use its whole share of long polls, and they are answered.
    let polls = MAX_IN_FLIGHT_PER_PEER - 16;
    let waiter = principal.client().await;
    let waits = tokio::spawn(async move {
        futures::future::join_all((0..polls).map(|_| waiter.wait(run))).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waits.is_finished(), "the long polls answered early");
    assert!(
        tokio::time::timeout(WAIT, client.cancel(run))
            .await
            .expect("cancel in time")
            .expect("cancel answered")
    );
    let outcomes = tokio::time::timeout(WAIT, waits)
        .await
        .expect("long polls answered in time")
        .expect("join");
    for outcome in outcomes {
        let outcome = outcome.expect("answered").expect("known run");
        assert_eq!(outcome.state, RunState::Cancelled);
    }
    still_serves(&mut principal, "the long-poll floods").await;
}

/// Subscribers that connect, subscribe and stop reading while a task prints 100,000 lines
/// of 1 KB: the principal drops events for them (and says so in its log) rather than
/// queueing every event for each of them.
///
/// Resident memory also moves with what the store caches, by up to a couple of hundred MiB
/// between runs of this size, so the bound is relative to a run with no stalled subscriber,
/// and 60 of them make the unbounded queues (each holding every event) stand out. Measured
/// (peak of a run over a run without them): 60 stalled subscribers added 500-690 MiB before
/// the fix and 90-230 MiB after it; 20 added 230-355 and 70-180 MiB, too close to the
/// store's noise. The logged count of dropped events is the exact part of the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscribers_do_not_grow_the_principal() {
    const STALLED: usize = 60;
    let loud = (
        "loud.yaml",
        "kind: workflow\nname: loud\ntasks:\n  l: { run: \"l=$(head -c 1000 /dev/zero | tr '\\\\0' x); yes \\\"$l\\\" | head -n 100000\" }\n",
    );
    let mut principal = Principal::start(&[QUICK, loud], &[]);
    let client = principal.client().await;
    // Runs `loud` and returns its resident memory growth (peak during the run, MiB).
    let loud_run = || async {
        let before = principal.rss_mib();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (peak, done, pid) = (peak.clone(), done.clone(), principal.pid());
            std::thread::spawn(move || {
                let path = format!("/proc/{pid}/status");
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(status) = std::fs::read_to_string(&path) else {
                        break;
                    };
                    let kib: u64 = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    peak.fetch_max(kib / 1024, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let id = client
            .trigger("loud", Default::default())
            .await
            .expect("loud accepted");
        let outcome = tokio::time::timeout(Duration::from_secs(120), client.wait(id))
            .await
            .expect("the loud run ended in time")
            .expect("answered")
            .expect("known");
        assert_eq!(outcome.state, RunState::Succeeded);
        tokio::time::sleep(Duration::from_millis(500)).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = sampler.join();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        (before, peak.saturating_sub(before))
    };
    // A first run warms the store up; the second is the reference.
    loud_run().await;
    let (at, reference) = loud_run().await;

    let stalled: Vec<_> = (0..STALLED)
        .map(|_| {
            let mut s = unix(&principal.events_socket());
            let mut hello = greeting();
            hello.extend(ready("SUB"));
            hello.extend(short_frame(b"\x01")); // subscribe to everything
            s.write_all(&hello).expect("subscribe");
            s // and never read from it
        })
        .collect();
    let (before, grew) = loud_run().await;
    eprintln!(
        "stalled subscribers: a run grew the principal by {reference} MiB (from {at} MiB) \
         alone, by {grew} MiB (from {before} MiB) with {STALLED} stalled subscribers"
    );
    assert!(
        grew < reference + 300,
        "resident memory grew by {grew} MiB with {STALLED} stalled subscribers, \
         {reference} MiB without"
    );
    // What was dropped for them is counted in the log (summed up every 10 s).
    let log = principal.dir.path().join("principal.log");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("for subscribers that stopped reading")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the principal did not log the events it dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    still_serves(&mut principal, "stalled subscribers").await;
    drop(stalled);
}

/// 200 connections that send nothing, to a principal whose descriptor limit leaves room for
/// far fewer: it does not spin on the failing accepts, closes connections that never
/// finish their handshake, and serves again once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_under_a_low_descriptor_limit() {
    // The principal binds PORT, PORT+1 and PORT+2; a test beside this one may take one of
    // them between the check and the bind, so a principal that could not listen is started
    // again on other ports.
    let (port, mut principal) = 'start: {
        for _ in 0..5 {
            let port = crate::common::project::free_port_triple();
            let listen = format!("tcp://127.0.0.1:{port}");
            let mut principal = Principal::start(&[QUICK], &["--listen", &listen]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            if principal.child.try_wait().ok().flatten().is_none() {
                break 'start (port, principal);
            }
        }
        panic!("no principal could listen on three free ports");
    };
    still_serves(&mut principal, "starting").await;
    let base = principal.open_fds();
    let limit = base + 40;
    let set = Command::new("prlimit")
        .arg(format!("--pid={}", principal.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("run prlimit");
    assert!(set.success(), "prlimit failed: {set}");

    // 200 idle connections: more than the principal can accept, so the rest wait in the
    // listen backlog while its accepts fail with EMFILE.
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let idle: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok())
        .collect();
    assert!(
        idle.len() > 100,
        "only {} connections got through",
        idle.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = principal.cpu();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let busy = principal.cpu().saturating_sub(cpu0);
    principal.assert_alive("200 idle connections");
    assert!(
        busy < Duration::from_millis(1000),
        "the principal used {busy:?} of CPU in 3 s while its accepts failed: it spins"
    );
    // A connection that never completes its handshake is closed by the principal.
    let mut first = idle.into_iter().next().expect("a connection");
    first
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    assert!(
        closed_within(&mut first, Duration::from_secs(20)),
        "an idle connection was still open after 20 s"
    );
    drop(first); // and with it the other 199, dropped with the iterator

    still_serves(&mut principal, "200 idle connections").await;
    let t0 = Instant::now();
    while principal.open_fds() > base + 8 && t0.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fds = principal.open_fds();
    assert!(
        fds <= base + 8,
        "open descriptors: {fds}, {base} before the idle connections"
    );
}

// ---- issue 20, item 6: bounded before and after authentication ---------------------------

/// The 64-byte ZMTP 3.0 greeting of a client of `mechanism`.
fn greeting_of(mechanism: &str) -> Vec<u8> {
    let mut g = greeting();
    let mut name = mechanism.as_bytes().to_vec();
    name.resize(20, 0);
    g[12..32].copy_from_slice(&name);
    g
}

/// A principal listening on loopback TCP (with CURVE keys from `authorized`) besides its
/// local socket, and the port. A test beside this one may take one of its three ports
/// between the check and the bind, so a principal that could not listen is started again.
async fn start_listening(authorized: &Path) -> (u16, Principal) {
    let keys = authorized.display().to_string();
    for _ in 0..5 {
        let port = crate::common::project::free_port_triple();
        let listen = format!("tcp://127.0.0.1:{port}");
        let mut principal = Principal::start(&[QUICK], &["--listen", &listen, "--keys", &keys]);
        let t0 = Instant::now();
        while !principal.data().join("server.pub").exists() && t0.elapsed() < WAIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if principal.child.try_wait().ok().flatten().is_none()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return (port, principal);
        }
    }
    panic!("no principal could listen on three free ports");
}

impl Principal {
    /// Peak resident memory so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("VmHWM")
            / 1024
    }

    /// The principal's public CURVE key.
    fn server_key(&self) -> [u8; 32] {
        let text = std::fs::read_to_string(self.data().join("server.pub")).expect("server.pub");
        zeromq::curve::z85_decode(text.trim()).expect("a Z85 key")
    }

    /// `peers_closed` of its status, asked on the local socket.
    async fn peers_closed(&self) -> opsconsole::protocol::zmq::limits::PeersClosed {
        let client = self.client().await;
        let status = tokio::time::timeout(WAIT, client.status())
            .await
            .expect("status in time")
            .expect("status answered");
        status.peers_closed.expect("peers_closed in status")
    }
}

/// An authorized-keys file of `clients` (all operators) in a temp dir.
fn authorized_keys(clients: &[zeromq::curve::CurveKeyPair]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let text: String = clients
        .iter()
        .enumerate()
        .map(|(i, k)| format!("operator c{i} {}\n", zeromq::curve::z85_encode(&k.public)))
        .collect();
    std::fs::write(dir.path().join("authorized"), text).expect("keys file");
    dir
}

/// Before a peer has authenticated it may declare a few hundred bytes at most, whatever its
/// mechanism: a NULL peer on the local socket (its READY declaring 2 KiB or 16 MB), a NULL
/// or PLAIN peer on a CURVE endpoint, and a CURVE peer whose HELLO declares 2 KiB or 16 MB
/// are each closed at once; the principal's memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_before_authentication_are_tiny_on_every_mechanism() {
    let keys = authorized_keys(&[zeromq::curve::CurveKeyPair::generate()]);
    let (port, mut principal) = start_listening(&keys.path().join("authorized")).await;
    still_serves(&mut principal, "starting").await;
    let rss_before = principal.rss_mib();
    let tcp = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        s
    };
    for len in [2048u64, 16_000_000] {
        // NULL, local socket: the READY (a command) is the handshake.
        let mut s = principal.connect(&principal.requests_socket(), "a big READY");
        let mut hostile = greeting();
        hostile.extend(long_header(len, true));
        hostile.extend(vec![0u8; 1024]);
        let _ = s.write_all(&hostile);
        assert!(
            closed_within(&mut s, Duration::from_secs(10)),
            "NULL: a READY declaring {len} bytes was not refused"
        );
        // CURVE: the HELLO is 200 bytes; more is refused before it is read.
        let mut s = tcp();
        let mut hostile = greeting_of("CURVE");
        hostile.extend(long_header(len, true));
        hostile.extend(vec![0u8; 1024]);
        let _ = s.write_all(&hostile);
        assert!(
            closed_within(&mut s, Duration::from_secs(10)),
            "CURVE: a HELLO declaring {len} bytes was not refused"
        );
        principal.assert_alive("big handshake frames");
    }
    // NULL and PLAIN on the CURVE endpoint: refused at the greeting, whatever follows.
    for mechanism in ["NULL", "PLAIN"] {
        let mut s = tcp();
        let mut hostile = greeting_of(mechanism);
        hostile.extend(long_header(16_000_000, false));
        hostile.extend(vec![0u8; 4096]);
        let _ = s.write_all(&hostile);
        assert!(
            closed_within(&mut s, Duration::from_secs(10)),
            "{mechanism} on the CURVE endpoint was not refused"
        );
    }
    still_serves(&mut principal, "big frames before authentication").await;
    let rss_after = principal.rss_mib();
    println!("before authentication: resident memory {rss_before} MiB, then {rss_after} MiB");
    assert!(
        rss_after < rss_before + 64,
        "resident memory grew from {rss_before} MiB to {rss_after} MiB"
    );
}

/// A CURVE connection to `port` whose handshake is done by a real CURVE client (the vendored
/// crate's DEALER, through a pass-through proxy); then the test writes on the upstream side
/// of the proxy itself, as the client would. Returns the client (kept open) and that stream.
async fn curve_connection(
    port: u16,
    keys: zeromq::curve::CurveKeyPair,
    server: [u8; 32],
) -> (zeromq::DealerSocket, std::net::TcpStream) {
    use zeromq::Socket as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy listener");
    let address = listener.local_addr().expect("address");
    let mut options = zeromq::SocketOptions::default();
    options.curve(zeromq::curve::CurveSecurity::Client {
        keys,
        server_public: server,
    });
    let mut dealer = zeromq::DealerSocket::with_options(options);
    let accept = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let connect = tokio::spawn(async move {
        dealer
            .connect(&format!("tcp://{address}"))
            .await
            .map(|()| dealer)
    });
    let down = tokio::task::spawn_blocking(move || accept.join())
        .await
        .expect("join")
        .expect("accept thread")
        .expect("accept");
    let up = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect upstream");
    for (mut from, mut to) in [
        (
            down.try_clone().expect("clone"),
            up.try_clone().expect("clone"),
        ),
        (
            up.try_clone().expect("clone"),
            down.try_clone().expect("clone"),
        ),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
    let dealer = tokio::time::timeout(WAIT, connect)
        .await
        .expect("CURVE handshake in time")
        .expect("join")
        .expect("CURVE handshake");
    (dealer, up)
}

/// Writes a message frame header declaring `declared` bytes (a CURVE MESSAGE box when
/// `curve`), then `sent` bytes of it; false when the principal closed the connection first.
fn declare_and_send(stream: &mut impl Write, declared: u64, sent: usize, curve: bool) -> bool {
    let header = if curve {
        long_header(declared + 33, true)
    } else {
        long_header(declared, false)
    };
    if stream.write_all(&header).is_err() {
        return false;
    }
    let chunk = vec![0x5au8; 1024 * 1024];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        if stream.write_all(&chunk[..n]).is_err() {
            return false;
        }
        left -= n;
    }
    true
}

/// 100 authenticated connections (90 NULL on the local socket, 10 with CURVE keys on
/// loopback TCP) each declare a 16 MB frame and send 15 MB of it, and one more trickles a
/// 1 MB frame at 2 KiB/s. Before the receive budget the principal grew to 1.5 GB; now the
/// connections past the global budget are closed at once (`over_budget`), the ones within it
/// and the trickler are closed for their pace (`too_slow`), peak memory stays bounded, and
/// the principal answers `status` and runs a workflow throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_half_sent_frames_stay_within_the_receive_budget() {
    const PEERS: usize = 100;
    const CURVE_EVERY: usize = 10;
    const DECLARED: u64 = 16_000_000;
    const SENT: usize = 15_000_000;
    let clients: Vec<_> = (0..PEERS / CURVE_EVERY)
        .map(|_| zeromq::curve::CurveKeyPair::generate())
        .collect();
    let keys = authorized_keys(&clients);
    let (port, mut principal) = start_listening(&keys.path().join("authorized")).await;
    still_serves(&mut principal, "starting").await;
    let server = principal.server_key();
    let peak_before = principal.peak_rss_mib();

    // The trickler: a 1 MB frame at 2 KiB/s, half the slowest pace allowed.
    let mut trickle = principal.connect(&principal.requests_socket(), "starting");
    let mut hello = greeting();
    hello.extend(ready("DEALER"));
    hello.extend(long_header(1_000_000, false));
    trickle.write_all(&hello).expect("trickler hello");
    let trickler = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        while t0.elapsed() < Duration::from_secs(90) {
            if trickle.write_all(&[0x5a; 512]).is_err() {
                return Some(t0.elapsed());
            }
            // Also notices the close when the write still fit in a buffer (200 ms timeout).
            match trickle.read(&mut buf) {
                Ok(0) => return Some(t0.elapsed()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Some(t0.elapsed()),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    });

    let mut held = 0;
    let mut keep = Vec::new();
    let mut curve_clients = Vec::new();
    for i in 0..PEERS {
        let sent = if i % CURVE_EVERY == 0 {
            let (dealer, mut up) =
                curve_connection(port, clients[i / CURVE_EVERY].clone(), server).await;
            curve_clients.push(dealer);
            let sent = tokio::task::spawn_blocking(move || {
                let sent = declare_and_send(&mut up, DECLARED, SENT, true);
                (sent, up)
            })
            .await
            .expect("join");
            keep.push(Box::new(sent.1) as Box<dyn std::any::Any + Send>);
            sent.0
        } else {
            let mut s = principal.connect(&principal.requests_socket(), "a huge frame");
            let mut hello = greeting();
            hello.extend(ready("DEALER"));
            s.write_all(&hello).expect("hello");
            let sent = tokio::task::spawn_blocking(move || {
                let sent = declare_and_send(&mut s, DECLARED, SENT, false);
                (sent, s)
            })
            .await
            .expect("join");
            keep.push(Box::new(sent.1));
            sent.0
        };
        if sent {
            held += 1;
        }
        principal.assert_alive("huge frames");
    }
    let peak_flood = principal.peak_rss_mib();
    let closed = principal.peers_closed().await;
    println!(
        "{PEERS} peers declared {DECLARED} bytes and sent {SENT}: {held} held within the \
         budget; peak resident memory (VmHWM) {peak_before} MiB before, {peak_flood} MiB \
         after; peers_closed {closed:?}"
    );
    still_serves(&mut principal, "100 huge half-sent frames").await;
    assert!(held >= 1, "no connection was let in at all");
    assert!(
        closed.over_budget >= (PEERS - held) as u64,
        "{closed:?}, {held} held"
    );
    assert!(
        peak_flood < peak_before + 400,
        "peak resident memory grew from {peak_before} MiB to {peak_flood} MiB"
    );

    // The held ones sent nothing more, and the trickler too little: closed for their pace.
    let t0 = Instant::now();
    let mut closed = principal.peers_closed().await;
    while closed.too_slow < held as u64 + 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "stalled peers still open after 60 s: {closed:?}, {held} held"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        closed = principal.peers_closed().await;
    }
    let trickled = trickler.join().expect("trickler");
    println!(
        "the trickler was closed after {trickled:?}; peers_closed {closed:?}; peak resident \
         memory {} MiB",
        principal.peak_rss_mib()
    );
    assert!(trickled.is_some(), "the trickler was never closed");
    still_serves(&mut principal, "stalled and trickling peers").await;
    drop(keep);
    drop(curve_clients);
}
