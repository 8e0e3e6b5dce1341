//! The event contract: the engine's only output.
//!
//! Each event is one JSON line in `.proctor/events.jsonl`, versioned and
//! typed. Renderers (the terminal stream, `--json`, views) consume these and
//! nothing else; the engine never prints.

use serde::{Deserialize, Serialize};

pub const EVENTS_VERSION: u32 = 1;

/// One line of the events file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    /// Unix seconds.
    pub ts: f64,
    /// The run id (one `proctor run`/`once` process).
    pub run: String,
    #[serde(flatten)]
    pub event: Event,
}

/// Why an exam was administered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before any agent wakes: a green loop starts no agent.
    Precheck,
    /// After an attempt was committed.
    Verify,
    /// A repeat pass for `confirm: N`.
    Confirm,
    /// On the base commit, to learn its test count for `expect_delta`.
    Baseline,
    /// `proctor land`: on the merged tree, before the target branch moves.
    Land,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    NotYet,
}

impl Verdict {
    pub fn from_exit(code: i64, timed_out: bool) -> Verdict {
        match (code, timed_out) {
            (_, true) => Verdict::Fail,
            (0, _) => Verdict::Pass,
            (75, _) => Verdict::NotYet,
            _ => Verdict::Fail,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Closed,
    Blocked,
    Gated,
    Interrupted,
    Error,
}

/// Where a human gate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    /// The exam passes; the loop waits for approvals (exit 4).
    Ready,
    /// Enough trusted approvers signed `approve` for this commit.
    Sealed,
    /// The exam no longer passes: earlier approvals no longer apply.
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStart {
        root: String,
        branch: String,
        base: String,
        manifest: String,
        engine: String,
        pid: u32,
        /// A `proctor once` run's loop, which has no manifest file: the
        /// document its flags made (JSON, the agent command left out), so
        /// `attest` can name and re-run its exam.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        once: Option<String>,
    },
    /// Leftovers of dead runs removed at the start of a run: this
    /// repository's containers, and the files of any dead proctor process
    /// (see `leftovers.rs`).
    Reaped {
        containers: usize,
        #[serde(default)]
        files: usize,
    },
    /// `image: auto`: a step of the build of the repository's image
    /// (`Step 2/4 : COPY ...`), at the run's start, before any agent.
    ImageBuild {
        /// The file that defines the image (`.proctor/Dockerfile`, ...).
        source: String,
        step: String,
    },
    /// `image: auto` resolved to the image every loop that asks for it
    /// runs in: built from the base commit's `source` now (`built`), or
    /// found built earlier from the same content (no build).
    ImageReady {
        source: String,
        /// The tag (`proctor-auto:<hash>`), or the image a devcontainer
        /// names.
        image: String,
        /// The image id (`sha256:...`).
        id: String,
        built: bool,
        secs: f64,
    },
    CheckStart {
        #[serde(rename = "loop")]
        loop_id: String,
        phase: Phase,
        commit: String,
    },
    CheckResult {
        #[serde(rename = "loop")]
        loop_id: String,
        phase: Phase,
        verdict: Verdict,
        exit: i64,
        timed_out: bool,
        secs: f64,
        commit: String,
        container: String,
        image: String,
        log: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        streak: Option<String>,
        /// Why a zero exit code was not a pass (the test-count audit, or
        /// the exam's materials changing while it ran).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    AgentStart {
        #[serde(rename = "loop")]
        loop_id: String,
        #[serde(rename = "n")]
        run: u32,
        of: Option<u32>,
        log: String,
        image: String,
    },
    /// The agent still works: written by the run every few minutes of an
    /// agent's silence in the stream (never by the engine's loop).
    AgentWorking {
        #[serde(rename = "loop")]
        loop_id: String,
        #[serde(rename = "n")]
        run: u32,
        /// Since the agent started.
        secs: f64,
        log: String,
    },
    AgentEnd {
        #[serde(rename = "loop")]
        loop_id: String,
        #[serde(rename = "n")]
        run: u32,
        exit: i64,
        timed_out: bool,
        secs: f64,
        edits: bool,
        container: String,
        /// The id of the image the agent's container ran (`sha256:...`);
        /// `agent_start` names the image as the manifest gave it.
        #[serde(default)]
        image: String,
    },
    Commit {
        #[serde(rename = "loop")]
        loop_id: String,
        #[serde(rename = "n")]
        run: u32,
        commit: String,
    },
    /// An attempt a killed run (or a lost engine) left uncommitted, settled
    /// by the next run. With edits, they were committed as that attempt
    /// (`commit`, a `run N (interrupted)` commit, charged against the
    /// budget); without, the attempt is not charged and its run number is
    /// used again. Never mixed into the next agent's commit.
    Interrupted {
        #[serde(rename = "loop")]
        loop_id: String,
        #[serde(rename = "n")]
        run: u32,
        edits: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// An attempt's tree was over a cap of `resources:` (`cap` is `tree`,
    /// `files` or `file`): its edits were undone before anything of it was
    /// written to `.git`, and its commit records the run (it counts against
    /// the budget) with the last commit's tree. `size` is what the tree would
    /// have had (bytes, or files for `files`; at least: counting stops once
    /// over the cap); `path` is the largest file, for the `file` cap.
    CapExceeded {
        #[serde(rename = "loop")]
        loop_id: String,
        #[serde(rename = "n")]
        run: u32,
        cap: String,
        limit: u64,
        size: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// The egress proxy refused a target that is not on the loop's
    /// `network:` host list. `n` is the run whose agent (or whose exam,
    /// `role: verifier`) asked.
    NetworkDenied {
        #[serde(rename = "loop")]
        loop_id: String,
        #[serde(rename = "n")]
        run: u32,
        role: String,
        host: String,
        port: u16,
    },
    Wait {
        #[serde(rename = "loop")]
        loop_id: String,
        secs: f64,
    },
    Card {
        #[serde(rename = "loop")]
        loop_id: String,
        kind: String,
        path: String,
        reason: String,
    },
    Close {
        #[serde(rename = "loop")]
        loop_id: String,
        runs: u32,
        commit: String,
    },
    RunEnd {
        outcome: Outcome,
        exit: i32,
        secs: f64,
    },
    /// Watched files (or writes outside the allow-list) were set aside and
    /// the trusted copies restored.
    Quarantine {
        #[serde(rename = "loop")]
        loop_id: String,
        /// The attempt (0 before the loop's first).
        #[serde(rename = "n")]
        run: u32,
        /// `agent`, `exam` or `verify`.
        phase: String,
        id: String,
        /// The record's directory, repo-relative.
        path: String,
        files: Vec<QuarantinedFile>,
        /// The commit that put the trusted copies back, when one was needed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// A state path was not what the host writes (a link, a directory, a
    /// FIFO) and was replaced.
    Repaired { path: String, was: String },
    /// The exam reviewed before the loop's first agent run: each finding
    /// names a way the exam could pass without the task being done (today:
    /// files the exam's command names that no rule protects).
    ExamReview {
        #[serde(rename = "loop")]
        loop_id: String,
        findings: Vec<String>,
    },
    /// The config's reviewer answered, before the loop's first agent run,
    /// how the exam could pass without the task being done: its output,
    /// capped (the whole of it is in `log`).
    Reviewed {
        #[serde(rename = "loop")]
        loop_id: String,
        exit: i64,
        timed_out: bool,
        findings: String,
        container: String,
        log: String,
    },
    /// The judge's ruling on a pass: no veto, or a veto with its reason
    /// (a judge can only take a pass away).
    Judged {
        #[serde(rename = "loop")]
        loop_id: String,
        /// Runs spent on the loop when the judged exam ran.
        #[serde(rename = "n")]
        run: u32,
        /// The commit under judgement (its diff from the run's base).
        commit: String,
        /// No veto: first line exactly `PASS` and exit 0.
        pass: bool,
        /// The judge's first lines (or what went wrong).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
        exit: i64,
        timed_out: bool,
        secs: f64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        container: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        image: String,
        log: String,
    },
    /// What the exam's JUnit report counted, and the audit's verdict.
    TestAudit {
        #[serde(rename = "loop")]
        loop_id: String,
        commit: String,
        /// `None` when the exam wrote no report.
        counts: Option<crate::protect::junit::Counts>,
        /// The test count at the base commit, when known.
        baseline: Option<u32>,
        passed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A gated loop's state: `approvals` are the trusted approver ids that
    /// signed `approve` for `commit`; `needed` is how many it takes.
    Gate {
        #[serde(rename = "loop")]
        loop_id: String,
        status: GateStatus,
        commit: String,
        approvals: Vec<String>,
        needed: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A child of a `parallel: true` loop started (or resumed) in its own
    /// worktree on its own branch, forked from its parent's; `slot` is its
    /// `PROCTOR_SLOT`.
    Fork {
        #[serde(rename = "loop")]
        loop_id: String,
        parent: String,
        branch: String,
        slot: u32,
        resumed: bool,
    },
    /// A closed parallel child's branch was merged into its parent's
    /// (`commit` is the merge commit; absent when it was already in).
    Merge {
        #[serde(rename = "loop")]
        loop_id: String,
        parent: String,
        branch: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// The `on_halt` notifier ran on the host (`exit` is `None` when it
    /// could not start or was killed at its timeout).
    Notify {
        #[serde(rename = "loop")]
        loop_id: String,
        reason: String,
        exit: Option<i32>,
        secs: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// One path of a [`Event::Quarantine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedFile {
    pub path: String,
    /// `modified`, `deleted`, `added`, `symlink` or `replaced`.
    pub change: crate::protect::Change,
    /// The rule that caught it: ``protected: `tests/**` ``, a control file,
    /// or the loop's ``writes: [...]``.
    pub rule: String,
}

/// Parses an events file; malformed lines are skipped, never fatal.
pub fn parse(text: &str) -> Vec<Record> {
    crate::state::jsonl::parse(text)
}

/// Reads an events file; a missing one holds no events.
pub fn read(path: &std::path::Path) -> Vec<Record> {
    crate::state::jsonl::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip_with_a_type_tag() {
        let record = Record {
            v: EVENTS_VERSION,
            ts: 1.5,
            run: "r1".into(),
            event: Event::AgentEnd {
                loop_id: "fix".into(),
                run: 2,
                exit: 0,
                timed_out: false,
                secs: 0.25,
                edits: true,
                container: "abc".into(),
                image: "sha256:0123".into(),
            },
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains("\"type\":\"agent_end\""));
        assert!(line.contains("\"loop\":\"fix\""));
        assert_eq!(parse(&line), vec![record]);
    }

    #[test]
    fn a_reaped_line_of_an_older_version_counts_no_files() {
        let line = r#"{"v":1,"ts":1.0,"run":"r1","type":"reaped","containers":2}"#;
        let records = parse(line);
        assert_eq!(
            records[0].event,
            Event::Reaped {
                containers: 2,
                files: 0
            }
        );
    }

    #[test]
    fn boundary_events_round_trip() {
        let events = vec![
            Event::Quarantine {
                loop_id: "fix".into(),
                run: 1,
                phase: "agent".into(),
                id: "fix-run1-ab12".into(),
                path: ".proctor/quarantine/fix-run1-ab12".into(),
                files: vec![QuarantinedFile {
                    path: "tests/a.sh".into(),
                    change: crate::protect::Change::Deleted,
                    rule: "protected: `tests/**`".into(),
                }],
                commit: None,
            },
            Event::Interrupted {
                loop_id: "fix".into(),
                run: 3,
                edits: true,
                commit: Some("c".into()),
            },
            Event::Interrupted {
                loop_id: "fix".into(),
                run: 3,
                edits: false,
                commit: None,
            },
            Event::CapExceeded {
                loop_id: "fix".into(),
                run: 2,
                cap: "file".into(),
                limit: 100 << 20,
                size: 2 << 30,
                path: Some("big.bin".into()),
            },
            Event::ImageBuild {
                source: ".proctor/Dockerfile".into(),
                step: "Step 1/3 : FROM scratch".into(),
            },
            Event::ImageReady {
                source: ".proctor/Dockerfile".into(),
                image: "proctor-auto:0123456789abcdef".into(),
                id: "sha256:0123".into(),
                built: true,
                secs: 2.5,
            },
            Event::Repaired {
                path: ".proctor/journal/fix.md".into(),
                was: "a symlink to `/etc/passwd`".into(),
            },
            Event::ExamReview {
                loop_id: "fix".into(),
                findings: vec![
                    "the exam `sh test.sh` names `test.sh`, which no rule protects".into(),
                ],
            },
            Event::Reviewed {
                loop_id: "fix".into(),
                exit: 0,
                timed_out: false,
                findings: "1. delete src/ and grep finds no TODO\n2. nothing else".into(),
                container: "0123456789ab".into(),
                log: ".proctor/logs/fix.review.log".into(),
            },
            Event::Judged {
                loop_id: "fix".into(),
                run: 2,
                commit: "c".into(),
                pass: false,
                reason: "FAIL\nthe test was deleted".into(),
                exit: 0,
                timed_out: false,
                secs: 1.5,
                container: "j".into(),
                image: "sha256:i".into(),
                log: ".proctor/logs/fix.run2.judge.log".into(),
            },
            Event::TestAudit {
                loop_id: "fix".into(),
                commit: "c".into(),
                counts: Some(crate::protect::junit::Counts {
                    tests: 3,
                    skipped: 1,
                    files: 1,
                    ..Default::default()
                }),
                baseline: Some(3),
                passed: false,
                reason: Some("1 test was skipped".into()),
            },
        ];
        for event in events {
            let record = Record {
                v: EVENTS_VERSION,
                ts: 1.0,
                run: "r".into(),
                event,
            };
            let line = serde_json::to_string(&record).unwrap();
            assert_eq!(parse(&line), vec![record]);
        }
        // A check result written before `reason` existed still parses.
        let old = r#"{"v":1,"ts":1.0,"run":"r","type":"check_result","loop":"a","phase":"verify","verdict":"pass","exit":0,"timed_out":false,"secs":1.0,"commit":"c","container":"x","image":"i","log":"l"}"#;
        assert_eq!(parse(old).len(), 1);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn check_results_round_trip(loop_id in "[a-z][a-z0-9-]{0,10}", exit in -1i64..256, secs in 0.0f64..1e5, commit in "[0-9a-f]{40}") {
            let record = Record { v: 1, ts: 2.0, run: "r".into(), event: Event::CheckResult {
                loop_id, phase: Phase::Verify, verdict: Verdict::from_exit(exit, false), exit, timed_out: false, secs,
                commit, container: "c".into(), image: "i".into(), log: "l".into(), streak: None, reason: None } };
            let line = serde_json::to_string(&record).unwrap();
            prop_assert_eq!(parse(&line), vec![record]);
        }
    }
}
