//! Push monitors from the outside: `opsconsole ping` refuses what is not a push monitor
//! with a message naming it (locally and with `--principal`), and the ping listener
//! (`principal --ping-listen`) answers 404 to a wrong secret or path, counts it, survives a
//! hostile request head, and keeps its key private.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::project::{Project, Stopped, eventually, free_port_triple, text};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";

/// A principal with the fake monitors (`mon-000000` is http) and `extra` arguments.
fn principal(p: &Project, extra: &[&str]) -> Stopped {
    let mut args = vec!["principal"];
    args.extend_from_slice(extra);
    let mut cmd = p.cmd(&args);
    cmd.env("OPSCONSOLE_FAILPOINT", "fake-monitors")
        .env("OPSCONSOLE_FAKE_MONITORS", "20");
    p.start_principal(cmd)
}

/// Sends `head` (and nothing else) to the listener; the status line of the answer, or what
/// happened instead.
fn http(port: u16, head: &str) -> String {
    let mut s = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => return format!("connect: {e}"),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    if let Err(e) = s.write_all(head.as_bytes()) {
        return format!("write: {e}");
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    text(&out).lines().next().unwrap_or("(closed)").to_string()
}

fn get(port: u16, path: &str) -> String {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

/// A principal of `p` with the fake monitors and a ping listener, once it listens; its port.
fn with_ping_listener(p: &Project) -> (Stopped, u16) {
    let port = free_port_triple();
    let addr = format!("127.0.0.1:{port}");
    let principal = principal(p, &["--ping-listen", &addr]);
    assert!(
        eventually(Duration::from_secs(30), || TcpStream::connect(&addr)
            .is_ok()),
        "the ping listener did not listen"
    );
    (principal, port)
}

#[test]
fn ping_refuses_an_unknown_monitor_and_one_that_is_not_a_push_monitor() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let port = free_port_triple();
    let listen = format!("tcp://127.0.0.1:{port}");
    let _principal = principal(&p, &["--listen", &listen]);
    assert!(eventually(Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));

    let out = p.run(&["ping", "mon-000000"]);
    let err = text(&out.stderr);
    println!(
        "ping of an http monitor: exit {:?}: {err}",
        out.status.code()
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("monitor `mon-000000` is a http monitor, not a push monitor"),
        "{err}"
    );

    let out = p.run(&["ping", "nope", "--fail", "--message", "it broke"]);
    let err = text(&out.stderr);
    println!(
        "ping of an unknown monitor: exit {:?}: {err}",
        out.status.code()
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no monitor named `nope`"), "{err}");

    // The same through the network endpoint.
    let out = p.run(&["--principal", &listen, "ping", "mon-000001"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`mon-000001` is a tcp monitor"), "{err}");

    // A message over the bound is refused before anything is sent.
    let long = "x".repeat(2000);
    let out = p.run(&["ping", "nope", "--message", &long]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--message is 2000 bytes; at most 1024"),
        "{err}"
    );
}

#[test]
fn the_ping_url_with_a_wrong_secret_gets_404_and_the_listener_stays_up() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let (_principal, port) = with_ping_listener(&p);

    let wrong = get(port, "/ping/mon-000000/00000000000000000000000000000000");
    println!("wrong secret: {wrong}");
    assert!(wrong.starts_with("HTTP/1.1 404"), "{wrong}");
    let fail = get(
        port,
        "/ping/mon-000000/00000000000000000000000000000000/fail",
    );
    assert!(fail.starts_with("HTTP/1.1 404"), "{fail}");
    let other = get(port, "/");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let post = http(
        port,
        "POST /ping/nope/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhey",
    );
    assert!(post.starts_with("HTTP/1.1 404"), "{post}");
    let delete = http(port, "DELETE /ping/nope/abc HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(delete.starts_with("HTTP/1.1 405"), "{delete}");

    // A head far over the bound, and garbage: refused or closed, never a crash.
    let huge = format!(
        "GET /ping/a/b HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = http(port, &huge);
    println!("a 64 KiB header: {answer}");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = http(port, "\u{1}\u{2}garbage\r\n\r\n");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    let again = get(port, "/ping/mon-000000/x");
    assert!(again.starts_with("HTTP/1.1 404"), "still serving: {again}");

    // The key the secrets come from is the principal's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.data().join("ping.key"))
        .expect("ping.key made on start")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // `ping_url` of a monitor that is not a push monitor is refused as `ping` is.
    let out = p.run(&["monitor", "show", "mon-000000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("ping URL"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn connections_that_say_nothing_do_not_shut_jobs_out_of_the_ping_listener() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let (_principal, port) = with_ping_listener(&p);
    let addr = format!("127.0.0.1:{port}");
    // 200 peers connect and say nothing; 20 more trickle the start of a head.
    let mut idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    for _ in 0..20 {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.write_all(b"GET /pi");
            idle.push(s);
        }
    }
    assert!(idle.len() >= 200, "only {} connections", idle.len());
    // A job's request is still answered, at once (404: a wrong secret), more than once.
    for n in 0..3 {
        let answer = get(port, "/ping/mon-000000/x");
        assert!(
            answer.starts_with("HTTP/1.1 404"),
            "request {n} beside {} silent connections: {answer}",
            idle.len()
        );
    }
    drop(idle);
}

#[test]
fn a_bad_ping_listen_address_is_refused_at_start() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let out = p
        .cmd(&["principal", "--ping-listen", "nowhere"])
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--ping-listen nowhere: not `IP:PORT` or `PORT`"),
        "{err}"
    );
}

// ---- end to end with the monitor actor ----

/// `monitors --json`: the state of `name` and its cause, if listed.
fn state(p: &Project, name: &str) -> Option<(String, String)> {
    let out = p.run(&["monitors", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let m = v["monitors"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?
        .clone();
    Some((
        m["state"].as_str()?.to_string(),
        m["cause"]["seen"].as_str().unwrap_or("").to_string(),
    ))
}

fn is_state(p: &Project, name: &str, want: &str) -> bool {
    state(p, name).is_some_and(|(s, _)| s == want)
}

/// `incidents --json` of monitor `name`: (open, closed) counts.
fn incidents(p: &Project, name: &str) -> (usize, usize) {
    let out = p.run(&["incidents", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let all: Vec<&serde_json::Value> = v
        .as_array()
        .map(|a| a.iter().filter(|i| i["monitor"] == name).collect())
        .unwrap_or_default();
    let open = all.iter().filter(|i| i["closed"].is_null()).count();
    (open, all.len() - open)
}

const BEAT: &str = "kind: monitor\nname: beat\nevery: 2s\ncheck: { push: { grace: 1s } }\n\
                    unhealthy_after: 1\nhealthy_after: 1\n";

#[test]
fn a_push_monitor_stays_healthy_while_pinged_fails_when_silent_and_recovers_on_a_ping() {
    let p = Project::new(&[("hello.yaml", HELLO), ("beat.yaml", BEAT)]);
    let port = free_port_triple();
    let addr = format!("127.0.0.1:{port}");
    let _principal = p.real_principal(&["--ping-listen", &addr]);
    assert!(
        eventually(Duration::from_secs(30), || state(&p, "beat").is_some()),
        "the monitor was not loaded"
    );

    // Pinged every half second for six seconds (two intervals and more): healthy throughout.
    for k in 0..12 {
        let out = p.run(&["ping", "beat", "--message", &format!("beat {k}")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        if k == 0 {
            println!("first ping: {}", text(&out.stdout).trim());
        }
        std::thread::sleep(Duration::from_millis(500));
        assert!(is_state(&p, "beat", "healthy"), "{:?}", state(&p, "beat"));
    }
    assert_eq!(incidents(&p, "beat"), (0, 0));

    // Silent: unhealthy once every + grace has passed, with an incident saying since when.
    assert!(
        eventually(Duration::from_secs(20), || is_state(
            &p,
            "beat",
            "unhealthy"
        )),
        "{:?}",
        state(&p, "beat")
    );
    let (_, cause) = state(&p, "beat").unwrap_or_default();
    println!("silent: {cause}");
    assert!(cause.contains("no ping since"), "{cause}");
    assert!(eventually(Duration::from_secs(10), || incidents(
        &p, "beat"
    ) == (1, 0)));

    // One ping: healthy again, the incident closed.
    let out = p.run(&["ping", "beat"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("now healthy"),
        "{}",
        text(&out.stdout)
    );
    assert!(eventually(Duration::from_secs(10), || incidents(
        &p, "beat"
    ) == (0, 1)));

    // The ping URL: shown by `monitor show`, and it works (a failure, then a recovery).
    let out = p.run(&["monitor", "show", "beat"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let url = shown
        .lines()
        .find_map(|l| l.strip_prefix("ping URL: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no ping URL in:\n{shown}"))
        .to_string();
    println!("ping URL: {url}");
    let path = url
        .strip_prefix(&format!("http://{addr}"))
        .expect("on the listener")
        .to_string();
    let failed = http(
        port,
        &format!(
            "POST {path}/fail HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndisk full"
        ),
    );
    assert!(failed.starts_with("HTTP/1.1 200"), "{failed}");
    let (s, cause) = state(&p, "beat").unwrap_or_default();
    assert_eq!(s, "unhealthy", "{cause}");
    assert!(
        cause.contains("the job reported a failure: disk full"),
        "{cause}"
    );
    let ok = get(port, &path);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(is_state(&p, "beat", "healthy"), "{:?}", state(&p, "beat"));
    let wrong = get(port, &format!("{}x", &path[..path.len() - 1]));
    assert!(wrong.starts_with("HTTP/1.1 404"), "{wrong}");
    assert_eq!(incidents(&p, "beat"), (0, 2));
}

#[test]
fn a_workflow_monitor_is_healthy_after_a_success_and_unhealthy_once_it_is_too_old() {
    let nightly = "kind: workflow\nname: nightly\ntasks:\n  work: { run: \"test -e go\" }\n";
    let watch = "kind: monitor\nname: nightly-ok\nevery: 1s\n\
                 check: { workflow: { name: nightly, succeeded_within: 4s } }\n\
                 unhealthy_after: 1\nhealthy_after: 1\n";
    let p = Project::new(&[("nightly.yaml", nightly), ("watch.yaml", watch)]);
    let _principal = p.real_principal(&[]);

    // Never ran: unhealthy, saying so.
    assert!(
        eventually(Duration::from_secs(20), || is_state(
            &p,
            "nightly-ok",
            "unhealthy"
        )),
        "{:?}",
        state(&p, "nightly-ok")
    );
    let (_, cause) = state(&p, "nightly-ok").unwrap_or_default();
    println!("never ran: {cause}");
    assert!(cause.contains("has never run"), "{cause}");

    // A failed run does not count.
    let out = p.run(&["run", "nightly", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_secs(2));
    assert!(is_state(&p, "nightly-ok", "unhealthy"));

    // A success: healthy within a check or two.
    std::fs::write(p.path().join("go"), "").expect("write");
    let out = p.run(&["run", "nightly", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        eventually(Duration::from_secs(10), || is_state(
            &p,
            "nightly-ok",
            "healthy"
        )),
        "{:?}",
        state(&p, "nightly-ok")
    );
    // And unhealthy again once succeeded_within has passed.
    assert!(
        eventually(Duration::from_secs(20), || is_state(
            &p,
            "nightly-ok",
            "unhealthy"
        )),
        "{:?}",
        state(&p, "nightly-ok")
    );
    let (_, cause) = state(&p, "nightly-ok").unwrap_or_default();
    println!("too old: {cause}");
    assert!(
        cause.contains("workflow `nightly` last succeeded"),
        "{cause}"
    );
    assert!(cause.contains("expected within 4.0s"), "{cause}");
}

#[test]
fn a_viewer_may_neither_ping_nor_read_a_ping_url_and_an_operator_may() {
    let p = Project::new(&[("hello.yaml", HELLO), ("beat.yaml", BEAT)]);
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
    let ping_port = free_port_triple();
    let ping_addr = format!("127.0.0.1:{ping_port}");
    let _principal = p.real_principal(&[
        "--listen",
        &listen,
        "--keys",
        "authorized",
        "--ping-listen",
        &ping_addr,
    ]);
    assert!(
        eventually(Duration::from_secs(30), || state(&p, "beat").is_some()),
        "the monitor was not loaded"
    );
    let server_pub = p.data().join("server.pub");
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
    let out = remote("vic.secret", &["ping", "beat"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("viewer"), "{said}");
    println!("a viewer pinging: {}", said.trim());
    let out = remote("vic.secret", &["monitor", "show", "beat"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !shown.contains("/ping/beat/"),
        "a viewer saw the secret:\n{shown}"
    );
    let out = remote(
        "alice.secret",
        &["ping", "beat", "--fail", "--message", "nope"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("failure recorded"),
        "{}",
        text(&out.stdout)
    );
    let out = remote("alice.secret", &["monitor", "show", "beat"]);
    assert!(
        text(&out.stdout).contains("/ping/beat/"),
        "{}",
        text(&out.stdout)
    );
}

/// A listener that accepts every connection and never answers (the connections are held
/// until the test ends).
fn never_answers() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

#[test]
fn a_push_deadline_is_kept_while_slow_targets_hold_every_check_worker() {
    // 6,000 http monitors, 600 checks a second, against a target that never answers, under an
    // open-files limit that leaves the prober 64 checks in flight: the workers are all held
    // for 8 s at a time and thousands of checks are behind. The dead man's switch beside them
    // must still fire on time: its deadline does not wait behind their checks.
    let port = never_answers();
    let rows: String = (0..6000).map(|i| format!("{i}\n")).collect();
    let fleet = format!(
        "kind: monitor\nname: \"slow-{{{{ target.i }}}}\"\nevery: 10s\ntimeout: 8s\n\
         targets: {{ csv: slow.csv }}\n\
         check: {{ http: {{ url: \"http://127.0.0.1:{port}/{{{{ target.i }}}}\" }} }}\n"
    );
    let csv = format!("i\n{rows}");
    let p = Project::new(&[
        ("hello.yaml", HELLO),
        ("beat.yaml", BEAT),
        ("slow.yaml", &fleet),
        ("slow.csv", &csv),
    ]);
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=256:256")
        .arg(crate::common::project::BIN)
        .arg("principal")
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .env_remove("OPSCONSOLE_FAILPOINT");
    let _principal = p.start_principal(cmd);
    assert!(
        eventually(Duration::from_secs(30), || state(&p, "beat").is_some()),
        "the monitor was not loaded"
    );
    // Never pinged: unhealthy once every + grace (3 s) has passed, a few ticks later at most.
    assert!(
        eventually(Duration::from_secs(12), || is_state(
            &p,
            "beat",
            "unhealthy"
        )),
        "the push deadline waited behind the slow checks: {:?}",
        state(&p, "beat")
    );
    // And the slow monitors are being checked all along, within their bound.
    let out = p.run(&["monitor", "show", "slow-0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
