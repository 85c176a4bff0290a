//! Unit tests for `kind: supervisor` documents: one per kind of problem, with exact positions.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::spec::*;

const FILE: &str = "workflows/s.yaml";

fn problems(text: &str) -> Vec<Diagnostic> {
    match parse_document(Path::new(FILE), text) {
        Ok(doc) => panic!("expected problems, got `{}`", doc.name()),
        Err(d) => d,
    }
}

/// The only problem in `text`.
#[track_caller]
fn problem(text: &str) -> Diagnostic {
    let d = problems(text);
    assert_eq!(d.len(), 1, "expected one problem, got {d:#?}");
    d.into_iter().next().unwrap()
}

#[track_caller]
fn assert_at(d: &Diagnostic, line: usize, col: usize, words: &[&str]) {
    assert_eq!((d.line, d.col), (line, col), "wrong position for: {d}");
    for w in words {
        assert!(d.message.contains(w), "`{w}` missing in: {}", d.message);
    }
    assert!(!d.message.contains('\n'), "multi-line: {:?}", d.message);
    assert!(d.source_line.is_some(), "no source line: {d:?}");
}

/// Loads `files` (name, text) from a fresh directory.
fn load(files: &[(&str, &str)]) -> (Catalog, Vec<Diagnostic>, TempDir) {
    let dir = TempDir::new();
    for (name, text) in files {
        std::fs::write(dir.0.join(name), text).unwrap();
    }
    let (catalog, d) = load_dir(&dir.0);
    (catalog, d, dir)
}

/// Loads one valid supervisor document.
#[track_caller]
fn ok(text: &str) -> std::sync::Arc<SupervisorSpec> {
    let (catalog, d, _dir) = load(&[("s.yaml", text)]);
    assert!(d.is_empty(), "unexpected problems: {d:#?}");
    let mut roots = catalog.supervisor_roots();
    let root = roots.next().expect("a supervisor").clone();
    assert!(roots.next().is_none());
    root
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("opsconsole-sup-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn service(spec: &SupervisorSpec, i: usize) -> &ServiceSpec {
    match &spec.children[i].kind {
        ChildKind::Service(s) => s,
        ChildKind::Supervisor(s) => panic!("child {i} is supervisor `{}`", s.name),
    }
}

fn nested(spec: &SupervisorSpec, i: usize) -> &SupervisorSpec {
    match &spec.children[i].kind {
        ChildKind::Supervisor(s) => s,
        ChildKind::Service(_) => panic!("child {i} is a service"),
    }
}

const FULL: &str = r#"kind: supervisor
name: web
description: the web tier
strategy: rest_for_one
intensity: 3
period: 10s
auto_shutdown: any_significant
children:
  - name: api
    run: ["./api", "--name={{ task.name }}"]
    env: { PORT: 8080 }
    cwd: srv
    restart: transient
    significant: true
    backoff: { initial: 1s, max: 1m, multiplier: 3, jitter: true }
    stable_after: 2m
    ready: { tcp: "127.0.0.1:8080", timeout: 5s }
    stop: { signal: SIGINT, grace: 10s }
  - { name: h, run: x, ready: { http: "http://localhost:1/health" } }
  - { name: c, run: x, ready: { command: ["test", "-f", "/tmp/up"] } }
  - { name: l, run: x, ready: { log: "listening on \\d+" } }
  - { name: n, run: x, ready: { notify: true }, stop: { signal: hup } }
  - name: jobs
    strategy: one_for_all
    intensity: 0
    children:
      - { name: w, run: "exec sleep 1" }
"#;

#[test]
fn valid_supervisor_is_fully_converted() {
    let s = ok(FULL);
    assert_eq!(s.name, "web");
    assert_eq!(s.description.as_deref(), Some("the web tier"));
    assert_eq!(s.strategy, Strategy::RestForOne);
    assert_eq!((s.intensity, s.period), (3, Duration::from_secs(10)));
    assert_eq!(s.auto_shutdown, AutoShutdown::AnySignificant);
    assert!(s.is_root() && s.file.ends_with("s.yaml"));
    let names: Vec<&str> = s.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["api", "h", "c", "l", "n", "jobs"],
        "file order is kept"
    );
    assert_eq!(s.children[0].restart, Restart::Transient);
    assert!(s.children[0].significant);
    let api = service(&s, 0);
    let ctx = RenderContext {
        params: &Default::default(),
        run_id: 3,
        task_name: "api",
    };
    let CommandSpec::Argv(argv) = &api.run else {
        panic!("argv expected")
    };
    let argv: Vec<String> = argv.iter().map(|t| t.render(&ctx)).collect();
    assert_eq!(argv, ["./api", "--name=api"]);
    assert_eq!(api.env["PORT"].render(&ctx), "8080");
    assert_eq!(api.cwd.as_deref(), Some(Path::new("srv")));
    assert_eq!(
        api.backoff,
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 3.0,
            jitter: true
        }
    );
    assert_eq!(api.stable_after, Duration::from_secs(120));
    let ready = api.ready.as_ref().unwrap();
    assert_eq!(ready.timeout, Duration::from_secs(5));
    assert!(matches!(&ready.probe, ReadyProbe::Tcp { host, port: 8080 } if host == "127.0.0.1"));
    assert_eq!(
        api.stop,
        StopPolicy {
            signal: StopSignal::Int,
            grace: Duration::from_secs(10)
        }
    );
    let probe = |i| &service(&s, i).ready.as_ref().unwrap().probe;
    assert!(matches!(probe(1), ReadyProbe::Http { url } if url == "http://localhost:1/health"));
    assert!(matches!(probe(2), ReadyProbe::Command(CommandSpec::Argv(a)) if a.len() == 3));
    assert!(matches!(probe(3), ReadyProbe::Log(re) if re.is_match("listening on 80")));
    assert!(matches!(probe(4), ReadyProbe::Notify));
    assert_eq!(service(&s, 4).stop.signal, StopSignal::Hup);
    let jobs = nested(&s, 5);
    assert_eq!(
        (jobs.name.as_str(), jobs.strategy),
        ("jobs", Strategy::OneForAll)
    );
    assert_eq!(jobs.intensity, 0);
    assert_eq!(jobs.used_by.as_deref(), Some("web"), "inline: inside `web`");
}

