//! `proctor land`'s git side: what merging a run's branch into a target
//! would make (a fast-forward, or a merge commit no ref points at yet, or
//! a conflict), and moving the target there only if it is still where it
//! was, updating its working tree safely when it is checked out.

use std::path::PathBuf;

use git2::build::CheckoutBuilder;
use git2::{BranchType, Repository};

use super::{git, GitError, GitRepo, Oid};

/// What landing `work` on `target` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandPlan {
    /// The target already has every commit of the work.
    UpToDate,
    /// The target is an ancestor of the work: it moves to `to`.
    FastForward { from: Oid, to: Oid },
    /// A merge commit `to` (parents: the target's tip `from`, then the
    /// work), made but not yet on any branch.
    Merge { from: Oid, to: Oid },
    /// The two sides change the same lines of these files.
    Conflict { from: Oid, paths: Vec<String> },
}

impl GitRepo {
    /// Plans merging branch `work` into branch `target` without moving
    /// either: a merge commit it makes is an object no ref points at.
    pub fn plan_land(&self, target: &str, work: &str) -> Result<LandPlan, GitError> {
        let from = self
            .branch_tip(target)?
            .ok_or_else(|| GitError::NoSuchBranch {
                name: target.to_string(),
            })?;
        let tip = self
            .branch_tip(work)?
            .ok_or_else(|| GitError::NoSuchBranch {
                name: work.to_string(),
            })?;
        if from == tip || self.is_ancestor(tip, from)? {
            return Ok(LandPlan::UpToDate);
        }
        if self.is_ancestor(from, tip)? {
            return Ok(LandPlan::FastForward { from, to: tip });
        }
        let repo = &self.repo;
        let ours = repo.find_commit(from).map_err(git("read target tip"))?;
        let theirs = repo.find_commit(tip).map_err(git("read work tip"))?;
        let mut index = repo
            .merge_commits(&ours, &theirs, None)
            .map_err(git("merge"))?;
        if index.has_conflicts() {
            let mut paths: Vec<String> = index
                .conflicts()
                .map_err(git("read conflicts"))?
                .flatten()
                .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                .collect();
            paths.sort();
            paths.dedup();
            return Ok(LandPlan::Conflict { from, paths });
        }
        let tree_id = index
            .write_tree_to(repo)
            .map_err(git("write merged tree"))?;
        let tree = repo.find_tree(tree_id).map_err(git("read merged tree"))?;
        let sig = self.signature()?;
        let message = format!("proctor: land {work} into {target}\n");
        let to = repo
            .commit(None, &sig, &sig, &message, &tree, &[&ours, &theirs])
            .map_err(git("commit merge"))?;
        Ok(LandPlan::Merge { from, to })
    }

    /// Where branch `branch` is checked out: this checkout or another
    /// worktree (`None`: nowhere).
    pub fn checked_out_where(&self, branch: &str) -> Result<Option<PathBuf>, GitError> {
        if self.head_branch()?.as_deref() == Some(branch) {
            return Ok(Some(self.root.clone()));
        }
        let refname = format!("refs/heads/{branch}");
        let names = self.repo.worktrees().map_err(git("list worktrees"))?;
        for name in names.iter().flatten().flatten() {
            let Ok(wt) = self.repo.find_worktree(name) else {
                continue;
            };
            let Ok(repo) = Repository::open_from_worktree(&wt) else {
                continue;
            };
            let Ok(head) = repo.find_reference("HEAD") else {
                continue;
            };
            if head.symbolic_target_bytes() == Some(refname.as_bytes()) {
                return Ok(Some(wt.path().to_path_buf()));
            }
        }
        Ok(None)
    }

    /// Moves branch `target` from `from` to `to`, only if it still points
    /// at `from`. When the target is checked out in this checkout, its
    /// index and working tree are updated first, in git's safe mode (a
    /// file with changes of the user's is never overwritten: that is an
    /// error and nothing moves).
    pub fn land(&self, target: &str, from: Oid, to: Oid) -> Result<(), GitError> {
        let repo = &self.repo;
        let branch = repo
            .find_branch(target, BranchType::Local)
            .map_err(git("find target branch"))?;
        let now = branch.get().target();
        if now != Some(from) {
            return Err(GitError::BranchMoved {
                branch: target.to_string(),
                expected: from,
                moved: match now {
                    None => super::Moved::Deleted,
                    Some(to) => super::Moved::Replaced { to },
                },
            });
        }
        let commit = repo.find_commit(to).map_err(git("read landed commit"))?;
        if self.head_branch()?.as_deref() == Some(target) {
            let mut opts = CheckoutBuilder::new();
            opts.safe();
            repo.checkout_tree(commit.as_object(), Some(&mut opts))
                .map_err(git("update the checked-out working tree"))?;
        }
        // Under the ref's lock, only if it still points at `from`.
        repo.reference_matching(
            &format!("refs/heads/{target}"),
            to,
            true,
            from,
            &format!("proctor land: {}", short(to)),
        )
        .map_err(git("move target branch"))?;
        Ok(())
    }
}

fn short(oid: Oid) -> String {
    oid.to_string().chars().take(12).collect()
}
