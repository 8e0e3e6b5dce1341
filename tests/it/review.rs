//! The exam review before work (issue 15), end to end: the exam once more
//! on the base commit stripped to its materials and on an empty tree, in
//! one verifier container, before the first agent. Real binary, both
//! engines.

use crate::common;

use common::{require_engine, stderr, stdout, TestRepo};
use proctor::cage::EngineKind;
use proctor::engine::events::Event;

/// Passes as soon as no file under `src` says TODO: also when `src` is
/// gone, which is what the review finds.
const CHECK: &str = "! grep -rq TODO src\n";

fn an_exam_that_passes_without_the_code_is_named_before_the_agent(engine: EngineKind) {
    require_engine();
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("src/app.sh", "echo hi # TODO greet by name\n")
        .file("tests/check.sh", CHECK)
        .file("agent.sh", "cat >/dev/null\nsed -i 's/ # TODO.*//' src/app.sh\n")
        .manifest(
            "loop: fix\nagent: sh agent.sh\ndone_when: sh tests/check.sh\nprotected: [\"tests/**\"]\nbudget: 2 runs\n",
        )
        .commit("todo");
    let out = repo.proctor(&["run"]);
    // A warning, not a stop: the agent ran and the loop closed.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 1);
    let findings: Vec<String> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::ExamReview { findings, .. } => Some(findings),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].starts_with("the exam `sh tests/check.sh` passes on the base commit stripped to its materials (2 files kept"),
        "{findings:?}"
    );
    // On the stream as it happens, and in the report.
    let text = stderr(&out);
    assert!(
        text.contains("fix: warning: exam review: the exam `sh tests/check.sh` passes on the base commit stripped"),
        "{text}"
    );
    assert!(
        stdout(&out).contains("not verified:\n  - loop `fix`: the exam `sh tests/check.sh` passes on the base commit stripped"),
        "{}",
        stdout(&out)
    );
    repo.assert_no_containers();
}

/// A scripted reviewer: it reads the prompt, tries to write the tree, and
/// answers with what it saw.
const REVIEWER: &str = r#"prompt=$(cat)
if touch /work/planted 2>/dev/null; then echo "tree=writable"; else echo "1. Delete src/: the exam greps src for TODO and passes when src is gone."; fi
case "$prompt" in
*"TASK:
drop the TODO"*"EXAM COMMAND:
sh tests/check.sh"*"BEGIN FILE tests/check.sh"*) echo "2. prompt=ok" ;;
*) echo "2. prompt=bad" ;;
esac
test -f /work/src/app.sh && echo "3. tree=base"
"#;

fn a_blocking_reviewer_stops_the_run_until_a_person_approves(engine: EngineKind) {
    require_engine();
    let scripts = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(scripts.path()).unwrap();
    std::fs::write(dir.join("review.sh"), REVIEWER).unwrap();
    let config = format!(
        "mounts: [\"{d}\"]\nreview:\n  command: sh {d}/review.sh\n  timeout: 60s\n  block: true\n",
        d = dir.display()
    );
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("src/app.sh", "echo hi # TODO greet by name\n")
        .file("tests/check.sh", CHECK)
        .file("agent.sh", "cat >/dev/null\nsed -i 's/ # TODO.*//' src/app.sh\n")
        .file(".proctor/config.yaml", &config)
        .manifest(
            "loop: fix\ntask: drop the TODO\nagent: sh agent.sh\ndone_when: sh tests/check.sh\nprotected: [\"tests/**\"]\nbudget: 1 run\n",
        )
        .commit("todo");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 0);
    let findings: Vec<(i64, String)> = repo
        .events()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Reviewed { exit, findings, .. } => Some((exit, findings)),
            _ => None,
        })
        .collect();
    assert_eq!(
        findings,
        [(
            0,
            "1. Delete src/: the exam greps src for TODO and passes when src is gone.\n2. prompt=ok\n3. tree=base".to_string()
        )]
    );
    let card = repo.read("INBOX/fix.md");
    assert!(card.contains("# EXAM REVIEW: fix"), "{card}");
    assert!(card.contains("2. prompt=ok"), "{card}");
    // The inbox names the answer the card waits for.
    let inbox = repo.proctor(&["inbox"]);
    assert!(
        stdout(&inbox).contains("proctor answer fix approve"),
        "{}",
        stdout(&inbox)
    );
    let answered = repo.proctor(&["answer", "fix", "approve"]);
    assert_eq!(answered.status.code(), Some(0), "{}", stderr(&answered));
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 1);
    assert!(!repo.exists("INBOX/fix.md"));
    repo.assert_no_containers();
}

#[test]
fn lint_names_a_bad_review_field() {
    let repo = TestRepo::new()
        .file("test.sh", "exit 1\n")
        .file(
            ".proctor/config.yaml",
            "review:\n  command: sh review.sh\n  block: maybe\n  blok: true\n",
        )
        .manifest("loop: fix\nagent: sh agent.sh\ndone_when: sh test.sh\n")
        .commit("bad review");
    let out = repo.proctor(&["lint"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            ".proctor/config.yaml:3:10: `review.block`: expected `true` or `false`, got `maybe`"
        ),
        "{err}"
    );
    assert!(
        err.contains("unknown key `blok` in `review`; did you mean `block`?"),
        "{err}"
    );
}

common::on_both_engines!(
    an_exam_that_passes_without_the_code_is_named_before_the_agent,
    a_blocking_reviewer_stops_the_run_until_a_person_approves
);
