//! Batches of checks in flight on agents (a monitor's `from:`), as the engine keeps them: which
//! agent (and which start of it) each went to, which results came, and who waits for them.
//!
//! Every result an agent sends is checked against this state before it is used: the batch must
//! be one issued to that agent's current instance, each index once and in range, each result
//! within the protocol's caps. Anything else is counted and dropped, never a panic. No IO.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::protocol::agent::AgentId;
use crate::protocol::batch::{self, BatchId, CheckResults, MAX_RESULTS_PER_MESSAGE};
use crate::protocol::check::{CheckResult, Probe};

/// Why a location gave no results for a round. Every variant but [`LocationError::BadBatch`]
/// means the location is unknown for that round, not failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// No live agent has the labels, or none of them runs checks.
    #[error("no agent can run checks for {labels}: {why}")]
    NoAgent {
        /// The labels asked for, `k=v, k=v`.
        labels: String,
        /// In words.
        why: String,
    },
    /// Every matching agent runs as many batches as it may.
    #[error("every agent labelled {labels} runs {max} batches of checks already")]
    Busy {
        /// The labels asked for.
        labels: String,
        /// Batches per agent at most.
        max: usize,
    },
    /// The agent was lost (or started again) before it answered.
    #[error("agent {agent} was lost before it answered")]
    Lost {
        /// The agent.
        agent: String,
    },
    /// The agent did not answer every check in time.
    #[error("agent {agent} did not answer within {after:?}")]
    TimedOut {
        /// The agent.
        agent: String,
        /// How long it was given.
        after: Duration,
    },
    /// The batch itself cannot be run (a push or workflow check, a key twice, a bad timeout).
    #[error("{0}")]
    BadBatch(String),
    /// The principal stopped.
    #[error("the principal has stopped")]
    Stopped,
}

/// What a caller of a batch is answered with.
pub(crate) type Answer = Result<Vec<(u32, CheckResult)>, LocationError>;

/// A request to run checks on one agent matching `labels`.
pub(crate) struct Ask {
    /// Every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// The caller's key, the probe and its timeout.
    pub checks: Vec<(u32, Probe, Duration)>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Answer>,
}

/// `labels` as `k=v, k=v`.
pub(crate) fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(any labels)".into();
    }
    crate::protocol::pairs_text(labels, ", ")
}

/// Whether `checks` can go to an agent as one batch; the error says why not.
pub(crate) fn check_ask(checks: &[(u32, Probe, Duration)]) -> Result<(), LocationError> {
    if checks.is_empty() || checks.len() > batch::MAX_BATCH_CHECKS {
        return Err(LocationError::BadBatch(format!(
            "{} checks: a batch holds 1 to {}",
            checks.len(),
            batch::MAX_BATCH_CHECKS
        )));
    }
    let mut keys = std::collections::HashSet::new();
    for (key, probe, timeout) in checks {
        if !keys.insert(*key) {
            return Err(LocationError::BadBatch(format!(
                "key {key} twice in one batch"
            )));
        }
        if !batch::runs_on_agents(probe) {
            return Err(LocationError::BadBatch(format!(
                "a {} check is judged by the principal, not run on agents",
                probe.kind()
            )));
        }
        if timeout.is_zero() || *timeout > batch::MAX_CHECK_TIMEOUT {
            return Err(LocationError::BadBatch(format!(
                "a timeout of {timeout:?}: at most {:?}",
                batch::MAX_CHECK_TIMEOUT
            )));
        }
    }
    Ok(())
}

/// One batch waiting for its results.
struct Pending {
    agent: AgentId,
    instance: u64,
    /// The caller's key of each check, by index.
    keys: Vec<u32>,
    got: Vec<Option<CheckResult>>,
    missing: usize,
    reply: oneshot::Sender<Answer>,
    deadline: Instant,
    given: Duration,
}

