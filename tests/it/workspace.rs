//! Run worktrees under `.proctor/wt/`: what `proctor reap` does with those
//! of dead runs.

use crate::common::{
    on_both_engines, require_engine, socket, stderr, stdout, Background, TestRepo,
};
use proctor::cage::EngineKind;
use proctor::engine::events::{Event, Outcome};

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

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = ". ./calc.sh\n[ \"$(add 2 2)\" = 4 ] || { echo \"FAIL: add 2 2 printed $(add 2 2)\"; exit 1; }\n";
const FIX: &str = "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh";

/// A buggy calculator with its test, `agent.sh` as the agent, the user's
/// git-ignored secret and virtualenv in the checkout.
fn user_repo(engine: EngineKind, agent: &str) -> TestRepo {
    let repo = TestRepo::new()
        .engine(&socket(engine))
        .file(".gitignore", ".env\n.venv/\nbuild/\n")
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", agent)
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 3 runs\n")
        .commit("buggy");
    repo.write(".env", "SECRET=do-not-leak\n");
    repo.write(".venv/bin/activate", "# the user's venv\n");
    repo
}

/// The outcome and exit code of the last run, once it has ended.
fn run_end(repo: &TestRepo) -> Option<(Outcome, i32)> {
    repo.events().into_iter().rev().find_map(|r| match r.event {
        Event::RunEnd { outcome, exit, .. } => Some((outcome, exit)),
        _ => None,
    })
}

/// Commits `rel` with `text` on the branch checked out in the checkout,
/// as the user would (git2, no subprocess).
fn user_commit(repo: &TestRepo, rel: &str, text: &str, message: &str) {
    repo.write(rel, text);
    let git = git2::Repository::open(repo.path()).unwrap();
    let mut index = git.index().unwrap();
    index.add_path(std::path::Path::new(rel)).unwrap();
    index.write().unwrap();
    let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("user", "user@example.com").unwrap();
    let parent = git.head().unwrap().peel_to_commit().unwrap();
    git.commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
        .unwrap();
}

