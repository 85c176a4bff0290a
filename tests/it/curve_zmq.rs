//! CURVE (RFC 25/26) against libzmq: pyzmq clients with `curve_serverkey` drive a principal
//! started with `--keys`; opsconsole's own client talks to a pyzmq CURVE server; an agent
//! with a viewer's key is told it may not run work; refusals are counted and never answered.
//! Skipped, with the reason printed, where Python or pyzmq is missing.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::project::{Project, Stopped, eventually, free_port_triple, text};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";

fn pyzmq() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import zmq; assert zmq.has('curve')"])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err("pyzmq with CURVE is not installed (pip install -r tests/requirements.txt)".into())
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Makes NAME.pub / NAME.secret in the project directory with `keys new`.
fn new_key(p: &Project, name: &str) -> String {
    let out = p.run(&["keys", "new", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = std::fs::read_to_string(p.path().join(format!("{name}.pub"))).expect("pub");
    let public = public.trim().to_string();
    assert_eq!(public.len(), 40, "Z85 key of 40 characters");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path().join(format!("{name}.secret")))
        .expect("secret")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    public
}

#[test]
fn libzmq_clients_speak_curve_with_the_principal_and_every_refusal_is_counted_unanswered() {
    if let Err(why) = pyzmq() {
        crate::common::skip(why);
        return;
    }
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let alice = new_key(&p, "alice");
    let vic = new_key(&p, "vic");
    new_key(&p, "mallory");
    std::fs::write(
        p.path().join("authorized"),
        format!("# who may connect\noperator alice {alice}\nviewer vic {vic}\n"),
    )
    .expect("write keys");
    let port = free_port_triple();
    let listen = format!("tcp://127.0.0.1:{port}");
    let mut principal = Stopped(
        p.cmd(&[
            "principal",
            "--listen",
            &listen,
            "--keys",
            "authorized",
            "--remote-only",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("principal"),
    );
    let server_pub = p.data().join("server.pub");
    assert!(
        eventually(Duration::from_secs(30), || server_pub.exists()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "the principal did not start listening"
    );
    std::fs::copy(&server_pub, p.path().join("server.pub")).expect("copy server.pub");
    let agents = format!("tcp://127.0.0.1:{}", port + 2);
    let out = crate::common::output_apart(
        Command::new("timeout")
            .args([
                "60",
                "python3",
                "-u",
                &fixture("curve_interop.py"),
                &listen,
                &agents,
            ])
            .arg(p.path()),
    )
    .expect("python3");
    let stdout = text(&out.stdout);
    println!("pyzmq interop:\n{stdout}");
    assert!(
        out.status.success(),
        "curve_interop.py: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}"))
            .clone()
    };
    // A libzmq client with the operator's key is answered, and told who it is.
    assert_eq!(step("operator_status")["key_name"], "alice");
    assert_eq!(step("operator_status")["role"], "operator");
    // A viewer may look, not change.
    assert_eq!(step("viewer_trigger")["reply"]["kind"], "forbidden");
    // Never answered: a NULL client, an unknown key, a viewer on the agents socket.
    for never in ["null_client", "unknown_key", "viewer_on_agents"] {
        assert!(step(never)["reply"].is_null(), "{never} was answered");
    }
    let counts = step("refused")["counts"].clone();
    // The NULL client: libzmq breaks off its greeting on seeing CURVE, or completes it.
    let null =
        counts["not_curve"].as_u64().unwrap_or(0) + counts["bad_handshake"].as_u64().unwrap_or(0);
    assert!(null >= 1, "{counts}");
    assert!(counts["unknown_key"].as_u64() >= Some(1), "{counts}");
    assert!(counts["wrong_role"].as_u64() >= Some(1), "{counts}");

    // opsconsole's own client, over the network with the same keys (--principal).
    let remote = |key: &str, args: &[&str]| {
        let mut all = vec![
            "--principal",
            &listen,
            "--server-key",
            "server.pub",
            "--key",
            key,
        ];
        all.extend_from_slice(args);
        p.run(&all)
    };
    let status = remote("alice.secret", &["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let run = remote("vic.secret", &["run", "hello"]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("viewer"),
        "{}",
        text(&run.stderr)
    );

    // An agent with a viewer's key stops at once with the reason, rather than retrying.
    let agent = crate::common::output_apart(
        Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_opsconsole"))
            .current_dir(p.path())
            .args([
                "agent",
                "--principal",
                &listen,
                "--server-key",
                "server.pub",
            ])
            .args(["--key", "vic.secret", "--id", "v1", "--data-dir", ".agent"]),
    )
    .expect("agent");
    let said = text(&agent.stderr);
    println!("agent with a viewer key: {}", said.trim());
    assert!(!agent.status.success());
    assert!(said.contains("not allowed to run work"), "{said}");
    let _ = crate::common::project::signal(principal.0.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.0.wait();
}

#[test]
fn opsconsole_talks_to_a_libzmq_curve_server() {
    if let Err(why) = pyzmq() {
        crate::common::skip(why);
        return;
    }
    let p = Project::new(&[("hello.yaml", HELLO)]);
    new_key(&p, "server");
    new_key(&p, "alice");
    let port = free_port_triple();
    let listen = format!("tcp://127.0.0.1:{port}");
    let mut server = Stopped(
        Command::new("python3")
            .current_dir(p.path())
            .args([
                &fixture("curve_server.py"),
                &listen,
                "server.secret",
                "alice.pub",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let out = p.run(&[
        "--principal",
        &listen,
        "--server-key",
        "server.pub",
        "--key",
        "alice.secret",
        "status",
    ]);
    let said = text(&out.stderr);
    println!("opsconsole against pyzmq: {}", said.trim());
    assert!(said.contains("hello from a pyzmq CURVE server"), "{said}");
    let _ = server.0.kill();
    let _ = server.0.wait();
}

/// Runs `curve_replay.py` with `args`, returning its last JSON line.
fn replay_script(p: &Project, args: &[&str]) -> serde_json::Value {
    let out = crate::common::output_apart(
        Command::new("timeout")
            .args(["30", "python3", "-u", &fixture("curve_replay.py")])
            .args(args)
            .current_dir(p.path()),
    )
    .expect("python3");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "curve_replay.py {args:?}: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).expect("JSON")
}

#[test]
fn a_captured_session_replayed_after_a_restart_and_a_tampered_box_are_refused_and_counted() {
    if let Err(why) = pyzmq() {
        crate::common::skip(why);
        return;
    }
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let alice = new_key(&p, "alice");
    std::fs::write(
        p.path().join("authorized"),
        format!("operator alice {alice}\n"),
    )
    .expect("keys");
    let port = free_port_triple();
    let listen = format!("tcp://127.0.0.1:{port}");
    let start = || {
        let child = Stopped(
            p.cmd(&["principal", "--listen", &listen, "--keys", "authorized"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("principal"),
        );
        assert!(
            eventually(Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "the principal did not listen"
        );
        child
    };
    let mut principal = start();
    std::fs::copy(p.data().join("server.pub"), p.path().join("server.pub")).expect("copy");
    let port_s = port.to_string();
    let recorded = replay_script(&p, &["record", &port_s, ".", "session.bin"]);
    assert_eq!(recorded["answer"]["reply"], "accepted", "{recorded}");
    let runs = || {
        text(
            &p.run(&[
                "--principal",
                &listen,
                "--server-key",
                "server.pub",
                "--key",
                "alice.secret",
                "history",
            ])
            .stdout,
        )
        .matches("hello")
        .count()
    };
    let before = runs();
    // Restart: the same keys, a new session secret.
    let _ = crate::common::project::signal(principal.0.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.0.wait();
    principal = start();
    let replayed = replay_script(&p, &["replay", &port_s, "session.bin"]);
    println!("replayed session after restart: {replayed}");
    assert_eq!(
        replayed["beyond_welcome"], 0,
        "no READY, no answer: {replayed}"
    );
    let tampered = replay_script(&p, &["tamper", &port_s, ".", "tampered.bin"]);
    println!("tampered box: {tampered}");
    assert!(tampered["answer"].is_null(), "{tampered}");
    let status = p.run(&[
        "--principal",
        &listen,
        "--server-key",
        "server.pub",
        "--key",
        "alice.secret",
        "status",
        "--json",
    ]);
    let said = text(&status.stdout);
    let status: serde_json::Value = serde_json::from_str(&said).expect("status --json");
    let refused = status["curve"]["refused"].clone();
    println!("refused after: {refused}");
    assert!(
        refused["bad_cookie"].as_u64() >= Some(1),
        "the replay: {refused}"
    );
    assert!(
        refused["bad_message"].as_u64() >= Some(1),
        "the tampered box: {refused}"
    );
    assert_eq!(
        runs(),
        before,
        "the replayed trigger was not carried out again"
    );
    let _ = crate::common::project::signal(principal.0.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.0.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyzmq_agent_over_curve_runs_a_task_and_is_listed_under_its_key() {
    use opsconsole::protocol::api::ClientExt;
    if let Err(why) = pyzmq() {
        crate::common::skip(why);
        return;
    }
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let principal = crate::auth::start_curve(
        &p,
        &[("operator", "alice"), ("agent", "py-builder")],
        &["--remote-only", "--agent-heartbeat", "500ms"],
    );
    let alice = crate::auth::curve_client(&p, &principal.endpoints, "alice").await;
    let (agent, _registration) = crate::common::spawn_apart(|| {
        Command::new("timeout")
            .args(["60", "python3", &fixture("curve_agent.py")])
            .arg(&principal.endpoints.requests)
            .arg(p.path())
            .args(["py-builder", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    })
    .expect("python3");
    let mut agent = Stopped(agent);
    crate::agents::wait_ready(&alice, &["py-builder"], Duration::from_secs(30)).await;
    let key = crate::agents::agents(&alice)
        .await
        .into_iter()
        .find(|a| a.info.id.0 == "py-builder")
        .and_then(|a| a.key);
    assert_eq!(
        key.as_deref(),
        Some("py-builder"),
        "the key of its CURVE session"
    );
    let run = alice
        .trigger("hello", Default::default())
        .await
        .expect("trigger");
    let ended = alice.wait(run).await.expect("wait").expect("known run");
    assert_eq!(ended.state, opsconsole::protocol::RunState::Succeeded);
    let child = std::mem::replace(
        &mut agent.0,
        Command::new("true").spawn().expect("placeholder"),
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("agent output");
    let stdout = text(&out.stdout);
    println!("pyzmq CURVE agent:\n{stdout}");
    assert!(
        out.status.success(),
        "the pyzmq agent: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let done: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).expect("JSON");
    assert_eq!(done["tasks"], 1, "{done}");
    assert_eq!(
        done["acked"], 3,
        "started, output and finished acknowledged: {done}"
    );
    assert_eq!(done["key_name"], "py-builder", "{done}");
    assert_eq!(done["agents"], principal.agents.as_str(), "{done}");
    let logs = p.run(&["logs", &run.to_string()]);
    assert!(
        text(&logs.stdout).contains("hi from pyzmq over CURVE"),
        "{}",
        text(&logs.stdout)
    );
}
