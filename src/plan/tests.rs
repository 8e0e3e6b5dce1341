//! `proctor plan`'s decisions on scripted drafters and critics, against a
//! real git repository with the fake cage: proctor's verdict on a good
//! proposal, an invalid one, one whose exam already passes, one that
//! ignores the critic, and graphs (valid, a cycle, an unknown node).

use std::path::Path;

use super::{plan, Outcome, Request, Step, GRAPH, PROPOSAL};
use crate::cage::fake::{FakeCage, Scripted};
use crate::cage::{Access, Role};
use crate::git::GitRepo;
use crate::manifest::Config;
use crate::state::key::AnswerKey;

struct Repo {
    _dir: tempfile::TempDir,
    _keys: tempfile::TempDir,
    git: GitRepo,
    key: AnswerKey,
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("exam.sh"), "test -f done.txt\n").expect("write");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(dir.path().join("tests/a.sh"), "exit 1\n").expect("write");
    let git = GitRepo::init_with_commit(dir.path(), "start").expect("init");
    let key = AnswerKey::load_or_create(keys.path()).expect("key");
    Repo {
        _dir: dir,
        _keys: keys,
        git,
        key,
    }
}

const GOOD: &str = "loop: make-done\ntask: create done.txt\ndone_when: sh exam.sh\nbudget: 5 runs\nprotected: [exam.sh]\n";

/// A drafter that writes `text` into `file`.
fn draft(file: &'static str, text: &str) -> Scripted {
    let text = text.to_string();
    Scripted::agent_edits(move |work: &Path| {
        std::fs::write(work.join(file), text).expect("write proposal");
    })
}

fn critic(answer: &str) -> Scripted {
    Scripted::agent(0).output(answer)
}

fn run(repo: &Repo, cage: &FakeCage, rounds: u32, dag: bool) -> (Outcome, Vec<Step>) {
    let req = Request {
        goal: "make done.txt exist".into(),
        agent: "sh draft.sh".into(),
        critic: None,
        dag,
        rounds,
        timeout: None,
    };
    let mut steps = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = rt
        .block_on(plan(
            cage,
            &repo.git,
            &Config::default(),
            &repo.key,
            &req,
            &mut |s| steps.push(s),
        ))
        .expect("plan");
    assert_eq!(cage.left(), 0, "the script was not used up");
    (outcome, steps)
}

/// The prompts the drafter got, in order.
fn drafter_prompts(cage: &FakeCage) -> Vec<String> {
    cage.calls_of(Role::Agent)
        .into_iter()
        .filter(|i| i.labels.loop_id == "plan-draft")
        .map(|i| String::from_utf8_lossy(&i.stdin.unwrap_or_default()).into_owned())
        .collect()
}

#[test]
fn a_good_proposal_is_checked_reviewed_and_ready() {
    let repo = repo();
    let cage = FakeCage::new([
        draft(PROPOSAL, GOOD),
        Scripted::exam(1).output("no done.txt"),
        critic("looked at it\nAPPROVED\n"),
    ]);
    let (out, _) = run(&repo, &cage, 3, false);
    assert!(out.accepted, "{out:?}");
    assert_eq!(out.rounds, 1);
    assert_eq!(out.proposal.as_deref(), Some(GOOD));
    assert!(out.problems.is_empty());
    assert!(
        out.checked
            .iter()
            .any(|c| c.contains("fails before the work")),
        "{:?}",
        out.checked
    );
    // The drafter saw the goal, the guide and the briefing, on a tree it
    // can only write the proposal of.
    let agent = &cage.calls_of(Role::Agent)[0];
    let prompt = String::from_utf8_lossy(agent.stdin.as_deref().unwrap_or_default()).into_owned();
    assert!(prompt.contains("make done.txt exist"));
    assert!(prompt.contains("## The manifest (proctor.yaml), in short"));
    assert!(
        prompt.contains("exam.sh"),
        "the tree is in the briefing: {prompt}"
    );
    let work = agent
        .mounts
        .iter()
        .find(|m| m.container == "/work")
        .unwrap();
    assert_eq!(work.access, Access::ReadOnly);
    let writable: Vec<&str> = agent
        .mounts
        .iter()
        .filter(|m| m.access != Access::ReadOnly)
        .map(|m| m.container.as_str())
        .collect();
    assert_eq!(writable, ["/work/proctor.proposed.yaml"]);
    // The critic's tree is read-only whole.
    let critic = &cage.calls_of(Role::Agent)[1];
    assert!(critic.mounts.iter().all(|m| m.access == Access::ReadOnly));
    // Nothing was written into the checkout: the caller writes the proposal.
    assert!(!repo.git.root().join(PROPOSAL).exists());
}

