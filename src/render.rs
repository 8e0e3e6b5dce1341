//! Renderers: turn engine events into the events file and terminal lines.
//!
//! The engine never prints; this is the only place run output is shaped.
//! Captured output is plain (no colour, no redraw).

use std::io::Write;
use std::path::PathBuf;

use crate::engine::events::{Event, GateStatus, Record, Verdict, EVENTS_VERSION};
use crate::engine::{fmt_bytes, fmt_secs, short};
use crate::state;

/// Writes every event to `.proctor/events.jsonl` and a compact line to stderr.
pub struct Stream {
    pub run_id: String,
    pub events_path: PathBuf,
    pub colour: bool,
    pub quiet: bool,
    /// The live progress line, when stderr is a terminal and the caller
    /// wants one; event lines are printed above it.
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
    /// Problems writing the events file, reported once at the end.
    pub write_errors: Vec<String>,
}

impl Stream {
    pub fn new(run_id: &str, events_path: PathBuf) -> Stream {
        Stream {
            run_id: run_id.to_string(),
            events_path,
            colour: crate::terminal::stderr_colour(),
            quiet: false,
            progress: None,
            write_errors: Vec::new(),
        }
    }

    pub fn emit(&mut self, event: Event) {
        let record = Record {
            v: EVENTS_VERSION,
            ts: state::now(),
            run: self.run_id.clone(),
            event,
        };
        if let Err(e) = state::jsonl::append(&self.events_path, &record) {
            if self.write_errors.is_empty() {
                self.write_errors.push(format!(
                    "cannot write `{}`: {e}",
                    self.events_path.display()
                ));
            }
        }
        if !self.quiet {
            if let Some(progress) = &self.progress {
                progress.observe(&record);
            }
            if let Some(line) = human_line(&record.event) {
                let line = if self.colour {
                    colourise(&record.event, line)
                } else {
                    line
                };
                match &self.progress {
                    Some(progress) => progress.print_line(&line),
                    None => {
                        let _ = writeln!(std::io::stderr(), "{line}");
                    }
                }
            }
        }
    }
}

