//! `proctor reap`: remove leftover containers (and egress networks) of this
//! repository's runs.

use super::run::repo_label;
use super::CommandError;
use crate::cage::{Cage, DockerCage, LABEL_REPO};
use crate::git::GitRepo;
use crate::manifest;
use crate::state::{lock, Paths};

/// Remove every container proctor left behind for this repository (runs
/// killed with `kill -9`, say). Refuses while a run is active here.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn cmd_reap(_args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    if let Some(pid) = lock::holder(&paths.lock) {
        return Err(CommandError::hint(
            format!("a proctor run is active in this repository (pid {pid})"),
            "its containers are in use; stop it first",
        ));
    }
    let config = manifest::load_config(git.root())?;
    let cage = DockerCage::connect(config.engine.as_deref()).await?;
    let label = repo_label(git.root());
    let n = cage
        .remove_labelled(&[(LABEL_REPO, label.as_str())])
        .await?;
    println!("removed {n} container(s)");
    Ok(0)
}
