use std::time::Duration;

use super::*;
use crate::protocol::check::{DnsRcode, Phases};

fn body(b: &str) -> CheckResult {
    CheckResult {
        body: b.into(),
        connected: true,
        ..CheckResult::default()
    }
}

fn status(s: u16) -> CheckResult {
    CheckResult {
        status: Some(s),
        connected: true,
        ..CheckResult::default()
    }
}

fn holds(cond: &str, result: &CheckResult) -> bool {
    let c = Condition::parse(cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
    c.judge(&Observation::new(result)).passed
}

/// Every row of the Conditions table of Gatus's README (TwiN/gatus, README.md, "Conditions"),
/// copied unchanged, with its "passing values" and "failing values" as observations. Only
/// `[DOMAIN_EXPIRATION]` is refused (it needs WHOIS), with a clear message.
#[test]
fn gatus_readme_conditions_pass_and_fail_as_documented() {
    let ms = |h: u64| Some((h * 3_600_000) as i64);
    let cert = |m: Option<i64>| CheckResult {
        certificate_expiration_ms: m,
        ..CheckResult::default()
    };
    let rt = |m: u64| CheckResult {
        response_time: Duration::from_millis(m),
        ..CheckResult::default()
    };
    let ip = |a: &str| CheckResult {
        ip: a.parse().ok(),
        ..CheckResult::default()
    };
    let connected = |c: bool| CheckResult {
        connected: c,
        ..CheckResult::default()
    };
    type Case = (&'static str, Vec<CheckResult>, Vec<CheckResult>);
    let table: Vec<Case> = vec![
        (
            "[STATUS] == 200",
            vec![status(200)],
            vec![status(201), status(404)],
        ),
        (
            "[STATUS] < 300",
            vec![status(200), status(201), status(299)],
            vec![status(301), status(302)],
        ),
        (
            "[STATUS] <= 299",
            vec![status(200), status(201), status(299)],
            vec![status(301), status(302)],
        ),
        (
            "[STATUS] > 400",
            vec![status(401), status(402), status(403), status(404)],
            vec![status(400), status(200)],
        ),
        (
            "[STATUS] == any(200, 429)",
            vec![status(200), status(429)],
            vec![status(201), status(400)],
        ),
        (
            "[CONNECTED] == true",
            vec![connected(true)],
            vec![connected(false)],
        ),
        (
            "[RESPONSE_TIME] < 500",
            vec![rt(100), rt(200), rt(300)],
            vec![rt(500), rt(501)],
        ),
        (
            "[IP] == 127.0.0.1",
            vec![ip("127.0.0.1")],
            vec![ip("0.0.0.0")],
        ),
        ("[BODY] == 1", vec![body("1")], vec![body("{}"), body("2")]),
        (
            "[BODY].user.name == john",
            vec![body(r#"{"user":{"name":"john"}}"#)],
            vec![],
        ),
        (
            "[BODY].data[0].id == 1",
            vec![body(r#"{"data":[{"id":1}]}"#)],
            vec![],
        ),
        (
            "[BODY].age == [BODY].id",
            vec![body(r#"{"age":1,"id":1}"#)],
            vec![],
        ),
        (
            "len([BODY].data) < 5",
            vec![body(r#"{"data":[{"id":1}]}"#)],
            vec![],
        ),
        (
            "len([BODY].name) == 8",
            vec![body(r#"{"name":"john.doe"}"#)],
            vec![body(r#"{"name":"bob"}"#)],
        ),
        (
            "has([BODY].errors) == false",
            vec![body(r#"{"name":"john.doe"}"#)],
            vec![body(r#"{"errors":[]}"#)],
        ),
        (
            "has([BODY].users) == true",
            vec![body(r#"{"users":[]}"#)],
            vec![body("{}")],
        ),
        (
            "[BODY].name == pat(john*)",
            vec![body(r#"{"name":"john.doe"}"#)],
            vec![body(r#"{"name":"bob"}"#)],
        ),
        (
            "[BODY].id == any(1, 2)",
            vec![body(r#"{"id":1}"#), body(r#"{"id":2}"#)],
            vec![
                body(r#"{"id":3}"#),
                body(r#"{"id":4}"#),
                body(r#"{"id":5}"#),
            ],
        ),
        (
            "[CERTIFICATE_EXPIRATION] > 48h",
            vec![cert(ms(49)), cert(ms(50)), cert(ms(123))],
            vec![cert(ms(1)), cert(ms(24))],
        ),
    ];
    let mut judged = 0;
    for (cond, pass, fail) in &table {
        for r in pass {
            assert!(holds(cond, r), "{cond} should hold for {r:?}");
            judged += 1;
        }
        for r in fail {
            assert!(!holds(cond, r), "{cond} should fail for {r:?}");
            judged += 1;
        }
    }
    // The other examples of the README, from its endpoint and DNS sections.
    let more = [
        "[BODY].status == UP",
        "[RESPONSE_TIME] < 300",
        "[BODY] == pat(*<h1>Example Domain</h1>*)",
        "[DNS_RCODE] == NOERROR",
        "[IP] == pat(192.168.*)",
        "[BODY].ip == any(127.0.0.1, ::1)",
        "len([BODY].username) > 8",
    ];
    for c in more {
        Condition::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    let err = Condition::parse("[DOMAIN_EXPIRATION] > 720h").expect_err("refused");
    assert!(err.message.contains("WHOIS"), "{}", err.message);
    println!(
        "gatus conditions: {} from the table and {} more parsed, {judged} observations judged",
        table.len(),
        more.len()
    );
}

#[test]
fn integers_decimals_and_durations_compare_as_numbers() {
    assert!(holds("[BODY].load < 0.75", &body(r#"{"load":0.5}"#)));
    assert!(!holds("[BODY].load < 0.75", &body(r#"{"load":0.9}"#)));
    assert!(holds("[BODY].v == 1.50", &body(r#"{"v":1.5}"#)));
    assert!(holds("[BODY].v == 007", &body(r#"{"v":7}"#)));
    assert!(holds("[BODY] == abc", &body("abc")));
    assert!(holds("[RESPONSE_TIME] < 1s", &CheckResult::default()));
    assert!(holds(
        "[CERTIFICATE_EXPIRATION] > 1h30m",
        &CheckResult {
            certificate_expiration_ms: Some(5_400_001),
            ..CheckResult::default()
        }
    ));
    // A value that is not a number at run time fails the ordering; it is not read as 0.
    assert!(!holds("[BODY].v < 10", &body(r#"{"v":"abc"}"#)));
    assert!(!holds("[BODY].v > -10", &body(r#"{"v":"abc"}"#)));
}

#[test]
fn orderings_with_a_side_that_is_never_a_number_are_refused_where_written() {
    let e = Condition::parse("[STATUS] < abc").expect_err("refused");
    assert_eq!(e.offset, 11, "{e:?}");
    assert!(e.message.contains("not a number"), "{}", e.message);
    let e = Condition::parse("[IP] > 5").expect_err("refused");
    assert_eq!(e.offset, 0);
    let e = Condition::parse("has([BODY].x) >= 1").expect_err("refused");
    assert_eq!(e.offset, 0);
}

#[test]
fn bad_conditions_point_at_their_fault() {
    let cases = [
        ("[STATUS]==200", 0, "no comparison"),
        ("[STATUS] == ", 12, "missing value"),
        ("[STATU] == 200", 0, "unknown placeholder [STATU]"),
        ("[BODY].a[ == 1", 6, "JSONPath"),
        ("[STATUS].x == 1", 8, "no suffix"),
        ("[HEADERS] == x", 9, "header name"),
        ("len([BODY] == 1", 0, "not closed"),
        ("pat(a*) == [BODY]", 0, "right side"),
    ];
    for (cond, offset, words) in cases {
        let e = Condition::parse(cond).expect_err(cond);
        assert_eq!(e.offset, offset, "{cond}: {e:?}");
        assert!(e.message.contains(words), "{cond}: {}", e.message);
    }
    let long = format!("[BODY] == {}", "x".repeat(MAX_CONDITION_BYTES));
    assert!(Condition::parse(&long).is_err());
}

#[test]
fn headers_phases_dns_and_commands_are_read() {
    let r = CheckResult {
        headers: vec![("content-type".into(), "application/json".into())],
        phases: Phases {
            connect: Some(Duration::from_millis(3)),
            ..Phases::default()
        },
        dns_rcode: Some(DnsRcode::NxDomain),
        exit_code: Some(2),
        output: "disk 91% full".into(),
        ..CheckResult::default()
    };
    assert!(holds(
        "[HEADERS].Content-Type == pat(application/json*)",
        &r
    ));
    assert!(holds("[PHASE_CONNECT] < 10", &r));
    assert!(!holds("[PHASE_TLS] < 10", &r), "a phase not had is missing");
    assert!(holds("[DNS_RCODE] != NOERROR", &r));
    assert!(holds("[EXIT_CODE] == 2", &r));
    assert!(holds("[OUTPUT] == pat(*91%*)", &r));
    assert!(holds("has([HEADERS].x-missing) == false", &r));
}

#[test]
fn the_body_is_parsed_once_for_every_condition_and_the_value_seen_is_kept() {
    let conds: Vec<Condition> = [
        "[BODY].a == 1",
        "[BODY].b == x",
        "len([BODY].c) == 3",
        "has([BODY].d) == false",
        "[STATUS] == 200",
    ]
    .iter()
    .map(|c| Condition::parse(c).expect("parses"))
    .collect();
    let r = CheckResult {
        status: Some(503),
        ..body(r#"{"a":1,"b":"y","c":[1,2,3]}"#)
    };
    let obs = Observation::new(&r);
    let judged: Vec<Judged> = conds.iter().map(|c| c.judge(&obs)).collect();
    assert_eq!(obs.body_parses(), 1);
    let seen: Vec<(&str, bool)> = judged.iter().map(|j| (j.seen.as_str(), j.passed)).collect();
    assert_eq!(
        seen,
        [
            ("1", true),
            ("y", false),
            ("3", true),
            ("false", true),
            ("503", false)
        ]
    );
    let big = body(&"z".repeat(10_000));
    let j = Condition::parse("[BODY] == x")
        .expect("parses")
        .judge(&Observation::new(&big));
    assert!(j.seen.chars().count() <= MAX_SEEN_CHARS + 1);
}

#[test]
fn a_value_seen_never_carries_a_terminal_escape_or_a_line_break() {
    // A target's answer reaches operators' terminals through `check`, `monitor show` and
    // `incidents`: what it sends must not drive them.
    let hostile = body("\u{1b}]0;owned\u{7}\u{1b}[2J\r\nok\tthen");
    let j = Condition::parse("[BODY] == x")
        .expect("parses")
        .judge(&Observation::new(&hostile));
    assert!(!j.passed);
    assert!(!j.seen.contains(char::is_control), "{:?}", j.seen);
    assert_eq!(j.seen, "\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\r\\nok\\tthen");
    // Comparisons read the value itself, not what is shown.
    let line = body("a\nb");
    assert!(holds("[BODY] == pat(a*b)", &line));
    let big = body(&"\u{1b}".repeat(10_000));
    let j = Condition::parse("[BODY] == x")
        .expect("parses")
        .judge(&Observation::new(&big));
    assert!(j.seen.chars().count() <= MAX_SEEN_CHARS + 1);
}

#[test]
fn glob_matching_is_linear_and_correct() {
    assert!(glob_match("a*b?c", "axxbyc"));
    assert!(!glob_match("a*b?c", "axxbc"));
    assert!(glob_match("*", ""));
    assert!(glob_match("**a**", "bab"));
    // A pattern that makes a backtracking matcher explode.
    let text = "a".repeat(5_000);
    assert!(!glob_match("*a*a*a*a*a*b", &text));
}
