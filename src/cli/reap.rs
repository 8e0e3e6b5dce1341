//! `proctor reap`: remove what dead runs left behind: this repository's
//! containers (and egress networks), its run worktrees under `.proctor/wt/`,
//! and the host files of any proctor process that is gone.

use super::CommandError;
use crate::cage::{repo_label, DockerCage};
use crate::git::GitRepo;
use crate::leftovers;
use crate::manifest;
use crate::state::{lock, Paths};

/// Remove every container proctor left behind for this repository (runs
/// killed with `kill -9`, say), its run worktrees under `.proctor/wt/` (the
/// `proctor/...` branches stay), and the files on this host of every
/// proctor process that is gone: egress proxy sockets and logs, exam
/// scratch trees, demo and gauntlet scratch repositories. Files of live
/// runs (in any repository) stay. Refuses while a run is active here.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn cmd_reap(_args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    if let Some(who) = lock::holder_info(&paths.lock) {
        return Err(CommandError::hint(
            format!("a proctor run is active in this repository ({who})"),
            "its containers are in use; stop it first",
        ));
    }
    let config = manifest::load_config(git.root())?;
    let cage = DockerCage::connect(config.engine.as_deref()).await?;
    let label = repo_label(git.root());
    let n = cage.reap_dead_runs(&label).await?;
    crate::views::out::say!("removed {n} container(s)");
    // After the containers: a dead run's agent may still have had its
    // worktree mounted.
    let worktrees = git.workspaces()?;
    for wt in &worktrees {
        git.remove_workspace(&wt.name)?;
    }
    crate::views::out::say!(
        "removed {} worktree(s) of dead runs (their branches stay)",
        worktrees.len()
    );
    for wt in &worktrees {
        crate::views::out::say!("  {}", paths.rel(&wt.path));
    }
    let swept = leftovers::sweep();
    crate::views::out::say!(
        "removed {} file(s) of dead proctor processes",
        swept.removed.len()
    );
    for path in &swept.removed {
        crate::views::out::say!("  {}", path.display());
    }
    if let Some(line) = swept.failure_line() {
        crate::views::out::say_err!("warning: {line}");
    }
    Ok(0)
}
