//! Supervisors: every supervision tree as a tree (tui-tree-widget), each supervisor and service
//! with its state, pid, uptime, restarts, readiness, hold, backoff and last exit, the selected
//! node in full below; `s`, `x`, `r` start, stop (and hold) and restart the selected node (a
//! supervisor: its subtree; each asks first), `l` follows a service's output in the logs pane.

use std::collections::HashSet;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, StatefulWidget, Wrap};
use tui_tree_widget::{Tree, TreeItem, TreeState};

use super::pane::{PaneDef, filter_suffix};
use crate::humantime::format_duration;
use crate::protocol::Stream;
use crate::protocol::api::Request;
use crate::protocol::service::{ServiceAction, ServiceNode, ServiceState};
use crate::tui::app::{App, Effect, Purpose};
use crate::tui::dialogs::Modal;
use crate::tui::dialogs::confirm::Confirmed;
use crate::tui::draw::{block, inner, note};
use crate::tui::keymap::{Action, Arg, Binding, Context, Pane, Scope, b, code, k};
use crate::tui::theme::Theme;

const HERE: Scope = Scope::In(&[Context::Pane(Pane::Supervisors)]);

/// Keys of the Supervisors pane.
pub static BINDINGS: &[Binding] = &[
    b(
        &[k('s')],
        Action::ServiceStart,
        HERE,
        "start the service or subtree, releasing a hold (asks first)",
    )
    .hint("start")
    .mutating(),
    b(
        &[k('x')],
        Action::ServiceStop,
        HERE,
        "stop the service or subtree and hold it stopped (asks first)",
    )
    .hint("stop")
    .mutating(),
    b(
        &[k('r')],
        Action::ServiceRestart,
        HERE,
        "restart the service or subtree (asks first)",
    )
    .hint("restart")
    .mutating(),
    b(
        &[k('l')],
        Action::OpenLogs,
        HERE,
        "follow the service's output in the logs pane",
    )
    .hint("logs"),
    b(
        &[code(KeyCode::Left)],
        Action::Left,
        HERE,
        "close the subtree, or go to the parent",
    ),
    b(
        &[code(KeyCode::Right)],
        Action::Right,
        HERE,
        "open the subtree",
    ),
];

/// The Supervisors pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Supervisors,
    show_help: "supervisors pane",
    show_arg: Arg::None,
    bindings: BINDINGS,
    act,
    fit,
    draw,
    rows: |app| visible(app).len(),
};

/// Widths of the columns after the name.
const STATE_W: usize = 12;
const PID_W: usize = 7;
const UP_W: usize = 8;
const RESTARTS_W: usize = 9;
const READY_W: usize = 6;
/// The tree's own prefix per line: the open/closed symbol.
const SYMBOL_W: usize = 2;

impl App {
    /// The selected node: the one the tree selects if it is shown, else the first shown.
    pub fn selected_service(&self) -> Option<&ServiceNode> {
        let shown = kept(self);
        let want = self.view.services.tree.selected().last();
        want.and_then(|p| shown.iter().find(|n| n.path == *p))
            .or_else(|| shown.first())
            .copied()
    }

    /// Opens the supervisors not seen before, so that a tree shows whole when it first
    /// appears; one the user closed stays closed.
    pub(crate) fn open_new_supervisors(&mut self) {
        let Some(nodes) = self.data.services.as_ref() else {
            return;
        };
        let v = &mut self.view.services;
        for (n, id) in nodes.iter().zip(identifiers(nodes)) {
            if n.supervisor && v.seen.insert(n.path.clone()) {
                v.tree.open(id);
            }
        }
    }
}

fn act(app: &mut App, action: Action, _: Option<&str>) -> Option<Vec<Effect>> {
    match action {
        Action::ServiceStart => ask(app, ServiceAction::Start),
        Action::ServiceStop => ask(app, ServiceAction::Stop),
        Action::ServiceRestart => ask(app, ServiceAction::Restart),
        Action::OpenLogs => return Some(open_logs(app)),
        Action::Left => {
            select_shown(app);
            app.view.services.tree.key_left();
        }
        Action::Right => {
            select_shown(app);
            app.view.services.tree.key_right();
        }
        Action::Enter => {
            select_shown(app);
            app.view.services.tree.toggle_selected();
        }
        _ => {
            let delta = action.step(app.view.page)?;
            move_by(app, delta);
        }
    }
    Some(Vec::new())
}

