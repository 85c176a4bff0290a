//! The nodes of a supervision forest, built from specs: an arena indexed by [`NodeId`], the
//! forest itself at index 0 as an invisible supervisor of the roots.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::At;
use super::plan::Plan;
use super::step::{ExitStatus, StopReason};
use super::view::NodeState;
use crate::spec::{
    AutoShutdown, ChildKind, ChildSpec, Restart, ServiceSpec, StopPolicy, Strategy, SupervisorSpec,
};

/// Index of a node in [`Forest::nodes`].
pub(super) type NodeId = usize;

/// The invisible supervisor of the roots.
pub(super) const FOREST: NodeId = 0;

/// A service or a supervisor, with its place in the tree and its run-time state.
pub(super) struct Node {
    pub path: String,
    pub name: String,
    /// `None` only for [`FOREST`].
    pub parent: Option<NodeId>,
    /// Position among its siblings.
    pub index: usize,
    pub depth: usize,
    pub restart: Restart,
    pub significant: bool,
    /// Stopped by an operator: not started by its supervisor until an operator starts it.
    /// Mirrors [`Forest::holds`], which outlives the node.
    pub held: bool,
    /// Ended on its own and not to be restarted (a temporary or transient child), until its
    /// supervisor starts afresh or an operator starts it.
    pub done: bool,
    pub start_no: u64,
    pub state: NodeState,
    /// Why it is stopping, while it is.
    pub stop_reason: Option<StopReason>,
    /// When its latest run started.
    pub since: Option<At>,
    pub pid: Option<u32>,
    pub last_exit: Option<ExitStatus>,
    pub restarts: u64,
    pub kind: Kind,
    /// Removed from the spec by a hot reload: stopping, in its supervisor's `leaving`, and
    /// forgotten once down.
    pub removed: bool,
    /// A hot reload turned this service into a supervisor or back: the new kind, taken once
    /// the node is down.
    pub pending: Option<ChildKind>,
}

/// What a node is.
pub(super) enum Kind {
    Service(Service),
    Supervisor(Sup),
}

/// A service's spec and its crash count for the backoff.
pub(super) struct Service {
    pub spec: Arc<ServiceSpec>,
    /// How the current run is stopped (its spec's, which a hot reload may have replaced).
    pub run_stop: StopPolicy,
    /// Crashes since it was last up for `stable_after` (1 after the first).
    pub failures: u32,
}

/// A supervisor's policy, children and work in progress.
pub(super) struct Sup {
    pub strategy: Strategy,
    pub intensity: u32,
    pub period: Duration,
    pub auto_shutdown: AutoShutdown,
    pub children: Vec<NodeId>,
    /// When each restart within the current period happened, oldest first.
    pub history: VecDeque<At>,
    pub plan: Option<Plan>,
    /// Children start one after the other (false only for the forest: roots are independent).
    pub ordered: bool,
    /// Children a hot reload removed that are still on their way down (not in `children`).
    pub leaving: Vec<NodeId>,
    /// The spec it was built from or last reloaded with (`None` for the forest): a reload
    /// tries a supervisor that gave up again only when its spec changed.
    pub spec: Option<Arc<SupervisorSpec>>,
}

