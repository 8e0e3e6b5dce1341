//! Human gates: READY cards, authenticated approvals, seal and supersede.

use std::time::Duration;

use super::{make_done, write, Repo, Run};
use crate::cage::fake::Scripted;
use crate::cage::Role;
use crate::engine::gate::card_kind;
use crate::engine::Ending;
use crate::state::approver::ApproverKey;
use crate::state::gate;

const SHIP: &str =
    "loop: ship\nagent: fix-it\ndone_when: test -f done\nbudget: 3 runs\ngate: human\n";

/// A repository whose gated loop passed once and halted at its gate;
/// returns the commit that passed.
fn gated() -> (Repo, String) {
    let repo = Repo::new(SHIP, &[]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::gated("ship"));
    assert_eq!(
        run.trace(),
        [
            "ship: precheck exit 1",
            "ship: agent 1",
            "ship: verify exit 0",
            "ship: ready card",
            "ship: gate ready"
        ]
    );
    let card = repo.read("INBOX/ship.md").expect("a READY card");
    assert_eq!(card_kind(&card), Some("ready"));
    let head = repo
        .git
        .head()
        .expect("head")
        .expect("a commit")
        .to_string();
    assert!(card.contains(&head), "the card names the commit: {card}");
    (repo, head)
}

fn approve(repo: &Repo, approver: &ApproverKey, commit: &str) {
    gate::append(
        &repo.paths.ledger,
        &gate::decision(approver, "ship", commit, "approve"),
    )
    .expect("append approval");
}

#[test]
fn a_passing_gated_loop_halts_at_its_gate_until_approved() {
    let (repo, _) = gated();
    // Without an approval, the next run checks once more and halts again,
    // waking no agent.
    let cage = repo.cage([Scripted::exam_needs("done")]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::gated("ship"));
    assert_eq!(
        run.trace(),
        [
            "ship: precheck exit 0",
            "ship: ready card",
            "ship: gate ready"
        ]
    );
    assert!(cage.calls_of(Role::Agent).is_empty());
}

#[test]
fn an_authenticated_approval_seals_the_gate_after_the_exam_passes_again() {
    let (repo, passed) = gated();
    let own = ApproverKey::load_or_create(repo.key_dir()).expect("approver key");
    approve(&repo, &own, &passed);
    let cage = repo.cage([Scripted::exam_needs("done")]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Ending::Closed);
    assert_eq!(
        run.trace(),
        [
            "ship: precheck exit 0",
            "ship: gate sealed",
            "ship: close (1 runs)"
        ]
    );
    assert_eq!(repo.log(), ["proctor(ship): run 1", "proctor(ship): close"]);
    let tip = repo.git.head().expect("head").expect("a commit");
    let close = &repo.git.first_parent_log(tip, None).expect("log")[0];
    assert!(
        close
            .message
            .contains(&format!("Proctor-Approved-By: {}", own.id)),
        "{}",
        close.message
    );
    assert!(repo.read("INBOX/ship.md").is_none(), "the card is cleared");
    // Sealed stays sealed while the exam passes: no second approval asked.
    let cage = repo.cage([Scripted::exam_needs("done")]);
    assert_eq!(repo.run(&cage).ending, Ending::Closed);
}

#[test]
fn approvals_that_are_not_authenticated_or_not_for_the_commit_seal_nothing() {
    let (repo, passed) = gated();
    // Signed by a key this host does not trust.
    let stranger_dir = tempfile::tempdir().expect("temp dir");
    let stranger = ApproverKey::load_or_create(stranger_dir.path()).expect("key");
    approve(&repo, &stranger, &passed);
    // Signed by the trusted key, for another commit.
    let own = ApproverKey::load_or_create(repo.key_dir()).expect("approver key");
    approve(&repo, &own, &"0".repeat(40));
    // A line that claims the trusted approver with a bad signature.
    let forged = std::fs::read_to_string(&repo.paths.ledger)
        .expect("ledger")
        .replace(&stranger.id, &own.id)
        .lines()
        .find(|l| l.contains(&passed))
        .expect("the stranger's approval")
        .to_string();
    crate::state::append_line(&repo.paths.ledger, &forged).expect("append");

    let cage = repo.cage([Scripted::exam_needs("done")]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::gated("ship"));
    let card = repo.read("INBOX/ship.md").expect("a READY card");
    assert!(card.contains("Not counted"), "{card}");
    assert!(card.contains(&stranger.id), "{card}");
}

