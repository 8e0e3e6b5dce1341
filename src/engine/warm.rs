//! Starting the containers of the next steps while the current one runs.
//!
//! A loop alternates agent and exam containers, and starting a container
//! costs far more than a quick agent or exam runs. Before each step the
//! engine asks the cage to [`prepare`](crate::cage::Cage::prepare) the
//! containers of that step and the next ones it predicts (agent run N+1,
//! then its exam, ...), so their start-up overlaps with the work in front
//! of them. A wrong prediction (the exam passed, a budget ran out) costs a
//! discarded container, never a result: the cage only uses a prepared
//! container for an identical invocation, and only then starts the command.
//! Prepared containers and their scratch directories are discarded when a
//! loop ends or starts waiting.

use super::exam::numeric_user;
use super::{Engine, EngineError};
use crate::cage::Cage;
use crate::git::Oid;
use crate::leftovers::ScratchDir;
use crate::manifest::LoopSpec;
use crate::protect::seal;
use crate::state::ledger;

/// Containers kept ahead: the step about to run and the three after it, so
/// each container has one to two iterations' time to start. Measured on a
/// 2-core machine (docs/benchmark.md): 3 left agents waiting for their
/// start; more than 4 gained nothing and wastes more at a loop's end.
const LOOKAHEAD: usize = 4;

/// How many steps ahead to prepare: [`LOOKAHEAD`], or `PROCTOR_PREPARE_AHEAD`
/// (`0` turns preparing off: every container starts cold, as a diagnostic).
fn lookahead() -> usize {
    static AHEAD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *AHEAD.get_or_init(|| {
        std::env::var("PROCTOR_PREPARE_AHEAD")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or(LOOKAHEAD, |n: usize| n.min(8))
    })
}

/// The step the engine is about to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Agent,
    Exam,
}

/// An exam scratch directory made ahead of need, with a container started
/// on it; `seq` is the exam administration it is for.
pub(super) struct WarmTree {
    seq: u64,
    loop_id: String,
    tree: ScratchDir,
}

impl<C: Cage> Engine<'_, C> {
    /// Prepares the containers of `next` and of the steps predicted after
    /// it: agents and exams alternate, agents only within the run budget.
    /// `next_commit` is the commit of the next exam when `next` is one: it
    /// decides how the exam mounts the loop's caches (only the base
    /// commit's exam writes them); later exams are on commits not made yet.
    pub(super) fn warm_up(&mut self, spec: &LoopSpec, next: Step, next_commit: Option<Oid>) {
        if self.concurrent {
            return;
        }
        let lookahead = lookahead();
        let mut run = self.runs.get(&spec.id).copied().unwrap_or(0) + 1;
        let mut seq = self.exams;
        let mut step = next;
        let mut commit = next_commit.filter(|_| next == Step::Exam);
        for _ in 0..lookahead {
            match step {
                Step::Agent => {
                    if !self.within_run_budget(spec, run) {
                        // No agent, hence no exam after it either.
                        return;
                    }
                    self.prepare_agent(spec, run);
                    run += 1;
                    step = Step::Exam;
                }
                Step::Exam => {
                    // A judged-only loop has no exam to prepare.
                    if spec.judged_only().is_none() {
                        self.prepare_exam(spec, seq, commit.take());
                    }
                    seq += 1;
                    step = Step::Agent;
                }
            }
        }
    }

    /// Removes every prepared container and scratch directory.
    pub(super) async fn discard_warm(&mut self) {
        if !self.concurrent {
            self.cage.settle().await;
        }
        self.warm_trees.clear();
    }

    /// The scratch directory prepared for the exam about to run, if any.
    pub(super) fn take_warm_tree(&mut self, loop_id: &str) -> Option<ScratchDir> {
        let seq = self.exams;
        let at = self
            .warm_trees
            .iter()
            .position(|w| w.seq == seq && w.loop_id == loop_id)?;
        Some(self.warm_trees.swap_remove(at).tree)
    }

    fn prepare_agent(&mut self, spec: &LoopSpec, run: u32) {
        let Some(agent) = self.agent_for(spec) else {
            return;
        };
        let log = self.paths.logs.join(format!("{}.run{run}.log", spec.id));
        match self.agent_invocation(spec, run, agent, Some(Vec::new()), log) {
            Ok(invocation) => self.cage.prepare(&invocation, &self.limits_for(spec)),
            Err(error) => tracing::debug!(%error, "not preparing an agent ahead of need"),
        }
    }

    fn prepare_exam(&mut self, spec: &LoopSpec, seq: u64, commit: Option<Oid>) {
        if !self.exam_preparable() {
            return;
        }
        if self
            .warm_trees
            .iter()
            .any(|w| w.seq == seq && w.loop_id == spec.id)
        {
            return;
        }
        let prepared = (|| -> Result<(), EngineError> {
            let tree = self.exam_tree(self.last_tree_bytes)?;
            let log = self.paths.logs.join(format!("{}.exam.log", spec.id));
            // The commit of a later exam is not known yet (never the base:
            // an agent's commit comes first). Its value is passed at the
            // start either way (`PROCTOR_COMMIT` is a late value).
            let commit = commit.map(|c| c.to_string()).unwrap_or_default();
            let invocation = self.exam_invocation(spec, &commit, tree.path(), Vec::new(), log)?;
            self.cage.prepare(&invocation, &self.limits_for(spec));
            self.warm_trees.push(WarmTree {
                seq,
                loop_id: spec.id.clone(),
                tree,
            });
            Ok(())
        })();
        if let Err(error) = prepared {
            tracing::debug!(%error, "not preparing an exam ahead of need");
        }
    }

    /// Whether an exam's container can exist before its tree is exported.
    /// Not when the exam's materials are mounted read-only from inside the
    /// tree (proctor cannot seal them): those mounts cannot exist before the
    /// tree does. Known once one exam of the run has been set up; before,
    /// predicted from what `sit` will do (seal when proctor may give files
    /// away to a numeric user), so the run's first exam can be prepared
    /// too. A wrong prediction costs a discarded container: the cage only
    /// uses a prepared one for an equal invocation.
    fn exam_preparable(&self) -> bool {
        match self.last_exam_covered {
            Some(covered) => !covered,
            None => seal::permitted() && numeric_user(&self.settings.user).is_some(),
        }
    }

    /// Whether run `run` of `spec` would be within its run budget (answers
    /// refresh it); wall-clock budgets are left to the real check.
    fn within_run_budget(&self, spec: &LoopSpec, run: u32) -> bool {
        let Some(cap) = spec.budget.runs else {
            return true;
        };
        let refreshes =
            ledger::answers_for(&self.ledger_entries(), self.key, &spec.id).len() as u32;
        run <= cap.saturating_mul(1 + refreshes)
    }
}
