//! The exam review before a loop's first agent: the exam once more on a
//! stripped and an empty tree, in one verifier container whose exit code
//! the fake cage scripts (`review_exit`).

use super::{make_done, Repo, Run};
use crate::cage::fake::Scripted;
use crate::cage::{Access, Role};
use crate::engine::events::Event;
use crate::engine::review::review_exit;
use crate::engine::Ending;
use crate::state::ledger;

const CHECKED: &str = "loop: fix\nagent: fix-it\ndone_when: sh tests/check.sh\nprotected: [\"tests/**\"]\nbudget: 1 run\n";

fn files() -> [(&'static str, &'static str); 3] {
    [
        ("tests/check.sh", "! grep -rq TODO src\n"),
        ("src/lib.rs", "// TODO\n"),
        ("README.md", "read me\n"),
    ]
}

fn reviews(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::ExamReview { findings, .. } => Some(findings.join("; ")),
            _ => None,
        })
        .collect()
}

#[test]
fn an_exam_that_passes_on_the_stripped_tree_is_named_and_the_run_goes_on() {
    let repo = Repo::new(CHECKED, &files());
    let cage = repo.cage([
        Scripted::exam(1),
        // The review's tree: the exam's materials and nothing else.
        Scripted::exam_of(|tree| {
            assert!(tree.join("tests/check.sh").is_file());
            assert!(tree.join("proctor.yaml").is_file());
            assert!(!tree.join("src").exists(), "the task's code was kept");
            assert!(!tree.join("README.md").exists());
            review_exit(true, false)
        }),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, |s| s.review_trees = true);
    assert_eq!(run.ending, Ending::Closed, "a review never stops a run");
    let found = reviews(&run);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(
            "the exam `sh tests/check.sh` passes on the base commit stripped to its materials (2 files kept"
        ),
        "{found:?}"
    );
    assert!(!found[0].contains("empty tree"), "{found:?}");
    assert!(run.report.unverified.iter().any(|l| l.starts_with(
        "loop `fix`: the exam `sh tests/check.sh` passes on the base commit stripped"
    )));
    // One verifier container more than the loop's own exams, before the
    // agent, on the base commit with no network.
    let exams = cage.calls_of(Role::Verifier);
    assert_eq!(exams.len(), 3);
    assert!(exams[1].command.contains("sh tests/check.sh"));
    assert!(exams[1].log.ends_with("fix.review.exam.log"));
    assert_eq!(exams[1].network, crate::cage::NetworkPolicy::None);
}

#[test]
fn an_exam_that_passes_on_an_empty_tree_is_named() {
    let repo = Repo::new(CHECKED, &files());
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::exam(review_exit(true, true)),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    let run = repo.run_with(&cage, |s| s.review_trees = true);
    assert_eq!(run.ending, Run::blocked("fix"));
    let found = reviews(&run);
    assert!(
        found[0].contains("the exam `sh tests/check.sh` passes on an empty tree"),
        "{found:?}"
    );
    assert_eq!(
        run.report
            .unverified
            .iter()
            .filter(|l| l.starts_with("loop `fix`: the exam"))
            .count(),
        2
    );
}

#[test]
fn a_sound_exam_or_a_review_that_tells_nothing_raises_nothing() {
    for answer in [
        Scripted::exam(review_exit(false, false)),
        Scripted::exam(review_exit(true, true)).timed_out(),
        Scripted::exam(2),
    ] {
        let repo = Repo::new(CHECKED, &files());
        let cage = repo.cage([
            Scripted::exam(1),
            answer,
            Scripted::agent(0),
            Scripted::exam(1),
        ]);
        let run = repo.run_with(&cage, |s| s.review_trees = true);
        assert_eq!(run.ending, Run::blocked("fix"));
        assert!(reviews(&run).is_empty(), "{:?}", reviews(&run));
        assert_eq!(cage.left(), 0);
    }
}

#[test]
fn a_resumed_loop_and_a_green_one_are_not_reviewed_again() {
    let repo = Repo::new(CHECKED, &files());
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::exam(review_exit(true, false)),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    assert_eq!(
        repo.run_with(&cage, |s| s.review_trees = true).ending,
        Run::blocked("fix")
    );
    ledger::append(
        &repo.paths.ledger,
        &ledger::signed_answer(&repo.key, "fix", "try again"),
    )
    .expect("append");
    // Run 2 resumes: no review container before its agent.
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, |s| s.review_trees = true);
    assert_eq!(run.ending, Ending::Closed);
    assert!(reviews(&run).is_empty());
    assert_eq!(cage.calls_of(Role::Verifier).len(), 2);
    // A loop green at its first check wakes no agent and needs no review.
    let green = Repo::new(CHECKED, &files());
    let cage = green.cage([Scripted::exam(0)]);
    let run = green.run_with(&cage, |s| s.review_trees = true);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(cage.calls().len(), 1);
}

#[test]
fn the_reviews_trees_get_the_caches_copy_on_write() {
    let manifest = format!("{CHECKED}caches: [deps]\n");
    let repo = Repo::new(&manifest, &files());
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::exam(review_exit(false, false)),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, |s| s.review_trees = true);
    assert_eq!(run.ending, Ending::Closed);
    let access: Vec<_> = cage
        .calls_of(Role::Verifier)
        .iter()
        .map(|inv| {
            inv.mounts
                .iter()
                .find(|m| m.container == "/cache/deps")
                .map(|m| m.access)
        })
        .collect();
    // The base commit's exam fills it; the review's stripped and empty
    // trees and the agent's commit only get a copy.
    assert_eq!(
        access,
        [
            Some(Access::ReadWrite),
            Some(Access::CopyOnWrite),
            Some(Access::CopyOnWrite)
        ]
    );
}
