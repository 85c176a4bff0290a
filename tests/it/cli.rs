//! The real `opsconsole` binary against the bundled examples and crafted workflows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::project::{BIN, Project, signal, text};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Project {
    /// The bundled examples, copied so that runs write to a temp data dir.
    fn examples() -> Self {
        let p = Self::new(&[]);
        for entry in std::fs::read_dir(repo().join("workflows")).expect("examples") {
            let path = entry.expect("entry").path();
            std::fs::copy(
                &path,
                p.dir
                    .path()
                    .join("workflows")
                    .join(path.file_name().expect("name")),
            )
            .expect("copy");
        }
        p
    }
}

#[test]
fn etl_example_fans_out_and_in_and_is_in_history_and_logs() {
    let p = Project::examples();
    let out = p.run(&["run", "etl", "--wait", "--param", "region=us"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("[extract] extracting 100 rows for region us"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[transform-events:err] a warning on stderr"),
        "{stdout}"
    );
    assert!(stdout.contains("-- load: succeeded"), "{stdout}");
    assert!(stdout.contains("run 1 succeeded"), "{stdout}");
    // Output of a task comes after its start and before its end.
    let start = stdout.find("-- extract: running").expect("extract started");
    let line = stdout.find("[extract] extracting").expect("extract output");
    let end = stdout.find("-- extract: succeeded").expect("extract ended");
    assert!(start < line && line < end, "{stdout}");

    let hist = p.run(&["history", "--json"]);
    assert!(hist.status.success());
    let runs: serde_json::Value = serde_json::from_slice(&hist.stdout).expect("json");
    assert_eq!(runs[0]["workflow"], "etl");
    assert_eq!(runs[0]["state"], "succeeded");
    assert!(runs[0]["duration_secs"].as_f64().expect("duration") > 0.0);

    let logs = p.run(&["logs", "1", "--task", "load"]);
    assert!(logs.status.success());
    assert!(text(&logs.stdout).contains("[load#1] loading into warehouse-us"));
    let err_only = p.run(&["logs", "1", "--stream", "stderr", "--json"]);
    let lines: Vec<serde_json::Value> = text(&err_only.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["task"], "transform-events");
    assert_eq!(lines[0]["line"], "a warning on stderr");
}

#[test]
fn failure_example_exits_1_with_skipped_tasks_and_failed_task_in_history() {
    let p = Project::examples();
    let out = p.run(&["run", "failure", "--wait"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("-- validate: failed: exit code 3"),
        "{stdout}"
    );
    assert!(stdout.contains("-- load: skipped"), "{stdout}");
    assert!(stdout.contains("-- publish: skipped"), "{stdout}");
    assert!(stdout.contains("-- audit: succeeded"), "{stdout}");
    assert!(stdout.contains("[alert] paging on-call"), "{stdout}");
    let hist = text(&p.run(&["history"]).stdout);
    let row = hist
        .lines()
        .find(|l| l.contains("failure"))
        .expect("history row");
    assert!(
        row.contains("failed") && row.trim_end().ends_with("validate"),
        "{hist}"
    );
}

#[test]
fn flaky_and_timeout_examples() {
    let p = Project::examples();
    let out = p.run(&["run", "flaky", "--wait"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches("-- fetch: retrying").count(), 2, "{stdout}");
    assert!(stdout.contains("[fetch] attempt 3: fetched"), "{stdout}");

    let out = p.run(&["run", "timeout", "--wait"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("-- slow: timed_out"), "{stdout}");
    assert!(stdout.contains("-- cleanup: succeeded"), "{stdout}");
    assert!(!stdout.contains("never printed"));
}

#[test]
fn invalid_input_exits_2_with_a_clear_message() {
    let p = Project::examples();
    let out = p.run(&["run", "etll", "--wait"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown workflow `etll`: did you mean `etl`?"),
        "{}",
        text(&out.stderr)
    );

    let out = p.run(&["run", "etl", "--param", "color=red"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no parameter `color`") && err.contains("batch, region"),
        "{err}"
    );

    let out = p.run(&["run", "etl", "--param", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("KEY=VALUE"));

    let out = p.run(&["logs", "999"]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn missing_command_is_a_failed_attempt_with_a_clear_message() {
    let p = Project::new(&[(
        "w.yaml",
        "kind: workflow\nname: w\ntasks:\n  t: { run: [\"no-such-command-xyz\", \"arg\"] }\n",
    )]);
    let out = p.run(&["run", "w", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("command `no-such-command-xyz` not found"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn tens_of_megabytes_on_both_streams_do_not_stall_and_are_all_stored() {
    // 200k lines of ~100 bytes on each stream at the same time (~40 MB in all), plus
    // a 200 KiB line without newline characters and some invalid UTF-8.
    let script = r#"
import sys, threading
line = "x" * 96
def spam(f, tag):
    for i in range(200000):
        f.write(f"{tag}{i:07d}{line}\n")
    f.flush()
t = threading.Thread(target=spam, args=(sys.stderr, "E"))
t.start(); spam(sys.stdout, "O"); t.join()
sys.stdout.write("L" * 200000 + "\n")
sys.stdout.flush()
sys.stdout.buffer.write(b"bad \xff\xfe bytes\n")
"#;
    let wf = "kind: workflow\nname: big\ntasks:\n  spam: { run: [python3, spam.py] }\n";
    let p = Project::new(&[("big.yaml", wf)]);
    std::fs::write(p.path().join("spam.py"), script).expect("write script");
    let out = p.run(&["run", "big"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let logs = p.run(&["logs", "1", "--json"]);
    assert!(logs.status.success());
    let all = text(&logs.stdout);
    let (mut out_n, mut err_n, mut long, mut bad) = (0, 0, Vec::new(), false);
    let mut last_out = -1i64;
    for l in all.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        let line = v["line"].as_str().expect("line");
        if let Some(n) = line.strip_prefix('O') {
            let n: i64 = n[..7].parse().expect("number");
            assert_eq!(n, last_out + 1, "stdout lines in order");
            last_out = n;
            out_n += 1;
        } else if line.starts_with('E') {
            assert_eq!(v["stream"], "stderr");
            err_n += 1;
        } else if line.starts_with('L') {
            long.push(line.len());
        } else if line.starts_with("bad") {
            bad = line.contains('\u{fffd}');
        }
    }
    assert_eq!((out_n, err_n), (200_000, 200_000));
    assert!(
        long.iter().all(|&n| n <= 64 * 1024),
        "long line split: {long:?}"
    );
    assert_eq!(long.iter().sum::<usize>(), 200_000);
    assert!(bad, "invalid UTF-8 replaced");
}

fn wait_for(path: &Path, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn ctrl_c_cancels_the_run_records_it_and_leaves_no_process() {
    let p = Project::new(&[(
        "slow.yaml",
        "kind: workflow\nname: slow\ntasks:\n  work:\n    run: \"echo started; sleep 60 & echo $! > grandchild.pid; wait\"\n  after: { run: \"true\", depends_on: [work] }\n",
    )]);
    let child = p.spawn(&["run", "slow", "--wait", "--kill-grace", "1s"]);
    let pidfile = p.path().join("grandchild.pid");
    // The shell creates the file before it writes the pid into it.
    let read_pid = || {
        std::fs::read_to_string(&pidfile)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    };
    assert!(
        crate::common::project::eventually(Duration::from_secs(30), || read_pid().is_some()),
        "task started"
    );
    let grandchild: i32 = read_pid().expect("pid");
    signal(child.id(), nix::sys::signal::Signal::SIGINT).expect("signal");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("run 1 cancelled"),
        "{}",
        text(&out.stdout)
    );
    let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')),
        "grandchild survived: {stat}"
    );
    let hist: serde_json::Value =
        serde_json::from_slice(&p.run(&["history", "--json"]).stdout).expect("json");
    assert_eq!(hist[0]["state"], "cancelled");
    let logs = text(&p.run(&["logs", "1"]).stdout);
    assert!(
        logs.contains("[work#1] started"),
        "output before Ctrl-C is stored: {logs}"
    );
}

#[test]
fn sigterm_also_flushes_and_records_the_run() {
    let p = Project::new(&[(
        "s.yaml",
        "kind: workflow\nname: s\ntasks:\n  t: { run: \"for i in 1 2 3; do echo line $i; done; touch ready; sleep 60\" }\n",
    )]);
    let child = p.spawn(&["run", "s"]);
    assert!(wait_for(&p.path().join("ready"), Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(100));
    signal(child.id(), nix::sys::signal::Signal::SIGTERM).expect("signal");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143));
    let logs = text(&p.run(&["logs", "1"]).stdout);
    for i in 1..=3 {
        assert!(logs.contains(&format!("line {i}")), "{logs}");
    }
}

#[test]
fn bench_prints_json() {
    let p = Project::new(&[]);
    let out = p.run(&[
        "bench",
        "throughput",
        "--tasks",
        "20",
        "--slots",
        "4",
        "--repeat",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["bench"], "throughput");
    assert!(v["ratio"].as_f64().is_some());
    let out = p.run(&["bench", "latency", "--runs", "5"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["engine_ms"]["p99"].as_f64().is_some());
    let out = p.run(&["bench", "api", "--clients", "2", "--requests", "20"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["zeromq_tcp_loopback"]["p99_ms"].as_f64().is_some(), "{v}");
    assert!(v["in_process"]["p99_ms"].as_f64().is_some(), "{v}");
    let out = p.run(&[
        "bench",
        "throughput",
        "--via-principal",
        "--tasks",
        "10",
        "--repeat",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["ratio"].as_f64().is_some(), "{v}");
}

#[test]
fn help_explains_every_command() {
    let out = Command::new(BIN).arg("--help").output().expect("help");
    let help = text(&out.stdout);
    for cmd in ["validate", "run", "history", "logs", "bench"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = Command::new(BIN)
        .args(["run", "--help"])
        .output()
        .expect("help");
    assert!(text(&out.stdout).contains("130"));
}

#[test]
fn a_second_command_on_a_busy_data_dir_says_who_holds_it() {
    let p = Project::new(&[(
        "w.yaml",
        "kind: workflow\nname: w\ntasks:\n  t: { run: \"touch ready; sleep 30\" }\n",
    )]);
    let mut first = p.spawn(&["run", "w"]);
    assert!(wait_for(&p.path().join("ready"), Duration::from_secs(30)));
    let out = p.run(&["run", "w"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "another opsconsole process (PID {}) is using this data directory",
            first.id()
        )),
        "{err}"
    );
    signal(first.id(), nix::sys::signal::Signal::SIGTERM).expect("signal");
    let _ = first.wait();
}

/// Waits until the principal's local socket exists (it is created once it listens).
fn wait_for_principal(p: &Project) {
    assert!(
        wait_for(
            &p.path().join(".opsconsole/principal.sock"),
            Duration::from_secs(30)
        ),
        "principal started"
    );
}

#[test]
fn commands_go_through_a_running_principal() {
    let p = Project::examples();
    let mut principal = p.spawn(&["principal"]);
    wait_for_principal(&p);

    // The principal holds the store; these only work if they go through it.
    let out = p.run(&["run", "etl", "--wait"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("[load] loading into warehouse-eu"),
        "{stdout}"
    );
    let hist = p.run(&["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&hist.stdout).expect("json");
    assert_eq!(runs[0]["state"], "succeeded");
    let logs = text(&p.run(&["logs", "1", "--task", "load"]).stdout);
    assert!(
        logs.contains("[load#1] loading into warehouse-eu"),
        "{logs}"
    );
    let status = text(&p.run(&["status"]).stdout);
    assert!(
        status.contains(&format!("principal pid {}", principal.id())),
        "{status}"
    );
    assert!(status.contains("etl"), "{status}");

    // A second principal on the same data dir refuses, naming the holder.
    let second = p.run(&["principal"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains(&format!("(PID {})", principal.id())),
        "{}",
        text(&second.stderr)
    );

    let paused = p.run(&["pause", "etl"]);
    assert_eq!(paused.status.code(), Some(2), "etl has no schedule");
    let paused = p.run(&["pause", "nightly-report"]);
    assert!(paused.status.success(), "{}", text(&paused.stderr));
    let status = text(&p.run(&["status"]).stdout);
    assert!(status.contains("0 2 * * * (paused)"), "{status}");

    signal(principal.id(), nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = principal.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(
        !p.path().join(".opsconsole/principal.sock").exists(),
        "a clean stop removes its socket, so later commands do not try to reach it"
    );
    // After it stopped, the same commands read the file directly.
    let hist = text(&p.run(&["history"]).stdout);
    assert!(hist.contains("etl"), "{hist}");
    let none = p.run(&["status"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none.stderr).contains("no principal is running"));
}

#[test]
fn ctrl_c_of_a_run_through_the_principal_cancels_it_there() {
    let p = Project::new(&[(
        "slow.yaml",
        "kind: workflow\nname: slow\ntasks:\n  t: { run: \"touch ready; sleep 60\" }\n",
    )]);
    let mut principal = p.spawn(&["principal", "--kill-grace", "1s"]);
    wait_for_principal(&p);
    let client = p.spawn(&["run", "slow", "--wait"]);
    assert!(wait_for(&p.path().join("ready"), Duration::from_secs(30)));
    signal(client.id(), nix::sys::signal::Signal::SIGINT).expect("signal");
    let out = client.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let hist: serde_json::Value =
        serde_json::from_slice(&p.run(&["history", "--json"]).stdout).expect("json");
    assert_eq!(hist[0]["state"], "cancelled");
    signal(principal.id(), nix::sys::signal::Signal::SIGTERM).expect("signal");
    assert_eq!(principal.wait().expect("wait").code(), Some(0));
}

#[test]
fn logs_follow_streams_a_running_run_until_it_ends() {
    let p = Project::new(&[(
        "ticker.yaml",
        "kind: workflow\nname: ticker\ntasks:\n  tick:\n    run: |\n      for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.2; done\n      echo oops >&2\n",
    )]);
    let mut principal = p.spawn(&["principal"]);
    wait_for_principal(&p);
    let started = p.run(&["run", "ticker"]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    assert!(text(&started.stdout).contains("logs 1 --follow"));
    // Follows from the middle of the run: stored lines first, then live ones, none twice.
    std::thread::sleep(Duration::from_millis(300));
    let out = p.run(&["logs", "1", "--follow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let ticks: Vec<_> = stdout
        .lines()
        .filter_map(|l| l.split_once("[tick#1] ").map(|(_, t)| t.to_string()))
        .collect();
    assert_eq!(
        ticks,
        ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5", "tick 6"],
        "{stdout}"
    );
    assert!(stdout.contains("[tick#1:err] oops"), "{stdout}");
    // An ended run: --follow prints what is stored and returns.
    let again = p.run(&["logs", "1", "--follow", "--stream", "stderr"]);
    assert_eq!(
        text(&again.stdout).lines().count(),
        1,
        "{}",
        text(&again.stdout)
    );
    signal(principal.id(), nix::sys::signal::Signal::SIGTERM).expect("signal");
    assert_eq!(principal.wait().expect("wait").code(), Some(0));
}

#[test]
fn retry_runs_the_failed_part_of_a_run_again() {
    let p = Project::new(&[(
        "gate.yaml",
        "kind: workflow\nname: gate\ntasks:\n  setup: { run: \"echo setup >> setup.log\" }\n  check: { run: \"test -f open\", depends_on: [setup] }\n  after: { run: \"echo after\", depends_on: [check] }\n",
    )]);
    let first = p.run(&["run", "gate", "--wait"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stdout));
    // Without a principal, retry runs it here (like `run`): still closed, so it fails again.
    let again = p.run(&["retry", "1"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stdout));
    std::fs::write(p.path().join("open"), "").expect("write");
    let retried = p.run(&["retry", "1", "--wait"]);
    let stdout = text(&retried.stdout);
    assert!(
        retried.status.success(),
        "{stdout}{}",
        text(&retried.stderr)
    );
    assert!(stdout.contains("-- check: running (attempt 3)"), "{stdout}");
    assert!(stdout.contains("[after] after"), "{stdout}");
    assert!(
        !stdout.contains("-- setup: running"),
        "setup succeeded before: {stdout}"
    );
    let setup_runs = std::fs::read_to_string(p.path().join("setup.log")).expect("log");
    assert_eq!(setup_runs.lines().count(), 1);
    let hist: serde_json::Value =
        serde_json::from_slice(&p.run(&["history", "--json"]).stdout).expect("json");
    assert_eq!(hist.as_array().map(Vec::len), Some(1), "still one run");
    assert_eq!(hist[0]["state"], "succeeded");
    let unknown = p.run(&["retry", "42"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no run 42"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn tasks_do_not_outlive_a_principal_killed_with_sigkill() {
    let p = Project::new(&[(
        "long.yaml",
        "kind: workflow\nname: long\ntasks:\n  t: { run: \"sleep 300 & echo $! > child.pid; wait\" }\n",
    )]);
    let mut principal = p.spawn(&["principal", "--kill-grace", "1s"]);
    wait_for_principal(&p);
    assert!(p.run(&["run", "long"]).status.success());
    assert!(wait_for(
        &p.path().join("child.pid"),
        Duration::from_secs(30)
    ));
    std::thread::sleep(Duration::from_millis(100));
    let pid: i32 = std::fs::read_to_string(p.path().join("child.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    // Alive: exists and is not a zombie waiting for whoever adopted it to reap it.
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    assert!(alive(pid), "the task's grandchild runs");
    signal(principal.id(), nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    principal.wait().expect("reaped");
    let t0 = Instant::now();
    while alive(pid) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the task process outlived the principal");
}

#[test]
fn a_broken_edit_shows_in_status_while_the_last_good_version_keeps_running() {
    let p = Project::new(&[(
        "hello.yaml",
        "kind: workflow\nname: hello\ntasks:\n  a: { run: \"echo v1\" }\n",
    )]);
    let mut principal = p.spawn(&["principal"]);
    wait_for_principal(&p);
    std::fs::write(
        p.path().join("workflows/hello.yaml"),
        "kind: workflow\nname: hello\ntasks:\n  a: { run: \"echo v2\", retries: many }\n",
    )
    .expect("edit");
    let t0 = Instant::now();
    let status = loop {
        let out = text(&p.run(&["status"]).stdout);
        if out.contains("problem(s)") || t0.elapsed() > Duration::from_secs(30) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains("hello.yaml:4:"), "{status}");
    assert!(status.contains("retries"), "{status}");
    let out = p.run(&["run", "hello", "--wait"]);
    assert!(
        text(&out.stdout).contains("[a] v1"),
        "{}",
        text(&out.stdout)
    );
    signal(principal.id(), nix::sys::signal::Signal::SIGTERM).expect("signal");
    assert_eq!(principal.wait().expect("wait").code(), Some(0));
}

/// Polls `history --json` until run 1 has ended; returns its record.
fn wait_for_end(p: &Project) -> serde_json::Value {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let out = p.run(&["history", "--json"]);
        if let Ok(runs) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(run) = runs
                .as_array()
                .and_then(|r| r.iter().find(|r| r["run_id"] == 1))
            && !matches!(run["state"].as_str(), Some("queued" | "running"))
        {
            return run.clone();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("run 1 did not end within 60 s");
}

fn attempts(p: &Project) -> Vec<(String, u32, String, Option<String>)> {
    let reader =
        opsconsole::store::query::Reader::open(&p.path().join(".opsconsole")).expect("history");
    reader
        .attempts(opsconsole::protocol::RunId(1))
        .expect("attempts")
        .into_iter()
        .map(|a| (a.task, a.attempt, a.state.to_string(), a.message))
        .collect()
}

const RESUMABLE: &str = "kind: workflow\nname: multi\ntasks:\n  a: { run: \"echo a\" }\n  b: { run: \"touch b.$OPSCONSOLE_ATTEMPT; sleep 2\", depends_on: [a], retries: RETRIES }\n  c: { run: \"echo c\", depends_on: [b] }\n";

fn crash_mid_run(retries: u32, sig: nix::sys::signal::Signal) -> Project {
    let p = Project::new(&[(
        "multi.yaml",
        &RESUMABLE.replace("RETRIES", &retries.to_string()),
    )]);
    let principal = p.spawn(&["principal"]);
    wait_for_principal(&p);
    let out = p.run(&["run", "multi"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        wait_for(&p.path().join("b.1"), Duration::from_secs(30)),
        "b started"
    );
    // Past the store's group-commit window (20 ms): the crash hits b's sleep, not the moment
    // it was dispatched. (Events of the last few ms before a kill -9 can be lost; see
    // `principal/engine.rs` resume_runs for how each such case is resumed without running an
    // attempt number twice.)
    std::thread::sleep(Duration::from_millis(300));
    signal(principal.id(), sig).expect("signal");
    let out = principal.wait_with_output().expect("wait");
    if sig == nix::sys::signal::Signal::SIGTERM {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    // A killed principal leaves its socket file; wait for the next one's, not that one.
    let _ = std::fs::remove_file(p.path().join(".opsconsole/principal.sock"));
    p
}

/// Starts the principal that takes over, once it listens.
fn restart(p: &Project) -> std::process::Child {
    let child = p.spawn(&["principal"]);
    wait_for_principal(p);
    child
}

#[test]
fn kill_9_of_the_principal_mid_run_resumes_on_restart_without_rerunning_attempts() {
    let p = crash_mid_run(1, nix::sys::signal::Signal::SIGKILL);
    let mut principal = restart(&p);
    let run = wait_for_end(&p);
    assert_eq!(run["state"], "succeeded", "{run}");
    let _ = signal(principal.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.wait();
    let a = attempts(&p);
    let of = |t: &str| a.iter().filter(|x| x.0 == t).cloned().collect::<Vec<_>>();
    assert_eq!(
        of("a").len(),
        1,
        "a finished before the crash and is not run again: {a:?}"
    );
    let b = of("b");
    assert_eq!(b.len(), 2, "{a:?}");
    assert_eq!(
        (b[0].1, b[0].2.as_str(), b[0].3.as_deref()),
        (1, "interrupted", Some("principal restarted")),
        "the interrupted attempt is recorded as interrupted, not failed"
    );
    assert_eq!((b[1].1, b[1].2.as_str()), (2, "succeeded"));
    assert_eq!(of("c").len(), 1);
}

#[test]
fn an_interrupted_attempt_runs_again_without_using_up_a_retry() {
    // No retries at all: a principal's death is not the task's failure.
    let p = crash_mid_run(0, nix::sys::signal::Signal::SIGKILL);
    let mut principal = restart(&p);
    let run = wait_for_end(&p);
    assert_eq!(run["state"], "succeeded", "{run}");
    let _ = signal(principal.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.wait();
    let a = attempts(&p);
    let b: Vec<_> = a
        .iter()
        .filter(|x| x.0 == "b")
        .map(|x| (x.1, x.2.as_str()))
        .collect();
    assert_eq!(b, [(1, "interrupted"), (2, "succeeded")], "{a:?}");
    let states = opsconsole::store::query::Reader::open(&p.path().join(".opsconsole"))
        .expect("history")
        .task_states(opsconsole::protocol::RunId(1))
        .expect("states");
    assert!(
        states.contains(&("c".to_string(), "succeeded".to_string())),
        "{states:?}"
    );
}

#[test]
fn sigterm_of_the_principal_mid_run_flushes_and_the_next_one_resumes() {
    let p = crash_mid_run(1, nix::sys::signal::Signal::SIGTERM);
    let mut principal = restart(&p);
    let run = wait_for_end(&p);
    assert_eq!(run["state"], "succeeded", "{run}");
    let _ = signal(principal.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.wait();
    assert!(p.path().join("b.2").exists(), "b ran a second attempt");
}

/// `history --service` and `logs --service` where nothing has run yet say so, instead of
/// sending the reader to run a workflow; `history` of runs keeps its own advice.
#[test]
fn service_history_without_a_history_file_says_there_is_none_yet() {
    let p = Project::new(&[]);
    for args in [
        &["history", "--service", "web/api"][..],
        &["logs", "--service", "web/api"][..],
    ] {
        let out = p.run(args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(
            stdout.contains("no history yet for `web/api`") && stdout.contains("principal"),
            "{args:?}: {stdout}{stderr}"
        );
        assert!(
            !stdout.contains("run a workflow") && !stderr.contains("run a workflow"),
            "{args:?}: {stdout}{stderr}"
        );
    }
    let out = p.run(&["history"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("run a workflow first"));
}
