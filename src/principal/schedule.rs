//! When scheduled workflows fire: pure, IO-free logic that the engine drives.
//!
//! The [`Scheduler`] owns no clock and no timer: every call is handed `now`, so the engine
//! decides how to sleep (until [`Scheduler::next_wakeup`]) and tests pass instants directly.
//!
//! Rules, in one place:
//!
//! - **Time zones.** An expression is evaluated on the wall clock of the workflow's
//!   `timezone` (UTC when none); fire times are reported as UTC instants.
//! - **DST** (croner's rules, checked by the tests below). A *fixed-time* schedule (one value
//!   each for second, minute and hour, e.g. `30 2 * * *`) whose time falls into a
//!   spring-forward gap fires once, at the first instant after the gap (03:00 local in
//!   Europe/Berlin); in a fall-back overlap it fires once, on the earlier of the two
//!   instants. Any other schedule (e.g. hourly, `*/15 2 * * *`) fires at every real instant
//!   whose wall clock matches: nothing in the gap, both passes through the overlap. Either
//!   way fire times are strictly increasing UTC instants and none is returned twice.
//! - **Downtime, `catchup: false`** (Airflow's rule, not Nomad's): when fire times were missed,
//!   only the most recent one fires, once. A principal restarted a few minutes after a daily
//!   job's time still runs it that day rather than silently skipping a whole day.
//! - **Downtime, `catchup: true`**: the most recent fire time fires as with `catchup: false`,
//!   and before it the missed ones, at most `catchup_limit` of them (the most recent), oldest
//!   first and flagged [`Fire::catchup`]. So `catchup_limit: 0` behaves like `catchup: false`.
//!   Missed means "since the last recorded fire time" ([`Scheduler::restore`]); a workflow
//!   with no recorded fire time starts from when it was first scheduled.
//! - **Pause.** A paused workflow fires nothing. On resume, `catchup: false` forgets the
//!   paused period (pausing is a deliberate "do not run"); `catchup: true` treats it like
//!   downtime and catches up, within `catchup_limit`.
//! - **Overlap.** A policy applies to every fire, catch-up ones included: under `skip`, a
//!   batch of catch-up fires starts the first and skips the rest while it is active; use
//!   `queue` to run them all one after another.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;

use crate::spec::{Overlap, Schedule, WorkflowSpec};

/// Decides when workflows fire; owns no clock: every call is given `now`.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// Scheduled workflows (those with a `schedule`) by name; sorted for deterministic output.
    entries: BTreeMap<String, Entry>,
}

/// Scheduling state of one workflow.
#[derive(Debug)]
struct Entry {
    spec: Arc<WorkflowSpec>,
    /// Fire times at or before this instant are settled: fired, dropped by a rule, or from
    /// before the workflow was scheduled. Moves only forward once `due` has been called
    /// (`restore` moves it back before that), which is what guarantees that no fire time is
    /// returned twice.
    settled: DateTime<Utc>,
    /// Paused workflows fire nothing.
    paused: bool,
    /// First fire time after `settled`; `None` when the expression never matches again.
    /// Cached because a search for a rare or impossible expression is not cheap, and
    /// `next_wakeup` is asked for on every turn of the engine's loop.
    next: Option<DateTime<Utc>>,
}

impl Entry {
    fn new(spec: Arc<WorkflowSpec>, settled: DateTime<Utc>, paused: bool) -> Self {
        let mut entry = Self {
            spec,
            settled,
            paused,
            next: None,
        };
        entry.settle(settled);
        entry
    }

    /// Marks every fire time up to `at` as settled.
    fn settle(&mut self, at: DateTime<Utc>) {
        self.settled = at;
        self.next = self.spec.schedule.as_ref().and_then(|s| next_after(s, at));
    }
}

/// One fire time of a workflow that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// The workflow to run.
    pub workflow: String,
    /// The fire time the run is for (its logical date), which may be in the past.
    pub scheduled_for: DateTime<Utc>,
    /// A missed fire time run on catch-up (a later fire time is also due).
    pub catchup: bool,
}

