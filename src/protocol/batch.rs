//! Checks placed on an agent as a set (a monitor's `from:`): the principal sends one
//! [`CheckBatch`] to one agent whose labels match, the agent runs its checks with its prober
//! (bounded concurrency) and answers with [`CheckResults`] messages, each carrying many results
//! (at most [`MAX_RESULTS_PER_MESSAGE`] and about [`MAX_CHUNK_BYTES`]), never one per check.
//!
//! Results are not numbered reports: they are not buffered until acknowledged. A check result
//! is a measurement of one moment for one round; the principal waits for a batch until its
//! deadline and otherwise counts that location as unknown for the round, and the next round
//! measures again. Re-sending a result after a long disconnect would only hand the principal a
//! stale measurement, and keeping results out of the report numbering means a flood of them
//! can never hold back a task's output in the agent's report buffer.
//!
//! Every bound here is checked on both sides: the agent cuts what it sends to the caps, and the
//! principal drops (and counts) what is over them, whatever the agent says.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{CheckResult, Probe};

/// The version of these messages an agent speaks; an agent says it in its hello
/// ([`super::agent::Hello::checks`]), and 0 (an older agent) is never sent a batch.
pub const CHECKS_VERSION: u32 = 1;

/// Most checks in one batch; a caller with more sends several batches.
pub const MAX_BATCH_CHECKS: usize = 1024;

/// Most batches in flight on one agent at once (the principal sends no more; the agent drops
/// any beyond).
pub const MAX_BATCHES_PER_AGENT: usize = 64;

/// Most results in one [`CheckResults`] message.
pub const MAX_RESULTS_PER_MESSAGE: usize = 256;

/// Serialised bytes of results an agent puts in one message before it starts the next (one
/// result always goes, whatever its size; with the caps below it is under 8 MiB, half a frame).
pub const MAX_CHUNK_BYTES: usize = 4 << 20;

/// Longest body (`[BODY]`) of one result, in bytes: the probes' default cap.
pub const MAX_RESULT_BODY: usize = super::check::DEFAULT_MAX_BODY as usize;

/// Longest command output (`[OUTPUT]`) of one result, in bytes.
pub const MAX_RESULT_OUTPUT: usize = 64 << 10;

/// Most response headers of one result.
pub const MAX_RESULT_HEADERS: usize = 64;

/// Longest header name plus value, in bytes.
pub const MAX_RESULT_HEADER_LEN: usize = 8 << 10;

/// Longest error text of one result, in bytes.
pub const MAX_RESULT_ERROR: usize = 4 << 10;

/// Longest timeout of one check of a batch.
pub const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// Names one batch; issued by the principal, increasing, never reused while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub u64);

impl std::fmt::Display for BatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {}", self.0)
    }
}

/// One check of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCheck {
    /// What to probe (a network probe or a command; never push or workflow).
    pub probe: Probe,
    /// The check fails once it has run this long.
    pub timeout: Duration,
}

/// Checks for one agent to run now. Results name a check by its index in `checks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckBatch {
    /// [`CHECKS_VERSION`] of the sender.
    pub v: u32,
    /// Which batch.
    pub id: BatchId,
    /// The checks, at most [`MAX_BATCH_CHECKS`].
    pub checks: Vec<BatchCheck>,
}

impl CheckBatch {
    /// Whether the batch is one this agent can run: its version, its size, its timeouts and
    /// the kinds of its probes; the error says what is not.
    pub fn check(&self) -> Result<(), String> {
        if self.v != CHECKS_VERSION {
            return Err(format!(
                "{}: check batches of version {} but this agent speaks version {CHECKS_VERSION}",
                self.id, self.v
            ));
        }
        if self.checks.is_empty() || self.checks.len() > MAX_BATCH_CHECKS {
            return Err(format!(
                "{}: {} checks; a batch holds 1 to {MAX_BATCH_CHECKS}",
                self.id,
                self.checks.len()
            ));
        }
        for (i, c) in self.checks.iter().enumerate() {
            if c.timeout.is_zero() || c.timeout > MAX_CHECK_TIMEOUT {
                return Err(format!(
                    "{}: check {i} has a timeout of {:?}; at most {MAX_CHECK_TIMEOUT:?}",
                    self.id, c.timeout
                ));
            }
            if !runs_on_agents(&c.probe) {
                return Err(format!(
                    "{}: check {i} is a {} check, which the principal judges itself",
                    self.id,
                    c.probe.kind()
                ));
            }
        }
        Ok(())
    }
}

/// Whether an agent can run `probe` (push and workflow checks are judged by the principal).
pub fn runs_on_agents(probe: &Probe) -> bool {
    !matches!(probe, Probe::Push(_) | Probe::Workflow(_))
}

/// Some results of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResults {
    /// Which batch.
    pub batch: BatchId,
    /// Each result with the index of its check in the batch; each index once in the whole
    /// batch, at most [`MAX_RESULTS_PER_MESSAGE`] here.
    pub results: Vec<(u32, CheckResult)>,
}

