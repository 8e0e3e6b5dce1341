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

common::on_both_engines!(an_exam_that_passes_without_the_code_is_named_before_the_agent);
