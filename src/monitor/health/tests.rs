use chrono::TimeZone;

use super::*;

const M: MonitorId = MonitorId(0);
const DEP: MonitorId = MonitorId(1);

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0)
        .single()
        .expect("valid")
}

fn ok() -> Judgement {
    Judgement::ok()
}

fn bad() -> Judgement {
    Judgement::failed("[STATUS] == 200", "503")
}

fn slow() -> Judgement {
    Judgement {
        verdict: Verdict::Degraded,
        cause: Some(Cause {
            condition: "[RESPONSE_TIME] < 300".into(),
            seen: "900".into(),
        }),
    }
}

fn restart(cooldown: u64, max_attempts: u32) -> InterventionSpec {
    InterventionSpec {
        action: Action::Restart {
            path: "web/api".into(),
        },
        cooldown: Duration::from_secs(cooldown),
        max_attempts,
    }
}

fn machine(policy: Policy) -> Health {
    let mut h = Health::new();
    let p = h.add_policy(policy);
    h.add(M, p, &[], t(0)).expect("policy");
    h
}

/// Feeds `results` one a second from `start`; returns every step.
fn feed(h: &mut Health, m: MonitorId, start: i64, results: &[Judgement]) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, j) in results.iter().enumerate() {
        h.record(m, j, t(start + i as i64), &mut out);
    }
    out
}

fn state(h: &Health, m: MonitorId) -> MonitorState {
    h.status(m).expect("known").state
}

fn changes(steps: &[Step]) -> Vec<MonitorState> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Changed { status, .. } => Some(status.state),
            _ => None,
        })
        .collect()
}

fn attempts(steps: &[Step]) -> Vec<(u32, Outcome)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Attempt { no, attempt, .. } => Some((*no, attempt.outcome.clone())),
            _ => None,
        })
        .collect()
}

fn intervened(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Intervene { .. }))
        .count()
}

#[test]
fn a_monitor_at_rest_is_a_small_fixed_slot() {
    println!("health slot: {} bytes a monitor", Health::SLOT_BYTES);
    const { assert!(Health::SLOT_BYTES <= 40) };
}

#[test]
fn thresholds_count_consecutive_results() {
    let mut h = machine(Policy::default());
    assert_eq!(state(&h, M), MonitorState::Unknown);
    feed(&mut h, M, 0, &[ok()]);
    assert_eq!(state(&h, M), MonitorState::Unknown, "healthy_after is 2");
    let steps = feed(&mut h, M, 1, &[ok()]);
    assert_eq!(changes(&steps), [MonitorState::Healthy]);
    // Two failures, an ok between: the streak starts again.
    feed(&mut h, M, 2, &[bad(), bad(), ok(), bad(), bad()]);
    assert_eq!(state(&h, M), MonitorState::Healthy);
    let steps = feed(&mut h, M, 7, &[bad()]);
    assert_eq!(changes(&steps), [MonitorState::Unhealthy]);
    match &steps[0] {
        Step::Changed { cause, status, .. } => {
            assert_eq!(cause.as_ref().map(|c| c.seen.as_str()), Some("503"));
            assert_eq!(status.since, t(7));
        }
        other => panic!("{other:?}"),
    }
    feed(&mut h, M, 8, &[ok()]);
    assert_eq!(state(&h, M), MonitorState::Unhealthy);
    let steps = feed(&mut h, M, 9, &[ok()]);
    assert_eq!(changes(&steps), [MonitorState::Healthy]);
}

#[test]
fn degraded_is_between_healthy_and_unhealthy() {
    let mut h = machine(Policy::default());
    feed(&mut h, M, 0, &[ok(), ok()]);
    feed(&mut h, M, 2, &[slow(), slow()]);
    assert_eq!(state(&h, M), MonitorState::Healthy);
    let steps = feed(&mut h, M, 4, &[slow()]);
    assert_eq!(changes(&steps), [MonitorState::Degraded]);
    // Degraded results are not failures: no incident.
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, Step::IncidentOpened { .. }))
    );
    let steps = feed(&mut h, M, 5, &[ok(), ok()]);
    assert_eq!(changes(&steps), [MonitorState::Healthy]);
    // From unhealthy, passing results land on degraded when the last one is.
    feed(&mut h, M, 7, &[bad(), bad(), bad()]);
    let steps = feed(&mut h, M, 10, &[ok(), slow()]);
    assert_eq!(changes(&steps), [MonitorState::Degraded]);
}

