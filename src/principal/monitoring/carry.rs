//! What the health machine's [`Step`]s mean for the store and the board: pure translations,
//! so that the actor only sends and writes what these return.

use chrono::{DateTime, Utc};

use crate::monitor::health::Step;
use crate::protocol::board::{BoardId, MonitorBoard};
use crate::protocol::monitor::{
    Attempt, Cause, Incident, IncidentId, MonitorChange, MonitorNote, Outcome,
};
use crate::store::monitor::MonitorWrite;

/// The store write a step asks for (`None` for [`Step::Intervene`], which the actor does).
pub(crate) fn store_write(step: &Step) -> Option<MonitorWrite> {
    Some(match step {
        Step::Changed {
            monitor,
            status,
            cause,
        } => MonitorWrite::State {
            monitor: *monitor,
            status: *status,
            cause: cause.clone(),
        },
        Step::IncidentOpened {
            monitor,
            incident,
            at,
            cause,
        } => MonitorWrite::IncidentOpened {
            incident: *incident,
            monitor: *monitor,
            at: *at,
            cause: cause.clone(),
        },
        Step::IncidentClosed {
            monitor,
            incident,
            at,
            ..
        } => MonitorWrite::IncidentClosed {
            incident: *incident,
            monitor: *monitor,
            at: *at,
        },
        Step::Attempt {
            monitor,
            incident,
            no,
            attempt,
        } => MonitorWrite::Attempt {
            incident: *incident,
            monitor: *monitor,
            no: *no,
            attempt: attempt.clone(),
        },
        Step::Intervene { .. } => return None,
    })
}

/// The event a step makes for faces (`None` for [`Step::Intervene`], whose attempt is its
/// own step), the monitor named `name`.
pub(crate) fn note(step: &Step, name: &str, now: DateTime<Utc>) -> Option<MonitorNote> {
    let (change, at) = match step {
        Step::Changed { status, cause, .. } => (
            MonitorChange::State {
                state: status.state,
                flapping: status.flapping,
                cause: cause.clone(),
            },
            now,
        ),
        Step::IncidentOpened {
            incident,
            at,
            cause,
            ..
        } => (
            MonitorChange::IncidentOpened {
                incident: *incident,
                cause: cause.clone(),
            },
            *at,
        ),
        Step::IncidentClosed {
            incident,
            at,
            duration,
            ..
        } => (
            MonitorChange::IncidentClosed {
                incident: *incident,
                open_s: duration.as_secs(),
            },
            *at,
        ),
        Step::Attempt {
            incident, attempt, ..
        } => (
            MonitorChange::Attempt {
                incident: *incident,
                attempt: attempt.clone(),
            },
            attempt.at,
        ),
        Step::Intervene { .. } => return None,
    };
    Some(MonitorNote {
        monitor: name.to_string(),
        change,
        at,
    })
}

/// Shows `step` of the monitor `name` (row `row`) on `board`; `intervening`: an
/// intervention of it is under way.
pub(crate) fn show(
    board: &mut MonitorBoard,
    row: BoardId,
    name: &str,
    step: &Step,
    intervening: bool,
) {
    match step {
        Step::Changed { status, .. } => {
            board.set_state(row, status.state, status.flapping, intervening);
        }
        Step::IncidentOpened {
            incident,
            at,
            cause,
            ..
        } => board.put_incident(Incident {
            id: *incident,
            monitor: name.to_string(),
            opened: *at,
            closed: None,
            cause: cause.clone(),
            attempts: Vec::new(),
        }),
        Step::IncidentClosed { incident, at, .. } => {
            let mut closed = known(board, *incident, name, *at);
            closed.closed = Some(*at);
            board.put_incident(closed);
        }
        Step::Attempt {
            incident: Some(incident),
            attempt,
            ..
        } => {
            let mut inc = known(board, *incident, name, attempt.at);
            add_attempt(&mut inc.attempts, attempt.clone());
            board.put_incident(inc);
        }
        Step::Attempt { incident: None, .. } | Step::Intervene { .. } => {}
    }
}

