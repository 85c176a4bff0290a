//! Checks placed on agents by labels (a monitor's `from:`), in batches: the monitor actor asks
//! for a location's checks of a round at once, the engine (which owns the agents) sends them
//! as one batch to one live agent with those labels, and the answer is every result or why
//! there is none. A location without an answer is unknown for that round, never failed.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;

use super::super::batches::Ask;
pub use super::super::batches::LocationError;
use super::super::{Command, EngineClient};
use crate::protocol::batch::MAX_BATCH_CHECKS;
use crate::protocol::check::{CheckResult, Probe};

/// Runs checks on agents by their labels; cheap to clone.
#[derive(Clone)]
pub struct Locations {
    engine: EngineClient,
}

impl Locations {
    /// Locations served by the engine behind `engine`.
    pub(crate) fn new(engine: EngineClient) -> Self {
        Self { engine }
    }

    /// Runs `batch` (the caller's key, the probe, its timeout) on one live agent matching
    /// `labels`; Err when none matches or the agent was lost before answering (the location
    /// then counts as unknown, not failed). More than [`MAX_BATCH_CHECKS`] checks go as several
    /// batches at once; the results come in the order of `batch`.
    pub async fn run(
        &self,
        labels: &BTreeMap<String, String>,
        batch: Vec<(u32, Probe, Duration)>,
    ) -> Result<Vec<(u32, CheckResult)>, LocationError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut parts = Vec::new();
        let mut rest = batch;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_BATCH_CHECKS));
            parts.push(self.one(labels.clone(), std::mem::replace(&mut rest, tail)));
        }
        let mut out = Vec::new();
        for part in futures::future::join_all(parts).await {
            out.extend(part?);
        }
        Ok(out)
    }

    async fn one(
        &self,
        labels: BTreeMap<String, String>,
        checks: Vec<(u32, Probe, Duration)>,
    ) -> Result<Vec<(u32, CheckResult)>, LocationError> {
        let (reply, answer) = oneshot::channel();
        self.engine
            .commands
            .send(Command::RunChecks(Ask {
                labels,
                checks,
                reply,
            }))
            .await
            .map_err(|_| LocationError::Stopped)?;
        answer.await.map_err(|_| LocationError::Stopped)?
    }
}
