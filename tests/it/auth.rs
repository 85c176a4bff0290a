//! Token-protected endpoints (`principal --listen … --token-file F [--viewer-token-file V]`):
//! only signed requests are served, a viewer may look but not change anything, replays and
//! forgeries are dropped and counted, and nothing beyond loopback listens without a token.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

use crate::common::project::{Project, Stopped, text};
use opsconsole::protocol::api::{ApiErrorKind, Client, ClientError, ClientExt, Request, Response};
use opsconsole::protocol::zmq::auth::Key;
use opsconsole::protocol::zmq::{Endpoints, ZmqClient};
use opsconsole::protocol::{Event, RunState};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";
const OPERATOR: &str = "operator-token-0123456789abcdef\n";
const VIEWER: &str = "viewer-token-fedcba9876543210\n";

/// A principal with a protected TCP endpoint on a free loopback port, and that endpoint.
fn protected(p: &Project) -> (Stopped, Endpoints) {
    std::fs::write(p.path().join("op.token"), OPERATOR).unwrap();
    std::fs::write(p.path().join("view.token"), VIEWER).unwrap();
    let mut child = p.spawn(&[
        "principal",
        "--listen",
        "tcp://127.0.0.1:0",
        "--token-file",
        "op.token",
        "--viewer-token-file",
        "view.token",
    ]);
    let stderr = child.stderr.take().expect("stderr");
    let child = Stopped(child);
    let mut lines = BufReader::new(stderr).lines();
    let endpoints = loop {
        let line = lines
            .next()
            .expect("the principal said where it listens")
            .expect("read stderr");
        if let Some(rest) = line.split("listening on tcp://").nth(1) {
            let requests = rest.split_whitespace().next().unwrap();
            let events = line.split("(events on ").nth(1).unwrap();
            let events = events.split([')', ',']).next().unwrap();
            assert!(
                line.contains("operator and viewer tokens required"),
                "{line}"
            );
            break Endpoints {
                requests: format!("tcp://{requests}"),
                events: events.to_string(),
            };
        }
    };
    // Keep draining stderr so the principal never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, endpoints)
}

async fn client(endpoints: &Endpoints, token: Option<&str>) -> ZmqClient {
    let timeout = Duration::from_secs(2);
    match token {
        Some(t) => ZmqClient::connect_signed(endpoints, timeout, Key::from_token(t).unwrap()).await,
        None => ZmqClient::connect(endpoints, timeout).await,
    }
    .expect("valid endpoints")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_do_everything_viewers_only_look_and_strangers_get_nothing() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let (_principal, endpoints) = protected(&p);

    let operator = client(&endpoints, Some(OPERATOR)).await;
    let status = operator.status().await.expect("the operator is served");
    let counts = status
        .auth
        .expect("a protected endpoint reports its counts");
    assert_eq!(counts.bad_mac, 0);
    let mut events = operator.subscribe();
    // Events published before the subscription took effect are not seen; wait for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = operator
        .trigger("hello", Default::default())
        .await
        .expect("trigger");
    let ended = operator.wait(run).await.expect("wait").expect("known run");
    assert_eq!(ended.state, RunState::Succeeded);
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::RunState { run_id, state, .. }) = events.recv().await
                && run_id == run
                && state.is_terminal()
            {
                return state;
            }
        }
    })
    .await
    .expect("the operator's client accepts the principal's signed events");
    assert_eq!(seen, RunState::Succeeded);

    let viewer = client(&endpoints, Some(VIEWER)).await;
    assert!(viewer.status().await.is_ok(), "a viewer may look");
    assert!(viewer.wait(run).await.is_ok());
    // The service requests look only, as docs/protocol.md says: a viewer is served them.
    for request in [
        Request::Services { path: None },
        Request::ServiceHistory {
            path: None,
            limit: 10,
        },
        Request::ServiceLogs {
            path: None,
            limit: 10,
            offset: None,
        },
    ] {
        match viewer.call(request.clone()).await {
            Ok(Response::Error(e)) => panic!("a viewer is refused {request:?}: {e:?}"),
            Ok(_) => {}
            Err(e) => panic!("a viewer is refused {request:?}: {e}"),
        }
    }
    match viewer.trigger("hello", Default::default()).await {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.kind, ApiErrorKind::Forbidden, "{e}");
            assert!(e.message.contains("viewer"), "{e}");
        }
        other => panic!("a viewer's trigger must be refused, got {other:?}"),
    }

    let stranger = client(&endpoints, Some("a token nobody gave out, long enough")).await;
    assert!(
        matches!(stranger.status().await, Err(ClientError::Unreachable(_))),
        "a forged request is not answered"
    );
    let unsigned = client(&endpoints, None).await;
    assert!(
        matches!(unsigned.status().await, Err(ClientError::Unreachable(_))),
        "an unsigned request is not answered"
    );
    let counts = operator.status().await.unwrap().auth.unwrap();
    assert!(counts.bad_mac >= 1, "{counts:?}");
    assert!(counts.unsigned >= 1, "{counts:?}");

    // The data dir's own socket is guarded by the file system, not by tokens.
    let local = p.run(&["status"]);
    assert!(local.status.success(), "{}", text(&local.stderr));
}

