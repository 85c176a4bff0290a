//! Supervised services with real processes under a real principal: ordered start (each once
//! its predecessor is ready) and reverse stop, OTP restart strategies, giving up past the
//! intensity, an operator's hold across restarts, and no service outliving a killed principal.

use std::path::Path;
use std::time::Duration;

use crate::common::project::{Project, Stopped, eventually, nodes, signal, supervisor_doc, text};
use nix::sys::signal::Signal;
use opsconsole::protocol::service::{ServiceNode, ServiceState};

/// A service that logs its start and stop to `order` in the project and says `ready`.
fn svc(name: &str, extra: &str) -> String {
    format!(
        "  - {{ name: {name}, run: \"echo start {name} >> order; trap 'echo stop {name} >> order; exit 0' TERM; echo ready; while :; do sleep 0.05; done\", ready: {{ log: ready, timeout: 5s }}, stop: {{ grace: 2s }}{extra} }}\n"
    )
}

fn node<'a>(nodes: &'a [ServiceNode], path: &str) -> &'a ServiceNode {
    nodes
        .iter()
        .find(|n| n.path == path)
        .unwrap_or_else(|| panic!("no {path} in {nodes:#?}"))
}

fn all_running(p: &Project, paths: &[&str]) -> bool {
    let n = nodes(p);
    paths.iter().all(|path| {
        n.iter()
            .any(|x| x.path == *path && x.state == ServiceState::Running)
    })
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn principal(p: &Project) -> Stopped {
    let child = Stopped(p.spawn(&["principal", "--kill-grace", "1s"]));
    assert!(
        eventually(Duration::from_secs(30), || p.socket().exists()),
        "the principal did not start listening"
    );
    child
}

#[test]
fn services_start_in_order_once_ready_and_stop_in_reverse() {
    let doc = supervisor_doc(
        "web",
        "one_for_one",
        5,
        &[svc("a", ""), svc("b", ""), svc("c", "")],
    );
    let p = Project::new(&[("web.yaml", &doc)]);
    let mut principal = principal(&p);
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p,
        &["web/a", "web/b", "web/c"]
    )));
    assert_eq!(
        lines(&p.path().join("order")),
        ["start a", "start b", "start c"]
    );
    // Their output is kept: the readiness line of each.
    assert!(eventually(Duration::from_secs(5), || {
        text(&p.run(&["logs", "--service", "web"]).stdout)
            .lines()
            .filter(|l| l.ends_with(" ready"))
            .count()
            == 3
    }));
    signal(principal.0.id(), Signal::SIGTERM).expect("SIGTERM");
    let status = principal.0.wait().expect("wait");
    assert!(status.success());
    assert_eq!(
        lines(&p.path().join("order"))[3..],
        ["stop c", "stop b", "stop a"],
        "stopped right to left, each after the one to its right"
    );
    // Read from the file once the principal is gone.
    let out = p.run(&["logs", "--service", "web/b"]);
    assert!(
        text(&out.stdout).contains("[web/b#1] ready"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn one_for_one_restarts_the_crashed_child_and_rest_for_one_those_after_it() {
    let one = supervisor_doc("one", "one_for_one", 5, &[svc("a", ""), svc("b", "")]);
    let rest = supervisor_doc(
        "rest",
        "rest_for_one",
        5,
        &[svc("x", ""), svc("y", ""), svc("z", "")],
    );
    let p = Project::new(&[("one.yaml", &one), ("rest.yaml", &rest)]);
    let _principal = principal(&p);
    let all = ["one/a", "one/b", "rest/x", "rest/y", "rest/z"];
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p, &all
    )));
    let before = nodes(&p);
    let kill = |path: &str| {
        let pid = node(&before, path).pid.expect("pid");
        signal(pid, Signal::SIGKILL).expect("kill");
    };
    kill("one/a");
    kill("rest/y");
    assert!(eventually(Duration::from_secs(10), || {
        let now = nodes(&p);
        node(&now, "one/a").start_no == 2
            && node(&now, "rest/z").start_no == 2
            && all_running(&p, &all)
    }));
    let after = nodes(&p);
    let starts = |path| node(&after, path).start_no;
    assert_eq!(starts("one/b"), 1, "one_for_one: only the crashed child");
    assert_eq!(starts("rest/x"), 1, "rest_for_one: not the ones before it");
    assert_eq!((starts("rest/y"), starts("rest/z")), (2, 2));
    assert_eq!(
        node(&after, "one/a").last_exit.as_deref(),
        Some("killed by signal SIGKILL")
    );
}

