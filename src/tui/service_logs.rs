//! Recent output of every service, as it arrives in `Event::ServiceLogs`: a bounded ring of
//! lines per service, and a bounded number of services, so that a console left open on a
//! chatty tree keeps a fixed amount of memory. The logs pane and the Supervisors pane's
//! detail read from it; nothing is fetched from the store for services.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::logs::Entry;
use crate::protocol::service::ServiceLogBatch;

/// Lines kept per service.
pub const LINES_PER_SERVICE: usize = 2_000;
/// Services whose lines are kept; the one written to least recently is dropped first.
pub const MAX_SERVICES: usize = 256;

/// The rings, by service path.
#[derive(Debug, Default)]
pub struct ServiceLogs {
    rings: BTreeMap<Arc<str>, Ring>,
    /// Incremented on every line, to find the ring written to least recently.
    clock: u64,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<Entry>,
    /// [`ServiceLogs::clock`] at its last line.
    touched: u64,
}

impl ServiceLogs {
    /// Keeps the batch's lines; returns them as buffer entries (for a logs pane that follows
    /// this service).
    pub fn push(&mut self, batch: &ServiceLogBatch) -> Vec<Entry> {
        let entries: Vec<Entry> = batch
            .lines
            .iter()
            .map(|l| Entry {
                task: batch.path.clone(),
                attempt: u32::try_from(batch.start_no).unwrap_or(u32::MAX),
                stream: batch.stream,
                at: l.at,
                text: l.text.clone(),
            })
            .collect();
        if entries.is_empty() {
            return entries;
        }
        if !self.rings.contains_key(&batch.path) && self.rings.len() >= MAX_SERVICES {
            self.evict_oldest();
        }
        self.clock += 1;
        let ring = self.rings.entry(batch.path.clone()).or_default();
        ring.touched = self.clock;
        ring.lines.extend(entries.iter().cloned());
        let over = ring.lines.len().saturating_sub(LINES_PER_SERVICE);
        ring.lines.drain(..over);
        entries
    }

    /// The lines kept for `path`, oldest first.
    pub fn lines(&self, path: &str) -> impl Iterator<Item = &Entry> {
        self.rings
            .get(path)
            .into_iter()
            .flat_map(|r| r.lines.iter())
    }

    /// The newest line kept for `path`.
    pub fn last(&self, path: &str) -> Option<&Entry> {
        self.rings.get(path).and_then(|r| r.lines.back())
    }

    /// How many services have lines kept.
    pub fn services(&self) -> usize {
        self.rings.len()
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .rings
            .iter()
            .min_by_key(|(_, r)| r.touched)
            .map(|(p, _)| p.clone());
        if let Some(p) = oldest {
            self.rings.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LogLine, Stream};
    use chrono::{DateTime, Utc};

    fn batch(path: &str, n: u64) -> ServiceLogBatch {
        ServiceLogBatch {
            path: Arc::from(path),
            start_no: 1,
            stream: Stream::Stdout,
            charge: Default::default(),
            lines: (0..n)
                .map(|seq| LogLine {
                    seq,
                    at: DateTime::<Utc>::UNIX_EPOCH,
                    text: format!("line {seq}"),
                })
                .collect(),
        }
    }

    #[test]
    fn each_service_keeps_its_newest_lines_and_few_services_are_kept() {
        let mut logs = ServiceLogs::default();
        logs.push(&batch("web/api", LINES_PER_SERVICE as u64 + 5));
        let kept: Vec<&str> = logs.lines("web/api").map(|e| e.text.as_str()).collect();
        assert_eq!(kept.len(), LINES_PER_SERVICE);
        assert_eq!(kept[0], "line 5");
        for i in 0..MAX_SERVICES {
            logs.push(&batch(&format!("s/{i}"), 1));
        }
        // web/api was written to least recently: it went first.
        assert_eq!(logs.services(), MAX_SERVICES);
        assert_eq!(logs.lines("web/api").count(), 0);
        assert_eq!(logs.last("s/0").map(|e| e.text.as_str()), Some("line 0"));
    }
}
