//! Who did what: the caller's key name comes from the CURVE session (`local` on the data
//! dir's socket), never from the request, and is kept in the history (`runs.triggered_by`,
//! the `actions` table, `history --actions`) and shown by `agents` (KEY); `--principal EP
//! validate` checks the files that principal has loaded.

use std::time::Duration;

use crate::agents::{agents, wait_ready};
use crate::auth::{curve_client, remote, start_curve};
use crate::common::project::{BIN, Project, Stopped, eventually, signal, text};
use opsconsole::protocol::api::{Client, ClientExt, Request, Response};
use opsconsole::protocol::{RunId, RunState};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";
const SLOW: &str = "kind: workflow\nname: slow\ntasks:\n  nap: { run: \"sleep 30\" }\n";
const NIGHTLY: &str =
    "kind: workflow\nname: nightly\nschedule: \"0 3 1 1 *\"\ntasks:\n  t: { run: \"true\" }\n";

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// Sends `frame` as one raw request on the data dir's socket and returns the answer's body.
async fn raw_request(p: &Project, frame: &str) -> serde_json::Value {
    use zeromq::{Socket, SocketRecv, SocketSend};
    let mut dealer = zeromq::DealerSocket::new();
    let endpoint = format!("ipc://{}", p.socket().display());
    dealer.connect(&endpoint).await.expect("connect");
    dealer
        .send(zeromq::ZmqMessage::from(frame.as_bytes().to_vec()))
        .await
        .expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
        .await
        .expect("answered")
        .expect("recv");
    let bytes = answer.into_vec().pop().expect("a frame");
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    value["body"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_records_who_triggered_cancelled_retried_edited_and_controlled_what() {
    let p = Project::new(&[
        ("hello.yaml", HELLO),
        ("slow.yaml", SLOW),
        ("nightly.yaml", NIGHTLY),
    ]);
    let principal = start_curve(&p, &[("operator", "alice"), ("operator", "bob")], &[]);
    let listen = principal.endpoints.requests.clone();
    let alice = curve_client(&p, &principal.endpoints, "alice").await;
    let bob = curve_client(&p, &principal.endpoints, "bob").await;

    // alice over the network with the CLI, someone on this machine through the data dir.
    let out = remote(p.path(), &listen, "alice", &["run", "hello", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = p.run(&["run", "hello", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A field that claims someone else is not who asked: the transport says who did.
    let body = raw_request(
        &p,
        r#"{"v":1,"id":7,"body":{"op":"trigger","workflow":"hello","params":{},"by":"eve","triggered_by":"eve","caller":"eve"}}"#,
    )
    .await;
    assert_eq!(body["reply"], "accepted", "{body}");
    let claimed = RunId(body["run_id"].as_u64().expect("run id"));
    alice.wait(claimed).await.expect("wait");

    // bob starts a slow run, alice cancels it, bob retries it and alice cancels it again.
    let slow = bob
        .trigger("slow", Default::default())
        .await
        .expect("trigger");
    assert!(alice.cancel(slow).await.expect("cancel"));
    let ended = bob.wait(slow).await.expect("wait").expect("known");
    assert_eq!(ended.state, RunState::Cancelled);
    bob.retry(slow).await.expect("retry");
    assert!(alice.cancel(slow).await.expect("cancel"));
    bob.wait(slow).await.expect("wait");
    // alice edits a file; bob pauses and resumes; alice cordons and uncordons the pool.
    match alice
        .call(Request::PutSpec {
            file: "more.yaml".into(),
            text: HELLO.replace("hello", "more"),
            base_hash: None,
        })
        .await
    {
        Ok(Response::SpecSaved { .. }) => {}
        other => panic!("put_spec: {other:?}"),
    }
    for request in [
        Request::Pause {
            workflow: "nightly".into(),
        },
        Request::Resume {
            workflow: "nightly".into(),
        },
    ] {
        let answer = bob.call(request).await;
        assert!(matches!(answer, Ok(Response::Paused { .. })), "{answer:?}");
    }
    for cordon in [true, false] {
        let request = Request::Cordon {
            agent: opsconsole::protocol::agent::AgentId("local".into()),
            cordon,
        };
        assert!(matches!(
            alice.call(request).await,
            Ok(Response::Agents { .. })
        ));
    }
    // A refused request is not an action: bob cancels a run that has ended.
    assert!(!bob.cancel(RunId(1)).await.expect("cancel"));

    // `history` (here, through the data dir's socket) says who started each run.
    let runs = json(&p.run(&["history", "--json"]));
    let by: Vec<(u64, String)> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["run_id"].as_u64().unwrap(),
                r["triggered_by"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    println!("runs and who triggered them: {by:?}");
    assert_eq!(
        by,
        [
            (slow.0, "bob".to_string()),
            (claimed.0, "local".to_string()),
            (2, "local".to_string()),
            (1, "alice".to_string()),
        ]
    );
    let table = text(&p.run(&["history"]).stdout);
    assert!(
        table.lines().next().unwrap_or("").contains(" BY "),
        "{table}"
    );
    assert!(table.contains("alice") && table.contains("bob"), "{table}");
    // `history --actions`: over the network as bob, the same as here.
    let actions = json(&remote(
        p.path(),
        &listen,
        "bob",
        &["history", "--actions", "--json"],
    ));
    let rows: Vec<(String, String, String)> = actions
        .as_array()
        .expect("actions")
        .iter()
        .rev()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or("?").to_string();
            (s("by"), s("action"), s("target"))
        })
        .collect();
    println!("actions, oldest first:");
    for row in &rows {
        println!("  {row:?}");
    }
    let row = |by: &str, action: &str, target: &str| (by.into(), action.into(), target.into());
    assert_eq!(
        rows,
        vec![
            row("alice", "trigger", "run 1 (hello)"),
            row("local", "trigger", "run 2 (hello)"),
            row("local", "trigger", &format!("run {claimed} (hello)")),
            row("bob", "trigger", &format!("run {slow} (slow)")),
            row("alice", "cancel", &format!("run {slow}")),
            row("bob", "retry", &format!("run {slow}")),
            row("alice", "cancel", &format!("run {slow}")),
            row("alice", "edit", "more.yaml"),
            row("bob", "pause", "nightly"),
            row("bob", "resume", "nightly"),
            row("alice", "cordon", "local"),
            row("alice", "uncordon", "local"),
        ]
    );
    let table = text(&p.run(&["history", "--actions"]).stdout);
    println!("{table}");
    assert!(table.starts_with("WHEN"), "{table}");

    // Kept when the principal has stopped: it is in the file.
    let mut principal = principal;
    let _ = signal(principal.child.0.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.child.0.wait();
    let file = json(&p.run(&["history", "--actions", "--json", "--limit", "3"]));
    assert_eq!(file.as_array().map(Vec::len), Some(3), "{file}");
    assert_eq!(file[0]["action"], "uncordon", "{file}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_show_the_key_each_agent_connected_with() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let principal = start_curve(
        &p,
        &[
            ("operator", "alice"),
            ("viewer", "vic"),
            ("agent", "builder"),
        ],
        &["--remote-only", "--agent-heartbeat", "200ms"],
    );
    let listen = principal.endpoints.requests.clone();
    let alice = curve_client(&p, &principal.endpoints, "alice").await;
    let agent = |id: &str, key: &str| {
        Stopped(
            std::process::Command::new(BIN)
                .args(["--data-dir", &format!(".agent-{id}")])
                .args(["agent", "--principal", &listen, "--id", id])
                .args(["--server-key", "server.pub", "--key", key])
                .current_dir(p.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("agent"),
        )
    };
    let _builder = agent("a1", "builder.secret");
    let mut viewer = agent("v1", "vic.secret");
    wait_ready(&alice, &["a1"], Duration::from_secs(30)).await;
    let list = agents(&alice).await;
    let keys: Vec<(String, Option<String>)> = list
        .iter()
        .map(|a| (a.info.id.0.clone(), a.key.clone()))
        .collect();
    println!("agents and their keys: {keys:?}");
    assert_eq!(
        keys,
        [
            ("local".to_string(), Some("local".to_string())),
            ("a1".to_string(), Some("builder".to_string())),
        ]
    );
    // A viewer's key does not join; that agent stops with the reason.
    assert!(eventually(Duration::from_secs(20), || matches!(
        viewer.0.try_wait(),
        Ok(Some(_))
    )));
    // The table has the KEY column.
    let out = remote(p.path(), &listen, "alice", &["agents"]);
    let table = text(&out.stdout);
    println!("{table}");
    assert!(
        table.lines().next().unwrap_or("").contains(" KEY "),
        "{table}"
    );
    let a1 = table
        .lines()
        .find(|l| l.starts_with("a1"))
        .expect("a1 listed");
    assert!(a1.contains("builder"), "{a1}");
    // The run goes to it and succeeds.
    let run = alice
        .trigger("hello", Default::default())
        .await
        .expect("trigger");
    let ended = alice.wait(run).await.expect("wait").expect("known");
    assert_eq!(ended.state, RunState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_with_principal_checks_the_files_that_principal_has_loaded() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let principal = start_curve(&p, &[("viewer", "vic")], &[]);
    let listen = principal.endpoints.requests.clone();
    // The caller is elsewhere, with no workflows of its own.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    for f in ["vic.secret", "server.pub"] {
        std::fs::copy(p.path().join(f), elsewhere.path().join(f)).expect("copy");
    }
    let out = remote(elsewhere.path(), &listen, "vic", &["validate"]);
    let said = text(&out.stdout);
    println!("{said}");
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("hello"), "{said}");
    assert!(
        said.contains(&p.path().join("workflows").display().to_string()),
        "names the principal's directory: {said}"
    );
    // A broken file there is the principal's problem, reported with file:line:col.
    std::fs::write(
        p.path().join("workflows/broken.yaml"),
        "kind: workflow\nname: broken\ntasks:\n  a: { run: x, depends_on: [nope] }\n",
    )
    .expect("write");
    let out = remote(elsewhere.path(), &listen, "vic", &["validate"]);
    let said = text(&out.stderr);
    println!("{said}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("broken.yaml:4:"), "{said}");
    assert!(said.contains("nope"), "{said}");
    // Without --principal, `validate` checks the caller's own directory, which has nothing.
    let local = std::process::Command::new(BIN)
        .arg("validate")
        .current_dir(elsewhere.path())
        .output()
        .expect("validate");
    assert!(!text(&local.stdout).contains("hello"));
}
