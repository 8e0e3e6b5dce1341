//! Text views for people: the loop tree (`status`, `watch --snapshot`),
//! the inbox, past runs (`runs`) and their sums (`stats`). Colour only when
//! the caller says stdout is a terminal.

use super::history::{RunRow, Stats};
use super::{utc, Doing, Node, RunOutcome, View, Word};
use crate::engine::fmt_secs;
use crate::progress::clock;
use crate::terminal::line;

/// The header, the loop tree, totals and the next command.
pub fn tree(view: &View, title: &str, colour: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{title} · loop tree `{}` on branch {}\n",
        line(&view.root),
        line(&view.branch)
    ));
    out.push_str(&run_line(view));
    out.push('\n');
    let card_of = |id: &str| view.cards.iter().find(|c| c.card.loop_id == id);
    let mut runs = 0;
    let mut secs = 0.0;
    for node in view.nodes() {
        runs += node.state.runs;
        secs += node.state.agent_secs;
        let word = node.state.word;
        let mark = if colour {
            format!("\x1b[{}m{}\x1b[0m", word.colour(), word.mark())
        } else {
            word.mark().to_string()
        };
        let detail = detail(
            node,
            view.now,
            card_of(&node.id).map(|c| c.card.path.as_str()),
        );
        let line = format!(
            "{}{mark} {:<9}  {}{}",
            "  ".repeat(node.depth),
            word.as_str(),
            line(&node.id),
            if detail.is_empty() {
                String::new()
            } else {
                format!("  · {}", line(&detail))
            }
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "agent time: {} in {runs} run{}\n",
        fmt_secs(secs),
        if runs == 1 { "" } else { "s" }
    ));
    out.push_str(&format!("next: {}\n", line(&view.next())));
    out
}

/// One line on the latest run.
pub fn run_line(view: &View) -> String {
    let id = view.run_id.as_deref().unwrap_or("?");
    match view.outcome {
        RunOutcome::None => "no run recorded yet in this repository".into(),
        RunOutcome::Running => format!(
            "run {id}: running (pid {}) for {}",
            view.pid.map_or("?".into(), |p| p.to_string()),
            clock(view.secs.unwrap_or(0.0))
        ),
        outcome if view.ended => format!(
            "run {id}: {} (exit {}) after {}{}",
            outcome.as_str(),
            view.exit.unwrap_or(-1),
            fmt_secs(view.secs.unwrap_or(0.0)),
            view.started
                .map(|s| format!(", started {}", super::utc(s)))
                .unwrap_or_default()
        ),
        _ => format!(
            "run {id}: ended without a final event (killed?) after {}; {} resumes it",
            fmt_secs(view.secs.unwrap_or(0.0)),
            view.rerun_phrase()
        ),
    }
}

fn detail(node: &Node, now: f64, card: Option<&str>) -> String {
    let s = &node.state;
    let mut parts = Vec::new();
    match s.doing {
        Some(Doing::Agent) => parts.push(format!(
            "run {}{}: agent working {}",
            s.run.unwrap_or(s.runs),
            s.of.map(|o| format!("/{o}")).unwrap_or_default(),
            clock(now - s.since.unwrap_or(now))
        )),
        Some(Doing::Exam) => parts.push(format!(
            "exam running {}",
            clock(now - s.since.unwrap_or(now))
        )),
        Some(Doing::Commit) => parts.push("committing the attempt".into()),
        Some(Doing::Sleep) => parts.push(format!(
            "not yet; next check in {}",
            clock((s.next_check.unwrap_or(now) - now).max(0.0))
        )),
        None => {}
    }
    // A parallel child: which slot, and the branch it works on until it
    // is merged.
    if let Some(slot) = s.slot {
        parts.insert(
            0,
            match (&s.branch, s.word) {
                (Some(branch), w) if w != Word::Done => format!("slot {slot} on {branch}"),
                _ => format!("slot {slot}"),
            },
        );
    }
    if s.doing != Some(Doing::Agent) && (s.runs > 0 || node.budget_runs.is_some()) {
        // The allowance the latest agent ran under (answers refresh it)
        // outranks the manifest's cap: never "3/2 runs".
        parts.push(match s.of.max(node.budget_runs) {
            Some(cap) => format!("{}/{cap} runs", s.runs),
            None => format!("{} run{}", s.runs, if s.runs == 1 { "" } else { "s" }),
        });
    }
    if s.agent_secs > 0.0 {
        parts.push(format!("agent {}", fmt_secs(s.agent_secs)));
    }
    if s.word == Word::Gated {
        parts.push(format!(
            "{} of {} approvals",
            s.approvals.len(),
            s.needed.unwrap_or(1)
        ));
    }
    if matches!(s.word, Word::Blocked | Word::Gated) {
        if let Some(card) = card {
            parts.push(format!("card {card}"));
        }
    }
    parts.join(" · ")
}