#[test]
fn defaults() {
    let s = ok("kind: supervisor\nname: s\nchildren:\n  - { name: a, run: \"sleep 1\" }\n");
    assert_eq!(s.strategy, Strategy::OneForOne);
    assert_eq!((s.intensity, s.period), (5, Duration::from_secs(30)));
    assert_eq!(s.auto_shutdown, AutoShutdown::Never);
    let c = &s.children[0];
    assert_eq!((c.restart, c.significant), (Restart::Permanent, false));
    let a = service(&s, 0);
    assert!(matches!(&a.run, CommandSpec::Shell(_)));
    assert_eq!(a.backoff, SERVICE_BACKOFF);
    assert_eq!(
        (a.backoff.initial, a.backoff.max, a.backoff.multiplier),
        (Duration::from_millis(100), Duration::from_secs(30), 2.0)
    );
    assert_eq!(a.stable_after, Duration::from_secs(30));
    assert!(a.ready.is_none());
    assert_eq!(a.stop, StopPolicy::default());
    assert_eq!(
        (a.stop.signal, a.stop.grace),
        (StopSignal::Term, Duration::from_secs(5))
    );
    let s = ok(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, ready: { notify: true } }\n",
    );
    assert_eq!(
        service(&s, 0).ready.as_ref().unwrap().timeout,
        Duration::from_secs(30)
    );
}

