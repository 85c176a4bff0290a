//! Output of long lines (minified JSON logs look like this) through the real principal into
//! the real history file: stored up to `max_output` per attempt or service start, counted past
//! it, and never a state of the file that only a manual repair undoes (a checkpoint that runs
//! out of memory, a WAL that grows without end, a FATAL error that sticks).

use std::time::{Duration, Instant};

use crate::common::project::{Project, Stopped, eventually, signal, text};
use nix::sys::signal::Signal;

/// Lines of `LINE` base64 characters (incompressible, as real logs are for DuckDB's pieces).
const LINES: u64 = 8000;
const LINE: u64 = 65_000;
/// The principal's peak resident memory that README.md promises under such floods.
const PRINCIPAL_RSS_BOUND_MIB: u64 = 400;

/// A shell command printing `LINES` lines of `LINE` random characters (520 MB).
fn flood() -> String {
    format!(
        "head -c {} /dev/urandom | base64 -w {LINE}",
        LINES * LINE / 4 * 3
    )
}

fn principal(p: &Project, env: &[(&str, &str)]) -> Stopped {
    let mut cmd = p.cmd(&["principal", "--kill-grace", "1s"]);
    cmd.envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = Stopped(cmd.spawn().expect("spawn principal"));
    assert!(
        eventually(Duration::from_secs(30), || p.socket().exists()),
        "the principal did not start listening"
    );
    child
}

/// Stops the principal with SIGTERM; returns how long it took and what it said on stderr.
fn stop(mut principal: Stopped) -> (Duration, String) {
    let t = Instant::now();
    signal(principal.0.id(), Signal::SIGTERM).expect("SIGTERM");
    let out = std::mem::replace(
        &mut principal.0,
        std::process::Command::new("true").spawn().expect("true"),
    )
    .wait_with_output()
    .expect("wait for the principal");
    (t.elapsed(), text(&out.stderr))
}

/// `(lines, bytes)` of the peak resident memory (VmHWM) of `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// The text of each line `logs` printed (after `TIME [tag] `).
fn texts(out: &[u8]) -> Vec<String> {
    text(out)
        .lines()
        .map(|l| l.split_once("] ").map_or("", |(_, t)| t).to_string())
        .collect()
}

