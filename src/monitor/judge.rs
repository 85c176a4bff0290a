//! One check result -> a [`Judgement`] (ok, degraded or failed, with its [`Cause`]); one
//! round across locations -> one judgement by quorum. Pure: no clock, no IO.

use crate::monitor::condition::{Condition, Observation};
use crate::protocol::check::CheckResult;
use crate::protocol::monitor::{Cause, Verdict};

/// Longest probe error kept in a cause, in characters (the rest is cut with `…`).
const MAX_ERROR_CHARS: usize = 200;

/// The condition a cause names when the probe itself failed and no condition was written.
pub const PROBE_FAILED: &str = "check";

/// How one result (or one round) was judged, and why when it was not ok.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Ok, degraded or failed.
    pub verdict: Verdict,
    /// The first failing condition and the value it saw; `None` when ok.
    pub cause: Option<Cause>,
}

impl Judgement {
    /// An ok judgement.
    pub fn ok() -> Self {
        Judgement {
            verdict: Verdict::Ok,
            cause: None,
        }
    }

    /// A failed judgement for `condition`, having seen `seen`.
    pub fn failed(condition: impl Into<String>, seen: impl Into<String>) -> Self {
        Judgement {
            verdict: Verdict::Failed,
            cause: Some(Cause {
                condition: condition.into(),
                seen: seen.into(),
            }),
        }
    }
}

/// Judges one result: failed at the first of `conditions` that does not hold (or, with no
/// conditions, when the probe could not complete); else degraded at the first of
/// `degraded_when` that does not hold; else ok. The body is parsed at most once.
///
/// A probe error does not fail a result whose conditions all hold, as in Gatus: a user may
/// write `[CONNECTED] == false` to watch that a port stays closed.
pub fn judge(
    conditions: &[Condition],
    degraded_when: &[Condition],
    result: &CheckResult,
) -> Judgement {
    let obs = Observation::new(result);
    let error = result.error.as_deref().map(cut);
    for c in conditions {
        let j = c.judge(&obs);
        if !j.passed {
            let seen = match &error {
                Some(e) => format!("{} ({e})", j.seen),
                None => j.seen,
            };
            return Judgement::failed(c.text.to_string(), seen);
        }
    }
    if conditions.is_empty()
        && let Some(e) = error
    {
        return Judgement::failed(PROBE_FAILED, e);
    }
    for c in degraded_when {
        let j = c.judge(&obs);
        if !j.passed {
            return Judgement {
                verdict: Verdict::Degraded,
                cause: Some(Cause {
                    condition: c.text.to_string(),
                    seen: j.seen,
                }),
            };
        }
    }
    Judgement::ok()
}

/// One round of a multi-location monitor: each location's judgement, `None` for a location
/// whose agent is lost (unknown, not failed).
///
/// Failed when at least `quorum` locations failed (`quorum` is taken as at least 1 and at most
/// the number of locations: a quorum larger than the round needs every location); the cause
/// is the first failed location's, with the count. Otherwise
/// `None` when no location passed (nothing seen healthy, not enough seen failing: the round
/// decides nothing), degraded when any location is degraded, else ok.
pub fn quorum(round: &[Option<Judgement>], quorum: u32) -> Option<Judgement> {
    let locations = round.len().max(1);
    let needed = (quorum.max(1) as usize).min(locations);
    let failed: Vec<&Judgement> = round
        .iter()
        .flatten()
        .filter(|j| j.verdict == Verdict::Failed)
        .collect();
    if failed.len() >= needed {
        let mut j = failed[0].clone();
        if let Some(c) = j.cause.as_mut() {
            c.seen = format!(
                "{} ({} of {} locations failed)",
                c.seen,
                failed.len(),
                round.len()
            );
        }
        return Some(j);
    }
    let passed: Vec<&Judgement> = round
        .iter()
        .flatten()
        .filter(|j| j.verdict != Verdict::Failed)
        .collect();
    if passed.is_empty() {
        return None;
    }
    Some(
        passed
            .iter()
            .find(|j| j.verdict == Verdict::Degraded)
            .map_or_else(Judgement::ok, |j| (*j).clone()),
    )
}

