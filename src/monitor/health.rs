//! [`Health`]: the health of every monitor as a pure machine. Judged results, operator
//! commands and maintenance changes come in with the time they happened; [`Step`]s come out
//! in the order they must be carried out (persist a state change, open or close an incident,
//! attempt an intervention and record it).
//!
//! At rest a monitor is one [`Slot`] of 24 bytes in an array indexed by its [`MonitorId`]:
//! no name, no box, no task. Only monitors in trouble (an open incident or interventions
//! under way) have an [`Episode`] in a side map, and only monitors with dependencies an
//! entry in another.
//!
//! Rules, in the order [`Health::record`] applies them:
//! - a paused monitor ignores results (a check in flight when it was paused);
//! - every result enters the flapping history (Icinga's hysteresis: the share of changes of
//!   verdict over the last 20 results; flapping from 30 %, steady again below 25 %);
//! - inside maintenance, or while a monitor it depends on is unhealthy (blocked), the health
//!   does not change and nothing is triggered; its streaks start again afterwards;
//! - `unhealthy_after` failed results in a row make it unhealthy (and open an incident);
//!   from unknown or unhealthy, `healthy_after` results that did not fail make it healthy
//!   (or degraded, by the last verdict); a healthy monitor becomes degraded after
//!   `unhealthy_after` degraded results, a degraded one healthy after `healthy_after` ok ones;
//!   healthy again closes the incident;
//! - interventions run on entering unhealthy or degraded and again on later results while it
//!   stays so, each at most `max_attempts` times per incident (or degraded stretch) and no
//!   sooner than its `cooldown` after its last attempt; `on_recovered` ones run on becoming
//!   healthy after unhealthy or degraded. Flapping holds them all (recorded as skipped).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::judge::Judgement;
use crate::protocol::monitor::{
    Action, Attempt, Cause, Incident, IncidentId, InterventionSpec, MonitorId, MonitorState,
    MonitorStatus, Outcome, Trigger, Verdict,
};

/// Results the flapping share is taken over.
pub const FLAP_WINDOW: u32 = 20;
/// Changes within the window from which a steady monitor is flapping (30 % of 20).
pub const FLAP_START: u32 = 6;
/// Changes within the window below which a flapping monitor is steady again (25 % of 20).
pub const FLAP_STOP: u32 = 5;
/// Default `unhealthy_after`.
pub const DEFAULT_UNHEALTHY_AFTER: u16 = 3;
/// Default `healthy_after`.
pub const DEFAULT_HEALTHY_AFTER: u16 = 2;

const FLAP_MASK: u32 = (1 << FLAP_WINDOW) - 1;

/// What a monitor acts on and when: shared by every monitor made from one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Failed results in a row before unhealthy (at least 1).
    pub unhealthy_after: u16,
    /// Passing results in a row before healthy again (at least 1).
    pub healthy_after: u16,
    /// Interventions on entering unhealthy.
    pub on_unhealthy: Vec<InterventionSpec>,
    /// Interventions on entering degraded.
    pub on_degraded: Vec<InterventionSpec>,
    /// Interventions on healthy again.
    pub on_recovered: Vec<InterventionSpec>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
            healthy_after: DEFAULT_HEALTHY_AFTER,
            on_unhealthy: Vec::new(),
            on_degraded: Vec::new(),
            on_recovered: Vec::new(),
        }
    }
}

impl Policy {
    /// The interventions of `trigger`.
    pub fn interventions(&self, trigger: Trigger) -> &[InterventionSpec] {
        match trigger {
            Trigger::Unhealthy => &self.on_unhealthy,
            Trigger::Degraded => &self.on_degraded,
            Trigger::Recovered => &self.on_recovered,
        }
    }
}

/// A policy's number in one [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyId(pub u32);