fn run_id(p: &Project) -> String {
    let out = p.run(&["history", "--json", "--limit", "1"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
    runs[0]["run_id"].to_string()
}

fn wal_mib(p: &Project) -> u64 {
    std::fs::metadata(p.data().join("state.duckdb.wal")).map_or(0, |m| m.len()) >> 20
}

/// Checks that `lines` are `stored` whole lines of `LINE` characters, then the marker.
fn assert_cut(lines: &[String], stored: u64, what: &str) {
    let counted = LINES - stored;
    let marker = format!(
        "{counted} lines ({} bytes) not stored: max_output",
        counted * LINE
    );
    assert_eq!(
        lines.len() as u64,
        stored + 1,
        "{what}: {} lines, the last {:?}",
        lines.len(),
        lines.last().map(|l| &l[..l.len().min(80)])
    );
    assert!(
        lines[..stored as usize]
            .iter()
            .all(|l| l.len() as u64 == LINE),
        "{what}: a stored line is not whole"
    );
    assert_eq!(lines[stored as usize], marker, "{what}");
}

/// The case: a task and a service that each print 8,000 lines of 65,000 characters
/// (520 MB) under the default `max_output` (64 MiB), then a normal run, `logs` of all of
/// them, and a principal restart: everything up to the bound is stored, the rest counted,
/// the store never fails, and the principal's memory stays within the README's bound.
#[test]
fn long_lines_are_stored_up_to_max_output_and_the_store_survives_them() {
    let started = Instant::now();
    let workflow = format!(
        "kind: workflow\nname: long\ntasks:\n  flood: {{ run: \"{}\" }}\n",
        flood()
    );
    let small = "kind: workflow\nname: small\ntasks:\n  hello: { run: \"echo hello\" }\n";
    let services = format!(
        "kind: supervisor\nname: svc\nchildren:\n  \
         - {{ name: flood, run: \"{}; touch flooded; exec sleep 300\" }}\n  \
         - {{ name: three, run: \"echo one; echo two; echo three; exec sleep 300\" }}\n",
        flood()
    );
    let p = Project::new(&[
        ("long.yaml", workflow.as_str()),
        ("small.yaml", small),
        ("svc.yaml", services.as_str()),
    ]);
    let first = principal(&p, &[]);
    let pid = first.0.id();
    let mut wal = 0;
    let run = p
        .cmd(&["run", "long", "--wait"])
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run long");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let long_id = run_id(&p);
    assert!(eventually(Duration::from_secs(60), || {
        wal = wal.max(wal_mib(&p));
        p.path().join("flooded").exists()
    }));
    let stopped = p.run(&["svc", "stop", "svc/flood"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    let run = p.run(&["run", "small", "--wait"]);
    assert!(run.status.success(), "refused: {}", text(&run.stderr));
    let small_id = run_id(&p);
    wal = wal.max(wal_mib(&p));

    // Everything up to the bound is stored, whole; the rest is counted in one line.
    let stored = opsconsole::protocol::agent::DEFAULT_MAX_OUTPUT / LINE;
    // `three` prints its lines once per start (one start per principal).
    let check = |p: &Project, starts: usize| {
        let out = p.run(&["logs", &long_id]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_cut(&texts(&out.stdout), stored, "the task");
        let out = p.run(&["logs", "--service", "svc/flood"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_cut(&texts(&out.stdout), stored, "the service");
        let three = || texts(&p.run(&["logs", "--service", "svc/three"]).stdout);
        assert!(eventually(Duration::from_secs(10), || three().len() >= 3 * starts));
        assert_eq!(three(), ["one", "two", "three"].repeat(starts));
        let out = p.run(&["logs", &small_id]);
        assert_eq!(texts(&out.stdout), ["hello"], "{}", text(&out.stderr));
    };
    check(&p, 1);
    let rss = peak_rss_mib(pid);
    let (shutdown, said) = stop(first);
    for bad in [
        "FATAL",
        "invalidated",
        "could not be stored",
        "Out of Memory",
        "history store write failed",
    ] {
        assert!(!said.contains(bad), "the principal said {bad}:\n{said}");
    }

    // A new principal reads the same file, stores new runs, and serves the old output.
    let second = principal(&p, &[]);
    let run = p.run(&["run", "small", "--wait"]);
    assert!(
        run.status.success(),
        "refused after a restart: {}",
        text(&run.stderr)
    );
    check(&p, 2);
    let (_, said) = stop(second);
    assert!(
        !said.contains("FATAL") && !said.contains("invalidated"),
        "{said}"
    );
    assert!(
        rss <= PRINCIPAL_RSS_BOUND_MIB,
        "the principal's peak RSS was {rss} MiB, over the README's {} MiB",
        PRINCIPAL_RSS_BOUND_MIB
    );
    println!(
        "long lines: {LINES} x {LINE} chars from a task and a service; stored {stored} lines \
         each, counted {} ({} bytes) each; peak RSS {rss} MiB; WAL at most {wal} MiB; SIGTERM \
         shutdown {:.1} s; test {:.1} s",
        LINES - stored,
        (LINES - stored) * LINE,
        shutdown.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// A smaller `max_output` of a task and of a service: lines past it are counted, the count
/// stands where they were cut, and both streams share the bound.
#[test]
fn max_output_of_a_task_and_a_service_cuts_and_counts() {
    let workflow = "kind: workflow\nname: cut\ntasks:\n  \
                    t: { run: \"seq -f '%05g' 1 1000; echo late >&2\", max_output: 1KiB }\n";
    let services = "kind: supervisor\nname: s\nchildren:\n  \
                    - { name: a, run: \"seq 1 1000; exec sleep 300\", max_output: 2KiB }\n";
    let p = Project::new(&[("cut.yaml", workflow), ("s.yaml", services)]);
    let _principal = principal(&p, &[]);
    let run = p.run(&["run", "cut", "--wait"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = p.run(&["logs", &run_id(&p)]);
    let lines = texts(&out.stdout);
    // 1024 bytes hold 204 lines of 5 characters; the 205th is cut with the 795 after it.
    // The stderr line comes through a pipe of its own, so it may be read before the cut
    // (its 4 bytes fit) or after it: either way every line is stored or counted.
    let (cut, stored) = lines.split_last().expect("lines");
    let counted: Vec<usize> = cut
        .strip_suffix(" bytes) not stored: max_output")
        .and_then(|c| c.split_once(" lines ("))
        .map(|(n, b)| [n, b].iter().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(counted.len(), 2, "the last line says what was cut: {cut:?}");
    let stdout: Vec<&String> = stored.iter().filter(|l| *l != "late").collect();
    let expected: Vec<String> = (1..=204).map(|i| format!("{i:05}")).collect();
    assert!(stdout.iter().copied().eq(expected.iter()), "{stdout:?}");
    let stored_bytes: usize = stored.iter().map(|l| l.len()).sum();
    assert!(stored_bytes <= 1024, "{stored_bytes} bytes stored");
    assert_eq!(stored.len() + counted[0], 1001, "{cut}");
    assert_eq!(stored_bytes + counted[1], 5004, "{cut}");
    // A service's cut is said when the start ends.
    assert!(eventually(Duration::from_secs(10), || {
        texts(&p.run(&["logs", "--service", "s/a"]).stdout).len() >= 100
    }));
    let stopped = p.run(&["svc", "stop", "s/a"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(eventually(Duration::from_secs(10), || {
        texts(&p.run(&["logs", "--service", "s/a"]).stdout)
            .last()
            .is_some_and(|l| l.ends_with("not stored: max_output"))
    }));
    let lines = texts(&p.run(&["logs", "--service", "s/a"]).stdout);
    // 2048 bytes: 9 one-digit and 90 two-digit lines take 189, then (2048 - 189) / 3 = 619
    // three-digit ones: 718 lines; 719 to 999 and 1000 are cut.
    let stored = 9 + 90 + 619;
    assert_eq!(lines.len(), stored + 1, "{:?}", lines.last());
    assert_eq!(lines[stored - 1], stored.to_string());
    assert_eq!(
        lines[stored],
        format!(
            "{} lines ({} bytes) not stored: max_output",
            1000 - stored,
            281 * 3 + 4
        )
    );
}

/// A FATAL error of DuckDB (here a checkpoint made to fail at the commit it runs in, whose
/// rows are then lost) is handled by opening the file again and writing the held batch
/// again: the run is stored whole, and the next principal finds it.
#[test]
fn a_fatal_store_error_reopens_the_file_and_writes_the_held_batch_again() {
    let workflow = "kind: workflow\nname: w\ntasks:\n  t: { run: \"seq 1 500\" }\n";
    let p = Project::new(&[("w.yaml", workflow)]);
    let first = principal(
        &p,
        &[
            ("OPSCONSOLE_FAILPOINT", "store-fatal-on-commit"),
            ("OPSCONSOLE_LOG", "info"),
        ],
    );
    let run = p.run(&["run", "w", "--wait"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let id = run_id(&p);
    let (_, said) = stop(first);
    assert!(
        said.contains("invalidated") && said.contains("reopened"),
        "the fault was not injected or not handled:\n{said}"
    );
    let _second = principal(&p, &[]);
    let lines = texts(&p.run(&["logs", &id]).stdout);
    let expected: Vec<String> = (1..=500).map(|i| i.to_string()).collect();
    assert_eq!(lines, expected);
    let run = p.run(&["run", "w", "--wait"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
}
