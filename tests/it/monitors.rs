//! `kind: monitor` end to end: `validate` on monitor files with problems, `check` against a
//! local TCP server (exit 0 and 1), a fleet of 100,000 CSV targets with one bad line, and a
//! million targets measured.

use std::io::Write as _;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::project::{BIN, Project, text};

/// A TCP server on 127.0.0.1 that accepts and closes, until the test ends.
struct Server {
    port: u16,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
        Self { port }
    }
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn validate_reports_every_monitor_problem_at_its_line_and_column() {
    let doc = "kind: monitor\n\
               name: api\n\
               every: 10s\n\
               timeout: 20s\n\
               check: { http: { url: \"localhost/health\" } }\n\
               conditions:\n\
               \x20 - \"[STATUS] == 200\"\n\
               \x20 - \"[RESPONSE_TIME] < fast\"\n\
               on_unhealthy: [{ restart: web/api, run: page }]\n";
    let p = Project::new(&[("api.yaml", doc)]);
    let out = p.run(&["validate"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (at, words) in [
        ("workflows/api.yaml:4:10:", "must be shorter than `every`"),
        (
            "workflows/api.yaml:5:23:",
            "is not an absolute http:// or https:// URL",
        ),
        ("workflows/api.yaml:8:24:", "ordering needs a number"),
        ("workflows/api.yaml:9:36:", "not both `restart` and `run`"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(at) && l.contains(words)),
            "expected `{at} ... {words}` in:\n{err}"
        );
    }
    assert!(err.ends_with("4 problem(s) in 1 file(s)\n"), "{err}");
}

#[test]
fn check_runs_one_tcp_check_and_exits_by_its_conditions() {
    let server = Server::start();
    let up = format!(
        "kind: monitor\nname: db\ntimeout: 2s\ncheck: {{ tcp: {{ host: 127.0.0.1, port: {} }} }}\n\
         conditions: [\"[CONNECTED] == true\", \"[RESPONSE_TIME] < 2000\"]\n",
        server.port
    );
    let down = format!(
        "kind: monitor\nname: gone\ntimeout: 2s\ncheck: {{ tcp: {{ host: 127.0.0.1, port: {} }} }}\n",
        closed_port()
    );
    let slow = format!(
        "kind: monitor\nname: strict\ncheck: {{ tcp: {{ host: 127.0.0.1, port: {} }} }}\n\
         conditions: [\"[CONNECTED] == true\", \"[RESPONSE_TIME] < 0\"]\n",
        server.port
    );
    let p = Project::new(&[
        ("db.yaml", &up),
        ("gone.yaml", &down),
        ("strict.yaml", &slow),
    ]);

    // By file: every condition holds.
    let out = p.run(&["check", "workflows/db.yaml"]);
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("PASS  [CONNECTED] == true"), "{stdout}");
    assert!(stdout.contains("saw true"), "{stdout}");
    assert!(
        stdout.contains("healthy: 0 of 2 condition(s) failed"),
        "{stdout}"
    );

    // By name, in the workflows directory: refused, so the default condition fails.
    let out = p.run(&["check", "gone"]);
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("FAIL  [CONNECTED] == true  saw false"),
        "{stdout}"
    );
    assert!(stdout.contains("error:"), "{stdout}");

    // Connected, but a condition fails: exit 1, with the value each condition saw, as JSON.
    let out = p.run(&["check", "strict", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["monitor"], "strict");
    assert_eq!(v["ok"], false);
    assert_eq!(v["conditions"][0]["passed"], true);
    assert_eq!(v["conditions"][1]["passed"], false);
    assert!(v["conditions"][1]["seen"].is_string(), "{v}");
    assert_eq!(v["result"]["connected"], true);

    // A spec error, or an unknown name: exit 2.
    let out = p.run(&["check", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    std::fs::write(
        p.path().join("bad.yaml"),
        "kind: monitor\nname: x\nevery: 1d2\n",
    )
    .expect("write");
    let out = p.run(&["check", "bad.yaml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.yaml:3:8:"), "{err}");
}

/// Writes `fleet.yaml` and `fleet.csv` with `n` targets into `dir`; `bad` replaces one row.
fn write_fleet(dir: &std::path::Path, n: usize, port: u16, bad: Option<(usize, &str)>) {
    let yaml = "kind: monitor\nname: \"web-{{ target.id }}\"\nevery: 60s\ntimeout: 2s\n\
                check: { tcp: { host: \"{{ target.host }}\", port: \"{{ target.port }}\" } }\n\
                tags: [fleet, \"{{ target.region }}\"]\ntargets: { csv: fleet.csv }\n";
    std::fs::write(dir.join("fleet.yaml"), yaml).expect("yaml");
    let file = std::fs::File::create(dir.join("fleet.csv")).expect("csv");
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "id,host,port,region").expect("write");
    for i in 0..n {
        match bad {
            Some((row, line)) if row == i => writeln!(w, "{line}"),
            _ => writeln!(w, "{i},127.0.0.1,{port},{}", ["eu", "us"][i % 2]),
        }
        .expect("write");
    }
    w.flush().expect("flush");
}

#[test]
fn a_fleet_of_100k_csv_targets_with_one_bad_line_loads_the_rest() {
    let server = Server::start();
    let p = Project::new(&[]);
    let wf = p.path().join("workflows");
    // Row 50,000 is on line 50,002 (after the header); its port is out of range.
    write_fleet(
        &wf,
        100_000,
        server.port,
        Some((50_000, "50000,127.0.0.1,70000,eu")),
    );
    let t = Instant::now();
    let out = p.run(&["validate"]);
    let took = t.elapsed();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("workflows/fleet.csv:50002:17: `check.tcp.port` renders as `70000`"),
        "{err}"
    );
    assert!(err.contains("\n  |  50000,127.0.0.1,70000,eu\n"), "{err}");
    assert!(err.ends_with("1 problem(s) in 1 file(s)\n"), "{err}");
    println!("monitors: validate of 100,000 CSV targets with one bad line took {took:?}");

    // The rest loaded: the last target is checked against the local server.
    let out = p.run(&["check", "web-99999"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("tcp 127.0.0.1:{}", server.port)),
        "{stdout}"
    );
    let out = p.run(&["check", "web-50000"]);
    assert_eq!(out.status.code(), Some(2), "the bad row is not loaded");
}

