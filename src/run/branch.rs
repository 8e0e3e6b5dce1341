//! Branch: the run works on `proctor/<root>`, made from HEAD when it does
//! not exist; the user's branch is never touched.

use super::preflight::Ready;
use super::RunError;
use crate::engine::history;
use crate::git::Oid;
use crate::state::{self, gate, ledger, Paths};

/// Switches to the run's branch (creating it at HEAD when needed) and
/// returns the run's base commit: the branch's fork point.
pub(super) fn enter(ready: &Ready) -> Result<Oid, RunError> {
    let git = &ready.git;
    if ready.start_branch.as_deref() != Some(ready.branch.as_str()) {
        // Answers recorded while another branch was checked out travel along.
        let carried = carry_answers(&ready.paths);
        if git.branch_tip(&ready.branch)?.is_none() {
            git.create_branch(&ready.branch, ready.head)?;
        }
        git.switch_to(&ready.branch)?;
        for line in carried {
            let _ = state::append_line(&ready.paths.ledger, &line);
        }
    }
    let tip = git.head()?.unwrap_or(ready.head);
    restore_deleted_state(git, tip, &ready.paths)?;
    Ok(history::base_of(git, tip)?)
}

/// Puts back the committed state files (ledger, journals) that were
/// deleted from the working tree, e.g. with all of `.proctor/` between
/// runs: the branch records them, so the run goes on from them instead of
/// committing their deletion. Returns the paths restored.
pub(super) fn restore_deleted_state(
    git: &crate::git::GitRepo,
    tip: Oid,
    paths: &Paths,
) -> Result<Vec<String>, RunError> {
    let mut restored = Vec::new();
    let deleted = git.dirty_paths(&|p| !p.starts_with(".proctor/") || state::is_private(p))?;
    for rel in deleted {
        let path = paths.root.join(&rel);
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

/// Takes the answer lines (answers, approvals, rejections) out of an
/// untracked working-tree ledger so the branch switch cannot trip over it;
/// they are appended again after it.
fn carry_answers(paths: &Paths) -> Vec<String> {
    let text = std::fs::read(&paths.ledger)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let answers: Vec<String> = text
        .lines()
        .filter(|line| {
            matches!(
                ledger::parse(line).first(),
                Some(ledger::Entry::Answer { .. })
            ) || matches!(
                gate::parse(line).first(),
                Some(gate::GateEntry::Approval { .. } | gate::GateEntry::Rejection { .. })
            )
        })
        .map(str::to_string)
        .collect();
    if !answers.is_empty() {
        let _ = state::repair_file(&paths.ledger);
        let _ = std::fs::remove_file(&paths.ledger);
    }
    answers
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
        let paths = Paths::new(git.root());
        std::fs::remove_dir_all(root.join(".proctor")).unwrap();
        std::fs::remove_file(root.join("keep.txt")).unwrap();
        let restored = restore_deleted_state(&git, tip, &paths).unwrap();
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
