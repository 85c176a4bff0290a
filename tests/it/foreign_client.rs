//! The principal driven by a second, independent ZeroMQ implementation (pyzmq over libzmq):
//! a plain REQ socket (which adds an empty delimiter frame) is answered as a DEALER is, and the
//! events socket is readable by a SUB; an agent written in Python runs a task. Skipped, with the reason printed, where Python or pyzmq
//! is missing.

use std::process::Command;
use std::time::Duration;

use crate::common::project::{Project, Stopped, eventually, text};

const HELLO: &str = "kind: workflow\nname: hello\ntasks:\n  greet: { run: \"echo hi\" }\n";

fn pyzmq() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import zmq"])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pyzmq is not installed (pip install -r tests/requirements.txt): {}",
            text(&out.stderr).trim().lines().last().unwrap_or_default()
        ))
    }
}

#[test]
fn a_foreign_req_dealer_and_sub_client_drives_the_principal() {
    if let Err(why) = pyzmq() {
        crate::common::skip(why);
        return;
    }
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let mut principal = Stopped(p.spawn(&["principal", "--kill-grace", "1s"]));
    assert!(
        eventually(Duration::from_secs(30), || p.socket().exists()),
        "the principal did not start listening"
    );
    let requests = format!("ipc://{}", p.socket().display());
    let events = format!("{requests}.events");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/foreign_client.py"
    );
    let out = crate::common::output_apart(
        Command::new("timeout").args(["60", "python3", script, &requests, &events, "hello", "1"]),
    )
    .expect("run the foreign client");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "foreign client failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON line per step"))
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {stdout}"))
            .clone()
    };
    assert_eq!(step("status")["pid"], principal.0.id());
    assert_eq!(step("ended")["state"], "succeeded");
    assert_eq!(step("malformed")["reply"], "error");
    let states = step("events")["run_states"].clone();
    assert_eq!(
        states.as_array().and_then(|s| s.last()).cloned(),
        Some(serde_json::json!("succeeded")),
        "the SUB saw the run end: {states}"
    );
    // Still serving opsconsole's own clients afterwards.
    let status = p.run(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let _ = crate::common::project::signal(principal.0.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = principal.0.wait();
}

#[test]
fn a_foreign_agent_in_python_runs_a_task() {
    if let Err(why) = pyzmq() {
        crate::common::skip(why);
        return;
    }
    let p = Project::new(&[("hello.yaml", HELLO)]);
    let _principal = Stopped(p.spawn(&["principal", "--remote-only", "--kill-grace", "1s"]));
    assert!(
        eventually(Duration::from_secs(30), || p.socket().exists()),
        "the principal did not start listening"
    );
    let requests = format!("ipc://{}", p.socket().display());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/foreign_agent.py"
    );
    let mut agent = Stopped(
        Command::new("python3")
            .args([script, &requests, "1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    // Once it has registered, the run goes to it (the principal has no slots of its own).
    assert!(eventually(Duration::from_secs(10), || {
        text(&p.run(&["agents"]).stdout).contains("py-agent")
    }));
    let run = p.run(&["run", "hello", "--wait"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("hi from python"),
        "{}",
        text(&run.stdout)
    );
    let status = agent.0.wait().expect("wait");
    assert!(
        status.success(),
        "the agent saw every report acknowledged and exited 0"
    );
}
