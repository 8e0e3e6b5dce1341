//! Exams and agents that cannot run at all stop the run before a run is
//! spent; an exam that fails the same way after every attempt is named.

use super::{prompts, Repo, Run};
use crate::cage::fake::Scripted;
use crate::cage::Role;
use crate::engine::EngineError;

#[test]
fn an_exam_that_cannot_run_wakes_no_agent() {
    let repo = Repo::new(
        "loop: py\nagent: fix-it\ndone_when: python3 -m pytest -q\nbudget: 10 runs\n",
        &[],
    );
    let cage = repo.cage([Scripted::exam(1).output("/usr/bin/python3: No module named pytest\n")]);
    let error = repo.try_run(&cage).err().expect("the run stops");
    let EngineError::ExamCannotRun {
        loop_id,
        why,
        tail,
        log,
        recheck,
    } = &error
    else {
        panic!("not ExamCannotRun: {error}");
    };
    assert_eq!(loop_id, "py");
    assert!(why.contains("no module `pytest`"), "{why}");
    assert!(tail.contains("No module named pytest"), "{tail}");
    assert_eq!(log, ".proctor/logs/py.run0.exam.log");
    assert_eq!(recheck, "check with `proctor lint`");
    let text = error.to_string();
    assert!(text.contains("no agent was woken"), "{text}");
    // The output is the error's to show under its one line.
    assert!(!text.contains('\n'), "{text}");
    let output = crate::exit_codes::DomainError::output(&error).unwrap_or_default();
    assert!(
        output.contains("/usr/bin/python3: No module named pytest"),
        "{output}"
    );
    assert_eq!(crate::exit_codes::of(&error), crate::exit_codes::USAGE);
    assert!(cage.calls_of(Role::Agent).is_empty());
    assert!(repo.log().is_empty(), "{:?}", repo.log());
}

#[test]
fn a_command_not_found_in_the_exam_wakes_no_agent() {
    let repo = Repo::new(
        "loop: js\nagent: fix-it\ndone_when: npm test\nbudget: 10 runs\n",
        &[],
    );
    let cage = repo.cage([Scripted::exam(127).output("sh: 1: npm: not found\n")]);
    let error = repo.try_run(&cage).err().expect("the run stops");
    assert!(
        error.to_string().contains("command `npm` was not found"),
        "{error}"
    );
    assert!(cage.calls_of(Role::Agent).is_empty());
}

#[test]
fn an_exam_that_fails_honestly_wakes_the_agent() {
    let repo = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nbudget: 1 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1).output("E   ModuleNotFoundError: No module named 'calc'"),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    assert_eq!(cage.calls_of(Role::Agent).len(), 1);
}

#[test]
fn an_agent_command_not_found_stops_the_run_uncharged() {
    let repo = Repo::new(
        "loop: fix\nagent: codex exec\ndone_when: sh test.sh\nbudget: 10 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::exam(1).output("FAIL"),
        Scripted::agent(127).output("sh: 1: codex: not found\n"),
    ]);
    let error = repo.try_run(&cage).err().expect("the run stops");
    let EngineError::AgentCannotRun { run, why, .. } = &error else {
        panic!("not AgentCannotRun: {error}");
    };
    assert_eq!(*run, 1);
    assert!(why.contains("`codex`"), "{why}");
    assert!(error.to_string().contains("was not charged"), "{error}");
    assert_eq!(crate::exit_codes::of(&error), crate::exit_codes::USAGE);
    assert!(repo.log().is_empty(), "{:?}", repo.log());
    assert!(!repo
        .read(".proctor/ledger.jsonl")
        .unwrap_or_default()
        .contains("\"run\""));
}

#[test]
fn an_exam_that_fails_the_same_way_after_each_attempt_is_named_on_the_card() {
    let repo = Repo::new(
        "loop: same\nagent: fix-it\ndone_when: npm test\nbudget: 3 runs\n",
        &[],
    );
    let out = "not ok 1 add (12 ms)\n# fail 1";
    let edit = |n: &'static str| {
        Scripted::agent_edits(move |work| std::fs::write(work.join(n), n).expect("edit"))
    };
    let cage = repo.cage([
        Scripted::exam(1).output(out),
        edit("a"),
        Scripted::exam(1).output("not ok 1 add (15 ms)\n# fail 1"),
        edit("b"),
        Scripted::exam(1).output(out),
        edit("c"),
        Scripted::exam(1).output(out),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("same"));
    let note =
        "the exam failed the same way (exit 1, the same output) before and after each of the last";
    let prompts = prompts(&cage);
    assert!(!prompts[1].contains(note), "{}", prompts[1]);
    assert!(prompts[2].contains(note), "{}", prompts[2]);
    let card = repo.read("INBOX/same.md").expect("a card");
    assert!(card.contains(&format!("{note} 3 attempts")), "{card}");
    assert!(card.contains("not ok 1 add"), "{card}");
    assert!(!card.contains("changed nothing"), "{card}");
}

/// After `once` the hint said "check with `proctor lint`", which needs a
/// manifest `once` does not have.
#[test]
fn an_exam_that_cannot_run_under_once_says_to_run_it_again() {
    let repo = Repo::new(
        "loop: once\nagent: fix-it\ndone_when: no-such-runner\nbudget: 10 runs\n",
        &[],
    );
    let cage = repo.cage([Scripted::exam(127).output("sh: 1: no-such-runner: not found\n")]);
    let error = repo
        .try_run_with(&cage, |s| s.rerun = crate::run::ONCE_AGAIN.into())
        .err()
        .expect("the run stops");
    let hint = crate::exit_codes::DomainError::hint(&error).unwrap_or_default();
    assert!(
        hint.contains("then run the same `proctor once` again;"),
        "{hint}"
    );
    assert!(!hint.contains("proctor lint"), "{hint}");
}
