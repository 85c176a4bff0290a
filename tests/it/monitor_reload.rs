//! Monitor files edited while the principal runs: a file saved with a problem keeps its last
//! good monitors (and their incidents), as a workflow file keeps its last good workflow; a
//! monitor taken out of its file closes its open incident.

use std::time::Duration;

use crate::common::project::{Project, eventually, free_port_triple, text};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";

/// Two monitors (or the second alone) of a port where nothing listens on 127.0.0.1: each is
/// unhealthy after 2 checks a second apart.
fn fleet(port: u16, both: bool) -> String {
    let one = |name: &str| {
        format!(
            "  - name: {name}\n    every: 1s\n    timeout: 500ms\n    unhealthy_after: 2\n    \
             check: {{ tcp: {{ host: 127.0.0.1, port: {port} }} }}\n"
        )
    };
    let mut text = "kind: monitor\nmonitors:\n".to_string();
    if both {
        text.push_str(&one("down1"));
    }
    text.push_str(&one("down2"));
    text
}

/// `incidents --json`: (monitor, id, open) of each.
fn incidents(p: &Project) -> Vec<(String, u64, bool)> {
    let out = p.run(&["incidents", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut seen: Vec<(String, u64, bool)> = all
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            (
                i["monitor"].as_str().unwrap_or_default().to_string(),
                i["id"].as_u64().unwrap_or_default(),
                i["closed"].is_null(),
            )
        })
        .collect();
    seen.sort();
    seen
}

/// `monitors --json`: the names listed.
fn monitors(p: &Project) -> Vec<String> {
    let out = p.run(&["monitors", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = v
        .get("monitors")
        .and_then(|m| m.as_array())
        .or(v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = list
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn a_broken_monitor_file_keeps_its_monitors_and_a_removed_monitor_closes_its_incident() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let port = free_port_triple();
    let file = p.path().join("workflows/fleet.yaml");
    std::fs::write(&file, fleet(port, true)).expect("write");
    let _principal = p.real_principal(&[]);
    let mut last = Vec::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            last = incidents(&p);
            last.len() == 2 && last.iter().all(|(_, _, open)| *open)
        }),
        "two incidents open: {last:?}"
    );
    let opened = last.clone();

    // Saved half-written: the file has a problem, its monitors and incidents stay as they
    // were, and nothing is opened twice.
    std::fs::write(&file, "kind: monitor\nmonitors: [ {\n").expect("write");
    assert!(
        eventually(Duration::from_secs(30), || {
            text(&p.run(&["status"]).stdout).contains("fleet.yaml")
        }),
        "the problem is reported"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        monitors(&p),
        ["down1", "down2"],
        "the last good monitors run"
    );
    assert_eq!(incidents(&p), opened, "the same incidents, still open");

    // down1 taken out: its incident closes; down2's stays open under its id.
    std::fs::write(&file, fleet(port, false)).expect("write");
    let mut now = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            now = incidents(&p);
            now.iter().any(|(m, _, open)| m == "down1" && !open)
        }),
        "down1's incident closed: {now:?}"
    );
    assert_eq!(monitors(&p), ["down2"]);
    let open: Vec<&(String, u64, bool)> = now.iter().filter(|i| i.2).collect();
    assert_eq!(open.len(), 1, "{now:?}");
    assert_eq!(open[0].0, "down2");
    assert!(opened.contains(open[0]), "{opened:?} {now:?}");
}

#[test]
fn a_fleet_whose_csv_file_breaks_keeps_its_last_good_monitors() {
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let port = free_port_triple();
    std::fs::write(
        p.path().join("workflows/edge.yaml"),
        format!(
            "kind: monitor\nname: \"edge-{{{{ target.host }}}}\"\nevery: 1s\ntimeout: 500ms\n\
             check: {{ tcp: {{ host: \"{{{{ target.host }}}}\", port: {port} }} }}\n\
             targets: {{ csv: edge.csv }}\n"
        ),
    )
    .expect("write");
    let csv = p.path().join("workflows/edge.csv");
    std::fs::write(&csv, "host\n127.0.0.1\n127.0.0.2\n").expect("write");
    let _principal = p.real_principal(&[]);
    let both = ["edge-127.0.0.1", "edge-127.0.0.2"];
    assert!(eventually(Duration::from_secs(30), || monitors(&p) == both));

    // The CSV file saved as something that is not UTF-8: reported there, the fleet runs on.
    std::fs::write(&csv, b"host\n127.0.0.1\n127.0.0.\xff\n").expect("write");
    assert!(
        eventually(Duration::from_secs(30), || {
            text(&p.run(&["status"]).stdout).contains("edge.csv:3:")
        }),
        "the problem is reported at the CSV file"
    );
    assert_eq!(monitors(&p), both, "the last good fleet runs");

    // Fixed with one target: the fleet is what the file says.
    std::fs::write(&csv, "host\n127.0.0.2\n").expect("write");
    assert!(
        eventually(Duration::from_secs(30), || monitors(&p)
            == ["edge-127.0.0.2"]),
        "{:?}",
        monitors(&p)
    );
}
