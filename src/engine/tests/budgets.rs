//! Budgets, confirm streaks, not-yet waits and escalation.

use std::time::Duration;

use super::{make_done, prompts, slept, Repo, Run};
use crate::cage::fake::Scripted;
use crate::cage::Role;
use crate::engine::Ending;
use crate::state::ledger;

const FIX: &str = "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 3 runs\n";

#[test]
fn a_green_loop_wakes_no_agent() {
    let repo = Repo::new(FIX, &[("done", "yes\n")]);
    let cage = repo.cage([Scripted::exam_needs("done")]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(run.trace(), ["fix: precheck exit 0", "fix: close (0 runs)"]);
    assert!(cage.calls_of(Role::Agent).is_empty());
    // Closed on the commit it was checked on: no commit of proctor's.
    assert!(repo.log().is_empty(), "{:?}", repo.log());
}

#[test]
fn a_failing_loop_runs_the_agent_until_the_committed_tree_passes() {
    let repo = Repo::new(FIX, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent(0),
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "fix: precheck exit 1",
            "fix: agent 1",
            "fix: verify exit 1",
            "fix: agent 2",
            "fix: verify exit 0",
            "fix: close (2 runs)"
        ]
    );
    assert_eq!(
        repo.log(),
        [
            "proctor(fix): run 1",
            "proctor(fix): run 2",
            "proctor(fix): close"
        ]
    );
    // The agent works on the live tree; the exam on an export of a commit.
    let calls = cage.calls();
    let work = |i: usize| crate::cage::fake::work_dir(&calls[i]).expect("a /work mount");
    assert_eq!(work(1), repo.root());
    assert_ne!(work(2), repo.root());
    assert_eq!(cage.left(), 0);
}

#[test]
fn an_exhausted_run_budget_writes_a_blocked_card() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 2 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1).output("FAILED: expected 4, got 5"),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1).output("FAILED: still 5"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert_eq!(
        run.trace(),
        [
            "fix: precheck exit 1",
            "fix: agent 1",
            "fix: verify exit 1",
            "fix: agent 2",
            "fix: verify exit 1",
            "fix: blocked card"
        ]
    );
    assert_eq!(
        run.card_reason("fix").as_deref(),
        Some("budget spent: 2 of 2 runs")
    );
    let card = repo.read("INBOX/fix.md").expect("a card in INBOX");
    assert!(card.contains("budget spent: 2 of 2 runs"), "{card}");
    assert!(card.contains("FAILED: still 5"), "{card}");
    assert!(
        run.report.unverified.iter().any(|l| l.contains("fix")),
        "{:?}",
        run.report.unverified
    );
}

#[test]
fn confirm_needs_consecutive_passes_that_spend_no_runs() {
    let repo = Repo::new(
        "loop: flaky\nagent: fix-it\ndone_when: sh test.sh\nbudget: 3 runs\nconfirm: 3\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(0),
        Scripted::exam(0),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "flaky: precheck exit 1",
            "flaky: agent 1",
            "flaky: verify exit 0",
            "flaky: confirm exit 1",
            "flaky: agent 2",
            "flaky: verify exit 0",
            "flaky: confirm exit 0",
            "flaky: confirm exit 0",
            "flaky: close (2 runs)"
        ]
    );
}

#[test]
fn not_yet_waits_check_every_and_spends_no_runs() {
    let repo = Repo::new(
        "loop: deploy\nagent: fix-it\ndone_when: sh ready.sh\ncheck_every: 10m\nbudget: 1 run / 8h\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(75),
        Scripted::exam(75),
        Scripted::exam(75),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "deploy: precheck exit 75",
            "deploy: wait 600s",
            "deploy: precheck exit 75",
            "deploy: wait 600s",
            "deploy: precheck exit 75",
            "deploy: wait 600s",
            "deploy: precheck exit 0",
            "deploy: close (0 runs)"
        ]
    );
    assert_eq!(slept(&repo), [Duration::from_secs(600); 3]);
    assert!(cage.calls_of(Role::Agent).is_empty());
}

#[test]
fn not_yet_without_a_time_budget_blocks_instead_of_waiting_forever() {
    let repo = Repo::new(
        "loop: deploy\nagent: fix-it\ndone_when: sh ready.sh\nbudget: 3 runs\n",
        &[],
    );
    let cage = repo.cage([Scripted::exam(75)]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("deploy"));
    let reason = run.card_reason("deploy").unwrap_or_default();
    assert!(reason.contains("has no time budget"), "{reason}");
    assert!(slept(&repo).is_empty());
}

