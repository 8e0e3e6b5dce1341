//! `proctor audit`: the full trail of a run, from `.proctor/events.jsonl`.

use super::CommandError;
use crate::engine::events::{self, Event, Record, Verdict};
use crate::git::GitRepo;
use crate::render::human_line;
use crate::state::Paths;

/// Print the full trail of a run (the latest by default) from the events
/// file: every check, attempt, commit and card, then the boundary's
/// decisions (quarantines, allow-list violations, repaired state, test
/// audits, rejected attempts).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run id (or a prefix of it); `all` for every run.
    pub run: Option<String>,
    /// Print the run's events as JSON lines, exactly as recorded.
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_audit(args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    let records = events::read(&paths.events);
    if records.is_empty() {
        return Err(CommandError::hint(
            "no events recorded in this repository",
            "start a run with `proctor run` or `proctor once`",
        ));
    }
    let runs = run_ids(&records);
    let chosen: Vec<String> = match args.run.as_deref() {
        Some("all") => runs.clone(),
        Some(prefix) => {
            let hits: Vec<String> = runs
                .iter()
                .filter(|r| r.starts_with(prefix))
                .cloned()
                .collect();
            match hits.len() {
                1 => hits,
                0 => {
                    return Err(CommandError::hint(
                        format!("no run `{prefix}` in `.proctor/events.jsonl`"),
                        format!("recorded runs: {}", runs.join(", ")),
                    ))
                }
                _ => {
                    return Err(CommandError::user(format!(
                        "`{prefix}` matches runs {}",
                        hits.join(", ")
                    )))
                }
            }
        }
        None => runs.last().cloned().into_iter().collect(),
    };
    for run in &chosen {
        let trail: Vec<&Record> = records.iter().filter(|r| &r.run == run).collect();
        if args.json {
            for r in trail {
                crate::views::out::say!("{}", serde_json::to_string(r).unwrap_or_default());
            }
        } else {
            crate::views::out::say_raw!("{}", render_trail(run, &trail));
        }
    }
    Ok(0)
}

/// Run ids in the order they first appear.
fn run_ids(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        if !out.contains(&r.run) {
            out.push(r.run.clone());
        }
    }
    out
}

/// The human trail of one run.
pub fn render_trail(run: &str, trail: &[&Record]) -> String {
    let start = trail.first().map(|r| r.ts).unwrap_or(0.0);
    let mut out = format!(
        "proctor audit · run {} · started {}\n",
        crate::terminal::line(run),
        utc(start)
    );
    for r in trail {
        if let Some(line) = human_line(&r.event) {
            let line = line.strip_prefix("proctor: ").unwrap_or(&line).to_string();
            out.push_str(&format!("  +{:>7.1}s  {line}\n", r.ts - start));
        }
    }
    let decisions = boundary_decisions(trail);
    out.push_str("boundary decisions:\n");
    if decisions.is_empty() {
        out.push_str("  - none: nothing was quarantined, repaired or rejected\n");
    }
    for d in decisions {
        out.push_str(&format!("  - {}\n", crate::terminal::line(&d)));
    }
    out
}

/// Every decision the boundary took in a run, one sentence each.
pub fn boundary_decisions(trail: &[&Record]) -> Vec<String> {
    let mut out = Vec::new();
    for r in trail {
        match &r.event {
            Event::Quarantine {
                loop_id,
                run,
                phase,
                id,
                files,
                commit,
                ..
            } => {
                let list: Vec<String> = files
                    .iter()
                    .map(|f| format!("`{}` ({}; {})", f.path, f.change.as_str(), f.rule))
                    .collect();
                out.push(format!(
                    "loop `{loop_id}`{}: quarantined {} at the `{phase}` check (record `{id}`){}",
                    if *run > 0 {
                        format!(", run {run}")
                    } else {
                        String::new()
                    },
                    list.join(", "),
                    commit
                        .as_ref()
                        .map(|c| format!(
                            "; trusted copies committed as {}",
                            crate::engine::short(c)
                        ))
                        .unwrap_or_default()
                ));
            }
            Event::Repaired { path, was } => {
                out.push(format!("repaired `{path}`: it was {was}"));
            }
            Event::Judged {
                loop_id,
                pass: false,
                reason,
                commit,
                ..
            } => out.push(format!(
                "loop `{loop_id}`: the judge vetoed the pass on {}: {}",
                crate::engine::short(commit),
                reason.lines().next().unwrap_or("")
            )),
            Event::TestAudit {
                loop_id,
                passed: false,
                reason,
                commit,
                ..
            } => out.push(format!(
                "loop `{loop_id}`: the test-count audit failed on {}: {}",
                crate::engine::short(commit),
                reason.as_deref().unwrap_or("see the event")
            )),
            Event::CheckResult {
                loop_id,
                phase: events::Phase::Verify | events::Phase::Confirm,
                verdict: Verdict::Fail,
                exit,
                commit,
                reason,
                ..
            } => out.push(format!(
                "loop `{loop_id}`: attempt at {} rejected: {}",
                crate::engine::short(commit),
                reason
                    .clone()
                    .unwrap_or_else(|| format!("the exam exited {exit}"))
            )),
            _ => {}
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix seconds.
pub fn utc(ts: f64) -> String {
    let secs = ts.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000.5), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn the_trail_of_a_blocked_run() {
        let records = events::parse(crate::views::text::pinned::RUN_1);
        let trail: Vec<&Record> = records.iter().collect();
        insta::assert_snapshot!(render_trail(&records[0].run, &trail));
    }

    #[test]
    fn the_trail_of_a_run_the_boundary_never_touched() {
        let records = events::parse(crate::views::text::pinned::RUN_1);
        let trail: Vec<&Record> = records
            .iter()
            .filter(|r| {
                !matches!(
                    r.event,
                    Event::Quarantine { .. } | Event::CheckResult { .. }
                )
            })
            .collect();
        insta::assert_snapshot!(render_trail(&records[0].run, &trail));
    }
}
