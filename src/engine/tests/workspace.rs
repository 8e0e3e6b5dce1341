//! A run in its own worktree: the agent's `/work` and every commit are the
//! worktree's, the user's checkout is never touched, and a branch moved
//! under the run stops it naming what moved.

use super::{write, Repo};
use crate::cage::fake::{work_dir, FakeCage, Scripted};
use crate::cage::Role;
use crate::engine::events::Event;
use crate::engine::{history, Ending, Engine, EngineError};
use crate::git::{GitError, Moved, Workspace};
use crate::manifest;
use crate::state::{self, Paths};

const MANIFEST: &str =
    "loop: fix\nagent: 'fix it'\ndone_when: 'test -f done.txt'\nbudget: 3 runs\n";

/// A repository as a user has it: an ignored secret, an untracked note,
/// and an uncommitted edit to a tracked file.
fn user_repo() -> Repo {
    let repo = Repo::new(
        MANIFEST,
        &[(".gitignore", ".env\n"), ("a.txt", "committed\n")],
    );
    write(repo.root(), ".env", "SECRET=1\n");
    write(repo.root(), "note.txt", "mine\n");
    write(repo.root(), "a.txt", "edited by the user\n");
    repo
}

struct WsRun {
    result: Result<Ending, EngineError>,
    events: Vec<Event>,
}

/// One run of the engine in the worktree `ws`, as the run lifecycle sets
/// it up.
fn run_in(repo: &Repo, ws: &Workspace, cage: &FakeCage) -> WsRun {
    let path = repo.root().join("proctor.yaml");
    let manifest = manifest::load(&path).expect("manifest");
    let base = history::base_of(ws.repo(), ws.tip()).expect("base");
    let settings = repo.settings(&manifest);
    let mut events = Vec::new();
    let mut emit = |e: Event| events.push(e);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        let mut engine =
            Engine::in_workspace(cage, ws, repo.root(), &repo.key, settings, base, &mut emit)?
                .with_clock(&*repo.clock);
        engine.run(&manifest.root).await
    });
    WsRun { result, events }
}

/// What a user checks in their checkout: branch, HEAD, and every file.
fn snapshot(
    repo: &Repo,
) -> (
    Option<String>,
    Option<crate::git::Oid>,
    Vec<(String, String)>,
) {
    let mut files = Vec::new();
    for rel in [
        ".env",
        "note.txt",
        "a.txt",
        ".gitignore",
        "proctor.yaml",
        "done.txt",
    ] {
        if let Some(text) = repo.read(rel) {
            files.push((rel.to_string(), text));
        }
    }
    (
        repo.git.head_branch().expect("branch"),
        repo.git.head().expect("head"),
        files,
    )
}