#[test]
fn a_gate_whose_exam_no_longer_passes_is_superseded_and_the_loop_works_again() {
    let (repo, passed) = gated();
    let own = ApproverKey::load_or_create(repo.key_dir()).expect("approver key");
    approve(&repo, &own, &passed);
    // The world the exam checks moved: on the approved commit it fails now.
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(|work| write(work, "done", "again\n")),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    // The approval was for the commit that no longer passes: the new pass
    // halts again for a new approval.
    assert_eq!(run.ending, Run::gated("ship"));
    assert_eq!(
        run.trace(),
        [
            "ship: precheck exit 1",
            "ship: gate superseded",
            "ship: agent 2",
            "ship: verify exit 0",
            "ship: ready card",
            "ship: gate ready"
        ]
    );
}

#[test]
fn a_superseded_gate_the_agent_cannot_fix_again_blocks() {
    let (repo, _) = gated();
    // The exam fails now, and the agent cannot fix it within the budget
    // (3 runs, 1 spent).
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
        Scripted::agent(0),
        Scripted::exam(1),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::blocked("ship"));
    assert_eq!(run.trace()[1], "ship: gate superseded");
    let card = repo.read("INBOX/ship.md").expect("a card");
    assert_eq!(card_kind(&card), Some("blocked"));
    assert_eq!(repo.log().len(), 3, "{:?}", repo.log());
}

#[test]
fn time_spent_waiting_at_a_gate_spends_no_time_budget() {
    let repo = Repo::new(
        "loop: ship\nagent: fix-it\ndone_when: test -f done\nbudget: 3 runs / 1h\ngate: human\n",
        &[],
    );
    let ten = Duration::from_secs(10 * 60);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(make_done).taking(ten),
        Scripted::exam_needs("done"),
    ]);
    assert_eq!(repo.run(&cage).ending, Run::gated("ship"));
    // The person answers two days later, and the world moved meanwhile.
    repo.clock.advance(Duration::from_secs(48 * 3600));
    let passed = repo.git.head().expect("head").expect("a commit");
    let own = ApproverKey::load_or_create(repo.key_dir()).expect("approver key");
    approve(&repo, &own, &passed.to_string());
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(|work| write(work, "done", "again\n")).taking(ten),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    // 20 minutes of work, not two days: the loop worked again.
    assert_eq!(run.ending, Run::gated("ship"));
    assert_eq!(
        run.trace(),
        [
            "ship: precheck exit 1",
            "ship: gate superseded",
            "ship: agent 2",
            "ship: verify exit 0",
            "ship: ready card",
            "ship: gate ready"
        ]
    );
}

/// Regression (issue 12): an agent added `* -diff` in a `.gitattributes`,
/// so `git diff` showed "Binary files differ" and the person approved
/// what they could not see. The READY card shows proctor's own diff of the
/// exact commit, ignores the attributes, lists binaries with size and hash,
/// and flags the meta file at the top.
#[test]
fn the_ready_card_shows_proctors_own_diff_and_flags_meta_files() {
    let repo = Repo::new(SHIP, &[("calc.sh", "add() { echo $(( $1 - $2 )); }\n")]);
    let cage = repo.cage([
        Scripted::exam_needs("done"),
        Scripted::agent_edits(|work| {
            make_done(work);
            write(work, ".gitattributes", "* -diff\n");
            write(work, "calc.sh", "add() { echo $(( $1 + $2 )); }\n");
            std::fs::write(work.join("blob.bin"), [0u8, 1, 2]).expect("write blob");
        }),
        Scripted::exam_needs("done"),
    ]);
    let run = repo.run(&cage);
    assert_eq!(run.ending, Run::gated("ship"));
    let card = repo.read("INBOX/ship.md").expect("a READY card");
    let head = repo
        .git
        .head()
        .expect("head")
        .expect("a commit")
        .to_string();
    let flags = card.find("**Flagged").expect("flags");
    let task = card.find("## Exam").expect("the exam section");
    assert!(flags < task, "the flags come first:\n{card}");
    assert!(
        card.contains("⚠ `.gitattributes` (added): a meta file"),
        "{card}"
    );
    assert!(card.contains(&format!("Commit `{head}`")), "{card}");
    assert!(card.contains("+add() { echo $(( $1 + $2 )); }"), "{card}");
    assert!(
        card.contains("`blob.bin` (added): binary, 3 bytes, sha256 ae4b3280e56e"),
        "{card}"
    );
    assert!(!card.contains("Binary files"), "{card}");
}