/// `text` cut to [`MAX_ERROR_CHARS`].
fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn conds(texts: &[&str]) -> Vec<Condition> {
        texts
            .iter()
            .map(|t| Condition::parse(t).expect("parses"))
            .collect()
    }

    fn http(status: u16, ms: u64) -> CheckResult {
        CheckResult {
            status: Some(status),
            connected: true,
            response_time: Duration::from_millis(ms),
            ..CheckResult::default()
        }
    }

    #[test]
    fn the_first_failing_condition_and_its_value_are_the_cause() {
        let c = conds(&["[STATUS] == 200", "[RESPONSE_TIME] < 300"]);
        assert_eq!(judge(&c, &[], &http(200, 10)), Judgement::ok());
        let j = judge(&c, &[], &http(503, 900));
        assert_eq!(j, Judgement::failed("[STATUS] == 200", "503"));
        let j = judge(&c, &[], &http(200, 900));
        assert_eq!(j, Judgement::failed("[RESPONSE_TIME] < 300", "900"));
    }

    #[test]
    fn degraded_when_counts_only_while_the_conditions_hold() {
        let c = conds(&["[STATUS] == 200"]);
        let d = conds(&["[RESPONSE_TIME] < 300"]);
        let j = judge(&c, &d, &http(200, 900));
        assert_eq!(j.verdict, Verdict::Degraded);
        assert_eq!(
            j.cause.map(|c| c.condition).as_deref(),
            Some("[RESPONSE_TIME] < 300")
        );
        assert_eq!(judge(&c, &d, &http(500, 900)).verdict, Verdict::Failed);
        assert_eq!(judge(&c, &d, &http(200, 10)).verdict, Verdict::Ok);
    }

    #[test]
    fn a_probe_error_fails_without_conditions_and_is_shown_with_a_failing_one() {
        let refused = CheckResult::failed(None, Duration::from_millis(1), "connection refused");
        assert_eq!(
            judge(&[], &[], &refused),
            Judgement::failed(PROBE_FAILED, "connection refused")
        );
        let j = judge(&conds(&["[STATUS] == 200"]), &[], &refused);
        assert_eq!(
            j.cause.map(|c| c.seen).as_deref(),
            Some("(missing) (connection refused)")
        );
        // Watching that a port stays closed: the error is what is wanted.
        let closed = judge(&conds(&["[CONNECTED] == false"]), &[], &refused);
        assert_eq!(closed.verdict, Verdict::Ok);
    }

    #[test]
    fn quorum_fails_a_round_only_when_enough_locations_failed() {
        let ok = || Some(Judgement::ok());
        let bad = || Some(Judgement::failed("[STATUS] == 200", "503"));
        // One flaky path of three, quorum 2: not failed.
        assert_eq!(
            quorum(&[bad(), ok(), ok()], 2).map(|j| j.verdict),
            Some(Verdict::Ok)
        );
        let j = quorum(&[bad(), bad(), ok()], 2).expect("judged");
        assert_eq!(j.verdict, Verdict::Failed);
        assert_eq!(
            j.cause.map(|c| c.seen).as_deref(),
            Some("503 (2 of 3 locations failed)")
        );
        // A lost agent is unknown, not failed.
        assert_eq!(
            quorum(&[bad(), None, ok()], 2).map(|j| j.verdict),
            Some(Verdict::Ok)
        );
        assert_eq!(quorum(&[bad(), None], 2), None);
        assert_eq!(quorum(&[None, None], 1), None);
        // A quorum larger than the round is the whole round.
        assert_eq!(
            quorum(&[bad(), bad()], 5).map(|j| j.verdict),
            Some(Verdict::Failed)
        );
        let degraded = Some(Judgement {
            verdict: Verdict::Degraded,
            cause: None,
        });
        assert_eq!(
            quorum(&[ok(), degraded, bad()], 2).map(|j| j.verdict),
            Some(Verdict::Degraded)
        );
    }
}
