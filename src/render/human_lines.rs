//! Snapshots of the line `human_line` prints for every event kind, one
//! snapshot per kind with its variations (verdicts, phases, gate states,
//! optional parts present and absent). The events are built here with fixed
//! values, so a snapshot changes only when the wording does.

use super::human_line;
use crate::engine::events::{Event, GateStatus, Outcome, Phase, QuarantinedFile, Verdict};
use crate::protect::junit::Counts;
use crate::protect::Change;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The snapshot name of an event's kind. No wildcard arm: a new event kind
/// does not compile until it is named here and given samples in [`samples`].
fn kind(event: &Event) -> &'static str {
    match event {
        Event::RunStart { .. } => "run_start",
        Event::Reaped { .. } => "reaped",
        Event::ImageBuild { .. } => "image_build",
        Event::ImageReady { .. } => "image_ready",
        Event::CheckStart { .. } => "check_start",
        Event::CheckResult { .. } => "check_result",
        Event::AgentStart { .. } => "agent_start",
        Event::AgentWorking { .. } => "agent_working",
        Event::AgentEnd { .. } => "agent_end",
        Event::Commit { .. } => "commit",
        Event::Interrupted { .. } => "interrupted",
        Event::CapExceeded { .. } => "cap_exceeded",
        Event::NetworkDenied { .. } => "network_denied",
        Event::Wait { .. } => "wait",
        Event::Card { .. } => "card",
        Event::Close { .. } => "close",
        Event::RunEnd { .. } => "run_end",
        Event::Quarantine { .. } => "quarantine",
        Event::Repaired { .. } => "repaired",
        Event::TestAudit { .. } => "test_audit",
        Event::Judged { .. } => "judged",
        Event::ExamReview { .. } => "exam_review",
        Event::Reviewed { .. } => "reviewed",
        Event::Gate { .. } => "gate",
        Event::Notify { .. } => "notify",
        Event::Fork { .. } => "fork",
        Event::Merge { .. } => "merge",
    }
}

/// How many arms [`kind`] has: every one must have samples.
const KINDS: usize = 27;

#[allow(clippy::too_many_arguments)]
fn check_result(
    phase: Phase,
    verdict: Verdict,
    exit: i64,
    timed_out: bool,
    secs: f64,
    streak: Option<&str>,
    reason: Option<&str>,
) -> Event {
    Event::CheckResult {
        loop_id: "fix-tests".into(),
        phase,
        verdict,
        exit,
        timed_out,
        secs,
        commit: COMMIT.into(),
        container: "c0ffee".into(),
        image: "host".into(),
        log: ".proctor/logs/fix-tests/verify-1.log".into(),
        streak: streak.map(str::to_string),
        reason: reason.map(str::to_string),
    }
}

fn gate(status: GateStatus, approvals: &[&str], needed: u32, note: Option<&str>) -> Event {
    Event::Gate {
        loop_id: "release".into(),
        status,
        commit: COMMIT.into(),
        approvals: approvals.iter().map(|a| a.to_string()).collect(),
        needed,
        note: note.map(str::to_string),
    }
}

fn notify(exit: Option<i32>, error: Option<&str>) -> Event {
    Event::Notify {
        loop_id: "fix-tests".into(),
        reason: "blocked".into(),
        exit,
        secs: 0.25,
        error: error.map(str::to_string),
    }
}

fn test_audit(
    counts: Option<Counts>,
    baseline: Option<u32>,
    passed: bool,
    reason: Option<&str>,
) -> Event {
    Event::TestAudit {
        loop_id: "fix-tests".into(),
        commit: COMMIT.into(),
        counts,
        baseline,
        passed,
        reason: reason.map(str::to_string),
    }
}

fn judged(pass: bool, reason: &str) -> Event {
    Event::Judged {
        loop_id: "fix-tests".into(),
        run: 2,
        commit: COMMIT.into(),
        pass,
        reason: reason.into(),
        exit: if reason.contains("timeout") { -1 } else { 0 },
        timed_out: reason.contains("timeout"),
        secs: 2.5,
        container: "0123456789ab".into(),
        image: "sha256:abc".into(),
        log: ".proctor/logs/fix-tests.run2.judge.log".into(),
    }
}

fn counts(tests: u32, failures: u32, errors: u32, skipped: u32) -> Counts {
    Counts {
        tests,
        failures,
        errors,
        skipped,
        files: 1,
    }
}

