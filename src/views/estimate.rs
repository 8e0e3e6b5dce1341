//! `proctor estimate`: what past runs say a loop will cost. A pure
//! projection of the events file (plus the exam commands the caller found
//! for the loops it names); no I/O here.
//!
//! Per loop: its past closes (runs used, and wall time from the loop's
//! first event after its previous close to the close: median and worst),
//! how often it blocked, and its agent time. A loop with no history gets
//! the loops whose exam commands are most alike, with theirs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::engine::events::{Event, Record};
use crate::terminal::line;

/// What the history says about one loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub closes: u32,
    /// Runs used per close (a loop green at its first check used 0).
    pub runs_median: Option<f64>,
    pub runs_worst: Option<u32>,
    /// Seconds from the loop's first event after its previous close to
    /// its close (across resumes and waits for answers).
    pub wall_median_secs: Option<f64>,
    pub wall_worst_secs: Option<f64>,
    /// Blocked cards (budget ran out, merge conflict).
    pub blocked: u32,
    /// `blocked / (closes + blocked)`.
    pub blocked_rate: Option<f64>,
    pub agent_runs: u32,
    pub agent_secs: f64,
}

/// A loop of the history whose exam looks like another's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nearest {
    pub loop_id: String,
    pub exam: String,
    /// Shared words over all words of the two commands (0..1).
    pub alike: f64,
    pub summary: Summary,
}

/// The estimate of one loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoopEstimate {
    pub loop_id: String,
    pub exam: Option<String>,
    /// `None` when the loop has no history.
    pub history: Option<Summary>,
    /// For a loop with no history: the nearest loops by exam command.
    pub nearest: Vec<Nearest>,
}

#[derive(Default)]
struct Tally {
    closes: Vec<(u32, f64)>,
    /// The commits of its closes: a run started again on a closed branch
    /// closes the loop again on the same commit, which is not a new close.
    closed_on: BTreeSet<String>,
    blocked: u32,
    agent_runs: u32,
    agent_secs: f64,
    /// The seconds the episode since the previous close spent in runs that
    /// ended (a run's share: its first to its last event of the loop).
    spent: f64,
    /// The current run's share: its run id, first and last event.
    segment: Option<(String, f64, f64)>,
}

impl Tally {
    /// Notes an event of the loop at `ts` in run `run`; the time between
    /// runs (a killed run's restart, a blocked loop waiting for its
    /// answer) is not the loop's.
    fn at(&mut self, run: &str, ts: f64) {
        match &mut self.segment {
            Some((id, _, last)) if id == run => *last = last.max(ts),
            segment => {
                if let Some((_, first, last)) = segment.take() {
                    self.spent += (last - first).max(0.0);
                }
                *segment = Some((run.to_string(), ts, ts));
            }
        }
    }

    /// The episode's wall time so far, then a fresh episode.
    fn close_episode(&mut self) -> f64 {
        let current = self
            .segment
            .take()
            .map(|(_, first, last)| (last - first).max(0.0))
            .unwrap_or(0.0);
        std::mem::take(&mut self.spent) + current
    }
}

fn loop_of(event: &Event) -> Option<&str> {
    Some(match event {
        Event::CheckStart { loop_id, .. }
        | Event::CheckResult { loop_id, .. }
        | Event::AgentStart { loop_id, .. }
        | Event::AgentEnd { loop_id, .. }
        | Event::Commit { loop_id, .. }
        | Event::Wait { loop_id, .. }
        | Event::Card { loop_id, .. }
        | Event::Close { loop_id, .. } => loop_id,
        _ => return None,
    })
}