/// What to do with a fire given the workflow's overlap policy and whether it has an active
/// (queued or running) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapAction {
    /// Start a run now.
    Start,
    /// Drop the fire.
    Skip,
    /// Queue a run behind the active one(s).
    Enqueue,
    /// Cancel the active run(s), then start a run.
    CancelActiveThenStart,
}

/// The action for a fire under `policy`: with no active run every policy starts one.
/// `max_active_runs` is the engine's business and applies on top of this.
pub fn overlap_action(policy: Overlap, has_active_run: bool) -> OverlapAction {
    if !has_active_run {
        return OverlapAction::Start;
    }
    match policy {
        Overlap::Skip => OverlapAction::Skip,
        Overlap::Queue => OverlapAction::Enqueue,
        Overlap::CancelPrevious => OverlapAction::CancelActiveThenStart,
        Overlap::Allow => OverlapAction::Start,
    }
}

impl Scheduler {
    /// A scheduler with no workflows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the set of scheduled workflows (after a catalog (re)load); workflows without
    /// a `schedule` are ignored. Keeps the state (last fire, paused) of workflows that still
    /// have the same schedule; one whose expression or time zone changed keeps its paused flag
    /// but restarts from `now` (fire times of the old expression are not caught up with the
    /// new one). State of workflows no longer scheduled is dropped.
    pub fn set_workflows(
        &mut self,
        specs: impl IntoIterator<Item = Arc<WorkflowSpec>>,
        now: DateTime<Utc>,
    ) {
        let mut entries = BTreeMap::new();
        for spec in specs {
            let Some(schedule) = &spec.schedule else {
                continue;
            };
            let key = schedule_key(schedule);
            let entry = match self.entries.remove(&spec.name) {
                Some(mut old) if old.spec.schedule.as_ref().map(schedule_key) == Some(key) => {
                    // Same fire times: `settled` and the cached `next` stay valid.
                    old.spec = spec;
                    old
                }
                Some(old) => Entry::new(spec, now, old.paused),
                None => Entry::new(spec, now, false),
            };
            entries.insert(entry.spec.name.clone(), entry);
        }
        self.entries = entries;
    }

    /// Seeds state recovered from the store: the last recorded fire time of a workflow (fire
    /// times after it count as missed) and its paused flag. Call after
    /// [`set_workflows`](Self::set_workflows) and before the first [`due`](Self::due) (a
    /// later call could return fire times again); `None` keeps the start set there. False
    /// when no scheduled workflow has that name.
    pub fn restore(
        &mut self,
        workflow: &str,
        last_fire: Option<DateTime<Utc>>,
        paused: bool,
    ) -> bool {
        let Some(entry) = self.entries.get_mut(workflow) else {
            return false;
        };
        if let Some(last) = last_fire {
            entry.settle(last);
        }
        entry.paused = paused;
        true
    }

    /// True when the workflow is scheduled and paused.
    pub fn is_paused(&self, workflow: &str) -> bool {
        self.entries.get(workflow).is_some_and(|e| e.paused)
    }

    /// Stops a workflow's schedule from firing. False when no scheduled workflow has that name.
    pub fn pause(&mut self, workflow: &str) -> bool {
        let Some(entry) = self.entries.get_mut(workflow) else {
            return false;
        };
        entry.paused = true;
        true
    }

    /// Lets a paused workflow fire again. With `catchup: false` the fire times of the paused
    /// period are dropped; with `catchup: true` they are caught up like downtime. False when
    /// no scheduled workflow has that name.
    pub fn resume(&mut self, workflow: &str, now: DateTime<Utc>) -> bool {
        let Some(entry) = self.entries.get_mut(workflow) else {
            return false;
        };
        if entry.paused {
            entry.paused = false;
            if !entry.spec.catchup && entry.settled < now {
                entry.settle(now);
            }
        }
        true
    }

