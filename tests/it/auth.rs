//! Who may do what on a CURVE endpoint (`principal --listen … --keys FILE`): an operator's key
//! does everything, a viewer's only looks, an agent's key may only ask for status on the
//! request socket, a stranger's key and a plain NULL client get nothing; the retired HMAC token
//! options are refused with what to use instead; nothing beyond loopback listens without CURVE.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::project::{Project, Stopped, text};
use opsconsole::protocol::api::{
    ApiErrorKind, Client, ClientError, ClientExt, Request, Response, Role,
};
use opsconsole::protocol::service::ServiceAction;
use opsconsole::protocol::zmq::{Endpoints, ZmqClient};
use opsconsole::protocol::{Event, RunId, RunState};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";

/// Makes NAME.pub / NAME.secret in the project directory with `keys new`; the public key.
pub(crate) fn new_key(p: &Project, name: &str) -> String {
    let out = p.run(&["keys", "new", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::read_to_string(p.path().join(format!("{name}.pub")))
        .expect("pub")
        .trim()
        .to_string()
}

/// A principal process listening with CURVE on a free loopback port.
pub(crate) struct CurvePrincipal {
    pub(crate) child: Stopped,
    pub(crate) endpoints: Endpoints,
    pub(crate) agents: String,
}

/// Starts `principal --listen tcp://127.0.0.1:0 --keys authorized EXTRA` in `p` after writing
/// `authorized` with a line `ROLE NAME PUBKEY` per (role, name) (keys made with `keys new`),
/// and copies its server.pub into the project directory.
pub(crate) fn start_curve(p: &Project, keys: &[(&str, &str)], extra: &[&str]) -> CurvePrincipal {
    let lines: String = keys
        .iter()
        .map(|(role, name)| format!("{role} {name} {}\n", new_key(p, name)))
        .collect();
    std::fs::write(p.path().join("authorized"), lines).expect("authorized keys");
    let mut args = vec![
        "principal",
        "--listen",
        "tcp://127.0.0.1:0",
        "--keys",
        "authorized",
    ];
    args.extend_from_slice(extra);
    let mut child = p.spawn(&args);
    let stderr = child.stderr.take().expect("stderr");
    let child = Stopped(child);
    let mut lines = BufReader::new(stderr).lines();
    let (endpoints, agents) = loop {
        let line = lines
            .next()
            .expect("the principal said where it listens")
            .expect("read stderr");
        if let Some(rest) = line.split("listening on tcp://").nth(1) {
            assert!(line.contains("CURVE: keys of"), "{line}");
            let field = |after: &str| {
                line.split(after)
                    .nth(1)
                    .and_then(|s| s.split([',', ')']).next())
                    .expect("endpoint in the line")
                    .to_string()
            };
            let requests = format!("tcp://{}", rest.split_whitespace().next().unwrap());
            break (
                Endpoints {
                    requests,
                    events: field("(events on "),
                },
                field("agents on "),
            );
        }
    };
    // Keep draining stderr so the principal never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    std::fs::copy(p.data().join("server.pub"), p.path().join("server.pub")).expect("server.pub");
    CurvePrincipal {
        child,
        endpoints,
        agents,
    }
}

/// opsconsole's own client with the key NAME.secret of the project directory.
pub(crate) async fn curve_client(p: &Project, endpoints: &Endpoints, name: &str) -> ZmqClient {
    let security = opsconsole::protocol::zmq::keys::client_security(
        &p.path().join(format!("{name}.secret")),
        p.path().join("server.pub").to_str().expect("utf-8"),
    )
    .expect("client keys");
    ZmqClient::connect_curve(endpoints, Duration::from_secs(2), security)
        .await
        .expect("valid endpoints")
}

/// `opsconsole --principal EP --server-key server.pub --key NAME.secret ARGS` in `dir`.
pub(crate) fn remote(dir: &Path, endpoint: &str, key: &str, args: &[&str]) -> Output {
    let key = format!("{key}.secret");
    std::process::Command::new(crate::common::project::BIN)
        .args(["--principal", endpoint, "--server-key", "server.pub"])
        .args(["--key", &key])
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run opsconsole")
}

/// What an operator may ask and a viewer may not: each must be refused for a viewer's key.
fn operator_requests(run: RunId) -> Vec<Request> {
    vec![
        Request::Trigger {
            workflow: "hello".into(),
            params: Default::default(),
        },
        Request::Cancel { run_id: run },
        Request::Retry { run_id: run },
        Request::Pause {
            workflow: "hello".into(),
        },
        Request::Resume {
            workflow: "hello".into(),
        },
        Request::PutSpec {
            file: "sneaky.yaml".into(),
            text: HELLO.replace("hello", "sneaky"),
            base_hash: None,
        },
        Request::Cordon {
            agent: opsconsole::protocol::agent::AgentId("local".into()),
            cordon: true,
        },
        Request::Drain {
            agent: opsconsole::protocol::agent::AgentId("local".into()),
        },
        Request::ServiceControl {
            path: "web".into(),
            action: ServiceAction::Stop,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_do_everything_viewers_and_agent_keys_only_look_and_strangers_get_nothing() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let principal = start_curve(
        &p,
        &[("operator", "alice"), ("viewer", "vic"), ("agent", "ag")],
        &[],
    );
    new_key(&p, "mallory");
    let endpoints = &principal.endpoints;

    let operator = curve_client(&p, endpoints, "alice").await;
    let status = operator.status().await.expect("the operator is served");
    let curve = status.curve.expect("a CURVE endpoint says who asked");
    assert_eq!(curve.key_name, "alice");
    assert_eq!(status.role, Some(Role::Operator));
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
    .expect("events arrive over CURVE");
    assert_eq!(seen, RunState::Succeeded);

    // A valid viewer's key: everything that looks is served, nothing that changes.
    let viewer = curve_client(&p, endpoints, "vic").await;
    let status = viewer.status().await.expect("a viewer may look");
    assert_eq!(status.curve.expect("curve").key_name, "vic");
    assert_eq!(status.role, Some(Role::Viewer));
    assert!(viewer.wait(run).await.is_ok());
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
        Request::Actions { limit: 10 },
        Request::ValidateLoaded,
    ] {
        match viewer.call(request.clone()).await {
            Ok(Response::Error(e)) => panic!("a viewer is refused {request:?}: {e:?}"),
            Ok(_) => {}
            Err(e) => panic!("a viewer is refused {request:?}: {e}"),
        }
    }
    for request in operator_requests(run) {
        match viewer.call(request.clone()).await {
            Ok(Response::Error(e)) => {
                assert_eq!(e.kind, ApiErrorKind::Forbidden, "{request:?}: {e}");
                assert!(e.message.contains("viewer"), "{e}");
            }
            other => panic!("a viewer's {request:?} must be refused, got {other:?}"),
        }
    }
    println!(
        "viewer refused {} operator requests",
        operator_requests(run).len()
    );

    // An agent's key on the request socket: status (to find the agents socket), nothing else.
    let agent_key = curve_client(&p, endpoints, "ag").await;
    let status = agent_key
        .status()
        .await
        .expect("an agent key may ask for status");
    assert_eq!(status.curve.expect("curve").key_name, "ag");
    for request in [Request::History {
        workflow: None,
        limit: 5,
    }]
    .into_iter()
    .chain(operator_requests(run))
    {
        match agent_key.call(request.clone()).await {
            Ok(Response::Error(e)) => {
                assert_eq!(e.kind, ApiErrorKind::Forbidden, "{request:?}: {e}");
                assert!(e.message.contains("agent's"), "{e}");
            }
            other => panic!("an agent key's {request:?} must be refused, got {other:?}"),
        }
    }

    // Not answered: a key not in the file, a client without CURVE.
    let stranger = curve_client(&p, endpoints, "mallory").await;
    assert!(
        matches!(stranger.status().await, Err(ClientError::Unreachable(_))),
        "an unknown key is not answered"
    );
    let plain = ZmqClient::connect(endpoints, Duration::from_secs(2))
        .await
        .expect("endpoints");
    assert!(
        matches!(plain.status().await, Err(ClientError::Unreachable(_))),
        "a NULL client is not answered"
    );
    let refused = operator
        .status()
        .await
        .expect("status")
        .curve
        .expect("curve")
        .refused;
    println!("refused on the request socket: {refused:?}");
    assert!(refused.unknown_key >= 1, "{refused:?}");

    // Nothing the viewer or the agent key asked for happened.
    let runs = match operator
        .call(Request::History {
            workflow: None,
            limit: 10,
        })
        .await
    {
        Ok(Response::Runs { runs }) => runs,
        other => panic!("history: {other:?}"),
    };
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(!p.path().join("workflows/sneaky.yaml").exists());

    // The data dir's own socket is guarded by the file system, and says so.
    let local = p.run(&["status"]);
    assert!(local.status.success(), "{}", text(&local.stderr));
    assert!(
        text(&local.stdout).contains("asked as local"),
        "{}",
        text(&local.stdout)
    );
}

#[test]
fn the_retired_token_options_exit_2_and_say_what_to_use_instead() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    std::fs::write(
        p.path().join("op.token"),
        "operator-token-0123456789abcdef\n",
    )
    .unwrap();
    let tries: [&[&str]; 5] = [
        &[
            "principal",
            "--listen",
            "tcp://127.0.0.1:0",
            "--token-file",
            "op.token",
        ],
        &[
            "principal",
            "--listen",
            "tcp://127.0.0.1:0",
            "--viewer-token-file",
            "op.token",
        ],
        &["principal", "--token-file", "op.token"],
        &["attach", "tcp://127.0.0.1:7400", "--token-file", "op.token"],
        &[
            "agent",
            "--principal",
            "tcp://127.0.0.1:7400",
            "--token-file",
            "op.token",
        ],
    ];
    for args in tries {
        let out = p.run(args);
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        for needed in [
            "opsconsole keys new NAME",
            "--keys FILE",
            "--server-key",
            "--key",
        ] {
            assert!(
                said.contains(needed),
                "{args:?} does not name {needed}: {said}"
            );
        }
    }
    println!("{}", text(&p.run(tries[0]).stderr).trim());
    // Nothing was started: no principal, no socket.
    assert!(!p.socket().exists());
}

#[test]
fn nothing_beyond_loopback_listens_without_curve() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    // Refused before anything is bound.
    let out = p.run(&["principal", "--listen", "tcp://0.0.0.0:7999"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // It says what to use: CURVE keys.
    assert!(
        text(&out.stderr).contains("--keys"),
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
        .split("A viewer's key may make only these requests:")
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
        "actions",
        "validate_loaded",
    ] {
        assert!(
            listed.contains(&format!("`{op}`")),
            "`{op}` missing in: {listed}"
        );
    }
}
