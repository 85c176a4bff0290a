//! One module per pane. Each declares its key bindings, what its actions do, what it fits to
//! the screen and how it draws (from `&App`, changing nothing) in a [`PaneDef`];
//! [`REGISTRY`] lists them in Tab order and [`table`] assembles the one key table from their
//! bindings and the global ones.
//!
//! Adding a pane: its file, its variant in [`Pane`], and one line in [`REGISTRY`].

pub mod agents;
pub mod history;
pub mod logs;
pub mod monitors;
pub mod overview;
pub mod pane;
pub mod queue;
pub mod runs;
pub mod supervisors;
pub mod workflows;

use std::sync::LazyLock;

use super::keymap::{self, Binding, Pane, Row, Table};
pub use pane::PaneDef;

/// Every pane, in Tab order (`1` shows the first).
pub static REGISTRY: &[&PaneDef] = &[
    &overview::PANE,
    &workflows::PANE,
    &runs::PANE,
    &queue::PANE,
    &logs::PANE,
    &history::PANE,
    &agents::PANE,
    &supervisors::PANE,
    &monitors::PANE,
];

// Each pane has a number key: no more panes than keys.
const _: () = assert!(Pane::ALL.len() <= keymap::PANE_KEYS.len());

/// The definition of `pane`.
pub fn def(pane: Pane) -> &'static PaneDef {
    REGISTRY
        .iter()
        .find(|d| d.pane == pane)
        .copied()
        .unwrap_or(REGISTRY[0])
}

/// The one key table: the panes' rows in registry order (so that a pane can reuse a global
/// key), then the global ones with a `1`..`9` row per pane among them.
pub fn table() -> &'static Table {
    static TABLE: LazyLock<Table> = LazyLock::new(|| {
        static SHOW: LazyLock<Vec<Binding>> = LazyLock::new(|| {
            REGISTRY
                .iter()
                .zip(keymap::PANE_KEYS.chunks(1))
                .map(|(d, key)| keymap::show_pane(key, d.pane, d.show_help, d.show_arg))
                .collect()
        });
        let own = REGISTRY.iter().flat_map(|d| {
            d.bindings.iter().map(|binding| Row {
                binding,
                owner: Some(d.pane),
            })
        });
        let global = keymap::GLOBAL_HEAD
            .iter()
            .chain(SHOW.iter())
            .chain(keymap::GLOBAL_TAIL)
            .map(|binding| Row {
                binding,
                owner: None,
            });
        Table::new(own.chain(global).collect())
    });
    &TABLE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::{Action, Context, Scope};
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn contexts() -> impl Iterator<Item = Context> {
        Pane::ALL
            .iter()
            .map(|p| Context::Pane(*p))
            .chain([Context::Dag])
    }

    #[test]
    fn no_key_means_two_things_in_one_context() {
        for ctx in contexts() {
            let mut seen: Vec<(String, &str)> = Vec::new();
            for b in table()
                .bindings()
                .filter(|b| matches!(b.scope, Scope::In(_)) && b.scope.applies(ctx))
            {
                for key in b.keys {
                    let label = key.label();
                    if let Some((_, other)) = seen.iter().find(|(l, _)| *l == label) {
                        panic!("{label} is both `{other}` and `{}` in {ctx:?}", b.help);
                    }
                    seen.push((label, b.help));
                }
            }
        }
    }

    #[test]
    fn no_global_key_means_two_things() {
        let mut seen: Vec<String> = Vec::new();
        for b in table().bindings().filter(|b| b.scope == Scope::Global) {
            for key in b.keys {
                let label = key.label();
                assert!(!seen.contains(&label), "{label} is bound twice globally");
                seen.push(label);
            }
        }
    }

    #[test]
    fn context_keys_win_over_global_ones() {
        let slash = KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE);
        let b = table()
            .lookup(Context::Pane(Pane::Logs), &slash)
            .expect("bound");
        assert_eq!(b.help, "search (matches highlighted)");
        let b = table()
            .lookup(Context::Pane(Pane::Runs), &slash)
            .expect("bound");
        assert_eq!(b.action, Action::Filter);
        let shift_t = KeyEvent::new(KeyCode::Char('T'), KeyModifiers::SHIFT);
        let b = table()
            .lookup(Context::Pane(Pane::Logs), &shift_t)
            .expect("bound");
        assert_eq!(b.action, Action::Timestamps);
    }

    #[test]
    fn every_command_name_is_unique() {
        let mut names: Vec<&str> = table().commands().filter_map(|r| r.command).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "{names:?}");
    }

    #[test]
    fn the_registry_has_every_pane_in_tab_order_with_its_number_key() {
        let order: Vec<Pane> = REGISTRY.iter().map(|d| d.pane).collect();
        assert_eq!(order, Pane::ALL);
        for (i, p) in Pane::ALL.iter().enumerate() {
            let digit = char::from(b'1' + i as u8);
            let key = KeyEvent::new(KeyCode::Char(digit), KeyModifiers::NONE);
            let row = table()
                .lookup(Context::Pane(Pane::Overview), &key)
                .expect("bound");
            assert_eq!(row.action, Action::Show(*p));
            assert_eq!(row.command, Some(p.name()));
        }
    }

    #[test]
    fn a_pane_owns_the_rows_its_file_declares() {
        for d in REGISTRY {
            for b in d.bindings {
                assert!(matches!(b.scope, Scope::In(_)), "{} is global", b.help);
                let row = table()
                    .rows()
                    .iter()
                    .find(|r| std::ptr::eq(r.binding, b))
                    .expect("in the table");
                assert_eq!(row.owner, Some(d.pane));
            }
        }
    }
}
