//! `proctor logs`: a loop's last agent or exam output. Read-only.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::CommandError;
use crate::git::GitRepo;
use crate::state::Paths;
use crate::views::out::print_out;

/// Print a loop's last output: the newest log of its agent or its exam
/// (`.proctor/logs/<loop>.run<N>.log` and `<loop>.run<N>.exam.log`, the
/// exam of run N being the one on that run's commit; run 0's is the first
/// check). With RUN, that run's agent log, then its exam's. The file's
/// path goes to stderr, the output itself to stdout.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The loop's id (`proctor status` names them).
    #[arg(value_name = "LOOP")]
    pub loop_id: String,
    /// A run number (default: the newest log).
    pub run: Option<u32>,
    /// Only the exam's output.
    #[arg(long, conflicts_with = "agent")]
    pub exam: bool,
    /// Only the agent's output.
    #[arg(long)]
    pub agent: bool,
}

/// One log file of a loop.
#[derive(Debug, PartialEq, Eq)]
struct Log {
    path: PathBuf,
    run: Option<u32>,
    exam: bool,
}

/// What a log's file name says, for loop `id`: `None` when it is another
/// loop's (an id may be another's prefix: `a` and `a.b` are told apart by
/// the `.run` that must follow).
fn parse_name(id: &str, name: &str) -> Option<(Option<u32>, bool)> {
    let rest = name.strip_prefix(id)?.strip_prefix('.')?;
    if rest == "baseline.exam.log" {
        return Some((None, true));
    }
    let rest = rest.strip_prefix("run")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let run = digits.parse().ok()?;
    match &rest[digits.len()..] {
        ".log" | ".interrupted.log" => Some((Some(run), false)),
        ".exam.log" => Some((Some(run), true)),
        _ => None,
    }
}

fn logs_of(dir: &Path, id: &str) -> Vec<(Log, SystemTime)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut logs: Vec<(Log, SystemTime)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let (run, exam) = parse_name(id, &name)?;
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            meta.is_file().then(|| {
                (
                    Log {
                        path: e.path(),
                        run,
                        exam,
                    },
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                )
            })
        })
        .collect();
    logs.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.path.cmp(&b.0.path)));
    logs
}

pub fn cmd_logs(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let paths = Paths::new(git.root());
    let wanted = |log: &Log| (!args.exam || log.exam) && (!args.agent || !log.exam);
    let logs: Vec<Log> = logs_of(&paths.logs, &args.loop_id)
        .into_iter()
        .map(|(log, _)| log)
        .filter(|l| wanted(l))
        .collect();
    let chosen: Vec<&Log> = match args.run {
        Some(run) => {
            let mut of_run: Vec<&Log> = logs.iter().filter(|l| l.run == Some(run)).collect();
            // The agent's output first, then what the exam said of it.
            of_run.sort_by_key(|l| l.exam);
            of_run
        }
        None => logs.last().into_iter().collect(),
    };
    if chosen.is_empty() {
        let what = match args.run {
            Some(run) => format!("run {run} of loop `{}`", args.loop_id),
            None => format!("loop `{}`", args.loop_id),
        };
        return Err(CommandError::hint(
            format!("no logs of {what} in `{}`", paths.rel(&paths.logs)),
            "`proctor status` names the loops and their runs",
        ));
    }
    for log in chosen {
        let text = std::fs::read(&log.path).map_err(|e| {
            CommandError::user(format!("cannot read `{}`: {e}", log.path.display()))
        })?;
        crate::views::out::say_err!(
            "── {} ({}) ──",
            paths.rel(&log.path),
            if log.exam { "exam" } else { "agent" }
        );
        // Agent and exam output: escaped, so it cannot drive the terminal.
        print_out(&crate::terminal::text(&String::from_utf8_lossy(&text)));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_say_their_run_and_kind() {
        assert_eq!(parse_name("fix", "fix.run3.log"), Some((Some(3), false)));
        assert_eq!(
            parse_name("fix", "fix.run0.exam.log"),
            Some((Some(0), true))
        );
        assert_eq!(
            parse_name("fix", "fix.run2.interrupted.log"),
            Some((Some(2), false))
        );
        assert_eq!(
            parse_name("fix", "fix.baseline.exam.log"),
            Some((None, true))
        );
        assert_eq!(parse_name("fix", "fix-two.run1.log"), None);
        assert_eq!(parse_name("a", "a.b.run1.log"), None);
        assert_eq!(parse_name("fix", "fix.run.log"), None);
    }
}