/// Makes the tree's selection the node the pane shows as selected (the first one until
/// something was chosen), so that the tree's own keys act on it.
fn select_shown(app: &mut App) {
    let Some(path) = app.selected_service().map(|n| n.path.clone()) else {
        return;
    };
    if app.view.services.tree.selected().last() != Some(&path)
        && let Some(id) = visible(app).into_iter().find(|id| id.last() == Some(&path))
    {
        app.view.services.tree.select(id);
    }
}

/// Moves the selection `delta` lines over the lines shown (closed subtrees skipped).
fn move_by(app: &mut App, delta: isize) {
    let shown = visible(app);
    if shown.is_empty() {
        return;
    }
    let current = app
        .selected_service()
        .and_then(|n| shown.iter().position(|id| id.last() == Some(&n.path)))
        .unwrap_or(0);
    let last = shown.len() - 1;
    let next = (current as isize)
        .saturating_add(delta)
        .clamp(0, last as isize) as usize;
    app.view.services.tree.select(shown[next].clone());
}

/// `s`, `x`, `r`: asks, naming what the action reaches.
fn ask(app: &mut App, action: ServiceAction) {
    let Some(n) = app.selected_service() else {
        app.warn("no service is listed: add a `kind: supervisor` file to the workflows directory");
        return;
    };
    let question = question(app, n, action);
    let then = Confirmed::ServiceControl(n.path.clone(), action);
    app.view.modal = Some(Modal::Confirm { question, then });
}

fn question(app: &App, n: &ServiceNode, action: ServiceAction) -> String {
    let what = if n.supervisor {
        let under = app
            .data
            .services
            .iter()
            .flatten()
            .filter(|m| is_under(&m.path, &n.path))
            .count();
        format!("supervisor {} and the {under} node(s) under it", n.path)
    } else {
        n.path.clone()
    };
    match action {
        ServiceAction::Start if n.held => format!("Start {what}? This releases the hold."),
        ServiceAction::Start => format!("Start {what}?"),
        ServiceAction::Stop => format!(
            "Stop {what}? It stays stopped (held), across principal restarts too, until started."
        ),
        ServiceAction::Restart => format!("Restart {what}? It is stopped and started again."),
    }
}

/// `l`: the selected service's output, live, in the logs pane.
fn open_logs(app: &mut App) -> Vec<Effect> {
    let Some(n) = app.selected_service() else {
        app.warn("select a service first");
        return Vec::new();
    };
    if n.supervisor {
        app.warn(format!(
            "{} is a supervisor: it has no output of its own; select one of its services",
            n.path
        ));
        return Vec::new();
    }
    let path: std::sync::Arc<str> = std::sync::Arc::from(n.path.as_str());
    let kept = app.data.service_logs.lines(&path);
    app.data.logs.follow_service(path.clone(), kept);
    let v = &mut app.view.log_view;
    v.follow = true;
    v.top = 0;
    v.current_match = None;
    app.view.show(Pane::Logs);
    app.say(format!(
        "following {path}: its stored output, then what comes"
    ));
    vec![Effect::Call(
        Request::ServiceLogs {
            path: Some(path.to_string()),
            limit: crate::tui::service_logs::LINES_PER_SERVICE,
            offset: None,
        },
        Purpose::ServiceLines(path),
    )]
}

fn is_under(path: &str, parent: &str) -> bool {
    path.strip_prefix(parent)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Each node's identifier in the tree: the paths of its ancestors and its own, from the
/// depths of the nodes in tree order.
fn identifiers(nodes: &[ServiceNode]) -> Vec<Vec<String>> {
    let mut chain: Vec<String> = Vec::new();
    nodes
        .iter()
        .map(|n| {
            chain.truncate(n.depth);
            chain.push(n.path.clone());
            chain.clone()
        })
        .collect()
}

/// The nodes the filter keeps (with their ancestors, so that each stays in its tree).
fn kept(app: &App) -> Vec<&ServiceNode> {
    let Some(nodes) = app.data.services.as_ref() else {
        return Vec::new();
    };
    let f = app.view.filter(Pane::Supervisors).to_lowercase();
    if f.is_empty() {
        return nodes.iter().collect();
    }
    let mut keep: HashSet<&str> = HashSet::new();
    for (n, id) in nodes.iter().zip(identifiers(nodes)) {
        if format!("{} {}", n.path, n.state)
            .to_lowercase()
            .contains(&f)
        {
            for p in id {
                if let Some(a) = nodes.iter().find(|m| m.path == p) {
                    keep.insert(a.path.as_str());
                }
            }
        }
    }
    nodes
        .iter()
        .filter(|n| keep.contains(n.path.as_str()))
        .collect()
}

/// The identifiers of the lines shown, in order (closed subtrees hide their nodes).
fn visible(app: &App) -> Vec<Vec<String>> {
    let items = items(app, &|_| Line::default());
    app.view
        .services
        .tree
        .flatten(&items)
        .into_iter()
        .map(|f| f.identifier)
        .collect()
}

/// The tree's items, each node's line made by `line`.
fn items(
    app: &App,
    line: &dyn Fn(&ServiceNode) -> Line<'static>,
) -> Vec<TreeItem<'static, String>> {
    let nodes = kept(app);
    let mut at = 0;
    build(&nodes, &mut at, 0, line)
}

