//! Task graphs: cycle detection, topological order, trigger rules and the skip cascade.

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::spec::TriggerRule;

/// Where a task of one run stands, as far as its downstream tasks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Not started yet; its trigger rule has not been decided.
    Waiting,
    /// Handed to the executor (queued, running or retrying).
    Started,
    /// Finished successfully.
    Succeeded,
    /// Failed or timed out for good (no attempts left).
    Failed,
    /// Not run because its trigger rule could no longer be met.
    Skipped,
    /// Stopped by a cancel.
    Cancelled,
}

impl NodeState {
    /// True once the node will not change any more.
    pub fn is_finished(self) -> bool {
        !matches!(self, NodeState::Waiting | NodeState::Started)
    }
}

/// What the trigger rule says about a waiting task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Upstream tasks are still undecided.
    Wait,
    /// Start it now.
    Run,
    /// Its rule can no longer be met.
    Skip,
}

/// Tasks decided by one [`Dag::settle`] call.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Tasks to start, in file order (the order they were declared).
    pub ready: Vec<usize>,
    /// Tasks skipped, in topological order.
    pub skipped: Vec<usize>,
}

/// The dependency graph of one workflow, validated acyclic.
#[derive(Debug, Clone)]
pub struct Dag {
    parents: Vec<Vec<usize>>,
    topo: Vec<usize>,
}

fn graph(n: usize, edges: &[(usize, usize)]) -> DiGraph<(), ()> {
    let mut g = DiGraph::with_capacity(n, edges.len());
    for _ in 0..n {
        g.add_node(());
    }
    for &(parent, child) in edges {
        g.add_edge(NodeIndex::new(parent), NodeIndex::new(child), ());
    }
    g
}

/// Every dependency cycle among `n` nodes with `(parent, child)` edges; each cycle lists its
/// members in ascending order. Empty when the graph is acyclic. Iterative (Kosaraju), so a
/// chain of any length cannot exhaust the stack.
pub fn cycles(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let g = graph(n, edges);
    let mut found: Vec<Vec<usize>> = kosaraju_scc(&g)
        .into_iter()
        .filter(|scc| scc.len() > 1 || g.contains_edge(scc[0], scc[0]))
        .map(|scc| {
            let mut members: Vec<usize> = scc.into_iter().map(NodeIndex::index).collect();
            members.sort_unstable();
            members
        })
        .collect();
    found.sort();
    found
}

impl Dag {
    /// Builds the graph; `Err` carries the cycles when there are any.
    pub fn new(n: usize, edges: &[(usize, usize)]) -> Result<Self, Vec<Vec<usize>>> {
        let g = graph(n, edges);
        let topo = toposort(&g, None).map_err(|_| cycles(n, edges))?;
        let mut parents = vec![Vec::new(); n];
        for &(parent, child) in edges {
            if !parents[child].contains(&parent) {
                parents[child].push(parent);
            }
        }
        Ok(Self {
            parents,
            topo: topo.into_iter().map(NodeIndex::index).collect(),
        })
    }

