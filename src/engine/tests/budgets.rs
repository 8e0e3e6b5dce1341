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
        // Would take 20 minutes; the budget has 10 left and stops it then.
        Scripted::agent(0).taking(twenty),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    let agents = cage.calls_of(Role::Agent);
    assert_eq!(agents.len(), 2);
    assert!(near(agents[1].timeout, 600.0), "{:?}", agents[1].timeout);
    let reason = run.card_reason("fix").unwrap_or_default();
    assert!(reason.starts_with("time budget spent: 30m"), "{reason}");
    assert_eq!(run.report.agent_runs, 2);
    assert!((run.report.agent_secs - 1800.0).abs() < 0.1);
}

/// Within the fake clock's few milliseconds per step of `secs`.
fn near(d: Duration, secs: f64) -> bool {
    (d.as_secs_f64() - secs).abs() < 0.1
}

/// Regression (issue 12, item 9): an agent that never exits ran until its
/// own timeout (an hour) past a 20 s budget, which was only checked
/// between runs. The budget is the agent's timeout when it is shorter, and
/// the exam after it does not run past the budget either.
#[test]
fn a_time_budget_stops_a_running_agent() {
    let repo = Repo::new(
        "loop: fix\nagent: hang\ndone_when: test -f done\nbudget: 2 runs / 20s\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(|work| super::write(work, "half.txt", "half\n"))
            .taking(Duration::from_secs(3600)),
    ]);
    let start = repo.now();
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    let agents = cage.calls_of(Role::Agent);
    assert_eq!(agents.len(), 1);
    assert!(near(agents[0].timeout, 20.0), "{:?}", agents[0].timeout);
    assert!((repo.now() - start - 20.0).abs() < 0.1);
    // No exam after the budget: only the first check ran.
    assert_eq!(cage.calls_of(Role::Verifier).len(), 1);
    assert_eq!(cage.left(), 0);
    let reason = run.card_reason("fix").unwrap_or_default();
    assert!(
        reason.starts_with(
            "time budget spent: 20.0s of 20.0s; run 1's agent was stopped when it ended"
        ),
        "{reason}"
    );
    assert!(
        run.report
            .boundary
            .iter()
            .any(|b| b.contains("run 1: the agent was stopped when the loop's time budget ended")),
        "{:?}",
        run.report.boundary
    );
    // The stopped agent's work is its attempt: committed, counted.
    assert_eq!(repo.read("half.txt").as_deref(), Some("half\n"));
    assert!(repo.log()[0].contains("run 1"), "{:?}", repo.log());
}

/// The exam that runs when the budget ends is stopped with it, and says so.
#[test]
fn a_time_budget_stops_a_running_exam() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 2 runs / 20s\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0).taking(Duration::from_secs(5)),
        Scripted::exam(0).taking(Duration::from_secs(3600)),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    let exams = cage.calls_of(Role::Verifier);
    assert_eq!(exams.len(), 2);
    assert!(near(exams[1].timeout, 15.0), "{:?}", exams[1].timeout);
    let reason = run.card_reason("fix").unwrap_or_default();
    assert!(reason.starts_with("time budget spent: 20.0s"), "{reason}");
    assert!(
        run.events.iter().any(|e| matches!(
            e,
            crate::engine::events::Event::CheckResult {
                timed_out: true,
                ..
            }
        )),
        "{:?}",
        run.events
    );
}

/// A check with the budget already spent (the last one of a not-yet wait)
/// keeps its own timeout: a loop green by then closes.
#[test]
fn the_last_check_after_the_budget_keeps_its_own_timeout() {
    let repo = Repo::new(
        "loop: deploy\nagent: fix-it\ndone_when: sh ready.sh\ncheck_every: 25m\nbudget: 1h\ntimeout: 30m\n",
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
    let exams = cage.calls_of(Role::Verifier);
    assert_eq!(exams[0].timeout, Duration::from_secs(30 * 60));
    assert!(near(exams[2].timeout, 600.0), "{:?}", exams[2].timeout);
    assert_eq!(exams[3].timeout, Duration::from_secs(30 * 60));
}

#[test]
fn an_authenticated_answer_refreshes_a_spent_budget_and_reaches_the_prompt() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 1 run\n",
        &[],
    );
    let cage = repo.cage([Scripted::exam(1), Scripted::agent(0), Scripted::exam(1)]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert_eq!(
        run.card_reason("fix").as_deref(),
        Some("budget spent: 1 of 1 run")
    );

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
    // Run 2 of the refreshed allowance, never "run 2 of 1".
    assert!(prompt.contains("run 2 of 2"), "{prompt}");
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

/// `proctor once --budget "1 run"` blocked again after an answer:
/// "budget spent: 2 of 2 runs (1 runs, refreshed 1×)".
#[test]
fn a_refreshed_one_run_budget_reads_in_the_singular() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 1 run\n",
        &[],
    );
    let cage = repo.cage([Scripted::exam(1), Scripted::agent(0), Scripted::exam(1)]);
    assert_eq!(repo.run(&cage).ending, Run::blocked("fix"));
    ledger::append(
        &repo.paths.ledger,
        &ledger::signed_answer(&repo.key, "fix", "look again"),
    )
    .expect("append");
    let cage = repo.cage([Scripted::exam(1), Scripted::agent(0), Scripted::exam(1)]);
    let run = repo.run(&cage);
    assert_eq!(
        run.card_reason("fix").as_deref(),
        Some("budget spent: 2 of 2 runs (1 run, refreshed 1×)")
    );
}