/// One thing for the caller to do. Steps come in the order they must be carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The monitor's state or flapping flag changed: persist and publish (only changes
    /// become events).
    Changed {
        /// The monitor.
        monitor: MonitorId,
        /// Its new status.
        status: MonitorStatus,
        /// Why, while not healthy (the result that made the change).
        cause: Option<Cause>,
    },
    /// The monitor became unhealthy: an incident opens.
    IncidentOpened {
        /// The monitor.
        monitor: MonitorId,
        /// The new incident.
        incident: IncidentId,
        /// When.
        at: DateTime<Utc>,
        /// The result that made it unhealthy.
        cause: Cause,
    },
    /// The monitor is healthy again: its incident closes.
    IncidentClosed {
        /// The monitor.
        monitor: MonitorId,
        /// The incident.
        incident: IncidentId,
        /// When.
        at: DateTime<Utc>,
        /// How long it was open.
        duration: Duration,
    },
    /// Record this attempt (`Started` just before its [`Step::Intervene`], `Skipped` when
    /// held, the final outcome from [`Health::attempt_done`]).
    Attempt {
        /// The monitor.
        monitor: MonitorId,
        /// The incident it belongs to (`None`: a degraded stretch without one).
        incident: Option<IncidentId>,
        /// Its number within the monitor's episode (from 1), to match the final outcome.
        no: u32,
        /// The attempt.
        attempt: Attempt,
    },
    /// Carry this intervention out, then report its outcome with [`Health::attempt_done`].
    Intervene {
        /// The monitor.
        monitor: MonitorId,
        /// The incident it belongs to.
        incident: Option<IncidentId>,
        /// The attempt's number (as in the [`Step::Attempt`] just before).
        no: u32,
        /// The state change that asked for it.
        trigger: Trigger,
        /// What to do.
        action: Action,
    },
}

/// Bits of [`Slot::flags`].
const LIVE: u8 = 1;
const PAUSED: u8 = 2;
const MAINTENANCE: u8 = 4;
const BLOCKED: u8 = 8;
const FLAPPING: u8 = 16;
const HAS_LAST: u8 = 32;

/// One monitor at rest (24 bytes).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Index into the policies.
    policy: u32,
    /// Since when the shown state holds, in seconds since [`EPOCH_SECS`].
    since: u32,
    /// Bit `i` set: the `i`-th newest result's verdict differed from the one before.
    history: u32,
    /// Failed results in a row.
    fails: u16,
    /// Results in a row that did not fail.
    passes: u16,
    /// Degraded results in a row.
    degs: u16,
    /// Ok results in a row.
    oks: u16,
    /// The health beneath ([`health_code`]).
    health: u8,
    /// The last verdict's code (valid with `HAS_LAST`).
    last: u8,
    /// `LIVE`, `PAUSED`, ...
    flags: u8,
    _pad: u8,
}

/// Seconds from the Unix epoch to 2020-01-01, the origin of [`Slot::since`] (u32 seconds
/// reach 2156).
const EPOCH_SECS: i64 = 1_577_836_800;

fn to_secs(t: DateTime<Utc>) -> u32 {
    (t.timestamp() - EPOCH_SECS).clamp(0, u32::MAX as i64) as u32
}

fn from_secs(s: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(EPOCH_SECS + s as i64, 0)
        .single()
        .unwrap_or_default()
}

fn health_code(state: MonitorState) -> u8 {
    match state {
        MonitorState::Healthy => 1,
        MonitorState::Degraded => 2,
        MonitorState::Unhealthy => 3,
        _ => 0,
    }
}

fn health_of(code: u8) -> MonitorState {
    match code {
        1 => MonitorState::Healthy,
        2 => MonitorState::Degraded,
        3 => MonitorState::Unhealthy,
        _ => MonitorState::Unknown,
    }
}

impl Slot {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn shown(&self) -> MonitorState {
        if self.has(PAUSED) {
            MonitorState::Paused
        } else if self.has(MAINTENANCE) {
            MonitorState::Maintenance
        } else if self.has(BLOCKED) {
            MonitorState::Blocked
        } else {
            health_of(self.health)
        }
    }

    fn reset_streaks(&mut self) {
        self.fails = 0;
        self.passes = 0;
        self.degs = 0;
        self.oks = 0;
    }

    fn status(&self) -> MonitorStatus {
        MonitorStatus {
            state: self.shown(),
            health: health_of(self.health),
            flapping: self.has(FLAPPING),
            paused: self.has(PAUSED),
            since: from_secs(self.since),
        }
    }
}

/// Attempts of one intervention within an episode.
#[derive(Debug, Clone)]
struct Tries {
    trigger: Trigger,
    index: u16,
    count: u32,
}

/// A monitor in trouble: its open incident and the interventions attempted meanwhile.
#[derive(Debug, Clone, Default)]
struct Episode {
    incident: Option<(IncidentId, DateTime<Utc>)>,
    tries: Vec<Tries>,
    /// Attempts numbered so far.
    attempts: u32,
}

