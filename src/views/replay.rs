//! A pure projection of the events file: where each loop stands and what
//! the latest run is doing. No I/O here.

use std::collections::HashMap;

use crate::engine::events::{Event, GateStatus, Outcome, Record, Verdict};

/// The word (and mark) a loop gets in every view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    Done,
    Running,
    Waiting,
    Blocked,
    Gated,
    Untouched,
}

impl Word {
    pub fn as_str(self) -> &'static str {
        match self {
            Word::Done => "done",
            Word::Running => "running",
            Word::Waiting => "waiting",
            Word::Blocked => "blocked",
            Word::Gated => "gated",
            Word::Untouched => "untouched",
        }
    }

    /// A glyph for people; scripts should match on the word.
    pub fn mark(self) -> &'static str {
        match self {
            Word::Done => "✔",
            Word::Running => "↻",
            Word::Waiting => "⏳",
            Word::Blocked => "✗",
            Word::Gated => "✋",
            Word::Untouched => "◌",
        }
    }

    /// ANSI colour code for the mark on a terminal.
    pub fn colour(self) -> &'static str {
        match self {
            Word::Done => "32",
            Word::Running => "36",
            Word::Waiting | Word::Gated => "33",
            Word::Blocked => "31",
            Word::Untouched => "2",
        }
    }
}

/// What a loop is doing right now in a live run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    Agent,
    Exam,
    Commit,
    Sleep,
}

impl Doing {
    pub fn as_str(self) -> &'static str {
        match self {
            Doing::Agent => "agent",
            Doing::Exam => "exam",
            Doing::Commit => "commit",
            Doing::Sleep => "check_every",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoopState {
    pub word: Word,
    /// The highest run number seen (runs are numbered across processes).
    pub runs: u32,
    /// The run budget the engine announced.
    pub of: Option<u32>,
    pub agent_secs: f64,
    pub doing: Option<Doing>,
    /// The run number in progress.
    pub run: Option<u32>,
    /// When the current activity began (unix seconds).
    pub since: Option<f64>,
    pub next_check: Option<f64>,
    /// The last gate event: approvals counted, how many needed, which commit.
    pub approvals: Vec<String>,
    pub needed: Option<u32>,
    pub commit: Option<String>,
    /// A parallel child's own branch and `PROCTOR_SLOT`.
    pub branch: Option<String>,
    pub slot: Option<u32>,
}

impl Default for LoopState {
    fn default() -> Self {
        LoopState {
            word: Word::Untouched,
            runs: 0,
            of: None,
            agent_secs: 0.0,
            doing: None,
            run: None,
            since: None,
            next_check: None,
            approvals: Vec::new(),
            needed: None,
            commit: None,
            branch: None,
            slot: None,
        }
    }
}

/// The latest run and every loop's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    pub root: Option<String>,
    /// The latest run's manifest as its `run_start` names it: a path
    /// relative to the repository, or `proctor once`.
    pub manifest: Option<String>,
    pub branch: Option<String>,
    /// The commit the work branch forked from.
    pub base: Option<String>,
    pub run_id: Option<String>,
    pub pid: Option<u32>,
    pub started: Option<f64>,
    pub last_ts: Option<f64>,
    /// The latest run's end: outcome, exit code, seconds.
    pub end: Option<(Outcome, i32, f64)>,
    pub loops: HashMap<String, LoopState>,
    /// Loop ids in the order they first appeared.
    pub order: Vec<String>,
    /// Loop ids the latest run touched, in that order.
    pub latest: Vec<String>,
}

impl Replay {
    fn state(&mut self, id: &str) -> &mut LoopState {
        if !self.loops.contains_key(id) {
            self.order.push(id.to_string());
        }
        if !self.latest.iter().any(|l| l == id) {
            self.latest.push(id.to_string());
        }
        self.loops.entry(id.to_string()).or_default()
    }