#[test]
fn a_foreign_signed_client_is_answered_and_its_replays_and_forgeries_are_not() {
    let has_pyzmq = Command::new("python3")
        .args(["-c", "import zmq"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pyzmq {
        crate::common::skip(
            "python3 with pyzmq is not installed (pip install -r tests/requirements.txt)",
        );
        return;
    }
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let (_principal, endpoints) = protected(&p);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/signed_client.py"
    );
    let token = p.path().join("op.token");
    let out = Command::new("timeout")
        .args(["60", "python3", script, &endpoints.requests])
        .arg(&token)
        .arg("1")
        .output()
        .expect("run the signed client");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let step = |name: &str| -> serde_json::Value {
        stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {stdout}"))
    };
    assert_eq!(step("signed")["reply"], "status");
    assert_eq!(step("signed")["answer_signed"], true);
    assert_eq!(step("replay")["answered"], false);
    assert_eq!(step("forged")["answered"], false);
    assert_eq!(step("unsigned")["answered"], false);
    let auth = step("next")["auth"].clone();
    assert_eq!(auth["replayed"], 1, "{auth}");
    assert_eq!(auth["bad_mac"], 1, "{auth}");
    assert_eq!(auth["unsigned"], 1, "{auth}");
}

#[test]
fn nothing_beyond_loopback_listens_without_a_token_and_short_tokens_are_refused() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    // Refused before anything is bound.
    let out = p.run(&["principal", "--listen", "tcp://0.0.0.0:7999"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // It says what to use: CURVE keys (the token scheme is retired).
    assert!(
        text(&out.stderr).contains("--keys"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(p.path().join("short.token"), "secret\n").unwrap();
    let out = p.run(&[
        "principal",
        "--listen",
        "tcp://127.0.0.1:0",
        "--token-file",
        "short.token",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("at least 16"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(p.path().join("same.token"), OPERATOR).unwrap();
    std::fs::write(p.path().join("same2.token"), OPERATOR).unwrap();
    let out = p.run(&[
        "principal",
        "--listen",
        "tcp://127.0.0.1:0",
        "--token-file",
        "same.token",
        "--viewer-token-file",
        "same2.token",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("differ"),
        "{}",
        text(&out.stderr)
    );
}

/// docs/protocol.md lists every request a viewer may make, the service requests included.
#[test]
fn the_protocol_lists_every_request_a_viewer_may_make() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"))
        .expect("docs/protocol.md");
    let listed = doc
        .split("the viewer token's key only requests that")
        .nth(1)
        .and_then(|rest| rest.split("Anything else from a viewer").next())
        .expect("the paragraph on what a viewer may request");
    for op in [
        "status",
        "wait_run",
        "history",
        "logs",
        "workflows",
        "get_spec",
        "run_detail",
        "queue",
        "agents",
        "services",
        "service_history",
        "service_logs",
    ] {
        assert!(
            listed.contains(&format!("`{op}`")),
            "`{op}` missing in: {listed}"
        );
    }
}