/// Every event kind, with the variations its line has.
fn samples() -> Vec<Event> {
    vec![
        Event::RunStart {
            root: "release".into(),
            branch: "proctor/release".into(),
            base: COMMIT.into(),
            manifest: "proctor.yaml".into(),
            engine: "docker 27.5.1".into(),
            pid: 4242,
            once: None,
        },
        Event::Reaped {
            containers: 2,
            files: 0,
        },
        Event::Reaped {
            containers: 0,
            files: 3,
        },
        Event::Reaped {
            containers: 1,
            files: 3,
        },
        Event::ImageBuild {
            source: ".proctor/Dockerfile".into(),
            step: "Step 2/3 : COPY rootfs/ /".into(),
        },
        Event::ImageReady {
            source: ".proctor/Dockerfile".into(),
            image: "proctor-auto:0123456789abcdef".into(),
            id: "sha256:0123456789abcdef".into(),
            built: true,
            secs: 42.5,
        },
        Event::ImageReady {
            source: ".devcontainer/devcontainer.json".into(),
            image: "proctor-auto:0123456789abcdef".into(),
            id: "sha256:0123456789abcdef".into(),
            built: false,
            secs: 0.2,
        },
        Event::CheckStart {
            loop_id: "fix-tests".into(),
            phase: Phase::Precheck,
            commit: COMMIT.into(),
        },
        check_result(Phase::Precheck, Verdict::Fail, 1, false, 2.5, None, None),
        check_result(Phase::Verify, Verdict::Pass, 0, false, 12.25, None, None),
        check_result(
            Phase::Confirm,
            Verdict::Pass,
            0,
            false,
            75.0,
            Some("2/3"),
            None,
        ),
        check_result(Phase::Baseline, Verdict::Pass, 0, false, 1.0, None, None),
        check_result(Phase::Verify, Verdict::NotYet, 75, false, 0.5, None, None),
        check_result(Phase::Verify, Verdict::Fail, 137, true, 3600.0, None, None),
        check_result(
            Phase::Verify,
            Verdict::Fail,
            0,
            false,
            4.0,
            None,
            Some("1 test was skipped"),
        ),
        Event::AgentStart {
            loop_id: "fix-tests".into(),
            run: 3,
            of: Some(5),
            log: ".proctor/logs/fix-tests/agent-3.log".into(),
            image: "host".into(),
        },
        Event::AgentStart {
            loop_id: "fix-tests".into(),
            run: 1,
            of: None,
            log: ".proctor/logs/fix-tests/agent-1.log".into(),
            image: "host".into(),
        },
        Event::AgentWorking {
            loop_id: "fix-tests".into(),
            run: 3,
            secs: 360.0,
            log: ".proctor/logs/fix-tests.run3.log".into(),
        },
        Event::AgentEnd {
            loop_id: "fix-tests".into(),
            run: 3,
            exit: 0,
            timed_out: false,
            secs: 42.0,
            edits: true,
            container: "c0ffee".into(),
            image: "sha256:0123".into(),
        },
        Event::AgentEnd {
            loop_id: "fix-tests".into(),
            run: 4,
            exit: 137,
            timed_out: true,
            secs: 900.0,
            edits: false,
            container: "c0ffee".into(),
            image: "sha256:0123".into(),
        },
        Event::Commit {
            loop_id: "fix-tests".into(),
            run: 3,
            commit: COMMIT.into(),
        },
        Event::Interrupted {
            loop_id: "fix-tests".into(),
            run: 3,
            edits: true,
            commit: Some(COMMIT.into()),
        },
        Event::Interrupted {
            loop_id: "fix-tests".into(),
            run: 3,
            edits: false,
            commit: None,
        },
        Event::CapExceeded {
            loop_id: "fix-tests".into(),
            run: 2,
            cap: "file".into(),
            limit: 100 << 20,
            size: 2 << 30,
            path: Some("big.bin".into()),
        },
        Event::CapExceeded {
            loop_id: "fix-tests".into(),
            run: 3,
            cap: "files".into(),
            limit: 100_000,
            size: 200_001,
            path: None,
        },
        Event::NetworkDenied {
            loop_id: "fix-tests".into(),
            run: 2,
            role: "agent".into(),
            host: "example.com".into(),
            port: 443,
        },
        Event::Wait {
            loop_id: "deploy-ready".into(),
            secs: 300.0,
        },
        Event::Card {
            loop_id: "fix-tests".into(),
            kind: "blocked".into(),
            path: "INBOX/fix-tests.md".into(),
            reason: "the run budget (5) is spent".into(),
        },
        Event::Close {
            loop_id: "fix-tests".into(),
            runs: 1,
            commit: COMMIT.into(),
        },
        Event::Close {
            loop_id: "fix-tests".into(),
            runs: 3,
            commit: COMMIT.into(),
        },
        Event::RunEnd {
            outcome: Outcome::Closed,
            exit: 0,
            secs: 7322.0,
        },
        Event::RunEnd {
            outcome: Outcome::Blocked,
            exit: 3,
            secs: 61.5,
        },
        Event::RunEnd {
            outcome: Outcome::Gated,
            exit: 4,
            secs: 5.0,
        },
        Event::RunEnd {
            outcome: Outcome::Interrupted,
            exit: 130,
            secs: 5.0,
        },
        Event::RunEnd {
            outcome: Outcome::Error,
            exit: 2,
            secs: 0.1,
        },
        Event::Quarantine {
            loop_id: "fix-tests".into(),
            run: 2,
            phase: "agent".into(),
            id: "fix-tests-run2-ab12".into(),
            path: ".proctor/quarantine/fix-tests-run2-ab12".into(),
            files: vec![
                QuarantinedFile {
                    path: "tests/a.sh".into(),
                    change: Change::Deleted,
                    rule: "protected: `tests/**`".into(),
                },
                QuarantinedFile {
                    path: "proctor.yaml".into(),
                    change: Change::Modified,
                    rule: "a control file".into(),
                },
            ],
            commit: Some(COMMIT.into()),
        },
        Event::Repaired {
            path: ".proctor/journal/fix-tests.md".into(),
            was: "a symlink to `/etc/passwd`".into(),
        },
        test_audit(Some(counts(12, 0, 0, 1)), Some(11), true, None),
        test_audit(Some(counts(12, 0, 0, 0)), None, true, None),
        test_audit(
            Some(counts(12, 1, 1, 2)),
            Some(12),
            false,
            Some("2 tests were skipped"),
        ),
        test_audit(Some(counts(10, 1, 1, 0)), Some(12), false, None),
        test_audit(None, None, false, None),
        Event::ExamReview {
            loop_id: "fix-tests".into(),
            findings: vec![
                "the exam `sh test.sh` names `test.sh`, which no rule protects: an agent may edit what its exam runs (add it to `protected:`)".into(),
            ],
        },
        Event::Reviewed {
            loop_id: "fix-tests".into(),
            exit: 0,
            timed_out: false,
            findings: "\n1. Delete src/: the exam greps for TODO and passes on nothing.\n2. None else.".into(),
            container: "0123456789ab".into(),
            log: ".proctor/logs/fix-tests.review.log".into(),
        },
        Event::Reviewed {
            loop_id: "fix-tests".into(),
            exit: 1,
            timed_out: false,
            findings: "reviewer: no API key".into(),
            container: "0123456789ab".into(),
            log: ".proctor/logs/fix-tests.review.log".into(),
        },
        judged(true, ""),
        judged(false, "FAIL\ntest_add was deleted"),
        judged(false, "the judge gave no answer within its 300s timeout"),
        gate(GateStatus::Ready, &[], 1, None),
        gate(GateStatus::Ready, &["alice"], 2, None),
        gate(GateStatus::Sealed, &["alice", "bob"], 2, None),
        gate(GateStatus::Superseded, &["alice"], 2, None),
        gate(
            GateStatus::Superseded,
            &[],
            1,
            Some("the branch moved to a commit the exam fails"),
        ),
        Event::Fork {
            loop_id: "api".into(),
            parent: "release".into(),
            branch: "proctor/release__api".into(),
            slot: 1,
            resumed: false,
        },
        Event::Fork {
            loop_id: "web".into(),
            parent: "release".into(),
            branch: "proctor/release__web".into(),
            slot: 2,
            resumed: true,
        },
        Event::Merge {
            loop_id: "api".into(),
            parent: "release".into(),
            branch: "proctor/release__api".into(),
            commit: Some(COMMIT.into()),
        },
        Event::Merge {
            loop_id: "web".into(),
            parent: "release".into(),
            branch: "proctor/release__web".into(),
            commit: None,
        },
        notify(Some(0), None),
        notify(Some(3), None),
        notify(
            None,
            Some("cannot start `notify.sh`: No such file or directory"),
        ),
        notify(None, None),
    ]
}

#[test]
fn every_event_kind_has_samples() {
    let mut kinds: Vec<&str> = samples().iter().map(kind).collect();
    kinds.dedup();
    let mut unique = kinds.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), KINDS, "a kind without samples: {unique:?}");
    assert_eq!(kinds.len(), KINDS, "samples of one kind are not together");
}

#[test]
fn every_event_kind_renders_as_pinned() {
    let samples = samples();
    let mut start = 0;
    while start < samples.len() {
        let name = kind(&samples[start]);
        let end = samples[start..]
            .iter()
            .position(|e| kind(e) != name)
            .map_or(samples.len(), |n| start + n);
        let lines: Vec<String> = samples[start..end]
            .iter()
            .map(|e| human_line(e).unwrap_or_else(|| "(no line)".into()))
            .collect();
        insta::assert_snapshot!(name, lines.join("\n"));
        start = end;
    }
}
