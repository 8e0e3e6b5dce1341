//! `parallel: true`: children in their own worktrees and branches, merged
//! into the parent's branch as they close, a conflict a card; budgets,
//! answers, gates and resumes per child. (The fake cage answers at once,
//! so here the children take turns; that they overlap in time is shown
//! on real engines in `tests/it/parallel.rs`.)

use super::{write, Repo, Run};
use crate::cage::fake::Scripted;
use crate::cage::Role;
use crate::engine::events::Event;
use crate::engine::Ending;
use crate::state::ledger;

const TREE: &str = "loop: all\ndone_when: test -f a && test -f b\nparallel: true\nloops:\n  - loop: a\n    agent: make-a\n    done_when: test -f a\n    budget: 1 run\n  - loop: b\n    agent: make-b\n    done_when: test -f b\n    budget: 1 run\n";

fn writes(path: &'static str, text: &'static str) -> Scripted {
    Scripted::agent_edits(move |work| write(work, path, text))
}

fn env_of(inv: &crate::cage::Invocation, name: &str) -> Option<String> {
    inv.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn merges(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::Merge {
                loop_id, commit, ..
            } => Some(format!("{loop_id}: {}", commit.is_some())),
            _ => None,
        })
        .collect()
}

#[test]
fn closed_children_merge_into_the_parent_whose_exam_runs_on_the_merged_tree() {
    let repo = Repo::new(TREE, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("a"),
        writes("a", "from a\n"),
        Scripted::exam_needs("a"),
        Scripted::exam_needs("b"),
        writes("b", "from b\n"),
        Scripted::exam_needs("b"),
        Scripted::exam_of(|w| i64::from(!(w.join("a").exists() && w.join("b").exists()))),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed, "{:?}", run.trace());
    assert_eq!(merges(&run), ["a: true", "b: true"]);
    assert_eq!(
        run.trace()[8..],
        ["all: precheck exit 0", "all: close (0 runs)"]
    );
    // Each child worked in its own worktree on its own branch, with its
    // own slot in its agent's and exam's containers.
    let agents = cage.calls_of(Role::Agent);
    let work: Vec<String> = agents
        .iter()
        .filter_map(|i| i.mounts.iter().find(|m| m.container == "/work"))
        .map(|m| m.host.display().to_string())
        .collect();
    assert!(work[0].ends_with(".proctor/wt/all__a"), "{work:?}");
    assert!(work[1].ends_with(".proctor/wt/all__b"), "{work:?}");
    assert_eq!(env_of(&agents[0], "PROCTOR_SLOT").as_deref(), Some("1"));
    assert_eq!(env_of(&agents[1], "PROCTOR_SLOT").as_deref(), Some("2"));
    let exams = cage.calls_of(Role::Verifier);
    assert_eq!(env_of(&exams[1], "PROCTOR_SLOT").as_deref(), Some("1"));
    assert_eq!(env_of(&exams[3], "PROCTOR_SLOT").as_deref(), Some("2"));
    assert_eq!(env_of(&exams[4], "PROCTOR_SLOT"), None);
    // The parent's branch holds both children's work; their worktrees and
    // branches are gone, so `git worktree list` is clean.
    assert_eq!(repo.read("a").as_deref(), Some("from a\n"));
    assert_eq!(repo.read("b").as_deref(), Some("from b\n"));
    let log = repo.log();
    assert!(log.iter().any(|l| l == "proctor(all): merge a"), "{log:?}");
    assert!(log.iter().any(|l| l == "proctor(all): merge b"), "{log:?}");
    assert!(repo.git.workspaces().expect("worktrees").is_empty());
    assert_eq!(repo.git.branch_tip("proctor/all__a").expect("ref"), None);
    // Both children's ledger lines survived the merge.
    let lines = ledger::read(&repo.paths.ledger);
    let runs: Vec<&str> = lines
        .iter()
        .filter_map(|e| match e {
            ledger::Entry::Run { loop_id, .. } => Some(loop_id.as_str()),
            _ => None,
        })
        .collect();
    assert!(runs.contains(&"a") && runs.contains(&"b"), "{runs:?}");
}