/// Every blocked or gated loop with the exact command to answer it.
pub fn inbox(view: &View, colour: bool) -> String {
    if view.cards.is_empty() {
        return "inbox: nothing waiting on you\n".into();
    }
    let mut out = String::new();
    for card in &view.cards {
        let word = if card.gated {
            Word::Gated
        } else {
            Word::Blocked
        };
        let mark = if colour {
            format!("\x1b[{}m{}\x1b[0m", word.colour(), word.mark())
        } else {
            word.mark().to_string()
        };
        out.push_str(&format!(
            "{mark} {:<8} {}  · {}\n",
            word.as_str(),
            line(&card.card.loop_id),
            line(&card.card.path)
        ));
        out.push_str(&format!("    {}\n", line(&card.card.reason)));
        if card.gated {
            out.push_str(&format!(
                "    approvals: {} of {}{}\n",
                card.approvals.len(),
                card.needed.unwrap_or(1),
                if card.approvals.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", card.approvals.join(", "))
                }
            ));
        }
        if card.answered {
            out.push_str(&format!(
                "    answered: applies on the next {}\n",
                super::rerun_phrase(&card.rerun).replace(" again", "")
            ));
        } else {
            out.push_str(&format!("    next: {}\n", line(&card.next)));
            if card.gated {
                out.push_str(&format!(
                    "    (any other answer, e.g. `proctor answer {} \"not yet: ...\"`, is recorded as a rejection)\n",
                    card.card.loop_id
                ));
            } else {
                out.push_str(&format!("    then: {}\n", card.rerun));
            }
        }
    }
    out
}

/// Past runs, one row each, oldest first.
pub fn runs_table(rows: &[RunRow]) -> String {
    if rows.is_empty() {
        return "no run recorded yet in this repository\n".into();
    }
    let mut out = format!(
        "{:<9} {:<21} {:<16} {:<12} {:>4} {:>9} {:>8} {:>9}\n",
        "RUN", "STARTED", "LOOP TREE", "OUTCOME", "EXIT", "DURATION", "ATTEMPTS", "AGENT"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<9} {:<21} {:<16} {:<12} {:>4} {:>9} {:>8} {:>9}\n",
            row.run,
            utc(row.started),
            row.root,
            row.outcome,
            row.exit.map_or("-".into(), |e| e.to_string()),
            fmt_secs(row.secs),
            row.attempts,
            fmt_secs(row.agent_secs),
        ));
    }
    out
}

/// The sums over every recorded run.
pub fn stats_summary(s: &Stats) -> String {
    let since = match (s.first, s.last) {
        (Some(a), Some(b)) => format!(" · {} to {}", utc(a), utc(b)),
        _ => String::new(),
    };
    let mut out = format!("proctor stats{since}\n");
    out.push_str(&format!(
        "runs:              {} ({} closed, {} blocked, {} gated, {} interrupted, {} failed, {} running)\n",
        s.runs, s.closed, s.blocked, s.gated, s.interrupted, s.errors, s.running
    ));
    out.push_str(&format!(
        "attempts:          {} agent runs: {} verified by the exam, {} rejected\n",
        s.attempts, s.verified, s.rejected
    ));
    out.push_str(&format!(
        "cheats blocked:    {} (quarantined edits)\n",
        s.cheats_blocked
    ));
    out.push_str(&format!(
        "exams:             {} administered, {} in verifier containers\n",
        s.exams,
        fmt_secs(s.exam_secs)
    ));
    out.push_str(&format!("loops closed:      {}\n", s.loops_closed));
    out.push_str(&format!("agent time:        {}\n", fmt_secs(s.agent_secs)));
    out
}

#[cfg(test)]
pub(crate) mod pinned;
