//! `proctor plan` end to end on a real engine: a scripted drafter (on a
//! read-only copy of the tree) whose first proposal has an exam that
//! already passes on HEAD (it runs in a verifier container) and leaves the
//! exam's script unprotected, so proctor sends it back; its second passes
//! proctor's checks (the exam runs on HEAD and fails there, as it must) and
//! the critic approves it; `--accept` makes it `proctor.yaml`. The
//! decisions on every kind of proposal are unit tests on the fake cage
//! (`src/plan/tests.rs`).

use crate::common;

use common::{on_both_engines, require_engine, socket, stderr, stdout, TestRepo};
use proctor::cage::EngineKind;

/// The drafter and the critic in one script, told apart by
/// `PROCTOR_LOOP`. The drafter's second round (its prompt says it was sent
/// back) has an exam that can fail and protects the exam's script; it also
/// tries to write elsewhere.
const AGENT: &str = r#"prompt=$(cat)
if [ "$PROCTOR_LOOP" = plan-critic ]; then
  echo "read the proposal"
  echo APPROVED
  exit 0
fi
echo planted > planted.txt || echo "planted.txt: not writable"
case "$prompt" in
  *"was sent back"*) exam='sh exam.sh'; protect='protected: [exam.sh]' ;;
  *) exam='sh exam.sh || true'; protect='' ;;
esac
cat > proctor.proposed.yaml <<EOF
loop: make-done
task: create done.txt saying done
done_when: "$exam"
budget: 5 runs
$protect
EOF
"#;

fn plan_is_sent_back_then_reviewed_and_accepted(engine: EngineKind) {
    require_engine();
    let repo = TestRepo::new()
        .engine(&socket(engine))
        .file("exam.sh", "grep -qx done done.txt\n")
        .file("agent.sh", AGENT)
        .commit("start");
    let out = repo.proctor(&[
        "plan",
        "--agent",
        "sh agent.sh",
        "--accept",
        "make done.txt say done",
    ]);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{said}{}", stderr(&out));
    // Round 1: proctor's own checks sent it back before any critic: its
    // exam passed on HEAD in a verifier, and its script was unprotected.
    assert!(
        said.contains("sent back: loop `make-done`: exam `sh exam.sh || true` on HEAD: exit 0"),
        "{said}"
    );
    assert!(said.contains("it already passes"), "{said}");
    assert!(
        said.contains("sent back: loop `make-done`: its exam reads `exam.sh`, which is not under `protected:`"),
        "{said}"
    );
    assert!(
        said.contains("sent back to the drafter with 2 reason(s)"),
        "{said}"
    );
    // Round 2: the exam ran on HEAD in a verifier and failed, as it must
    // (grep finds no done.txt: exit 2); the critic approved.
    assert!(said.contains("round 2 of 3: drafting"), "{said}");
    assert!(
        said.contains("loop `make-done`: exam `sh exam.sh` on HEAD: exit 2 in "),
        "{said}"
    );
    assert!(said.contains("fails before the work, as it must"), "{said}");
    assert!(said.contains("the critic approved it"), "{said}");
    assert!(
        said.contains("verdict: ready; accepted as `proctor.yaml`"),
        "{said}"
    );
    // Accepted: proctor.yaml is the proposal, which parses as a manifest.
    let manifest = repo.read("proctor.yaml");
    assert!(manifest.contains("protected: [exam.sh]"), "{manifest}");
    assert!(
        manifest.contains("done_when: \"sh exam.sh\"\n"),
        "{manifest}"
    );
    assert!(!repo.exists("proctor.proposed.yaml"));
    // The drafter's other write failed on its read-only tree and reached
    // nothing: the checkout holds only the accepted manifest.
    let log = repo.read(".proctor/logs/plan.round1.draft.log");
    assert!(log.contains("planted.txt: not writable"), "{log}");
    assert!(!repo.exists("planted.txt"));
    assert_eq!(repo.status(), vec!["proctor.yaml".to_string()]);
    repo.assert_no_containers();
}

on_both_engines!(plan_is_sent_back_then_reviewed_and_accepted);
