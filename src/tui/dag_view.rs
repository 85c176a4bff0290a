//! The DAG of a run: tasks in columns by dependency level, edges drawn with box characters in
//! the gutters, states coloured, scrollable for graphs larger than the screen.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

use super::theme::Theme;
use crate::humantime::format_duration;
use crate::protocol::TaskState;
use crate::protocol::api::TaskDetail;

/// Narrowest gap between two levels, where edges run: the source's stub, a bend, the arrow.
const GUTTER: usize = 3;
/// Narrowest task cell when squeezing columns into the view.
const MIN_COLUMN: usize = 16;

/// Where every task sits. An edge that skips levels passes through a virtual node in each
/// level it skips, so that every edge segment joins neighbouring columns and long edges get a
/// row of their own instead of running through other tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Node ids per column, top to bottom: ids below `tasks` are tasks, the rest virtual.
    pub columns: Vec<Vec<usize>>,
    /// (column, row) of each node.
    pub pos: Vec<(usize, usize)>,
    /// Edge segments (from node, to node) between neighbouring columns.
    pub segments: Vec<(usize, usize)>,
    /// Number of real tasks.
    pub tasks: usize,
    /// Width of the gap after each column but the last.
    pub gutters: Vec<usize>,
    /// Per segment: the column within its gap where it turns.
    pub bends: HashMap<(usize, usize), usize>,
    /// Width of a task's cell.
    pub col_width: usize,
    /// Width that shows every name, duration and attempt count in full.
    pub natural_width: usize,
}