/// Batches that ended without all their results remembered, at most, so that their late
/// results are told from lies.
const MAX_ENDED: usize = 4096;

/// What became of one message of results.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Received {
    /// Parts refused (the whole message counts once; each bad result once).
    pub refused: u64,
    /// Results for a batch given up on (lost, timed out): dropped, not a lie.
    pub late: bool,
    /// Why, for the log, when something was refused.
    pub why: Option<String>,
}

/// Every batch in flight.
#[derive(Default)]
pub(super) struct Batches {
    next: u64,
    pending: HashMap<BatchId, Pending>,
    ended: VecDeque<(AgentId, BatchId)>,
    /// Late results dropped since the start.
    late: u64,
}

impl Batches {
    /// Batches and checks in flight on `agent`.
    pub fn load(&self, agent: &AgentId) -> (usize, usize) {
        self.pending
            .values()
            .filter(|p| &p.agent == agent)
            .fold((0, 0), |(b, c), p| (b + 1, c + p.keys.len()))
    }

    /// Records a batch sent to `instance` of `agent`; answered by `deadline` at the latest.
    pub fn start(
        &mut self,
        agent: AgentId,
        instance: u64,
        keys: Vec<u32>,
        given: Duration,
        reply: oneshot::Sender<Answer>,
    ) -> BatchId {
        self.next += 1;
        let id = BatchId(self.next);
        let n = keys.len();
        self.pending.insert(
            id,
            Pending {
                agent,
                instance,
                keys,
                got: vec![None; n],
                missing: n,
                reply,
                deadline: Instant::now() + given,
                given,
            },
        );
        id
    }

    /// Applies results `message` from `instance` of `agent` (`None`: not a live agent).
    pub fn receive(
        &mut self,
        agent: &AgentId,
        instance: Option<u64>,
        message: CheckResults,
    ) -> Received {
        let refuse = |why: String| Received {
            refused: 1,
            late: false,
            why: Some(why),
        };
        let Some(instance) = instance else {
            return refuse("results from an agent that is not live".into());
        };
        if message.results.len() > MAX_RESULTS_PER_MESSAGE {
            return refuse(format!(
                "{} results in one message (at most {MAX_RESULTS_PER_MESSAGE})",
                message.results.len()
            ));
        }
        let Some(p) = self.pending.get_mut(&message.batch) else {
            if self
                .ended
                .iter()
                .any(|(a, b)| a == agent && *b == message.batch)
            {
                self.late = self.late.saturating_add(1);
                return Received {
                    late: true,
                    ..Received::default()
                };
            }
            return refuse(format!("results for {}, never issued to it", message.batch));
        };
        if &p.agent != agent || p.instance != instance {
            return refuse(format!(
                "results for {}, which was issued to another agent or start",
                message.batch
            ));
        }
        let mut out = Received::default();
        for (i, result) in message.results {
            let why = match p.got.get(i as usize) {
                None => Some(format!(
                    "index {i} out of range (the batch has {})",
                    p.keys.len()
                )),
                Some(Some(_)) => Some(format!("index {i} answered twice")),
                Some(None) => batch::within_caps(&result)
                    .err()
                    .map(|w| format!("index {i}: {w}")),
            };
            match why {
                Some(why) => {
                    out.refused += 1;
                    out.why.get_or_insert(why);
                }
                None => {
                    p.got[i as usize] = Some(result);
                    p.missing -= 1;
                }
            }
        }
        if p.missing == 0
            && let Some(p) = self.pending.remove(&message.batch)
        {
            let results = p
                .keys
                .into_iter()
                .zip(p.got)
                .filter_map(|(k, r)| r.map(|r| (k, r)))
                .collect();
            let _ = p.reply.send(Ok(results));
        }
        out
    }

    /// `agent` was lost: its batches end unanswered.
    pub fn agent_gone(&mut self, agent: &AgentId) {
        self.end_where(
            |p| &p.agent == agent,
            |p| LocationError::Lost {
                agent: p.agent.0.clone(),
            },
        );
    }

