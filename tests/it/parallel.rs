//! `parallel: true` end to end on both engines: children at once in their
//! own worktrees, each with its own `PROCTOR_SLOT`, merged into the
//! parent's branch; a conflict is a card and leaves the parent's branch
//! clean; kill -9 mid-parallel resumes each child from its branch.

use crate::common::{self, on_both_engines, stderr, TestRepo};
use proctor::cage::EngineKind;
use proctor::engine::events::Event;

/// Two children, each writing its own file (holding the slot its agent
/// saw) after `delay` seconds; each child's exam checks the file holds the
/// slot the exam sees; the parent (no agent) checks both files.
fn tree(agent_a: &str, agent_b: &str) -> String {
    format!(
        "loop: all\ndone_when: test -f a && test -f b\nparallel: true\nmax_parallel: 2\nloops:\n  - loop: a\n    agent: '{agent_a}'\n    done_when: 'test -f a && [ \"$(cat a)\" = \"$PROCTOR_SLOT\" ]'\n    budget: 3 runs\n  - loop: b\n    agent: '{agent_b}'\n    done_when: 'test -f b && [ \"$(cat b)\" = \"$PROCTOR_SLOT\" ]'\n    budget: 3 runs\n"
    )
}

fn repo(engine: EngineKind, manifest: &str) -> TestRepo {
    TestRepo::new()
        .engine(&common::socket(engine))
        .file("shared.txt", "base\n")
        .manifest(manifest)
        .commit("base")
}

/// The text of `path` on `branch`, from git (whatever is checked out).
fn file_on(repo: &TestRepo, branch: &str, path: &str) -> Option<String> {
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = git
        .find_branch(branch, git2::BranchType::Local)
        .ok()?
        .get()
        .peel_to_commit()
        .ok()?;
    let entry = tip.tree().ok()?.get_path(std::path::Path::new(path)).ok()?;
    let blob = git.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).into_owned())
}

/// When each loop's first agent started and its last agent ended (the
/// events file's timestamps).
fn agent_span(repo: &TestRepo, loop_id: &str) -> (f64, f64) {
    let records = repo.events();
    let start = records
        .iter()
        .find(|r| matches!(&r.event, Event::AgentStart { loop_id: l, .. } if l == loop_id))
        .map(|r| r.ts)
        .unwrap_or_else(|| panic!("no agent of `{loop_id}` started"));
    let end = records
        .iter()
        .rev()
        .find(|r| matches!(&r.event, Event::AgentEnd { loop_id: l, .. } if l == loop_id))
        .map(|r| r.ts)
        .unwrap_or_else(|| panic!("no agent of `{loop_id}` ended"));
    (start, end)
}

fn merged(repo: &TestRepo) -> Vec<String> {
    repo.events()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Merge { loop_id, .. } => Some(loop_id.clone()),
            _ => None,
        })
        .collect()
}

fn no_worktrees_left(repo: &TestRepo) {
    let git = git2::Repository::open(repo.path()).unwrap();
    let names: Vec<String> = git
        .worktrees()
        .unwrap()
        .iter()
        .flatten()
        .flatten()
        .map(str::to_string)
        .filter(|n| n.contains("__"))
        .collect();
    assert!(names.is_empty(), "children's worktrees left: {names:?}");
}