/// The items from `nodes[*at]` on at `depth` or deeper, each with its children.
fn build(
    nodes: &[&ServiceNode],
    at: &mut usize,
    depth: usize,
    line: &dyn Fn(&ServiceNode) -> Line<'static>,
) -> Vec<TreeItem<'static, String>> {
    let mut out = Vec::new();
    while let Some(n) = nodes.get(*at).filter(|n| n.depth >= depth) {
        *at += 1;
        let children = build(nodes, at, n.depth + 1, line);
        // Names are unique among siblings (the spec checks); a duplicate is left out rather
        // than losing the whole tree.
        if let Ok(item) = TreeItem::new(n.path.clone(), line(n), children) {
            out.push(item);
        }
    }
    out
}

/// The tree on top (a header line, then the lines), the selected node in full below.
fn areas(area: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Min(6), Constraint::Length(6)]).areas(area)
}

/// Where the tree's lines go inside its block: below the header.
fn lines_area(tree: Rect) -> Rect {
    let i = inner(tree);
    Rect {
        y: i.y + 1,
        height: i.height.saturating_sub(1),
        ..i
    }
}

fn fit(app: &mut App, area: Rect) {
    let rows = lines_area(areas(area)[0]).height as usize;
    app.view.page = rows.max(1);
    let shown = visible(app);
    let selected = app
        .selected_service()
        .and_then(|n| shown.iter().position(|id| id.last() == Some(&n.path)))
        .unwrap_or(0);
    let v = &mut app.view.services;
    v.offset = crate::tui::draw::table_offset(v.offset, selected, shown.len(), rows.max(1));
}

/// Draws the Supervisors pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let error = app.data.errors.get("services");
    let Some(all) = app.data.services.as_ref() else {
        let text = error.cloned().unwrap_or_else(|| "loading...".into());
        return note(frame, area, block(t, "Supervisors", true), text, t.muted());
    };
    let shown = kept(app);
    let services = all.iter().filter(|n| !n.supervisor).count();
    let up = all
        .iter()
        .filter(|n| !n.supervisor && n.state == ServiceState::Running)
        .count();
    let mut title = format!(
        "Supervisors — {up}/{services} services up{}",
        filter_suffix(app, Pane::Supervisors)
    );
    if let Some(e) = error {
        title.push_str(&format!(" — not refreshed: {e}"));
    }
    if all.is_empty() {
        let text = "no supervisors: add a `kind: supervisor` file to the workflows directory";
        return note(frame, area, block(t, title, true), text.into(), t.muted());
    }
    let [tree_area, detail] = areas(area);
    if shown.is_empty() {
        return note(
            frame,
            area,
            block(t, title, true),
            "nothing matches".into(),
            t.muted(),
        );
    }
    render_tree(frame, tree_area, app, &shown, title);
    if let Some(n) = app.selected_service() {
        render_detail(frame, detail, app, n);
    }
}

