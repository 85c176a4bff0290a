//! [`Table`]: which loaded monitor is which, in dense arrays. A monitor has three numbers:
//! its store id (interned name, stable across restarts and reloads: the index of the health
//! machine and the timer wheel), its id in the current [`MonitorSet`] (changes on reload) and
//! its row on the board. 12 bytes a monitor, no name kept: names live in the set and on the
//! board.

use crate::protocol::board::BoardId;
use crate::protocol::monitor::MonitorId;
use crate::spec::MonitorSet;

/// No entry.
pub(crate) const NONE: u32 = u32::MAX;

/// Dense maps between the three numbers of every loaded monitor.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// By set id: the store id.
    store_of_set: Vec<u32>,
    /// By store id: the set id, or [`NONE`] when not loaded.
    set_of_store: Vec<u32>,
    /// By store id: the board row, or [`NONE`].
    board_of_store: Vec<u32>,
    /// Monitors loaded.
    loaded: usize,
}

impl Table {
    /// A table for `set` where `store_ids[set id]` is each monitor's store id ([`NONE`] for
    /// a gap of the set) and `board_ids[set id]` its board row.
    pub(crate) fn new(store_ids: Vec<u32>, board_ids: &[u32]) -> Table {
        let top = store_ids
            .iter()
            .filter(|&&s| s != NONE)
            .max()
            .map_or(0, |&m| m as usize + 1);
        let mut set_of_store = vec![NONE; top];
        let mut board_of_store = vec![NONE; top];
        let mut loaded = 0;
        for (set_id, &s) in store_ids.iter().enumerate() {
            if s == NONE {
                continue;
            }
            set_of_store[s as usize] = set_id as u32;
            board_of_store[s as usize] = board_ids.get(set_id).copied().unwrap_or(NONE);
            loaded += 1;
        }
        Table {
            store_of_set: store_ids,
            set_of_store,
            board_of_store,
            loaded,
        }
    }

    /// Monitors loaded.
    pub(crate) fn len(&self) -> usize {
        self.loaded
    }

    /// The store id of set monitor `set_id`.
    pub(crate) fn store_id(&self, set_id: u32) -> Option<MonitorId> {
        match self.store_of_set.get(set_id as usize) {
            Some(&s) if s != NONE => Some(MonitorId(s)),
            _ => None,
        }
    }

    /// The set id of the loaded monitor `id`.
    pub(crate) fn set_id(&self, id: MonitorId) -> Option<u32> {
        match self.set_of_store.get(id.0 as usize) {
            Some(&s) if s != NONE => Some(s),
            _ => None,
        }
    }

    /// The board row of the loaded monitor `id`.
    pub(crate) fn board_id(&self, id: MonitorId) -> Option<BoardId> {
        match self.board_of_store.get(id.0 as usize) {
            Some(&b) if b != NONE => Some(BoardId(b)),
            _ => None,
        }
    }

    /// The store id of the monitor called `name` in `set`.
    pub(crate) fn by_name(&self, set: &MonitorSet, name: &str) -> Option<MonitorId> {
        self.store_id(set.find_id(name)?)
    }

    /// Every loaded monitor's store id, in set order.
    pub(crate) fn store_ids(&self) -> impl Iterator<Item = MonitorId> + '_ {
        self.store_of_set
            .iter()
            .filter(|&&s| s != NONE)
            .map(|&s| MonitorId(s))
    }
}

/// Gives store ids to names: known names keep theirs, new ones get the next free number.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    next: u32,
}

impl Ids {
    /// Numbers from one past the highest of `known`.
    pub(crate) fn after(known: impl Iterator<Item = MonitorId>) -> Ids {
        Ids {
            next: known.map(|m| m.0.saturating_add(1)).max().unwrap_or(0),
        }
    }

    /// A new number.
    pub(crate) fn fresh(&mut self) -> MonitorId {
        let id = self.next;
        self.next = self.next.saturating_add(1).min(NONE - 1);
        MonitorId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_numbers_map_both_ways_and_gaps_stay_empty() {
        // Set ids 0..4; set id 2 is a gap; store ids are sparse (recovered names).
        let t = Table::new(vec![7, 3, NONE, 10], &[0, 1, NONE, 2]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.store_id(0), Some(MonitorId(7)));
        assert_eq!(t.store_id(2), None);
        assert_eq!(t.store_id(9), None);
        assert_eq!(t.set_id(MonitorId(10)), Some(3));
        assert_eq!(t.set_id(MonitorId(4)), None, "a store id not loaded");
        assert_eq!(t.board_id(MonitorId(3)), Some(BoardId(1)));
        assert_eq!(t.board_id(MonitorId(99)), None);
        let ids: Vec<u32> = t.store_ids().map(|m| m.0).collect();
        assert_eq!(ids, [7, 3, 10]);
    }

    #[test]
    fn fresh_ids_follow_the_highest_known_one() {
        let mut ids = Ids::after([MonitorId(4), MonitorId(9), MonitorId(1)].into_iter());
        assert_eq!(ids.fresh(), MonitorId(10));
        assert_eq!(ids.fresh(), MonitorId(11));
        let mut none = Ids::after(std::iter::empty());
        assert_eq!(none.fresh(), MonitorId(0));
    }
}