#[test]
fn a_child_crashing_in_a_loop_makes_its_supervisor_give_up() {
    let doc = "kind: supervisor\nname: loop\nintensity: 2\nperiod: 30s\nchildren:\n  - { name: bad, run: \"exit 3\", backoff: { initial: 10ms, max: 10ms } }\n";
    let p = Project::new(&[("loop.yaml", doc)]);
    let _principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(10), || {
            nodes(&p)
                .iter()
                .any(|n| n.path == "loop" && n.state == ServiceState::Failed)
        }),
        "{:#?}",
        nodes(&p)
    );
    let n = nodes(&p);
    assert_eq!(node(&n, "loop/bad").state, ServiceState::Stopped);
    assert_eq!(
        node(&n, "loop/bad").last_exit.as_deref(),
        Some("exit code 3")
    );
    assert_eq!(
        node(&n, "loop/bad").start_no,
        3,
        "the first run and two restarts"
    );
    let out = p.run(&["history", "--service", "loop"]);
    let history = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(history.matches(" exited ").count(), 3, "{history}");
    assert!(
        history.contains("gave_up") && history.contains("exit code 3"),
        "{history}"
    );
}

#[test]
fn a_stopped_service_stays_stopped_across_restarts_until_started() {
    let doc = supervisor_doc("web", "one_for_one", 5, &[svc("a", ""), svc("b", "")]);
    let p = Project::new(&[("web.yaml", &doc)]);
    let mut first = principal(&p);
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p,
        &["web/a", "web/b"]
    )));
    let out = p.run(&["svc", "stop", "web/b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(Duration::from_secs(5), || {
        let n = nodes(&p);
        node(&n, "web/b").state == ServiceState::Stopped && node(&n, "web/b").held
    }));
    signal(first.0.id(), Signal::SIGTERM).expect("SIGTERM");
    assert!(first.0.wait().expect("wait").success());
    let _second = principal(&p);
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p,
        &["web/a"]
    )));
    std::thread::sleep(Duration::from_millis(300));
    let n = nodes(&p);
    assert_eq!(node(&n, "web/b").state, ServiceState::Stopped, "still held");
    assert_eq!(
        node(&n, "web/a").start_no,
        17,
        "the second principal numbers its runs after the first's block of 16 reserved ones"
    );
    let out = p.run(&["svc", "start", "web/b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p,
        &["web/b"]
    )));
    let out = p.run(&["svc", "restart", "web/nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("web/nope"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn no_service_outlives_a_killed_principal() {
    let doc = supervisor_doc("web", "one_for_one", 5, &[svc("a", ""), svc("b", "")]);
    let p = Project::new(&[("web.yaml", &doc)]);
    let principal = principal(&p);
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p,
        &["web/a", "web/b"]
    )));
    let pids: Vec<u32> = nodes(&p).iter().filter_map(|n| n.pid).collect();
    assert_eq!(pids.len(), 2);
    signal(principal.0.id(), Signal::SIGKILL).expect("kill -9");
    drop(principal);
    assert!(
        eventually(Duration::from_secs(10), || pids.iter().all(|pid| signal(
            *pid,
            Signal::SIGCONT
        )
        .is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|s| s.contains("State:\tZ")))),
        "the watchdog stops the services of a principal that died"
    );
}

