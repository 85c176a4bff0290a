//! The monitor actor end to end, through the real binary: a `kind: monitor` tcp check against
//! a listener this test opens and closes on 127.0.0.1 turns healthy, unhealthy (an incident
//! with its cause) and healthy again (the incident closed); a pause and the incidents survive
//! kill -9 of the principal, and an incident open across a kill -9 stays one incident.

use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::project::{Project, Stopped, eventually, text};

/// How long a state change may take to show (checks every second, thresholds of 2).
const PATIENCE: Duration = Duration::from_secs(30);

/// A TCP listener on a fixed loopback port that accepts and closes until stopped.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test's port");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening: connections are refused from now on.
    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn monitor_doc(port: u16) -> String {
    format!(
        "kind: monitor\nname: db\nevery: 1s\ntimeout: 500ms\nunhealthy_after: 2\nhealthy_after: 2\n\
         check: {{ tcp: {{ host: 127.0.0.1, port: {port} }} }}\n"
    )
}

fn principal(p: &Project) -> Stopped {
    let child = p
        .cmd(&["principal"])
        .env_remove("OPSCONSOLE_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn principal");
    Stopped(child)
}

fn json(out: &Output) -> Option<serde_json::Value> {
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The monitor `db` as `monitors --json` lists it.
fn db(p: &Project) -> Option<serde_json::Value> {
    let v = json(&p.run(&["monitors", "--json"]))?;
    v["monitors"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == "db")
        .cloned()
}

fn state(p: &Project) -> String {
    db(p)
        .and_then(|m| m["state"].as_str().map(String::from))
        .unwrap_or_default()
}

fn incidents(p: &Project, open: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["incidents", "--json"];
    if open {
        args.push("--open");
    }
    json(&p.run(&args))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn wait_state(p: &Project, want: &str) {
    let mut last = String::new();
    let ok = eventually(PATIENCE, || {
        last = state(p);
        last == want
    });
    assert!(ok, "db did not become {want}; last seen `{last}`");
}

fn kill9(mut principal: Stopped) {
    principal.0.kill().expect("kill -9");
    let _ = principal.0.wait();
}

#[test]
fn a_tcp_monitor_turns_unhealthy_and_healthy_and_its_pause_survives_kill_9() {
    let port = free_port();
    let listener = Listener::start(port);
    let p = Project::new(&[("db.yaml", &monitor_doc(port))]);
    let first = principal(&p);
    wait_state(&p, "healthy");
    println!("listening: db is healthy");

    listener.close();
    wait_state(&p, "unhealthy");
    let mut open = Vec::new();
    assert!(
        eventually(PATIENCE, || {
            open = incidents(&p, true);
            open.len() == 1
        }),
        "one open incident: {open:?}"
    );
    let cause = &open[0]["cause"];
    assert_eq!(cause["condition"], "[CONNECTED] == true", "{cause}");
    assert!(
        cause["seen"].as_str().unwrap_or_default().contains("false"),
        "{cause}"
    );
    println!(
        "closed: db is unhealthy, incident {} ({cause})",
        open[0]["id"]
    );

    let listener = Listener::start(port);
    wait_state(&p, "healthy");
    assert!(
        eventually(PATIENCE, || incidents(&p, true).is_empty()),
        "the incident closes"
    );
    let all = incidents(&p, false);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(!all[0]["closed"].is_null(), "{all:?}");
    println!("listening again: db is healthy, incident closed");

    let out = p.run(&["monitor", "pause", "db"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_state(&p, "paused");
    kill9(first);

    let _second = principal(&p);
    wait_state(&p, "paused");
    // A few checks' time: a paused monitor stays paused and nothing new opens.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&p), "paused");
    let all = incidents(&p, false);
    assert_eq!(all.len(), 1, "the closed incident, no other: {all:?}");
    assert!(!all[0]["closed"].is_null(), "{all:?}");
    println!("after kill -9: db still paused, 1 closed incident");

    let out = p.run(&["monitor", "resume", "db"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_state(&p, "healthy");
    drop(listener);
}

#[test]
fn an_incident_open_across_kill_9_stays_one_incident() {
    let port = free_port();
    let p = Project::new(&[("db.yaml", &monitor_doc(port))]);
    let first = principal(&p);
    wait_state(&p, "unhealthy");
    let mut open = Vec::new();
    assert!(eventually(PATIENCE, || {
        open = incidents(&p, true);
        open.len() == 1
    }));
    let id = open[0]["id"].clone();
    // Give the writer its commit window before the kill.
    std::thread::sleep(Duration::from_millis(500));
    kill9(first);

    let _second = principal(&p);
    wait_state(&p, "unhealthy");
    // Several failed checks after the restart: still the one incident.
    std::thread::sleep(Duration::from_secs(4));
    let all = incidents(&p, false);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], id, "{all:?}");
    assert!(all[0]["closed"].is_null(), "{all:?}");
    println!("after kill -9: incident {id} still the one open");

    let listener = Listener::start(port);
    wait_state(&p, "healthy");
    assert!(eventually(PATIENCE, || incidents(&p, true).is_empty()));
    let all = incidents(&p, false);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], id);
    println!("listening: incident {id} closed, no other");
    drop(listener);
}

#[test]
fn a_reload_adds_and_drops_monitors_and_kept_ones_keep_their_state() {
    let port = free_port();
    let listener = Listener::start(port);
    let p = Project::new(&[("db.yaml", &monitor_doc(port))]);
    let _principal = principal(&p);
    wait_state(&p, "healthy");

    // A second monitor appears; db stays healthy.
    let web = monitor_doc(port).replace("name: db", "name: web");
    std::fs::write(p.path().join("workflows/web.yaml"), web).expect("write");
    let names = |p: &Project| -> Vec<String> {
        json(&p.run(&["monitors", "--json"]))
            .and_then(|v| {
                v["monitors"].as_array().map(|l| {
                    l.iter()
                        .filter_map(|m| m["name"].as_str().map(String::from))
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    assert!(
        eventually(PATIENCE, || names(&p) == ["db", "web"]),
        "{:?}",
        names(&p)
    );
    assert_eq!(state(&p), "healthy", "db kept its state across the reload");
    let web_state = |p: &Project| -> String {
        json(&p.run(&["monitors", "--json"]))
            .and_then(|v| {
                v["monitors"]
                    .as_array()?
                    .iter()
                    .find(|m| m["name"] == "web")
                    .and_then(|m| m["state"].as_str().map(String::from))
            })
            .unwrap_or_default()
    };
    assert!(eventually(PATIENCE, || web_state(&p) == "healthy"));
    println!("reload: web added and checked, db still healthy");

    // db goes; web stays, healthy.
    std::fs::remove_file(p.path().join("workflows/db.yaml")).expect("rm");
    assert!(
        eventually(PATIENCE, || names(&p) == ["web"]),
        "{:?}",
        names(&p)
    );
    assert_eq!(web_state(&p), "healthy");
    let out = p.run(&["monitor", "show", "db"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no monitor named `db`"),
        "{}",
        text(&out.stderr)
    );
    println!("reload: db dropped, web still healthy");
    drop(listener);
}