#[test]
fn unknown_keys_are_reported_with_suggestions_for_the_form() {
    let d = problem(
        "kind: supervisor\nname: s\nstrategi: one_for_all\nchildren:\n  - { name: a, run: x }\n",
    );
    assert_at(
        &d,
        3,
        1,
        &["unknown key `strategi`: did you mean `strategy`?"],
    );
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, stabel_after: 1s }\n",
    );
    assert_at(
        &d,
        4,
        24,
        &["unknown key `stabel_after`: did you mean `stable_after`?"],
    );
    let d = problems(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, ready: { tpc: \"h:1\" } }\n",
    );
    assert_at(&d[0], 4, 31, &["`ready` needs one check"]);
    assert_at(&d[1], 4, 33, &["unknown key `tpc`: did you mean `tcp`?"]);
    assert_eq!(d.len(), 2, "{d:#?}");
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, stop: { grace: 1s, sig: TERM } }\n",
    );
    assert_at(&d, 4, 43, &["unknown key `sig`: did you mean `signal`?"]);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, backoff: { inital: 1s } }\n",
    );
    assert_at(
        &d,
        4,
        35,
        &["unknown key `inital`: did you mean `initial`?"],
    );
}

#[test]
fn keys_of_another_form_are_named_as_such() {
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, strategy: one_for_all }\n",
    );
    assert_at(&d, 4, 24, &["`strategy` does not apply to a service"]);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - name: n\n    ready: { notify: true }\n    children:\n      - { name: a, run: x }\n",
    );
    assert_at(
        &d,
        5,
        5,
        &["`ready` does not apply to an inline supervisor"],
    );
    let d = problem("kind: supervisor\nname: s\nchildren:\n  - { supervisor: db, name: x }\n");
    assert_at(
        &d,
        4,
        23,
        &["`name` does not apply to a use of a supervisor document"],
    );
}

#[test]
fn a_child_has_exactly_one_form() {
    let d = problem("kind: supervisor\nname: s\nchildren:\n  - { name: a, env: { X: y } }\n");
    assert_at(&d, 4, 5, &["a child needs `run`"]);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, children: [ { name: b, run: y } ] }\n",
    );
    assert_at(&d, 4, 24, &["not both `run` and `children`"]);
}

#[test]
fn missing_required_keys() {
    let d = problem("kind: supervisor\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 1, 1, &["missing required key `name`"]);
    let d = problem("kind: supervisor\nname: s\n");
    assert_at(&d, 1, 1, &["missing required key `children`"]);
    let d = problem("kind: supervisor\nname: s\nchildren: []\n");
    assert_at(&d, 3, 11, &["`children` is empty"]);
    let d = problem("kind: supervisor\nname: s\nchildren:\n  - { run: x }\n");
    assert_at(&d, 4, 5, &["missing required key `name` in this child"]);
    let d = problem("kind: supervisor\nname: s\nchildren:\n  - { name: a, run: }\n");
    assert_at(&d, 4, 19, &["empty command"]);
}

#[test]
fn bad_choices_and_names() {
    let d = problem(
        "kind: supervisor\nname: s\nstrategy: one_for_al\nchildren:\n  - { name: a, run: x }\n",
    );
    assert_at(
        &d,
        3,
        11,
        &["unknown strategy `one_for_al`: did you mean `one_for_all`?"],
    );
    let d = problem(
        "kind: supervisor\nname: s\nauto_shutdown: always\nchildren:\n  - { name: a, run: x }\n",
    );
    assert_at(
        &d,
        3,
        16,
        &["unknown auto_shutdown policy `always`", "`any_significant`"],
    );
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, restart: transiant }\n",
    );
    assert_at(&d, 4, 33, &["did you mean `transient`?"]);
    let d = problem("kind: supervisor\nname: s\nchildren:\n  - { name: a/b, run: x }\n");
    assert_at(&d, 4, 13, &["invalid child name `a/b`"]);
    let d = problem("kind: supervisor\nname: s\nchildren:\n  - { name: .., run: x }\n");
    assert_at(&d, 4, 13, &["invalid child name `..`", "path"]);
    let d = problem("kind: supervisor\nname: w/eb\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 2, 7, &["invalid supervisor name `w/eb`"]);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, stop: { signal: SIGSTOP } }\n",
    );
    assert_at(
        &d,
        4,
        40,
        &["unknown stop signal `SIGSTOP`", "`TERM`", "`USR2`"],
    );
}

