//! The `on_halt` notifier: the operator's own command, run on the host (with
//! `sh -c`) when a loop blocks or gates, so a person is called back only when
//! needed. It gets `PROCTOR_LOOP`, `PROCTOR_REASON` (`blocked` or `gated`)
//! and `PROCTOR_CARD` (the card's absolute path) in its environment, runs at
//! most [`TIMEOUT`], and its output goes to `.proctor/logs/on_halt.log`. A
//! failing notifier is reported and never changes the run's outcome.
//!
//! The host never runs a command an agent could have written. The command is
//! taken from `.proctor/config.yaml` as committed at the run's base commit
//! (the user's own commit, before any agent ran), never from the working
//! tree, which every agent can write.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine::events::Event;
use crate::git::{GitRepo, Oid};
use crate::manifest::{self, Config, CONFIG_PATH};
use crate::state;

/// How long a notifier may run before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Which notifier a run may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// No `on_halt` is configured.
    None,
    /// This command, from the committed config at the base commit.
    Use(String),
    /// The working tree asks for a notifier the base commit does not hold;
    /// it is not run, for this reason.
    Refused(String),
}

/// Decides the notifier from the config committed at `base`, compared with
/// the working tree's `working` config.
pub fn trusted(git: &GitRepo, base: Oid, working: &Config) -> Trust {
    let committed = git
        .read_blob_at(base, CONFIG_PATH)
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| manifest::parse_config(&text, Path::new(CONFIG_PATH)).ok())
        .and_then(|config| config.on_halt);
    match (committed, &working.on_halt) {
        (Some(command), _) => Trust::Use(command),
        (None, Some(_)) => Trust::Refused(format!(
            "`on_halt` in `{CONFIG_PATH}` is not in the config committed at the run's base commit {}, so it is not run (an agent can write the working tree); commit the config on your branch",
            &base.to_string()[..12]
        )),
        (None, None) => Trust::None,
    }
}

/// Runs the trusted notifier for a halted loop (or records why it was not
/// run) and emits a `notify` event; it never changes the run's outcome.
pub fn on_halt(
    emit: &mut dyn FnMut(Event),
    trust: &Trust,
    paths: &state::Paths,
    loop_id: &str,
    reason: &str,
) {
    let fired = match trust {
        Trust::None => return,
        Trust::Refused(why) => Fired {
            exit: None,
            secs: 0.0,
            error: Some(why.clone()),
        },
        Trust::Use(command) => fire(
            command,
            &paths.root,
            loop_id,
            reason,
            &paths.card_for(loop_id),
            &log_path(paths),
            TIMEOUT,
        ),
    };
    emit(Event::Notify {
        loop_id: loop_id.to_string(),
        reason: reason.to_string(),
        exit: fired.exit,
        secs: fired.secs,
        error: fired.error,
    });
}

/// What happened when the notifier ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub exit: Option<i32>,
    pub secs: f64,
    pub error: Option<String>,
}

/// Runs `command` with the loop's facts in its environment and waits for
/// it, at most `timeout`. Never fails: problems are in the result.
pub fn fire(
    command: &str,
    root: &Path,
    loop_id: &str,
    reason: &str,
    card: &Path,
    log: &Path,
    timeout: Duration,
) -> Fired {
    let started = Instant::now();
    let fired = |exit, error| Fired {
        exit,
        secs: started.elapsed().as_secs_f64(),
        error,
    };
    let output = match open_log(log) {
        Ok(file) => file,
        Err(e) => return fired(None, Some(format!("cannot open `{}`: {e}", log.display()))),
    };
    let (out, err) = match output.try_clone() {
        Ok(copy) => (Stdio::from(output), Stdio::from(copy)),
        Err(e) => return fired(None, Some(e.to_string())),
    };
    let spawned = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(root)
            .env("PROCTOR_LOOP", loop_id)
            .env("PROCTOR_REASON", reason)
            .env("PROCTOR_CARD", card)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, so a timeout ends whatever it started.
            .process_group(0)
            .spawn()
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return fired(None, Some(format!("cannot start `sh`: {e}"))),
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return fired(status.code(), None),
            Ok(None) if started.elapsed() >= timeout => {
                // SAFETY: kill with a negative pid signals the child's group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return fired(None, Some(format!("killed after {}s", timeout.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return fired(None, Some(e.to_string())),
        }
    }
}

/// The notifier's log, appended to, never through a planted symlink.
fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    state::open_append(path)
}

/// Where notifier output goes.
pub fn log_path(paths: &state::Paths) -> PathBuf {
    paths.logs.join("on_halt.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notifier_sees_its_environment_and_its_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/on_halt.log");
        let card = dir.path().join("INBOX/fix.md");
        let fired = fire(
            "echo \"$PROCTOR_LOOP $PROCTOR_REASON $PROCTOR_CARD\"; exit 7",
            dir.path(),
            "fix",
            "blocked",
            &card,
            &log,
            TIMEOUT,
        );
        assert_eq!(fired.exit, Some(7));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.trim(), format!("fix blocked {}", card.display()));
    }

    #[test]
    fn a_hanging_notifier_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("on_halt.log");
        let fired = fire(
            "sleep 30",
            dir.path(),
            "fix",
            "gated",
            &dir.path().join("card"),
            &log,
            Duration::from_millis(200),
        );
        assert_eq!(fired.exit, None);
        assert!(fired.error.unwrap().contains("killed"));
        assert!(fired.secs < 5.0);
    }
}
