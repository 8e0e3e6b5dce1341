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

/// Parses `proctor(<loop>): run <n>` from a commit summary.
pub fn parse_run(message: &str) -> Option<(String, u32)> {
    let summary = message.lines().next()?;
    let rest = summary.strip_prefix("proctor(")?;
    let (loop_id, rest) = rest.split_once("): run ")?;
    let run = rest.trim().parse().ok()?;
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
}
