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
    Ok(history::base_of(git, tip)?)
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