fn render_tree(frame: &mut Frame, area: Rect, app: &App, shown: &[&ServiceNode], title: String) {
    let t = &app.theme;
    let b = block(t, title, true);
    frame.render_widget(b, area);
    let name_w = shown
        .iter()
        .map(|n| n.depth * 2 + 2 + n.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let i = inner(area);
    let header = format!(
        "{:<w$}{:<STATE_W$}{:<PID_W$}{:<UP_W$}{:<RESTARTS_W$}{:<READY_W$}NOTE",
        "NAME",
        "STATE",
        "PID",
        "UP",
        "RESTARTS",
        "READY",
        w = SYMBOL_W + name_w + 1
    );
    frame.render_widget(
        Paragraph::new(Line::styled(header, t.muted())),
        Rect { height: 1, ..i },
    );
    let line = |n: &ServiceNode| node_line(app, n, name_w);
    let items = items(app, &line);
    let Ok(tree) = Tree::new(&items) else {
        return;
    };
    let tree = tree
        .highlight_style(t.selected())
        .node_closed_symbol("▸ ")
        .node_open_symbol("▾ ");
    let lines = lines_area(area);
    let mut state = positioned(app, &items);
    tree.render(lines, frame.buffer_mut(), &mut state);
}

/// A tree state like the pane's (open subtrees, selection) scrolled to the offset `fit` worked
/// out: the pane's own state is not touched while drawing.
fn positioned(app: &App, items: &[TreeItem<'static, String>]) -> TreeState<String> {
    let v = &app.view.services;
    let mut state = TreeState::default();
    for id in v.tree.opened().iter().cloned() {
        state.open(id);
    }
    // One line drawn off screen tells the state how many lines there are, which bounds the
    // scroll; then it scrolls to the offset and selects (keeping the offset: `fit` made sure
    // the selection is in view from there).
    let mut scratch = Buffer::empty(Rect::new(0, 0, 1, 1));
    if let Ok(probe) = Tree::new(items) {
        probe.render(scratch.area, &mut scratch, &mut state);
    }
    state.scroll_down(v.offset);
    if let Some(n) = app.selected_service()
        && let Some(id) = identifiers_of(app, &n.path)
    {
        state.select(id);
    }
    state
}

/// The identifier of the node at `path` among those shown.
fn identifiers_of(app: &App, path: &str) -> Option<Vec<String>> {
    let nodes = app.data.services.as_ref()?;
    nodes
        .iter()
        .zip(identifiers(nodes))
        .find(|(n, _)| n.path == path)
        .map(|(_, id)| id)
}

/// A node's line: glyph and name padded so that the columns line up across depths, then
/// state, pid, uptime, restarts, readiness and what else matters now.
fn node_line(app: &App, n: &ServiceNode, name_w: usize) -> Line<'static> {
    let t = &app.theme;
    let style = t.service_state(n.state);
    let pad = name_w.saturating_sub(n.depth * 2 + 2);
    let restarts = if n.supervisor {
        format!(
            "{}/{}",
            n.restarts_in_period.unwrap_or(0),
            n.intensity
                .map_or_else(|| "-".to_string(), |i| i.to_string())
        )
    } else {
        n.restarts.to_string()
    };
    Line::from(vec![
        Span::styled(format!("{} ", glyph(n.state)), style),
        Span::raw(format!("{:<pad$} ", n.name)),
        Span::styled(format!("{:<STATE_W$}", state_text(n.state)), style),
        Span::raw(format!(
            "{:<PID_W$}",
            n.pid.map_or_else(|| "-".to_string(), |p| p.to_string())
        )),
        Span::raw(format!(
            "{:<UP_W$}",
            uptime(app, n).unwrap_or_else(|| "-".into())
        )),
        Span::raw(format!("{restarts:<RESTARTS_W$}")),
        Span::styled(format!("{:<READY_W$}", ready(n)), style),
        Span::styled(notes(app, n).join(" · "), t.muted()),
    ])
}

/// The state's glyph: filled when up, half while moving, hollow when down.
fn glyph(s: ServiceState) -> char {
    match s {
        ServiceState::Running => '●',
        ServiceState::Starting | ServiceState::Stopping => '◐',
        ServiceState::Pending => '◌',
        ServiceState::BackingOff => '↻',
        ServiceState::Stopped => '○',
        ServiceState::Failed => '✗',
    }
}

fn state_text(s: ServiceState) -> &'static str {
    match s {
        ServiceState::BackingOff => "backing off",
        other => other.as_str(),
    }
}

/// How long its current run has lasted, while it has one.
fn uptime(app: &App, n: &ServiceNode) -> Option<String> {
    let up = matches!(
        n.state,
        ServiceState::Running | ServiceState::Starting | ServiceState::Stopping
    );
    let since = n.up_since.filter(|_| up)?;
    Some(format_duration(
        (app.now - since).to_std().unwrap_or_default(),
    ))
}

/// The readiness of a service with a ready check: `✓` once it passed, `…` while waited for.
fn ready(n: &ServiceNode) -> &'static str {
    match n.state {
        _ if n.supervisor || !n.has_ready_check => "",
        ServiceState::Running => "✓",
        ServiceState::Starting => "…",
        _ => "-",
    }
}

/// What else matters now: a hold, the backoff left, a supervisor that gave up, the last exit.
fn notes(app: &App, n: &ServiceNode) -> Vec<String> {
    let mut out = Vec::new();
    if n.held {
        out.push("held".to_string());
    }
    if n.state == ServiceState::Failed && n.supervisor {
        out.push("gave up".to_string());
    }
    if let Some(until) = n
        .backoff_until
        .filter(|_| n.state == ServiceState::BackingOff)
    {
        let left = (until - app.now).to_std().unwrap_or_default();
        out.push(format!("retry in {}", format_duration(left)));
    }
    if let Some(exit) = &n.last_exit {
        out.push(format!("last: {exit}"));
    }
    out
}