impl Episode {
    fn tries(&mut self, trigger: Trigger, index: u16) -> &mut Tries {
        let at = self
            .tries
            .iter()
            .position(|t| t.trigger == trigger && t.index == index);
        let at = at.unwrap_or_else(|| {
            self.tries.push(Tries {
                trigger,
                index,
                count: 0,
            });
            self.tries.len() - 1
        });
        &mut self.tries[at]
    }
}

/// The monitors another one depends on (one inline: the common case of a gateway).
#[derive(Debug, Clone)]
enum Deps {
    One(u32),
    Many(Box<[u32]>),
}

impl Deps {
    fn ids(&self) -> &[u32] {
        match self {
            Deps::One(id) => std::slice::from_ref(id),
            Deps::Many(ids) => ids,
        }
    }
}

/// The health of every monitor.
#[derive(Debug, Default)]
pub struct Health {
    slots: Vec<Slot>,
    policies: Vec<Policy>,
    deps: HashMap<u32, Deps>,
    episodes: HashMap<u32, Episode>,
    /// Last attempt of each (monitor, trigger, intervention), for cooldowns that outlive an
    /// episode (a monitor that keeps recovering must not post a webhook every minute).
    last_attempt: HashMap<(u32, Trigger, u16), DateTime<Utc>>,
    next_incident: u64,
}

impl Health {
    /// No monitors yet; incidents are numbered from 1.
    pub fn new() -> Self {
        Health {
            next_incident: 1,
            ..Health::default()
        }
    }

    /// Registers a policy for monitors to share.
    pub fn add_policy(&mut self, policy: Policy) -> PolicyId {
        self.policies.push(Policy {
            unhealthy_after: policy.unhealthy_after.max(1),
            healthy_after: policy.healthy_after.max(1),
            ..policy
        });
        PolicyId(self.policies.len() as u32 - 1)
    }

    /// The policy `id`.
    pub fn policy(&self, id: PolicyId) -> Option<&Policy> {
        self.policies.get(id.0 as usize)
    }

