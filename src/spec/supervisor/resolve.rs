//! Resolving `supervisor: NAME` children once every file is read: each name must be a
//! supervisor document, used in one place only, without cycles and not nested too deep.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::types::{ChildKind, ChildSpec, SupervisorSpec};
use super::{DraftKind, SupervisorDraft, diag_at};
use crate::spec::Diagnostic;
use crate::spec::limits::MAX_NESTING;
use crate::spec::suggest::did_you_mean;

/// Every supervisor document by name, nesting resolved, and the problems found. A document
/// with a problem is left out, and so is the tree that uses it.
pub fn resolve(
    drafts: Vec<SupervisorDraft>,
) -> (BTreeMap<String, Arc<SupervisorSpec>>, Vec<Diagnostic>) {
    let index: HashMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    let names: Vec<&str> = drafts.iter().map(|d| d.name.as_str()).collect();
    let mut diags = Vec::new();
    let mut broken = vec![false; drafts.len()];
    // (user, used, where) for every use by name that names a document.
    let mut uses: Vec<(usize, usize, &Diagnostic)> = Vec::new();
    // Used document -> its user and where the first use is written.
    let mut used_by: HashMap<usize, (usize, &Diagnostic)> = HashMap::new();
    for (i, draft) in drafts.iter().enumerate() {
        draft.walk_refs(&mut |name, at| {
            let Some(&j) = index.get(name) else {
                broken[i] = true;
                diags.push(diag_at(
                    at,
                    format!(
                        "unknown supervisor `{name}`{}: no valid `kind: supervisor` document \
                         has this name",
                        did_you_mean(name, names.iter().copied())
                    ),
                ));
                return;
            };
            if let Some((first_user, first_at)) = used_by.get(&j) {
                broken[i] = true;
                diags.push(diag_at(
                    at,
                    format!(
                        "supervisor `{name}` is already a child of `{}` ({}:{}): a supervisor \
                         document can be a child in one place only",
                        names[*first_user],
                        first_at.file.display(),
                        first_at.line
                    ),
                ));
                return;
            }
            used_by.insert(j, (i, at));
            uses.push((i, j, at));
        });
    }
    report_cycles(&names, &uses, &mut broken, &mut diags);
    // A document that uses a broken one cannot be built either.
    let mut changed = true;
    while changed {
        changed = false;
        for &(user, used, at) in &uses {
            if broken[used] && !broken[user] {
                broken[user] = true;
                changed = true;
                diags.push(diag_at(
                    at,
                    format!(
                        "supervisor `{}` has problems (reported with it), so `{}` cannot use it",
                        names[used], names[user]
                    ),
                ));
            }
        }
    }
    let mut b = Builder {
        drafts: &drafts,
        index: &index,
        used_by: used_by.iter().map(|(&j, &(i, _))| (j, i)).collect(),
        built: BTreeMap::new(),
        diags,
    };
    for (i, draft) in drafts.iter().enumerate() {
        if !broken[i] && !b.used_by.contains_key(&i) {
            b.document(draft, 1);
        }
    }
    (b.built, b.diags)
}

/// Reports each cycle of uses once, at the use that closes it, and marks its members broken.
fn report_cycles(
    names: &[&str],
    uses: &[(usize, usize, &Diagnostic)],
    broken: &mut [bool],
    diags: &mut Vec<Diagnostic>,
) {
    let edges: Vec<(usize, usize)> = uses.iter().map(|&(i, j, _)| (i, j)).collect();
    for members in crate::dag::cycles(names.len(), &edges) {
        for &m in &members {
            broken[m] = true;
        }
        let Some(path) = shortest_cycle(&members, &edges) else {
            continue;
        };
        let (last, first) = (path[path.len() - 2], path[path.len() - 1]);
        let Some(&(_, _, at)) = uses.iter().find(|&&(i, j, _)| (i, j) == (last, first)) else {
            continue;
        };
        let shown: Vec<&str> = path.iter().map(|&i| names[i]).collect();
        let message = if path.len() == 2 {
            format!("supervisor `{}` uses itself as a child", shown[0])
        } else {
            format!(
                "cycle of supervisors: {} (each uses the next as a child)",
                shown.join(" -> ")
            )
        };
        diags.push(diag_at(at, message));
    }
}

