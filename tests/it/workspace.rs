//! Run worktrees under `.proctor/wt/`: what `proctor reap` does with those
//! of dead runs.

use crate::common::{require_engine, stderr, stdout, TestRepo};

/// Makes the worktree `.proctor/wt/<name>` on a new branch `proctor/<name>`,
/// as a run does (git2, no subprocess).
fn add_worktree(repo: &TestRepo, name: &str) {
    let git = git2::Repository::open(repo.path()).unwrap();
    let head = git.head().unwrap().peel_to_commit().unwrap();
    let branch = git
        .branch(&format!("proctor/{name}"), &head, false)
        .unwrap();
    let parent = repo.path().join(".proctor/wt");
    std::fs::create_dir_all(&parent).unwrap();
    let mut opts = git2::WorktreeAddOptions::new();
    opts.reference(Some(branch.get()));
    git.worktree(name, &parent.join(name), Some(&opts)).unwrap();
}

#[test]
fn reap_removes_dead_runs_worktrees_and_keeps_their_branches() {
    require_engine();
    let repo = TestRepo::new().file("a.txt", "1\n").commit("base");
    add_worktree(&repo, "fix");
    add_worktree(&repo, "gone");
    // A killed run's leftover edit, and a worktree whose directory went
    // while git's entry for it stayed.
    repo.write(".proctor/wt/fix/half.txt", "x\n");
    std::fs::remove_dir_all(repo.path().join(".proctor/wt/gone")).unwrap();
    let out = repo.proctor(&["reap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("removed 2 worktree(s) of dead runs (their branches stay)\n  .proctor/wt/fix\n  .proctor/wt/gone\n"),
        "{report}"
    );
    let git = git2::Repository::open(repo.path()).unwrap();
    // `git worktree list` shows the checkout only.
    assert_eq!(git.worktrees().unwrap().len(), 0);
    assert!(!repo.exists(".proctor/wt/fix"));
    for name in ["proctor/fix", "proctor/gone"] {
        assert!(
            git.find_branch(name, git2::BranchType::Local).is_ok(),
            "{name}"
        );
    }
    assert_eq!(repo.read("a.txt"), "1\n");
    // Nothing left to reap.
    let out = repo.proctor(&["reap"]);
    assert!(
        stdout(&out).contains("removed 0 worktree(s)"),
        "{}",
        stdout(&out)
    );
}
