//! Parallel siblings: a `parallel: true` loop's direct children at once.
//!
//! Each child works in its own worktree `.proctor/wt/<root>__<child>` on
//! branch `proctor/<root>__<child>`, forked from the parent's branch (or
//! resumed from its own, after a kill), with an engine of its own: its own
//! budget (from its branch's history), ledger and attempt marker, on the one
//! cage and clock, its events reaching the run's observer as they happen.
//! A child that closes is merged into the parent's branch with git2; a
//! conflict becomes a card naming the files and leaves the parent's branch
//! as it was: never resolved by an agent. At most `max_parallel` (default:
//! the engine host's cores) children run at once. The halts wait for the
//! others: a blocked child (or a conflict) ends the run blocked, a gated
//! one gated, once every sibling has stopped.

use std::cell::RefCell;

use super::events::Event;
use super::{io_err, Ending, Engine, EngineError};
use crate::cage::Cage;
use crate::git::{GitError, GitRepo, Merge, Oid};
use crate::manifest::LoopSpec;
use crate::state::cards::{Card, CardKind};
use crate::state::Paths;

/// Files proctor appends to line by line: two children's lines are both
/// kept when their branches merge.
const UNION_FILES: &[&str] = &[".proctor/ledger.jsonl"];

/// How one child's part of a parallel run ended.
struct ChildDone {
    ending: Ending,
    report: super::Report,
}

