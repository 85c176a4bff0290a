//! Workflow monitors: our own schedules watched by our own monitors. The check asks the
//! engine (the `History` request, as any face would) when the workflow last succeeded, and
//! fails when that is longer ago than `succeeded_within` (or never).
//!
//! What it saw is in the result for conditions: `[CONNECTED]` is true when the engine
//! answered, `[BODY]` is JSON (`[BODY].age_s`, `[BODY].last_success`, `[BODY].run_id`,
//! `[BODY].last_state`), `[RESPONSE_TIME]` is how long the engine took to answer.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::humantime::format_duration;
use crate::protocol::RunState;
use crate::protocol::api::{Client, Request, Response};
use crate::protocol::check::{CheckResult, WorkflowProbe};
use crate::protocol::history::RunSummary;

/// Newest runs read per check: a success further back than this many runs is not seen
/// (the result then says so).
pub const LOOKBACK_RUNS: usize = 200;

/// How long a check waits for the engine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Whether `probe.name` has succeeded within `probe.succeeded_within` of `now`, asked of
/// `engine` (the principal's [`crate::principal::EngineClient`] in the actor). Never awaited
/// on the engine's own task: the engine may be waiting on the monitor actor.
pub(crate) async fn workflow_result<C: Client + ?Sized>(
    engine: &C,
    probe: &WorkflowProbe,
    now: DateTime<Utc>,
) -> CheckResult {
    let start = Instant::now();
    let request = Request::History {
        workflow: Some(probe.name.clone()),
        limit: LOOKBACK_RUNS,
    };
    let answer = tokio::time::timeout(PATIENCE, engine.call(request)).await;
    let took = start.elapsed();
    let runs = match answer {
        Ok(Ok(Response::Runs { runs })) => runs,
        Ok(Ok(Response::Error(e))) => {
            return CheckResult::failed(Some(now), took, format!("the engine refused: {e}"));
        }
        Ok(Ok(other)) => {
            return CheckResult::failed(
                Some(now),
                took,
                format!("the engine answered out of turn: {other:?}"),
            );
        }
        Ok(Err(e)) => {
            return CheckResult::failed(Some(now), took, format!("the engine is unreachable: {e}"));
        }
        Err(_) => {
            return CheckResult::failed(
                Some(now),
                took,
                format!(
                    "the engine did not answer within {}",
                    format_duration(PATIENCE)
                ),
            );
        }
    };
    judge_runs(probe, &runs, now, took)
}

