//! A queue of checks served by long-lived worker tasks, for a caller that starts checks all
//! the time (the monitor actor): each worker takes the next check as soon as its last one is
//! over, as a hand-written loop would, so that a check costs no task of its own, no relay and
//! no wake-up of a spawner. Results go straight to the caller's channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::Prober;
use crate::agent::lock;
use crate::protocol::check::{CheckResult, Probe};

/// One check waiting: the caller's key, what to probe and within how long.
pub type Job<K> = (K, Probe, Duration);

/// Checks waiting for a worker; dropping it ends the workers once their checks are over.
pub struct CheckQueue<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    prober: Prober,
    jobs: Mutex<VecDeque<Job<K>>>,
    /// A permit per job waiting: a worker wakes only when there is a job for it.
    waiting: Semaphore,
    workers: AtomicUsize,
    results: mpsc::Sender<(K, CheckResult)>,
    /// How long a worker waits for a job before it ends.
    idle_retire: Duration,
}

impl<K: Send + 'static> CheckQueue<K> {
    /// A queue whose checks run through `prober` (at most its bound in flight, shared with its
    /// other callers) and whose results are sent to `results` as each check ends.
    pub fn new(prober: Prober, results: mpsc::Sender<(K, CheckResult)>) -> Self {
        Self::retiring_after(prober, results, IDLE_RETIRE)
    }

    /// As [`CheckQueue::new`], with idle workers ending after `idle` instead.
    pub fn retiring_after(
        prober: Prober,
        results: mpsc::Sender<(K, CheckResult)>,
        idle: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                prober,
                jobs: Mutex::new(VecDeque::new()),
                waiting: Semaphore::new(0),
                workers: AtomicUsize::new(0),
                results,
                idle_retire: idle,
            }),
        }
    }

    /// Queues `jobs` behind the ones waiting; workers are started as needed, up to the
    /// prober's bound. Must be called within a tokio runtime.
    pub fn push(&self, jobs: impl IntoIterator<Item = Job<K>>) {
        let added = {
            let mut queue = lock(&self.shared.jobs);
            let before = queue.len();
            queue.extend(jobs);
            queue.len() - before
        };
        if added == 0 {
            return;
        }
        // Permits first, workers counted after: a worker retiring now either is not counted
        // (and one is started in its place) or finds these permits once it has stopped
        // counting itself (see `work`), so no job is left without a worker.
        self.shared.waiting.add_permits(added);
        let max = self.shared.prober.max_in_flight();
        let have = self.shared.workers.load(Ordering::SeqCst);
        let start = added.min(max.saturating_sub(have));
        if start > 0 {
            self.shared.workers.fetch_add(start, Ordering::SeqCst);
            for _ in 0..start {
                tokio::spawn(work(self.shared.clone()));
            }
        }
    }

    /// Checks waiting for a worker.
    pub fn waiting(&self) -> usize {
        lock(&self.shared.jobs).len()
    }

    /// Worker tasks running (idle ones retire, after [`IDLE_RETIRE`] by default).
    pub fn workers(&self) -> usize {
        self.shared.workers.load(Ordering::SeqCst)
    }
}

impl<K> Drop for CheckQueue<K> {
    fn drop(&mut self) {
        // Idle workers wake to a closed semaphore and end; busy ones after their check.
        self.shared.waiting.close();
    }
}

/// How long a worker waits for a job before it ends (a burst's workers do not stay parked,
/// each holding a check's worth of memory, when the queue has gone quiet).
pub const IDLE_RETIRE: Duration = Duration::from_secs(30);

async fn work<K: Send + 'static>(shared: Arc<Shared<K>>) {
    loop {
        match tokio::time::timeout(shared.idle_retire, shared.waiting.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_closed)) => break,
            Err(_idle) => {
                // Uncounted first, then one last look: a push that counted this worker has
                // already added its permits (see `CheckQueue::push`).
                shared.workers.fetch_sub(1, Ordering::SeqCst);
                match shared.waiting.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        shared.workers.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
        }
        let Some((key, probe, timeout)) = lock(&shared.jobs).pop_front() else {
            continue;
        };
        let result = shared.prober.run(&probe, timeout).await;
        if shared.results.send((key, result)).await.is_err() {
            break;
        }
    }
    shared.workers.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::check::ProberConfig;
    use crate::protocol::check::TcpProbe;

    #[tokio::test]
    async fn every_queued_check_is_answered_once_by_at_most_the_bound_of_workers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let prober = Prober::build(ProberConfig {
            max_in_flight: 8,
            ..ProberConfig::default()
        });
        let (tx, mut rx) = mpsc::channel(16);
        let idle = Duration::from_millis(300);
        let queue = CheckQueue::retiring_after(prober, tx, idle);
        let probe = Probe::Tcp(TcpProbe {
            host: "127.0.0.1".into(),
            port,
            send: None,
            expect: None,
        });
        for round in 0..3u32 {
            queue.push(
                (0..100u32).map(|i| (round * 100 + i, probe.clone(), Duration::from_secs(5))),
            );
        }
        let mut seen = vec![0u8; 300];
        for _ in 0..300 {
            let (k, r) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("in time")
                .expect("a result");
            assert!(r.connected, "{r:?}");
            seen[k as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "each once: {seen:?}");
        assert!(queue.workers() <= 8, "{} workers", queue.workers());
        assert_eq!(queue.waiting(), 0);
        // Idle, they retire; a later push starts new ones.
        let retired = tokio::time::Instant::now() + Duration::from_secs(20);
        while queue.workers() > 0 && tokio::time::Instant::now() < retired {
            tokio::time::sleep(idle).await;
        }
        assert_eq!(queue.workers(), 0, "idle workers retired");
        queue.push([(7, probe.clone(), Duration::from_secs(5))]);
        let (k, r) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("in time")
            .expect("a result");
        assert_eq!(k, 7);
        assert!(r.connected, "{r:?}");
        // Dropped, its workers end: the channel closes once the last one is gone.
        drop(queue);
        let end = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
    }
}