impl<C: Cage> Engine<'_, C> {
    pub(super) async fn drive_parallel(&mut self, spec: &LoopSpec) -> Result<Ending, EngineError> {
        // Containers prepared for this engine's own steps: settling later
        // would race the children's runs on the same cage.
        self.discard_warm().await;
        let home = GitRepo::open(&self.paths.root)?;
        let fork = self.head()?;
        let limit = spec
            .max_parallel
            .map(|n| n as usize)
            .or_else(|| self.cage.cores())
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .max(1);
        let slots = tokio::sync::Semaphore::new(limit);
        let parent_branch = self.branch_name();
        // Answers and approvals are written where the run's own ledger is.
        let outer_ledger = self
            .outer_ledger
            .clone()
            .unwrap_or_else(|| self.paths.ledger.clone());

        let cage = self.cage;
        let key = self.key;
        let clock = self.clock;
        let base = self.base;
        let git = self.git;
        let workspace = self.workspace;
        let checkout = &self.checkout;
        let settings = &self.settings;
        let paths = &self.paths;
        let root_id = self.root_id.as_str();
        let emit = RefCell::new(&mut *self.emit);
        let send = |event: Event| {
            let mut emit = emit.borrow_mut();
            (*emit)(event)
        };

        let merge = |child: &LoopSpec, branch: &str, tip: Oid| -> Result<Merge, EngineError> {
            let message = format!(
                "proctor({}): merge {}\n\nMerges `{branch}` (loop `{}`, closed) into the branch of loop `{}`.\n\nProctor-Merge: {}\nProctor-Merged: {tip}\n",
                spec.id, child.id, child.id, spec.id, child.id
            );
            Ok(match (workspace, checkout) {
                (Some(ws), _) => ws.merge(tip, &message, UNION_FILES)?,
                (None, Some(guard)) => guard.merge(git, tip, &message, UNION_FILES)?,
                (None, None) => {
                    return Err(EngineError::Git(GitError::NoSuchBranch {
                        name: "(HEAD is detached: no branch to merge parallel children into)"
                            .into(),
                    }))
                }
            })
        };

        let children = spec.children.iter().enumerate().map(|(index, child)| {
            let (home, slots, send, merge) = (&home, &slots, &send, &merge);
            let (outer_ledger, parent_branch) = (&outer_ledger, &parent_branch);
            async move {
                let _slot = slots.acquire().await.ok();
                let name = format!("{root_id}__{}", child.id);
                let ws = home.open_workspace(&name, fork)?;
                let cleared = ws.clear_stale_locks()?;
                let slot = index as u32 + 1;
                send(Event::Fork {
                    loop_id: child.id.clone(),
                    parent: spec.id.clone(),
                    branch: ws.branch().to_string(),
                    slot,
                    resumed: ws.reused(),
                });
                let mut child_settings = settings.clone();
                child_settings.slot = Some(slot);
                let mut forward = |event: Event| send(event);
                let (ending, mut report) = {
                    let mut sub = Engine::in_workspace(
                        cage,
                        &ws,
                        &paths.root,
                        key,
                        child_settings,
                        base,
                        &mut forward,
                    )?
                    .with_clock(clock);
                    sub.paths = Paths::for_child(&paths.root, ws.root(), &name);
                    sub.root_id = root_id.to_string();
                    sub.concurrent = true;
                    sub.outer_ledger = Some(outer_ledger.clone());
                    let ending = sub.run(child).await?;
                    (ending, std::mem::take(&mut sub.report))
                };
                for lock in cleared {
                    report.boundary.push(format!(
                        "loop `{}`: removed the stale git lock `{}` a killed run left",
                        child.id,
                        paths.rel(&lock)
                    ));
                }
                if ending != Ending::Closed {
                    return Ok(ChildDone { ending, report });
                }
                let tip = ws.tip();
                let branch = ws.branch().to_string();
                match merge(child, &branch, tip)? {
                    Merge::Conflict { paths: files } => {
                        let reason = conflict_reason(&branch, parent_branch, &files);
                        let card = Card {
                            kind: CardKind::Blocked,
                            loop_id: &child.id,
                            task: child.task.as_deref(),
                            exam: &child.done_when,
                            reason: format!("proctor stopped loop `{}`: {reason}.", child.id),
                            tried: &[],
                            last_failure: "",
                            notes: &[],
                            review: None,
                            rerun: &settings.rerun,
                        };
                        let path = card.write(&paths.inbox).map_err(io_err(&paths.inbox))?;
                        send(Event::Card {
                            loop_id: child.id.clone(),
                            kind: "blocked".into(),
                            path: paths.rel(&path),
                            reason: reason.clone(),
                        });
                        report
                            .unverified
                            .push(format!("loop `{}` did not merge: {reason}", child.id));
                        Ok(ChildDone {
                            ending: Ending::Blocked {
                                loop_id: child.id.clone(),
                            },
                            report,
                        })
                    }
                    merged => {
                        send(Event::Merge {
                            loop_id: child.id.clone(),
                            parent: spec.id.clone(),
                            branch: branch.clone(),
                            commit: match merged {
                                Merge::Merged { commit } => Some(commit.to_string()),
                                _ => None,
                            },
                        });
                        // Its commits are the parent's now: the worktree and
                        // the branch go, so a later run forks afresh.
                        drop(ws);
                        home.remove_workspace(&name)?;
                        home.delete_branch_at(&branch, tip)?;
                        Ok(ChildDone { ending, report })
                    }
                }
            }
        });
        let done: Vec<Result<ChildDone, EngineError>> =
            futures_util::future::join_all(children).await;

        let mut ending = Ending::Closed;
        let mut first_error = None;
        for result in done {
            match result {
                Ok(child) => {
                    self.absorb(child.report);
                    ending = match (ending, child.ending) {
                        (blocked @ Ending::Blocked { .. }, _) => blocked,
                        (_, blocked @ Ending::Blocked { .. }) => blocked,
                        (gated @ Ending::Gated { .. }, _) => gated,
                        (_, other) => other,
                    };
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        Ok(ending)
    }

    /// A child's report, added to this run's.
    fn absorb(&mut self, child: super::Report) {
        self.report.verified.extend(child.verified);
        self.report.unverified.extend(child.unverified);
        self.report.boundary.extend(child.boundary);
        for line in child.guarded {
            if !self.report.guarded.contains(&line) {
                self.report.guarded.push(line);
            }
        }
        self.report.agent_runs += child.agent_runs;
        self.report.agent_secs += child.agent_secs;
    }

    /// The branch this engine commits to, for messages.
    fn branch_name(&self) -> String {
        match (self.workspace, &self.checkout) {
            (Some(ws), _) => ws.branch().to_string(),
            (None, Some(guard)) => guard.branch().to_string(),
            (None, None) => "HEAD".into(),
        }
    }
}

fn conflict_reason(branch: &str, parent: &str, files: &[String]) -> String {
    let list: Vec<String> = files.iter().map(|f| format!("`{f}`")).collect();
    format!(
        "it closed, but its branch `{branch}` conflicts with `{parent}` in {} {}; nothing was merged and `{parent}` is as it was. Merge `{branch}` into `{parent}` by hand (proctor never resolves a conflict, nor lets an agent), then run `proctor run` again",
        if files.len() == 1 { "file" } else { "files" },
        list.join(", ")
    )
}