/// The result for `runs` (newest first) as of `now`.
pub fn judge_runs(
    probe: &WorkflowProbe,
    runs: &[RunSummary],
    now: DateTime<Utc>,
    took: Duration,
) -> CheckResult {
    let success = runs.iter().find(|r| r.state == RunState::Succeeded);
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let within = format_duration(probe.succeeded_within);
    let (body, error) = match success {
        Some(run) => {
            let at = run.ended_at.unwrap_or(run.created_at);
            let age = (now - at).to_std().unwrap_or_default();
            let body = serde_json::json!({
                "workflow": probe.name,
                "last_success": stamp(at),
                "age_s": age.as_secs(),
                "run_id": run.run_id.0,
                "last_state": runs.first().map(|r| r.state),
            });
            let error = (age > probe.succeeded_within).then(|| {
                format!(
                    "workflow `{}` last succeeded {} ago (at {}, run {}); expected within {within}",
                    probe.name,
                    format_duration(age),
                    stamp(at),
                    run.run_id
                )
            });
            (body, error)
        }
        None => {
            let body = serde_json::json!({
                "workflow": probe.name,
                "last_success": null,
                "age_s": null,
                "run_id": null,
                "last_state": runs.first().map(|r| r.state),
            });
            let why = if runs.is_empty() {
                format!(
                    "workflow `{}` has never run; expected a success within {within}",
                    probe.name
                )
            } else if runs.len() >= LOOKBACK_RUNS {
                format!(
                    "workflow `{}` has not succeeded in its last {} runs; expected a success within {within}",
                    probe.name,
                    runs.len()
                )
            } else {
                format!(
                    "workflow `{}` has never succeeded ({} run(s), the last {}); expected a success within {within}",
                    probe.name,
                    runs.len(),
                    runs.first()
                        .map_or("-".into(), |r| format!("{:?}", r.state).to_lowercase())
                )
            };
            (body, Some(why))
        }
    };
    CheckResult {
        started: Some(now),
        response_time: took,
        connected: true,
        error,
        body: body.to_string(),
        ..CheckResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RunId;
    use crate::protocol::api::{BoxFuture, Caller, ClientError};
    use tokio::sync::broadcast;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("in range")
    }

    fn run(id: u64, state: RunState, ended: i64) -> RunSummary {
        RunSummary {
            run_id: RunId(id),
            workflow: "nightly".into(),
            state,
            created_at: t(ended - 60),
            started_at: Some(t(ended - 59)),
            ended_at: Some(t(ended)),
            duration_secs: Some(59.0),
            failed_tasks: Vec::new(),
            message: None,
            triggered_by: None,
        }
    }

    fn probe() -> WorkflowProbe {
        WorkflowProbe {
            name: "nightly".into(),
            succeeded_within: Duration::from_secs(26 * 3600),
        }
    }

    /// Answers `History` with fixed runs and remembers what it was asked.
    struct Engine {
        runs: Vec<RunSummary>,
        asked: std::sync::Mutex<Vec<Request>>,
    }

    impl Client for Engine {
        fn call(&self, request: Request) -> BoxFuture<'_, Result<Response, ClientError>> {
            self.call_as(Caller::local(), request)
        }
        fn call_as(
            &self,
            _caller: Caller,
            request: Request,
        ) -> BoxFuture<'_, Result<Response, ClientError>> {
            self.asked.lock().expect("not poisoned").push(request);
            let runs = self.runs.clone();
            Box::pin(async move { Ok(Response::Runs { runs }) })
        }
        fn subscribe(&self) -> broadcast::Receiver<crate::protocol::Event> {
            broadcast::channel(1).1
        }
    }

    #[tokio::test]
    async fn a_recent_success_is_ok_and_an_old_one_fails_saying_when() {
        let engine = Engine {
            // Newest first: a failure after the success does not hide it.
            runs: vec![
                run(9, RunState::Failed, 3600),
                run(8, RunState::Succeeded, 0),
            ],
            asked: Default::default(),
        };
        let ok = workflow_result(&engine, &probe(), t(25 * 3600)).await;
        assert!(ok.connected && ok.error.is_none(), "{ok:?}");
        let body: serde_json::Value = serde_json::from_str(&ok.body).expect("JSON");
        assert_eq!(body["age_s"], 25 * 3600);
        assert_eq!(body["run_id"], 8);
        assert_eq!(body["last_state"], "failed");
        assert_eq!(
            engine.asked.lock().expect("not poisoned")[0],
            Request::History {
                workflow: Some("nightly".into()),
                limit: LOOKBACK_RUNS
            }
        );

        let late = workflow_result(&engine, &probe(), t(27 * 3600)).await;
        let why = late.error.as_deref().unwrap_or_default();
        println!("late: {why}");
        assert!(
            why.starts_with(
                "workflow `nightly` last succeeded 27h00m ago (at 2027-01-15T08:00:00Z, run 8)"
            ),
            "{why}"
        );
        assert!(why.ends_with("expected within 26h00m"), "{why}");
    }

    #[test]
    fn never_run_and_never_succeeded_say_so() {
        let never = judge_runs(&probe(), &[], t(0), Duration::ZERO);
        let why = never.error.unwrap_or_default();
        println!("never ran: {why}");
        assert!(why.contains("has never run"), "{why}");
        let failing = vec![run(2, RunState::Failed, 10), run(1, RunState::Cancelled, 5)];
        let why = judge_runs(&probe(), &failing, t(20), Duration::ZERO)
            .error
            .unwrap_or_default();
        println!("never succeeded: {why}");
        assert!(
            why.contains("has never succeeded (2 run(s), the last failed)"),
            "{why}"
        );
        let many: Vec<_> = (0..LOOKBACK_RUNS as u64)
            .map(|i| run(i, RunState::Failed, 0))
            .collect();
        let why = judge_runs(&probe(), &many, t(20), Duration::ZERO)
            .error
            .unwrap_or_default();
        assert!(
            why.contains("has not succeeded in its last 200 runs"),
            "{why}"
        );
    }

    #[test]
    fn conditions_can_read_the_age_from_the_body() {
        use crate::monitor::condition::Condition;
        use crate::monitor::judge::judge;
        let r = judge_runs(
            &probe(),
            &[run(3, RunState::Succeeded, 0)],
            t(100),
            Duration::ZERO,
        );
        let c: Vec<Condition> = ["[BODY].age_s < 3600", "[CONNECTED] == true"]
            .iter()
            .map(|c| Condition::parse(c).expect("parses"))
            .collect();
        let j = judge(&c, &[], &r);
        assert_eq!(j.verdict, crate::protocol::monitor::Verdict::Ok, "{j:?}");
    }
}