#[test]
fn a_run_in_its_worktree_leaves_the_users_checkout_untouched() {
    let repo = user_repo();
    let before = snapshot(&repo);
    let dirty_before = repo
        .git
        .dirty_paths(&|p| state::is_private(p))
        .expect("dirty");
    let head = repo.git.head().expect("head").expect("a commit");
    let ws = repo.git.open_workspace("fix", head).expect("worktree");
    let cage = repo.cage([
        Scripted::exam_needs("done.txt"),
        Scripted::agent_edits(|work| {
            // The agent sees tracked files only: no ignored secret, no
            // untracked note, and the committed version of `a.txt`.
            let saw = format!(
                "env={} note={} a={}",
                work.join(".env").exists(),
                work.join("note.txt").exists(),
                std::fs::read_to_string(work.join("a.txt"))
                    .unwrap_or_default()
                    .trim()
            );
            std::fs::write(work.join("done.txt"), saw).expect("agent writes");
            std::fs::write(work.join(".env"), "planted\n").expect("agent writes");
        }),
        Scripted::exam_needs("done.txt"),
    ]);
    let run = run_in(&repo, &ws, &cage);
    assert_eq!(run.result.expect("engine run"), Ending::Closed);

    let agent = cage.calls_of(Role::Agent);
    assert_eq!(work_dir(&agent[0]).as_deref(), Some(ws.root()));
    let tip = repo
        .git
        .branch_tip("proctor/fix")
        .expect("tip")
        .expect("branch");
    assert_eq!(tip, ws.tip());
    assert_eq!(
        repo.git
            .read_blob_at(tip, "done.txt")
            .expect("blob")
            .as_deref(),
        Some(&b"env=false note=false a=committed"[..])
    );
    // The agent's write to an ignored file stays in the worktree, out of
    // the commit and out of the user's checkout.
    assert_eq!(repo.git.read_blob_at(tip, ".env").expect("blob"), None);
    assert_eq!(snapshot(&repo), before);
    assert_eq!(
        repo.git
            .dirty_paths(&|p| state::is_private(p))
            .expect("dirty"),
        dirty_before
    );
    // Committed state is the worktree's; private state the checkout's.
    assert!(repo
        .git
        .read_blob_at(tip, ".proctor/ledger.jsonl")
        .expect("blob")
        .is_some());
    assert!(repo.root().join(".proctor/logs/fix.run1.log").is_file());
    assert!(!ws.root().join(".proctor/logs").exists());
    let log: Vec<String> = repo
        .git
        .first_parent_log(tip, Some(head))
        .expect("log")
        .into_iter()
        .map(|c| c.message.lines().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(log, ["proctor(fix): close", "proctor(fix): run 1"]);
    let paths = Paths::with_work(repo.root(), ws.root());
    assert_eq!(
        paths.rel(&paths.journal_for("fix")),
        ".proctor/journal/fix.md"
    );
    assert_eq!(paths.rel(&paths.logs), ".proctor/logs");
}

#[test]
fn a_branch_moved_under_the_run_stops_it_naming_what_moved() {
    type Move = fn(&std::path::Path, &str);
    type Expect = fn(&Moved) -> bool;
    let moves: [(&str, Move, Expect); 2] = [
        (
            "deleted",
            |git_dir, _| {
                std::fs::remove_file(git_dir.join("refs/heads/proctor/fix")).expect("delete ref")
            },
            |m| *m == Moved::Deleted,
        ),
        (
            "reset",
            |git_dir, start| {
                std::fs::write(git_dir.join("refs/heads/proctor/fix"), format!("{start}\n"))
                    .expect("reset ref")
            },
            |m| matches!(m, Moved::Reset { .. }),
        ),
    ];
    for (what, mover, expect) in moves {
        let repo = user_repo();
        let head = repo.git.head().expect("head").expect("a commit");
        let ws = repo.git.open_workspace("fix", head).expect("worktree");
        // One attempt committed, so a reset has somewhere to go back to.
        std::fs::write(ws.root().join("x.txt"), "1\n").expect("write");
        let first = ws.commit("earlier", &|_| false).expect("commit");
        let git_dir = repo.git.git_dir().to_path_buf();
        let start = head.to_string();
        let cage = repo.cage([
            Scripted::exam(1),
            Scripted::agent_edits(move |work| {
                std::fs::write(work.join("done.txt"), "x").expect("agent writes");
                mover(&git_dir, &start);
            }),
        ]);
        let users = repo
            .git
            .head_branch()
            .expect("branch")
            .expect("on a branch");
        let main_before = repo.git.branch_tip(&users).expect("user's branch");
        let run = run_in(&repo, &ws, &cage);
        match run.result {
            Err(EngineError::Git(GitError::BranchMoved {
                ref branch,
                expected,
                ref moved,
            })) => {
                assert_eq!(branch, "proctor/fix", "{what}");
                assert_eq!(expected, first, "{what}");
                assert!(expect(moved), "{what}: {moved:?}");
            }
            Err(other) => panic!("{what}: {other}"),
            Ok(ending) => panic!("{what}: the run went on to {ending:?}"),
        }
        // No commit was made: none parentless, none on another branch.
        assert!(
            !run.events.iter().any(|e| matches!(e, Event::Commit { .. })),
            "{what}"
        );
        assert_eq!(
            repo.git.branch_tip(&users).expect("user's branch"),
            main_before,
            "{what}"
        );
        assert_eq!(repo.read("a.txt").as_deref(), Some("edited by the user\n"));
        assert!(repo.read("done.txt").is_none());
        drop(ws);

        // As the error's hint says: put the branch back and run again. The
        // worktree is reused and the stopped attempt's edit is committed
        // onto proctor's last commit.
        std::fs::write(
            repo.git.git_dir().join("refs/heads/proctor/fix"),
            format!("{first}\n"),
        )
        .expect("restore ref");
        let ws = repo.git.open_workspace("fix", head).expect("worktree");
        assert!(ws.reused(), "{what}");
        let cage = repo.cage([Scripted::exam_needs("done.txt")]);
        let again = run_in(&repo, &ws, &cage);
        assert_eq!(again.result.expect("resumed run"), Ending::Closed, "{what}");
        let tip = repo
            .git
            .branch_tip("proctor/fix")
            .expect("tip")
            .expect("branch");
        assert!(
            repo.git.is_ancestor(first, tip).expect("ancestry"),
            "{what}"
        );
        assert!(
            repo.git
                .read_blob_at(tip, "done.txt")
                .expect("blob")
                .is_some(),
            "{what}"
        );
    }
}

/// A run that works in the checkout itself (the branch checked out there)
/// gets the same guard: a branch deleted or reset under it stops the run
/// before the attempt's commit, which would have been parentless after a
/// delete and laid over history proctor did not write after a reset (the
/// fault suite's two `branch` trials).
#[test]
fn a_branch_moved_under_a_run_in_the_checkout_stops_it() {
    type Move = fn(&std::path::Path, &str, &str);
    type Expect = fn(&Moved) -> bool;
    let moves: [(&str, Move, Expect); 2] = [
        (
            "deleted",
            |git_dir, branch, _| {
                std::fs::remove_file(git_dir.join("refs/heads").join(branch)).expect("delete ref")
            },
            |m| *m == Moved::Deleted,
        ),
        (
            "reset",
            |git_dir, branch, start| {
                std::fs::write(
                    git_dir.join("refs/heads").join(branch),
                    format!("{start}\n"),
                )
                .expect("reset ref")
            },
            |m| matches!(m, Moved::Reset { .. }),
        ),
    ];
    for (what, mover, expect) in moves {
        let repo = Repo::new(MANIFEST, &[("a.txt", "committed\n")]);
        let start = repo.git.head().expect("head").expect("a commit");
        // One commit of proctor's on the branch, so a reset has somewhere
        // to go back to.
        write(repo.root(), "x.txt", "1\n");
        let first = repo.git.commit_all("earlier", &|_| false).expect("commit");
        let branch = repo
            .git
            .head_branch()
            .expect("branch")
            .expect("on a branch");
        let git_dir = repo.git.git_dir().to_path_buf();
        let (moved_branch, start_text) = (branch.clone(), start.to_string());
        let cage = repo.cage([
            Scripted::exam(1),
            Scripted::agent_edits(move |work| {
                std::fs::write(work.join("done.txt"), "x").expect("agent writes");
                mover(&git_dir, &moved_branch, &start_text);
            }),
        ]);
        match repo.try_run(&cage) {
            Err(EngineError::Git(GitError::BranchMoved {
                branch: ref named,
                expected,
                ref moved,
            })) => {
                assert_eq!(named, &branch, "{what}");
                assert_eq!(expected, first, "{what}");
                assert!(expect(moved), "{what}: {moved:?}");
            }
            Err(other) => panic!("{what}: {other}"),
            Ok(run) => panic!("{what}: the run went on to {:?}", run.ending),
        }
        // No commit was made: none parentless, none over the reset.
        let tip = repo.git.branch_tip(&branch).expect("branch tip");
        match what {
            "deleted" => assert_eq!(tip, None, "{what}"),
            _ => assert_eq!(tip, Some(start), "{what}"),
        }
    }
}
