//! The exam review before a loop's first agent: the exam once more on a
//! stripped and an empty tree, in one verifier container whose exit code
//! the fake cage scripts (`review_exit`).

use super::{make_done, reviews, Repo, Run};
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
// ---- the config's reviewer --------------------------------------------------

fn reviewer(block: bool) -> crate::manifest::ReviewConfig {
    let mut caged = crate::manifest::JudgeConfig::command("sh /opt/review.sh");
    caged.timeout = std::time::Duration::from_secs(60);
    crate::manifest::ReviewConfig { caged, block }
}

const TASKED: &str = "loop: fix\ntask: remove every TODO from src\nagent: fix-it\ndone_when: sh tests/check.sh\nprotected: [\"tests/**\"]\nbudget: 1 run\n";

fn reviewed(run: &Run) -> Vec<(i64, String)> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::Reviewed { exit, findings, .. } => Some((*exit, findings.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_reviewer_reads_the_task_and_exam_on_a_read_only_tree_and_its_findings_reach_the_report() {
    let repo = Repo::new(TASKED, &files());
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::reviewer(0)
            .output("1. Delete src/: grep finds no TODO in nothing.\n2. None else."),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, |s| s.reviewer = Some(reviewer(false)));
    assert_eq!(run.ending, Ending::Closed, "without block the run goes on");
    assert_eq!(
        reviewed(&run),
        [(
            0,
            "1. Delete src/: grep finds no TODO in nothing.\n2. None else.".to_string()
        )]
    );
    assert!(
        run.report.unverified.iter().any(|l| l.contains(
            "loop `fix`: the exam's reviewer (`sh /opt/review.sh`) was asked how the exam could pass without the task being done; it answered: 1. Delete src/: grep finds no TODO in nothing. / 2. None else."
        )),
        "{:?}",
        run.report.unverified
    );
    let asked = cage.calls_of(Role::Reviewer);
    assert_eq!(asked.len(), 1);
    let inv = &asked[0];
    assert_eq!(inv.command, "sh /opt/review.sh");
    let work = inv
        .mounts
        .iter()
        .find(|m| m.container == "/work")
        .expect("/work");
    assert_eq!(
        work.access,
        Access::ReadOnly,
        "the reviewer's tree is read-only"
    );
    assert_eq!(inv.network, crate::cage::NetworkPolicy::None);
    let prompt = String::from_utf8(inv.stdin.clone().unwrap_or_default()).expect("utf-8");
    assert!(
        prompt.contains("how could this exam pass without the task being done?"),
        "{prompt}"
    );
    assert!(
        prompt.contains("TASK:\nremove every TODO from src\n"),
        "{prompt}"
    );
    assert!(
        prompt.contains("EXAM COMMAND:\nsh tests/check.sh\n"),
        "{prompt}"
    );
    assert!(
        prompt.contains("=== BEGIN FILE tests/check.sh (20 bytes) ===\n! grep -rq TODO src\n=== END FILE tests/check.sh ==="),
        "{prompt}"
    );
    // The task's code is in the tree, not in the prompt.
    assert!(!prompt.contains("BEGIN FILE src/lib.rs"), "{prompt}");
    // Before the agent, once.
    let order: Vec<Role> = cage.calls().iter().map(|i| i.labels.role).collect();
    assert_eq!(
        order,
        [Role::Verifier, Role::Reviewer, Role::Agent, Role::Verifier]
    );
}

#[test]
fn a_reviewer_that_fails_is_named_and_the_run_goes_on() {
    let repo = Repo::new(TASKED, &files());
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::reviewer(3).output("no API key"),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    let run = repo.run_with(&cage, |s| s.reviewer = Some(reviewer(false)));
    assert_eq!(run.ending, Run::blocked("fix"));
    assert!(run.report.unverified.iter().any(|l| l.contains(
        "the exam's reviewer (`sh /opt/review.sh`) gave no answer (exit 3); the exam was not reviewed by it"
    )));
}

fn review_answer(repo: &Repo, text: &str) {
    ledger::append(
        &repo.paths.ledger,
        &ledger::signed_answer(
            &repo.key,
            "fix",
            &format!("{}{text}", ledger::REVIEW_ANSWER),
        ),
    )
    .expect("append");
}

#[test]
fn a_blocking_review_waits_on_a_card_until_a_person_approves() {
    let repo = Repo::new(TASKED, &files());
    let block = |s: &mut crate::engine::Settings| s.reviewer = Some(reviewer(true));
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::reviewer(0).output("Delete src/ and the exam passes."),
    ]);
    let run = repo.run_with(&cage, block);
    assert_eq!(run.ending, Run::gated("fix"));
    assert!(
        cage.calls_of(Role::Agent).is_empty(),
        "no agent before an answer"
    );
    assert_eq!(run.trace(), ["fix: precheck exit 1", "fix: review card"]);
    let card = repo.read("INBOX/fix.md").expect("a card");
    assert!(
        card.starts_with("<!-- proctor card v1 review fix -->\n# EXAM REVIEW: fix"),
        "{card}"
    );
    assert!(card.contains("Delete src/ and the exam passes."), "{card}");
    assert!(card.contains("proctor answer fix approve"), "{card}");

    // Anything but `approve` goes to the reviewer, and the loop waits again.
    review_answer(&repo, "check.sh is fine, look again at src");
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::reviewer(0).output("Still: delete src/."),
    ]);
    let run = repo.run_with(&cage, block);
    assert_eq!(run.ending, Run::gated("fix"));
    let prompt = String::from_utf8(
        cage.calls_of(Role::Reviewer)[0]
            .stdin
            .clone()
            .unwrap_or_default(),
    )
    .expect("utf-8");
    assert!(
        prompt.contains(
            "A PERSON'S ANSWER TO AN EARLIER REVIEW (1):\ncheck.sh is fine, look again at src"
        ),
        "{prompt}"
    );

    // `approve` lets the agent start, without asking the reviewer again;
    // neither answer refreshed the budget or reached the agent.
    review_answer(&repo, "approve");
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, block);
    assert_eq!(run.ending, Ending::Closed);
    assert!(cage.calls_of(Role::Reviewer).is_empty());
    assert!(repo.read("INBOX/fix.md").is_none(), "the card is cleared");
    let prompt = &super::prompts(&cage)[0];
    assert!(prompt.contains("run 1 of 1"), "{prompt}");
    assert!(!prompt.contains("look again"), "{prompt}");
    assert!(run
        .report
        .guarded
        .iter()
        .any(|l| l.starts_with("loop `fix`: a person approved its exam review")));
}

#[test]
fn a_forged_review_approval_unlocks_nothing() {
    let repo = Repo::new(TASKED, &files());
    let other = tempfile::tempdir().expect("temp dir");
    let forger = crate::state::key::AnswerKey::load_or_create(other.path()).expect("key");
    ledger::append(
        &repo.paths.ledger,
        &ledger::signed_answer(&forger, "fix", &format!("{}approve", ledger::REVIEW_ANSWER)),
    )
    .expect("append");
    let cage = repo.cage([Scripted::exam(1), Scripted::reviewer(0).output("ok")]);
    let run = repo.run_with(&cage, |s| s.reviewer = Some(reviewer(true)));
    assert_eq!(run.ending, Run::gated("fix"));
    assert!(cage.calls_of(Role::Agent).is_empty());
}
