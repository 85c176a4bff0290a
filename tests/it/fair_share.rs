//! Fair shares of the request slots between roles (issue 20, item 7): viewers flooding long
//! polls once filled all 4,096 slots and the operator's `status` and `cancel` were refused.
//! Here, with CURVE keys, viewers take their whole share with long polls; a key's 65th long
//! poll, and any viewer request past the share, is answered `busy:` at once; the operator's
//! `status` and `cancel` (and the local caller's `status`) are answered throughout.
//!
//! The viewers are raw DEALER sockets of the vendored `zeromq` with CURVE, so that nothing but
//! their own requests (no client probes) takes a slot and the counts are exact.

use std::process::Stdio;
use std::time::Duration;

use opsconsole::protocol::RunState;
use opsconsole::protocol::api::{ClientExt, PROTOCOL_VERSION};
use opsconsole::protocol::zmq::{
    Endpoints, MAX_IN_FLIGHT, MAX_LONG_POLLS_PER_KEY, SHARED_SHARE, ZmqClient,
};
use zeromq::curve::{CurveKeyPair, CurveSecurity, z85_decode, z85_encode};
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

use crate::common::project::{Project, Stopped, eventually, free_port_triple};

/// Upper bound of every wait; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(30);

const LONG: &str = "kind: workflow\nname: long\ntasks:\n  s: { run: \"sleep 600\" }\n";

/// A viewer's raw DEALER with its CURVE key.
async fn dealer(requests: &str, keys: &CurveKeyPair, server: [u8; 32]) -> DealerSocket {
    let mut options = SocketOptions::default();
    options.curve(CurveSecurity::Client {
        keys: keys.clone(),
        server_public: server,
    });
    let mut socket = DealerSocket::with_options(options);
    tokio::time::timeout(WAIT, socket.connect(requests))
        .await
        .expect("connect in time")
        .expect("CURVE handshake");
    socket
}

fn request(id: u64, body: &str) -> ZmqMessage {
    ZmqMessage::from(format!(
        r#"{{"v":{PROTOCOL_VERSION},"id":{id},"body":{body}}}"#
    ))
}

/// The next answer on `socket` as JSON, or `None` after `within`.
async fn answer(socket: &mut DealerSocket, within: Duration) -> Option<serde_json::Value> {
    let message = tokio::time::timeout(within, socket.recv())
        .await
        .ok()?
        .ok()?;
    let frame = message.into_vecdeque().pop_back()?;
    serde_json::from_slice(&frame).ok()
}