#[test]
fn conflicting_children_give_a_card_naming_the_files_and_a_clean_parent() {
    let repo = Repo::new(TREE, &[("shared.txt", "base\n")]);
    let cage = repo.cage([
        Scripted::exam_needs("a"),
        Scripted::agent_edits(|w| {
            write(w, "a", "a\n");
            write(w, "shared.txt", "a's version\n");
        }),
        Scripted::exam_needs("a"),
        Scripted::exam_needs("b"),
        Scripted::agent_edits(|w| {
            write(w, "b", "b\n");
            write(w, "shared.txt", "b's version\n");
        }),
        Scripted::exam_needs("b"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("b"));
    let reason = run.card_reason("b").expect("a card for b");
    assert!(reason.contains("`shared.txt`"), "{reason}");
    assert!(reason.contains("nothing was merged"), "{reason}");
    let card = repo.read("INBOX/b.md").expect("card file");
    assert!(card.contains("shared.txt"), "{card}");
    // a merged; b did not, and the parent's tree is exactly a's merge.
    assert_eq!(merges(&run), ["a: true"]);
    assert_eq!(repo.read("shared.txt").as_deref(), Some("a's version\n"));
    assert_eq!(repo.read("b"), None);
    let dirty = repo
        .git
        .dirty_paths(&|p| crate::state::is_private(p))
        .expect("status");
    assert!(dirty.is_empty(), "the parent's tree is clean: {dirty:?}");
    // b's work waits on its branch for a person; no agent resolved it.
    assert!(repo
        .git
        .branch_tip("proctor/all__b")
        .expect("ref")
        .is_some());
    assert_eq!(cage.calls_of(Role::Agent).len(), 2);
    // The parent's exam never ran on a half-merged tree.
    assert!(!run.trace().iter().any(|l| l.starts_with("all:")));
}

#[test]
fn a_blocked_child_resumes_from_its_branch_after_an_answer_and_stale_locks() {
    let repo = Repo::new(TREE, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("a"),
        writes("a", "a\n"),
        Scripted::exam_needs("a"),
        Scripted::exam_needs("b"),
        writes("b-draft", "half\n"),
        Scripted::exam_needs("b"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("b"));
    assert_eq!(merges(&run), ["a: true"]);

    // A killed git left a lock in b's worktree; a person answers b.
    let admin = repo.root().join(".git/worktrees/all__b");
    assert!(admin.is_dir());
    std::fs::write(admin.join("index.lock"), "").expect("lock");
    ledger::append(
        &repo.paths.ledger,
        &ledger::signed_answer(&repo.key, "b", "write b, not a draft"),
    )
    .expect("answer");

    let cage = repo.cage([
        Scripted::exam_needs("a"),
        Scripted::exam_needs("b"),
        writes("b", "b\n"),
        Scripted::exam_needs("b"),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed, "{:?}", run.trace());
    let forks: Vec<(String, bool)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Fork {
                loop_id, resumed, ..
            } => Some((loop_id.clone(), *resumed)),
            _ => None,
        })
        .collect();
    // a was merged (its branch gone): forked afresh, green at once; b
    // resumed from its branch with its draft and its spent run.
    assert_eq!(forks, [("a".into(), false), ("b".into(), true)]);
    assert!(
        run.trace().contains(&"b: agent 2".to_string()),
        "{:?}",
        run.trace()
    );
    assert!(run.trace().contains(&"b: close (2 runs)".to_string()));
    assert_eq!(merges(&run), ["a: false", "b: true"]);
    assert!(run
        .report
        .boundary
        .iter()
        .any(|l| l.contains("stale git lock")));
    assert_eq!(repo.read("b-draft").as_deref(), Some("half\n"));
    let prompt = &super::prompts(&cage)[0];
    assert!(prompt.contains("write b, not a draft"), "{prompt}");
}

#[test]
fn a_gated_child_pauses_only_itself() {
    let tree = TREE.replace(
        "    agent: make-a\n",
        "    agent: make-a\n    gate: human\n",
    );
    let repo = Repo::new(&tree, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("a"),
        writes("a", "a\n"),
        Scripted::exam_needs("a"),
        Scripted::exam_needs("b"),
        writes("b", "b\n"),
        Scripted::exam_needs("b"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::gated("a"));
    // b went on and merged while a waits at its gate.
    assert_eq!(merges(&run), ["b: true"]);
    assert_eq!(repo.read("b").as_deref(), Some("b\n"));
    assert_eq!(repo.read("a"), None);
}

#[test]
fn max_parallel_without_parallel_is_refused_naming_the_key() {
    let err = crate::manifest::parse(
        "loop: all\ndone_when: 'true'\nmax_parallel: 2\n",
        std::path::Path::new("proctor.yaml"),
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("`max_parallel`"), "{text}");
    assert!(text.contains("parallel: true"), "{text}");
}