/// Cuts `result` to the caps (on a char boundary), saying so in `body_truncated` for the body.
pub fn clamp(result: &mut CheckResult) {
    if result.body.len() > MAX_RESULT_BODY {
        super::truncate_within(&mut result.body, MAX_RESULT_BODY);
        result.body_truncated = true;
    }
    super::truncate_within(&mut result.output, MAX_RESULT_OUTPUT);
    if let Some(e) = result.error.as_mut() {
        super::truncate_within(e, MAX_RESULT_ERROR);
    }
    result.headers.truncate(MAX_RESULT_HEADERS);
    for (name, value) in &mut result.headers {
        super::truncate_within(name, MAX_RESULT_HEADER_LEN / 2);
        super::truncate_within(value, MAX_RESULT_HEADER_LEN / 2);
    }
}

/// Whether `result` is within the caps; the error names the field that is not.
pub fn within_caps(result: &CheckResult) -> Result<(), String> {
    if result.body.len() > MAX_RESULT_BODY {
        return Err(format!(
            "a body of {} bytes (at most {MAX_RESULT_BODY})",
            result.body.len()
        ));
    }
    if result.output.len() > MAX_RESULT_OUTPUT {
        return Err(format!(
            "an output of {} bytes (at most {MAX_RESULT_OUTPUT})",
            result.output.len()
        ));
    }
    if result
        .error
        .as_ref()
        .is_some_and(|e| e.len() > MAX_RESULT_ERROR)
    {
        return Err(format!("an error text over {MAX_RESULT_ERROR} bytes"));
    }
    if result.headers.len() > MAX_RESULT_HEADERS
        || result
            .headers
            .iter()
            .any(|(n, v)| n.len() + v.len() > MAX_RESULT_HEADER_LEN)
    {
        return Err(format!(
            "more than {MAX_RESULT_HEADERS} headers or one over {MAX_RESULT_HEADER_LEN} bytes"
        ));
    }
    Ok(())
}

/// Splits the results of `batch` into messages of at most [`MAX_RESULTS_PER_MESSAGE`] results
/// and about [`MAX_CHUNK_BYTES`] serialised bytes each.
pub fn chunks(batch: BatchId, results: Vec<(u32, CheckResult)>) -> Vec<CheckResults> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for (i, r) in results {
        let size = serde_json::to_vec(&r).map_or(MAX_CHUNK_BYTES, |v| v.len()) + 16;
        if !current.is_empty()
            && (current.len() >= MAX_RESULTS_PER_MESSAGE || bytes + size > MAX_CHUNK_BYTES)
        {
            out.push(CheckResults {
                batch,
                results: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes += size;
        current.push((i, r));
    }
    if !current.is_empty() {
        out.push(CheckResults {
            batch,
            results: current,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::check::TcpProbe;

    fn tcp() -> Probe {
        Probe::Tcp(TcpProbe {
            host: "127.0.0.1".into(),
            port: 1,
            send: None,
            expect: None,
        })
    }

    #[test]
    fn a_batch_out_of_bounds_is_refused_by_the_agent() {
        let batch = |v, n, timeout| CheckBatch {
            v,
            id: BatchId(3),
            checks: vec![
                BatchCheck {
                    probe: tcp(),
                    timeout
                };
                n
            ],
        };
        let second = Duration::from_secs(1);
        assert!(batch(CHECKS_VERSION, 1, second).check().is_ok());
        assert!(
            batch(2, 1, second)
                .check()
                .unwrap_err()
                .contains("version 2")
        );
        assert!(batch(CHECKS_VERSION, 0, second).check().is_err());
        assert!(
            batch(CHECKS_VERSION, MAX_BATCH_CHECKS + 1, second)
                .check()
                .is_err()
        );
        assert!(batch(CHECKS_VERSION, 1, Duration::MAX).check().is_err());
        let push = CheckBatch {
            checks: vec![BatchCheck {
                probe: Probe::Push(crate::protocol::check::PushProbe { grace: second }),
                timeout: second,
            }],
            ..batch(CHECKS_VERSION, 1, second)
        };
        assert!(push.check().unwrap_err().contains("push"));
    }

    #[test]
    fn results_are_cut_to_the_caps_and_sent_in_few_messages() {
        let mut big = CheckResult {
            body: "é".repeat(MAX_RESULT_BODY),
            output: "x".repeat(MAX_RESULT_OUTPUT + 5),
            headers: vec![("h".into(), "v".into()); MAX_RESULT_HEADERS + 1],
            ..CheckResult::failed(None, Duration::ZERO, "e".repeat(MAX_RESULT_ERROR * 2))
        };
        assert!(within_caps(&big).is_err());
        clamp(&mut big);
        assert!(within_caps(&big).is_ok());
        assert!(big.body_truncated && big.body.len() <= MAX_RESULT_BODY);

        let small: Vec<(u32, CheckResult)> =
            (0..600).map(|i| (i, CheckResult::default())).collect();
        let messages = chunks(BatchId(1), small);
        assert_eq!(messages.len(), 3, "256 + 256 + 88");
        assert!(messages.iter().all(|m| m.batch == BatchId(1)));
        // Big results go a few to a message, and one always goes.
        let bigs: Vec<(u32, CheckResult)> = (0..5).map(|i| (i, big.clone())).collect();
        let messages = chunks(BatchId(2), bigs);
        assert!(messages.len() >= 2, "{}", messages.len());
        for m in &messages {
            let bytes = serde_json::to_vec(m).expect("serialises").len();
            assert!(bytes <= 2 * MAX_CHUNK_BYTES, "{bytes}");
        }
    }
}
