//! Branch: the run works on `proctor/<root>` in its own worktree,
//! `.proctor/wt/<root>`, made from the branch tip (the branch made from
//! HEAD when it does not exist). The user's checkout and branch are never
//! touched.

use std::path::Path;

use super::preflight::Ready;
use super::RunError;
use crate::engine::history;
use crate::git::{Oid, Workspace};
use crate::state::{self, ledger, Paths};

/// The run's worktree, opened, and where the run stands in it.
pub(super) struct Entered {
    pub ws: Workspace,
    /// The run's paths: private state in the checkout, the ledger and the
    /// journals in the worktree.
    pub paths: Paths,
    /// The run's base commit: the branch's fork point.
    pub base: Oid,
}

/// Opens the run's worktree (creating the branch at HEAD and the worktree
/// from the branch tip when needed, reusing both on resume), records the
/// branch the run started from, and moves the answers recorded since the
/// last run into the run's ledger.
pub(super) fn enter(ready: &Ready) -> Result<Entered, RunError> {
    let git = &ready.git;
    let name = ready
        .branch
        .strip_prefix("proctor/")
        .unwrap_or(ready.branch.as_str());
    let ws = git.open_workspace(name, ready.head)?;
    if let Some(from) = &ready.start_branch {
        if *from != ready.branch && git.start_branch_of(&ready.branch)?.is_none() {
            git.record_start_branch(&ready.branch, from)?;
        }
    }
    // A killed run's git lock files would fail the first commit; the run
    // lock is held, so no other proctor process writes here.
    ws.clear_stale_locks()?;
    let paths = Paths::with_work(&ready.root_dir, ws.root());
    restore_deleted_state(ws.repo(), ws.tip(), ws.root())?;
    let base = history::base_of(ws.repo(), ws.tip())?;
    Ok(Entered { ws, paths, base })
}

/// Moves the answers and approvals `proctor answer` recorded in the
/// checkout into the run's ledger (committed with the next attempt).
pub(super) fn take_answers(paths: &Paths) -> Result<usize, RunError> {
    ledger::move_answers(&paths.answers, &paths.ledger).map_err(|source| RunError::Heal {
        path: paths.rel(&paths.answers),
        source,
    })
}

/// Puts back the committed state files (ledger, journals) that were
/// deleted from the working tree, e.g. with all of `.proctor/` between
/// runs: the branch records them, so the run goes on from them instead of
/// committing their deletion. Returns the paths restored.
pub(super) fn restore_deleted_state(
    git: &crate::git::GitRepo,
    tip: Oid,
    root: &Path,
) -> Result<Vec<String>, RunError> {
    let mut restored = Vec::new();
    let deleted = git.dirty_paths(&|p| !p.starts_with(".proctor/") || state::is_private(p))?;
    for rel in deleted {
        let path = root.join(&rel);
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        let Some(bytes) = git.read_blob_at(tip, &rel)? else {
            continue;
        };
        state::write_file(&path, &bytes).map_err(|source| RunError::Heal {
            path: rel.clone(),
            source,
        })?;
        restored.push(rel);
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_deleted_between_runs_comes_back_from_the_branch() {
        // Issue 13: `.proctor/` deleted between runs left the ledger and
        // journals deleted in the tree, and the next commit recorded it.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".proctor/journal")).unwrap();
        std::fs::write(root.join(".proctor/ledger.jsonl"), "{\"a\":1}\n").unwrap();
        std::fs::write(root.join(".proctor/journal/fix.md"), "notes\n").unwrap();
        std::fs::write(root.join("keep.txt"), "x\n").unwrap();
        let git = crate::git::GitRepo::init_with_commit(root, "start").unwrap();
        git.ensure_excluded(&state::EXCLUDE_PATTERNS).unwrap();
        let tip = git.head().unwrap().unwrap();
        std::fs::remove_dir_all(root.join(".proctor")).unwrap();
        std::fs::remove_file(root.join("keep.txt")).unwrap();
        let restored = restore_deleted_state(&git, tip, git.root()).unwrap();
        assert_eq!(
            restored,
            [".proctor/journal/fix.md", ".proctor/ledger.jsonl"]
        );
        assert_eq!(
            std::fs::read_to_string(root.join(".proctor/ledger.jsonl")).unwrap(),
            "{\"a\":1}\n"
        );
        // Only proctor's state comes back: the user's deletion stays.
        assert_eq!(git.dirty_paths(&|_| false).unwrap(), ["keep.txt"]);
    }
}