/// Each loop's history in `records` (file order), by id.
fn tallies(records: &[Record]) -> BTreeMap<String, Tally> {
    let mut out: BTreeMap<String, Tally> = BTreeMap::new();
    for record in records {
        let Some(id) = loop_of(&record.event) else {
            continue;
        };
        let tally = out.entry(id.to_string()).or_default();
        match &record.event {
            Event::Close { runs, commit, .. } => {
                if tally.closed_on.insert(commit.clone()) {
                    tally.at(&record.run, record.ts);
                    let wall = tally.close_episode();
                    tally.closes.push((*runs, wall));
                } else {
                    tally.close_episode();
                }
                continue;
            }
            Event::AgentEnd { secs, .. } => {
                tally.agent_runs += 1;
                tally.agent_secs += secs;
            }
            Event::Card { kind, .. } if kind == "blocked" => tally.blocked += 1,
            _ => {}
        }
        tally.at(&record.run, record.ts);
    }
    out
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn summary(t: &Tally) -> Summary {
    let runs: Vec<f64> = t.closes.iter().map(|(r, _)| f64::from(*r)).collect();
    let walls: Vec<f64> = t.closes.iter().map(|(_, w)| *w).collect();
    let closes = t.closes.len() as u32;
    let attempts = closes + t.blocked;
    Summary {
        closes,
        runs_median: median(runs),
        runs_worst: t.closes.iter().map(|(r, _)| *r).max(),
        wall_median_secs: median(walls.clone()),
        wall_worst_secs: walls.into_iter().reduce(f64::max),
        blocked: t.blocked,
        blocked_rate: (attempts > 0).then(|| f64::from(t.blocked) / f64::from(attempts)),
        agent_runs: t.agent_runs,
        agent_secs: t.agent_secs,
    }
}

/// The words of a command, for likeness: split at blanks and the shell's
/// punctuation, lowercased.
fn words(command: &str) -> BTreeSet<String> {
    command
        .split(|c: char| c.is_whitespace() || ";&|()<>'\"`=".contains(c))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Shared words over all words (Jaccard).
fn alike(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    let all = a.union(&b).count();
    if all == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / all as f64
}

/// How many nearest loops a loop with no history gets.
const NEAREST: usize = 3;

/// The estimate of each loop in `wanted` (id, exam command), or of every
/// loop in the history when `wanted` is `None`. `exams` names the exam
/// command of loops of the history, where known (for likeness).
pub fn estimate(
    records: &[Record],
    wanted: Option<&[(String, String)]>,
    exams: &BTreeMap<String, String>,
) -> Vec<LoopEstimate> {
    let tallies = tallies(records);
    let has_history = |t: &Tally| !t.closes.is_empty() || t.blocked > 0 || t.agent_runs > 0;
    let Some(wanted) = wanted else {
        return tallies
            .iter()
            .filter(|(_, t)| has_history(t))
            .map(|(id, t)| LoopEstimate {
                loop_id: id.clone(),
                exam: exams.get(id).cloned(),
                history: Some(summary(t)),
                nearest: Vec::new(),
            })
            .collect();
    };
    wanted
        .iter()
        .map(
            |(id, exam)| match tallies.get(id).filter(|t| has_history(t)) {
                Some(t) => LoopEstimate {
                    loop_id: id.clone(),
                    exam: Some(exam.clone()),
                    history: Some(summary(t)),
                    nearest: Vec::new(),
                },
                None => {
                    let mut nearest: Vec<Nearest> = tallies
                        .iter()
                        .filter(|(other, t)| *other != id && has_history(t))
                        .filter_map(|(other, t)| {
                            let their = exams.get(other)?;
                            let score = alike(exam, their);
                            (score > 0.0).then(|| Nearest {
                                loop_id: other.clone(),
                                exam: their.clone(),
                                alike: score,
                                summary: summary(t),
                            })
                        })
                        .collect();
                    nearest.sort_by(|a, b| {
                        b.alike.total_cmp(&a.alike).then(a.loop_id.cmp(&b.loop_id))
                    });
                    nearest.truncate(NEAREST);
                    LoopEstimate {
                        loop_id: id.clone(),
                        exam: Some(exam.clone()),
                        history: None,
                        nearest,
                    }
                }
            },
        )
        .collect()
}

/// A summary in one line for people.
pub fn summary_line(s: &Summary) -> String {
    use crate::engine::fmt_secs;
    let mut parts = Vec::new();
    if s.closes == 0 {
        parts.push("never closed".to_string());
    } else {
        parts.push(format!(
            "{} close{}: runs median {}, worst {}; wall median {}, worst {}",
            s.closes,
            if s.closes == 1 { "" } else { "s" },
            s.runs_median.map(number).unwrap_or_default(),
            s.runs_worst.unwrap_or(0),
            s.wall_median_secs.map(fmt_secs).unwrap_or_default(),
            s.wall_worst_secs.map(fmt_secs).unwrap_or_default(),
        ));
    }
    if let Some(rate) = s.blocked_rate {
        parts.push(format!(
            "blocked {} of {} ({:.0}%)",
            s.blocked,
            s.closes + s.blocked,
            rate * 100.0
        ));
    }
    parts.push(format!(
        "agent time {} in {} run{}",
        fmt_secs(s.agent_secs),
        s.agent_runs,
        if s.agent_runs == 1 { "" } else { "s" }
    ));
    parts.join("; ")
}

/// The estimate for people, a loop per paragraph. Loop ids and exams come
/// from the events file and past manifests, which an agent's commits can
/// reach: escaped like any agent text.
pub fn render(loops: &[LoopEstimate]) -> String {
    if loops.is_empty() {
        return "no history: no loop has run in this repository yet (`.proctor/events.jsonl`)\n"
            .to_string();
    }
    let mut out = String::new();
    for l in loops {
        let id = line(&l.loop_id);
        let exam = l
            .exam
            .as_deref()
            .map(|e| format!(" (exam `{}`)", line(e)))
            .unwrap_or_default();
        match &l.history {
            Some(s) => {
                out.push_str(&format!("loop `{id}`{exam}\n  {}\n", summary_line(s)));
            }
            None if l.nearest.is_empty() => out.push_str(&format!(
                "loop `{id}`{exam}: no history, and no past loop has a like exam\n"
            )),
            None => {
                out.push_str(&format!(
                    "loop `{id}`{exam}: no history; nearest past loops by exam command:\n"
                ));
                for n in &l.nearest {
                    out.push_str(&format!(
                        "  `{}` (`{}`, {:.0}% alike): {}\n",
                        line(&n.loop_id),
                        line(&n.exam),
                        n.alike * 100.0,
                        summary_line(&n.summary)
                    ));
                }
            }
        }
    }
    out
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::{Phase, EVENTS_VERSION};

    fn rec(ts: f64, event: Event) -> Record {
        Record {
            v: EVENTS_VERSION,
            ts,
            run: "r1".into(),
            event,
        }
    }

    fn in_run(run: &str, mut record: Record) -> Record {
        record.run = run.into();
        record
    }

    fn check(ts: f64, id: &str) -> Record {
        rec(
            ts,
            Event::CheckStart {
                loop_id: id.into(),
                phase: Phase::Precheck,
                commit: "c".into(),
            },
        )
    }

    fn agent(ts: f64, id: &str, secs: f64) -> Record {
        rec(
            ts,
            Event::AgentEnd {
                loop_id: id.into(),
                run: 1,
                exit: 0,
                timed_out: false,
                secs,
                edits: true,
                container: "x".into(),
                image: "i".into(),
            },
        )
    }

    fn close(ts: f64, id: &str, runs: u32) -> Record {
        rec(
            ts,
            Event::Close {
                loop_id: id.into(),
                runs,
                // A loop closes on a new commit unless nothing changed.
                commit: format!("{id}-{runs}"),
            },
        )
    }

    fn blocked(ts: f64, id: &str) -> Record {
        rec(
            ts,
            Event::Card {
                loop_id: id.into(),
                kind: "blocked".into(),
                path: "INBOX/x.md".into(),
                reason: "budget".into(),
            },
        )
    }

    fn history() -> Vec<Record> {
        vec![
            // fix: closes after 2 runs in 100 s, then blocks, then closes
            // after 5 runs 300 s after its next start.
            check(1000.0, "fix"),
            agent(1010.0, "fix", 30.0),
            agent(1050.0, "fix", 40.0),
            close(1100.0, "fix", 2),
            check(2000.0, "fix"),
            agent(2100.0, "fix", 50.0),
            blocked(2200.0, "fix"),
            close(2300.0, "fix", 5),
            check(3000.0, "green"),
            close(3001.0, "green", 0),
        ]
    }

    #[test]
    fn a_loop_s_closes_give_median_and_worst() {
        let exams = BTreeMap::from([("fix".to_string(), "cargo test -p parser".to_string())]);
        let all = estimate(&history(), None, &exams);
        let fix = all.iter().find(|l| l.loop_id == "fix").unwrap();
        let s = fix.history.as_ref().unwrap();
        assert_eq!(s.closes, 2);
        assert_eq!(s.runs_median, Some(3.5));
        assert_eq!(s.runs_worst, Some(5));
        assert_eq!(s.wall_median_secs, Some(200.0));
        assert_eq!(s.wall_worst_secs, Some(300.0));
        assert_eq!(s.blocked, 1);
        assert_eq!(s.blocked_rate, Some(1.0 / 3.0));
        assert_eq!(s.agent_runs, 3);
        assert_eq!(s.agent_secs, 120.0);
        assert_eq!(
            summary_line(s),
            "2 closes: runs median 3.5, worst 5; wall median 3m20s, worst 5m00s; blocked 1 of 3 (33%); agent time 2m00s in 3 runs"
        );
    }

    #[test]
    fn a_new_loop_gets_the_nearest_by_exam_command() {
        let exams = BTreeMap::from([
            ("fix".to_string(), "cargo test -p parser".to_string()),
            ("green".to_string(), "npm test".to_string()),
        ]);
        let wanted = vec![("lexer".to_string(), "cargo test -p lexer".to_string())];
        let out = estimate(&history(), Some(&wanted), &exams);
        assert_eq!(out.len(), 1);
        assert!(out[0].history.is_none());
        let ids: Vec<&str> = out[0].nearest.iter().map(|n| n.loop_id.as_str()).collect();
        assert_eq!(ids, ["fix", "green"], "most alike first");
        assert_eq!(out[0].nearest[0].alike, 3.0 / 5.0);
    }

    #[test]
    fn the_time_between_runs_is_not_the_loop_s() {
        // Killed after 100 s; the next run, a day later, closes it in 50 s.
        let records = vec![
            in_run("r1", check(1000.0, "fix")),
            in_run("r1", agent(1100.0, "fix", 90.0)),
            in_run("r2", check(87_400.0, "fix")),
            in_run("r2", agent(87_440.0, "fix", 35.0)),
            in_run("r2", close(87_450.0, "fix", 2)),
        ];
        let all = estimate(&records, None, &BTreeMap::new());
        let s = all[0].history.as_ref().unwrap();
        assert_eq!(s.closes, 1);
        assert_eq!(s.wall_worst_secs, Some(150.0));
        assert_eq!(s.agent_secs, 125.0);
    }

    #[test]
    fn a_run_again_on_a_closed_branch_is_not_a_second_close() {
        let mut records = history();
        // `proctor run` again before `land`: green at once, same commit.
        records.push(in_run("r2", check(9000.0, "green")));
        records.push(in_run("r2", close(9001.0, "green", 0)));
        let all = estimate(&records, None, &BTreeMap::new());
        let green = all.iter().find(|l| l.loop_id == "green").unwrap();
        assert_eq!(green.history.as_ref().unwrap().closes, 1);
    }

    #[test]
    fn no_history_and_nothing_alike_gives_no_nearest() {
        let exams = BTreeMap::from([("fix".to_string(), "cargo test".to_string())]);
        let wanted = vec![("new".to_string(), "make check".to_string())];
        let out = estimate(&history(), Some(&wanted), &exams);
        assert!(out[0].history.is_none());
        assert!(out[0].nearest.is_empty());
        assert!(estimate(&[], None, &exams).is_empty());
    }

    /// The pinned history of the text views (two finished runs and a live
    /// one, as recorded in an events file) against its manifest.
    #[test]
    fn the_recorded_history_of_the_views() {
        use crate::views::text::pinned::{manifest, RUN_1, RUN_2, RUN_3};
        let records = crate::engine::events::parse(&[RUN_1, RUN_2, RUN_3].concat());
        let m = manifest();
        let wanted: Vec<(String, String)> = m
            .root
            .walk(crate::manifest::Order::ParentsFirst)
            .into_iter()
            .map(|l| (l.id.clone(), l.done_when.clone()))
            .collect();
        let exams: BTreeMap<String, String> = wanted.iter().cloned().collect();
        let out = estimate(&records, Some(&wanted), &exams);
        let docs = out.iter().find(|l| l.loop_id == "docs").unwrap();
        let s = docs.history.as_ref().unwrap();
        // Blocked in run 1 after 62 s, closed in run 2 after 80.5 s more;
        // the hour between the runs is not counted.
        assert_eq!((s.closes, s.runs_worst, s.blocked), (1, Some(3), 1));
        assert_eq!(s.wall_worst_secs, Some(142.5));
        assert_eq!(s.agent_secs, 125.0);
        // `fix-tests` is at work again in the live run: one close so far.
        let fix = out.iter().find(|l| l.loop_id == "fix-tests").unwrap();
        assert_eq!(fix.history.as_ref().unwrap().closes, 1);
        // The root never closed nor ran an agent: no history of its own.
        let release = out.iter().find(|l| l.loop_id == "release").unwrap();
        assert!(release.history.is_none());
        insta::assert_snapshot!(render(&out));
        let json = serde_json::json!({ "loops": out });
        assert_eq!(json["loops"][0]["nearest"][0]["loop_id"], "docs");
    }

    #[test]
    fn loop_ids_and_exams_are_escaped() {
        let records = vec![close(1.0, "a\u{1b}[2Jb", 0)];
        let exams = BTreeMap::from([("a\u{1b}[2Jb".to_string(), "sh\rx".to_string())]);
        let text = render(&estimate(&records, None, &exams));
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }
}
