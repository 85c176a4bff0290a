//! The promises of the supervisors under an operator's faults, with real processes under a
//! real principal: start numbers never run twice across kill -9, holds are durable both ways,
//! one_for_one restarts do not wait for a sibling backing off, separate trees stop at once,
//! a second signal kills what is left, and a service that daemonizes is told why it loops.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::project::{Project, Stopped, eventually, nodes, signal, supervisor_doc, text};
use nix::sys::signal::Signal;
use opsconsole::protocol::service::{ServiceEventKind, ServiceNode, ServiceRecord, ServiceState};

/// A service that says `ready` and runs until stopped (exits 0 on TERM).
fn looping(name: &str) -> String {
    format!(
        "  - {{ name: {name}, run: \"trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done\", ready: {{ log: ready, timeout: 5s }}, stop: {{ grace: 2s }} }}\n"
    )
}

fn find<'a>(nodes: &'a [ServiceNode], path: &str) -> Option<&'a ServiceNode> {
    nodes.iter().find(|n| n.path == path)
}

fn state(p: &Project, path: &str) -> Option<(ServiceState, bool)> {
    find(&nodes(p), path).map(|n| (n.state, n.held))
}

fn history(p: &Project, path: &str) -> Vec<ServiceRecord> {
    let out = p.run(&["history", "--service", path, "--json", "--limit", "100000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A principal that answers requests (the socket of a killed one may still be there).
fn principal(p: &Project) -> Stopped {
    let child = Stopped(p.spawn(&["principal", "--kill-grace", "1s"]));
    assert!(
        eventually(Duration::from_secs(30), || p
            .run(&["svc", "status"])
            .status
            .success()),
        "the principal did not start answering"
    );
    child
}

/// Stops a principal with SIGTERM and waits for it to exit 0.
fn stop(mut principal: Stopped) {
    signal(principal.0.id(), Signal::SIGTERM).expect("SIGTERM");
    assert!(principal.0.wait().expect("wait").success());
}

fn kill9(principal: Stopped) {
    signal(principal.0.id(), Signal::SIGKILL).expect("kill -9");
    drop(principal);
}

// ---- start numbers -----------------------------------------------------------------------

#[test]
fn start_numbers_never_run_twice_across_kill_9_of_the_principal() {
    // Crashes at once, restarts after 10 ms: hundreds of starts a second principal after
    // principal, each appending the number it was started under.
    let doc = "kind: supervisor\nname: w\nintensity: 10000\nperiod: 1s\nchildren:\n  - { name: s, run: \"echo $OPSCONSOLE_SERVICE_START >> starts; exit 1\", backoff: { initial: 10ms, max: 10ms } }\n";
    let p = Project::new(&[("w.yaml", doc)]);
    let starts = p.path().join("starts");
    const ROUNDS: usize = 15;
    for round in 0..ROUNDS {
        let before = lines(&starts).len();
        let principal = Stopped(p.spawn(&["principal", "--kill-grace", "1s"]));
        // Killed once its service runs, after a random 0.1-0.7 s: mid-spawn, mid-commit.
        assert!(
            eventually(Duration::from_secs(30), || lines(&starts).len() > before),
            "round {round}: the service never started"
        );
        std::thread::sleep(Duration::from_millis(fastrand::u64(100..700)));
        kill9(principal);
    }
    // A last principal records the starts the killed ones left without an end, and stops.
    let last = principal(&p);
    let before = lines(&starts).len();
    assert!(eventually(Duration::from_secs(10), || lines(&starts).len() > before));
    stop(last);
    let ran: Vec<u64> = lines(&starts)
        .iter()
        .map(|l| l.trim().parse().expect("a start number"))
        .collect();
    let mut times: HashMap<u64, usize> = HashMap::new();
    for n in &ran {
        *times.entry(*n).or_default() += 1;
    }
    let twice: Vec<u64> = times
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let h = history(&p, "w/s");
    let of = |kind| -> BTreeSet<u64> {
        h.iter()
            .filter(|r| r.path == "w/s" && r.kind == kind)
            .map(|r| r.start_no)
            .collect()
    };
    let recorded = of(ServiceEventKind::Starting);
    let interrupted = of(ServiceEventKind::Interrupted);
    let ended: BTreeSet<u64> = of(ServiceEventKind::Exited)
        .union(&interrupted)
        .copied()
        .collect();
    println!(
        "{} starts over {} principals, {} numbers ran twice, {} interrupted starts recorded",
        ran.len(),
        ROUNDS + 1,
        twice.len(),
        interrupted.len()
    );
    assert!(twice.is_empty(), "numbers that ran twice: {twice:?}");
    let unknown: Vec<&u64> = ran.iter().filter(|n| !recorded.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "ran but not in the history: {unknown:?}"
    );
    let open: Vec<&u64> = recorded.difference(&ended).collect();
    assert!(open.is_empty(), "starts without an end: {open:?}");
}

// ---- holds -------------------------------------------------------------------------------

#[test]
fn holds_are_durable_both_ways_across_a_clean_restart_and_kill_9() {
    let doc = supervisor_doc("w", "one_for_one", 10, &[looping("api"), looping("wk")]);
    let p = Project::new(&[("w.yaml", &doc)]);
    let first = principal(&p);
    let running = (ServiceState::Running, false);
    let held = (ServiceState::Stopped, true);
    assert!(eventually(Duration::from_secs(10), || state(&p, "w/wk")
        == Some(running)));
    let out = p.run(&["svc", "stop", "w"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(Duration::from_secs(10), || state(&p, "w") == Some(held)));
    // Starting one child of the held supervisor starts it and that child only.
    let out = p.run(&["svc", "start", "w/api"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(Duration::from_secs(10), || state(&p, "w/api")
        == Some(running)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&p, "w/wk"), Some(held), "the sibling stays down");
    assert_eq!(state(&p, "w"), Some(running));
    let expect = |p: &Project, when: &str| {
        assert!(
            eventually(Duration::from_secs(10), || state(p, "w/api")
                == Some(running)),
            "{when}: {:#?}",
            nodes(p)
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(state(p, "w"), Some(running), "{when}");
        assert_eq!(state(p, "w/wk"), Some(held), "{when}");
    };
    stop(first);
    let second = principal(&p);
    expect(&p, "after a clean restart");
    kill9(second);
    let third = principal(&p);
    expect(&p, "after kill -9");
    // A restart lifts a hold, durably too.
    let out = p.run(&["svc", "restart", "w/wk"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(Duration::from_secs(10), || state(&p, "w/wk")
        == Some(running)));
    kill9(third);
    let _fourth = principal(&p);
    assert!(
        eventually(Duration::from_secs(10), || state(&p, "w/wk")
            == Some(running)),
        "{:#?}",
        nodes(&p)
    );
    let kinds: Vec<(String, ServiceEventKind)> = history(&p, "w")
        .into_iter()
        .filter(|r| matches!(r.kind, ServiceEventKind::Held | ServiceEventKind::Released))
        .map(|r| (r.path, r.kind))
        .collect();
    let want = [
        ("w", ServiceEventKind::Held),
        ("w", ServiceEventKind::Released),
        ("w/wk", ServiceEventKind::Held),
        ("w/wk", ServiceEventKind::Released),
    ]
    .map(|(p, k)| (p.to_string(), k));
    assert_eq!(kinds, want, "one record per change of a hold");
}

#[test]
fn a_hold_survives_its_file_being_removed_and_put_back() {
    let doc = supervisor_doc("hr", "one_for_one", 10, &[looping("a"), looping("b")]);
    let p = Project::new(&[("hr.yaml", &doc)]);
    let first = principal(&p);
    let running = (ServiceState::Running, false);
    let held = (ServiceState::Stopped, true);
    assert!(eventually(Duration::from_secs(10), || state(&p, "hr/b")
        == Some(running)));
    let out = p.run(&["svc", "stop", "hr/b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(Duration::from_secs(10), || state(&p, "hr/b") == Some(held)));
    let file = p.path().join("workflows").join("hr.yaml");
    std::fs::remove_file(&file).expect("remove");
    assert!(
        eventually(Duration::from_secs(15), || find(&nodes(&p), "hr").is_none()),
        "the tree goes with its file"
    );
    std::fs::write(&file, &doc).expect("put back");
    assert!(eventually(Duration::from_secs(15), || state(&p, "hr/a")
        == Some(running)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        state(&p, "hr/b"),
        Some(held),
        "the hold came back with the file"
    );
    stop(first);
    let _second = principal(&p);
    assert!(eventually(Duration::from_secs(10), || state(&p, "hr/a")
        == Some(running)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&p, "hr/b"), Some(held), "and after a restart");
}

// ---- independent restarts ------------------------------------------------------------------

#[test]
fn a_one_for_one_restart_does_not_wait_for_a_sibling_backing_off() {
    let flaky = "  - { name: flaky, run: \"exit 1\", backoff: { initial: 20s, max: 20s } }\n";
    let doc = supervisor_doc(
        "x",
        "one_for_one",
        10,
        &[flaky.to_string(), looping("steady")],
    );
    let p = Project::new(&[("x.yaml", &doc)]);
    let _principal = principal(&p);
    assert!(eventually(Duration::from_secs(10), || {
        let n = nodes(&p);
        find(&n, "x/flaky").is_some_and(|f| f.state == ServiceState::BackingOff)
            && find(&n, "x/steady").is_some_and(|s| s.state == ServiceState::Running)
    }));
    let pid = find(&nodes(&p), "x/steady")
        .and_then(|s| s.pid)
        .expect("pid");
    let t0 = Instant::now();
    signal(pid, Signal::SIGKILL).expect("kill -9 steady");
    // Its backoff is 100 ms; flaky's 20 s must not hold it up.
    assert!(
        eventually(Duration::from_secs(10), || find(&nodes(&p), "x/steady")
            .is_some_and(
                |s| s.state == ServiceState::Running && s.start_no >= 2
            )),
        "{:#?}",
        nodes(&p)
    );
    println!("steady back after {:?}", t0.elapsed());
    assert_eq!(
        find(&nodes(&p), "x/flaky").map(|f| f.state),
        Some(ServiceState::BackingOff),
        "flaky still waits out its 20 s"
    );
}

// ---- shutdown ------------------------------------------------------------------------------

/// A service that ignores TERM: it is killed once its grace is over.
fn deaf(name: &str, grace: &str) -> String {
    format!(
        "  - {{ name: {name}, run: \"trap '' TERM; echo ready; while :; do sleep 0.05; done\", ready: {{ log: ready, timeout: 5s }}, stop: {{ grace: {grace} }} }}\n"
    )
}

#[test]
fn separate_trees_stop_at_once_and_each_tree_right_to_left() {
    const TREES: usize = 5;
    let mut files: Vec<(String, String)> = (1..TREES)
        .map(|i| {
            (
                format!("t{i}.yaml"),
                supervisor_doc(&format!("t{i}"), "one_for_one", 10, &[deaf("s", "1s")]),
            )
        })
        .collect();
    files.push((
        "t0.yaml".into(),
        supervisor_doc("t0", "one_for_one", 10, &[deaf("x", "1s"), deaf("y", "1s")]),
    ));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let p = Project::new(&files);
    let principal = principal(&p);
    let mut paths: Vec<String> = (1..TREES).map(|i| format!("t{i}/s")).collect();
    paths.push("t0/y".into());
    assert!(eventually(Duration::from_secs(20), || {
        let n = nodes(&p);
        paths
            .iter()
            .chain(["t0/x".to_string()].iter())
            .all(|path| find(&n, path).is_some_and(|s| s.state == ServiceState::Running))
    }));
    let t0 = Instant::now();
    stop(principal);
    let took = t0.elapsed();
    let h: Vec<ServiceRecord> = (0..TREES)
        .flat_map(|i| history(&p, &format!("t{i}")))
        .collect();
    let first = |path: &str, kind| {
        h.iter()
            .find(|r| r.path == path && r.kind == kind)
            .map(|r| r.at)
            .unwrap_or_else(|| panic!("no {kind} of {path}"))
    };
    // Sequentially, each tree's stop would be asked only after the one before had ended.
    let last_asked = paths
        .iter()
        .map(|path| first(path, ServiceEventKind::Stopping))
        .max()
        .expect("trees");
    let first_ended = paths
        .iter()
        .map(|path| first(path, ServiceEventKind::Exited))
        .min()
        .expect("trees");
    assert!(
        last_asked <= first_ended,
        "every tree was asked to stop before any had stopped"
    );
    // Inside a tree the order stays: y is down before x is asked.
    assert!(first("t0/y", ServiceEventKind::Exited) <= first("t0/x", ServiceEventKind::Stopping));
    let sum = Duration::from_secs(TREES as u64 + 1);
    println!(
        "{TREES} trees, 6 services ignoring TERM with a 1 s grace (sum {sum:?}, longest tree 2 s) stopped in {took:?}"
    );
    assert!(took < sum / 2 + Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_second_signal_kills_what_is_left_and_faces_hear_shutting_down() {
    let doc = supervisor_doc("d", "one_for_one", 10, &[deaf("s", "60s")]);
    let p = Project::new(&[("d.yaml", &doc)]);
    let mut principal = principal(&p);
    assert!(eventually(Duration::from_secs(10), || state(&p, "d/s")
        .is_some_and(|(s, _)| s == ServiceState::Running)));
    let pid = find(&nodes(&p), "d/s").and_then(|s| s.pid).expect("pid");
    signal(principal.0.id(), Signal::SIGTERM).expect("SIGTERM");
    // It waits out the 60 s grace; meanwhile faces are told what it is doing.
    let mut said = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            let out = p.run(&["svc", "status"]);
            said = text(&out.stderr);
            !out.status.success() && said.contains("shutting down")
        }),
        "{said}"
    );
    assert!(!said.contains("stuck"), "{said}");
    let out = p.run(&["status"]);
    assert!(
        text(&out.stderr).contains("shutting down"),
        "{}",
        text(&out.stderr)
    );
    assert!(principal.0.try_wait().expect("try_wait").is_none());
    signal(principal.0.id(), Signal::SIGTERM).expect("second SIGTERM");
    let t0 = Instant::now();
    let ended = eventually(Duration::from_secs(20), || {
        principal.0.try_wait().expect("try_wait").is_some()
    });
    assert!(ended, "the second signal did not end the shutdown");
    println!("exited {:?} after the second signal", t0.elapsed());
    let out = principal.0.wait_with_output_taken();
    assert!(
        out.contains("second signal: killing every process that is left at once"),
        "{out}"
    );
    assert!(
        eventually(Duration::from_secs(5), || signal(pid, Signal::SIGCONT)
            .is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|s| s.contains("State:\tZ"))),
        "the service is gone"
    );
    let h = history(&p, "d/s");
    assert!(
        h.iter()
            .any(|r| r.kind == ServiceEventKind::Exited && r.signal == Some(9)),
        "{h:#?}"
    );
}

/// What a child wrote to its stderr, once it has exited.
trait TakeOutput {
    fn wait_with_output_taken(&mut self) -> String;
}

impl TakeOutput for std::process::Child {
    fn wait_with_output_taken(&mut self) -> String {
        use std::io::Read as _;
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

// ---- daemons -------------------------------------------------------------------------------

#[test]
fn a_service_that_exits_0_at_once_is_told_it_may_have_forked_into_the_background() {
    let doc = "kind: supervisor\nname: dm\nintensity: 100\nperiod: 30s\nchildren:\n  - { name: d, run: \"exit 0\", backoff: { initial: 1s, max: 1s } }\n";
    let p = Project::new(&[("dm.yaml", doc)]);
    let _principal = principal(&p);
    let mut h = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        h = history(&p, "dm/d");
        h.iter().any(|r| r.kind == ServiceEventKind::Exited)
    }));
    let exited = h
        .iter()
        .find(|r| r.kind == ServiceEventKind::Exited)
        .and_then(|r| r.message.clone())
        .unwrap_or_default();
    assert!(
        exited
            .contains("exited at once; if it forks into the background, run it in the foreground"),
        "{exited}"
    );
}