#[test]
fn an_incident_opens_on_unhealthy_and_closes_on_healthy_with_its_cause_and_duration() {
    let mut h = machine(Policy::default());
    let steps = feed(&mut h, M, 0, &[bad(), bad(), bad()]);
    let opened: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::IncidentOpened {
                incident,
                cause,
                at,
                ..
            } => Some((*incident, cause.clone(), *at)),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].0, IncidentId(1));
    assert_eq!(opened[0].1.condition, "[STATUS] == 200");
    assert_eq!(opened[0].2, t(2));
    assert_eq!(h.incident(M), Some(IncidentId(1)));
    // Through degraded the incident stays open; healthy closes it.
    let steps = feed(&mut h, M, 3, &[slow(), slow()]);
    assert_eq!(changes(&steps), [MonitorState::Degraded]);
    assert_eq!(h.incident(M), Some(IncidentId(1)));
    let steps = feed(&mut h, M, 5, &[bad(), bad(), bad()]);
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, Step::IncidentOpened { .. })),
        "still the same incident"
    );
    let steps = feed(&mut h, M, 8, &[ok(), ok()]);
    assert!(steps.contains(&Step::IncidentClosed {
        monitor: M,
        incident: IncidentId(1),
        at: t(9),
        duration: Duration::from_secs(7),
    }));
    assert_eq!(h.incident(M), None);
    feed(&mut h, M, 10, &[bad(), bad(), bad()]);
    assert_eq!(h.incident(M), Some(IncidentId(2)));
}

#[test]
fn blocked_by_an_unhealthy_dependency_records_but_neither_flips_nor_triggers() {
    let mut h = Health::new();
    let p = h.add_policy(Policy {
        on_unhealthy: vec![restart(0, 5)],
        ..Policy::default()
    });
    h.add(M, p, &[DEP], t(0)).expect("policy");
    h.add(DEP, p, &[], t(0)).expect("policy");
    feed(&mut h, M, 0, &[ok(), ok()]);
    feed(&mut h, DEP, 0, &[bad(), bad(), bad()]);
    let steps = feed(&mut h, M, 3, &[bad(), bad(), bad(), bad()]);
    assert_eq!(changes(&steps), [MonitorState::Blocked]);
    assert_eq!(h.status(M).expect("known").health, MonitorState::Healthy);
    assert_eq!(intervened(&steps), 0);
    assert!(h.incident(M).is_none());
    // The dependency recovers: the next result unblocks, streaks start afresh.
    feed(&mut h, DEP, 3, &[ok(), ok()]);
    let steps = feed(&mut h, M, 7, &[bad()]);
    assert_eq!(changes(&steps), [MonitorState::Healthy]);
    let steps = feed(&mut h, M, 8, &[bad(), bad()]);
    assert_eq!(changes(&steps), [MonitorState::Unhealthy]);
    assert_eq!(intervened(&steps), 1);
}

#[test]
fn maintenance_holds_the_state_and_interventions() {
    let mut h = machine(Policy {
        on_unhealthy: vec![restart(0, 5)],
        ..Policy::default()
    });
    feed(&mut h, M, 0, &[ok(), ok()]);
    let mut out = Vec::new();
    h.set_maintenance(M, true, t(2), &mut out);
    assert_eq!(changes(&out), [MonitorState::Maintenance]);
    let steps = feed(&mut h, M, 3, &[bad(), bad(), bad(), bad()]);
    assert!(steps.is_empty(), "{steps:?}");
    out.clear();
    h.set_maintenance(M, false, t(7), &mut out);
    assert_eq!(changes(&out), [MonitorState::Healthy]);
    // Failures inside the window do not count towards the threshold after it.
    feed(&mut h, M, 8, &[bad(), bad()]);
    assert_eq!(state(&h, M), MonitorState::Healthy);
    let steps = feed(&mut h, M, 10, &[bad()]);
    assert_eq!(intervened(&steps), 1);
}

#[test]
fn paused_ignores_results_and_is_recorded_for_restarts() {
    let mut h = machine(Policy::default());
    feed(&mut h, M, 0, &[ok(), ok()]);
    let mut out = Vec::new();
    h.pause(M, true, t(2), &mut out);
    assert_eq!(changes(&out), [MonitorState::Paused]);
    match &out[0] {
        Step::Changed { status, .. } => {
            assert!(status.paused);
            assert_eq!(status.health, MonitorState::Healthy);
        }
        other => panic!("{other:?}"),
    }
    assert!(feed(&mut h, M, 3, &[bad(), bad(), bad()]).is_empty());
    // A pause hidden under maintenance is still recorded.
    h.set_maintenance(M, true, t(6), &mut out);
    out.clear();
    h.pause(M, false, t(7), &mut out);
    assert_eq!(changes(&out), [MonitorState::Maintenance]);
    h.pause(M, true, t(8), &mut out);
    out.clear();
    h.set_maintenance(M, false, t(9), &mut out);
    out.clear();
    h.pause(M, false, t(10), &mut out);
    assert_eq!(changes(&out), [MonitorState::Healthy]);
}

