//! Preflight: everything a run checks before it touches anything (the
//! repository, the lock, the branch). A refusal here leaves the repository
//! as it was.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{connect_cage, Request, RunError};
use crate::cage::{Cage, CageError, DockerCage, HOST_IMAGE};
use crate::engine::gate::is_inside;
use crate::git::{GitRepo, Oid};
use crate::manifest::{self, Config, LoopSpec, Manifest, Order};
use crate::state::approver::approvers_dir;
use crate::state::key::key_dir;
use crate::state::Paths;

/// What preflight established: the run may start.
pub(super) struct Ready {
    pub git: GitRepo,
    pub root_dir: PathBuf,
    pub paths: Paths,
    /// HEAD when the run started.
    pub head: Oid,
    pub config: Config,
    /// Removals run in the background; teardown's `settle` waits for them.
    pub cage: DockerCage,
    /// The run's branch, `proctor/<root>`.
    pub branch: String,
    /// The branch checked out when the run started (`None`: detached).
    pub start_branch: Option<String>,
    /// Tracked files with uncommitted changes in the checkout: the run
    /// starts from the HEAD commit without them (a warning names them).
    pub uncommitted: Vec<String>,
}

/// Refuses loops that ask for a judge (`judge:`) when the config names
/// none: a rubric nobody reads must not look like a second opinion.
pub fn refuse_unjudged(root: &LoopSpec, config: &Config) -> Result<(), RunError> {
    if config.judge.is_some() {
        return Ok(());
    }
    let ids: Vec<String> = root
        .walk(Order::ParentsFirst)
        .into_iter()
        .filter(|spec| spec.judge.is_some())
        .map(|spec| spec.id.clone())
        .collect();
    if ids.is_empty() {
        Ok(())
    } else {
        Err(RunError::NoJudge { ids })
    }
}

/// Refuses a loop that says its exam answers 75 (it sets `check_every`)
/// but has no time budget: waiting spends no runs, so nothing would end it.
pub fn refuse_untimed_watchers(manifest: &Manifest, root: &LoopSpec) -> Result<(), RunError> {
    let untimed = manifest.untimed_watchers(root);
    let Some(first) = untimed.first() else {
        return Ok(());
    };
    Err(RunError::UntimedWatchers {
        ids: untimed.iter().map(|s| s.id.clone()).collect(),
        first_runs: first.budget.runs,
    })
}

/// Checks the request against the repository, the host config and the
/// engine: commits exist, every loop has an agent, approval keys are out of
/// the agent's reach and every image is there. The checkout's uncommitted
/// changes do not block a run (it works in its own worktree from a
/// commit); they are listed for a warning.
pub(super) async fn check(req: &Request) -> Result<Ready, RunError> {
    let git = GitRepo::open(&req.dir)?;
    let root_dir = git.root().to_path_buf();
    let head = git.head()?.ok_or(RunError::NoCommits)?;
    let loops = req.root.walk(Order::ParentsFirst);
    if req.default_agent.is_none() {
        // A loop with children may have no agent: it only checks what they
        // built (it is blocked with a card if that fails its exam).
        if let Some(spec) = loops
            .iter()
            .find(|spec| spec.agent.is_none() && spec.children.is_empty())
        {
            return Err(RunError::NoAgent(spec.id.clone()));
        }
    }
    if loops.iter().any(|spec| spec.gate.is_some()) {
        for (what, dir) in [
            ("`PROCTOR_KEY_DIR`", key_dir()),
            ("`PROCTOR_APPROVERS_DIR`", approvers_dir()),
        ] {
            if is_inside(&dir, &root_dir) {
                return Err(RunError::SecretsInRepo { what, dir });
            }
        }
    }
    let config = manifest::load_config(&root_dir)?;
    refuse_unjudged(&req.root, &config)?;
    check_mounts(&config)?;
    let cage = connect_cage(&config).await?.with_background_removal();
    check_images(&cage, &loops, config.image.as_deref()).await?;

    let branch = format!("proctor/{}", req.root.id);
    let start_branch = git.head_branch()?;
    let uncommitted = if git.branch_tip(&branch)?.is_none() {
        git.changed_tracked_paths(&|p| p.starts_with(".proctor/") || p.starts_with("INBOX/"))?
    } else {
        // The run resumes its branch: the checkout's edits were never
        // going to be in it.
        Vec::new()
    };
    Ok(Ready {
        paths: Paths::new(&root_dir),
        git,
        root_dir,
        head,
        config,
        cage,
        branch,
        start_branch,
        uncommitted,
    })
}

/// Every image the tree needs is on the engine, before anything is touched:
/// a missing image is a clear error naming `proctor image import`, not a
/// failure halfway through a run.
async fn check_images(
    cage: &DockerCage,
    loops: &[&LoopSpec],
    default_image: Option<&str>,
) -> Result<(), RunError> {
    let mut seen = HashSet::new();
    for spec in loops {
        let image = spec
            .image
            .as_deref()
            .or(default_image)
            .unwrap_or(HOST_IMAGE);
        // Built (or found) from the base commit once the run starts.
        if image == crate::manifest::auto_image::AUTO || !seen.insert(image) {
            continue;
        }
        match cage.ensure_image(image).await {
            Ok(_) => {}
            Err(CageError::ImageNotFound { .. }) => {
                return Err(RunError::ImageMissing {
                    loop_id: spec.id.clone(),
                    image: image.to_string(),
                    engine: cage.describe(),
                })
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

/// Every host path under the config's `mounts:` exists here (it failed
/// at the first container as the engine's "invalid invocation").
pub fn check_mounts(config: &manifest::Config) -> Result<(), RunError> {
    for mount in &config.mounts {
        let path = crate::engine::HostMount::parse(mount).path;
        if !path.exists() {
            return Err(RunError::MountMissing {
                mount: mount.clone(),
                path,
            });
        }
    }
    Ok(())
}
