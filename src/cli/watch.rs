//! `proctor watch`: follow the live run of this repository, or print one
//! picture of it. Read-only: it reads the events file and never runs an
//! exam, so watching cannot disturb a run.

use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::CommandError;
use crate::engine::events::{Event, Record};
use crate::exit_codes;
use crate::progress::Progress;
use crate::render::{colourise, human_line};
use crate::state::{lock, Paths};
use crate::terminal::{self, stdout_colour};
use crate::views::out::{print_json, print_out};
use crate::views::{denoise, json, text, ManifestFile, View};

const POLL: Duration = Duration::from_millis(200);

/// Follow the run of this repository as it happens (the active loop, run
/// N of M, elapsed time, what it waits on), starting from the beginning of
/// the latest run; exits with that run's exit code when it ends.
/// `--snapshot` prints the loop tree once; `--json` prints the stable JSON
/// shape once (see the README); `--filter LOG` prints a log de-noised.
/// Read-only: no exam is run.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the loop tree once and exit 0.
    #[arg(long)]
    pub snapshot: bool,
    /// Print the state once as JSON (root, outcome, exit, ended, branch,
    /// tree, cards) and exit 0.
    #[arg(long)]
    pub json: bool,
    /// Print the log file LOG (`-`: standard input) with every block of
    /// lines repeated back to back shown once and its count (`×N`); a log
    /// without repeats prints unchanged. E.g. `.proctor/logs/<loop>.run3.log`.
    #[arg(long, value_name = "LOG", conflicts_with_all = ["snapshot", "json"])]
    pub filter: Option<PathBuf>,
    #[command(flatten)]
    pub manifest: ManifestFile,
}

/// `--filter LOG`: the de-noised log, escaped (an agent or the code under
/// test wrote it).
fn filter(log: &Path) -> Result<i32, CommandError> {
    let bytes = if log == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
            CommandError::user(format!("--filter: cannot read standard input: {e}"))
        })?;
        bytes
    } else {
        std::fs::read(log).map_err(|e| {
            CommandError::hint(
                format!("--filter: cannot read `{}`: {e}", log.display()),
                "the logs of a run are in `.proctor/logs/` (`proctor logs LOOP` names the latest)",
            )
        })?
    };
    let text = String::from_utf8_lossy(&bytes);
    print_out(&terminal::text(&denoise::collapse(&text)));
    Ok(0)
}

pub fn cmd_watch(args: Args) -> Result<i32, CommandError> {
    if let Some(log) = &args.filter {
        return filter(log);
    }
    let ctx = args.manifest.context(&super::cwd()?)?;
    if args.json {
        print_json(&json::to_json(&View::build(&ctx)));
        return Ok(0);
    }
    if args.snapshot {
        let view = View::build(&ctx);
        print_out(&text::tree(
            &view,
            "proctor watch · replayed from events (no exam re-run)",
            stdout_colour(),
        ));
        return Ok(0);
    }
    follow(&ctx.paths)
}

/// Lines of the events file with the byte offset just past each.
fn read_from(path: &Path, offset: u64) -> (Vec<(Record, u64)>, u64) {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.seek(SeekFrom::Start(offset));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let mut out = Vec::new();
    let mut at = offset;
    let mut consumed = offset;
    for piece in text.split_inclusive('\n') {
        at += piece.len() as u64;
        if !piece.ends_with('\n') {
            // A line still being written: read it next time.
            break;
        }
        consumed = at;
        if let Ok(record) = serde_json::from_str::<Record>(piece.trim()) {
            out.push((record, at));
        }
    }
    (out, consumed)
}

fn follow(paths: &Paths) -> Result<i32, CommandError> {
    let colour = stdout_colour();
    // The progress line goes to stderr and the event lines with it, so
    // both streams must be the terminal.
    let progress = terminal::live_progress(
        std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
        terminal::is_ci(),
    )
    .then(Progress::new);
    let _ticker = progress.as_ref().map(|p| p.start_ticker());
    let show = |record: &Record| {
        if let Some(p) = &progress {
            p.observe(record);
        }
        if let Some(line) = human_line(&record.event) {
            let line = if colour {
                colourise(&record.event, line)
            } else {
                line
            };
            match &progress {
                Some(p) => p.print_line(&line),
                None => print_out(&format!("{line}\n")),
            }
        }
    };

    // Find the run to follow: the latest one, or the one taking the lock.
    let (run, pid, mut offset) = loop {
        let (records, end) = read_from(&paths.events, 0);
        let latest = records
            .iter()
            .rposition(|(r, _)| matches!(r.event, Event::RunStart { .. }));
        let holder = lock::holder(&paths.lock);
        let started = latest.map(|i| {
            let (record, _) = &records[i];
            let pid = match record.event {
                Event::RunStart { pid, .. } => pid as i32,
                _ => 0,
            };
            (i, record.run.clone(), pid)
        });
        match (started, holder) {
            (Some((_, _, pid)), Some(h)) if pid != h => {} // a new run is starting
            (None, Some(_)) => {}
            (None, None) => {
                print_out("no run recorded yet in this repository; start one with `proctor run`\n");
                return Ok(0);
            }
            (Some((i, run, pid)), _) => {
                for (record, _) in &records[i..] {
                    if record.run == run {
                        show(record);
                        if let Event::RunEnd { exit, .. } = record.event {
                            return Ok(exit);
                        }
                    }
                }
                break (run, pid, end);
            }
        }
        std::thread::sleep(POLL);
    };

    loop {
        let alive = lock::holder(&paths.lock) == Some(pid);
        let (records, end) = read_from(&paths.events, offset);
        offset = end;
        for (record, _) in &records {
            if record.run != run {
                continue;
            }
            show(record);
            if let Event::RunEnd { exit, .. } = record.event {
                return Ok(exit);
            }
        }
        if !alive && records.is_empty() {
            let line = format!(
                "proctor: the run (pid {pid}) ended without a final event (killed?); `proctor run` resumes it"
            );
            match &progress {
                Some(p) => p.print_line(&line),
                None => print_out(&format!("{line}\n")),
            }
            return Ok(exit_codes::INTERRUPTED);
        }
        std::thread::sleep(POLL);
    }
}
