//! Runs a batch of checks sent by the principal (a monitor's `from:`) with the agent's prober:
//! at most the prober's bound in flight, results cut to the protocol's caps and sent back a
//! message per chunk, not one per check.

use tokio::sync::mpsc;

use super::check::Prober;
use crate::protocol::batch::{self, CheckBatch, CheckResults, MAX_RESULTS_PER_MESSAGE};
use crate::protocol::check::CheckResult;

/// Runs every check of `batch` and sends the results to `out` in chunks (see
/// [`batch::chunks`]); a batch out of bounds is refused with a warning and answered with
/// nothing (the principal counts the location as unknown once its deadline passes).
pub async fn run(prober: Prober, batch: CheckBatch, out: mpsc::Sender<CheckResults>) {
    if let Err(why) = batch.check() {
        tracing::warn!("refused a batch of checks: {why}");
        return;
    }
    let id = batch.id;
    let checks = batch
        .checks
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as u32, c.probe, c.timeout));
    let mut results = prober.run_many(checks);
    let mut done: Vec<(u32, CheckResult)> = Vec::new();
    while let Some((i, mut result)) = results.recv().await {
        batch::clamp(&mut result);
        done.push((i, result));
        // A full message goes as soon as it is full, so a large batch does not wait whole
        // in memory.
        if done.len() >= MAX_RESULTS_PER_MESSAGE {
            for chunk in batch::chunks(id, std::mem::take(&mut done)) {
                if out.send(chunk).await.is_err() {
                    return;
                }
            }
        }
    }
    for chunk in batch::chunks(id, done) {
        if out.send(chunk).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::batch::{BatchCheck, BatchId, CHECKS_VERSION};
    use crate::protocol::check::{Probe, TcpProbe};

    #[tokio::test]
    async fn every_check_of_a_batch_is_answered_once_in_few_messages() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        let check = BatchCheck {
            probe: Probe::Tcp(TcpProbe {
                host: "127.0.0.1".into(),
                port,
                send: None,
                expect: None,
            }),
            timeout: Duration::from_secs(5),
        };
        let batch = CheckBatch {
            v: CHECKS_VERSION,
            id: BatchId(9),
            checks: vec![check; 300],
        };
        let (tx, mut rx) = mpsc::channel(16);
        run(Prober::new(), batch, tx).await;
        let mut seen = std::collections::BTreeSet::new();
        let mut messages = 0;
        while let Ok(m) = rx.try_recv() {
            messages += 1;
            assert_eq!(m.batch, BatchId(9));
            for (i, r) in m.results {
                assert!(r.connected, "{r:?}");
                assert!(seen.insert(i), "index {i} twice");
            }
        }
        assert_eq!(seen.len(), 300);
        assert_eq!(messages, 2, "256 + 44");
    }
}