#[test]
fn readiness_by_command_http_and_sd_notify_gates_the_next_child() {
    if std::process::Command::new("python3")
        .arg("-V")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        crate::common::skip("python3 is needed for the http server and the sd_notify sender");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let notify = "import os, socket, time; time.sleep(0.3); a = os.environ['NOTIFY_SOCKET']; \
                  a = '\\\\0' + a[1:] if a.startswith('@') else a; \
                  s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(a); \
                  s.send(b'STATUS=warm\\\\nREADY=1'); time.sleep(30)";
    let doc = format!(
        "kind: supervisor\nname: r\nchildren:\n\
         - {{ name: cmd, run: \"sleep 0.3; touch flag; echo start cmd >> order; exec sleep 30\", ready: {{ command: \"test -f flag\", timeout: 10s }} }}\n\
         - {{ name: web, run: [\"python3\", \"-m\", \"http.server\", \"{port}\", \"--bind\", \"127.0.0.1\"], ready: {{ http: \"http://127.0.0.1:{port}/\", timeout: 10s }} }}\n\
         - {{ name: notified, run: [\"python3\", \"-c\", \"{notify}\"], ready: {{ notify: true, timeout: 10s }} }}\n\
         - {{ name: last, run: \"echo start last >> order; exec sleep 30\" }}\n"
    );
    let p = Project::new(&[("r.yaml", &doc)]);
    let _principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(15), || all_running(
            &p,
            &["r/cmd", "r/web", "r/notified", "r/last"]
        )),
        "{:#?}",
        nodes(&p)
    );
    assert_eq!(lines(&p.path().join("order")), ["start cmd", "start last"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_file_can_be_saved_through_the_principal() {
    use opsconsole::protocol::api::{Client, Request, Response};
    use opsconsole::protocol::zmq::{Endpoints, ZmqClient};
    let p = Project::new(&[]);
    let _principal = principal(&p);
    let client = ZmqClient::connect(&Endpoints::for_data_dir(&p.data()), Duration::from_secs(3))
        .await
        .expect("client");
    let text = supervisor_doc("edited", "one_for_one", 5, &[svc("a", "")]);
    let saved = client
        .call(Request::PutSpec {
            file: "edited.yaml".into(),
            text,
            base_hash: None,
        })
        .await
        .expect("answer");
    assert!(matches!(saved, Response::SpecSaved { .. }), "{saved:?}");
    let bad = "kind: supervisor\nname: x\nstrategy: one_for_everyone\nchildren: []\n";
    let rejected = client
        .call(Request::PutSpec {
            file: "bad.yaml".into(),
            text: bad.into(),
            base_hash: None,
        })
        .await
        .expect("answer");
    match rejected {
        Response::SpecRejected { problems } => {
            assert!(problems.iter().any(|d| d.line == 3), "{problems:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.path().join("workflows/bad.yaml").exists());
}

#[test]
fn editing_a_supervisor_file_changes_only_what_changed() {
    let before = supervisor_doc(
        "web",
        "one_for_one",
        5,
        &[svc("a", ""), svc("b", ""), svc("c", "")],
    );
    let p = Project::new(&[("web.yaml", &before)]);
    let _principal = principal(&p);
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p,
        &["web/a", "web/b", "web/c"]
    )));
    let old = nodes(&p);
    // b changes (an environment variable), c goes, d comes.
    let after = supervisor_doc(
        "web",
        "one_for_one",
        5,
        &[svc("a", ""), svc("b", ", env: { MODE: new }"), svc("d", "")],
    );
    std::fs::write(p.path().join("workflows/web.yaml"), after).expect("write");
    assert!(
        eventually(Duration::from_secs(15), || {
            let n = nodes(&p);
            all_running(&p, &["web/a", "web/b", "web/d"])
                && node(&n, "web/b").start_no == 2
                && !n.iter().any(|x| x.path == "web/c")
        }),
        "{:#?}",
        nodes(&p)
    );
    let new = nodes(&p);
    assert_eq!(
        node(&new, "web/a").pid,
        node(&old, "web/a").pid,
        "a was not bounced"
    );
    assert_eq!(node(&new, "web/a").start_no, 1);
    assert!(lines(&p.path().join("order")).contains(&"stop c".to_string()));
}

fn gone(pid: i32) -> bool {
    signal(pid, Signal::SIGCONT).is_err()
        || std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|s| s.contains("State:\tZ"))
}

fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A service that starts a process in a session of its own (`setsid`) does not leave it
/// behind: not when the service crashes, not when an operator stops it.
#[test]
fn processes_escaping_a_service_go_with_it() {
    let doc = supervisor_doc(
        "web",
        "one_for_one", 5,
        &["  - { name: a, run: \"setsid sleep 300 & echo $! > escaped.$$; echo ready; exec sleep 300\", ready: { log: ready, timeout: 5s }, stop: { grace: 1s } }\n".to_string()],
    );
    let p = Project::new(&[("web.yaml", &doc)]);
    let _principal = principal(&p);
    let escaped = |leader: u32| pid_in(&p.path().join(format!("escaped.{leader}")));
    let up = || {
        let n = nodes(&p);
        let a = node(&n, "web/a");
        (a.state == ServiceState::Running)
            .then_some(a.pid)
            .flatten()
    };
    let mut leader = None;
    assert!(eventually(Duration::from_secs(10), || {
        leader = up().filter(|&l| escaped(l).is_some());
        leader.is_some()
    }));
    let first = leader.expect("up");
    let first_escaped = escaped(first).expect("escaped pid");
    // A crash of the leader.
    signal(first, Signal::SIGKILL).expect("kill -9 the service");
    assert!(
        eventually(Duration::from_secs(10), || gone(first_escaped)),
        "the escaped process of a crashed service is stopped"
    );
    assert!(eventually(Duration::from_secs(10), || {
        leader = up().filter(|&l| l != first && escaped(l).is_some());
        leader.is_some()
    }));
    let second_escaped = escaped(leader.expect("restarted")).expect("escaped pid");
    // An operator's stop.
    assert!(p.run(&["svc", "stop", "web/a"]).status.success());
    assert!(
        eventually(Duration::from_secs(10), || gone(second_escaped)),
        "the escaped process of a stopped service is stopped"
    );
}

/// A new file never takes over a running tree or a workflow: with `dupe` running from
/// `zz-orig.yaml` and workflow `wf` loaded from `zz-wf.yaml`, files added later under the same
/// names (`0dup.yaml`, `0wf.yaml`, sorted first) are refused at their own `file:line:col`; the
/// tree keeps running (same pid) and `wf` still runs the old file's task.
#[test]
fn a_new_file_never_takes_over_a_running_tree_or_workflow() {
    let orig =
        "kind: supervisor\nname: dupe\nchildren:\n  - { name: a, run: \"exec sleep 300\" }\n";
    let wf = |word: &str| {
        format!("kind: workflow\nname: wf\ntasks:\n  t: {{ run: \"echo {word} > wf.out\" }}\n")
    };
    let p = Project::new(&[("zz-orig.yaml", orig), ("zz-wf.yaml", &wf("orig"))]);
    let _principal = principal(&p);
    let pid = || {
        let n = nodes(&p);
        let a = node(&n, "dupe/a");
        (a.state == ServiceState::Running)
            .then_some(a.pid)
            .flatten()
    };
    let mut first = None;
    assert!(eventually(Duration::from_secs(10), || {
        first = pid();
        first.is_some()
    }));
    let workflows = p.path().join("workflows");
    std::fs::write(
        workflows.join("0dup.yaml"),
        "kind: supervisor\nname: dupe\nchildren:\n  - { name: b, run: \"exec sleep 300\" }\n",
    )
    .unwrap();
    std::fs::write(workflows.join("0wf.yaml"), wf("newcomer")).unwrap();
    let mut status = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            status = text(&p.run(&["status"]).stdout);
            status.contains("0dup.yaml:2:7: supervisor `dupe` is already defined in")
                && status.contains("0wf.yaml:2:7: workflow `wf` is already defined in")
        }),
        "the newcomers are refused at their own name:\n{status}"
    );
    assert!(status.contains("zz-orig.yaml"), "{status}");
    assert!(status.contains("zz-wf.yaml"), "{status}");
    // Give a takeover time to happen, then check that none did.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pid(), first, "the running tree keeps running, same pid");
    let n = nodes(&p);
    assert!(
        n.iter().all(|x| x.path != "dupe/b"),
        "the newcomer's tree is not started: {n:#?}"
    );
    let out = p.run(&["run", "wf", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(p.path().join("wf.out"))
            .unwrap_or_default()
            .trim(),
        "orig",
        "the workflow keeps the file that defined it"
    );
}