#[test]
fn bad_and_absurd_values() {
    let d = problem("kind: supervisor\nname: s\nperiod: 30\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 3, 9, &["`period`", "no unit"]);
    let d = problem("kind: supervisor\nname: s\nperiod: 0s\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 3, 9, &["`period` must be greater than 0"]);
    let d = problem("kind: supervisor\nname: s\nperiod: 2d\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 3, 9, &["`period`", "unknown unit"]);
    let d = problem("kind: supervisor\nname: s\nperiod: 25h\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 3, 9, &["longer than the limit of 24h (1 day)"]);
    let d = problem(
        "kind: supervisor\nname: s\nintensity: 10001\nchildren:\n  - { name: a, run: x }\n",
    );
    assert_at(
        &d,
        3,
        12,
        &["`intensity` is 10001, more than the limit of 10000"],
    );
    let d =
        problem("kind: supervisor\nname: s\nintensity: -1\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 3, 12, &["wrong type"]);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, stable_after: 1y }\n",
    );
    assert_at(&d, 4, 38, &["`stable_after`", "unknown unit"]);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, stop: { grace: 2h } }\n",
    );
    assert_at(
        &d,
        4,
        39,
        &["`stop.grace` `2h` is longer than the limit of 1h"],
    );
    assert!(!d.message.contains("days"), "{}", d.message);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, ready: { notify: true, timeout: 0s } }\n",
    );
    assert_at(&d, 4, 56, &["`ready.timeout` must be greater than 0"]);
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, backoff: { initial: 1m, max: 1s } }\n",
    );
    assert_at(
        &d,
        4,
        44,
        &["`backoff.initial` (60s) is longer than `backoff.max` (1s)"],
    );
}

#[test]
fn readiness_checks_are_validated() {
    let base = "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, ready: ";
    let at = |ready: &str, words: &[&str], col: usize| {
        let d = problem(&format!("{base}{ready} }}\n"));
        assert_at(&d, 4, col, words);
    };
    at(
        "{ tcp: \"localhost\" }",
        &["`ready.tcp` `localhost` is not HOST:PORT"],
        38,
    );
    at("{ tcp: \"h:0\" }", &["is not HOST:PORT"], 38);
    at(
        "{ tcp: \"::1:80\" }",
        &["is not HOST:PORT", "[::1]:8080"],
        38,
    );
    at(
        "{ http: \"ftp://x\" }",
        &["`ready.http` `ftp://x` is not an http:// or https:// URL"],
        39,
    );
    at("{ http: \"http:///x\" }", &["is not an http://"], 39);
    at(
        "{ log: \"(unclosed\" }",
        &["invalid regular expression in `ready.log`", "unclosed"],
        38,
    );
    at(
        "{ notify: false }",
        &["`ready.notify` can only be `true`"],
        41,
    );
    at(
        "{ timeout: 1s }",
        &["`ready` needs one check: `tcp`, `http`, `command`, `log` or `notify`"],
        31,
    );
    at(
        "{ tcp: \"h:1\", log: x }",
        &["`ready` takes one check, not both `tcp` and `log`"],
        45,
    );
    at("{ command: [] }", &["empty command"], 42);
    let s = ok(&format!("{base}{{ tcp: \"[::1]:80\" }} }}\n"));
    let probe = &service(&s, 0).ready.as_ref().unwrap().probe;
    assert!(matches!(probe, ReadyProbe::Tcp { host, port: 80 } if host == "::1"));
}

