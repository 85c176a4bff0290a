//! Checks placed on agents by labels (a monitor's `from:`): the engine owns the agents, so a
//! batch is sent from here to one live agent whose labels match, and the results that come
//! back are checked against what was sent before anyone sees them.

use std::time::Duration;

use super::{Engine, Timer};
use crate::principal::batches::{Ask, LocationError, check_ask, labels_text};
use crate::protocol::agent::AgentId;
use crate::protocol::batch::{
    BatchCheck, CHECKS_VERSION, CheckBatch, CheckResults, MAX_BATCHES_PER_AGENT,
};

/// Checks an agent's prober runs at once (its default bound): the deadline of a batch grows
/// by one timeout per this many checks in flight on that agent.
const AGENT_CHECKS_AT_ONCE: usize = crate::agent::check::DEFAULT_MAX_IN_FLIGHT;
/// Past its checks' own time, how long a batch may take (a command check being killed, the
/// messages on their way).
const BATCH_MARGIN: Duration = Duration::from_secs(1);

impl Engine {
    /// Sends `ask` as one batch to the live agent with its labels that has the fewest batches
    /// in flight; the caller is answered when every result came, or with why not.
    pub(super) fn run_checks(&mut self, ask: Ask) {
        let Ask {
            labels,
            checks,
            reply,
        } = ask;
        if let Err(e) = check_ask(&checks) {
            let _ = reply.send(Err(e));
            return;
        }
        let candidates = self.agents.check_agents(&labels);
        if candidates.is_empty() {
            let why = self.agents.why_no_location(&labels);
            let _ = reply.send(Err(LocationError::NoAgent {
                labels: labels_text(&labels),
                why,
            }));
            return;
        }
        let chosen = candidates
            .into_iter()
            .map(|a| (self.batches.load(&a), a))
            .filter(|((batches, _), _)| *batches < MAX_BATCHES_PER_AGENT)
            .min_by_key(|((batches, checks), _)| (*batches, *checks));
        let Some(((_, in_flight), agent)) = chosen else {
            let _ = reply.send(Err(LocationError::Busy {
                labels: labels_text(&labels),
                max: MAX_BATCHES_PER_AGENT,
            }));
            return;
        };
        let Some(instance) = self.agents.instance_of(&agent) else {
            let _ = reply.send(Err(LocationError::Lost { agent: agent.0 }));
            return;
        };
        let longest = checks.iter().map(|c| c.2).max().unwrap_or_default();
        let waves = 1 + (in_flight + checks.len()) / AGENT_CHECKS_AT_ONCE;
        let given = longest
            .saturating_mul(waves as u32)
            .saturating_add(self.agents.lease())
            .saturating_add(BATCH_MARGIN);
        let keys = checks.iter().map(|c| c.0).collect();
        let id = self
            .batches
            .start(agent.clone(), instance, keys, given, reply);
        let batch = CheckBatch {
            v: CHECKS_VERSION,
            id,
            checks: checks
                .into_iter()
                .map(|(_, probe, timeout)| BatchCheck { probe, timeout })
                .collect(),
        };
        self.set_timer(given, Timer::ChecksDue);
        if !self
            .agents
            .run_checks(&agent, batch, self.checked_tx.clone())
        {
            // The in-process pool runs as many as it may already.
            let labels = labels_text(&labels);
            self.batches.end(
                id,
                LocationError::Busy {
                    labels,
                    max: MAX_BATCHES_PER_AGENT,
                },
            );
        }
    }

    /// Results of a batch from `agent` (the in-process pool or a remote agent).
    pub(super) fn on_checked(&mut self, agent: &AgentId, results: CheckResults) {
        let instance = self.agents.instance_of(agent);
        let batch = results.batch;
        let got = self.batches.receive(agent, instance, results);
        if got.refused > 0 {
            self.agents.refuse_many(agent, got.refused);
            tracing::warn!(
                %agent,
                %batch,
                refused = got.refused,
                "dropped check results: {}",
                got.why.as_deref().unwrap_or("out of bounds")
            );
        } else if got.late {
            tracing::info!(%agent, %batch, "dropped late check results: the batch was given up");
        }
    }

    /// Batches past their deadline: their callers are told.
    pub(super) fn checks_due(&mut self) {
        self.batches.expire(tokio::time::Instant::now());
    }
}