/// The error message of an answer, when it is an error.
fn error_text(answer: &serde_json::Value) -> Option<String> {
    (answer["body"]["reply"] == "error").then(|| answer["body"]["message"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_flooding_long_polls_leave_operators_served() {
    // 56 viewer keys of 64 long polls fill the viewers' share exactly; one more key asks past it.
    let keys_needed = SHARED_SHARE / MAX_LONG_POLLS_PER_KEY;
    let p = Project::new(&[("long.yaml", LONG)]);
    let operator = CurveKeyPair::generate();
    let viewers: Vec<CurveKeyPair> = (0..=keys_needed)
        .map(|_| CurveKeyPair::generate())
        .collect();
    let mut authorized = format!("operator op {}\n", z85_encode(&operator.public));
    for (i, v) in viewers.iter().enumerate() {
        authorized.push_str(&format!("viewer v{i} {}\n", z85_encode(&v.public)));
    }
    std::fs::write(p.path().join("authorized"), authorized).expect("keys file");
    let port = free_port_triple();
    let listen = format!("tcp://127.0.0.1:{port}");
    let _principal = Stopped(
        p.cmd(&["principal", "--listen", &listen, "--keys", "authorized"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("principal"),
    );
    let server_pub = p.data().join("server.pub");
    assert!(
        eventually(WAIT, || server_pub.exists()
            && p.socket().exists()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "the principal did not start listening"
    );
    let server = z85_decode(
        std::fs::read_to_string(&server_pub)
            .expect("server.pub")
            .trim(),
    )
    .expect("a Z85 key");
    let endpoints = Endpoints::from_listen(&listen).expect("endpoints");
    let op = ZmqClient::connect_curve(
        &endpoints,
        Duration::from_secs(10),
        CurveSecurity::Client {
            keys: operator.clone(),
            server_public: server,
        },
    )
    .await
    .expect("operator client");
    let run = tokio::time::timeout(WAIT, op.trigger("long", Default::default()))
        .await
        .expect("trigger in time")
        .expect("long run accepted");
    let wait_run = format!(r#"{{"op":"wait_run","run_id":{}}}"#, run.0);

    // Each viewer key sends one more long poll than its cap, on one connection: the last is
    // refused at once (for the key that completes the share, by the share itself).
    let mut sockets = Vec::new();
    let mut refusals = Vec::new();
    for (i, keys) in viewers.iter().take(keys_needed).enumerate() {
        let mut socket = dealer(&endpoints.requests, keys, server).await;
        for id in 0..=MAX_LONG_POLLS_PER_KEY as u64 {
            socket.send(request(id, &wait_run)).await.expect("send");
        }
        let refused = answer(&mut socket, WAIT)
            .await
            .unwrap_or_else(|| panic!("viewer v{i}: no answer to its 65th long poll"));
        assert_eq!(refused["id"], MAX_LONG_POLLS_PER_KEY, "v{i}: {refused}");
        let why = error_text(&refused).unwrap_or_else(|| panic!("v{i}: not refused: {refused}"));
        assert!(why.contains("busy:"), "v{i}: {why}");
        if i + 1 < keys_needed {
            assert!(
                why.contains(&format!("{MAX_LONG_POLLS_PER_KEY} long polls")),
                "v{i}: {why}"
            );
        }
        refusals.push(why);
        sockets.push(socket);
    }
    println!("a viewer's 65th long poll: {}", refusals[0]);

    // The viewers hold their share: another viewer's plain status is refused, naming it.
    let mut late = dealer(&endpoints.requests, &viewers[keys_needed], server).await;
    late.send(request(1, r#"{"op":"status"}"#))
        .await
        .expect("send");
    let refused = answer(&mut late, WAIT)
        .await
        .expect("the late viewer is answered, not dropped");
    let why = error_text(&refused).unwrap_or_else(|| panic!("not refused: {refused}"));
    println!("a viewer past the share: {why}");
    assert!(
        why.contains("busy:") && why.contains(&SHARED_SHARE.to_string()),
        "{why}"
    );

    // Operators are served: status, from the operator's key and from the local socket.
    let status = tokio::time::timeout(WAIT, op.status())
        .await
        .expect("operator status in time")
        .expect("operator status answered");
    let requests = status.requests.expect("request counts in status");
    println!(
        "with the viewers' share full: served {}, refused busy {} ({:?}) of {MAX_IN_FLIGHT} slots",
        requests.served,
        requests.busy.total(),
        requests.busy
    );
    assert!(requests.served >= (SHARED_SHARE + 2) as u64, "{requests:?}");
    assert_eq!(
        requests.busy.long_polls_per_key,
        (keys_needed - 1) as u64,
        "{requests:?}"
    );
    assert_eq!(requests.busy.role_share, 2, "{requests:?}");
    let local = ZmqClient::connect(&Endpoints::for_data_dir(&p.data()), Duration::from_secs(10))
        .await
        .expect("local client");
    tokio::time::timeout(WAIT, local.status())
        .await
        .expect("local status in time")
        .expect("the local caller is served");

    // And cancel: every viewer's long poll is then answered with the cancelled run.
    assert!(
        tokio::time::timeout(WAIT, op.cancel(run))
            .await
            .expect("cancel in time")
            .expect("cancel answered"),
        "the run was active"
    );
    let mut answered = 0;
    for socket in &mut sockets {
        for _ in 0..MAX_LONG_POLLS_PER_KEY {
            let a = answer(socket, WAIT).await.expect("a long poll answered");
            assert_eq!(a["body"]["reply"], "run_ended", "{a}");
            answered += 1;
        }
    }
    let outcome = tokio::time::timeout(WAIT, op.wait(run))
        .await
        .expect("wait in time")
        .expect("answered")
        .expect("known run");
    assert_eq!(outcome.state, RunState::Cancelled);
    let status = op.status().await.expect("status");
    println!(
        "after cancel: {answered} viewer long polls answered; status says {:?}",
        status.requests
    );
}