#[test]
fn flapping_uses_icinga_hysteresis_and_holds_interventions() {
    let mut h = machine(Policy {
        unhealthy_after: 1,
        healthy_after: 1,
        on_unhealthy: vec![restart(0, 100)],
        ..Policy::default()
    });
    // Alternating: every result is a change. The 6th change (30 % of 20) starts flapping.
    let mut all = Vec::new();
    let mut flapping_from = None;
    for i in 0..7 {
        let j = if i % 2 == 0 { bad() } else { ok() };
        let steps = feed(&mut h, M, i, &[j]);
        if flapping_from.is_none() && h.status(M).expect("known").flapping {
            flapping_from = Some(i);
        }
        all.extend(steps);
    }
    assert_eq!(flapping_from, Some(6), "6 changes after 7 results");
    // Held: entering unhealthy while flapping is a skipped attempt, no intervention.
    let steps = feed(&mut h, M, 7, &[ok(), bad()]);
    assert_eq!(intervened(&steps), 0);
    assert!(
        attempts(&steps)
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Skipped(w) if w.contains("flapping")))
    );
    // Steady results: still flapping at 5 changes in the window (not below 25 %), steady
    // once the count drops to 4.
    let mut steady_after = None;
    for i in 0..30 {
        feed(&mut h, M, 9 + i, &[ok()]);
        if !h.status(M).expect("known").flapping {
            steady_after = Some(i);
            break;
        }
    }
    // 9 changes so far (results 1 to 9); they age out of the 20-result window one a result:
    // at 4 changes left it is steady.
    let steady_after = steady_after.expect("becomes steady");
    println!("flapping: started at 6/20 changes, steady again after {steady_after} ok results");
    let history = h.slots[0].history.count_ones();
    assert!(history < FLAP_STOP, "{history}");
    assert!(history >= FLAP_STOP - 1);
    // Hysteresis: a monitor at exactly 5 changes keeps the flag it had.
    let mut g = machine(Policy::default());
    let pattern = [ok(), bad(), ok(), bad(), ok(), bad()]; // 5 changes
    feed(&mut g, M, 0, &pattern);
    assert!(
        !g.status(M).expect("known").flapping,
        "5 changes do not start it"
    );
}

#[test]
fn cooldown_and_max_attempts_bound_interventions_per_incident() {
    let mut h = machine(Policy {
        unhealthy_after: 1,
        on_unhealthy: vec![restart(10, 2)],
        on_recovered: vec![InterventionSpec {
            action: Action::Run {
                workflow: "note".into(),
                params: vec![],
            },
            cooldown: Duration::ZERO,
            max_attempts: 1,
        }],
        ..Policy::default()
    });
    let steps = feed(&mut h, M, 0, &[bad()]);
    assert_eq!(intervened(&steps), 1);
    assert_eq!(attempts(&steps), [(1, Outcome::Started)]);
    let incident = h.incident(M);
    match steps.iter().find(|s| matches!(s, Step::Intervene { .. })) {
        Some(Step::Intervene {
            incident: i,
            trigger,
            no,
            ..
        }) => {
            assert_eq!((*i, *trigger, *no), (incident, Trigger::Unhealthy, 1));
        }
        other => panic!("{other:?}"),
    }
    // Still unhealthy: nothing within the cooldown, a second attempt after it, then none.
    let steps = feed(&mut h, M, 1, &[bad(), bad(), bad()]);
    assert_eq!(intervened(&steps), 0);
    assert!(attempts(&steps).is_empty(), "cooldown waits quietly");
    let steps = feed(&mut h, M, 10, &[bad()]);
    assert_eq!(attempts(&steps), [(2, Outcome::Started)]);
    let steps = feed(&mut h, M, 30, &[bad(), bad()]);
    assert_eq!(intervened(&steps), 0, "max_attempts reached");
    let done = Health::attempt_done(
        M,
        incident,
        2,
        Trigger::Unhealthy,
        &restart(0, 1).action,
        Outcome::Succeeded,
        t(33),
    );
    assert!(matches!(done, Step::Attempt { no: 2, .. }));
    // Recovery closes the incident, and its intervention is numbered on it.
    let steps = feed(&mut h, M, 40, &[ok(), ok()]);
    let closed = steps
        .iter()
        .position(|s| matches!(s, Step::IncidentClosed { .. }))
        .expect("closed");
    let recovered = steps
        .iter()
        .position(|s| {
            matches!(
                s,
                Step::Intervene {
                    trigger: Trigger::Recovered,
                    ..
                }
            )
        })
        .expect("recovered");
    assert!(closed < recovered);
    assert_eq!(attempts(&steps), [(3, Outcome::Started)]);
    // A new incident gets its attempts afresh (after the cooldown).
    let steps = feed(&mut h, M, 60, &[bad()]);
    assert_eq!(attempts(&steps), [(1, Outcome::Started)]);
    // Re-entering within the cooldown: recorded as skipped.
    feed(&mut h, M, 61, &[ok(), ok()]);
    let steps = feed(&mut h, M, 63, &[bad()]);
    assert!(
        matches!(&attempts(&steps)[..], [(1, Outcome::Skipped(w))] if w.contains("cooldown")),
        "{steps:?}"
    );
}