    /// Builds the graph of a validated workflow.
    pub fn for_workflow(spec: &crate::spec::WorkflowSpec) -> Result<Self, Vec<Vec<usize>>> {
        let edges: Vec<(usize, usize)> = spec
            .tasks
            .iter()
            .enumerate()
            .flat_map(|(child, t)| t.depends_on.iter().map(move |&p| (p, child)))
            .collect();
        Self::new(spec.tasks.len(), &edges)
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// True for a workflow without tasks.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// Direct upstream tasks of `node`.
    pub fn parents(&self, node: usize) -> &[usize] {
        &self.parents[node]
    }

    /// Depth of every node: 0 for roots, else 1 + the deepest parent.
    pub fn levels(&self) -> Vec<usize> {
        let mut level = vec![0; self.len()];
        for &n in &self.topo {
            level[n] = self.parents[n]
                .iter()
                .map(|&p| level[p] + 1)
                .max()
                .unwrap_or(0);
        }
        level
    }

    /// Applies `rule` to a waiting node given the states of its parents.
    pub fn readiness(&self, node: usize, rule: TriggerRule, states: &[NodeState]) -> Readiness {
        let parents = &self.parents[node];
        if parents.is_empty() {
            return Readiness::Run;
        }
        let count = |want: NodeState| parents.iter().filter(|&&p| states[p] == want).count();
        let all_done = parents.iter().all(|&p| states[p].is_finished());
        match rule {
            TriggerRule::AllSuccess => {
                if parents.iter().any(|&p| {
                    matches!(
                        states[p],
                        NodeState::Failed | NodeState::Skipped | NodeState::Cancelled
                    )
                }) {
                    Readiness::Skip
                } else if count(NodeState::Succeeded) == parents.len() {
                    Readiness::Run
                } else {
                    Readiness::Wait
                }
            }
            TriggerRule::AllDone if all_done => Readiness::Run,
            TriggerRule::AllDone => Readiness::Wait,
            TriggerRule::OneSuccess | TriggerRule::OneFailed => {
                let want = if rule == TriggerRule::OneSuccess {
                    NodeState::Succeeded
                } else {
                    NodeState::Failed
                };
                if count(want) > 0 {
                    Readiness::Run
                } else if all_done {
                    Readiness::Skip
                } else {
                    Readiness::Wait
                }
            }
        }
    }

    /// Decides every waiting node whose rule can now be decided, cascading skips downstream in
    /// one pass. Ready nodes are marked `Started`, skipped nodes `Skipped`.
    pub fn settle(&self, states: &mut [NodeState], rules: &[TriggerRule]) -> Settled {
        let mut settled = Settled::default();
        for &n in &self.topo {
            if states[n] != NodeState::Waiting {
                continue;
            }
            match self.readiness(n, rules[n], states) {
                Readiness::Wait => {}
                Readiness::Run => {
                    states[n] = NodeState::Started;
                    settled.ready.push(n);
                }
                Readiness::Skip => {
                    states[n] = NodeState::Skipped;
                    settled.skipped.push(n);
                }
            }
        }
        settled.ready.sort_unstable();
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeState::*;

    fn diamond() -> Dag {
        // 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3
        Dag::new(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]).unwrap()
    }

    #[test]
    fn finds_cycles_with_members() {
        assert_eq!(
            cycles(4, &[(0, 1), (1, 2), (2, 0), (2, 3)]),
            vec![vec![0, 1, 2]]
        );
        assert_eq!(cycles(2, &[(1, 1)]), vec![vec![1]]);
        assert!(cycles(3, &[(0, 1), (1, 2)]).is_empty());
        assert!(Dag::new(2, &[(0, 1), (1, 0)]).is_err());
    }

    #[test]
    fn very_long_chains_do_not_exhaust_the_stack() {
        let n = 300_000;
        let chain: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
        assert!(cycles(n, &chain).is_empty());
        assert!(Dag::new(n, &chain).is_ok());
        let mut ring = chain;
        ring.push((n - 1, 0));
        assert_eq!(cycles(n, &ring).len(), 1);
    }

    #[test]
    fn fan_in_waits_for_every_parent() {
        let dag = diamond();
        let rules = [TriggerRule::AllSuccess; 4];
        let mut s = vec![Waiting; 4];
        assert_eq!(dag.settle(&mut s, &rules).ready, vec![0]);
        s[0] = Succeeded;
        let mut ready = dag.settle(&mut s, &rules).ready;
        ready.sort();
        assert_eq!(ready, vec![1, 2]);
        s[1] = Succeeded;
        assert!(
            dag.settle(&mut s, &rules).ready.is_empty(),
            "3 must wait for 2"
        );
        s[2] = Succeeded;
        assert_eq!(dag.settle(&mut s, &rules).ready, vec![3]);
        assert!(
            dag.settle(&mut s, &rules).ready.is_empty(),
            "3 starts exactly once"
        );
    }

    #[test]
    fn failure_skips_downstream_transitively() {
        let dag = Dag::new(4, &[(0, 1), (1, 2), (2, 3)]).unwrap();
        let rules = [TriggerRule::AllSuccess; 4];
        let mut s = vec![Started, Waiting, Waiting, Waiting];
        s[0] = Failed;
        let settled = dag.settle(&mut s, &rules);
        assert_eq!(settled.skipped, vec![1, 2, 3]);
        assert!(settled.ready.is_empty());
    }

    #[test]
    fn trigger_rules() {
        let dag = diamond();
        let check = |rule, p1, p2| {
            let mut s = vec![Succeeded, p1, p2, Waiting];
            let rules = [
                TriggerRule::AllSuccess,
                TriggerRule::AllSuccess,
                TriggerRule::AllSuccess,
                rule,
            ];
            dag.settle(&mut s, &rules);
            s[3]
        };
        use TriggerRule::*;
        assert_eq!(check(AllDone, Failed, Started), Waiting);
        assert_eq!(check(AllDone, Failed, Skipped), NodeState::Started);
        assert_eq!(
            check(OneSuccess, Succeeded, NodeState::Started),
            NodeState::Started
        );
        assert_eq!(check(OneSuccess, Failed, Failed), Skipped);
        assert_eq!(
            check(OneFailed, Failed, NodeState::Started),
            NodeState::Started
        );
        assert_eq!(check(OneFailed, Succeeded, Succeeded), Skipped);
        assert_eq!(check(AllSuccess, Succeeded, Cancelled), Skipped);
    }

    #[test]
    fn levels_follow_longest_path() {
        let dag = Dag::new(4, &[(0, 1), (1, 2), (0, 2), (2, 3)]).unwrap();
        assert_eq!(dag.levels(), vec![0, 1, 2, 3]);
    }
}