#[test]
fn significant_follows_otp_rules() {
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, restart: temporary, significant: true }\n",
    );
    assert_at(
        &d,
        4,
        57,
        &["child `a` is significant but its supervisor's `auto_shutdown` is `never`"],
    );
    let d = problem(
        "kind: supervisor\nname: s\nauto_shutdown: all_significant\nchildren:\n  - { name: a, run: x, significant: true }\n",
    );
    assert_at(
        &d,
        5,
        37,
        &["child `a` is significant but `permanent`", "transient"],
    );
    let s = ok(
        "kind: supervisor\nname: s\nauto_shutdown: all_significant\nchildren:\n  - { name: a, run: x, restart: transient, significant: true }\n  - { name: b, run: x, significant: false }\n",
    );
    assert!(s.children[0].significant && !s.children[1].significant);
}

#[test]
fn duplicate_child_names() {
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x }\n  - { name: b, run: x }\n  - { name: a, children: [ { name: c, run: y } ] }\n",
    );
    assert_at(
        &d,
        6,
        13,
        &["duplicate child name `a` (first defined at line 4)"],
    );
    // The same name under different supervisors is fine.
    ok(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x }\n  - { name: n, children: [ { name: a, run: y } ] }\n",
    );
}

#[test]
fn templates_may_not_use_params() {
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: \"echo {{ params.x }}\" }\n",
    );
    assert_at(&d, 4, 27, &["unknown parameter `x`"]);
}

#[test]
fn inline_nesting_is_bounded() {
    let mut text = String::from("kind: supervisor\nname: s\nchildren:\n");
    let mut indent = String::from("  ");
    for i in 0..20 {
        text.push_str(&format!("{indent}- name: n{i}\n{indent}  children:\n"));
        indent.push_str("    ");
    }
    text.push_str(&format!("{indent}- {{ name: leaf, run: x }}\n"));
    let d = problem(&text);
    // Depth 1 is the document; the 16th level is the first one refused.
    assert_at(&d, 4 + 2 * 15, 5 + 4 * 15, &["nested more than 16 deep"]);
}

/// Nested far beyond 16 (past the YAML parser's own depth limit of 64), the problem is still
/// the nesting rule, inside the first supervisor too deep, not the parser's "65 levels".
#[test]
fn nesting_far_beyond_the_bound_is_reported_as_the_rule() {
    let mut text = String::from("kind: supervisor\nname: s\nchildren:\n");
    let mut indent = String::from("  ");
    for i in 0..40 {
        text.push_str(&format!("{indent}- name: n{i}\n{indent}  children:\n"));
        indent.push_str("    ");
    }
    text.push_str(&format!("{indent}- {{ name: leaf, run: x }}\n"));
    let d = problem(&text);
    assert_at(
        &d,
        5 + 2 * 15,
        5 + 4 * 15,
        &["supervisors are nested more than 16 deep"],
    );
    assert!(!d.message.contains("65"), "{}", d.message);
    // In flow style too.
    let mut flow = String::from("kind: supervisor\nname: s\nchildren: ");
    for i in 0..40 {
        flow.push_str(&format!("[{{ name: n{i}, children: "));
    }
    flow.push_str("[{ name: leaf, run: x }]");
    flow.push_str(&"}]".repeat(40));
    flow.push('\n');
    let d = problem(&flow);
    assert_eq!(d.line, 3, "{d}");
    assert!(
        d.message
            .contains("supervisors are nested more than 16 deep"),
        "{d}"
    );
}