impl Layout {
    /// Lays out `tasks` (in spec order; names in `depends_on` that are missing are ignored).
    pub fn new(tasks: &[TaskDetail]) -> Self {
        let index: HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let parents: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| {
                t.depends_on
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .collect();
        // Longest path from a root; iterating to a fixed point tolerates any input order and
        // stops on a (never valid) cycle after n passes.
        let n = tasks.len();
        let mut level = vec![0usize; n];
        for _ in 0..n {
            let mut changed = false;
            for i in 0..n {
                let l = parents[i].iter().map(|&p| level[p] + 1).max().unwrap_or(0);
                if l != level[i] && l < n {
                    level[i] = l;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Chains of virtual nodes for edges that skip levels.
        let mut node_parents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut segments = Vec::new();
        for (child, ps) in parents.iter().enumerate() {
            for &p in ps {
                if level[child] <= level[p] {
                    continue;
                }
                let mut prev = p;
                for l in level[p] + 1..level[child] {
                    let v = level.len();
                    level.push(l);
                    node_parents.push(vec![prev]);
                    segments.push((prev, v));
                    prev = v;
                }
                segments.push((prev, child));
                node_parents[child].push(prev);
            }
        }
        let nodes = level.len();
        let depth = level.iter().max().map_or(0, |m| m + 1);
        let mut columns: Vec<Vec<usize>> = vec![Vec::new(); depth];
        let mut pos = vec![(0usize, 0usize); nodes];
        for (c, column) in columns.iter_mut().enumerate() {
            let mut members: Vec<(f64, usize)> = (0..nodes)
                .filter(|&i| level[i] == c)
                .map(|i| {
                    // Barycentre of the parents' rows: fewer crossings than spec order.
                    let rows: Vec<f64> = node_parents[i].iter().map(|&p| pos[p].1 as f64).collect();
                    let key = if rows.is_empty() {
                        i as f64
                    } else {
                        rows.iter().sum::<f64>() / rows.len() as f64
                    };
                    (key, i)
                })
                .collect();
            members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (row, (_, i)) in members.iter().enumerate() {
                pos[*i] = (c, row);
                column.push(*i);
            }
        }
        let name_width = tasks
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(0);
        let attempts = if tasks.iter().any(|t| t.max_attempts > 1) {
            5
        } else {
            0
        };
        // Symbol and space, name, " 12.3s", " 2/4".
        let natural_width = (2 + name_width + 7 + attempts).clamp(MIN_COLUMN, 40);
        // Vertical runs in each gap: a task that fans out gets one trunk for all its edges,
        // other edges share a trunk per target (a fan-in); distinct trunks never overlap.
        let mut gutters = vec![GUTTER; depth.saturating_sub(1)];
        let mut bends = HashMap::new();
        for (c, width) in gutters.iter_mut().enumerate() {
            let here: Vec<(usize, usize)> = segments
                .iter()
                .copied()
                .filter(|(a, b)| pos[*a].0 == c && pos[*a].1 != pos[*b].1)
                .collect();
            let fan_out = |a: usize| here.iter().filter(|(x, _)| *x == a).count() > 1;
            let trunk = |(a, b): (usize, usize)| if fan_out(a) { (a, true) } else { (b, false) };
            let mut trunks: Vec<(usize, bool)> = here.iter().map(|&s| trunk(s)).collect();
            trunks.sort_by_key(|&(node, _)| (pos[node].1, node));
            trunks.dedup();
            for &seg in &here {
                let k = trunks.iter().position(|t| *t == trunk(seg)).unwrap_or(0);
                bends.insert(seg, 1 + k);
            }
            *width = (trunks.len() + 2).max(GUTTER);
        }
        Self {
            columns,
            pos,
            segments,
            tasks: n,
            gutters,
            bends,
            col_width: natural_width,
            natural_width,
        }
    }

    /// The tasks (not virtual nodes) of column `c`, top to bottom.
    pub fn tasks_in(&self, c: usize) -> Vec<usize> {
        self.columns
            .get(c)
            .map(|col| col.iter().copied().filter(|&i| i < self.tasks).collect())
            .unwrap_or_default()
    }

    /// Narrows the columns (down to a minimum) so that every level fits in `view_width`.
    pub fn fit(&mut self, view_width: usize) {
        let n = self.columns.len().max(1);
        let gaps: usize = self.gutters.iter().sum();
        let room = view_width.saturating_sub(gaps) / n;
        self.col_width = room.clamp(MIN_COLUMN.min(self.natural_width), self.natural_width);
    }

    /// Width and height of the whole drawing.
    pub fn size(&self) -> (usize, usize) {
        let w = self.columns.len() * self.col_width + self.gutters.iter().sum::<usize>();
        let h = self.columns.iter().map(Vec::len).max().unwrap_or(0);
        (w, h)
    }

    fn x(&self, col: usize) -> usize {
        col * self.col_width + self.gutters.iter().take(col).sum::<usize>()
    }

    /// The task `drow` tasks down from `from` in its column, or the task nearest in row in the
    /// column `dcol` columns over; `from` when there is none.
    pub fn step(&self, from: usize, dcol: isize, drow: isize) -> usize {
        let Some(&(c, r)) = self.pos.get(from) else {
            return from;
        };
        let nc = c as isize + dcol;
        if nc < 0 || nc as usize >= self.columns.len() {
            return from;
        }
        let column = self.tasks_in(nc as usize);
        if column.is_empty() {
            return from;
        }
        if dcol == 0 {
            let at = column.iter().position(|&i| i == from).unwrap_or(0) as isize;
            let to = (at + drow).clamp(0, column.len() as isize - 1) as usize;
            return column[to];
        }
        column
            .iter()
            .copied()
            .min_by_key(|&i| self.pos[i].1.abs_diff(r))
            .unwrap_or(from)
    }

    /// Adjusts `scroll` (x, y) so that task `sel` is visible in a `w`x`h` view.
    pub fn scroll_to(&self, sel: usize, w: usize, h: usize, scroll: &mut (usize, usize)) {
        let Some(&(c, r)) = self.pos.get(sel) else {
            return;
        };
        let (x0, x1) = (self.x(c), self.x(c) + self.col_width);
        if x0 < scroll.0 {
            scroll.0 = x0;
        } else if x1 > scroll.0 + w {
            scroll.0 = x1.saturating_sub(w);
        }
        if r < scroll.1 {
            scroll.1 = r;
        } else if r >= scroll.1 + h {
            scroll.1 = r + 1 - h.max(1);
        }
    }
}

const UP: u8 = 1;
const DOWN: u8 = 2;
const LEFT: u8 = 4;
const RIGHT: u8 = 8;

fn box_char(bits: u8) -> char {
    match bits {
        b if b == UP | DOWN | LEFT | RIGHT => '┼',
        b if b == UP | DOWN | RIGHT => '├',
        b if b == UP | DOWN | LEFT => '┤',
        b if b == LEFT | RIGHT | DOWN => '┬',
        b if b == LEFT | RIGHT | UP => '┴',
        b if b == DOWN | RIGHT => '┌',
        b if b == DOWN | LEFT => '┐',
        b if b == UP | RIGHT => '└',
        b if b == UP | LEFT => '┘',
        b if b & (UP | DOWN) != 0 && b & (LEFT | RIGHT) == 0 => '│',
        _ => '─',
    }
}

/// The symbol of a task state, one column wide.
pub fn state_symbol(s: TaskState) -> char {
    match s {
        TaskState::Pending => '·',
        TaskState::Queued => '○',
        TaskState::Running => '●',
        TaskState::Retrying => '↻',
        TaskState::Succeeded => '✓',
        TaskState::Failed => '✗',
        TaskState::TimedOut => '⌛',
        TaskState::Cancelled => '⊘',
        TaskState::Skipped => '»',
    }
}

/// How long a task ran (or has been running, against `now`).
pub fn task_duration(t: &TaskDetail, now: DateTime<Utc>) -> Option<String> {
    let start = t.started_at?;
    let end = match t.ended_at {
        Some(e) => e,
        None if t.state == TaskState::Running => now,
        None => return None,
    };
    Some(format_duration((end - start).to_std().unwrap_or_default()))
}

/// The cell text of a task: symbol, name, duration, attempts.
pub fn node_label(t: &TaskDetail, now: DateTime<Utc>, width: usize) -> String {
    let attempts = if t.max_attempts > 1 || t.attempt > 1 {
        format!(" {}/{}", t.attempt, t.max_attempts)
    } else {
        String::new()
    };
    let name_len = t.name.chars().count();
    let mut extra = String::new();
    if let Some(d) = task_duration(t, now) {
        // In a narrow cell the name matters more than the duration.
        if 2 + name_len + 1 + d.chars().count() + attempts.chars().count() <= width {
            extra.push(' ');
            extra.push_str(&d);
        }
    }
    extra.push_str(&attempts);
    let room = width.saturating_sub(2 + extra.chars().count());
    let mut name: String = t.name.chars().take(room).collect();
    if name_len > room && room > 0 {
        name.pop();
        name.push('…');
    }
    let pad = room.saturating_sub(name.chars().count());
    format!(
        "{} {name}{:pad$}{extra}",
        state_symbol(t.state),
        "",
        pad = pad
    )
}

/// One line about a task: state, duration, attempts, what it waits for.
pub fn task_summary(t: &TaskDetail, now: DateTime<Utc>) -> String {
    let mut parts = vec![t.name.clone(), t.state.to_string()];
    if let Some(d) = task_duration(t, now) {
        parts.push(d);
    }
    parts.push(format!("attempt {}/{}", t.attempt, t.max_attempts));
    if !t.depends_on.is_empty() {
        parts.push(format!("after {}", t.depends_on.join(", ")));
    }
    parts.join(" · ")
}

/// Draws the DAG into `area` of `buf`, scrolled by `scroll`, with task `selected` highlighted.
#[allow(clippy::too_many_arguments)]
pub fn render(
    tasks: &[TaskDetail],
    layout: &Layout,
    selected: Option<usize>,
    scroll: (usize, usize),
    now: DateTime<Utc>,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let mut edges: HashMap<(usize, usize), u8> = HashMap::new();
    let link = |edges: &mut HashMap<(usize, usize), u8>, a: (usize, usize), b: (usize, usize)| {
        // a and b are neighbours; set the bits facing each other.
        let (ba, bb) = if a.1 == b.1 {
            if a.0 < b.0 {
                (RIGHT, LEFT)
            } else {
                (LEFT, RIGHT)
            }
        } else if a.1 < b.1 {
            (DOWN, UP)
        } else {
            (UP, DOWN)
        };
        *edges.entry(a).or_default() |= ba;
        *edges.entry(b).or_default() |= bb;
    };
    let mut arrows = Vec::new();
    for &(a, b) in &layout.segments {
        let ((ca, ra), (cb, rb)) = (layout.pos[a], layout.pos[b]);
        let start = layout.x(ca) + layout.col_width;
        let end = layout.x(cb) - 1;
        let bend = start + layout.bends.get(&(a, b)).copied().unwrap_or(1);
        let mut path = vec![(start, ra)];
        let mut at = (start, ra);
        while at.0 < bend {
            at = (at.0 + 1, at.1);
            path.push(at);
        }
        while at.1 != rb {
            at = (at.0, if rb > at.1 { at.1 + 1 } else { at.1 - 1 });
            path.push(at);
        }
        // Through a virtual node the line goes on to where its next segment starts.
        let stop = if b < layout.tasks {
            end
        } else {
            layout.x(cb) + layout.col_width
        };
        while at.0 < stop {
            at = (at.0 + 1, at.1);
            path.push(at);
        }
        for w in path.windows(2) {
            link(&mut edges, w[0], w[1]);
        }
        *edges.entry((start, ra)).or_default() |= LEFT;
        if b < layout.tasks {
            arrows.push((end, rb));
        }
    }
    let view = |x: usize, y: usize| -> Option<(u16, u16)> {
        let vx = x.checked_sub(scroll.0)?;
        let vy = y.checked_sub(scroll.1)?;
        (vx < area.width as usize && vy < area.height as usize)
            .then(|| (area.x + vx as u16, area.y + vy as u16))
    };
    let edge_style = theme.muted();
    for (&(x, y), &bits) in &edges {
        if let Some((vx, vy)) = view(x, y) {
            buf[(vx, vy)].set_char(box_char(bits)).set_style(edge_style);
        }
    }
    for &(x, y) in &arrows {
        if let Some((vx, vy)) = view(x, y) {
            buf[(vx, vy)].set_char('▶').set_style(edge_style);
        }
    }
    for (i, t) in tasks.iter().enumerate() {
        let Some(&(c, r)) = layout.pos.get(i) else {
            continue;
        };
        let mut style: Style = theme.task_state(t.state);
        if selected == Some(i) {
            style = style.patch(theme.selected());
        }
        let label = node_label(t, now, layout.col_width);
        for (dx, ch) in label.chars().enumerate() {
            if let Some((vx, vy)) = view(layout.x(c) + dx, r) {
                buf[(vx, vy)].set_char(ch).set_style(style);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str, deps: &[&str]) -> TaskDetail {
        TaskDetail {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            state: TaskState::Pending,
            attempt: 0,
            max_attempts: 1,
            started_at: None,
            ended_at: None,
        }
    }

    #[test]
    fn tasks_go_into_columns_by_level() {
        let tasks = [
            task("extract", &[]),
            task("b", &["extract"]),
            task("c", &["extract"]),
            task("load", &["b", "c"]),
            task("late", &["extract", "load"]),
        ];
        let l = Layout::new(&tasks);
        let real: Vec<Vec<usize>> = (0..l.columns.len()).map(|c| l.tasks_in(c)).collect();
        assert_eq!(real, vec![vec![0], vec![1, 2], vec![3], vec![4]]);
        // extract -> late skips two levels: a virtual node in each.
        assert_eq!(l.columns[1].len(), 3);
        assert_eq!(l.columns[2].len(), 2);
        assert_eq!(l.step(0, 1, 0), 1);
        assert_eq!(l.step(2, 1, 0), 3);
        assert_eq!(l.step(1, 0, 1), 2);
        assert_eq!(l.step(2, 0, 1), 2, "virtual nodes are not selectable");
    }

    #[test]
    fn a_large_graph_scrolls_to_the_selection() {
        let tasks: Vec<TaskDetail> = (0..150).map(|i| task(&format!("t{i}"), &[])).collect();
        let l = Layout::new(&tasks);
        assert_eq!(l.size().1, 150);
        let mut scroll = (0, 0);
        l.scroll_to(120, 80, 20, &mut scroll);
        assert_eq!(scroll, (0, 101));
    }

    #[test]
    fn columns_narrow_to_fit_the_view_but_not_below_a_minimum() {
        let tasks = [
            task("a-rather-long-task-name", &[]),
            task("b", &["a-rather-long-task-name"]),
            task("c", &["b"]),
        ];
        let mut l = Layout::new(&tasks);
        assert_eq!(l.natural_width, 2 + 23 + 7);
        l.fit(200);
        assert_eq!(l.col_width, l.natural_width);
        l.fit(60);
        assert_eq!(l.col_width, 18);
        assert!(l.size().0 <= 60);
        l.fit(10);
        assert_eq!(l.col_width, MIN_COLUMN);
    }
}
