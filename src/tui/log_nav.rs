//! Opening, scrolling, following and searching the logs pane.

use super::app::{App, Effect, Purpose};
use super::keymap::Pane;
use super::logs::{LogTarget, PageKind};
use crate::protocol::RunId;
use crate::protocol::api::Request;

impl App {
    /// Opens the logs of a run (or one task) in the logs pane.
    pub fn open_logs(&mut self, run_id: RunId, task: Option<String>) -> Vec<Effect> {
        self.view.show(Pane::Logs);
        let (offset, limit) = self.data.logs.retarget(LogTarget {
            run_id,
            task: task.clone(),
        });
        self.view.log_view.follow = true;
        self.view.log_view.top = 0;
        self.view.log_view.current_match = None;
        vec![self.logs_call(offset, limit, PageKind::Tail)]
    }

    pub(super) fn logs_call(&self, offset: usize, limit: usize, kind: PageKind) -> Effect {
        let t = self.data.logs.target().cloned();
        let (run_id, task) = t.map(|t| (t.run_id, t.task)).unwrap_or((RunId(0), None));
        Effect::Call(
            Request::Logs {
                run_id,
                task,
                stream: None,
                offset,
                limit,
                from_end: kind == PageKind::Tail,
            },
            Purpose::Logs {
                generation: self.data.logs.generation,
                kind,
                offset,
            },
        )
    }

    pub(super) fn set_follow(&mut self, on: bool) -> Vec<Effect> {
        if self.view.log_view.follow && !on {
            // Stay where the view was instead of jumping to the top.
            self.view.log_view.top = self.follow_top();
        }
        self.view.log_view.follow = on;
        if on
            && self.data.logs.tail_dropped()
            && let Some(t) = self.data.logs.target().cloned()
        {
            return self.open_logs(t.run_id, t.task);
        }
        Vec::new()
    }

    /// Store offset of the first line when following (the last page of lines).
    pub(super) fn follow_top(&self) -> usize {
        let len = self.data.logs.lines().len();
        self.data.logs.first_offset() + len.saturating_sub(self.view.log_height.max(1))
    }

    pub(super) fn scroll_logs(&mut self, delta: isize) -> Vec<Effect> {
        let first = self.data.logs.first_offset();
        let len = self.data.logs.lines().len();
        let max_top = self.follow_top();
        let cur = if self.view.log_view.follow {
            max_top
        } else {
            self.view.log_view.top.clamp(first, max_top.max(first))
        };
        let next = (cur as isize + delta).clamp(first as isize, max_top as isize) as usize;
        self.view.log_view.top = next;
        self.view.log_view.follow = next >= max_top && delta > 0 && len > 0;
        if next == first
            && delta < 0
            && let Some((offset, limit)) = self.data.logs.older_request()
        {
            return vec![self.logs_call(offset, limit, PageKind::Older)];
        }
        Vec::new()
    }

    pub(super) fn jump_match(&mut self, forward: bool) {
        let matches = self.data.logs.matches_of(&self.view.log_view.search);
        if matches.is_empty() {
            self.warn(if self.view.log_view.search.is_empty() {
                "no search: press / to search".to_string()
            } else {
                format!("no line matches `{}`", self.view.log_view.search)
            });
            return;
        }
        let cur = self.view.log_view.current_match;
        let next = if forward {
            matches
                .iter()
                .copied()
                .find(|&m| cur.is_none_or(|c| m > c))
                .unwrap_or(matches[0])
        } else {
            matches
                .iter()
                .rev()
                .copied()
                .find(|&m| cur.is_none_or(|c| m < c))
                .unwrap_or(matches[matches.len() - 1])
        };
        self.view.log_view.current_match = Some(next);
        self.view.log_view.follow = false;
        // Put the match a third of the way down the view.
        let first = self.data.logs.first_offset();
        self.view.log_view.top = (first + next)
            .saturating_sub(self.view.log_height / 3)
            .max(first);
        let pos = matches.iter().position(|&m| m == next).unwrap_or(0) + 1;
        self.say(format!(
            "match {pos}/{} for `{}`",
            matches.len(),
            self.view.log_view.search
        ));
    }
}