#[test]
fn a_time_budget_ends_the_wait_and_no_sleep_passes_it() {
    let repo = Repo::new(
        "loop: deploy\nagent: fix-it\ndone_when: sh ready.sh\ncheck_every: 25m\nbudget: 1h\n",
        &[],
    );
    let cage = repo.cage((0..4).map(|_| Scripted::exam(75)));
    let start = repo.now();
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("deploy"));
    let waits = slept(&repo);
    assert_eq!(waits.len(), 3, "{waits:?}");
    assert_eq!(waits[..2], [Duration::from_secs(25 * 60); 2]);
    // The last wait is cut to what the budget has left.
    assert!(waits[2] < Duration::from_secs(10 * 60 + 1), "{waits:?}");
    let total: Duration = waits.iter().sum();
    assert!(total <= Duration::from_secs(3600), "{total:?}");
    assert!(repo.now() - start >= 3600.0);
    let reason = run.card_reason("deploy").unwrap_or_default();
    assert!(reason.starts_with("time budget spent: "), "{reason}");
    assert_eq!(cage.left(), 0);
}

#[test]
fn agents_spend_the_time_budget() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 30m\n",
        &[],
    );
    let twenty = Duration::from_secs(20 * 60);
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0).taking(twenty),
        Scripted::exam(1),
        Scripted::agent(0).taking(twenty),
        Scripted::exam(1),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert_eq!(cage.calls_of(Role::Agent).len(), 2);
    let reason = run.card_reason("fix").unwrap_or_default();
    assert!(reason.starts_with("time budget spent: 40m"), "{reason}");
    assert_eq!(run.report.agent_runs, 2);
    assert_eq!(run.report.agent_secs, 2400.0);
}

#[test]
fn an_authenticated_answer_refreshes_a_spent_budget_and_reaches_the_prompt() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 1 run\n",
        &[],
    );
    let cage = repo.cage([Scripted::exam(1), Scripted::agent(0), Scripted::exam(1)]);
    assert_eq!(repo.run(&cage).ending, Run::blocked("fix"));

    // A forged answer (another key) buys nothing.
    let other = tempfile::tempdir().expect("temp dir");
    let forger = crate::state::key::AnswerKey::load_or_create(other.path()).expect("key");
    ledger::append(
        &repo.paths.ledger,
        &ledger::signed_answer(&forger, "fix", "forged"),
    )
    .expect("append");
    let cage = repo.cage([Scripted::exam(1)]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert!(cage.calls_of(Role::Agent).is_empty());

    ledger::append(
        &repo.paths.ledger,
        &ledger::signed_answer(&repo.key, "fix", "the bug is in calc.sh"),
    )
    .expect("append");
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "fix: precheck exit 1",
            "fix: agent 2",
            "fix: verify exit 0",
            "fix: close (2 runs)"
        ]
    );
    let prompt = &prompts(&cage)[0];
    assert!(prompt.contains("- the bug is in calc.sh"), "{prompt}");
    assert!(!prompt.contains("forged"), "{prompt}");
}

#[test]
fn runs_are_re_derived_from_committed_history_not_state_files() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 2 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    assert_eq!(repo.run(&cage).ending, Run::blocked("fix"));
    // Deleting proctor's state files buys no run.
    std::fs::remove_dir_all(&repo.paths.state).expect("remove .proctor");
    std::fs::remove_dir_all(&repo.paths.inbox).expect("remove INBOX");
    let cage = repo.cage([Scripted::exam(1)]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert_eq!(run.trace(), ["fix: precheck exit 1", "fix: blocked card"]);
    assert_eq!(
        run.card_reason("fix").as_deref(),
        Some("budget spent: 2 of 2 runs")
    );
}

#[test]
fn an_exam_that_alternates_never_closes_with_confirm_two() {
    let repo = Repo::new(
        "loop: flaky\nagent: fix-it\ndone_when: sh flip.sh\nconfirm: 2\nbudget: 3 runs\n",
        &[],
    );
    // pass, fail, pass, fail, ...: never two passes in a row.
    let mut script = vec![Scripted::exam(0), Scripted::exam(1)];
    for _ in 0..3 {
        script.extend([Scripted::agent(0), Scripted::exam(0), Scripted::exam(1)]);
    }
    let cage = repo.cage(script);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("flaky"));
    let trace = run.trace();
    assert!(!trace.iter().any(|l| l.contains("close")), "{trace:?}");
    assert_eq!(trace.iter().filter(|l| l.ends_with("exit 0")).count(), 4);
    assert_eq!(
        run.card_reason("flaky").as_deref(),
        Some("budget spent: 3 of 3 runs")
    );
    assert_eq!(cage.left(), 0);
}