/// Kills, when the test ends however it ends, the processes whose pids are in these files.
struct KillPidsIn(Vec<std::path::PathBuf>);

impl Drop for KillPidsIn {
    fn drop(&mut self) {
        for pid in self.0.iter().filter_map(|f| pid_in(f)) {
            let _ = signal(pid, Signal::SIGKILL);
        }
    }
}

/// A process that leaves its service with a cleared environment and a session of its own
/// (`env -i setsid`, so neither its token nor its process group tells whose it is) still goes
/// with that service: when an operator stops it while another service runs, and when the
/// principal exits gracefully. The other service's escapee is left alone until then.
#[test]
fn processes_escaping_a_service_without_its_environment_go_with_it() {
    let escaping = |name: &str| {
        format!(
            "  - {{ name: {name}, run: \"(env -i setsid sh -c 'echo $$ > escaped.{name}; exec sleep 3103' &); echo ready; exec sleep 300\", ready: {{ log: ready, timeout: 5s }}, stop: {{ grace: 1s }} }}\n"
        )
    };
    let doc = supervisor_doc("web", "one_for_one", 5, &[escaping("a"), escaping("b")]);
    let p = Project::new(&[("web.yaml", &doc)]);
    let files = ["a", "b"].map(|n| p.path().join(format!("escaped.{n}")));
    let _cleanup = KillPidsIn(files.to_vec());
    let mut principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(10), || all_running(
            &p,
            &["web/a", "web/b"]
        ) && files
            .iter()
            .all(|f| pid_in(f).is_some())),
        "both services run and their escapees wrote their pids"
    );
    let [a, b] = files.map(|f| pid_in(&f).expect("pid"));
    assert!(!gone(a) && !gone(b), "the escapees run");
    assert!(p.run(&["svc", "stop", "web/a"]).status.success());
    assert!(
        eventually(Duration::from_secs(10), || gone(a)),
        "the escapee of a stopped service is stopped while another service runs"
    );
    assert!(!gone(b), "the escapee of a service that runs is left alone");
    signal(principal.0.id(), Signal::SIGTERM).expect("stop the principal");
    assert!(
        eventually(Duration::from_secs(30), || principal
            .0
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "the principal exits on SIGTERM"
    );
    assert!(
        eventually(Duration::from_secs(10), || gone(b)),
        "the escapee of a service does not outlive the principal's graceful exit"
    );
}

