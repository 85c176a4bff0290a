//! Monitors: a pure machine like `supervisor/` (time in, steps out, no IO). The actor that
//! runs checks owns one of each of these and carries out what they ask.
//!
//! - [`condition`]: Gatus conditions, parsed once at load, judged against a `CheckResult`.
//! - [`judge`]: one result -> [`judge::Judgement`] (ok | degraded | failed, with the first
//!   failing condition and the value it saw); one round across locations -> one judgement
//!   by quorum (failed when at least N locations failed; a lost agent is unknown).
//! - [`health`]: every monitor's health in a 24-byte slot indexed by `MonitorId`:
//!   thresholds, degraded, blocked, maintenance, paused, flapping (Icinga hysteresis),
//!   incidents and interventions (cooldown, max attempts per incident), as
//!   [`health::Step`]s; `restore` continues from the store without a duplicate incident.
//! - [`maintenance`]: windows (cron + duration + timezone): inside at T? next change?
//! - [`schedule`]: one hashed timer wheel for every monitor's next check (12 bytes a
//!   monitor), first checks spread over the interval by a hash of the name.
//!
//! ```text
//! let mut health = Health::new();
//! let p = health.add_policy(Policy { unhealthy_after: 3, healthy_after: 2,
//!                                    on_unhealthy: vec![restart], ..Policy::default() });
//! health.add(MonitorId(0), p, &[MonitorId(7)] /* depends_on */, now)?;
//! let r = store.reader().lock()?.monitor_recovery()?;                  // after a restart
//! for step in health.restore(&r.states, &r.open, r.next_incident, now) { carry_out(step) }
//!
//! let mut wheel = Wheel::default();
//! wheel.set(0, since_origin + first_delay("api", every, wall_now));
//! wheel.pop_due(since_origin, 4096, &mut due);                        // ids to check now
//! // ... a result comes back (or a round, from every location):
//! let j = judge(&conditions, &degraded_when, &result);                 // or quorum(&round, n)
//! health.record(MonitorId(0), &j, wall_now, &mut steps);
//! wheel.set(0, since_origin + every);
//! health.set_maintenance(id, maintenance::inside(&windows, t), t, &mut steps); // at next_change
//! health.pause(id, true, now, &mut steps);                             // operator
//!
//! for step in steps.drain(..) { match step {
//!     Step::Changed { .. }        => /* store: MonitorWrite::State; publish an event */,
//!     Step::IncidentOpened { .. } => /* store: MonitorWrite::IncidentOpened */,
//!     Step::IncidentClosed { .. } => /* store: MonitorWrite::IncidentClosed */,
//!     Step::Attempt { .. }        => /* store: MonitorWrite::Attempt */,
//!     Step::Intervene { .. }      => /* engine / supervision / exec / webhook, then
//!                                       health.attempt_done(.., outcome, now) -> Attempt */,
//! }}
//! // Results go to the store in batches: MonitorWrite::Results(vec![(id, StoredResult)]).
//! ```

pub mod condition;
pub mod health;
pub mod judge;
pub mod maintenance;
pub mod schedule;