#[test]
fn nesting_by_name_across_files() {
    let (catalog, d, _dir) = load(&[
        (
            "a-web.yaml",
            "kind: supervisor\nname: web\nchildren:\n  - { name: api, run: x }\n  - { name: jobs, children: [ { supervisor: db, restart: transient } ] }\n",
        ),
        (
            "b-db.yaml",
            "kind: supervisor\nname: db\nstrategy: one_for_all\nchildren:\n  - { name: pg, run: x }\n",
        ),
        (
            "c-flow.yaml",
            "kind: workflow\nname: web\ntasks:\n  a: { run: x }\n",
        ),
    ]);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(
        catalog.workflows.len(),
        1,
        "a workflow may share a supervisor's name"
    );
    assert_eq!(
        catalog.supervisors.len(),
        2,
        "both documents are in the catalog"
    );
    let roots: Vec<&str> = catalog
        .supervisor_roots()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(roots, ["web"], "db is used by web, so it is no root");
    let db = &catalog.supervisors["db"];
    assert_eq!(db.used_by.as_deref(), Some("web"));
    let web = &catalog.supervisors["web"];
    let jobs = nested(web, 1);
    let used = &jobs.children[0];
    assert_eq!(
        (used.name.as_str(), used.restart),
        ("db", Restart::Transient)
    );
    let ChildKind::Supervisor(inner) = &used.kind else {
        panic!("db is a supervisor")
    };
    assert!(
        std::sync::Arc::ptr_eq(inner, db),
        "the catalog's db is the one in the tree"
    );
    assert_eq!(inner.strategy, Strategy::OneForAll);
    // On its own a document using another by name is valid; the use is checked on load.
    let Ok(Document::Supervisor(draft)) = parse_document(
        Path::new("a-web.yaml"),
        "kind: supervisor\nname: web\nchildren:\n  - { supervisor: nowhere }\n",
    ) else {
        panic!("a lone document is valid")
    };
    assert_eq!(draft.references(), ["nowhere"]);
}

#[test]
fn unknown_supervisor_names_are_reported_where_used() {
    let (catalog, d, dir) = load(&[
        (
            "web.yaml",
            "kind: supervisor\nname: web\nchildren:\n  - supervisor: dbb\n",
        ),
        (
            "db.yaml",
            "kind: supervisor\nname: db\nchildren:\n  - { name: pg, run: x }\n",
        ),
    ]);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_at(
        &d[0],
        4,
        17,
        &["unknown supervisor `dbb`: did you mean `db`?"],
    );
    assert_eq!(d[0].file, dir.0.join("web.yaml"));
    let names: Vec<&String> = catalog.supervisors.keys().collect();
    assert_eq!(names, ["db"], "web is left out, db stands alone");
}

#[test]
fn cycles_of_supervisors() {
    let (catalog, d, dir) = load(&[
        (
            "a.yaml",
            "kind: supervisor\nname: a\nchildren:\n  - supervisor: b\n",
        ),
        (
            "b.yaml",
            "kind: supervisor\nname: b\nchildren:\n  - { name: x, run: y }\n  - supervisor: c\n",
        ),
        (
            "c.yaml",
            "kind: supervisor\nname: c\nchildren:\n  - supervisor: a\n",
        ),
        (
            "d.yaml",
            "kind: supervisor\nname: d\nchildren:\n  - supervisor: d\n",
        ),
    ]);
    assert_eq!(d.len(), 2, "{d:#?}");
    let cycle = d.iter().find(|p| p.message.contains("cycle")).unwrap();
    assert_at(cycle, 4, 17, &["cycle of supervisors: a -> b -> c -> a"]);
    assert_eq!(
        cycle.file,
        dir.0.join("c.yaml"),
        "at the use that closes it"
    );
    let own = d.iter().find(|p| p.message.contains("itself")).unwrap();
    assert_at(own, 4, 17, &["supervisor `d` uses itself as a child"]);
    assert!(catalog.supervisors.is_empty());
}

#[test]
fn a_document_is_a_child_in_one_place_only() {
    let (catalog, d, _dir) = load(&[
        (
            "a.yaml",
            "kind: supervisor\nname: a\nchildren:\n  - supervisor: db\n",
        ),
        (
            "b.yaml",
            "kind: supervisor\nname: b\nchildren:\n  - { name: x, run: y }\n  - supervisor: db\n",
        ),
        (
            "db.yaml",
            "kind: supervisor\nname: db\nchildren:\n  - { name: pg, run: x }\n",
        ),
    ]);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_at(
        &d[0],
        5,
        17,
        &["supervisor `db` is already a child of `a`", "a.yaml:4"],
    );
    let names: Vec<&String> = catalog.supervisors.keys().collect();
    assert_eq!(names, ["a", "db"]);
}

