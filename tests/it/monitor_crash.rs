//! kill -9 of the principal with many monitors running (issue 21 item 7): every monitor
//! checks a closed port on 127.0.0.1, so all turn unhealthy and open an incident; after the
//! kill and a restart their states and open incidents come back at once, and no incident
//! is opened a second time (the same count, the same ids). Prints the times it measured.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::project::{Project, Stopped, text};

/// Monitors in the fleet: 20,000 in the suite (checked every 5 s they make 4,000 checks a
/// second beside the other tests); `OPSCONSOLE_CRASH_MONITORS=100000` for the figure.
static N: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("OPSCONSOLE_CRASH_MONITORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
});
/// How long each phase may take (the machine is shared; typical times are printed).
const PATIENCE: Duration = Duration::from_secs(90);

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn write_fleet(p: &Project, port: u16) {
    let yaml = "kind: monitor\nname: \"m-{{ target.i }}\"\nevery: 5s\ntimeout: 1s\n\
                unhealthy_after: 1\nhealthy_after: 1\n\
                check: { tcp: { host: 127.0.0.1, port: \"{{ target.port }}\" } }\n\
                tags: [crash]\ntargets: { csv: fleet.csv }\n";
    let wf = p.path().join("workflows");
    std::fs::write(wf.join("fleet.yaml"), yaml).expect("yaml");
    let mut w = std::io::BufWriter::new(std::fs::File::create(wf.join("fleet.csv")).expect("csv"));
    writeln!(w, "i,port").expect("write");
    for i in 0..*N {
        writeln!(w, "{i},{port}").expect("write");
    }
    w.flush().expect("flush");
}

/// A principal whose stderr goes to `log` in the project (shown when an assertion fails).
fn principal(p: &Project, log: &str) -> Stopped {
    let log = std::fs::File::create(p.path().join(log)).expect("log file");
    Stopped(
        p.cmd(&["principal"])
            .env_remove("OPSCONSOLE_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn principal"),
    )
}

/// The counts per state (`monitors --json` filtered to no monitor: the counts cover all).
fn counts(p: &Project) -> Option<serde_json::Value> {
    let out = p.run(&["monitors", "--json", "--tag", "no-such-tag"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["counts"].clone())
}

fn count(c: &serde_json::Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or(0)
}

/// Polls `counts` until `done` holds, at most [`PATIENCE`]; the last counts seen.
fn wait_counts(
    p: &Project,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    let mut last = serde_json::Value::Null;
    while t0.elapsed() < PATIENCE {
        if let Some(c) = counts(p) {
            if done(&c) {
                return c;
            }
            last = c;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {PATIENCE:?}; last counts {last}");
}

/// The ids of the open incidents `incidents --open --json` lists (at most its limit).
fn open_ids(p: &Project) -> BTreeSet<i64> {
    let out = p.run(&["incidents", "--open", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v.as_array()
        .expect("a list")
        .iter()
        .filter_map(|i| i["id"].as_i64())
        .collect()
}

#[test]
fn states_and_incidents_of_a_fleet_survive_kill_9_without_duplicates() {
    let p = Project::new(&[]);
    write_fleet(&p, closed_port());
    let t0 = Instant::now();
    let mut first = principal(&p, "first.log");
    let c = wait_counts(&p, "every monitor unhealthy with an incident", |c| {
        count(c, "unhealthy") == *N as u64 && count(c, "open_incidents") == *N as u64
    });
    let all_open = t0.elapsed();
    let before = open_ids(&p);
    assert!(!before.is_empty());
    // What the board shows is written behind (group commit): a pause is answered once it is
    // in the file, and the writer keeps order, so after it every state and incident before it
    // is there too. The paused monitor comes back paused.
    // A writer far behind makes the answer wait past the engine's patience: ask again (the
    // pause is already made; the next answer comes once it is in the file).
    let t_pause = Instant::now();
    loop {
        let out = p.run(&["monitor", "pause", "m-0"]);
        if out.status.success() {
            break;
        }
        assert!(
            t_pause.elapsed() < PATIENCE,
            "the pause was not stored: {}",
            text(&out.stderr)
        );
    }
    first.0.kill().expect("kill -9");
    let _ = first.0.wait();
    println!(
        "{} monitors: all unhealthy with an incident {all_open:?} after the start; {c}",
        *N
    );

    let t1 = Instant::now();
    let _second = principal(&p, "second.log");
    // The first answer that holds every monitor: states are back before most of them were
    // checked again (each every 5 s), incidents too.
    let c = wait_counts(&p, "the monitors loaded again", |c| {
        count(c, "total") == *N as u64
    });
    let back = t1.elapsed();
    assert_eq!(
        count(&c, "unhealthy"),
        *N as u64 - 1,
        "states came back: {c}\n{}",
        std::fs::read_to_string(p.path().join("second.log")).unwrap_or_default()
    );
    assert_eq!(count(&c, "paused"), 1, "the pause came back: {c}");
    assert_eq!(
        count(&c, "open_incidents"),
        *N as u64,
        "incidents came back: {c}"
    );
    // Let every monitor fail again at least once after the restart.
    std::thread::sleep(Duration::from_secs(7));
    let c = counts(&p).expect("counts");
    assert_eq!(
        count(&c, "open_incidents"),
        *N as u64,
        "no incident twice: {c}"
    );
    let after = open_ids(&p);
    assert_eq!(after, before, "the same open incidents, no new ids");
    println!(
        "after kill -9: {} states and incidents back {back:?} after the restart; \
         {} incident ids listed before and after are the same; total {:?}",
        *N,
        after.len(),
        t0.elapsed()
    );
}
