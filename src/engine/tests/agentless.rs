//! Loops with no `agent:`: a parent that only checks what its children
//! built, and `--agent` as the default for loops that name none.

use super::{make_done, Repo};
use crate::cage::fake::Scripted;
use crate::cage::Role;
use crate::engine::Ending;

/// A parent with no agent of its own over one child that has one.
const TREE: &str = "loop: parent\ndone_when: test -f done\nbudget: 3 runs\nloops:\n  - loop: child\n    agent: fix-it\n    done_when: test -f done\n";

#[test]
fn an_agentless_parent_closes_on_its_childrens_work() {
    let repo = Repo::new(TREE, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "child: precheck exit 1",
            "child: agent 1",
            "child: verify exit 0",
            "child: close (1 runs)",
            "parent: precheck exit 0",
            "parent: close (0 runs)"
        ]
    );
    let agents = cage.calls_of(Role::Agent);
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].command, "fix-it");
}

#[test]
fn an_agentless_parent_whose_exam_fails_is_blocked_with_a_card() {
    let repo = Repo::new(TREE, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
        Scripted::exam(1).output("the whole does not hold"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(
        run.ending,
        Ending::Blocked {
            loop_id: "parent".into()
        }
    );
    assert_eq!(
        run.trace()[4..],
        ["parent: precheck exit 1", "parent: blocked card"]
    );
    let reason = run.card_reason("parent").expect("a card for the parent");
    assert!(reason.contains("no `agent` of its own"), "{reason}");
    assert!(reason.contains("--agent"), "{reason}");
    let card = repo.read("INBOX/parent.md").expect("the card file");
    assert!(card.contains("the whole does not hold"), "{card}");
    // Nobody was woken to fix the parent.
    assert_eq!(cage.calls_of(Role::Agent).len(), 1);
}

#[test]
fn the_runs_agent_is_a_default_that_a_loops_own_agent_keeps_over() {
    let repo = Repo::new(TREE, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, |s| s.default_agent = Some("default-agent".into()));
    assert_eq!(run.ending, Ending::Closed);
    let commands: Vec<String> = cage
        .calls_of(Role::Agent)
        .into_iter()
        .map(|inv| inv.command)
        .collect();
    assert_eq!(commands, ["fix-it", "default-agent"]);
}
