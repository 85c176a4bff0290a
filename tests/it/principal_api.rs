//! The principal's requests beyond trigger/cancel/wait: run detail, queue, retry, workflow
//! listing, reading and writing specs, and hot reload of the workflows directory.

use std::time::Duration;

use crate::common::{Harness, workflow};
use opsconsole::protocol::api::{ApiErrorKind, Client, ClientExt, Request, Response};
use opsconsole::protocol::{Event, RunState, TaskState};
use opsconsole::spec::content_hash;

async fn call(h: &Harness, request: Request) -> Response {
    h.principal()
        .call(request)
        .await
        .expect("principal answers")
}

/// Waits (up to 30 s) for an event matching `pred`.
async fn event(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("event within 30 s")
}

/// A workflow whose `flaky` task fails until `ok` exists in the run's directory, with an
/// upstream task that counts its executions and a downstream task.
fn retryable() -> String {
    workflow(
        "retryable",
        "",
        &[
            ("prepare", r#"{ run: "echo x >> prepare.count" }"#),
            (
                "flaky",
                r#"{ run: "test -f ok", depends_on: [prepare], retries: 1, backoff: { initial: 10ms } }"#,
            ),
            ("report", r#"{ run: "echo done", depends_on: [flaky] }"#),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reruns_only_what_failed_in_the_same_run_with_a_fresh_budget() {
    let wf = retryable();
    let mut h = Harness::new(&[&wf], 4);
    let first = h.run("retryable").await;
    assert_eq!(first.state, RunState::Failed);
    assert_eq!(first.failed_tasks, vec!["flaky".to_string()]);

    std::fs::write(h.dir.path().join("ok"), "").unwrap();
    let id = h
        .principal()
        .retry(first.run_id)
        .await
        .expect("retry accepted");
    assert_eq!(id, first.run_id, "a retry keeps the run id");
    let second = h.wait(id).await;
    assert_eq!(second.state, RunState::Succeeded);

    let detail = h.principal().run_detail(id).await.expect("detail");
    let by_name = |n: &str| detail.tasks.iter().find(|t| t.name == n).unwrap().clone();
    assert_eq!(
        by_name("prepare").attempt,
        1,
        "what succeeded is not run again"
    );
    assert_eq!(
        by_name("flaky").attempt,
        3,
        "attempts go on numbering: 1, 2 failed, 3 ok"
    );
    assert_eq!(by_name("report").state, TaskState::Succeeded);
    assert_eq!(detail.summary.state, RunState::Succeeded);
    assert!(detail.summary.ended_at.is_some());

    let reader = h.finish().await;
    let count = std::fs::read_to_string(h.dir.path().join("prepare.count")).unwrap();
    assert_eq!(count.lines().count(), 1, "prepare ran once");
    let flaky: Vec<_> = reader
        .attempts(id)
        .unwrap()
        .into_iter()
        .filter(|a| a.task == "flaky")
        .map(|a| (a.attempt, a.state.to_string()))
        .collect();
    assert_eq!(
        flaky,
        vec![
            (1, "failed".to_string()),
            (2, "failed".to_string()),
            (3, "succeeded".to_string())
        ]
    );
    let runs = reader.runs(&Default::default()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Succeeded);
    assert!(
        runs[0].failed_tasks.is_empty(),
        "{:?}",
        runs[0].failed_tasks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_is_refused_for_succeeded_active_and_unknown_runs() {
    let ok = workflow("ok", "", &[("a", r#"{ run: "true" }"#)]);
    let slow = workflow("slow", "", &[("a", r#"{ run: "sleep 5" }"#)]);
    let mut h = Harness::new(&[&ok, &slow], 4);
    let done = h.run("ok").await;
    let err = h.principal().retry(done.run_id).await.unwrap_err();
    assert!(err.to_string().contains("nothing to retry"), "{err}");

    let active = h.trigger("slow", &[]).await;
    let err = h.principal().retry(active).await.unwrap_err();
    assert!(err.to_string().contains("still active"), "{err}");
    h.principal().cancel(active).await.unwrap();

    let err = h
        .principal()
        .retry(opsconsole::protocol::RunId(999))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no run 999"), "{err}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_detail_lists_tasks_in_spec_order_with_dependencies_and_attempts() {
    let wf = retryable();
    let mut h = Harness::new(&[&wf], 4);
    let run = h.run("retryable").await;
    let d = h.principal().run_detail(run.run_id).await.expect("detail");
    let names: Vec<_> = d.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["prepare", "flaky", "report"]);
    assert_eq!(d.tasks[1].depends_on, vec!["prepare".to_string()]);
    assert_eq!(d.tasks[1].state, TaskState::Failed);
    assert_eq!((d.tasks[1].attempt, d.tasks[1].max_attempts), (2, 2));
    assert_eq!(d.tasks[2].state, TaskState::Skipped);
    assert!(d.tasks[0].started_at.is_some() && d.tasks[0].ended_at.is_some());
    assert_eq!(d.attempts.len(), 3, "prepare once, flaky twice");
    assert_eq!(d.summary.state, RunState::Failed);

    let missing = call(
        &h,
        Request::RunDetail {
            run_id: opsconsole::protocol::RunId(77),
        },
    )
    .await;
    assert!(matches!(missing, Response::Error(e) if e.message.contains("no run 77")));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_shows_attempts_waiting_for_a_slot_and_runs_held_back() {
    let wide = workflow(
        "wide",
        "max_active_runs: 1\n",
        &[
            ("a", r#"{ run: "sleep 2" }"#),
            ("b", r#"{ run: "sleep 2" }"#),
        ],
    );
    let mut h = Harness::new(&[&wide], 1);
    let first = h.trigger("wide", &[]).await;
    let second = h.trigger("wide", &[]).await;
    let Response::Queue(q) = call(&h, Request::Queue).await else {
        panic!("queue reply expected")
    };
    assert_eq!(q.ready_tasks.len(), 1, "{q:?}");
    assert_eq!(q.ready_tasks[0].run_id, first);
    assert_eq!(q.held_runs.len(), 1, "{q:?}");
    assert_eq!(q.held_runs[0].run_id, second);
    assert_eq!(q.held_runs[0].workflow, "wide");
    h.principal().cancel(first).await.unwrap();
    h.principal().cancel(second).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_spec_validates_writes_atomically_and_reloads() {
    let wf = workflow("hello", "", &[("a", r#"{ run: "echo hi" }"#)]);
    let mut h = Harness::with_files(&[("hello.yaml", &wf)], 2);

    // Invalid: nothing is written, every problem has a line and column.
    let broken = "kind: workflow\nname: hello\ntasks:\n  a: { run: \"echo hi\", retriez: 2 }\n";
    let Response::SpecRejected { problems } = call(
        &h,
        Request::PutSpec {
            file: "hello.yaml".into(),
            text: broken.into(),
            base_hash: Some(content_hash(wf.as_bytes())),
        },
    )
    .await
    else {
        panic!("invalid text must be rejected")
    };
    assert_eq!(
        (problems[0].line, problems[0].col > 0),
        (4, true),
        "{problems:?}"
    );
    assert!(problems[0].message.contains("retriez"), "{problems:?}");
    let on_disk = std::fs::read_to_string(h.workflows_dir().join("hello.yaml")).unwrap();
    assert_eq!(on_disk, wf, "a rejected save leaves the file alone");

    // A name another file already uses is refused at the name's line.
    let dup = "kind: workflow\nname: hello\ntasks:\n  a: { run: \"true\" }\n";
    let Response::SpecRejected { problems } = call(
        &h,
        Request::PutSpec {
            file: "other.yaml".into(),
            text: dup.into(),
            base_hash: None,
        },
    )
    .await
    else {
        panic!("duplicate name must be rejected")
    };
    assert_eq!(problems[0].line, 2, "{problems:?}");
    assert!(problems[0].message.contains("hello.yaml"), "{problems:?}");

    // Paths outside the workflows directory are refused.
    let outside = call(
        &h,
        Request::PutSpec {
            file: "../evil.yaml".into(),
            text: wf.clone(),
            base_hash: None,
        },
    )
    .await;
    assert!(matches!(outside, Response::Error(_)), "{outside:?}");
    assert!(!h.dir.path().join("evil.yaml").exists());

    // Valid: written, loaded, runnable at once.
    let new = workflow(
        "fresh",
        "params: { who: world }\n",
        &[("greet", r#"{ run: "echo hello {{ params.who }}" }"#)],
    );
    let saved = call(
        &h,
        Request::PutSpec {
            file: "fresh.yaml".into(),
            text: new.clone(),
            base_hash: None,
        },
    )
    .await;
    assert_eq!(
        saved,
        Response::SpecSaved {
            file: "fresh.yaml".into(),
            workflows: vec!["fresh".into()],
            hash: Some(content_hash(new.as_bytes())),
        }
    );
    let names: Vec<_> = h
        .principal()
        .workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.name, w.file, w.params.get("who").cloned()))
        .collect();
    assert!(
        names.contains(&("fresh".into(), "fresh.yaml".into(), Some("world".into()))),
        "{names:?}"
    );
    let Response::Spec { file, text, hash } = call(
        &h,
        Request::GetSpec {
            workflow: "fresh".into(),
        },
    )
    .await
    else {
        panic!("spec expected")
    };
    assert_eq!((file.as_str(), text.as_str()), ("fresh.yaml", new.as_str()));
    assert_eq!(hash, Some(content_hash(new.as_bytes())));
    assert_eq!(h.run("fresh").await.state, RunState::Succeeded);
    let leftovers: Vec<_> = std::fs::read_dir(h.workflows_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_files_are_reloaded_and_a_broken_edit_keeps_the_last_good_version() {
    let v1 = workflow("edit", "", &[("a", r#"{ run: "echo v1" }"#)]);
    let mut h = Harness::with_files(&[("edit.yaml", &v1)], 2);
    let mut events = h.principal().subscribe();

    // A new file appears: it is loaded and announced.
    let added = workflow("added", "", &[("a", r#"{ run: "true" }"#)]);
    std::fs::write(h.workflows_dir().join("added.yaml"), &added).unwrap();
    event(&mut events, |e| {
        matches!(e, Event::SpecsReloaded { workflows, .. } if workflows.contains(&"added".to_string()))
    })
    .await;
    assert_eq!(h.run("added").await.state, RunState::Succeeded);

    // A broken edit: reported with file:line:col, the last good version keeps running.
    std::fs::write(
        h.workflows_dir().join("edit.yaml"),
        "kind: workflow\nname: edit\ntasks:\n  a: { run: \"echo v2\", depends_on: [nope] }\n",
    )
    .unwrap();
    let Event::SpecProblems { problems, .. } =
        event(&mut events, |e| matches!(e, Event::SpecProblems { .. })).await
    else {
        unreachable!()
    };
    assert!(problems[0].file.ends_with("edit.yaml"), "{problems:?}");
    assert_eq!(problems[0].line, 4, "{problems:?}");
    assert!(problems[0].message.contains("nope"), "{problems:?}");
    let status = h.principal().status().await.unwrap();
    assert_eq!(status.spec_problems, problems);
    assert!(status.workflows.iter().any(|w| w.name == "edit"));
    let run = h.run("edit").await;
    assert_eq!(run.state, RunState::Succeeded);

    // A good edit replaces it; the problem list empties.
    let v3 = workflow("edit", "", &[("a", r#"{ run: "echo v3" }"#)]);
    std::fs::write(h.workflows_dir().join("edit.yaml"), &v3).unwrap();
    event(&mut events, |e| {
        matches!(e, Event::SpecsReloaded { workflows, .. } if workflows.contains(&"edit".to_string()))
    })
    .await;
    assert!(
        h.principal()
            .status()
            .await
            .unwrap()
            .spec_problems
            .is_empty()
    );
    let v3_run = h.run("edit").await;

    // A deleted file's workflow goes away.
    std::fs::remove_file(h.workflows_dir().join("added.yaml")).unwrap();
    event(&mut events, |e| {
        matches!(e, Event::SpecsReloaded { workflows, .. } if workflows.contains(&"added".to_string()))
    })
    .await;
    let err = h.principal().trigger("added", Default::default()).await;
    assert!(err.is_err());

    let reader = h.finish().await;
    let out = |id| -> Vec<String> {
        let mut lines = Vec::new();
        reader
            .logs(id, &Default::default(), |l| {
                lines.push(l.line);
                Ok(())
            })
            .unwrap();
        lines
    };
    assert_eq!(
        out(run.run_id),
        ["v1"],
        "the broken edit did not replace v1"
    );
    assert_eq!(out(v3_run.run_id), ["v3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_disturb_a_running_run() {
    let v1 = workflow(
        "steady",
        "",
        &[
            ("first", r#"{ run: "sleep 1" }"#),
            ("second", r#"{ run: "echo v1", depends_on: [first] }"#),
        ],
    );
    let mut h = Harness::with_files(&[("steady.yaml", &v1)], 2);
    let mut events = h.principal().subscribe();
    let id = h.trigger("steady", &[]).await;
    let v2 = workflow("steady", "", &[("only", r#"{ run: "echo v2" }"#)]);
    std::fs::write(h.workflows_dir().join("steady.yaml"), &v2).unwrap();
    event(&mut events, |e| matches!(e, Event::SpecsReloaded { .. })).await;
    let outcome = h.wait(id).await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let d = h.principal().run_detail(id).await.unwrap();
    let names: Vec<_> = d.attempts.iter().map(|a| a.task.as_str()).collect();
    assert_eq!(
        names,
        ["first", "second"],
        "the run kept the spec it started with"
    );
    h.finish().await;
}

async fn put(h: &Harness, file: &str, text: &str, base_hash: Option<String>) -> Response {
    call(
        h,
        Request::PutSpec {
            file: file.into(),
            text: text.into(),
            base_hash,
        },
    )
    .await
}

async fn get(h: &Harness, workflow: &str) -> (String, String) {
    match call(
        h,
        Request::GetSpec {
            workflow: workflow.into(),
        },
    )
    .await
    {
        Response::Spec {
            text,
            hash: Some(hash),
            ..
        } => (text, hash),
        other => panic!("spec with a hash expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_spec_refuses_to_clobber_a_file_changed_on_disk() {
    let v1 = workflow("clash", "", &[("a", r#"{ run: "echo v1" }"#)]);
    let mut h = Harness::with_files(&[("clash.yaml", &v1)], 2);
    let path = h.workflows_dir().join("clash.yaml");
    let (text, hash) = get(&h, "clash").await;
    assert_eq!(
        (text.as_str(), hash.clone()),
        (v1.as_str(), content_hash(v1.as_bytes()))
    );

    // Someone else edits the file while it is open in the editor.
    let theirs = workflow("clash", "", &[("a", r#"{ run: "echo theirs" }"#)]);
    std::fs::write(&path, &theirs).unwrap();
    let mine = workflow("clash", "", &[("a", r#"{ run: "echo mine" }"#)]);
    let answer = put(&h, "clash.yaml", &mine, Some(hash.clone())).await;
    let Response::SpecConflict {
        file,
        message,
        hash: now,
        text,
    } = answer
    else {
        panic!("a conflict expected, got {answer:?}")
    };
    assert_eq!(file, "clash.yaml");
    assert!(message.contains("changed on disk"), "{message}");
    assert_eq!(now, Some(content_hash(theirs.as_bytes())));
    assert_eq!(
        text.as_deref(),
        Some(theirs.as_str()),
        "offered for a reload"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        theirs,
        "not clobbered"
    );

    // Overwrite on purpose: based on what is there now.
    let saved = put(&h, "clash.yaml", &mine, now).await;
    assert!(
        matches!(&saved, Response::SpecSaved { hash: Some(h), .. } if *h == content_hash(mine.as_bytes())),
        "{saved:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);

    // Deleted meanwhile: a conflict too, with nothing to reload; no base re-creates it.
    std::fs::remove_file(&path).unwrap();
    let answer = put(&h, "clash.yaml", &v1, Some(content_hash(mine.as_bytes()))).await;
    assert!(
        matches!(&answer, Response::SpecConflict { hash: None, text: None, message, .. } if message.contains("deleted")),
        "{answer:?}"
    );
    assert!(!path.exists());
    assert!(matches!(
        put(&h, "clash.yaml", &v1, None).await,
        Response::SpecSaved { .. }
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), v1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_never_replaces_an_existing_one() {
    let v1 = workflow("taken", "", &[("a", r#"{ run: "echo v1" }"#)]);
    let mut h = Harness::with_files(&[("taken.yaml", &v1)], 2);
    let path = h.workflows_dir().join("taken.yaml");
    let other = workflow("another", "", &[("a", r#"{ run: "true" }"#)]);
    let answer = put(&h, "taken.yaml", &other, None).await;
    let Response::Error(e) = answer else {
        panic!("refusal expected, got {answer:?}")
    };
    assert_eq!(e.kind, ApiErrorKind::Conflict);
    assert!(
        e.message.starts_with("file exists: taken.yaml"),
        "{}",
        e.message
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), v1);

    // Also when the name is taken by something that is not a workflow file.
    std::fs::create_dir(h.workflows_dir().join("dir.yaml")).unwrap();
    let answer = put(&h, "dir.yaml", &other, None).await;
    assert!(
        matches!(&answer, Response::Error(e) if e.kind == ApiErrorKind::Conflict),
        "{answer:?}"
    );
    assert!(h.workflows_dir().join("dir.yaml").is_dir());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_keeps_the_mode_and_the_symbolic_link() {
    use std::os::unix::fs::PermissionsExt;
    let v1 = workflow("private", "", &[("a", r#"{ run: "echo v1" }"#)]);
    let mut h = Harness::with_files(&[("private.yaml", &v1)], 2);
    let mut events = h.principal().subscribe();
    let private = h.workflows_dir().join("private.yaml");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, hash) = get(&h, "private").await;
    let v2 = workflow("private", "", &[("a", r#"{ run: "echo v2" }"#)]);
    assert!(matches!(
        put(&h, "private.yaml", &v2, Some(hash)).await,
        Response::SpecSaved { .. }
    ));
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "still 0600 after the save");
    assert_eq!(std::fs::read_to_string(&private).unwrap(), v2);

    // A file kept elsewhere and linked into workflows/.
    let shared = h.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let target = shared.join("linked.yaml");
    let l1 = workflow("linked", "", &[("a", r#"{ run: "echo l1" }"#)]);
    std::fs::write(&target, &l1).unwrap();
    let link = h.workflows_dir().join("linked.yaml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    event(&mut events, |e| {
        matches!(e, Event::SpecsReloaded { workflows, .. } if workflows.contains(&"linked".to_string()))
    })
    .await;
    let (text, hash) = get(&h, "linked").await;
    assert_eq!(text, l1);
    let l2 = workflow("linked", "", &[("a", r#"{ run: "echo l2" }"#)]);
    assert!(matches!(
        put(&h, "linked.yaml", &l2, Some(hash)).await,
        Response::SpecSaved { .. }
    ));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is still a link"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        l2,
        "its target has the new text"
    );
    let names: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["linked.yaml"],
        "no temporary file left beside the target"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_files_in_workflows_are_problems_and_the_rest_runs() {
    let good = workflow("good", "", &[("a", r#"{ run: "echo ok" }"#)]);
    let mut h = Harness::with_files(&[("good.yaml", &good)], 2);
    let mut events = h.principal().subscribe();
    let dir = h.workflows_dir();
    nix::unistd::mkfifo(&dir.join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml")).unwrap();
    // The hot reload must neither hang on the FIFO nor read /dev/zero.
    let Event::SpecProblems { problems, .. } = event(
        &mut events,
        |e| matches!(e, Event::SpecProblems { problems, .. } if problems.len() == 2),
    )
    .await
    else {
        unreachable!()
    };
    assert!(
        problems.iter().any(|p| p.message.contains("FIFO")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("character device")),
        "{problems:?}"
    );
    assert_eq!(h.run("good").await.state, RunState::Succeeded);
    let status = h.principal().status().await.unwrap();
    assert_eq!(status.spec_problems.len(), 2, "{:?}", status.spec_problems);

    // Removing the odd files clears the problems, and listeners are told so: no workflow
    // changed, so without this event they would go on showing the old problems.
    std::fs::remove_file(dir.join("fifo.yaml")).unwrap();
    std::fs::remove_file(dir.join("zero.yaml")).unwrap();
    event(
        &mut events,
        |e| matches!(e, Event::SpecProblems { problems, .. } if problems.is_empty()),
    )
    .await;
    assert!(
        h.principal()
            .status()
            .await
            .unwrap()
            .spec_problems
            .is_empty()
    );
    h.finish().await;
}

/// A client that waits for a run across a principal restart (its answer was lost with the
/// old principal) still learns how the run ended, from the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_run_that_ended_before_a_restart_gets_its_outcome() {
    let doc = workflow(
        "ends",
        "",
        &[("a", r#"{ run: "true" }"#), ("b", r#"{ run: "false" }"#)],
    );
    let h = Harness::new(&[&doc], 2);
    let outcome = h.run("ends").await;
    assert_eq!(outcome.state, RunState::Failed);
    let dir = h.stop().await;
    let mut h = Harness::in_dir(dir, &[&doc], 2);
    assert_eq!(h.wait(outcome.run_id).await, outcome);
    // A run that never existed is still unknown.
    let unknown = h.principal().wait(opsconsole::protocol::RunId(999)).await;
    assert!(matches!(unknown, Ok(None)), "{unknown:?}");
    h.finish().await;
}