    /// Earliest instant at which [`due`](Self::due) may return something (`None`: nothing is
    /// scheduled, or every schedule is paused or never matches again); the engine sleeps
    /// until then. It may be in the past after downtime.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter(|e| !e.paused)
            .filter_map(|e| e.next)
            .min()
    }

    /// Fire times that are due at `now`, oldest first (see the module documentation for the
    /// catch-up rules). Advances internal state so a fire time is never returned twice.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Fire> {
        let mut fires = Vec::new();
        for (name, entry) in &mut self.entries {
            let Some(next) = entry.next else { continue };
            if entry.paused || next > now {
                continue;
            }
            let Some(schedule) = &entry.spec.schedule else {
                continue;
            };
            let missed = if entry.spec.catchup {
                entry.spec.catchup_limit as usize
            } else {
                0
            };
            let mut times = recent_fire_times(schedule, entry.settled, now, missed + 1);
            if times.is_empty() {
                // The backward search disagrees with the forward one (it should not): fire
                // the time found forwards so the schedule still makes progress.
                times.push(next);
            }
            let latest = times[0];
            fires.extend(times.iter().rev().map(|&t| Fire {
                workflow: name.clone(),
                scheduled_for: t,
                catchup: t != latest,
            }));
            entry.settle(latest);
        }
        fires.sort_by(|a, b| {
            a.scheduled_for
                .cmp(&b.scheduled_for)
                .then_with(|| a.workflow.cmp(&b.workflow))
        });
        fires
    }

    /// Next `n` fire times of a workflow after `now` (for `opsconsole status`), whether or not
    /// it is paused; empty for a workflow that is not scheduled.
    pub fn upcoming(&self, workflow: &str, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let Some(schedule) = self
            .entries
            .get(workflow)
            .and_then(|e| e.spec.schedule.as_ref())
        else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(n.min(64));
        let mut after = now;
        while out.len() < n {
            let Some(t) = next_after(schedule, after) else {
                break;
            };
            out.push(t);
            after = t;
        }
        out
    }
}

/// What determines a schedule's fire times.
fn schedule_key(schedule: &Schedule) -> (&str, Option<Tz>) {
    (schedule.expr.as_str(), schedule.timezone)
}

/// `at` on the schedule's wall clock. croner works in whole seconds; truncating here keeps
/// an instant with a fraction from matching a fire time just before it.
fn local(schedule: &Schedule, at: DateTime<Utc>) -> DateTime<Tz> {
    at.trunc_subsecs(0)
        .with_timezone(&schedule.timezone.unwrap_or(Tz::UTC))
}

/// The first fire time strictly after `after`; `None` when the expression never matches
/// again (croner bounds its search, so an impossible expression such as `0 0 30 2 *` ends
/// with an error rather than a hang).
fn next_after(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = schedule
        .cron
        .find_next_occurrence(&local(schedule, after), false)
        .ok()?
        .with_timezone(&Utc);
    // croner promises a later instant; should it ever break that promise, stopping is better
    // than letting a caller loop on the same instant.
    (t > after).then_some(t)
}