/// The selected node with what the line cuts short.
fn render_detail(frame: &mut Frame, area: Rect, app: &App, n: &ServiceNode) {
    let t = &app.theme;
    let field = |name: &'static str| Span::styled(format!("{name:<9}"), t.muted());
    let mut run = vec![match n.pid {
        Some(pid) => format!("pid {pid}"),
        None => "no process".to_string(),
    }];
    if n.start_no > 0 {
        run.push(format!("start #{}", n.start_no));
    }
    if let (Some(up), Some(since)) = (uptime(app, n), n.up_since) {
        run.push(format!(
            "up {up} since {}",
            app.fmt_time(since, "%m-%d %H:%M:%S")
        ));
    }
    let mut restarts = vec![match (n.restarts_in_period, n.intensity) {
        (Some(r), Some(i)) => format!("{r} of {i} allowed in the period, {} in all", n.restarts),
        _ => format!("{} after crashes", n.restarts),
    }];
    if let Some(exit) = &n.last_exit {
        restarts.push(format!("last exit: {exit}"));
    }
    let lines = vec![
        Line::from(vec![
            field(if n.supervisor { "children" } else { "run" }),
            Span::raw(if n.supervisor {
                children_text(app, n)
            } else {
                run.join(" · ")
            }),
        ]),
        Line::from(vec![field("restarts"), Span::raw(restarts.join(" · "))]),
        Line::from(vec![field("status"), Span::raw(status_text(app, n))]),
        output_line(app, n, t),
    ];
    let title = format!("{} — {}", n.path, state_text(n.state));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(t, title, false)),
        area,
    );
}

/// A supervisor's children and how many of its services are up.
fn children_text(app: &App, n: &ServiceNode) -> String {
    let under: Vec<&ServiceNode> = app
        .data
        .services
        .iter()
        .flatten()
        .filter(|m| is_under(&m.path, &n.path))
        .collect();
    let services = under.iter().filter(|m| !m.supervisor).count();
    let up = under
        .iter()
        .filter(|m| !m.supervisor && m.state == ServiceState::Running)
        .count();
    format!("{} node(s) · {up}/{services} services up", under.len())
}

/// Hold, readiness and backoff in words.
fn status_text(app: &App, n: &ServiceNode) -> String {
    let mut out = Vec::new();
    if n.held {
        out.push("held: stopped by an operator; s starts it".to_string());
    }
    if n.state == ServiceState::Failed {
        out.push("gave up: too many restarts in the period".to_string());
    }
    if !n.supervisor {
        out.push(match (n.has_ready_check, n.state) {
            (true, ServiceState::Running) => "ready ✓ (its check passed)".to_string(),
            (true, ServiceState::Starting) => "waiting for its ready check".to_string(),
            (true, _) => "has a ready check".to_string(),
            (false, _) => "no ready check (up once started)".to_string(),
        });
    }
    if n.supervisor && out.is_empty() {
        out.push(match n.state {
            ServiceState::Running => "its children are up".to_string(),
            other => state_text(other).to_string(),
        });
    }
    if let Some(until) = n
        .backoff_until
        .filter(|_| n.state == ServiceState::BackingOff)
    {
        let left = (until - app.now).to_std().unwrap_or_default();
        out.push(format!(
            "retry in {} (at {})",
            format_duration(left),
            app.fmt_time(until, "%H:%M:%S")
        ));
    }
    out.join(" · ")
}

/// The newest output line the console kept of a service.
fn output_line(app: &App, n: &ServiceNode, t: &Theme) -> Line<'static> {
    let label = Span::styled(format!("{:<9}", "output"), t.muted());
    if n.supervisor {
        return Line::from(vec![label, Span::styled("-", t.muted())]);
    }
    match app.data.service_logs.last(&n.path) {
        Some(e) => {
            let (tag, style) = if e.stream == Stream::Stderr {
                ("err ", t.stderr())
            } else {
                ("", Style::default())
            };
            Line::from(vec![
                label,
                Span::styled(tag, t.stderr()),
                Span::styled(e.text.clone(), style),
                Span::styled("  (l follows)", t.muted()),
            ])
        }
        None => Line::from(vec![
            label,
            Span::styled("none seen since the console started (l follows)", t.muted()),
        ]),
    }
}