fn two_children_run_at_once_with_their_own_slots_and_both_merge(engine: EngineKind) {
    let repo = repo(
        engine,
        &tree(
            "sleep 2; echo $PROCTOR_SLOT > a",
            "sleep 2; echo $PROCTOR_SLOT > b",
        ),
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The agents overlapped in time: each started before the other ended.
    let (a_start, a_end) = agent_span(&repo, "a");
    let (b_start, b_end) = agent_span(&repo, "b");
    assert!(
        a_start < b_end && b_start < a_end,
        "a ran {a_start}..{a_end}, b ran {b_start}..{b_end}"
    );
    // Slots differ, and the exams saw the agents' slots.
    assert_eq!(file_on(&repo, "proctor/all", "a").as_deref(), Some("1\n"));
    assert_eq!(file_on(&repo, "proctor/all", "b").as_deref(), Some("2\n"));
    let mut m = merged(&repo);
    m.sort();
    assert_eq!(m, ["a", "b"]);
    let log = repo.log("proctor/all");
    assert!(log.iter().any(|l| l == "proctor(all): merge a"), "{log:?}");
    assert!(log.iter().any(|l| l == "proctor(all): merge b"), "{log:?}");
    no_worktrees_left(&repo);
    repo.assert_no_containers();
}

fn conflicting_children_give_a_card_and_a_clean_parent(engine: EngineKind) {
    let repo = repo(
        engine,
        &tree(
            "echo a-side > shared.txt; echo $PROCTOR_SLOT > a",
            "echo b-side > shared.txt; echo $PROCTOR_SLOT > b",
        ),
    );
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Whichever closed second could not merge: its card names the file.
    let m = merged(&repo);
    assert_eq!(m.len(), 1, "{m:?}");
    let loser = if m[0] == "a" { "b" } else { "a" };
    let card = repo.read(&format!("INBOX/{loser}.md"));
    assert!(card.contains("`shared.txt`"), "{card}");
    assert!(card.contains("nothing was merged"), "{card}");
    // The parent's branch holds the winner's side whole, no markers, and
    // nothing of the loser; the loser's branch keeps its work.
    let shared = file_on(&repo, "proctor/all", "shared.txt").unwrap();
    assert_eq!(shared, format!("{}-side\n", m[0]));
    assert_eq!(file_on(&repo, "proctor/all", loser), None);
    assert_eq!(
        file_on(&repo, &format!("proctor/all__{loser}"), "shared.txt").as_deref(),
        Some(format!("{loser}-side\n").as_str())
    );
    // The parent's exam never ran on a half-merged tree.
    assert!(!repo.events().iter().any(|r| matches!(
        &r.event,
        Event::CheckResult { loop_id, .. } if loop_id == "all"
    )));
    repo.assert_no_containers();
}

fn kill_nine_mid_parallel_resumes_each_child_from_its_branch(engine: EngineKind) {
    let repo = repo(
        engine,
        &tree(
            "echo $PROCTOR_SLOT > a",
            "if [ -f b.part ]; then echo $PROCTOR_SLOT > b; else touch b.part; sleep 120; fi",
        ),
    );
    let mut child = repo.spawn_quiet(&["run"]);
    repo.wait_until("b's first agent never started", |r| {
        r.exists(".proctor/wt/all__b/b.part")
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    // A git the kill cut short left a lock in b's worktree.
    let admin = repo.path().join(".git/worktrees/all__b");
    assert!(admin.is_dir(), "b's worktree survived the kill");
    std::fs::write(admin.join("index.lock"), "").unwrap();

    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = repo.events();
    // b resumed from its branch: its cut-short attempt was committed as
    // interrupted (run 1), and run 2 finished the work.
    assert!(records.iter().any(|r| matches!(
        &r.event,
        Event::Fork { loop_id, resumed: true, .. } if loop_id == "b"
    )));
    assert!(records.iter().any(|r| matches!(
        &r.event,
        Event::Interrupted { loop_id, edits: true, .. } if loop_id == "b"
    )));
    assert_eq!(file_on(&repo, "proctor/all", "b.part").as_deref(), Some(""));
    assert_eq!(file_on(&repo, "proctor/all", "b").as_deref(), Some("2\n"));
    assert_eq!(file_on(&repo, "proctor/all", "a").as_deref(), Some("1\n"));
    no_worktrees_left(&repo);
    repo.assert_no_containers();
}

fn stop_ends_every_child_and_one_run_per_repo_holds(engine: EngineKind) {
    let repo = repo(engine, &tree("sleep 120", "sleep 120"));
    let mut run = repo.spawn_quiet(&["run"]);
    repo.wait_until("both children's agents never started", |r| {
        let started: Vec<String> = r
            .events()
            .iter()
            .filter_map(|e| match &e.event {
                Event::AgentStart { loop_id, .. } => Some(loop_id.clone()),
                _ => None,
            })
            .collect();
        started.iter().any(|l| l == "a") && started.iter().any(|l| l == "b")
    });
    // A second run of the repository is refused while the children work.
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = repo.proctor(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let _ = run.wait();
    repo.assert_no_containers();
    let status = crate::common::stdout(&repo.proctor(&["status"]));
    assert!(status.contains("slot 1 on proctor/all__a"), "{status}");
    assert!(status.contains("slot 2 on proctor/all__b"), "{status}");
}

on_both_engines!(
    two_children_run_at_once_with_their_own_slots_and_both_merge,
    conflicting_children_give_a_card_and_a_clean_parent,
    kill_nine_mid_parallel_resumes_each_child_from_its_branch,
    stop_ends_every_child_and_one_run_per_repo_holds,
);