/// Shows `step` of a monitor that is no longer loaded: an attempt's outcome goes to its
/// incident if the board still lists it (closed when the monitor was removed); nothing else
/// of such a monitor is shown.
pub(crate) fn show_unloaded(board: &mut MonitorBoard, step: &Step) {
    if let Step::Attempt {
        incident: Some(id),
        attempt,
        ..
    } = step
        && let Some(listed) = board.incident(*id)
    {
        let mut inc = listed.clone();
        add_attempt(&mut inc.attempts, attempt.clone());
        board.put_incident(inc);
    }
}

/// The incident `id` as the board has it, or a bare one (opened before the board knew).
fn known(board: &MonitorBoard, id: IncidentId, name: &str, at: DateTime<Utc>) -> Incident {
    board.incident(id).cloned().unwrap_or_else(|| Incident {
        id,
        monitor: name.to_string(),
        opened: at,
        closed: None,
        cause: Cause {
            condition: String::new(),
            seen: String::new(),
        },
        attempts: Vec::new(),
    })
}

/// Adds `attempt` to an incident's list: a final outcome replaces the `Started` record of
/// the same action and trigger; anything else is a new attempt.
pub(crate) fn add_attempt(attempts: &mut Vec<Attempt>, attempt: Attempt) {
    let is_final = matches!(attempt.outcome, Outcome::Succeeded | Outcome::Failed(_));
    if is_final
        && let Some(started) = attempts.iter_mut().rev().find(|a| {
            a.outcome == Outcome::Started
                && a.action == attempt.action
                && a.trigger == attempt.trigger
        })
    {
        // The attempt keeps the time it started.
        started.outcome = attempt.outcome;
        return;
    }
    attempts.push(attempt);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::monitor::{MonitorId, MonitorState, MonitorStatus, Trigger};

    fn cause() -> Cause {
        Cause {
            condition: "[CONNECTED] == true".into(),
            seen: "[CONNECTED] = false".into(),
        }
    }

    fn attempt(outcome: Outcome, at: DateTime<Utc>) -> Attempt {
        Attempt {
            at,
            trigger: Trigger::Unhealthy,
            action: "restart web/api".into(),
            outcome,
        }
    }

    #[test]
    fn each_step_but_intervene_is_one_store_write() {
        let now = Utc::now();
        let m = MonitorId(3);
        let status = MonitorStatus {
            state: MonitorState::Unhealthy,
            health: MonitorState::Unhealthy,
            flapping: false,
            paused: false,
            since: now,
        };
        let changed = Step::Changed {
            monitor: m,
            status,
            cause: Some(cause()),
        };
        assert_eq!(
            store_write(&changed),
            Some(MonitorWrite::State {
                monitor: m,
                status,
                cause: Some(cause())
            })
        );
        let closed = Step::IncidentClosed {
            monitor: m,
            incident: IncidentId(5),
            at: now,
            duration: Duration::from_secs(3),
        };
        assert_eq!(
            store_write(&closed),
            Some(MonitorWrite::IncidentClosed {
                incident: IncidentId(5),
                monitor: m,
                at: now
            })
        );
        let intervene = Step::Intervene {
            monitor: m,
            incident: None,
            no: 1,
            trigger: Trigger::Unhealthy,
            action: crate::protocol::monitor::Action::Restart { path: "a".into() },
        };
        assert_eq!(store_write(&intervene), None);
    }

    #[test]
    fn the_board_follows_an_incident_from_open_to_closed_with_its_attempts() {
        let now = Utc::now();
        let mut board = MonitorBoard::default();
        let row = board.upsert("db", "tcp", &[]);
        let m = MonitorId(0);
        let steps = [
            Step::Changed {
                monitor: m,
                status: MonitorStatus {
                    state: MonitorState::Unhealthy,
                    health: MonitorState::Unhealthy,
                    flapping: false,
                    paused: false,
                    since: now,
                },
                cause: Some(cause()),
            },
            Step::IncidentOpened {
                monitor: m,
                incident: IncidentId(1),
                at: now,
                cause: cause(),
            },
            Step::Attempt {
                monitor: m,
                incident: Some(IncidentId(1)),
                no: 1,
                attempt: attempt(Outcome::Started, now),
            },
            Step::Attempt {
                monitor: m,
                incident: Some(IncidentId(1)),
                no: 1,
                attempt: attempt(
                    Outcome::Failed("no".into()),
                    now + chrono::Duration::seconds(1),
                ),
            },
        ];
        for s in &steps {
            show(&mut board, row, "db", s, false);
        }
        let summary = board.get("db").expect("listed");
        assert_eq!(summary.state, MonitorState::Unhealthy);
        assert_eq!(summary.incident, Some(IncidentId(1)));
        let open = board.incidents(true, 10);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].cause, cause());
        assert_eq!(open[0].attempts.len(), 1, "{:?}", open[0].attempts);
        assert_eq!(open[0].attempts[0].outcome, Outcome::Failed("no".into()));
        assert_eq!(open[0].attempts[0].at, now, "keeps the time it started");
        show(
            &mut board,
            row,
            "db",
            &Step::IncidentClosed {
                monitor: m,
                incident: IncidentId(1),
                at: now,
                duration: Duration::ZERO,
            },
            false,
        );
        assert!(board.incidents(true, 10).is_empty());
        let all = board.incidents(false, 10);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].closed, Some(now));
        assert_eq!(
            all[0].cause,
            cause(),
            "the cause stays on the closed incident"
        );
        assert_eq!(board.get("db").and_then(|s| s.incident), None);
    }

    #[test]
    fn a_skipped_attempt_is_its_own_entry() {
        let now = Utc::now();
        let mut list = vec![attempt(Outcome::Started, now)];
        add_attempt(&mut list, attempt(Outcome::Skipped("flapping".into()), now));
        add_attempt(&mut list, attempt(Outcome::Succeeded, now));
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].outcome, Outcome::Succeeded);
        add_attempt(&mut list, attempt(Outcome::Succeeded, now));
        assert_eq!(
            list.len(),
            3,
            "a final outcome with nothing started is kept"
        );
    }

    #[test]
    fn an_outcome_that_comes_after_its_monitor_was_removed_reaches_its_closed_incident() {
        let now = Utc::now();
        let mut board = MonitorBoard::default();
        let row = board.upsert("db", "tcp", &[]);
        let m = MonitorId(1);
        let id = IncidentId(7);
        let opened = Step::IncidentOpened {
            monitor: m,
            incident: id,
            at: now,
            cause: cause(),
        };
        let started = Step::Attempt {
            monitor: m,
            incident: Some(id),
            no: 1,
            attempt: attempt(Outcome::Started, now),
        };
        for s in [&opened, &started] {
            show(&mut board, row, "db", s, true);
        }
        // The monitor is taken out of its file: its incident closes and its row goes.
        let mut closed = board.incident(id).expect("open").clone();
        closed.closed = Some(now);
        board.put_incident(closed);
        board.retain(|_| false);
        show_unloaded(
            &mut board,
            &Step::Attempt {
                monitor: m,
                incident: Some(id),
                no: 1,
                attempt: attempt(Outcome::Succeeded, now),
            },
        );
        let listed = board.incidents(false, 10);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].attempts.len(), 1, "{:?}", listed[0].attempts);
        assert_eq!(listed[0].attempts[0].outcome, Outcome::Succeeded);
        // An incident the board no longer lists is not made up.
        show_unloaded(
            &mut board,
            &Step::Attempt {
                monitor: m,
                incident: Some(IncidentId(99)),
                no: 1,
                attempt: attempt(Outcome::Succeeded, now),
            },
        );
        assert_eq!(board.incidents(false, 10).len(), 1);
    }
}
