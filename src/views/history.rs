//! Past runs (`proctor runs`) and their sums (`proctor stats`), from the
//! events file.

use serde::Serialize;

use crate::engine::events::{Event, Phase, Record, Verdict};

/// One `proctor run` (or `once`) process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub run: String,
    pub root: String,
    pub started: f64,
    /// Seconds, from its end event (or its last event).
    pub secs: f64,
    /// `closed`, `blocked`, `gated`, `interrupted`, `error` or `running`.
    pub outcome: String,
    pub exit: Option<i32>,
    /// Agent runs (attempts) in this process.
    pub attempts: u32,
    /// Attempts whose exam passed afterwards.
    pub verified: u32,
    /// Attempts whose exam failed afterwards.
    pub rejected: u32,
    pub agent_secs: f64,
    pub loops_closed: u32,
}

/// Runs in the order they started. `live_pid` is the pid holding the lock
/// (a run with no end event is `running` only if it is that process).
pub fn runs(records: &[Record], live_pid: Option<i32>) -> Vec<RunRow> {
    let mut rows: Vec<RunRow> = Vec::new();
    let mut pids: Vec<u32> = Vec::new();
    for record in records {
        if let Event::RunStart { root, pid, .. } = &record.event {
            rows.push(RunRow {
                run: record.run.clone(),
                root: root.clone(),
                started: record.ts,
                secs: 0.0,
                outcome: String::new(),
                exit: None,
                attempts: 0,
                verified: 0,
                rejected: 0,
                agent_secs: 0.0,
                loops_closed: 0,
            });
            pids.push(*pid);
            continue;
        }
        let Some(i) = rows.iter().rposition(|r| r.run == record.run) else {
            continue;
        };
        let row = &mut rows[i];
        if row.outcome.is_empty() {
            row.secs = (record.ts - row.started).max(0.0);
        }
        match &record.event {
            Event::AgentStart { .. } => row.attempts += 1,
            Event::AgentEnd { secs, .. } => row.agent_secs += secs,
            Event::CheckResult {
                phase: Phase::Verify,
                verdict,
                ..
            } => match verdict {
                Verdict::Pass => row.verified += 1,
                Verdict::Fail => row.rejected += 1,
                Verdict::NotYet => {}
            },
            Event::Close { .. } => row.loops_closed += 1,
            Event::RunEnd {
                outcome,
                exit,
                secs,
            } => {
                row.outcome = serde_json::to_value(outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                row.exit = Some(*exit);
                row.secs = *secs;
            }
            _ => {}
        }
    }
    for (row, pid) in rows.iter_mut().zip(pids) {
        if row.outcome.is_empty() {
            row.outcome = if live_pid == Some(pid as i32) {
                "running".into()
            } else {
                "interrupted".into()
            };
        }
    }
    rows
}

/// Sums over every run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub runs: u32,
    pub closed: u32,
    pub blocked: u32,
    pub gated: u32,
    pub interrupted: u32,
    pub errors: u32,
    pub running: u32,
    /// Agent runs.
    pub attempts: u32,
    /// Attempts the exam verified (it passed right after them).
    pub verified: u32,
    /// Attempts the exam rejected.
    pub rejected: u32,
    /// Edits to protected files that were quarantined (`quarantine*`
    /// events, from versions that write them).
    pub cheats_blocked: u32,
    pub exams: u32,
    pub exam_secs: f64,
    pub agent_secs: f64,
    pub loops_closed: u32,
    pub first: Option<f64>,
    pub last: Option<f64>,
}

pub fn stats(records: &[Record], raw_types: &[(String, String)], live_pid: Option<i32>) -> Stats {
    let rows = runs(records, live_pid);
    let mut s = Stats {
        runs: rows.len() as u32,
        first: rows.first().map(|r| r.started),
        last: rows.last().map(|r| r.started + r.secs),
        ..Stats::default()
    };
    for row in &rows {
        match row.outcome.as_str() {
            "closed" => s.closed += 1,
            "blocked" => s.blocked += 1,
            "gated" => s.gated += 1,
            "interrupted" => s.interrupted += 1,
            "running" => s.running += 1,
            _ => s.errors += 1,
        }
        s.attempts += row.attempts;
        s.verified += row.verified;
        s.rejected += row.rejected;
        s.agent_secs += row.agent_secs;
        s.loops_closed += row.loops_closed;
    }
    for record in records {
        if let Event::CheckResult { secs, .. } = &record.event {
            s.exams += 1;
            s.exam_secs += secs;
        }
    }
    s.cheats_blocked = raw_types
        .iter()
        .filter(|(kind, _)| kind.starts_with("quarantine"))
        .count() as u32;
    s
}