/// Up to `max` fire times in `(after, now]`, newest first. Searched backwards from `now`, so
/// the work is bounded by `max` however long the downtime was.
fn recent_fire_times(
    schedule: &Schedule,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
    max: usize,
) -> Vec<DateTime<Utc>> {
    let mut out: Vec<DateTime<Utc>> = Vec::new();
    let mut cursor = local(schedule, now);
    let mut inclusive = true;
    while out.len() < max {
        let Ok(found) = schedule.cron.find_previous_occurrence(&cursor, inclusive) else {
            break;
        };
        let t = found.with_timezone(&Utc);
        // Strictly decreasing and within the window, whatever croner returns.
        if t <= after || t > now || out.last().is_some_and(|&prev| t >= prev) {
            break;
        }
        out.push(t);
        // Continue from the zoned instant: it knows which pass of a repeated hour it is on.
        cursor = found;
        inclusive = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{Duration, TimeZone};

    use super::*;

    fn spec(name: &str, schedule: &str, extra: &str) -> Arc<WorkflowSpec> {
        let yaml = format!(
            "kind: workflow\nname: {name}\nschedule: \"{schedule}\"\n{extra}tasks:\n  t: {{ run: \"true\" }}\n"
        );
        Arc::new(crate::spec::parse_str(Path::new("t.yaml"), &yaml).expect("valid workflow"))
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("RFC 3339 instant")
    }

    fn scheduler(specs: &[Arc<WorkflowSpec>], now: DateTime<Utc>) -> Scheduler {
        let mut s = Scheduler::new();
        s.set_workflows(specs.iter().cloned(), now);
        s
    }

    fn times(fires: &[Fire]) -> Vec<DateTime<Utc>> {
        fires.iter().map(|f| f.scheduled_for).collect()
    }

    /// Advances a fake clock from `from` to `to` in steps of `step(i)` seconds, calling `due`
    /// at each instant, and checks on the way that `due` never returns anything before
    /// `next_wakeup` and that fire times are strictly increasing.
    fn drive(
        s: &mut Scheduler,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mut step: impl FnMut() -> i64,
    ) -> Vec<Fire> {
        let mut now = from;
        let mut all: Vec<Fire> = Vec::new();
        loop {
            // The last step lands exactly on `to`, so the final fire times are not left out.
            now = now.min(to);
            let wakeup = s.next_wakeup();
            let fires = s.due(now);
            if wakeup.is_none_or(|w| w > now) {
                assert!(fires.is_empty(), "fired before the wakeup at {now}");
            }
            for f in fires {
                assert!(f.scheduled_for <= now, "fire in the future");
                if let Some(prev) = all.last() {
                    assert!(
                        f.scheduled_for > prev.scheduled_for,
                        "not increasing: {f:?}"
                    );
                }
                all.push(f);
            }
            if now == to {
                return all;
            }
            now += Duration::seconds(step());
        }
    }

    fn every(start: DateTime<Utc>, step: Duration, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = start;
        while t <= end {
            out.push(t);
            t += step;
        }
        out
    }

    #[test]
    fn every_minute_fires_once_per_minute_in_arbitrary_steps() {
        let start = at("2026-01-05T10:00:20Z");
        let end = at("2026-01-05T14:00:00Z");
        let mut rng = fastrand::Rng::with_seed(7);
        let mut s = scheduler(&[spec("m", "* * * * *", "")], start);
        // Steps below a minute: catchup=false must not lose a single fire time.
        let fires = drive(&mut s, start, end, || rng.i64(1..60));
        assert!(fires.iter().all(|f| !f.catchup && f.workflow == "m"));
        let expected = every(at("2026-01-05T10:01:00Z"), Duration::minutes(1), end);
        assert_eq!(times(&fires), expected);
    }

    #[test]
    fn catchup_keeps_every_fire_time_across_long_steps() {
        let start = at("2026-01-05T10:00:20Z");
        let end = at("2026-01-05T14:00:00Z");
        let mut rng = fastrand::Rng::with_seed(11);
        let mut s = scheduler(
            &[spec(
                "m",
                "* * * * *",
                "catchup: true\ncatchup_limit: 1000\n",
            )],
            start,
        );
        let fires = drive(&mut s, start, end, || rng.i64(1..600));
        let expected = every(at("2026-01-05T10:01:00Z"), Duration::minutes(1), end);
        // Late fire times are flagged, the one that was current when `due` ran is not.
        assert!(fires.iter().any(|f| f.catchup) && fires.iter().any(|f| !f.catchup));
        assert_eq!(times(&fires), expected);
    }

    #[test]
    fn six_field_expression_fires_on_seconds() {
        let start = at("2026-01-05T10:00:00Z");
        let mut s = scheduler(&[spec("s", "*/15 * * * * *", "")], start);
        assert_eq!(s.next_wakeup(), Some(at("2026-01-05T10:00:15Z")));
        let fires = drive(&mut s, start, at("2026-01-05T10:01:00Z"), || 1);
        assert_eq!(
            times(&fires),
            every(
                at("2026-01-05T10:00:15Z"),
                Duration::seconds(15),
                at("2026-01-05T10:01:00Z")
            )
        );
    }

    #[test]
    fn sub_second_instants_do_not_refire() {
        let start = at("2026-01-05T10:00:00.250Z");
        let mut s = scheduler(&[spec("s", "* * * * * *", "")], start);
        assert_eq!(s.next_wakeup(), Some(at("2026-01-05T10:00:01Z")));
        assert_eq!(
            times(&s.due(at("2026-01-05T10:00:01.900Z"))),
            [at("2026-01-05T10:00:01Z")]
        );
        assert!(s.due(at("2026-01-05T10:00:01.950Z")).is_empty());
    }

    #[test]
    fn schedules_are_evaluated_in_their_time_zone() {
        let wf = spec("ny", "0 9 * * *", "timezone: America/New_York\n");
        let s = scheduler(std::slice::from_ref(&wf), at("2026-01-01T00:00:00Z"));
        // EST (UTC-5) in winter, EDT (UTC-4) in summer.
        assert_eq!(
            s.upcoming("ny", at("2026-01-10T00:00:00Z"), 1),
            [at("2026-01-10T14:00:00Z")]
        );
        assert_eq!(
            s.upcoming("ny", at("2026-07-10T00:00:00Z"), 1),
            [at("2026-07-10T13:00:00Z")]
        );
        // The same expression without a time zone is UTC.
        let utc = scheduler(&[spec("u", "0 9 * * *", "")], at("2026-01-01T00:00:00Z"));
        assert_eq!(
            utc.upcoming("u", at("2026-07-10T00:00:00Z"), 1),
            [at("2026-07-10T09:00:00Z")]
        );
        // And `due` agrees with `upcoming` when the clock gets there.
        let mut s = scheduler(&[wf], at("2026-03-06T00:00:00Z"));
        let fires = drive(
            &mut s,
            at("2026-03-06T00:00:00Z"),
            at("2026-03-10T00:00:00Z"),
            || 60,
        );
        // The United States switch to EDT on 2026-03-08.
        assert_eq!(
            times(&fires),
            [
                at("2026-03-06T14:00:00Z"),
                at("2026-03-07T14:00:00Z"),
                at("2026-03-08T13:00:00Z"),
                at("2026-03-09T13:00:00Z"),
            ]
        );
    }

    /// Fires of `expr` in Europe/Berlin as a fake clock walks minute by minute.
    fn berlin_fires(expr: &str, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let wf = spec("b", expr, "timezone: Europe/Berlin\n");
        let mut s = scheduler(&[wf], at(from));
        times(&drive(&mut s, at(from), at(to), || 60))
    }

    #[test]
    fn spring_forward_fires_a_fixed_time_in_the_gap_once_after_it() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day; it
        // fires once, at the first instant after the gap (03:00 CEST = 01:00 UTC).
        let expected = [
            at("2026-03-28T01:30:00Z"), // 02:30 CET
            at("2026-03-29T01:00:00Z"), // 03:00 CEST
            at("2026-03-30T00:30:00Z"), // 02:30 CEST
        ];
        let wf = spec("b", "30 2 * * *", "timezone: Europe/Berlin\n");
        let s = scheduler(&[wf], at("2026-03-27T12:00:00Z"));
        assert_eq!(s.upcoming("b", at("2026-03-27T12:00:00Z"), 3), expected);
        assert_eq!(
            berlin_fires("30 2 * * *", "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
            expected
        );
    }

    #[test]
    fn fall_back_fires_a_repeated_fixed_time_once() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice; the job
        // fires on the first one only.
        let expected = [
            at("2026-10-24T00:30:00Z"), // 02:30 CEST
            at("2026-10-25T00:30:00Z"), // 02:30 CEST, the first of the two
            at("2026-10-26T01:30:00Z"), // 02:30 CET
        ];
        let wf = spec("b", "30 2 * * *", "timezone: Europe/Berlin\n");
        let s = scheduler(&[wf], at("2026-10-23T12:00:00Z"));
        assert_eq!(s.upcoming("b", at("2026-10-23T12:00:00Z"), 3), expected);
        assert_eq!(
            berlin_fires("30 2 * * *", "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z"),
            expected
        );
    }

    #[test]
    fn hourly_schedule_is_one_fire_per_real_hour_across_both_transitions() {
        // Berlin's offsets are whole hours, so an hourly schedule is exactly hourly in UTC:
        // no fire in the skipped hour, one in each pass through the repeated one.
        for (from, to) in [
            ("2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z"),
            ("2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
        ] {
            let expected = every(at(from) + Duration::hours(1), Duration::hours(1), at(to));
            assert_eq!(berlin_fires("0 * * * *", from, to), expected, "from {from}");
            let s = scheduler(
                &[spec("b", "0 * * * *", "timezone: Europe/Berlin\n")],
                at(from),
            );
            assert_eq!(s.upcoming("b", at(from), expected.len()), expected);
        }
    }

    #[test]
    fn catchup_across_dst_transitions_matches_the_forward_fire_times() {
        // Catch-up searches backwards from `now`; it must find the same instants that the
        // forward search (`upcoming`, normal operation) does, through gaps and overlaps.
        for (expr, last, now) in [
            ("30 2 * * *", "2026-03-26T01:30:00Z", "2026-03-31T12:00:00Z"),
            ("30 2 * * *", "2026-10-22T00:30:00Z", "2026-10-28T12:00:00Z"),
            ("0 * * * *", "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z"),
            ("0 * * * *", "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
            (
                "*/20 2 * * *",
                "2026-03-27T12:00:00Z",
                "2026-03-30T12:00:00Z",
            ),
            (
                "*/20 2 * * *",
                "2026-10-23T12:00:00Z",
                "2026-10-26T12:00:00Z",
            ),
        ] {
            let extra = "timezone: Europe/Berlin\ncatchup: true\ncatchup_limit: 1000\n";
            let mut s = scheduler(&[spec("b", expr, extra)], at(last));
            assert!(s.restore("b", Some(at(last)), false));
            let forward: Vec<_> = s
                .upcoming("b", at(last), 1000)
                .into_iter()
                .take_while(|&t| t <= at(now))
                .collect();
            assert!(forward.len() >= 3, "{expr} from {last}: {forward:?}");
            assert_eq!(times(&s.due(at(now))), forward, "{expr} from {last}");
        }
        // An interval schedule inside the repeated hour fires in both passes through it.
        let s = scheduler(
            &[spec("b", "*/20 2 * * *", "timezone: Europe/Berlin\n")],
            at("2026-10-24T12:00:00Z"),
        );
        assert_eq!(
            s.upcoming("b", at("2026-10-24T12:00:00Z"), 7),
            [
                at("2026-10-25T00:00:00Z"),
                at("2026-10-25T00:20:00Z"),
                at("2026-10-25T00:40:00Z"),
                at("2026-10-25T01:00:00Z"),
                at("2026-10-25T01:20:00Z"),
                at("2026-10-25T01:40:00Z"),
                at("2026-10-26T01:00:00Z"),
            ]
        );
    }

    #[test]
    fn catchup_false_runs_only_the_latest_missed_fire_time() {
        let mut s = scheduler(&[spec("h", "0 * * * *", "")], at("2026-01-05T08:59:00Z"));
        assert_eq!(
            times(&s.due(at("2026-01-05T09:00:05Z"))),
            [at("2026-01-05T09:00:00Z")]
        );
        // Down for three hours: 10:00 and 11:00 are missed, 12:00 is the latest.
        let fires = s.due(at("2026-01-05T12:20:00Z"));
        assert_eq!(
            fires,
            [Fire {
                workflow: "h".into(),
                scheduled_for: at("2026-01-05T12:00:00Z"),
                catchup: false,
            }]
        );
        assert!(s.due(at("2026-01-05T12:59:59Z")).is_empty());
        assert_eq!(s.next_wakeup(), Some(at("2026-01-05T13:00:00Z")));
    }

    #[test]
    fn catchup_true_runs_at_most_limit_missed_fire_times() {
        let mut s = scheduler(
            &[spec("h", "0 * * * *", "catchup: true\ncatchup_limit: 2\n")],
            at("2026-01-05T07:59:00Z"),
        );
        assert_eq!(
            times(&s.due(at("2026-01-05T08:00:00Z"))),
            [at("2026-01-05T08:00:00Z")]
        );
        // Missed 09:00, 10:00 and 11:00; the limit keeps the two most recent ones.
        let fires = s.due(at("2026-01-05T12:00:30Z"));
        let got: Vec<_> = fires.iter().map(|f| (f.scheduled_for, f.catchup)).collect();
        assert_eq!(
            got,
            [
                (at("2026-01-05T10:00:00Z"), true),
                (at("2026-01-05T11:00:00Z"), true),
                (at("2026-01-05T12:00:00Z"), false),
            ]
        );
        assert!(s.due(at("2026-01-05T12:30:00Z")).is_empty());
    }

    #[test]
    fn restore_seeds_the_last_fire_time_and_paused_flag() {
        let now = at("2026-01-05T12:00:30Z");
        let catchup = spec("c", "0 * * * *", "catchup: true\n");
        let plain = spec("p", "0 * * * *", "");
        let fresh = spec("f", "0 * * * *", "catchup: true\n");
        let paused = spec("z", "0 * * * *", "");
        let mut s = scheduler(&[catchup, plain, fresh, paused], now);
        assert!(s.restore("c", Some(at("2026-01-05T09:00:00Z")), false));
        assert!(s.restore("p", Some(at("2026-01-05T09:00:00Z")), false));
        assert!(s.restore("f", None, false));
        assert!(s.restore("z", Some(at("2026-01-05T09:00:00Z")), true));
        assert!(!s.restore("nope", None, false));
        assert_eq!(s.next_wakeup(), Some(at("2026-01-05T10:00:00Z")));
        let got: Vec<_> = s
            .due(now)
            .into_iter()
            .map(|f| (f.workflow, f.scheduled_for, f.catchup))
            .collect();
        assert_eq!(
            got,
            [
                ("c".into(), at("2026-01-05T10:00:00Z"), true),
                ("c".into(), at("2026-01-05T11:00:00Z"), true),
                ("c".into(), at("2026-01-05T12:00:00Z"), false),
                ("p".into(), at("2026-01-05T12:00:00Z"), false),
            ]
        );
        // `f` has no recorded fire time: nothing before `now` is missed; `z` is paused.
        assert_eq!(s.next_wakeup(), Some(at("2026-01-05T13:00:00Z")));
        let next: Vec<_> = s
            .due(at("2026-01-05T13:00:00Z"))
            .into_iter()
            .map(|f| f.workflow)
            .collect();
        assert_eq!(next, ["c", "f", "p"]);
    }

    #[test]
    fn pause_and_resume() {
        let start = at("2026-01-05T08:30:00Z");
        let mut s = scheduler(
            &[
                spec("plain", "0 * * * *", ""),
                spec("catchup", "0 * * * *", "catchup: true\n"),
            ],
            start,
        );
        assert!(s.pause("plain") && s.pause("catchup"));
        assert!(!s.pause("nope") && !s.resume("nope", start));
        assert_eq!(s.next_wakeup(), None);
        assert!(s.due(at("2026-01-05T11:30:00Z")).is_empty());
        // Status still shows the schedule of a paused workflow.
        assert_eq!(
            s.upcoming("plain", at("2026-01-05T11:30:00Z"), 1),
            [at("2026-01-05T12:00:00Z")]
        );

        let now = at("2026-01-05T11:30:00Z");
        assert!(s.resume("plain", now) && s.resume("catchup", now));
        // Resuming twice changes nothing.
        assert!(s.resume("plain", now));
        let got: Vec<_> = s
            .due(now)
            .into_iter()
            .map(|f| (f.workflow, f.scheduled_for, f.catchup))
            .collect();
        // `plain` forgets the paused period; `catchup` runs it (09:00, 10:00 missed, 11:00 latest).
        assert_eq!(
            got,
            [
                ("catchup".into(), at("2026-01-05T09:00:00Z"), true),
                ("catchup".into(), at("2026-01-05T10:00:00Z"), true),
                ("catchup".into(), at("2026-01-05T11:00:00Z"), false),
            ]
        );
        assert_eq!(s.next_wakeup(), Some(at("2026-01-05T12:00:00Z")));
        let next: Vec<_> = s
            .due(at("2026-01-05T12:00:00Z"))
            .into_iter()
            .map(|f| f.workflow)
            .collect();
        assert_eq!(next, ["catchup", "plain"]);
    }

    #[test]
    fn set_workflows_keeps_state_and_restarts_a_changed_schedule() {
        let t0 = at("2026-01-05T08:30:00Z");
        let mut s = scheduler(
            &[
                spec("same", "0 * * * *", "catchup: true\n"),
                spec("changed", "0 * * * *", "catchup: true\n"),
                spec("gone", "0 * * * *", ""),
            ],
            t0,
        );
        assert_eq!(s.due(at("2026-01-05T09:00:00Z")).len(), 2 + 1);
        assert!(s.pause("changed"));

        // Reload at 11:30: `same` only changes its overlap policy, `changed` its expression,
        // `gone` is no longer scheduled, `new` appears.
        let now = at("2026-01-05T11:30:00Z");
        s.set_workflows(
            [
                spec("same", "0 * * * *", "catchup: true\noverlap: queue\n"),
                spec("changed", "30 * * * *", "catchup: true\n"),
                spec("new", "0 * * * *", "catchup: true\n"),
                Arc::new(
                    crate::spec::parse_str(
                        Path::new("t.yaml"),
                        "kind: workflow\nname: gone\ntasks:\n  t: { run: \"true\" }\n",
                    )
                    .expect("valid workflow"),
                ),
            ],
            now,
        );
        assert!(!s.pause("gone"), "unscheduled workflows have no state");
        assert!(
            s.resume("changed", now),
            "the paused flag survives a new expression"
        );
        let got: Vec<_> = s
            .due(now)
            .into_iter()
            .map(|f| (f.workflow, f.scheduled_for))
            .collect();
        // `same` catches up from its last fire (09:00); `changed` and `new` start at `now`.
        assert_eq!(
            got,
            [
                ("same".into(), at("2026-01-05T10:00:00Z")),
                ("same".into(), at("2026-01-05T11:00:00Z")),
            ]
        );
        assert_eq!(s.next_wakeup(), Some(at("2026-01-05T12:00:00Z")));
        assert_eq!(s.upcoming("changed", now, 1), [at("2026-01-05T12:30:00Z")]);
    }

    #[test]
    fn overlap_policies() {
        use OverlapAction::*;
        let table = [
            (Overlap::Skip, Skip),
            (Overlap::Queue, Enqueue),
            (Overlap::CancelPrevious, CancelActiveThenStart),
            (Overlap::Allow, Start),
        ];
        for (policy, when_active) in table {
            assert_eq!(overlap_action(policy, false), Start, "{policy:?} idle");
            assert_eq!(
                overlap_action(policy, true),
                when_active,
                "{policy:?} active"
            );
        }
    }

    #[test]
    fn an_expression_that_never_matches_never_wakes_up() {
        let now = at("2026-01-05T08:30:00Z");
        // Validation refuses such an expression now; the scheduler must still cope with one.
        let mut never = (*spec("never", "0 0 1 1 *", "catchup: true\n")).clone();
        let schedule = never.schedule.as_mut().expect("scheduled");
        schedule.expr = "0 0 30 2 *".into();
        schedule.cron = Arc::new("0 0 30 2 *".parse().expect("croner parses it"));
        let mut s = scheduler(&[Arc::new(never)], now);
        assert!(s.restore("never", Some(at("2020-01-01T00:00:00Z")), false));
        assert_eq!(s.next_wakeup(), None);
        assert!(s.due(now + Duration::days(400)).is_empty());
        assert!(s.upcoming("never", now, 3).is_empty());
        assert!(s.upcoming("unknown", now, 3).is_empty());
    }

    #[test]
    fn rare_expressions_still_find_their_date() {
        // 29 February: the next one is almost three years away.
        let s = scheduler(
            &[spec("leap", "0 12 29 2 *", "")],
            at("2025-03-01T00:00:00Z"),
        );
        assert_eq!(
            s.next_wakeup(),
            Some(Utc.with_ymd_and_hms(2028, 2, 29, 12, 0, 0).unwrap())
        );
    }
}