#[test]
fn a_proposal_with_image_auto_is_not_examined_in_an_image_named_auto() {
    // Plan failed as a whole: its exam container asked the engine for an
    // image named `auto`.
    let repo = repo();
    let proposal = format!("{GOOD}image: auto\n");
    let cage = FakeCage::new([
        draft(PROPOSAL, &proposal),
        critic("looked at it\nAPPROVED\n"),
    ]);
    let (out, _) = run(&repo, &cage, 1, false);
    assert!(out.accepted, "{out:?}");
    assert!(
        out.checked
            .iter()
            .any(|c| c.contains("not run here: `image: auto`")),
        "{:?}",
        out.checked
    );
    assert!(cage.calls_of(Role::Verifier).is_empty());
}

#[test]
fn an_invalid_proposal_goes_back_with_the_parser_s_words() {
    let repo = repo();
    let cage = FakeCage::new([
        draft(
            PROPOSAL,
            "loop: make-done\ndone_when: sh exam.sh\nbudjet: 5 runs\n",
        ),
        // Round 2: fixed.
        draft(PROPOSAL, GOOD),
        Scripted::exam(1),
        critic("APPROVED\n"),
    ]);
    let (out, steps) = run(&repo, &cage, 3, false);
    assert!(out.accepted);
    assert_eq!(out.rounds, 2);
    let prompts = drafter_prompts(&cage);
    assert!(
        prompts[1].contains("unknown key `budjet`"),
        "{}",
        prompts[1]
    );
    assert!(
        prompts[1].contains("budjet: 5 runs"),
        "the last proposal is quoted"
    );
    assert!(steps
        .iter()
        .any(|s| matches!(s, Step::SentBack { round: 1, .. })));
}

#[test]
fn an_exam_that_already_passes_is_not_ready() {
    let repo = repo();
    let cage = FakeCage::new([draft(PROPOSAL, GOOD), Scripted::exam(0)]);
    let (out, _) = run(&repo, &cage, 1, false);
    assert!(!out.accepted);
    assert!(
        !out.critic_reviewed,
        "proctor's checks come before the critic"
    );
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert!(
        out.problems[0].contains("it already passes"),
        "{}",
        out.problems[0]
    );
}

#[test]
fn an_exam_that_cannot_run_or_waits_untimed_is_sent_back() {
    let repo = repo();
    let cage = FakeCage::new([
        draft(PROPOSAL, GOOD),
        Scripted::exam(127).output("sh: 1: pytest: not found"),
        draft(PROPOSAL, GOOD),
        Scripted::exam(75),
    ]);
    let (out, _) = run(&repo, &cage, 2, false);
    assert!(!out.accepted);
    let prompts = drafter_prompts(&cage);
    assert!(prompts[1].contains("cannot run at all"), "{}", prompts[1]);
    assert!(
        out.problems[0].contains("no time budget"),
        "{:?}",
        out.problems
    );
}

#[test]
fn an_unprotected_exam_file_is_sent_back() {
    let repo = repo();
    let unprotected = "loop: make-done\ntask: t\ndone_when: sh exam.sh\nbudget: 5 runs\n";
    let cage = FakeCage::new([draft(PROPOSAL, unprotected), Scripted::exam(1)]);
    let (out, _) = run(&repo, &cage, 1, false);
    assert!(!out.accepted);
    assert!(
        out.problems
            .iter()
            .any(|p| p.contains("`exam.sh`, which is not under `protected:`")),
        "{:?}",
        out.problems
    );
}