#[test]
fn restore_continues_without_a_duplicate_incident() {
    let policy = Policy {
        on_unhealthy: vec![restart(0, 2)],
        ..Policy::default()
    };
    let mut first = machine(policy.clone());
    let mut steps = feed(&mut first, M, 0, &[ok(), ok(), bad(), bad(), bad()]);
    let incident = first.incident(M).expect("open");
    // What the store would have kept: the last status and the open incident.
    let status = steps
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::Changed { status, .. } => Some(*status),
            _ => None,
        })
        .expect("changed");
    let mut out = Vec::new();
    first.pause(M, false, t(5), &mut out);
    steps.extend(out);
    let stored = Incident {
        id: incident,
        monitor: "api".into(),
        opened: t(4),
        closed: None,
        cause: Cause {
            condition: "[STATUS] == 200".into(),
            seen: "503".into(),
        },
        attempts: vec![Attempt {
            at: t(4),
            trigger: Trigger::Unhealthy,
            action: "restart web/api".into(),
            outcome: Outcome::Succeeded,
        }],
    };

    let mut second = machine(policy);
    let repair = second.restore(
        &[(M, status)],
        &[(M, stored.clone())],
        IncidentId(1),
        t(100),
    );
    assert!(repair.is_empty(), "{repair:?}");
    assert_eq!(state(&second, M), MonitorState::Unhealthy);
    assert_eq!(second.incident(M), Some(incident));
    assert_eq!(second.next_incident(), IncidentId(incident.0 + 1));
    // Still failing: no second incident; one attempt left of two, numbered after the first.
    let steps = feed(&mut second, M, 101, &[bad(), bad(), bad(), bad()]);
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, Step::IncidentOpened { .. })),
        "{steps:?}"
    );
    let steps = feed(&mut second, M, 105, &[ok(), ok()]);
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::IncidentClosed { incident: i, .. } if *i == incident))
    );

    // Stored healthy with the incident still open (died between the writes): closed now.
    let mut third = machine(Policy::default());
    let healthy = MonitorStatus {
        state: MonitorState::Healthy,
        health: MonitorState::Healthy,
        flapping: false,
        paused: false,
        since: t(3),
    };
    let repair = third.restore(&[(M, healthy)], &[(M, stored)], IncidentId(1), t(100));
    assert!(matches!(
        &repair[..],
        [Step::IncidentClosed { incident: i, .. }] if *i == incident
    ));
    assert_eq!(third.incident(M), None);
}

#[test]
fn restore_keeps_pauses_and_counts_attempts_against_max() {
    let policy = Policy {
        unhealthy_after: 1,
        on_unhealthy: vec![restart(0, 1)],
        ..Policy::default()
    };
    let mut h = machine(policy);
    let unhealthy = MonitorStatus {
        state: MonitorState::Paused,
        health: MonitorState::Unhealthy,
        flapping: false,
        paused: true,
        since: t(0),
    };
    let open = Incident {
        id: IncidentId(41),
        monitor: "api".into(),
        opened: t(0),
        closed: None,
        cause: Cause {
            condition: "check".into(),
            seen: "refused".into(),
        },
        attempts: vec![Attempt {
            at: t(0),
            trigger: Trigger::Unhealthy,
            action: "restart web/api".into(),
            outcome: Outcome::Started,
        }],
    };
    h.restore(&[(M, unhealthy)], &[(M, open)], IncidentId(7), t(10));
    assert_eq!(state(&h, M), MonitorState::Paused);
    assert_eq!(h.next_incident(), IncidentId(42));
    assert!(feed(&mut h, M, 11, &[bad()]).is_empty(), "paused");
    let mut out = Vec::new();
    h.pause(M, false, t(12), &mut out);
    let steps = feed(&mut h, M, 13, &[bad(), bad()]);
    assert_eq!(
        intervened(&steps),
        0,
        "the one attempt was made before the restart"
    );
}
