//! Every timer of the engine in one deadline heap, waited on by the actor loop with a single
//! sleep: retry backoffs, the reload debounce, the scheduler's next look at the clock, and
//! later monitor intervals and restart backoffs. No task sleeps per timer.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::time::Instant;

/// Items due at deadlines, earliest first; items with the same deadline in insertion order.
pub(super) struct Deadlines<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the earliest deadline must compare greatest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Deadlines<T> {
    /// Makes `item` due at `at`.
    pub fn insert(&mut self, at: Instant, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at, seq, item });
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// Takes the earliest item if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek().is_some_and(|e| e.at <= now) {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    /// How many items wait.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Sleeps until `at`; forever when there is none.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn items_come_out_earliest_first_and_only_when_due() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::default();
        d.insert(t0 + 3 * s, "c");
        d.insert(t0 + s, "a");
        d.insert(t0 + 2 * s, "b1");
        d.insert(t0 + 2 * s, "b2");
        assert_eq!(d.next_deadline(), Some(t0 + s));
        assert_eq!(d.pop_due(t0), None, "nothing is due yet");
        assert_eq!(d.pop_due(t0 + 2 * s), Some("a"));
        assert_eq!(
            d.pop_due(t0 + 2 * s),
            Some("b1"),
            "same deadline: insertion order"
        );
        assert_eq!(d.pop_due(t0 + 2 * s), Some("b2"));
        assert_eq!(d.pop_due(t0 + 2 * s), None);
        assert_eq!(d.len(), 1);
        assert_eq!(d.pop_due(t0 + 10 * s), Some("c"));
        assert_eq!(d.next_deadline(), None);
    }
}