/// Runs `opsconsole validate` in `dir` and returns its wall time and peak RSS (bytes).
fn measured_validate(dir: &std::path::Path) -> (Duration, u64, String) {
    let t = Instant::now();
    // Waited for by wait4 below, which also gives the child's own peak RSS (getrusage of
    // all children would mix in those of the tests running beside this one).
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(BIN)
        .arg("validate")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our own child, waited once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = t.elapsed();
    assert_eq!(waited, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status).to_string()
    } else {
        format!("signal {}", libc::WTERMSIG(status))
    };
    // ru_maxrss is in KiB on Linux.
    (took, (usage.ru_maxrss as u64) * 1024, code)
}

/// Loads a million targets from a CSV file in the real binary and prints its load time and
/// peak RSS, beside the same for one target (the binary's own baseline). Nothing is asserted
/// about speed.
#[test]
fn a_million_csv_targets_load_time_and_peak_rss() {
    let one = Project::new(&[]);
    write_fleet(&one.path().join("workflows"), 1, 1, None);
    let (_, base_rss, code) = measured_validate(one.path());
    assert_eq!(code, "0");
    let p = Project::new(&[]);
    const N: usize = 1_000_000;
    write_fleet(&p.path().join("workflows"), N, 1, None);
    let (took, rss, code) = measured_validate(p.path());
    assert_eq!(code, "0", "validate of a million targets");
    println!(
        "monitors: {N} CSV targets: validate (read, check every row, index every name) in {:.2} \
         s; peak RSS {:.1} MiB against {:.1} MiB for one target: {:.0} bytes per monitor at the \
         peak (the CSV text itself is {:.1} MiB and is held while reading)",
        took.as_secs_f64(),
        rss as f64 / (1 << 20) as f64,
        base_rss as f64 / (1 << 20) as f64,
        rss.saturating_sub(base_rss) as f64 / N as f64,
        std::fs::metadata(p.path().join("workflows/fleet.csv"))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / (1 << 20) as f64
    );
}
