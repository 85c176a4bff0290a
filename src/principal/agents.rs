//! The agents the principal hands work to, each with its free capacity, and which agent runs
//! which piece of work. The principal reaches agents only through [`AgentLink`].

use std::collections::HashMap;

use crate::protocol::agent::{AgentId, AgentLink, Assignment, WorkId};

/// One agent and what it has free.
struct Agent {
    link: Box<dyn AgentLink>,
    /// Task slots not in use.
    free: usize,
}

/// Every connected agent; the local pool is one of them.
#[derive(Default)]
pub(super) struct Agents {
    agents: Vec<Agent>,
    /// Where each piece of work runs, and whether it holds a slot there.
    placed: HashMap<WorkId, (usize, bool)>,
}

impl Agents {
    /// Adds an agent with all of its slots free.
    pub fn add(&mut self, link: Box<dyn AgentLink>) {
        let free = link.info().slots;
        self.agents.push(Agent { link, free });
    }

    /// Task slots of all agents together.
    pub fn slots(&self) -> usize {
        self.agents.iter().map(|a| a.link.info().slots).sum()
    }

    /// Task slots in use.
    pub fn busy(&self) -> usize {
        self.agents
            .iter()
            .map(|a| a.link.info().slots.saturating_sub(a.free))
            .sum()
    }

    /// Whether some agent could take a task now.
    pub fn has_free_slot(&self) -> bool {
        self.agents.iter().any(|a| a.free > 0)
    }

    /// Whether nothing runs anywhere.
    pub fn is_idle(&self) -> bool {
        self.placed.is_empty()
    }

    /// Hands `job` to the agent with the most free slots (work that takes no slot goes to the
    /// first agent); gives it back when none can take it.
    pub fn assign(&mut self, job: Assignment) -> Result<AgentId, Box<Assignment>> {
        let takes_slot = job.kind.takes_slot();
        let chosen = if takes_slot {
            self.agents
                .iter()
                .enumerate()
                .filter(|(_, a)| a.free > 0)
                .max_by_key(|(i, a)| (a.free, std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        } else {
            (!self.agents.is_empty()).then_some(0)
        };
        let Some(i) = chosen else {
            return Err(Box::new(job));
        };
        let agent = &mut self.agents[i];
        if takes_slot {
            agent.free -= 1;
        }
        self.placed.insert(job.id.clone(), (i, takes_slot));
        agent.link.assign(job);
        Ok(agent.link.info().id.clone())
    }

    /// Asks the agent running `id` to stop it.
    pub fn stop(&self, id: &WorkId) {
        if let Some(&(i, _)) = self.placed.get(id) {
            self.agents[i].link.stop(id);
        }
    }

    /// Frees what `id` held; false when it was not (or no longer) placed.
    pub fn finished(&mut self, id: &WorkId) -> bool {
        match self.placed.remove(id) {
            Some((i, took_slot)) => {
                if took_slot {
                    let a = &mut self.agents[i];
                    a.free = (a.free + 1).min(a.link.info().slots);
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::protocol::agent::{AgentInfo, CheckProbe, ServiceStart, StopPolicy, WorkKind};
    use crate::protocol::{AttemptKey, RunId};

    /// Records what it was given.
    struct Fake {
        info: AgentInfo,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl AgentLink for Fake {
        fn info(&self) -> &AgentInfo {
            &self.info
        }
        fn assign(&self, job: Assignment) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} runs {:?}", self.info.id, job.id));
        }
        fn stop(&self, id: &WorkId) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} stops {id:?}", self.info.id));
        }
    }

    fn fake(name: &str, slots: usize, log: &Arc<Mutex<Vec<String>>>) -> Box<dyn AgentLink> {
        Box::new(Fake {
            info: AgentInfo {
                id: AgentId(name.into()),
                slots,
                labels: BTreeMap::new(),
                version: "test".into(),
            },
            log: log.clone(),
        })
    }

    fn job(id: WorkId, kind: WorkKind) -> Assignment {
        Assignment {
            id,
            kind,
            argv: vec!["true".into()],
            env: Vec::new(),
            cwd: None,
            stop: StopPolicy::term(Duration::from_secs(1)),
        }
    }

    fn task(n: u32) -> WorkId {
        WorkId::Task(AttemptKey {
            run_id: RunId(1),
            task_idx: 0,
            task: "t".into(),
            attempt: n,
        })
    }

    #[test]
    fn capacity_is_kept_per_agent_and_tasks_go_where_most_is_free() {
        let log = Arc::default();
        let mut agents = Agents::default();
        agents.add(fake("a", 1, &log));
        agents.add(fake("b", 2, &log));
        let to = |agents: &mut Agents, n| {
            agents
                .assign(job(task(n), WorkKind::Task { timeout: None }))
                .map(|id| id.0)
                .map_err(|_| ())
        };
        assert_eq!(to(&mut agents, 1), Ok("b".into()));
        assert_eq!(
            to(&mut agents, 2),
            Ok("a".into()),
            "a and b tie; the first wins"
        );
        assert_eq!(to(&mut agents, 3), Ok("b".into()));
        assert!(!agents.has_free_slot());
        assert_eq!(to(&mut agents, 4), Err(()), "no agent has a free slot");
        assert_eq!((agents.slots(), agents.busy()), (3, 3));
        assert!(agents.finished(&task(2)));
        assert!(!agents.finished(&task(2)), "a second end frees nothing");
        assert_eq!(to(&mut agents, 5), Ok("a".into()));
    }

    #[test]
    fn services_take_no_slot_and_checks_do() {
        let log = Arc::default();
        let mut agents = Agents::default();
        agents.add(fake("local", 1, &log));
        let service = WorkId::Service(ServiceStart {
            path: "web/api".into(),
            start: 1,
        });
        assert!(
            agents
                .assign(job(service.clone(), WorkKind::Service))
                .is_ok()
        );
        assert!(
            agents.has_free_slot(),
            "a service runs beside the task slots"
        );
        let check = WorkId::Check(CheckProbe {
            monitor: "api".into(),
            probe: 1,
        });
        let kind = WorkKind::Check {
            timeout: Duration::from_secs(1),
            max_output: 1024,
        };
        assert!(agents.assign(job(check.clone(), kind)).is_ok());
        assert!(!agents.has_free_slot());
        agents.stop(&service);
        assert!(agents.finished(&service));
        assert!(!agents.has_free_slot(), "the service's end frees no slot");
        assert!(agents.finished(&check));
        assert!(agents.is_idle());
        assert_eq!(
            log.lock().unwrap().last().map(String::as_str),
            Some(format!("local stops {service:?}").as_str())
        );
    }
}
