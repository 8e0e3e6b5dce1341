//! `proctor stop`: end the active run of this repository, with its
//! containers, and leave the repository resumable.

use std::path::Path;
use std::time::{Duration, Instant};

use super::CommandError;
use crate::cage::{repo_label, DockerCage};
use crate::git::GitRepo;
use crate::manifest;
use crate::state::{lock, Paths};
use crate::views::out::say;

/// End the run of this repository (and only this one): it gets SIGTERM,
/// removes its containers and exits (130) with its state intact; `proctor
/// run` resumes it. If it has not ended within `--timeout`, it is killed and
/// its containers removed here.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to wait for the run to end before killing it.
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    manifest::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration like `30s` or `2m`"))
}

pub async fn cmd_stop(args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let root = git.root().to_path_buf();
    let paths = Paths::new(&root);
    let Some(info) = lock::holder_info(&paths.lock) else {
        say!("proctor: no run is active in this repository");
        return Ok(0);
    };
    let pid = info.pid;
    if pid <= 0 {
        // Held by a process this one cannot see (a run in a container or
        // on another host sharing the repository): nothing to signal here.
        return Err(CommandError::hint(
            format!(
                "the run holding this repository's lock cannot be signalled from here ({info})"
            ),
            "run `proctor stop` where that run runs (the same container or host)",
        ));
    }
    // The lock file is in the working tree, where an agent can write: only
    // signal a process that is a proctor run working in this repository.
    if !is_proctor_run_in(pid, &root) {
        return Err(CommandError::hint(
            format!("the lock names pid {pid}, which is not a proctor run in this repository; not signalling it"),
            "if no run is active, remove `.proctor/lock`",
        ));
    }
    say!("proctor: stopping the run (pid {pid})…");
    // SAFETY: kill has no memory preconditions; pid was checked above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + args.timeout;
    let mut killed = false;
    while still_running(pid, &paths) {
        if Instant::now() >= deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whatever the run could not remove (or, if it was killed, everything).
    let config = manifest::load_config(&root).unwrap_or_default();
    let leftovers = match DockerCage::connect(config.engine.as_deref()).await {
        // A run started since (a cron tick) keeps its containers.
        Ok(cage) => cage.reap_dead_runs(&repo_label(&root)).await.unwrap_or(0),
        Err(_) => 0,
    };
    if killed {
        say!(
            "proctor: the run did not end within {}s and was killed",
            args.timeout.as_secs()
        );
    }
    if leftovers > 0 {
        say!("proctor: removed {leftovers} leftover container(s)");
    }
    // A run that had to be killed left its files too.
    let swept = crate::leftovers::sweep();
    if !swept.removed.is_empty() {
        say!(
            "proctor: removed {} file(s) of dead proctor processes",
            swept.removed.len()
        );
    }
    if let Some(line) = swept.failure_line() {
        say!("proctor: warning: {line}");
    }
    say!("proctor: stopped; `proctor run` resumes it (at most one iteration is redone)");
    Ok(0)
}

/// Whether `pid` still holds the lock and is not a zombie.
fn still_running(pid: i32, paths: &Paths) -> bool {
    if lock::holder(&paths.lock) != Some(pid) {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// A proctor binary whose working directory is inside `root`.
fn is_proctor_run_in(pid: i32, root: &Path) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let is_proctor = exe
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().starts_with("proctor"))
        .unwrap_or(false)
        || exe.is_some() && exe == std::env::current_exe().ok();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    is_proctor && cwd.is_some_and(|c| c.starts_with(root))
}