    /// Forgets what loops were doing: the run is over (or dead).
    pub fn idle(&mut self) {
        for state in self.loops.values_mut() {
            state.doing = None;
            state.run = None;
            state.since = None;
            if state.word == Word::Waiting {
                state.next_check = None;
            }
        }
    }
}

/// Replays records in order.
pub fn replay(records: &[Record]) -> Replay {
    let mut r = Replay::default();
    for record in records {
        r.last_ts = Some(record.ts);
        let ts = record.ts;
        match &record.event {
            Event::RunStart {
                root,
                branch,
                base,
                manifest,
                pid,
                ..
            } => {
                r.idle();
                r.root = Some(root.clone());
                r.manifest = Some(manifest.clone());
                r.latest.clear();
                r.branch = Some(branch.clone());
                r.base = Some(base.clone());
                r.run_id = Some(record.run.clone());
                r.pid = Some(*pid);
                r.started = Some(ts);
                r.end = None;
            }
            Event::Reaped { .. } => {}
            Event::CheckStart { loop_id, .. } => {
                let s = r.state(loop_id);
                if s.word == Word::Untouched {
                    s.word = Word::Running;
                }
                s.doing = Some(Doing::Exam);
                s.since = Some(ts);
            }
            Event::CheckResult {
                loop_id, verdict, ..
            } => {
                let s = r.state(loop_id);
                s.doing = None;
                s.since = None;
                match verdict {
                    Verdict::NotYet => s.word = Word::Waiting,
                    Verdict::Fail => s.word = Word::Running,
                    Verdict::Pass => {
                        if s.word != Word::Done {
                            s.word = Word::Running;
                        }
                    }
                }
            }
            Event::AgentStart {
                loop_id, run, of, ..
            } => {
                let s = r.state(loop_id);
                s.word = Word::Running;
                s.runs = s.runs.max(*run);
                s.of = *of;
                s.run = Some(*run);
                s.doing = Some(Doing::Agent);
                s.since = Some(ts);
                s.next_check = None;
            }
            Event::AgentEnd { loop_id, secs, .. } => {
                let s = r.state(loop_id);
                s.agent_secs += secs;
                s.doing = Some(Doing::Commit);
                s.since = Some(ts);
            }
            Event::Commit { loop_id, .. } => {
                let s = r.state(loop_id);
                s.doing = None;
                s.since = None;
            }
            Event::Wait { loop_id, secs } => {
                let s = r.state(loop_id);
                s.word = Word::Waiting;
                s.doing = Some(Doing::Sleep);
                s.since = Some(ts);
                s.next_check = Some(ts + secs);
            }
            Event::Card { loop_id, kind, .. } => {
                let s = r.state(loop_id);
                s.doing = None;
                s.since = None;
                s.word = if kind == "ready" || kind == "review" {
                    Word::Gated
                } else {
                    Word::Blocked
                };
            }
            Event::Gate {
                loop_id,
                status,
                commit,
                approvals,
                needed,
                ..
            } => {
                let s = r.state(loop_id);
                s.approvals = approvals.clone();
                s.needed = Some(*needed);
                s.commit = Some(commit.clone());
                match status {
                    GateStatus::Ready => s.word = Word::Gated,
                    GateStatus::Superseded => s.word = Word::Running,
                    GateStatus::Sealed => {}
                }
            }
            Event::Close { loop_id, .. } => {
                let s = r.state(loop_id);
                s.word = Word::Done;
                s.doing = None;
                s.since = None;
                s.next_check = None;
            }
            Event::Fork {
                loop_id,
                branch,
                slot,
                ..
            } => {
                let s = r.state(loop_id);
                s.branch = Some(branch.clone());
                s.slot = Some(*slot);
            }
            Event::Notify { .. }
            | Event::Merge { .. }
            | Event::Quarantine { .. }
            | Event::Repaired { .. }
            | Event::ImageBuild { .. }
            | Event::ImageReady { .. }
            | Event::Interrupted { .. }
            | Event::CapExceeded { .. }
            | Event::TestAudit { .. }
            | Event::Judged { .. }
            | Event::ExamReview { .. }
            | Event::Reviewed { .. }
            | Event::NetworkDenied { .. }
            // A heartbeat says only that the agent still works.
            | Event::AgentWorking { .. } => {}
            Event::RunEnd {
                outcome,
                exit,
                secs,
            } => {
                r.end = Some((*outcome, *exit, *secs));
                r.idle();
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::Phase;

    fn rec(ts: f64, event: Event) -> Record {
        Record {
            v: 1,
            ts,
            run: "r1".into(),
            event,
        }
    }

    #[test]
    fn a_loop_moves_through_its_words() {
        let records = vec![
            rec(
                1.0,
                Event::RunStart {
                    root: "fix".into(),
                    branch: "proctor/fix".into(),
                    base: "b".into(),
                    manifest: "proctor.yaml".into(),
                    engine: "docker".into(),
                    pid: 7,
                    once: None,
                },
            ),
            rec(
                2.0,
                Event::CheckResult {
                    loop_id: "fix".into(),
                    phase: Phase::Precheck,
                    verdict: Verdict::Fail,
                    exit: 1,
                    timed_out: false,
                    secs: 0.1,
                    commit: "c".into(),
                    container: "x".into(),
                    image: "i".into(),
                    log: "l".into(),
                    streak: None,
                    reason: None,
                },
            ),
            rec(
                3.0,
                Event::AgentStart {
                    loop_id: "fix".into(),
                    run: 1,
                    of: Some(5),
                    log: "l".into(),
                    image: "i".into(),
                },
            ),
        ];
        let r = replay(&records);
        let fix = &r.loops["fix"];
        assert_eq!(fix.word, Word::Running);
        assert_eq!(fix.doing, Some(Doing::Agent));
        assert_eq!((fix.run, fix.of), (Some(1), Some(5)));
        assert_eq!(r.pid, Some(7));
        assert!(r.end.is_none());

        let mut more = records.clone();
        more.push(rec(
            4.0,
            Event::AgentEnd {
                loop_id: "fix".into(),
                run: 1,
                exit: 0,
                timed_out: false,
                secs: 2.5,
                edits: true,
                container: "x".into(),
                image: "sha256:1".into(),
            },
        ));
        more.push(rec(
            5.0,
            Event::Card {
                loop_id: "fix".into(),
                kind: "blocked".into(),
                path: "INBOX/fix.md".into(),
                reason: "budget".into(),
            },
        ));
        more.push(rec(
            6.0,
            Event::RunEnd {
                outcome: Outcome::Blocked,
                exit: 3,
                secs: 5.0,
            },
        ));
        let r = replay(&more);
        assert_eq!(r.loops["fix"].word, Word::Blocked);
        assert_eq!(r.loops["fix"].agent_secs, 2.5);
        assert_eq!(r.loops["fix"].doing, None);
        assert_eq!(r.end, Some((Outcome::Blocked, 3, 5.0)));
    }
}