/// A root that gave up stays down until its file changes; the fixed file starts it again.
#[test]
fn fixing_the_file_of_a_supervisor_that_gave_up_starts_it_again() {
    let doc = |run: &str| {
        format!(
            "kind: supervisor\nname: web\nintensity: 1\nperiod: 1h\nchildren:\n  - {{ name: a, run: \"{run}\", backoff: {{ initial: 10ms }} }}\n"
        )
    };
    let p = Project::new(&[("web.yaml", &doc("exit 3"))]);
    let _principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(10), || node(&nodes(&p), "web").state
            == ServiceState::Failed),
        "{:#?}",
        nodes(&p)
    );
    std::fs::write(
        p.path().join("workflows/web.yaml"),
        doc("echo fixed; sleep 300"),
    )
    .expect("write");
    assert!(
        eventually(Duration::from_secs(15), || all_running(
            &p,
            &["web", "web/a"]
        )),
        "{:#?}",
        nodes(&p)
    );
    let history = text(&p.run(&["history", "--service", "web/a"]).stdout);
    assert!(history.contains("exited"), "{history}");
}

fn anon_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Services that flood their output (short lines, binary, one 10 MB line) neither freeze the
/// principal nor grow its memory: output waits in the pipes once the budget is in flight,
/// requests are answered meanwhile, and what was printed is in the history.
#[test]
fn services_flooding_their_output_keep_the_principal_responsive_and_bounded() {
    // Niced, so that the flood does not starve the tests running beside this one.
    let doc = "kind: supervisor\nname: flood\nchildren:\n  \
               - { name: yes, run: \"exec nice -n 19 yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" }\n  \
               - { name: bin, run: \"exec nice -n 19 cat /dev/urandom\" }\n  \
               - { name: long, run: \"head -c 10000000 /dev/zero | tr '\\\\0' x; echo; echo end; sleep 300\" }\n";
    let p = Project::new(&[("flood.yaml", doc)]);
    let principal = principal(&p);
    let pid = principal.0.id();
    let t = std::time::Instant::now();
    let mut most = 0;
    while t.elapsed() < Duration::from_secs(3) {
        let out = p.run(&["svc", "status", "--json"]);
        assert!(
            out.status.success(),
            "the principal stopped answering under the flood: {}",
            text(&out.stderr)
        );
        most = most.max(anon_kib(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        most < 400 * 1024,
        "the principal's anonymous memory grew to {} MiB under the flood",
        most / 1024
    );
    // The long line is kept, in pieces of at most 64 KiB, followed by the next line.
    assert!(eventually(Duration::from_secs(10), || {
        let out = p.run(&["logs", "--service", "flood/long"]);
        text(&out.stdout).lines().any(|l| l.ends_with(" end"))
    }));
    let out = p.run(&["logs", "--service", "flood/long"]);
    let pieces: usize = text(&out.stdout)
        .lines()
        .filter(|l| l.contains('x'))
        .map(|l| l.matches('x').count())
        .sum();
    assert_eq!(pieces, 10_000_000, "every byte of the long line is kept");
    // A reader that goes away ends the command quietly.
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} logs --service flood/yes | head -n 1",
            env!("CARGO_BIN_EXE_opsconsole")
        ))
        .current_dir(p.path())
        .output()
        .expect("sh");
    assert!(
        !text(&piped.stderr).contains("panicked"),
        "{}",
        text(&piped.stderr)
    );
    assert_eq!(text(&piped.stdout).lines().count(), 1);
}