    /// Adds `monitor` (unknown since `now`), or gives an existing one a new policy and
    /// dependencies, keeping its state. A policy this machine does not have is refused.
    pub fn add(
        &mut self,
        monitor: MonitorId,
        policy: PolicyId,
        depends_on: &[MonitorId],
        now: DateTime<Utc>,
    ) -> Result<(), UnknownPolicy> {
        if policy.0 as usize >= self.policies.len() {
            return Err(UnknownPolicy(policy.0));
        }
        let i = monitor.0 as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Slot::default());
        }
        let slot = &mut self.slots[i];
        if !slot.has(LIVE) {
            *slot = Slot {
                since: to_secs(now),
                flags: LIVE,
                ..Slot::default()
            };
        }
        slot.policy = policy.0;
        let deps: Vec<u32> = depends_on
            .iter()
            .map(|d| d.0)
            .filter(|&d| d != monitor.0)
            .collect();
        match deps.as_slice() {
            [] => self.deps.remove(&monitor.0),
            [one] => self.deps.insert(monitor.0, Deps::One(*one)),
            _ => self.deps.insert(monitor.0, Deps::Many(deps.into())),
        };
        Ok(())
    }

    /// Forgets `monitor` (removed from the specs) at `now`: its open incident, if any, is
    /// closed by the step returned (nothing will ever close it otherwise, and a restart would
    /// close it too); a monitor added back under the same id starts unknown.
    pub fn remove(&mut self, monitor: MonitorId, now: DateTime<Utc>) -> Option<Step> {
        if let Some(slot) = self.slots.get_mut(monitor.0 as usize) {
            *slot = Slot::default();
        }
        self.deps.remove(&monitor.0);
        self.last_attempt.retain(|(m, _, _), _| *m != monitor.0);
        let (incident, opened) = self.episodes.remove(&monitor.0)?.incident?;
        Some(Step::IncidentClosed {
            monitor,
            incident,
            at: now,
            duration: (now - opened).to_std().unwrap_or_default(),
        })
    }

    /// Monitors known (the arrays' length; removed ones included).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The status of `monitor`.
    pub fn status(&self, monitor: MonitorId) -> Option<MonitorStatus> {
        self.live(monitor).map(Slot::status)
    }

    /// The incident open on `monitor`.
    pub fn incident(&self, monitor: MonitorId) -> Option<IncidentId> {
        self.episodes
            .get(&monitor.0)
            .and_then(|e| e.incident)
            .map(|(id, _)| id)
    }

    /// The number the next incident will get.
    pub fn next_incident(&self) -> IncidentId {
        IncidentId(self.next_incident)
    }

    /// Bytes a monitor takes at rest (its slot).
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

    fn live(&self, monitor: MonitorId) -> Option<&Slot> {
        self.slots
            .get(monitor.0 as usize)
            .filter(|slot| slot.has(LIVE))
    }

    /// Pauses or resumes `monitor` (an operator's command; persisted through the step).
    /// Resuming starts its streaks afresh.
    pub fn pause(
        &mut self,
        monitor: MonitorId,
        paused: bool,
        now: DateTime<Utc>,
        out: &mut Vec<Step>,
    ) {
        self.set_flag(monitor, PAUSED, paused, now, out);
    }

    /// `monitor` is inside a maintenance window (`true`) or out of it.
    pub fn set_maintenance(
        &mut self,
        monitor: MonitorId,
        inside: bool,
        now: DateTime<Utc>,
        out: &mut Vec<Step>,
    ) {
        self.set_flag(monitor, MAINTENANCE, inside, now, out);
    }

    fn set_flag(
        &mut self,
        monitor: MonitorId,
        flag: u8,
        on: bool,
        now: DateTime<Utc>,
        out: &mut Vec<Step>,
    ) {
        let Some(slot) = self.slots.get_mut(monitor.0 as usize) else {
            return;
        };
        if !slot.has(LIVE) || slot.has(flag) == on {
            return;
        }
        let before = slot.shown();
        slot.set(flag, on);
        slot.reset_streaks();
        let changed = slot.shown() != before;
        if changed {
            slot.since = to_secs(now);
        }
        // A pause is recorded even when another overlay hides it: it must survive restarts.
        if changed || flag == PAUSED {
            out.push(Step::Changed {
                monitor,
                status: slot.status(),
                cause: None,
            });
        }
    }

    /// One judged result of `monitor` (or one decided round of a multi-location one) at
    /// `now`; the steps it causes are appended to `out`. Results of unknown or paused
    /// monitors are ignored.
    pub fn record(
        &mut self,
        monitor: MonitorId,
        judgement: &Judgement,
        now: DateTime<Utc>,
        out: &mut Vec<Step>,
    ) {
        let m = monitor.0;
        let blocked = self.deps.get(&m).is_some_and(|deps| {
            deps.ids().iter().any(|&d| {
                self.slots
                    .get(d as usize)
                    .is_some_and(|s| s.has(LIVE) && health_of(s.health) == MonitorState::Unhealthy)
            })
        });
        let Some(slot) = self.slots.get_mut(m as usize) else {
            return;
        };
        if !slot.has(LIVE) || slot.has(PAUSED) {
            return;
        }
        let Some(policy) = self.policies.get(slot.policy as usize) else {
            return;
        };
        let verdict = judgement.verdict;
        let (shown_before, flapping_before, health_before) =
            (slot.shown(), slot.has(FLAPPING), slot.health);

        // Flapping history.
        let change = slot.has(HAS_LAST) && slot.last != verdict.code();
        slot.history = ((slot.history << 1) | change as u32) & FLAP_MASK;
        slot.last = verdict.code();
        slot.set(HAS_LAST, true);
        let changes = slot.history.count_ones();
        if !flapping_before && changes >= FLAP_START {
            slot.set(FLAPPING, true);
        } else if flapping_before && changes < FLAP_STOP {
            slot.set(FLAPPING, false);
        }

        slot.set(BLOCKED, blocked);
        let held = slot.has(MAINTENANCE) || blocked;
        if held {
            slot.reset_streaks();
        } else {
            let bump = |n: &mut u16, on: bool| *n = if on { n.saturating_add(1) } else { 0 };
            bump(&mut slot.fails, verdict == Verdict::Failed);
            bump(&mut slot.passes, verdict != Verdict::Failed);
            bump(&mut slot.degs, verdict == Verdict::Degraded);
            bump(&mut slot.oks, verdict == Verdict::Ok);
            let health = health_of(slot.health);
            let next = if slot.fails >= policy.unhealthy_after {
                MonitorState::Unhealthy
            } else {
                match health {
                    MonitorState::Unknown | MonitorState::Unhealthy
                        if slot.passes >= policy.healthy_after =>
                    {
                        if verdict == Verdict::Degraded {
                            MonitorState::Degraded
                        } else {
                            MonitorState::Healthy
                        }
                    }
                    MonitorState::Healthy if slot.degs >= policy.unhealthy_after => {
                        MonitorState::Degraded
                    }
                    MonitorState::Degraded if slot.oks >= policy.healthy_after => {
                        MonitorState::Healthy
                    }
                    other => other,
                }
            };
            slot.health = health_code(next);
        }

        let shown = slot.shown();
        if shown != shown_before {
            slot.since = to_secs(now);
        }
        let flapping = slot.has(FLAPPING);
        let cause = (verdict != Verdict::Ok)
            .then(|| judgement.cause.clone())
            .flatten();
        if shown != shown_before || flapping != flapping_before {
            out.push(Step::Changed {
                monitor,
                status: slot.status(),
                cause: cause.clone(),
            });
        }
        if held {
            return;
        }
        let before = health_of(health_before);
        let after = health_of(slot.health);

        // Incidents.
        if after == MonitorState::Unhealthy && before != MonitorState::Unhealthy {
            let episode = self.episodes.entry(m).or_default();
            if episode.incident.is_none() {
                let id = IncidentId(self.next_incident);
                self.next_incident += 1;
                episode.incident = Some((id, now));
                out.push(Step::IncidentOpened {
                    monitor,
                    incident: id,
                    at: now,
                    cause: cause.clone().unwrap_or_else(|| Cause {
                        condition: super::judge::PROBE_FAILED.into(),
                        seen: verdict.as_str().into(),
                    }),
                });
            }
        }
        let recovered = after == MonitorState::Healthy && before != MonitorState::Healthy;
        let mut closed = None;
        let mut numbered = 0;
        if recovered && let Some(episode) = self.episodes.remove(&m) {
            numbered = episode.attempts;
            if let Some((id, opened)) = episode.incident {
                out.push(Step::IncidentClosed {
                    monitor,
                    incident: id,
                    at: now,
                    duration: (now - opened).to_std().unwrap_or_default(),
                });
                closed = Some(id);
            }
        }

        // Interventions.
        let entering = after != before;
        match after {
            MonitorState::Unhealthy => {
                self.intervene(monitor, Trigger::Unhealthy, entering, flapping, now, out)
            }
            MonitorState::Degraded => {
                self.intervene(monitor, Trigger::Degraded, entering, flapping, now, out)
            }
            MonitorState::Healthy
                if recovered
                    && matches!(before, MonitorState::Unhealthy | MonitorState::Degraded) =>
            {
                // The recovered interventions belong to the incident just closed.
                // Numbered after the attempts already on it.
                let episode = self.episodes.entry(m).or_default();
                episode.incident = closed.map(|id| (id, now));
                episode.attempts = numbered;
                self.intervene(monitor, Trigger::Recovered, true, flapping, now, out);
                self.episodes.remove(&m);
            }
            _ => {}
        }
    }

    /// Attempts the interventions of `trigger` that are due: on `entering` the state every
    /// one (a held one is recorded as skipped), later the ones whose cooldown is over and
    /// that have attempts left (quietly).
    fn intervene(
        &mut self,
        monitor: MonitorId,
        trigger: Trigger,
        entering: bool,
        flapping: bool,
        now: DateTime<Utc>,
        out: &mut Vec<Step>,
    ) {
        let m = monitor.0;
        let Some(slot) = self.slots.get(m as usize) else {
            return;
        };
        let Some(policy) = self.policies.get(slot.policy as usize) else {
            return;
        };
        let specs = policy.interventions(trigger);
        if specs.is_empty() {
            return;
        }
        let episode = self.episodes.entry(m).or_default();
        let incident = episode.incident.map(|(id, _)| id);
        for (i, spec) in specs.iter().enumerate() {
            let index = i as u16;
            let count = episode.tries(trigger, index).count;
            let last = self.last_attempt.get(&(m, trigger, index)).copied();
            let cooling =
                last.is_some_and(|t| (now - t).to_std().unwrap_or_default() < spec.cooldown);
            let held = if flapping {
                Some("flapping: interventions are held".to_string())
            } else if count >= spec.max_attempts {
                Some(format!(
                    "{count} attempt(s) made, the most for one incident"
                ))
            } else if cooling {
                Some(format!(
                    "cooldown of {} since the last attempt",
                    crate::humantime::format_duration(spec.cooldown)
                ))
            } else {
                None
            };
            let attempt = |outcome| Attempt {
                at: now,
                trigger,
                action: spec.action.to_string(),
                outcome,
            };
            match held {
                Some(why) if entering => {
                    episode.attempts += 1;
                    out.push(Step::Attempt {
                        monitor,
                        incident,
                        no: episode.attempts,
                        attempt: attempt(Outcome::Skipped(why)),
                    });
                }
                Some(_) => {}
                None => {
                    episode.tries(trigger, index).count += 1;
                    episode.attempts += 1;
                    self.last_attempt.insert((m, trigger, index), now);
                    out.push(Step::Attempt {
                        monitor,
                        incident,
                        no: episode.attempts,
                        attempt: attempt(Outcome::Started),
                    });
                    out.push(Step::Intervene {
                        monitor,
                        incident,
                        no: episode.attempts,
                        trigger,
                        action: spec.action.clone(),
                    });
                }
            }
        }
    }

    /// The outcome of an intervention a [`Step::Intervene`] asked for, as the step that
    /// records it.
    pub fn attempt_done(
        monitor: MonitorId,
        incident: Option<IncidentId>,
        no: u32,
        trigger: Trigger,
        action: &Action,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Step {
        Step::Attempt {
            monitor,
            incident,
            no,
            attempt: Attempt {
                at: now,
                trigger,
                action: action.to_string(),
                outcome,
            },
        }
    }

    /// Continues from what a previous principal stored: each monitor's status (health,
    /// flapping, pause) and the incidents still open, with their attempts (which count
    /// against `max_attempts` and cooldowns). Monitors must have been [`add`](Self::add)ed
    /// first; states of unknown ones are ignored. `open` lists each attempt once (its latest
    /// record), as [`crate::store`]'s recovery reads them. An open incident is kept open (never
    /// opened twice); one whose monitor was stored healthy (the process died between the
    /// two writes) or is gone is closed by the steps returned.
    pub fn restore(
        &mut self,
        states: &[(MonitorId, MonitorStatus)],
        open: &[(MonitorId, Incident)],
        next_incident: IncidentId,
        now: DateTime<Utc>,
    ) -> Vec<Step> {
        let mut out = Vec::new();
        self.next_incident = self.next_incident.max(next_incident.0);
        for (monitor, status) in states {
            let Some(slot) = self.slots.get_mut(monitor.0 as usize) else {
                continue;
            };
            if !slot.has(LIVE) {
                continue;
            }
            slot.health = health_code(status.health);
            slot.set(PAUSED, status.paused);
            slot.set(FLAPPING, status.flapping);
            // A flapping monitor stays so until its new results show it steady.
            slot.history = if status.flapping {
                (1 << FLAP_START) - 1
            } else {
                0
            };
            slot.set(HAS_LAST, false);
            slot.reset_streaks();
            slot.since = to_secs(status.since);
        }
        for (monitor, incident) in open {
            self.next_incident = self.next_incident.max(incident.id.0 + 1);
            let m = monitor.0;
            let health = self.live(*monitor).map(|s| health_of(s.health));
            if matches!(health, None | Some(MonitorState::Healthy)) {
                out.push(Step::IncidentClosed {
                    monitor: *monitor,
                    incident: incident.id,
                    at: now,
                    duration: (now - incident.opened).to_std().unwrap_or_default(),
                });
                continue;
            }
            if let Some(slot) = self.slots.get_mut(m as usize)
                && slot.health != health_code(MonitorState::Unhealthy)
                && slot.health != health_code(MonitorState::Degraded)
            {
                // Stored before its state was (unknown): it is unhealthy.
                slot.health = health_code(MonitorState::Unhealthy);
            }
            let policy = self
                .slots
                .get(m as usize)
                .and_then(|s| self.policies.get(s.policy as usize));
            let episode = self.episodes.entry(m).or_default();
            episode.incident = Some((incident.id, incident.opened));
            episode.attempts = episode.attempts.max(incident.attempts.len() as u32);
            for a in &incident.attempts {
                if matches!(a.outcome, Outcome::Skipped(_)) {
                    continue;
                }
                let Some(policy) = policy else { continue };
                let Some(index) = policy
                    .interventions(a.trigger)
                    .iter()
                    .position(|s| s.action.to_string() == a.action)
                else {
                    continue;
                };
                let index = index as u16;
                episode.tries(a.trigger, index).count += 1;
                let last = self
                    .last_attempt
                    .entry((m, a.trigger, index))
                    .or_insert(a.at);
                *last = (*last).max(a.at);
            }
        }
        out
    }
}

/// A policy number [`Health::add`] was given that no [`Health::add_policy`] returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no policy {0} in this health machine")]
pub struct UnknownPolicy(pub u32);

#[cfg(test)]
mod tests;
