//! Rounds of monitors with `from:` locations: the monitors due in one tick are grouped by
//! location, each location's share goes as one batch to an agent with its labels (through
//! [`Locations`]), and each monitor's round comes back whole: one result, or why there is
//! none, per location, in the order of its `from:`. The actor judges a round by quorum.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::batches::labels_text;
use super::locations::Locations;
use crate::monitor::judge::Judgement;
use crate::protocol::check::{CheckResult, Probe};
use crate::protocol::monitor::{LocationSeen, MonitorId, Verdict};

/// A location's agent labels.
pub(crate) type Labels = BTreeMap<String, String>;

/// One monitor of a round: its locations in `from:` order, its probe and timeout.
pub(crate) struct Planned {
    pub monitor: MonitorId,
    pub from: Vec<Labels>,
    pub probe: Probe,
    pub timeout: Duration,
}

/// What one location gave for one monitor.
pub(crate) struct AtLocation {
    pub labels: Labels,
    /// The result, or why there is none (its agent was lost, none has its labels): unknown.
    pub result: Result<CheckResult, String>,
}

/// A monitor's round, every location answered or given up.
pub(crate) struct Round {
    pub monitor: MonitorId,
    pub at: Vec<AtLocation>,
}

/// Runs one round: each distinct location once, with every check planned for it as one
/// batch (several when larger than a batch may be), all locations at once.
pub(crate) async fn run(locations: &Locations, planned: Vec<Planned>) -> Vec<Round> {
    // Which planned monitors each location runs, by their index in `planned`.
    let mut by_location: BTreeMap<&Labels, Vec<u32>> = BTreeMap::new();
    for (k, p) in planned.iter().enumerate() {
        for labels in &p.from {
            by_location.entry(labels).or_default().push(k as u32);
        }
    }
    let asks = by_location.into_iter().map(|(labels, keys)| {
        let batch: Vec<(u32, Probe, Duration)> = keys
            .iter()
            .map(|&k| {
                let p = &planned[k as usize];
                (k, p.probe.clone(), p.timeout)
            })
            .collect();
        async move { (labels.clone(), keys, locations.run(labels, batch).await) }
    });
    let answers = futures::future::join_all(asks).await;
    // Per planned monitor, per location label set: what came back.
    let mut got: Vec<BTreeMap<Labels, Result<CheckResult, String>>> =
        planned.iter().map(|_| BTreeMap::new()).collect();
    for (labels, keys, answer) in answers {
        match answer {
            Ok(results) => {
                for (k, r) in results {
                    if let Some(slot) = got.get_mut(k as usize) {
                        slot.insert(labels.clone(), Ok(r));
                    }
                }
                // A key the agent's answer left out is unknown for this round.
                for k in keys {
                    got[k as usize]
                        .entry(labels.clone())
                        .or_insert_with(|| Err("the agent's answer left this check out".into()));
                }
            }
            Err(why) => {
                let why = why.to_string();
                for k in keys {
                    got[k as usize].insert(labels.clone(), Err(why.clone()));
                }
            }
        }
    }
    planned
        .into_iter()
        .zip(got)
        .map(|(p, mut got)| Round {
            monitor: p.monitor,
            at: p
                .from
                .into_iter()
                .map(|labels| {
                    let result = got
                        .remove(&labels)
                        .unwrap_or_else(|| Err("no answer".into()));
                    AtLocation { labels, result }
                })
                .collect(),
        })
        .collect()
}

/// What the detail shows for one location of a round, judged `j` (`None`: unknown).
pub(crate) fn seen(at: &AtLocation, j: Option<&Judgement>, now: DateTime<Utc>) -> LocationSeen {
    let ms = |r: &CheckResult| r.response_time.as_millis();
    let (ok, seen) = match (&at.result, j) {
        (Err(why), _) => (None, format!("unknown: {why}")),
        (Ok(_), None) => (None, "unknown".into()),
        (Ok(r), Some(j)) => match (j.verdict, &j.cause) {
            (Verdict::Ok, _) => (Some(true), format!("ok in {} ms", ms(r))),
            (Verdict::Degraded, Some(c)) => (Some(true), format!("degraded: {c}")),
            (Verdict::Degraded, None) => (Some(true), "degraded".into()),
            (Verdict::Failed, Some(c)) => (Some(false), c.to_string()),
            (Verdict::Failed, None) => (Some(false), format!("failed in {} ms", ms(r))),
        },
    };
    LocationSeen {
        location: labels_text(&at.labels),
        ok,
        at: at.result.as_ref().ok().map(|r| r.started.unwrap_or(now)),
        seen,
    }
}