/// The shortest closed walk from the first of `members` (sorted) back to it, as
/// `[a, b, ..., a]`, found breadth-first.
fn shortest_cycle(members: &[usize], edges: &[(usize, usize)]) -> Option<Vec<usize>> {
    let start = *members.first()?;
    let in_scc: HashSet<usize> = members.iter().copied().collect();
    let mut came_from: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &(from, to) in edges {
            if from != node || !in_scc.contains(&to) {
                continue;
            }
            if to == start {
                return Some(forwards(start, node, &came_from));
            }
            if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(to) {
                e.insert(node);
                queue.push_back(to);
            }
        }
    }
    None
}

/// `[start, ..., last, start]` following `came_from` back from `last`.
fn forwards(start: usize, last: usize, came_from: &HashMap<usize, usize>) -> Vec<usize> {
    let mut back = vec![last];
    let mut cur = last;
    while cur != start {
        match came_from.get(&cur) {
            Some(&prev) => {
                back.push(prev);
                cur = prev;
            }
            None => break,
        }
    }
    back.reverse();
    back.push(start);
    back
}

struct Builder<'a> {
    drafts: &'a [SupervisorDraft],
    index: &'a HashMap<&'a str, usize>,
    /// Used document -> the document that uses it.
    used_by: HashMap<usize, usize>,
    built: BTreeMap<String, Arc<SupervisorSpec>>,
    diags: Vec<Diagnostic>,
}

impl Builder<'_> {
    /// Builds the document `draft` at nesting level `depth` (and every document it uses),
    /// adding each to `built`; `None` if something in its tree is nested too deep.
    fn document(&mut self, draft: &SupervisorDraft, depth: usize) -> Option<Arc<SupervisorSpec>> {
        let user = self
            .index
            .get(draft.name.as_str())
            .and_then(|i| self.used_by.get(i))
            .map(|&u| self.drafts[u].name.clone());
        let spec = Arc::new(self.tree(draft, depth, user, &draft.name)?);
        self.built.insert(draft.name.clone(), spec.clone());
        Some(spec)
    }

    /// `draft` (a document or an inline supervisor inside the document `doc`) resolved.
    fn tree(
        &mut self,
        draft: &SupervisorDraft,
        depth: usize,
        used_by: Option<String>,
        doc: &str,
    ) -> Option<SupervisorSpec> {
        let mut children = Vec::with_capacity(draft.children.len());
        let mut complete = true;
        for child in &draft.children {
            let kind = match &child.kind {
                DraftKind::Service(s) => Some(ChildKind::Service(s.clone())),
                DraftKind::Inline(inline) => self
                    .tree(inline, depth + 1, Some(doc.to_string()), doc)
                    .map(|s| ChildKind::Supervisor(Arc::new(s))),
                DraftKind::Ref { at } => {
                    if depth + 1 > MAX_NESTING {
                        self.diags.push(diag_at(
                            at,
                            format!(
                                "supervisors are nested more than {MAX_NESTING} deep through \
                                 `{}`",
                                child.name
                            ),
                        ));
                        None
                    } else {
                        let used = self
                            .index
                            .get(child.name.as_str())
                            .map(|&j| &self.drafts[j]);
                        used.and_then(|d| self.document(d, depth + 1))
                            .map(ChildKind::Supervisor)
                    }
                }
            };
            match kind {
                Some(kind) => children.push(ChildSpec {
                    name: child.name.clone(),
                    restart: child.restart,
                    significant: child.significant,
                    kind,
                }),
                None => complete = false,
            }
        }
        complete.then(|| SupervisorSpec {
            name: draft.name.clone(),
            description: draft.description.clone(),
            file: draft.file.clone(),
            strategy: draft.strategy,
            intensity: draft.intensity,
            period: draft.period,
            auto_shutdown: draft.auto_shutdown,
            children,
            used_by,
        })
    }
}
