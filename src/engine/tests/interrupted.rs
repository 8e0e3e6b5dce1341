//! Resumes after an interrupted attempt: a killed run's leftovers become
//! their own `run N (interrupted)` commit (charged), an attempt that left
//! no edits is not charged, and an exit code a stopping engine caused
//! records neither an attempt nor a verdict.

use super::{make_done, write, Repo};
use crate::cage::fake::Scripted;
use crate::cage::Role;
use crate::engine::boundary::{attempt_marker, MarkedAttempt};
use crate::engine::events::Event;
use crate::engine::{history, Ending, EngineError};

const FIX: &str = "loop: fix\nagent: fix-it\ndone_when: test -f done\nbudget: 2 runs\n";

/// What a run killed during run `run` of loop `fix` leaves: the marker
/// (as `mark_attempt` writes it) and the agent's log so far.
fn killed_during(repo: &Repo, run: u32) {
    let marker = format!("fix {run} {:.3}\n", repo.now() - 60.0);
    assert!(MarkedAttempt::parse(&marker).is_some());
    write(
        repo.root(),
        &repo.paths.rel(&attempt_marker(&repo.paths)),
        &marker,
    );
    write(
        repo.root(),
        &format!(".proctor/logs/fix.run{run}.log"),
        "half way\n",
    );
}

fn interrupted(events: &[Event]) -> Vec<(u32, bool, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Interrupted {
                run, edits, commit, ..
            } => Some((*run, *edits, commit.is_some())),
            _ => None,
        })
        .collect()
}

/// The paths a commit changed, from its first parent.
fn changed(repo: &Repo, summary: &str) -> Vec<String> {
    let tip = repo.git.head().expect("head").expect("a commit");
    let log = repo.git.first_parent_log(tip, None).expect("log");
    let i = log
        .iter()
        .position(|c| c.message.lines().next() == Some(summary))
        .unwrap_or_else(|| panic!("no commit `{summary}`"));
    let mut paths = repo
        .git
        .changed_paths(log[i + 1].oid, log[i].oid)
        .expect("diff");
    paths.retain(|p| !p.starts_with(".proctor/"));
    paths
}

#[test]
fn a_killed_agents_leftovers_are_its_own_interrupted_commit_never_the_next_agents() {
    let repo = Repo::new(FIX, &[]);
    killed_during(&repo, 1);
    write(repo.root(), "half.txt", "the killed agent's work\n");
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        repo.log(),
        [
            "proctor(fix): run 1 (interrupted)",
            "proctor(fix): run 2",
            "proctor(fix): close"
        ]
    );
    assert_eq!(
        changed(&repo, "proctor(fix): run 1 (interrupted)"),
        ["half.txt"]
    );
    assert_eq!(changed(&repo, "proctor(fix): run 2"), ["done"]);
    assert_eq!(interrupted(&run.events), [(1, true, true)]);
    // Charged: the redo is run 2 of 2, and the loop closed after 2.
    assert_eq!(
        run.trace().last().map(String::as_str),
        Some("fix: close (2 runs)")
    );
    let agent = &cage.calls_of(Role::Agent)[0];
    assert!(agent.env.contains(&("PROCTOR_RUN".into(), "2".into())));
    // Its trailers claim no agent exit or duration: none was observed.
    let tip = repo.git.head().expect("head").expect("a commit");
    let log = repo.git.first_parent_log(tip, None).expect("log");
    let message = &log
        .iter()
        .find(|c| c.message.contains("(interrupted)"))
        .expect("the interrupted commit")
        .message;
    assert_eq!(
        history::trailer(message, "Proctor-Interrupted"),
        Some("yes")
    );
    assert_eq!(history::trailer(message, "Proctor-Agent-Exit"), None);
    // The killed agent's log is kept beside the redo's.
    assert_eq!(
        repo.read(".proctor/logs/fix.run1.interrupted.log")
            .as_deref(),
        Some("half way\n")
    );
    assert!(!attempt_marker(&repo.paths).exists());
}

#[test]
fn a_killed_agent_that_left_no_edits_is_not_charged() {
    let repo = Repo::new(&FIX.replace("2 runs", "1 run"), &[]);
    killed_during(&repo, 1);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    // One run was enough: the cut-short attempt cost nothing.
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(repo.log(), ["proctor(fix): run 1", "proctor(fix): close"]);
    assert_eq!(interrupted(&run.events), [(1, false, false)]);
    assert!(!attempt_marker(&repo.paths).exists());
}

#[test]
fn a_marker_whose_attempt_was_committed_is_only_cleared() {
    let repo = Repo::new(FIX, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    repo.run(&cage);
    // Killed after run 2's commit, before its marker went.
    killed_during(&repo, 2);
    let cage = repo.cage([Scripted::exam_needs("done")]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert!(interrupted(&run.events).is_empty());
    assert!(!attempt_marker(&repo.paths).exists());
}

#[test]
fn an_agent_stopped_with_its_engine_is_interrupted_not_charged() {
    let repo = Repo::new(&FIX.replace("2 runs", "1 run"), &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent(0).engine_stops(),
    ]);
    let error = repo.try_run(&cage).err().expect("the run stops");
    assert!(
        matches!(&error, EngineError::EngineGone { during } if during.contains("agent of loop `fix`")),
        "{error}"
    );
    // No attempt recorded from the engine's exit code 143.
    assert!(repo.log().is_empty(), "{:?}", repo.log());
    assert!(attempt_marker(&repo.paths).exists());
    // The engine is back: the attempt is settled (no edits, not charged)
    // and run 1 of 1 runs again.
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(interrupted(&run.events), [(1, false, false)]);
    assert_eq!(repo.log(), ["proctor(fix): run 1", "proctor(fix): close"]);
}

#[test]
fn an_exam_stopped_with_its_engine_is_no_verdict() {
    let repo = Repo::new(FIX, &[]);
    let cage = repo.cage([Scripted::exam(0).engine_stops()]);
    let error = repo.try_run(&cage).err().expect("the run stops");
    assert!(
        matches!(&error, EngineError::EngineGone { during } if during.contains("exam of loop `fix`")),
        "{error}"
    );
    assert!(repo.log().is_empty());
}

#[test]
fn an_agent_that_exits_143_itself_is_an_ordinary_attempt() {
    let repo = Repo::new(FIX, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent(143),
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    cage.restart_engine();
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        repo.log(),
        [
            "proctor(fix): run 1",
            "proctor(fix): run 2",
            "proctor(fix): close"
        ]
    );
}