#[test]
fn a_drafter_that_ignores_the_critic_is_not_ready_after_the_rounds() {
    let repo = repo();
    let finding = "FINDING: the exam only checks that done.txt exists; test its content\n";
    let cage = FakeCage::new([
        draft(PROPOSAL, GOOD),
        Scripted::exam(1),
        critic(finding),
        // It writes the same proposal again.
        draft(PROPOSAL, GOOD),
        Scripted::exam(1),
        critic(finding),
    ]);
    let (out, _) = run(&repo, &cage, 2, false);
    assert!(!out.accepted);
    assert_eq!(out.rounds, 2);
    assert!(out.critic_reviewed);
    assert_eq!(
        out.critic_notes,
        ["the exam only checks that done.txt exists; test its content"]
    );
    let prompts = drafter_prompts(&cage);
    assert!(
        prompts[1].contains("the critic: the exam only checks"),
        "{}",
        prompts[1]
    );
}

#[test]
fn a_drafter_that_writes_nothing_is_told_so() {
    let repo = repo();
    let cage = FakeCage::new([Scripted::agent(0)]);
    let (out, _) = run(&repo, &cage, 1, false);
    assert!(!out.accepted);
    assert_eq!(out.proposal, None);
    assert!(out.problems[0].contains("you wrote no proposal"));
}

#[test]
fn a_graph_becomes_a_nested_manifest_whose_exams_all_run() {
    let repo = repo();
    let graph = "loop: goal\ntask: t\ndone_when: sh exam.sh\nbudget: 5 runs\nprotected: [exam.sh, tests/**]\n\
                 nodes:\n- {loop: a, task: t, done_when: sh tests/a.sh}\n- {loop: b, task: t, done_when: sh tests/a.sh, depends_on: [a]}\n";
    let cage = FakeCage::new([
        draft(GRAPH, graph),
        // Children first: a, then b, then the root.
        Scripted::exam(1),
        Scripted::exam(1),
        Scripted::exam(1),
        critic("APPROVED"),
    ]);
    let (out, steps) = run(&repo, &cage, 1, true);
    assert!(out.accepted, "{out:?}");
    assert!(steps.iter().any(|s| matches!(s, Step::FromGraph { .. })));
    let text = out.proposal.unwrap();
    let m = crate::manifest::parse(&text, Path::new(PROPOSAL)).unwrap();
    assert_eq!(m.root.children[0].id, "b");
    assert_eq!(m.root.children[0].children[0].id, "a");
    assert!(!text.contains("depends_on"), "no runtime DAG keys: {text}");
    assert_eq!(out.graph.as_deref(), Some(graph));
}

#[test]
fn a_graph_with_a_cycle_or_an_unknown_node_is_sent_back() {
    let repo = repo();
    let head = "loop: goal\ntask: t\ndone_when: sh exam.sh\nprotected: [exam.sh]\nnodes:\n";
    let cycle = format!(
        "{head}- {{loop: a, done_when: 'false', depends_on: [b]}}\n- {{loop: b, done_when: 'false', depends_on: [a]}}\n"
    );
    let unknown = format!("{head}- {{loop: a, done_when: 'false', depends_on: [nope]}}\n");
    let cage = FakeCage::new([draft(GRAPH, &cycle), draft(GRAPH, &unknown)]);
    let (out, _) = run(&repo, &cage, 2, true);
    assert!(!out.accepted);
    let prompts = drafter_prompts(&cage);
    assert!(
        prompts[1].contains("the dependencies form a cycle: a -> b -> a"),
        "{}",
        prompts[1]
    );
    assert_eq!(
        out.problems,
        ["`proctor.plan.yaml`: node `a` depends on `nope`, which is no node of the graph"]
    );
}