/// kill -9 of the principal at random moments, again and again: each time its services go
/// with it (the watchdog), and each new principal brings every tree up again, a hold
/// included.
#[test]
fn services_survive_a_principal_killed_again_and_again_without_leftovers() {
    let doc = supervisor_doc(
        "web",
        "one_for_one",
        5,
        &[svc("a", ""), svc("b", ""), svc("c", "")],
    );
    let p = Project::new(&[("web.yaml", &doc)]);
    let mut seen: Vec<u32> = Vec::new();
    let answering = || p.run(&["svc", "status"]).status.success();
    for round in 0..6 {
        let principal = principal(&p);
        // The socket of the killed one is still there: wait for this one to answer.
        assert!(eventually(Duration::from_secs(30), answering));
        if round == 1 {
            let out = p.run(&["svc", "stop", "web/c"]);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        // Kill it at a random moment: mid-start, or once up.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..400)));
        let pids: Vec<u32> = nodes(&p).iter().filter_map(|n| n.pid).collect();
        seen.extend(&pids);
        signal(principal.0.id(), Signal::SIGKILL).expect("kill -9");
        drop(principal);
        assert!(
            eventually(Duration::from_secs(10), || seen
                .iter()
                .all(|&pid| gone(pid as i32))),
            "round {round}: a service outlived its principal: {:?}",
            seen.iter()
                .filter(|&&pid| !gone(pid as i32))
                .map(|pid| (
                    pid,
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .map(|e| String::from_utf8_lossy(&e).contains("OPSCONSOLE_TASK_TOKEN"))
                        .unwrap_or_default(),
                ))
                .collect::<Vec<_>>()
        );
    }
    let _principal = principal(&p);
    assert!(eventually(Duration::from_secs(30), answering));
    assert!(
        eventually(Duration::from_secs(10), || all_running(
            &p,
            &["web/a", "web/b"]
        )),
        "{:#?}",
        nodes(&p)
    );
    let n = nodes(&p);
    assert_eq!(
        node(&n, "web/c").state,
        ServiceState::Stopped,
        "the hold survives"
    );
}

// ---- the rest of the semantics, each with real processes --------------------------------

use opsconsole::protocol::service::{ServiceEventKind, ServiceRecord};

fn history(p: &Project, path: &str) -> Vec<ServiceRecord> {
    let out = p.run(&["history", "--service", path, "--json", "--limit", "10000"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn times(
    h: &[ServiceRecord],
    path: &str,
    kind: ServiceEventKind,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    h.iter()
        .filter(|r| r.path == path && r.kind == kind)
        .map(|r| r.at)
        .collect()
}

#[test]
fn one_for_all_stops_the_others_in_reverse_and_starts_all_in_order() {
    let doc = supervisor_doc(
        "all",
        "one_for_all",
        5,
        &[svc("a", ""), svc("b", ""), svc("c", "")],
    );
    let p = Project::new(&[("all.yaml", &doc)]);
    let _principal = principal(&p);
    let all = ["all/a", "all/b", "all/c"];
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p, &all
    )));
    let b = node(&nodes(&p), "all/b").pid.expect("pid");
    std::fs::write(p.path().join("order"), "").expect("reset");
    signal(b, Signal::SIGKILL).expect("kill");
    assert!(eventually(Duration::from_secs(10), || {
        let n = nodes(&p);
        all.iter().all(|x| node(&n, x).start_no == 2) && all_running(&p, &all)
    }));
    assert_eq!(
        lines(&p.path().join("order")),
        ["stop c", "stop a", "start a", "start b", "start c"],
        "the survivors stop right to left, then all start left to right"
    );
}

#[test]
fn temporary_is_never_restarted_and_transient_only_after_an_abnormal_exit() {
    let doc = supervisor_doc(
        "mix",
        "one_for_all", 5,
        &[
            "  - { name: temp, run: \"exec sleep 300\", restart: temporary }\n".to_string(),
            "  - { name: ok, run: \"sleep 0.2; exit 0\", restart: transient }\n".to_string(),
            "  - { name: bad, run: \"sleep 0.2; exit 1\", restart: transient, backoff: { initial: 10ms } }\n".to_string(),
            "  - { name: perm, run: \"exec sleep 300\" }\n".to_string(),
        ],
    );
    let p = Project::new(&[("mix.yaml", &doc)]);
    let _principal = principal(&p);
    // `bad` exits abnormally: under one_for_all everything restarts, but `temp` is only
    // stopped, and `ok`, which ended normally, is not started again.
    assert!(
        eventually(Duration::from_secs(15), || {
            let n = nodes(&p);
            node(&n, "mix/perm").start_no >= 2 && node(&n, "mix/bad").start_no >= 2
        }),
        "{:#?}",
        nodes(&p)
    );
    std::thread::sleep(Duration::from_millis(500));
    let n = nodes(&p);
    assert_eq!(node(&n, "mix/temp").start_no, 1, "temporary: never again");
    assert_eq!(node(&n, "mix/temp").state, ServiceState::Stopped);
    assert_eq!(node(&n, "mix/ok").state, ServiceState::Stopped);
    assert_eq!(
        node(&n, "mix/ok").last_exit.as_deref(),
        Some("exit code 0"),
        "transient: a normal exit is not restarted"
    );
}

#[test]
fn a_nested_supervisor_that_gives_up_escalates_to_its_parent_which_gives_up_too() {
    let doc = "kind: supervisor\nname: top\nintensity: 2\nperiod: 1h\nchildren:\n  \
               - { name: fine, run: \"exec sleep 300\" }\n  \
               - name: inner\n    intensity: 0\n    children:\n      \
               - { name: w, run: \"sleep 0.1; exit 1\", backoff: { initial: 10ms } }\n";
    let p = Project::new(&[("top.yaml", doc)]);
    let _principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(15), || node(&nodes(&p), "top").state
            == ServiceState::Failed),
        "{:#?}",
        nodes(&p)
    );
    let h = history(&p, "top");
    assert_eq!(
        times(&h, "top/inner", ServiceEventKind::GaveUp).len(),
        3,
        "inner gave up each of its 3 runs: {h:#?}"
    );
    assert_eq!(times(&h, "top/inner", ServiceEventKind::Starting).len(), 3);
    assert_eq!(times(&h, "top", ServiceEventKind::GaveUp).len(), 1);
    let n = nodes(&p);
    assert_eq!(
        node(&n, "top/fine").state,
        ServiceState::Stopped,
        "a root that gave up stops its children"
    );
}