    /// `agent` said hello as `instance`: batches sent to another start of it end unanswered
    /// (that process is gone with them).
    pub fn instance_now(&mut self, agent: &AgentId, instance: u64) {
        self.end_where(
            |p| &p.agent == agent && p.instance != instance,
            |p| LocationError::Lost {
                agent: p.agent.0.clone(),
            },
        );
    }

    /// Batches past their deadline end unanswered.
    pub fn expire(&mut self, now: Instant) {
        self.end_where(
            |p| p.deadline <= now,
            |p| LocationError::TimedOut {
                agent: p.agent.0.clone(),
                after: p.given,
            },
        );
    }

    /// Batch `id` ends with `error` (it could not be sent).
    pub fn end(&mut self, id: BatchId, error: LocationError) {
        if let Some(p) = self.pending.remove(&id) {
            let _ = p.reply.send(Err(error));
        }
    }

    /// Every batch ends with `error` (the principal stops).
    pub fn end_all(&mut self, error: LocationError) {
        self.end_where(|_| true, |_| error.clone());
    }

    /// Late results dropped since the start.
    #[cfg(test)]
    pub fn late(&self) -> u64 {
        self.late
    }

    fn end_where(
        &mut self,
        which: impl Fn(&Pending) -> bool,
        error: impl Fn(&Pending) -> LocationError,
    ) {
        let ids: Vec<BatchId> = self
            .pending
            .iter()
            .filter(|(_, p)| which(p))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                let error = error(&p);
                let _ = p.reply.send(Err(error));
                if self.ended.len() >= MAX_ENDED {
                    self.ended.pop_front();
                }
                self.ended.push_back((p.agent, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> AgentId {
        AgentId(name.into())
    }

    fn ok(ms: u64) -> CheckResult {
        CheckResult {
            connected: true,
            response_time: Duration::from_millis(ms),
            ..CheckResult::default()
        }
    }

    fn results(batch: BatchId, results: Vec<(u32, CheckResult)>) -> CheckResults {
        CheckResults { batch, results }
    }

    fn start(
        b: &mut Batches,
        who: &str,
        instance: u64,
        keys: Vec<u32>,
    ) -> (BatchId, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        let id = b.start(agent(who), instance, keys, Duration::from_secs(5), tx);
        (id, rx)
    }

    #[test]
    fn results_in_chunks_answer_the_caller_in_its_keys() {
        let mut b = Batches::default();
        let (id, mut rx) = start(&mut b, "eu", 7, vec![40, 41, 42]);
        assert_eq!(b.load(&agent("eu")), (1, 3));
        let got = b.receive(
            &agent("eu"),
            Some(7),
            results(id, vec![(2, ok(2)), (0, ok(0))]),
        );
        assert_eq!(got, Received::default());
        assert!(rx.try_recv().is_err(), "not all yet");
        b.receive(&agent("eu"), Some(7), results(id, vec![(1, ok(1))]));
        let answer = rx.try_recv().expect("answered").expect("ok");
        let keys: Vec<u32> = answer.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![40, 41, 42]);
        assert_eq!(answer[2].1.response_time, Duration::from_millis(2));
        assert_eq!(b.load(&agent("eu")), (0, 0));
    }

    #[test]
    fn an_agent_lying_in_each_field_is_counted_and_changes_nothing() {
        let mut b = Batches::default();
        let (mine, mut rx) = start(&mut b, "eu", 7, vec![1, 2]);
        let (theirs, _rx2) = start(&mut b, "us", 9, vec![1]);
        let eu = agent("eu");
        // A batch never issued.
        let r = b.receive(&eu, Some(7), results(BatchId(999), vec![(0, ok(1))]));
        assert_eq!(r.refused, 1);
        // Someone else's batch.
        let r = b.receive(&eu, Some(7), results(theirs, vec![(0, ok(1))]));
        assert_eq!(r.refused, 1, "{r:?}");
        // Its own batch, from another start of it.
        let r = b.receive(&eu, Some(8), results(mine, vec![(0, ok(1))]));
        assert_eq!(r.refused, 1);
        // Not a live agent.
        assert_eq!(b.receive(&eu, None, results(mine, vec![])).refused, 1);
        // An index out of range, u32::MAX, a duplicate, a huge body: each counted; the good
        // one in the same message is kept.
        let huge = CheckResult {
            body: "x".repeat(batch::MAX_RESULT_BODY + 1),
            ..ok(1)
        };
        let r = b.receive(
            &eu,
            Some(7),
            results(
                mine,
                vec![
                    (2, ok(1)),
                    (u32::MAX, ok(1)),
                    (0, ok(5)),
                    (0, ok(6)),
                    (1, huge),
                ],
            ),
        );
        assert_eq!(r.refused, 4, "{r:?}");
        assert!(rx.try_recv().is_err(), "index 1 is still missing");
        // Too many results in one message: refused whole.
        let many = (0..=MAX_RESULTS_PER_MESSAGE as u32)
            .map(|i| (i, ok(1)))
            .collect();
        assert_eq!(b.receive(&eu, Some(7), results(mine, many)).refused, 1);
        b.receive(&eu, Some(7), results(mine, vec![(1, ok(7))]));
        let answer = rx.try_recv().expect("answered").expect("ok");
        assert_eq!(
            answer[0].1.response_time,
            Duration::from_millis(5),
            "first answer kept"
        );
        // After the answer, more for that batch is a lie too.
        assert_eq!(
            b.receive(&eu, Some(7), results(mine, vec![(0, ok(1))]))
                .refused,
            1
        );
    }

    #[test]
    fn a_lost_or_restarted_agent_leaves_its_callers_unknown_and_late_results_are_not_lies() {
        let mut b = Batches::default();
        let (first, mut rx1) = start(&mut b, "eu", 7, vec![1]);
        let (second, mut rx2) = start(&mut b, "us", 3, vec![1]);
        b.instance_now(&agent("eu"), 7);
        assert!(rx1.try_recv().is_err(), "same start: still waiting");
        b.instance_now(&agent("eu"), 8);
        assert!(matches!(
            rx1.try_recv(),
            Ok(Err(LocationError::Lost { .. }))
        ));
        let late = b.receive(&agent("eu"), Some(8), results(first, vec![(0, ok(1))]));
        assert!(late.late && late.refused == 0, "{late:?}");
        b.agent_gone(&agent("us"));
        assert!(matches!(
            rx2.try_recv(),
            Ok(Err(LocationError::Lost { .. }))
        ));
        let _ = second;
        let (_, mut rx3) = start(&mut b, "eu", 8, vec![1]);
        b.expire(Instant::now() + Duration::from_secs(6));
        assert!(matches!(
            rx3.try_recv(),
            Ok(Err(LocationError::TimedOut { .. }))
        ));
        assert_eq!(b.late(), 1);
    }

    #[test]
    fn a_batch_that_cannot_run_is_refused_before_it_is_sent() {
        use crate::protocol::check::{PushProbe, TcpProbe};
        let tcp = Probe::Tcp(TcpProbe {
            host: "h".into(),
            port: 1,
            send: None,
            expect: None,
        });
        let s = Duration::from_secs(1);
        assert!(check_ask(&[(1, tcp.clone(), s)]).is_ok());
        assert!(check_ask(&[]).is_err());
        assert!(check_ask(&[(1, tcp.clone(), s), (1, tcp.clone(), s)]).is_err());
        assert!(check_ask(&[(1, tcp, Duration::ZERO)]).is_err());
        let push = Probe::Push(PushProbe { grace: s });
        assert!(check_ask(&[(1, push, s)]).is_err());
    }
}
