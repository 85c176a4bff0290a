//! The log pane's bounded buffer: stored pages fetched with `Request::Logs`, live lines from
//! events, de-duplicated where the two overlap, and older pages fetched on scroll-up. It can
//! also follow a service's live output instead of a run (no stored pages then: it starts from
//! the lines the console kept, see `service_logs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::protocol::history::StoredLine;
use crate::protocol::{LogBatch, RunId, Stream};

/// Lines kept in memory; older ones are fetched again when scrolled to.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Lines asked for per request: the most one answer carries.
pub const PAGE: usize = crate::protocol::api::MAX_LOG_PAGE;

/// What the log pane shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The run.
    pub run_id: RunId,
    /// Only this task (all tasks when `None`).
    pub task: Option<String>,
}

/// One line in the buffer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Task that wrote it.
    pub task: Arc<str>,
    /// Its attempt.
    pub attempt: u32,
    /// Which stream.
    pub stream: Stream,
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The text (may hold ANSI colours).
    pub text: String,
}

/// Where the next stored page goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// The last page of what is stored (opening the pane): a huge run opens without reading
    /// everything before its tail.
    Tail,
    /// Reading forward towards the end.
    Forward,
    /// An older page before the first buffered line.
    Older,
}

/// A bounded window over a run's output.
#[derive(Debug)]
pub struct LogBuffer {
    target: Option<LogTarget>,
    /// The service followed instead of a run (then `target` is `None`).
    service: Option<Arc<str>>,
    lines: VecDeque<Entry>,
    capacity: usize,
    /// Store offset of `lines[0]`.
    first_offset: usize,
    /// Per (task, attempt), one past the highest `seq` read from the store: a live line below
    /// it is a duplicate of a stored one.
    stored: HashMap<(Arc<str>, u32), u64>,
    /// Live lines that arrived while the first pages were loading.
    pending: Vec<Arc<LogBatch>>,
    /// True until the forward read reached the end of what is stored.
    loading: bool,
    /// An older page is being fetched.
    fetching_older: bool,
    /// Incremented on every retarget, so that answers for an old target are ignored.
    pub generation: u64,
    /// Lines after the window were dropped (scrolled far up); following re-opens.
    tail_dropped: bool,
    /// Total lines ever appended since the target was set (for the title).
    pub received: u64,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl LogBuffer {
    /// An empty buffer holding at most `capacity` lines.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            target: None,
            service: None,
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            first_offset: 0,
            stored: HashMap::new(),
            pending: Vec::new(),
            loading: false,
            fetching_older: false,
            generation: 0,
            tail_dropped: false,
            received: 0,
        }
    }

    /// What is shown.
    pub fn target(&self) -> Option<&LogTarget> {
        self.target.as_ref()
    }

    /// The service followed, when it follows one instead of a run.
    pub fn service(&self) -> Option<&Arc<str>> {
        self.service.as_ref()
    }

    /// True when a run or a service is shown.
    pub fn is_open(&self) -> bool {
        self.target.is_some() || self.service.is_some()
    }

    /// Follows the live output of service `path`, starting with the lines kept of it.
    pub fn follow_service<'a>(&mut self, path: Arc<str>, kept: impl Iterator<Item = &'a Entry>) {
        self.retarget_empty();
        self.target = None;
        self.service = Some(path);
        // Nothing to read from the store: live lines go in at once.
        self.loading = false;
        for e in kept {
            self.push_back(e.clone());
        }
    }

    /// The stored output of service `path` (oldest first), read once it is followed: it goes
    /// before the lines already shown, which are what arrived live since (those it also
    /// holds are not shown twice).
    pub fn stored_service_lines(
        &mut self,
        path: &str,
        stored: Vec<crate::protocol::service::ServiceLine>,
    ) {
        if self.service.as_deref() != Some(path) || stored.is_empty() {
            return;
        }
        let last = stored.last().map(|l| (l.start_no, l.at));
        let live: Vec<Entry> = self
            .lines
            .drain(..)
            .filter(|e| last.is_none_or(|(start, at)| (u64::from(e.attempt), e.at) > (start, at)))
            .collect();
        let path: Arc<str> = Arc::from(path);
        for l in stored {
            self.push_back(Entry {
                task: path.clone(),
                attempt: u32::try_from(l.start_no).unwrap_or(u32::MAX),
                stream: l.stream,
                at: l.at,
                text: l.text,
            });
        }
        for e in live {
            self.push_back(e);
        }
    }

    /// Appends lines of the service followed; returns true when something was added.
    pub fn push_service(&mut self, path: &str, entries: &[Entry]) -> bool {
        if self.service.as_deref() != Some(path) || entries.is_empty() {
            return false;
        }
        for e in entries {
            self.push_back(e.clone());
        }
        true
    }

    /// Empties the buffer for a new target; returns the first request's offset and limit.
    pub fn retarget(&mut self, target: LogTarget) -> (usize, usize) {
        self.retarget_empty();
        self.target = Some(target);
        (0, PAGE)
    }

    /// Empties the buffer and forgets what it showed; answers for it are ignored from now on.
    fn retarget_empty(&mut self) {
        self.service = None;
        self.lines.clear();
        self.stored.clear();
        self.pending.clear();
        self.first_offset = 0;
        self.loading = true;
        self.fetching_older = false;
        self.tail_dropped = false;
        self.received = 0;
        self.generation += 1;
    }

    /// Buffered lines, oldest first.
    pub fn lines(&self) -> &VecDeque<Entry> {
        &self.lines
    }

    /// Store offset of the first buffered line.
    pub fn first_offset(&self) -> usize {
        self.first_offset
    }

    /// True while the first pages are still being read.
    pub fn is_loading(&self) -> bool {
        self.loading
    }

    /// True when lines before the buffer exist in the store.
    pub fn has_older(&self) -> bool {
        self.first_offset > 0
    }

    /// True when lines after the buffer were dropped.
    pub fn tail_dropped(&self) -> bool {
        self.tail_dropped
    }

    fn matches(&self, batch: &LogBatch) -> bool {
        self.target.as_ref().is_some_and(|t| {
            t.run_id == batch.key.run_id && t.task.as_deref().is_none_or(|n| *batch.key.task == *n)
        })
    }

    /// Appends live lines of the target; returns true when something was added.
    pub fn push_live(&mut self, batch: &Arc<LogBatch>) -> bool {
        if !self.matches(batch) {
            return false;
        }
        if self.loading {
            self.pending.push(batch.clone());
            return false;
        }
        if self.tail_dropped {
            // The user is reading far back; new lines are fetched when they follow again.
            return false;
        }
        let read = self
            .stored
            .get(&(batch.key.task.clone(), batch.key.attempt))
            .copied()
            .unwrap_or(0);
        let mut added = false;
        for l in batch.lines.iter().filter(|l| l.seq >= read) {
            self.push_back(Entry {
                task: batch.key.task.clone(),
                attempt: batch.key.attempt,
                stream: batch.stream,
                at: l.at,
                text: l.text.clone(),
            });
            added = true;
        }
        added
    }

    fn push_back(&mut self, e: Entry) {
        self.lines.push_back(e);
        self.received += 1;
        while self.lines.len() > self.capacity {
            self.lines.pop_front();
            self.first_offset += 1;
        }
    }

    /// Adds a stored page for generation `generation`; returns the next forward request
    /// (offset, limit) while more is stored.
    pub fn on_page(
        &mut self,
        generation: u64,
        kind: PageKind,
        offset: usize,
        page: Vec<StoredLine>,
        more: bool,
    ) -> Option<(usize, usize)> {
        if generation != self.generation {
            return None;
        }
        match kind {
            PageKind::Tail | PageKind::Forward => {
                if kind == PageKind::Tail {
                    // `offset` is where the tail starts in the store.
                    self.first_offset = offset;
                }
                let n = page.len();
                for l in page {
                    let task: Arc<str> = Arc::from(l.task.as_str());
                    let read = self.stored.entry((task.clone(), l.attempt)).or_insert(0);
                    *read = (*read).max(l.seq + 1);
                    self.push_back(Entry {
                        task,
                        attempt: l.attempt,
                        stream: l.stream,
                        at: l.at,
                        text: l.line,
                    });
                }
                if kind == PageKind::Forward && more && n > 0 {
                    return Some((offset + n, PAGE));
                }
                self.loading = false;
                for batch in std::mem::take(&mut self.pending) {
                    self.push_live(&batch);
                }
                None
            }
            PageKind::Older => {
                self.fetching_older = false;
                // Only the part that ends where the buffer starts is used.
                let keep = self.first_offset.saturating_sub(offset).min(page.len());
                for l in page.into_iter().take(keep).rev() {
                    self.lines.push_front(Entry {
                        task: Arc::from(l.task.as_str()),
                        attempt: l.attempt,
                        stream: l.stream,
                        at: l.at,
                        text: l.line,
                    });
                }
                self.first_offset -= keep;
                while self.lines.len() > self.capacity {
                    self.lines.pop_back();
                    self.tail_dropped = true;
                }
                None
            }
        }
    }

    /// The request for the page before the buffer, unless one is under way or none exists.
    pub fn older_request(&mut self) -> Option<(usize, usize)> {
        // A service's older lines are not read back from the store (yet).
        if self.fetching_older || self.loading || self.first_offset == 0 || self.service.is_some() {
            return None;
        }
        self.fetching_older = true;
        let limit = PAGE.min(self.first_offset);
        Some((self.first_offset - limit, limit))
    }

    /// Indices of lines whose text contains `needle` (case-insensitive).
    pub fn matches_of(&self, needle: &str) -> Vec<usize> {
        if needle.is_empty() {
            return Vec::new();
        }
        let needle = needle.to_lowercase();
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, e)| e.text.to_lowercase().contains(&needle))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AttemptKey, LogLine};

    fn stored(task: &str, seq: u64, text: &str) -> StoredLine {
        StoredLine {
            seq,
            task: task.into(),
            attempt: 1,
            stream: Stream::Stdout,
            at: DateTime::<Utc>::UNIX_EPOCH,
            line: text.into(),
        }
    }

    fn batch(task: &str, seqs: std::ops::Range<u64>) -> Arc<LogBatch> {
        Arc::new(LogBatch {
            key: AttemptKey {
                run_id: RunId(1),
                task_idx: 0,
                task: Arc::from(task),
                attempt: 1,
            },
            stream: Stream::Stdout,
            charge: Default::default(),
            lines: seqs
                .map(|seq| LogLine {
                    seq,
                    at: DateTime::<Utc>::UNIX_EPOCH,
                    text: format!("line {seq}"),
                })
                .collect(),
        })
    }

    #[test]
    fn live_lines_already_read_from_the_store_are_not_shown_twice() {
        let mut buf = LogBuffer::default();
        buf.retarget(LogTarget {
            run_id: RunId(1),
            task: None,
        });
        // Lines 0..3 arrive live while the first page (which holds 0 and 1) is loading.
        assert!(!buf.push_live(&batch("a", 0..3)));
        let g = buf.generation;
        let next = buf.on_page(
            g,
            PageKind::Forward,
            0,
            vec![stored("a", 0, "line 0"), stored("a", 1, "line 1")],
            false,
        );
        assert_eq!(next, None);
        let texts: Vec<&str> = buf.lines().iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["line 0", "line 1", "line 2"]);
        assert!(buf.push_live(&batch("a", 3..4)));
        assert_eq!(buf.lines().len(), 4);
    }

    #[test]
    fn the_buffer_is_bounded_and_older_pages_fill_in_front() {
        let mut buf = LogBuffer::with_capacity(3);
        buf.retarget(LogTarget {
            run_id: RunId(1),
            task: None,
        });
        let g = buf.generation;
        let page: Vec<StoredLine> = (0..5).map(|i| stored("a", i, &format!("{i}"))).collect();
        buf.on_page(g, PageKind::Forward, 0, page, false);
        let texts: Vec<&str> = buf.lines().iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["2", "3", "4"]);
        assert!(buf.has_older());
        let (offset, limit) = buf.older_request().expect("older page");
        assert_eq!((offset, limit), (0, 2));
        assert_eq!(buf.older_request(), None, "one request at a time");
        let older: Vec<StoredLine> = (0..2).map(|i| stored("a", i, &format!("{i}"))).collect();
        buf.on_page(g, PageKind::Older, offset, older, true);
        let texts: Vec<&str> = buf.lines().iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["0", "1", "2"]);
        assert!(buf.tail_dropped());
    }

    #[test]
    fn answers_for_an_old_target_are_ignored() {
        let mut buf = LogBuffer::default();
        buf.retarget(LogTarget {
            run_id: RunId(1),
            task: None,
        });
        let old = buf.generation;
        buf.retarget(LogTarget {
            run_id: RunId(2),
            task: None,
        });
        buf.on_page(old, PageKind::Forward, 0, vec![stored("a", 0, "x")], false);
        assert!(buf.lines().is_empty());
    }
}