#[test]
fn restarts_wait_the_backoff_and_a_stable_run_starts_again_from_initial() {
    // `grows` crashes at once: its restarts wait 200 ms, then 400 ms. `stable` crashes after
    // 0.4 s of uptime, past its stable_after: each restart waits `initial` again (with a
    // multiplier of 50, a backoff that grew would be 10 s and more).
    let doc = supervisor_doc(
        "b",
        "one_for_one", 5,
        &[
            "  - { name: grows, run: \"exit 1\", backoff: { initial: 200ms, max: 1h, multiplier: 2 } }\n".to_string(),
            "  - { name: stable, run: \"sleep 0.4; exit 1\", stable_after: 200ms, backoff: { initial: 200ms, max: 1h, multiplier: 50 } }\n".to_string(),
        ],
    );
    let doc = doc.replace("intensity: 5", "intensity: 100");
    let p = Project::new(&[("b.yaml", &doc)]);
    let _principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(15), || {
            let n = nodes(&p);
            node(&n, "b/grows").start_no >= 3 && node(&n, "b/stable").start_no >= 4
        }),
        "{:#?}",
        nodes(&p)
    );
    let h = history(&p, "b");
    let gap = |path: &str, i: usize| {
        let exits = times(&h, path, ServiceEventKind::Exited);
        let starts = times(&h, path, ServiceEventKind::Starting);
        (starts[i + 1] - exits[i])
            .to_std()
            .expect("starts after its exit")
    };
    assert!(
        gap("b/grows", 0) >= Duration::from_millis(200),
        "{:?}",
        gap("b/grows", 0)
    );
    assert!(
        gap("b/grows", 1) >= Duration::from_millis(400),
        "{:?}",
        gap("b/grows", 1)
    );
    for i in 0..3 {
        assert!(gap("b/stable", i) >= Duration::from_millis(200));
        assert!(
            gap("b/stable", i) < Duration::from_secs(5),
            "restart {i} of a service up past stable_after waited {:?}",
            gap("b/stable", i)
        );
    }
}

#[test]
fn a_readiness_timeout_counts_as_a_crash() {
    let doc = "kind: supervisor\nname: r\nintensity: 1\nperiod: 1h\nchildren:\n  \
               - { name: slow, run: \"exec sleep 300\", ready: { log: never, timeout: 300ms }, backoff: { initial: 10ms } }\n";
    let p = Project::new(&[("r.yaml", doc)]);
    let _principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(10), || node(&nodes(&p), "r").state
            == ServiceState::Failed),
        "two readiness timeouts are two crashes, past an intensity of 1: {:#?}",
        nodes(&p)
    );
    let h = history(&p, "r/slow");
    assert_eq!(
        times(&h, "r/slow", ServiceEventKind::ReadyTimedOut).len(),
        2,
        "{h:#?}"
    );
}

