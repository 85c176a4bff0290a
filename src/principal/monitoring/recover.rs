//! Store ids for the monitors of a set: a name the store (or this process) already knows
//! keeps its id, so that its states, incidents and results continue; a new name gets a new
//! id, to be sent once as [`MonitorWrite::Names`](crate::store::monitor::MonitorWrite::Names).
//! Names that are known but not loaded are kept aside, so that a monitor removed and added
//! back by a reload gets its old id again.

use std::collections::HashMap;

use super::table::{Ids, NONE};
use crate::protocol::monitor::{Incident, MonitorId};
use crate::spec::MonitorSet;
use crate::store::monitor::MonitorRecovery;

/// Store ids given to a set's monitors.
#[derive(Debug, Default)]
pub(crate) struct Assigned {
    /// By set id: the store id ([`NONE`] for a gap of the set).
    pub store_ids: Vec<u32>,
    /// Names that got a new id: to be stored.
    pub new_names: Vec<(MonitorId, String)>,
    /// Known names not in the set.
    pub retired: HashMap<Box<str>, MonitorId>,
}

/// Gives every monitor of `set` its store id from `known` (name -> id), new ids from `ids`.
pub(crate) fn assign(
    set: &MonitorSet,
    mut known: HashMap<Box<str>, MonitorId>,
    ids: &mut Ids,
) -> Assigned {
    let mut store_ids = Vec::new();
    let mut new_names = Vec::new();
    let mut name = String::new();
    for view in set.iter() {
        let sid = view.id() as usize;
        if store_ids.len() <= sid {
            store_ids.resize(sid + 1, NONE);
        }
        name.clear();
        view.name_into(&mut name);
        let id = match known.remove(name.as_str()) {
            Some(id) => id,
            None => {
                let id = ids.fresh();
                new_names.push((id, name.clone()));
                id
            }
        };
        store_ids[sid] = id.0;
    }
    Assigned {
        store_ids,
        new_names,
        retired: known,
    }
}

/// What the store says about monitors at start, plus the recently closed incidents for the
/// board (the open ones are in `recovery`).
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// Names, states, open incidents, next incident number.
    pub recovery: Option<MonitorRecovery>,
    /// Closed incidents, newest first.
    pub closed: Vec<Incident>,
}

/// Reads what the store knows about monitors (blocking: call off the async threads).
pub(crate) fn read(reader: &crate::store::SharedReader, recent: usize) -> Result<Stored, String> {
    let reader = reader
        .lock()
        .map_err(|_| "the store's reader is poisoned".to_string())?;
    let recovery = reader.monitor_recovery().map_err(|e| e.to_string())?;
    let closed = reader
        .incidents(false, recent + recovery.open.len())
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|i| i.closed.is_some())
        .take(recent)
        .collect();
    Ok(Stored {
        recovery: Some(recovery),
        closed,
    })
}

/// The name -> id map of what the store knows.
pub(crate) fn known_names(recovery: Option<&MonitorRecovery>) -> HashMap<Box<str>, MonitorId> {
    recovery
        .map(|r| {
            r.names
                .iter()
                .map(|(id, name)| (Box::from(name.as_str()), *id))
                .collect()
        })
        .unwrap_or_default()
}
