//! Detaching `proctor run` from the terminal (a helper of `run`, not a verb).
//!
//! The run re-executes the same binary in a new session (`setsid`) with
//! SIGHUP ignored, stdin from `/dev/null` and its output appended to
//! `.proctor/runner.log`, so closing the terminal cannot end it. The parent
//! returns once the detached run holds the repository's lock (or has
//! already finished, in which case it shows what the run printed and
//! returns its exit code), then prints the pid and the follow-up commands.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::CommandError;
use crate::exit_codes;
use crate::state::{self, lock, Paths};
use crate::views::out::say;

/// How long the parent waits for the detached run to take the lock.
const START_WAIT: Duration = Duration::from_secs(120);

/// Whether a person is at a terminal: stdin and stderr are terminals, the
/// terminal is a real one, and this is not CI.
pub fn interactive() -> bool {
    let term = std::env::var("TERM").unwrap_or_default();
    is_interactive(
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        &term,
        std::env::var_os("CI").is_some(),
    )
}

/// Pure form of [`interactive`].
pub fn is_interactive(terminals: bool, term: &str, ci: bool) -> bool {
    terminals && !ci && !matches!(term, "" | "dumb" | "unknown")
}

/// `--bg` detaches; `--plain` stays; otherwise detach at a terminal.
pub fn should_detach(bg: bool, plain: bool, interactive: bool) -> bool {
    bg || (!plain && interactive)
}

/// The detached run's command line: the same request, in the foreground,
/// marked as the detached run. `file` is the manifest's absolute path when
/// one was given.
pub fn child_args(args: &super::run::Args, file: Option<&Path>) -> Vec<OsString> {
    let mut child: Vec<OsString> = vec!["run".into(), "--plain".into(), "--detached-child".into()];
    if let Some(file) = file {
        child.push("--file".into());
        child.push(file.into());
    }
    if let Some(agent) = &args.agent {
        child.push("--agent".into());
        child.push(agent.into());
    }
    if args.skip_if_running {
        child.push("--skip-if-running".into());
    }
    if let Some(root) = &args.root {
        child.push("--".into());
        child.push(root.into());
    }
    child
}

/// Starts the detached run with `args` (a `run` command line) from `cwd`.
/// Returns the exit code for the parent.
pub fn spawn(paths: &Paths, cwd: &Path, args: Vec<OsString>) -> Result<i32, CommandError> {
    let internal = |what: &str, e: std::io::Error| CommandError::Internal {
        message: format!("cannot {what}: {e}"),
    };
    let log_path = paths.state.join("runner.log");
    state::ensure_dir(&paths.state).map_err(|e| internal("create `.proctor`", e))?;
    let mut log =
        state::open_append(&log_path).map_err(|e| internal("open `.proctor/runner.log`", e))?;
    let offset = log.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = writeln!(
        log,
        "--- proctor run, detached at {} ---",
        crate::views::utc(state::now())
    );
    let out = log
        .try_clone()
        .map_err(|e| internal("open `.proctor/runner.log`", e))?;
    let exe = std::env::current_exe().map_err(|e| internal("find the proctor binary", e))?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(log));
    // SAFETY: setsid and signal are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| internal("start the detached run", e))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + START_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // Finished already (a green tree) or refused to start: what
                // it said is the answer.
                let mut text = String::new();
                if let Ok(mut file) = std::fs::File::open(&log_path) {
                    let _ = file.seek(SeekFrom::Start(offset));
                    let _ = file.read_to_string(&mut text);
                }
                let body: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.starts_with("--- proctor run, detached"))
                    .collect();
                crate::views::out::say_err!("{}", body.join("\n"));
                return Ok(status.code().unwrap_or(exit_codes::INTERNAL));
            }
            Ok(None) => {}
            Err(e) => return Err(internal("watch the detached run", e)),
        }
        if lock::holder(&paths.lock) == Some(pid) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    say!("proctor: detached: the run goes on in the background (pid {pid})");
    say!("  follow: proctor watch · status: proctor status · stop: proctor stop · output: .proctor/runner.log");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_detaches_only_at_a_terminal_unless_told() {
        assert!(should_detach(false, false, true));
        assert!(!should_detach(false, true, true));
        assert!(!should_detach(false, false, false));
        assert!(should_detach(true, false, false));
        assert!(is_interactive(true, "xterm-256color", false));
        assert!(!is_interactive(true, "dumb", false));
        assert!(!is_interactive(true, "xterm", true));
        assert!(!is_interactive(false, "xterm", false));
    }
}
