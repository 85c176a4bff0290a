//! PATCH(opsconsole): bounds on what authenticated peers may have half-received.
//!
//! `max_message_size` bounds one message, but not how many peers may each be half-way through
//! one: 100 connections that each declared a 16 MB frame and sent 15 MB of it held 1.5 GB.
//! Every connection's decoder reserves the declared bytes of the message it is receiving
//! against a per-connection and a shared (per socket, or per process when several sockets
//! share one [`RecvBudget`]) budget before reading them; a message that would exceed either
//! is refused and its peer closed. The reservation is given back when the message (or
//! command) is complete, or when the connection ends.
//!
//! A peer that has declared a large frame must also keep sending it: one that delivers less
//! than [`RecvLimits::min_rate`] bytes a second, averaged over each
//! [`RecvLimits::window`], is closed (it would otherwise hold its reservation forever). The
//! rate is judged only when the connection has nothing more to read, so a receiver that was
//! itself slow to read never blames the peer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default [`RecvLimits::per_connection`]: the largest default message and room for framing.
pub const DEFAULT_RECV_PER_CONNECTION: usize = crate::DEFAULT_MAX_MESSAGE_SIZE + 64 * 1024;
/// Default [`RecvLimits::global`]: 128 MiB.
pub const DEFAULT_RECV_GLOBAL: usize = 128 * 1024 * 1024;
/// Default [`RecvLimits::slow_frame`]: frames over 64 KiB must keep coming.
pub const DEFAULT_SLOW_FRAME: usize = 64 * 1024;
/// Default [`RecvLimits::min_rate`]: 4 KiB a second.
pub const DEFAULT_MIN_RATE: usize = 4 * 1024;
/// Default [`RecvLimits::window`]: 10 s.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(10);

/// The bounds of a [`RecvBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvLimits {
    /// Bytes one connection may have reserved for the message it is receiving.
    pub per_connection: usize,
    /// Bytes all connections sharing the budget may have reserved together.
    pub global: usize,
    /// Frames declaring at least this many bytes are watched for their pace.
    pub slow_frame: usize,
    /// Bytes a second a watched frame must arrive at, averaged over `window` (0: never judged).
    pub min_rate: usize,
    /// How long each judged stretch is.
    pub window: Duration,
}

impl Default for RecvLimits {
    fn default() -> Self {
        Self {
            per_connection: DEFAULT_RECV_PER_CONNECTION,
            global: DEFAULT_RECV_GLOBAL,
            slow_frame: DEFAULT_SLOW_FRAME,
            min_rate: DEFAULT_MIN_RATE,
            window: DEFAULT_RATE_WINDOW,
        }
    }
}

impl RecvLimits {
    /// Bytes a watched frame must gain in one window.
    pub(crate) fn bytes_per_window(&self) -> u64 {
        (self.min_rate as u64).saturating_mul(self.window.as_millis() as u64) / 1000
    }
}

/// Receive reservations shared by connections, and the count of peers closed for them.
#[derive(Debug, Default)]
pub struct RecvBudget {
    limits: RecvLimits,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    over_budget: AtomicU64,
    too_slow: AtomicU64,
}

impl RecvBudget {
    /// A budget with `limits`, to share between sockets through
    /// [`SocketOptions::recv_budget`](crate::SocketOptions::recv_budget).
    pub fn new(limits: RecvLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            ..Self::default()
        })
    }

    /// Its bounds.
    pub fn limits(&self) -> &RecvLimits {
        &self.limits
    }

    /// Peers closed because a message would have exceeded a budget.
    pub fn over_budget(&self) -> u64 {
        self.over_budget.load(Ordering::Relaxed)
    }

    /// Peers closed because they sent a large frame too slowly.
    pub fn too_slow(&self) -> u64 {
        self.too_slow.load(Ordering::Relaxed)
    }

    /// Bytes reserved now, over all connections.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub(crate) fn count_too_slow(&self) {
        self.too_slow.fetch_add(1, Ordering::Relaxed);
    }

    /// Grows a reservation of `held` bytes to `to`; false (counted) when over a bound.
    fn grow(&self, held: &mut usize, to: usize) -> bool {
        if to <= *held {
            return true;
        }
        if to > self.limits.per_connection {
            self.over_budget.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let extra = to - *held;
        let mut current = self.in_use.load(Ordering::Relaxed);
        loop {
            let next = match current.checked_add(extra) {
                Some(next) if next <= self.limits.global => next,
                _ => {
                    self.over_budget.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            };
            match self.in_use.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    *held = to;
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self, held: &mut usize) {
        if *held > 0 {
            self.in_use.fetch_sub(*held, Ordering::AcqRel);
            *held = 0;
        }
    }
}

/// One connection's reservation; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<RecvBudget>,
    held: usize,
}

impl Reservation {
    pub(crate) fn new(budget: Arc<RecvBudget>) -> Self {
        Self { budget, held: 0 }
    }

    /// Reserves up to `to` bytes in all; false (counted) when a bound refuses it.
    pub(crate) fn grow(&mut self, to: usize) -> bool {
        self.budget.grow(&mut self.held, to)
    }

    /// Gives everything back: the message is complete.
    pub(crate) fn release(&mut self) {
        self.budget.release(&mut self.held);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_respect_both_bounds_and_come_back() {
        let budget = RecvBudget::new(RecvLimits {
            per_connection: 100,
            global: 150,
            ..RecvLimits::default()
        });
        let mut a = Reservation::new(budget.clone());
        let mut b = Reservation::new(budget.clone());
        assert!(!a.grow(101), "over the per-connection bound");
        assert!(a.grow(60) && a.grow(100));
        assert!(b.grow(50));
        assert!(!b.grow(51), "over the global bound");
        assert_eq!((budget.in_use(), budget.over_budget()), (150, 2));
        a.release();
        assert!(b.grow(100));
        drop(b);
        assert_eq!((budget.in_use(), budget.peak()), (0, 150));
    }
}