#[test]
fn a_broken_document_takes_its_users_down_with_a_reason() {
    let (catalog, d, _dir) = load(&[
        (
            "a.yaml",
            "kind: supervisor\nname: a\nchildren:\n  - supervisor: b\n",
        ),
        (
            "b.yaml",
            "kind: supervisor\nname: b\nchildren:\n  - supervisor: nope\n",
        ),
    ]);
    assert_eq!(d.len(), 2, "{d:#?}");
    let find = |word: &str| d.iter().find(|p| p.message.contains(word)).unwrap();
    assert_at(
        find("has problems"),
        4,
        17,
        &["supervisor `b` has problems", "`a` cannot use it"],
    );
    assert_at(find("nope"), 4, 17, &["unknown supervisor `nope`"]);
    assert!(catalog.supervisors.is_empty());
}

#[test]
fn duplicate_supervisor_names_across_files() {
    let text = "kind: supervisor\nname: web\nchildren:\n  - { name: a, run: x }\n";
    let (catalog, d, dir) = load(&[("a.yaml", text), ("b.yaml", text)]);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_at(
        &d[0],
        2,
        7,
        &["supervisor `web` is already defined in", "a.yaml"],
    );
    assert_eq!(d[0].file, dir.0.join("b.yaml"));
    assert_eq!(catalog.supervisors["web"].file, dir.0.join("a.yaml"));
}

#[test]
fn nesting_by_name_is_bounded() {
    let mut files = Vec::new();
    for i in 0..20 {
        files.push((
            format!("s{i:02}.yaml"),
            format!(
                "kind: supervisor\nname: s{i}\nchildren:\n  - supervisor: s{}\n",
                i + 1
            ),
        ));
    }
    files.push((
        "s20.yaml".into(),
        "kind: supervisor\nname: s20\nchildren:\n  - { name: a, run: x }\n".into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (catalog, d, dir) = load(&refs);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_at(&d[0], 4, 17, &["nested more than 16 deep through `s16`"]);
    assert_eq!(d[0].file, dir.0.join("s15.yaml"));
    assert!(!catalog.supervisors.contains_key("s0"));
}

#[test]
fn parse_str_still_wants_a_workflow_and_the_editor_accepts_both() {
    let text = "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x }\n";
    let d = parse_str(Path::new(FILE), text).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_at(&d[0], 1, 7, &["`kind: supervisor` document"]);
    assert!(
        matches!(parse_document(Path::new(FILE), text), Ok(Document::Supervisor(s)) if s.name() == "s")
    );
    let wf = "kind: workflow\nname: w\ntasks:\n  a: { run: x }\n";
    assert!(
        matches!(parse_document(Path::new(FILE), wf), Ok(Document::Workflow(w)) if w.name == "w")
    );
}

#[test]
fn yaml_errors_in_a_supervisor_are_located() {
    let d = problem(
        "kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, significant: maybe }\n",
    );
    assert_at(&d, 4, 37, &["wrong type"]);
    let d = problem("kind: supervisor\nname: s\nname: t\nchildren:\n  - { name: a, run: x }\n");
    assert_at(&d, 3, 1, &["duplicate key `name`"]);
}

#[test]
fn bundled_examples_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let (catalog, d) = load_dir(&dir);
    assert!(d.is_empty(), "{d:#?}");
    let web = &catalog.supervisors["web"];
    assert!(web.is_root());
    assert_eq!(web.children.len(), 3);
    assert_eq!(catalog.supervisors["cache"].used_by.as_deref(), Some("web"));
}

#[test]
fn max_output_of_a_service_is_a_size_within_bounds() {
    let d =
        problems("kind: supervisor\nname: s\nchildren:\n  - { name: a, run: x, max_output: 0 }\n");
    assert_at(&d[0], 4, 36, &["`max_output`", "out of bounds"]);
}