#[test]
fn a_stop_honours_each_childs_grace_then_kills() {
    // `polite` takes 0.6 s to exit on TERM, within its grace; `deaf` ignores TERM and is
    // killed once its 0.5 s grace is over; they stop right to left.
    let doc = supervisor_doc(
        "g",
        "one_for_one", 5,
        &[
            "  - { name: polite, run: \"trap 'sleep 0.6; exit 0' TERM; while :; do sleep 0.05; done\", stop: { grace: 5s } }\n".to_string(),
            "  - { name: deaf, run: \"trap '' TERM; while :; do sleep 0.05; done\", stop: { grace: 500ms } }\n".to_string(),
        ],
    );
    let p = Project::new(&[("g.yaml", &doc)]);
    let _principal = principal(&p);
    assert!(eventually(Duration::from_secs(10), || all_running(
        &p,
        &["g/polite", "g/deaf"]
    )));
    let out = p.run(&["svc", "stop", "g"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(Duration::from_secs(15), || node(
        &nodes(&p),
        "g"
    )
    .state
        == ServiceState::Stopped));
    let h = history(&p, "g");
    let took = |path: &str| {
        let asked = times(&h, path, ServiceEventKind::Stopping)[0];
        let ended = times(&h, path, ServiceEventKind::Exited)[0];
        (ended - asked).to_std().expect("ends after it was asked")
    };
    assert!(
        took("g/deaf") >= Duration::from_millis(500),
        "{:?}",
        took("g/deaf")
    );
    assert!(
        took("g/polite") >= Duration::from_millis(600),
        "{:?}",
        took("g/polite")
    );
    let exit = |path: &str| {
        h.iter()
            .find(|r| r.path == path && r.kind == ServiceEventKind::Exited)
            .map(|r| (r.exit_code, r.signal))
    };
    assert_eq!(
        exit("g/deaf"),
        Some((None, Some(9))),
        "killed after its grace"
    );
    assert_eq!(
        exit("g/polite"),
        Some((Some(0), None)),
        "exited by itself in time"
    );
    assert!(
        times(&h, "g/deaf", ServiceEventKind::Exited)[0]
            <= times(&h, "g/polite", ServiceEventKind::Stopping)[0],
        "right to left: the second child is down before the first is asked"
    );
}

#[test]
fn a_significant_child_ending_shuts_its_supervisor_down() {
    let doc = "kind: supervisor\nname: job\nauto_shutdown: any_significant\nchildren:\n  \
               - { name: helper, run: \"exec sleep 300\" }\n  \
               - { name: main, run: \"sleep 0.3; exit 0\", restart: transient, significant: true }\n";
    let p = Project::new(&[("job.yaml", doc)]);
    let _principal = principal(&p);
    assert!(
        eventually(Duration::from_secs(10), || {
            let n = nodes(&p);
            node(&n, "job").state == ServiceState::Stopped
                && node(&n, "job/helper").state == ServiceState::Stopped
        }),
        "{:#?}",
        nodes(&p)
    );
    let h = history(&p, "job");
    assert_eq!(
        times(&h, "job", ServiceEventKind::AutoShutdown).len(),
        1,
        "{h:#?}"
    );
}

/// `logs --service` prints every stored line, in order, page after page: through the
/// principal and, once it has stopped, from the file.
#[test]
fn logs_of_a_service_print_every_stored_line_through_pages() {
    let doc = "kind: supervisor\nname: talk\nchildren:\n  \
               - { name: many, run: \"seq 1 25000; echo done; exec sleep 300\", ready: { log: done, timeout: 10s } }\n";
    let p = Project::new(&[("talk.yaml", doc)]);
    let mut principal = principal(&p);
    let expected: Vec<String> = (1..=25_000)
        .map(|i| i.to_string())
        .chain(["done".to_string()])
        .collect();
    let numbers = |out: &std::process::Output| -> Vec<String> {
        text(&out.stdout)
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
            .collect()
    };
    assert!(eventually(Duration::from_secs(20), || numbers(&p.run(&[
        "logs",
        "--service",
        "talk/many"
    ]))
    .len()
        == expected.len()));
    assert_eq!(numbers(&p.run(&["logs", "--service", "talk"])), expected);
    signal(principal.0.id(), Signal::SIGTERM).expect("SIGTERM");
    assert!(principal.0.wait().expect("wait").success());
    let out = p.run(&["logs", "--service", "talk/many"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(numbers(&out), expected, "from the file, with no principal");
}