impl Sup {
    /// Restarts within the period that ends at `now`.
    pub fn restarts_in_period(&self, now: At) -> u32 {
        let n = self
            .history
            .iter()
            .filter(|&&t| now.since(t) < self.period)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// Every node, and the paths that name them.
pub(super) struct Forest {
    pub nodes: Vec<Node>,
    pub by_path: HashMap<String, NodeId>,
    /// The paths an operator holds stopped. Kept by path, not by node: a hold outlives its
    /// node (a file removed and put back, a principal restarted) until an operator lifts it.
    pub holds: HashSet<String>,
    /// Slots of forgotten nodes, taken by new ones: reloads do not grow the arena.
    free: Vec<NodeId>,
    /// Slots forgotten since the last [`Forest::recycle`]; work in progress may still name
    /// them, so they are reused only from the next reload on.
    forgotten: Vec<NodeId>,
}

impl Forest {
    /// The forest of `roots`.
    pub fn new(roots: &[Arc<SupervisorSpec>]) -> Self {
        let mut f = Forest {
            nodes: Vec::new(),
            by_path: HashMap::new(),
            holds: HashSet::new(),
            free: Vec::new(),
            forgotten: Vec::new(),
        };
        let forest = f.push(
            None,
            String::new(),
            String::new(),
            0,
            Restart::Temporary,
            false,
        );
        f.nodes[forest].kind = Kind::Supervisor(Sup {
            strategy: Strategy::OneForOne,
            intensity: u32::MAX,
            period: Duration::from_secs(1),
            auto_shutdown: AutoShutdown::Never,
            children: Vec::new(),
            history: VecDeque::new(),
            plan: None,
            ordered: false,
            leaving: Vec::new(),
            spec: None,
        });
        // The forest is up from the start: operators may start single roots before start_all.
        f.nodes[forest].state = NodeState::Running;
        for (i, root) in roots.iter().enumerate() {
            // A root that gives up stays down (recorded); the forest never restarts it.
            let id = f.push(
                Some(forest),
                root.name.clone(),
                root.name.clone(),
                i,
                Restart::Temporary,
                false,
            );
            f.supervisor(id, root);
        }
        f
    }

    fn push(
        &mut self,
        parent: Option<NodeId>,
        path: String,
        name: String,
        index: usize,
        restart: Restart,
        significant: bool,
    ) -> NodeId {
        let depth = parent.map_or(0, |p| self.nodes[p].depth + usize::from(p != FOREST));
        let held = self.holds.contains(&path);
        let node = Node {
            path,
            name,
            parent,
            index,
            depth,
            restart,
            significant,
            held,
            done: false,
            start_no: 0,
            state: NodeState::Stopped,
            stop_reason: None,
            since: None,
            pid: None,
            last_exit: None,
            restarts: 0,
            removed: false,
            pending: None,
            // Replaced right away by the caller (services) or `supervisor`.
            kind: Kind::Supervisor(Sup {
                strategy: Strategy::OneForOne,
                intensity: 0,
                period: Duration::ZERO,
                auto_shutdown: AutoShutdown::Never,
                children: Vec::new(),
                history: VecDeque::new(),
                plan: None,
                ordered: true,
                leaving: Vec::new(),
                spec: None,
            }),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id] = node;
                id
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.by_path.insert(self.nodes[id].path.clone(), id);
        if let Some(p) = parent
            && let Kind::Supervisor(sup) = &mut self.nodes[p].kind
        {
            sup.children.push(id);
        }
        id
    }

    /// Fills in the supervisor `id` from `spec`, children included.
    fn supervisor(&mut self, id: NodeId, spec: &Arc<SupervisorSpec>) {
        self.nodes[id].kind = Kind::Supervisor(Sup {
            strategy: spec.strategy,
            intensity: spec.intensity,
            period: spec.period,
            auto_shutdown: spec.auto_shutdown,
            children: Vec::with_capacity(spec.children.len()),
            history: VecDeque::new(),
            plan: None,
            ordered: true,
            leaving: Vec::new(),
            spec: Some(spec.clone()),
        });
        for (i, child) in spec.children.iter().enumerate() {
            self.add(id, child, i);
        }
    }

    /// A new child of supervisor `parent` at position `index`, built from `child` (appended
    /// to the children of `parent`; a reload puts it in its place afterwards).
    pub fn add(&mut self, parent: NodeId, child: &ChildSpec, index: usize) -> NodeId {
        let path = if parent == FOREST {
            child.name.clone()
        } else {
            format!("{}/{}", self.nodes[parent].path, child.name)
        };
        let c = self.push(
            Some(parent),
            path,
            child.name.clone(),
            index,
            child.restart,
            child.significant,
        );
        self.set_kind(c, &child.kind);
        c
    }

    /// Makes `id` the service or supervisor `kind` says (a supervisor with new children).
    pub fn set_kind(&mut self, id: NodeId, kind: &ChildKind) {
        match kind {
            ChildKind::Service(s) => {
                self.nodes[id].kind = Kind::Service(Service {
                    spec: s.clone(),
                    run_stop: s.stop,
                    failures: 0,
                });
            }
            ChildKind::Supervisor(nested) => self.supervisor(id, nested),
        }
    }

    /// Holds `id` stopped (or lifts its hold); true if that changed anything.
    pub fn set_held(&mut self, id: NodeId, held: bool) -> bool {
        let n = &mut self.nodes[id];
        let changed = n.held != held;
        n.held = held;
        if held {
            self.holds.insert(n.path.clone());
        } else {
            self.holds.remove(&n.path);
        }
        changed
    }

    /// Drops the paths of the descendants of `id` (and of `id` itself when `itself`), so
    /// facts and commands no longer reach them; their slots are reused after the next
    /// [`Forest::recycle`].
    pub fn forget(&mut self, id: NodeId, itself: bool) {
        let mut stack = self.children(id);
        if let Some(s) = self.sup(id) {
            stack.extend(s.leaving.iter().copied());
        }
        if itself {
            stack.push(id);
        }
        while let Some(n) = stack.pop() {
            if n != id {
                stack.extend(self.children(n));
                if let Some(s) = self.sup(n) {
                    stack.extend(s.leaving.iter().copied());
                }
            }
            let path = &self.nodes[n].path;
            if self.by_path.get(path) == Some(&n) {
                self.by_path.remove(path);
            }
            self.forgotten.push(n);
        }
    }

    /// Makes the slots forgotten so far free for new nodes; called when no work in progress
    /// can name them.
    pub fn recycle(&mut self) {
        self.free.append(&mut self.forgotten);
    }

    /// Slots in the arena, used or free.
    pub fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// The supervisor part of `id` (a service has none).
    pub fn sup(&self, id: NodeId) -> Option<&Sup> {
        match &self.nodes[id].kind {
            Kind::Supervisor(s) => Some(s),
            Kind::Service(_) => None,
        }
    }

    /// See [`Forest::sup`].
    pub fn sup_mut(&mut self, id: NodeId) -> Option<&mut Sup> {
        match &mut self.nodes[id].kind {
            Kind::Supervisor(s) => Some(s),
            Kind::Service(_) => None,
        }
    }

    /// The children of `id` (none for a service).
    pub fn children(&self, id: NodeId) -> Vec<NodeId> {
        self.sup(id).map(|s| s.children.clone()).unwrap_or_default()
    }

    /// `id` and its ancestors below the forest, the root first.
    pub fn chain(&self, id: NodeId) -> Vec<NodeId> {
        let mut chain = vec![id];
        let mut cur = id;
        while let Some(p) = self.nodes[cur].parent {
            if p == FOREST {
                break;
            }
            chain.push(p);
            cur = p;
        }
        chain.reverse();
        chain
    }
}
