//! The monitor faces against a real principal whose board is filled by the `fake-monitors`
//! failure point (200 made-up monitors: every 50, one of each state but healthy): `monitors`
//! lists and filters, `incidents` lists open then recent, `monitor show|pause|resume|check`
//! go through the principal, a viewer may read but not pause, exit codes say what happened.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::project::{Project, Stopped, eventually, free_port_triple, text};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";

/// `opsconsole ARGS` in the project with the fake monitors switched on.
fn with_fakes(p: &Project, args: &[&str]) -> Command {
    let mut c = p.cmd(args);
    c.env("OPSCONSOLE_FAILPOINT", "fake-monitors")
        .env("OPSCONSOLE_FAKE_MONITORS", "200");
    c
}

/// A principal for the project's data dir with fake monitors, once its local socket is up.
fn principal(p: &Project, extra: &[&str]) -> Stopped {
    let mut args = vec!["principal"];
    args.extend_from_slice(extra);
    p.start_principal(with_fakes(p, &args))
}

/// The same, not waited for.
fn spawn_principal(p: &Project, extra: &[&str]) -> Stopped {
    let mut args = vec!["principal"];
    args.extend_from_slice(extra);
    let child = with_fakes(p, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn principal");
    Stopped(child)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn monitors_and_incidents_list_filter_and_control_through_the_principal() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let _principal = principal(&p, &[]);

    let out = p.run(&["monitors"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(
        stdout.contains("mon-000000") && stdout.contains("mon-000199"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "200 monitors (200 shown): 4 unhealthy · 4 degraded · 4 unknown · 176 healthy"
        ),
        "{last}"
    );
    println!("monitors, last line: {last}");

    let out = p.run(&["monitors", "--state", "unhealthy"]);
    let rows: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("mon-"))
        .map(String::from)
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.contains("unhealthy")), "{rows:?}");
    assert!(
        rows[0].contains("[STATUS] == 200 (saw [STATUS] = 503)"),
        "{rows:?}"
    );

    // Every fiftieth-plus-one is degraded: all of them odd, so all in `us`.
    let v = json(&p.run(&["monitors", "--state", "degraded", "--tag", "us", "--json"]));
    let listed = v["monitors"].as_array().expect("monitors");
    assert_eq!(listed.len(), 4, "{v}");
    for m in listed {
        assert_eq!(m["state"], "degraded");
        assert!(
            m["tags"].as_array().expect("tags").contains(&"us".into()),
            "{m}"
        );
    }
    assert_eq!(v["counts"]["total"], 200);
    assert_eq!(v["counts"]["open_incidents"], 4);
    assert_eq!(v["running"], true);

    let v = json(&p.run(&["monitors", "--name", "00019", "--json"]));
    assert_eq!(v["monitors"].as_array().map(Vec::len), Some(11), "{v}");
    let v = json(&p.run(&["monitors", "--state", "unhealthy", "--tag", "us", "--json"]));
    assert_eq!(v["monitors"].as_array().map(Vec::len), Some(0), "{v}");

    let bad = p.run(&["monitors", "--state", "sick"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("unhealthy"),
        "{}",
        text(&bad.stderr)
    );

    // Incidents: the four open ones first, then the closed ones.
    let out = p.run(&["incidents"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let states: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(states.len(), 8, "{stdout}");
    assert!(states[..4].iter().all(|s| *s == "open"), "{stdout}");
    assert!(states[4..].iter().all(|s| *s == "closed"), "{stdout}");
    println!("incidents:\n{stdout}");
    let open = json(&p.run(&["incidents", "--open", "--json"]));
    let open = open.as_array().expect("a list");
    assert_eq!(open.len(), 4);
    assert!(open.iter().all(|i| i["closed"].is_null()));

    // One monitor in full.
    let out = p.run(&["monitor", "show", "mon-000000"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("✗ [STATUS] == 200"), "{stdout}");
    assert!(stdout.contains("saw [STATUS] = 503"), "{stdout}");
    assert!(stdout.contains("incident #1"), "{stdout}");
    assert!(stdout.contains("restart web/api: running"), "{stdout}");
    println!("monitor show:\n{stdout}");
    let d = json(&p.run(&["monitor", "show", "mon-000001", "--json"]));
    assert_eq!(d["summary"]["state"], "degraded");
    assert_eq!(d["series_ms"].as_array().map(Vec::len), Some(60));

    // Pause, check, resume.
    let out = p.run(&["monitor", "pause", "mon-000010"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "mon-000010: paused (stays paused until resumed); now paused"
    );
    let v = json(&p.run(&["monitors", "--state", "paused", "--json"]));
    let paused: Vec<&str> = v["monitors"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(paused.contains(&"mon-000010"), "{paused:?}");
    assert_eq!(v["counts"]["paused"], 5);
    let out = p.run(&["monitor", "check", "mon-000011"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("checked"),
        "{}",
        text(&out.stdout)
    );
    let out = p.run(&["monitor", "resume", "mon-000010"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    capture_frames(&p);

    // Unknown names say so and exit 2.
    for args in [
        &["monitor", "pause", "nope"][..],
        &["monitor", "show", "nope"][..],
    ] {
        let out = p.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("no monitor named `nope`"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn without_monitors_lists_are_empty_and_a_monitor_saved_later_is_checked() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let principal = p.real_principal(&[]);
    let out = p.run(&["monitors"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("no monitors: add a `kind: monitor` file"),
        "{}",
        text(&out.stdout)
    );
    let out = p.run(&["monitor", "pause", "x"]);
    assert_eq!(out.status.code(), Some(2), "an unknown name exits 2");
    assert!(
        text(&out.stderr).contains("no monitor named `x`"),
        "{}",
        text(&out.stderr)
    );
    let out = p.run(&["incidents"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "no incidents");
    // A monitor file saved while the principal runs is loaded and checked (a closed port
    // on 127.0.0.1: unhealthy after 2 checks a second apart).
    let port = free_port_triple();
    std::fs::write(
        p.path().join("workflows/db.yaml"),
        format!(
            "kind: monitor\nname: db\nevery: 1s\nunhealthy_after: 2\n\
             check: {{ tcp: {{ host: 127.0.0.1, port: {port} }} }}\n"
        ),
    )
    .expect("write db.yaml");
    let mut last = String::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            last = text(&p.run(&["monitors"]).stdout);
            last.contains("unhealthy")
        }),
        "the monitor saved later was not checked: {last}"
    );
    // No principal at all: exit 1 with the reason.
    drop(principal);
    let out = p.run(&["monitors"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no principal"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_viewer_key_reads_monitors_but_may_not_pause_one() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let key = |name: &str| {
        let out = p.run(&["keys", "new", name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::read_to_string(p.path().join(format!("{name}.pub")))
            .expect("pub")
            .trim()
            .to_string()
    };
    let (alice, vic) = (key("alice"), key("vic"));
    std::fs::write(
        p.path().join("authorized"),
        format!("operator alice {alice}\nviewer vic {vic}\n"),
    )
    .expect("write keys");
    let port = free_port_triple();
    let listen = format!("tcp://127.0.0.1:{port}");
    let _principal = spawn_principal(&p, &["--listen", &listen, "--keys", "authorized"]);
    let server_pub = p.data().join("server.pub");
    assert!(
        eventually(Duration::from_secs(60), || server_pub.exists()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "the principal did not listen"
    );
    let server_pub = server_pub.to_str().expect("utf-8").to_string();
    let remote = |key: &str, args: &[&str]| {
        let mut all = vec![
            "--principal",
            &listen,
            "--server-key",
            &server_pub,
            "--key",
            key,
        ];
        all.extend_from_slice(args);
        p.cmd(&all).output().expect("run")
    };
    let out = remote(
        "vic.secret",
        &["monitors", "--state", "unhealthy", "--json"],
    );
    let v = json(&out);
    assert_eq!(v["monitors"].as_array().map(Vec::len), Some(4), "{v}");
    let out = remote("vic.secret", &["incidents", "--open"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = remote("vic.secret", &["monitor", "show", "mon-000000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = remote("vic.secret", &["monitor", "pause", "mon-000010"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(said.contains("viewer"), "{said}");
    println!("a viewer pausing: {}", said.trim());
    let out = remote("alice.secret", &["monitor", "pause", "mon-000010"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Prints each monitor request and its reply as they cross the wire (the frames quoted in
/// docs/protocol.md), and checks that each is answered as documented.
fn capture_frames(p: &Project) {
    use opsconsole::protocol::api::{Client, Request, Response};
    use opsconsole::protocol::monitor::{MonitorAction, MonitorFilter, MonitorState};
    use opsconsole::protocol::zmq::{Endpoints, ZmqClient};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client =
            ZmqClient::connect(&Endpoints::for_data_dir(&p.data()), Duration::from_secs(5))
                .await
                .expect("connect");
        let requests = [
            Request::Monitors {
                filter: MonitorFilter {
                    state: Some(MonitorState::Unhealthy),
                    tag: Some("eu".into()),
                    name: None,
                },
                offset: 0,
                limit: 1,
            },
            Request::Monitor {
                name: "mon-000000".into(),
            },
            Request::Incidents {
                open_only: true,
                limit: 1,
            },
            Request::MonitorControl {
                name: "mon-000012".into(),
                action: MonitorAction::Pause,
            },
            Request::MonitorControl {
                name: "nope".into(),
                action: MonitorAction::Check,
            },
        ];
        for (id, request) in (50..).zip(requests) {
            let reply = client.call(request.clone()).await.expect("answered");
            let frame = |body: String| format!("{{\"v\":1,\"id\":{id},\"body\":{body}}}");
            println!("{}", frame(serde_json::to_string(&request).expect("json")));
            println!("{}", frame(serde_json::to_string(&reply).expect("json")));
            let ok = match (&request, &reply) {
                (Request::Monitors { .. }, Response::Monitors(page)) => page.matched == 4,
                (Request::Monitor { .. }, Response::Monitor(d)) => d.incident.is_some(),
                (Request::Incidents { .. }, Response::Incidents { incidents }) => {
                    incidents.len() == 1
                }
                (
                    Request::MonitorControl { name, .. },
                    Response::MonitorControlled { monitor, .. },
                ) => monitor.name == *name && monitor.state == MonitorState::Paused,
                (Request::MonitorControl { .. }, Response::Error(e)) => e.message.contains("nope"),
                _ => false,
            };
            assert!(ok, "{request:?} -> {reply:?}");
        }
    });
}