/// Issue 11: a user who edits, commits and switches branches while a
/// `--bg` run works keeps their checkout to themselves, and the agent
/// never sees (or leaves anything in) the user's git-ignored files.
fn the_user_keeps_working_while_a_background_run_works(engine: EngineKind) {
    require_engine();
    // Run 1 records what `/work` holds, writes to ignored files, and waits
    // until the user is done; it fixes nothing. Run 2 fixes the bug.
    let agent = format!(
        "if [ \"$PROCTOR_RUN\" = 1 ]; then\n  ls -A > seen.txt; cat .env >> seen.txt 2>&1\n  mkdir -p .venv/bin build; echo 'touch /tmp/pwned' >> .venv/bin/activate; echo planted > .env; echo obj > build/out.o\n  touch started; while [ ! -f go ]; do sleep 0.2; done; rm go started\nelse\n  {FIX}\nfi\n"
    );
    let repo = user_repo(engine, &agent);
    let out = repo.proctor(&["run", "--bg"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo.wait_until("the agent never started", |r| r.wt_exists("fix", "started"));

    // Meanwhile, in the checkout: an edit, a commit on `master`, a new
    // branch checked out, and an uncommitted edit there.
    user_commit(&repo, "notes.txt", "mine\n", "user: notes");
    {
        let git = git2::Repository::open(repo.path()).unwrap();
        let head = git.head().unwrap().peel_to_commit().unwrap();
        git.branch("feature", &head, false).unwrap();
        git.set_head("refs/heads/feature").unwrap();
    }
    user_commit(&repo, "feature.txt", "feature\n", "user: feature");
    repo.write("calc.sh", "# the user's own edit\n");
    repo.write(".proctor/wt/fix/go", "");

    repo.wait_until("the run never ended", |r| run_end(r).is_some());
    assert_eq!(run_end(&repo), Some((Outcome::Closed, 0)));

    // The run closed on its branch, with none of the user's commits...
    let work = repo.log("proctor/fix");
    assert_eq!(work[0], "proctor(fix): close", "{work:?}");
    assert!(!work.iter().any(|m| m.starts_with("user:")), "{work:?}");
    assert!(repo
        .read_at("proctor/fix", "calc.sh")
        .unwrap()
        .contains("$1 + $2"));
    // ...and none of its commits are on the user's branches.
    for branch in ["master", "feature"] {
        let log = repo.log(branch);
        assert!(
            !log.iter().any(|m| m.starts_with("proctor(")),
            "{branch}: {log:?}"
        );
    }
    // The checkout is as the user left it.
    assert_eq!(repo.head_branch(), "feature");
    assert_eq!(repo.read("calc.sh"), "# the user's own edit\n");
    assert_eq!(repo.status(), ["calc.sh"]);

    // The agent saw tracked files only: no `.env`, no `.venv`.
    let seen = repo.read_at("proctor/fix", "seen.txt").unwrap();
    assert!(!seen.contains("do-not-leak"), "{seen}");
    let listed: Vec<&str> = seen.lines().collect();
    assert!(listed.contains(&"calc.sh"), "{seen}");
    assert!(!listed.contains(&".venv"), "{seen}");
    // What it wrote to ignored files reached neither a commit nor the
    // checkout, and nothing of it persists: the closed run's worktree is gone.
    assert_eq!(repo.read(".env"), "SECRET=do-not-leak\n");
    assert_eq!(repo.read(".venv/bin/activate"), "# the user's venv\n");
    assert!(!repo.exists("build"));
    for path in [".env", ".venv/bin/activate", "build/out.o"] {
        assert_eq!(repo.read_at("proctor/fix", path), None, "{path}");
    }
    assert!(!repo.exists(".proctor/wt/fix"));
    assert_eq!(repo.worktrees(), Vec::<String>::new());
    repo.assert_no_containers();
}

/// Issue 11: the run's branch deleted under it stops the run (exit 2)
/// naming what moved and how to resume; done as the hint says, the next
/// run resumes in the same worktree with the stopped attempt's edits.
fn a_branch_deleted_mid_run_stops_it_and_the_hint_resumes_it(engine: EngineKind) {
    require_engine();
    let agent = format!(
        "if [ -f started ]; then {FIX}; else touch started; while [ ! -f go ]; do sleep 0.2; done; fi\n"
    );
    let repo = user_repo(engine, &agent);
    let base = {
        let git = git2::Repository::open(repo.path()).unwrap();
        let oid = git.head().unwrap().target().unwrap();
        oid
    };
    let run = repo
        .command(&["run", "--plain"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Background(run);
    repo.wait_until("the agent never started", |r| r.wt_exists("fix", "started"));
    {
        let git = git2::Repository::open(repo.path()).unwrap();
        git.find_reference("refs/heads/proctor/fix")
            .unwrap()
            .delete()
            .unwrap();
    }
    repo.write(".proctor/wt/fix/go", "");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut err).unwrap();
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("`proctor/fix`") && err.contains("was deleted"),
        "{err}"
    );
    let hint = format!("git branch proctor/fix {base}");
    assert!(err.contains(&hint), "{err}");
    // Nothing was committed anywhere: no parentless commit, no commit on
    // the user's branch.
    assert_eq!(repo.log("proctor/fix"), Vec::<String>::new());
    assert_eq!(repo.log("master"), ["buggy"]);
    assert!(repo.wt_exists("fix", "started"), "the worktree is kept");

    // As the hint says.
    {
        let git = git2::Repository::open(repo.path()).unwrap();
        let commit = git.find_commit(base).unwrap();
        git.branch("proctor/fix", &commit, false).unwrap();
    }
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = repo.log("proctor/fix");
    // The stopped attempt's edit (`started`) was settled in the reused
    // worktree as its run, then run 2 fixed the bug.
    assert!(
        log.contains(&"proctor(fix): run 1 (interrupted)".to_string()),
        "{log:?}"
    );
    assert!(repo.read_at("proctor/fix", "started").is_some());
    assert_eq!(repo.read("calc.sh"), CALC);
    repo.assert_no_containers();
}

/// Issue 11: a run killed with SIGKILL leaves its worktree; the next run
/// reuses it (the killed agent's edit is settled as its interrupted run)
/// and removes it once the loop closes.
fn a_run_killed_with_sigkill_resumes_in_its_worktree(engine: EngineKind) {
    require_engine();
    let agent = format!("if [ -f slow.txt ]; then {FIX}; else touch slow.txt; sleep 60; fi\n");
    let repo = user_repo(engine, &agent);
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("the agent never started", |r| {
        r.wt_exists("fix", "slow.txt")
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert_eq!(repo.worktrees(), ["fix"]);
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = repo.log("proctor/fix");
    assert!(
        log.contains(&"proctor(fix): run 1 (interrupted)".to_string()),
        "{log:?}"
    );
    assert!(repo.read_at("proctor/fix", "slow.txt").is_some());
    assert_eq!(repo.worktrees(), Vec::<String>::new());
    assert_eq!(repo.head_branch(), "master");
    assert_eq!(repo.status(), Vec::<String>::new());
    repo.assert_no_containers();
}

on_both_engines!(
    the_user_keeps_working_while_a_background_run_works,
    a_branch_deleted_mid_run_stops_it_and_the_hint_resumes_it,
    a_run_killed_with_sigkill_resumes_in_its_worktree,
    land_merges_only_a_merged_tree_that_passes,
);

/// Issue 11: `proctor land` merges the run's branch into the branch the run
/// started from only when the root exam passes on the merged tree; a
/// failing merged tree and a dirty checked-out target leave it as it was.
fn land_merges_only_a_merged_tree_that_passes(engine: EngineKind) {
    require_engine();
    let repo = user_repo(engine, &format!("{FIX}\n"));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let master = |repo: &TestRepo| repo.log("master");

    // The checked-out target has an uncommitted change: refused, nothing moves.
    repo.write("calc.sh", "# mine\n");
    let out = repo.proctor(&["land"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`master` is checked out here with uncommitted changes: calc.sh"),
        "{}",
        stderr(&out)
    );
    assert_eq!(master(&repo), ["buggy"]);
    assert_eq!(repo.read("calc.sh"), "# mine\n");
    repo.write("calc.sh", CALC);

    // Meanwhile `master` gained a test the work does not pass: the merged
    // tree fails its exam, so `master` stays and a card says why.
    let stricter = format!("{TEST}[ \"$(add 3 3)\" = 7 ] || {{ echo 'FAIL: add 3 3'; exit 1; }}\n");
    user_commit(&repo, "test.sh", &stricter, "user: stricter test");
    let out = repo.proctor(&["land"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(master(&repo), ["user: stricter test", "buggy"]);
    assert_eq!(repo.read("calc.sh"), CALC);
    let card = repo.read("INBOX/fix.md");
    assert!(
        card.contains("NOT LANDED: fix") && card.contains("FAIL: add 3 3"),
        "{card}"
    );

    // Fixed on `master`, the merged tree passes: a merge commit lands, and
    // the checked-out files follow.
    let fixed = format!("{TEST}[ \"$(add 3 3)\" = 6 ] || {{ echo 'FAIL: add 3 3'; exit 1; }}\n");
    user_commit(&repo, "test.sh", &fixed, "user: right test");
    let out = repo.proctor(&["land"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("landed `proctor/fix` on `master`"),
        "{}",
        stdout(&out)
    );
    let log = master(&repo);
    assert_eq!(log[0], "proctor: land proctor/fix into master", "{log:?}");
    assert!(repo.read("calc.sh").contains("$1 + $2"));
    assert_eq!(repo.read("test.sh"), fixed);
    assert_eq!(repo.status(), Vec::<String>::new());
    assert!(!repo.exists("INBOX/fix.md"));
    let out = repo.proctor(&["land"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to land"), "{}", stdout(&out));
    repo.assert_no_containers();
}
