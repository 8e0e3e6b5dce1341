//! The judge: a second opinion that vetoes a pass, never grants one.

use super::{make_done, prompts, reviews, Repo, Run};
use crate::cage::fake::Scripted;
use crate::cage::{NetworkPolicy, Role};
use crate::engine::events::Event;
use crate::engine::{Ending, Settings};
use crate::manifest::{JudgeConfig, Network};

const MANIFEST: &str = "loop: fix\nagent: fix-it\ndone_when: test -f done\njudge: no test was weakened\nbudget: 3 runs\n";

fn with_judge(settings: &mut Settings) {
    settings.judge = Some(JudgeConfig::command("sh /judge.sh"));
    settings.judge_env = vec![("JUDGE_KEY".into(), "k".into())];
}

fn rulings(run: &Run) -> Vec<(bool, String)> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::Judged { pass, reason, .. } => Some((*pass, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_veto_rejects_the_pass_and_its_reason_reaches_the_next_prompt() {
    let repo = Repo::new(MANIFEST, &[]);
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
        Scripted::judge(0).output("FAIL\nthe agent deleted test_add\n"),
        Scripted::agent_edits(|w| super::write(w, "more", "x\n")),
        Scripted::exam(0),
        Scripted::judge(0).output("PASS\n"),
    ]);
    let run = repo.run_with(&cage, with_judge);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        rulings(&run),
        vec![
            (false, "FAIL\nthe agent deleted test_add".to_string()),
            (true, String::new())
        ]
    );
    let prompts = prompts(&cage);
    assert_eq!(prompts.len(), 2);
    assert!(
        prompts[1].contains("the judge vetoed it: FAIL"),
        "{}",
        prompts[1]
    );
    assert!(
        prompts[1].contains("the agent deleted test_add"),
        "{}",
        prompts[1]
    );
    // The judge saw the rubric and the diff, and nothing of the tree.
    let judges = cage.calls_of(Role::Judge);
    let stdin =
        String::from_utf8_lossy(judges[0].stdin.as_deref().unwrap_or_default()).into_owned();
    assert!(stdin.contains("RUBRIC:\nno test was weakened"), "{stdin}");
    assert!(stdin.contains("BEGIN UNTRUSTED DIFF "), "{stdin}");
    assert!(stdin.contains("+yes"), "{stdin}");
    for judge in &judges {
        assert!(judge.mounts.is_empty(), "{:?}", judge.mounts);
        assert_eq!(judge.env, vec![("JUDGE_KEY".to_string(), "k".to_string())]);
        assert_eq!(judge.network, NetworkPolicy::None);
        assert_eq!(judge.command, "sh /judge.sh");
    }
    assert!(
        run.report
            .verified
            .iter()
            .any(|l| l.contains("the judge (`sh /judge.sh`) raised no veto")),
        "{:?}",
        run.report.verified
    );
}

#[test]
fn a_pass_judge_never_turns_a_failing_exam_into_a_pass() {
    let repo = Repo::new(MANIFEST, &[]);
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    let run = repo.run_with(&cage, with_judge);
    assert_eq!(run.ending, Run::blocked("fix"));
    // A failing exam is never put to the judge.
    assert!(cage.calls_of(Role::Judge).is_empty());
    assert!(rulings(&run).is_empty());
}

#[test]
fn a_timeout_or_an_error_is_a_veto() {
    let repo = Repo::new(MANIFEST, &[]);
    let cage = repo.cage([
        Scripted::exam(0),
        Scripted::judge(0).timed_out(),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
        Scripted::judge(2).output("PASS\n"),
        Scripted::agent_edits(|w| super::write(w, "more", "x\n")),
        Scripted::exam(0),
        Scripted::judge(0).output("PASS\n"),
    ]);
    let run = repo.run_with(&cage, |s| {
        with_judge(s);
        if let Some(j) = &mut s.judge {
            j.network = Network::Open;
        }
    });
    assert_eq!(run.ending, Ending::Closed);
    let rulings = rulings(&run);
    assert!(
        !rulings[0].0 && rulings[0].1.contains("no answer within"),
        "{rulings:?}"
    );
    assert_eq!(rulings[1], (false, "the judge exited 2: PASS".to_string()));
    assert!(rulings[2].0);
    assert_eq!(cage.calls_of(Role::Judge)[0].network, NetworkPolicy::Open);
}

#[test]
fn a_rubric_without_a_judge_configured_is_never_a_silent_pass() {
    let repo = Repo::new(MANIFEST, &[]);
    let cage = repo.cage([
        Scripted::exam(0),
        Scripted::agent(0),
        Scripted::exam(0),
        Scripted::agent(0),
        Scripted::exam(0),
        Scripted::agent(0),
        Scripted::exam(0),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("fix"));
    let rulings = rulings(&run);
    assert!(
        rulings
            .iter()
            .all(|(pass, why)| !pass && why.contains("names no judge command")),
        "{rulings:?}"
    );
}

#[test]
fn a_lute_judge_as_the_only_exam_runs_no_verifier_and_is_judged_not_examined() {
    let repo = Repo::new(
        "loop: docs\nagent: fix-it\ndone_when: \"judge: the README explains every flag\"\nbudget: 3 runs\n",
        &[],
    );
    let cage = repo.cage([
        Scripted::judge(0).output("FAIL\nno flag is explained\n"),
        Scripted::agent_edits(make_done),
        Scripted::judge(0).output("PASS\n"),
    ]);
    let run = repo.run_with(&cage, with_judge);
    assert_eq!(run.ending, Ending::Closed);
    assert!(cage.calls_of(Role::Verifier).is_empty());
    let stdin = String::from_utf8_lossy(
        cage.calls_of(Role::Judge)[0]
            .stdin
            .as_deref()
            .unwrap_or_default(),
    )
    .into_owned();
    assert!(
        stdin.contains("RUBRIC:\nthe README explains every flag\n"),
        "{stdin}"
    );
    let prompts = prompts(&cage);
    assert!(
        prompts[0].contains("no flag is explained"),
        "{}",
        prompts[0]
    );
    assert!(
        run.report
            .unverified
            .iter()
            .any(|l| l.contains("loop `docs` is judged, not examined")),
        "{:?}",
        run.report.unverified
    );
    assert!(
        run.report
            .verified
            .iter()
            .any(|l| l.contains("judged, not examined: the judge (`sh /judge.sh`) answered `PASS`")),
        "{:?}",
        run.report.verified
    );
}

#[test]
fn an_exam_whose_files_no_rule_protects_is_named_before_the_first_agent() {
    let script = || {
        [
            Scripted::exam(1),
            Scripted::agent(0),
            Scripted::exam(1),
            Scripted::agent(0),
            Scripted::exam(1),
        ]
    };
    let open = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nbudget: 2 runs\n",
        &[("test.sh", "exit 1\n")],
    );
    let cage = open.cage(script());
    let run = open.run(&cage);
    let found = reviews(&run);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("the exam `sh test.sh` names `test.sh`, which no rule protects"),
        "{found:?}"
    );
    assert!(run
        .report
        .unverified
        .iter()
        .any(|l| l.starts_with("loop `fix`: the exam `sh test.sh` names `test.sh`")));
    // Its protected twin raises nothing.
    let guarded = Repo::new(
        "loop: fix\nagent: fix-it\ndone_when: sh test.sh\nprotected: [test.sh]\nbudget: 2 runs\n",
        &[("test.sh", "exit 1\n")],
    );
    let cage = guarded.cage(script());
    assert!(reviews(&guarded.run(&cage)).is_empty());
}
