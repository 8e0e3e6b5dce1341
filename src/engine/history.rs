//! What committed history says about a run: runs spent per loop and when
//! each loop started. Budgets come from here, not from any file an agent
//! can rewrite.

use std::collections::HashMap;

use crate::git::{GitError, GitRepo, Oid};

/// The message of an attempt's commit. The trailers are host-written and
/// immutable once committed.
pub fn run_message(loop_id: &str, run: u32, started: f64, secs: f64, exit: i64) -> String {
    format!(
        "proctor({loop_id}): run {run}\n\nProctor-Loop: {loop_id}\nProctor-Run: {run}\nProctor-Started: {}\nProctor-Agent-Secs: {secs:.3}\nProctor-Agent-Exit: {exit}\n",
        started as i64
    )
}

/// The message of an attempt a killed run left uncommitted, committed by
/// the next run as that attempt (and charged as one). Its agent's exit and
/// duration were never observed, so the trailers do not claim any; the
/// `Proctor-Interrupted` trailer says why.
pub fn interrupted_message(loop_id: &str, run: u32, started: Option<f64>) -> String {
    let started = started
        .map(|at| format!("Proctor-Started: {}\n", at as i64))
        .unwrap_or_default();
    format!(
        "proctor({loop_id}): run {run} (interrupted)\n\nThe agent of this attempt was cut short (proctor or the container engine stopped) before its attempt was committed; these are the edits it left. The next run committed them as this attempt.\n\nProctor-Loop: {loop_id}\nProctor-Run: {run}\n{started}Proctor-Interrupted: yes\n"
    )
}

/// Parses `proctor(<loop>): run <n>` (and `run <n> (interrupted)`) from a
/// commit summary.
pub fn parse_run(message: &str) -> Option<(String, u32)> {
    let summary = message.lines().next()?;
    let rest = summary.strip_prefix("proctor(")?;
    let (loop_id, rest) = rest.split_once("): run ")?;
    let rest = rest.trim();
    let number = rest.strip_suffix(" (interrupted)").unwrap_or(rest);
    let run = number.parse().ok()?;
    Some((loop_id.to_string(), run))
}

/// The value of trailer `key` in a commit message.
pub fn trailer<'m>(message: &'m str, key: &str) -> Option<&'m str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

pub struct Spent {
    pub runs: HashMap<String, u32>,
    pub started: HashMap<String, f64>,
}

/// Runs per loop and first-attempt times, from the first-parent history
/// between `base` (exclusive) and `tip`.
pub fn spent(git: &GitRepo, tip: Oid, base: Oid) -> Result<Spent, GitError> {
    let mut runs: HashMap<String, u32> = HashMap::new();
    let mut started: HashMap<String, f64> = HashMap::new();
    if tip == base {
        return Ok(Spent { runs, started });
    }
    for commit in git.first_parent_log(tip, Some(base))? {
        if let Some((loop_id, run)) = parse_run(&commit.message) {
            let n = runs.entry(loop_id.clone()).or_insert(0);
            *n = (*n).max(run);
            let at = trailer(&commit.message, "Proctor-Started")
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(commit.time as f64);
            // The log is newest first: the last one seen is the earliest.
            started.insert(loop_id, at);
        }
    }
    Ok(Spent { runs, started })
}

/// The fork point of a proctor branch: the parent of its oldest proctor
/// commit on the first-parent chain, or the tip when it has none.
pub fn base_of(git: &GitRepo, tip: Oid) -> Result<Oid, GitError> {
    let log = git.first_parent_log(tip, None)?;
    let mut base = tip;
    for (i, commit) in log.iter().enumerate() {
        if commit.message.starts_with("proctor(") {
            base = log.get(i + 1).map(|c| c.oid).unwrap_or(commit.oid);
        } else {
            break;
        }
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_messages_parse_back() {
        let msg = run_message("fix-tests", 12, 1700000000.0, 1.5, 0);
        assert_eq!(parse_run(&msg), Some(("fix-tests".into(), 12)));
        assert_eq!(trailer(&msg, "Proctor-Started"), Some("1700000000"));
        assert_eq!(parse_run("proctor(x): close"), None);
        assert_eq!(parse_run("fix: run 3"), None);
    }

    #[test]
    fn an_interrupted_attempt_counts_as_its_run_and_claims_no_exit() {
        let msg = interrupted_message("fix-tests", 4, Some(1700000000.5));
        assert_eq!(parse_run(&msg), Some(("fix-tests".into(), 4)));
        assert_eq!(trailer(&msg, "Proctor-Interrupted"), Some("yes"));
        assert_eq!(trailer(&msg, "Proctor-Started"), Some("1700000000"));
        assert_eq!(trailer(&msg, "Proctor-Agent-Exit"), None);
        assert_eq!(trailer(&msg, "Proctor-Agent-Secs"), None);
        assert_eq!(parse_run("proctor(x): run 2 (redone)"), None);
    }
}