pub fn colourise(event: &Event, line: String) -> String {
    let code = match event {
        Event::CheckResult {
            verdict: Verdict::Pass,
            ..
        }
        | Event::Close { .. }
        | Event::Gate {
            status: GateStatus::Sealed,
            ..
        } => "32",
        Event::CheckResult {
            verdict: Verdict::Fail,
            ..
        }
        | Event::Card { .. }
        | Event::Quarantine { .. }
        | Event::TestAudit { passed: false, .. }
        | Event::Judged { pass: false, .. }
        | Event::NetworkDenied { .. }
        | Event::CapExceeded { .. } => "31",
        Event::Repaired { .. } | Event::ExamReview { .. } | Event::Reviewed { .. } => "33",
        Event::CheckResult { .. } | Event::Wait { .. } | Event::Gate { .. } => "33",
        _ => return line,
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// One compact line per event, or none for events not worth a line.
/// Events carry agent-controlled text (file names, exam output in reasons,
/// notifier errors): the line is escaped as a whole, so none of it reaches
/// a terminal raw or starts a line of its own.
pub fn human_line(event: &Event) -> Option<String> {
    line_of(event).map(|line| crate::terminal::line(&line).into_owned())
}

fn line_of(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStart {
            root,
            branch,
            engine,
            manifest,
            ..
        } => format!("proctor: loop tree `{root}` from {manifest} on branch {branch} · {engine}"),
        Event::Reaped { containers, files } => match (containers, files) {
            (_, 0) => format!("proctor: removed {containers} leftover container(s) of an earlier run"),
            (0, _) => format!("proctor: removed {files} leftover file(s) of earlier runs"),
            _ => format!(
                "proctor: removed {containers} leftover container(s) and {files} file(s) of earlier runs"
            ),
        },
        Event::ImageBuild { source, step } => format!("proctor: image: {source}: {step}"),
        Event::ImageReady {
            source,
            image,
            built: true,
            secs,
            ..
        } => format!(
            "proctor: image: built `{image}` from {source} (base commit) in {}",
            fmt_secs(*secs)
        ),
        Event::ImageReady { source, image, .. } => format!(
            "proctor: image: `{image}` from {source} (base commit): on the engine already, no build"
        ),
        Event::CheckStart { .. } => return None,
        Event::CheckResult {
            loop_id,
            phase,
            verdict,
            exit,
            timed_out,
            secs,
            commit,
            streak,
            reason,
            ..
        } => {
            let word = match verdict {
                Verdict::Pass => "passed",
                Verdict::Fail => "failed",
                Verdict::NotYet => "not yet",
            };
            let phase = match phase {
                crate::engine::events::Phase::Precheck => "check",
                crate::engine::events::Phase::Verify => "verify",
                crate::engine::events::Phase::Confirm => "confirm",
                crate::engine::events::Phase::Baseline => "baseline",
                crate::engine::events::Phase::Land => "land",
            };
            format!(
                "proctor: {loop_id}: {phase}: exam {word} (exit {exit}{}) on {} in {}{}{}",
                if *timed_out { ", timed out" } else { "" },
                short(commit),
                fmt_secs(*secs),
                streak
                    .as_ref()
                    .map(|s| format!(" · streak {s}"))
                    .unwrap_or_default(),
                reason
                    .as_ref()
                    .map(|r| format!(" · not a pass: {r}"))
                    .unwrap_or_default()
            )
        }
        Event::AgentStart {
            loop_id,
            run,
            of,
            log,
            ..
        } => format!(
            "proctor: {loop_id}: run {run}{}: agent working · log {log}",
            of.map(|o| format!("/{o}")).unwrap_or_default()
        ),
        Event::AgentWorking {
            loop_id,
            run,
            secs,
            log,
        } => format!(
            "proctor: {loop_id}: run {run}: agent still working after {} · log {log}",
            crate::engine::fmt_secs(*secs)
        ),
        Event::AgentEnd {
            loop_id,
            run,
            exit,
            timed_out,
            secs,
            edits,
            ..
        } => format!(
            "proctor: {loop_id}: run {run}: agent exited {exit} after {}{}{}",
            fmt_secs(*secs),
            if *timed_out { " (timed out)" } else { "" },
            if *edits { "" } else { " · no edits" }
        ),
        Event::Commit {
            loop_id,
            run,
            commit,
        } => format!("proctor: {loop_id}: run {run} committed {}", short(commit)),
        Event::Interrupted {
            loop_id,
            run,
            commit,
            ..
        } => match commit {
            Some(commit) => format!(
                "proctor: {loop_id}: run {run} was cut short before its commit; its leftover edits are committed as that run (interrupted) {}",
                short(commit)
            ),
            None => format!(
                "proctor: {loop_id}: run {run} was cut short and left no edits; it is not charged"
            ),
        },
        Event::NetworkDenied {
            loop_id,
            run,
            role,
            host,
            port,
        } => format!("proctor: {loop_id}: run {run}: {role} denied network access to {host}:{port} (not on the list)"),
        Event::CapExceeded {
            loop_id,
            run,
            cap,
            limit,
            size,
            path,
        } => {
            let (size, limit) = if cap == "files" {
                (format!("{size} files"), format!("{limit} files"))
            } else {
                (fmt_bytes(*size), fmt_bytes(*limit))
            };
            let in_file = path
                .as_ref()
                .map(|p| format!(" in `{p}`"))
                .unwrap_or_default();
            format!("proctor: {loop_id}: run {run}: rejected, over the `{cap}` cap ({size}{in_file}, cap {limit}): its edits were undone, nothing of it was committed")
        }
        Event::Wait { loop_id, secs } => {
            format!(
                "proctor: {loop_id}: not yet · next check in {}",
                fmt_secs(*secs)
            )
        }
        Event::Card {
            loop_id,
            kind,
            path,
            reason,
        } => format!("proctor: {loop_id}: {kind}: {reason} · card {path}"),
        Event::Close {
            loop_id,
            runs,
            commit,
        } => format!(
            "proctor: {loop_id}: closed after {runs} run{} · {}",
            if *runs == 1 { "" } else { "s" },
            short(commit)
        ),
        Event::Fork {
            loop_id,
            parent,
            branch,
            slot,
            resumed,
        } => format!(
            "proctor: {loop_id}: {} beside its siblings of `{parent}` on {branch} (slot {slot})",
            if *resumed { "resumes" } else { "starts" }
        ),
        Event::Merge {
            loop_id,
            parent,
            branch,
            commit,
        } => match commit {
            Some(commit) => format!(
                "proctor: {loop_id}: merged {branch} into `{parent}`'s branch · {}",
                short(commit)
            ),
            None => format!("proctor: {loop_id}: {branch} was already in `{parent}`'s branch"),
        },
        Event::Gate {
            loop_id,
            status,
            approvals,
            needed,
            note,
            ..
        } => match status {
            GateStatus::Ready => format!(
                "proctor: {loop_id}: gated: {} of {needed} approval{} · approve with `proctor answer {loop_id} approve`",
                approvals.len(),
                if *needed == 1 { "" } else { "s" }
            ),
            GateStatus::Sealed => {
                format!("proctor: {loop_id}: gate sealed by {}", approvals.join(", "))
            }
            GateStatus::Superseded => format!(
                "proctor: {loop_id}: gate superseded: {}",
                note.as_deref().unwrap_or("the exam no longer passes")
            ),
        },
        Event::Notify {
            loop_id,
            reason,
            exit,
            secs,
            error,
        } => match (exit, error) {
            (Some(0), _) => format!(
                "proctor: {loop_id}: on_halt notified ({reason}) in {}",
                fmt_secs(*secs)
            ),
            (Some(code), _) => format!(
                "proctor: {loop_id}: on_halt notifier exited {code} ({reason}); the run goes on"
            ),
            (None, e) => format!(
                "proctor: {loop_id}: on_halt notifier failed ({reason}): {}; the run goes on",
                e.as_deref().unwrap_or("unknown error")
            ),
        },
        Event::RunEnd {
            outcome,
            exit,
            secs,
        } => format!(
            "proctor: {} (exit {exit}) after {}",
            serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            fmt_secs(*secs)
        ),
        Event::Quarantine {
            loop_id,
            phase,
            id,
            files,
            ..
        } => {
            let list: Vec<String> = files
                .iter()
                .map(|f| format!("{} ({}; {})", f.path, f.change.as_str(), f.rule))
                .collect();
            format!(
                "proctor: {loop_id}: {phase}: quarantined {} and restored the trusted copy · `proctor quarantine diff {id}`",
                list.join(", ")
            )
        }
        Event::Repaired { path, was } => {
            format!("proctor: repaired `{path}`: it was {was}")
        }
        Event::TestAudit {
            loop_id,
            counts,
            baseline,
            passed,
            reason,
            ..
        } => {
            let counted = match counts {
                Some(c) => format!(
                    "{} tests, {} failed, {} skipped{}",
                    c.tests,
                    c.failures + c.errors,
                    c.skipped,
                    baseline
                        .map(|b| format!(" (base: {b})"))
                        .unwrap_or_default()
                ),
                None => "no JUnit report".into(),
            };
            match (passed, reason) {
                (true, _) => format!("proctor: {loop_id}: test audit: {counted}"),
                (false, Some(r)) => format!("proctor: {loop_id}: test audit failed: {r}"),
                (false, None) => format!("proctor: {loop_id}: test audit failed: {counted}"),
            }
        }
        Event::Reviewed {
            loop_id,
            exit,
            timed_out,
            findings,
            log,
            ..
        } => {
            let first = findings
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("(no answer)");
            if *timed_out || *exit != 0 {
                format!(
                    "proctor: {loop_id}: warning: the exam's reviewer failed ({}): {first} (output: {log})",
                    if *timed_out { "timed out".to_string() } else { format!("exit {exit}") }
                )
            } else {
                format!("proctor: {loop_id}: exam reviewer: {first} (whole answer: {log})")
            }
        }
        Event::ExamReview { loop_id, findings } => format!(
            "proctor: {loop_id}: warning: exam review: {}",
            findings.join("; ")
        ),
        Event::Judged {
            loop_id,
            commit,
            pass,
            reason,
            secs,
            log,
            ..
        } => {
            let first = reason.lines().next().unwrap_or("");
            if *pass {
                format!(
                    "proctor: {loop_id}: the judge raised no veto on {} ({}) · {log}",
                    crate::engine::short(commit),
                    crate::engine::fmt_secs(*secs)
                )
            } else {
                format!(
                    "proctor: {loop_id}: the judge vetoed the pass on {}: {first} · {log}",
                    crate::engine::short(commit)
                )
            }
        }
    })
}

#[cfg(test)]
mod human_lines;
