//! Why a run refused to start or stopped: one variant per refusal, each
//! with the next thing to do as its hint.

use std::path::PathBuf;

use crate::cage::CageError;
use crate::engine::EngineError;
use crate::exit_codes::DomainError;
use crate::git::GitError;
use crate::manifest::ManifestError;
use crate::state::key::KeyError;
use crate::state::lock::LockError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the repository has no commits yet")]
    NoCommits,
    #[error("loop `{0}` has no `agent`")]
    NoAgent(String),
    /// A loop asks for a judge (`judge:` in the manifest) and the host
    /// config names none: never a silent no-op.
    #[error(
        "loop {} has `judge:` (a rubric that may veto a pass) but `.proctor/config.yaml` names no `judge` command",
        ticked(ids)
    )]
    NoJudge { ids: Vec<String> },
    #[error("no loop `{id}` in `{}`", manifest.display())]
    NoSuchLoop { id: String, manifest: PathBuf },
    #[error(
        "loop {} sets `check_every`, so its exam may answer 75 (not yet), but has no time budget: waiting spends no runs, so nothing would end the wait",
        ticked(ids)
    )]
    UntimedWatchers {
        ids: Vec<String>,
        /// The first such loop's run budget, for the example in the hint.
        first_runs: Option<u32>,
    },
    /// An approval key or the trusted approvers live where an agent can
    /// reach them.
    #[error(
        "{what} (`{}`) is inside the repository, where an agent can read or write it; a gate would mean nothing",
        dir.display()
    )]
    SecretsInRepo { what: &'static str, dir: PathBuf },
    /// A host path under the config's `mounts:` that this machine does
    /// not have: every container would fail on it.
    #[error("`.proctor/config.yaml`: `mounts` names `{mount}`, and `{}` does not exist on this host", path.display())]
    MountMissing { mount: String, path: PathBuf },
    #[error("loop `{loop_id}`: image `{image}` is not on the container engine ({engine})")]
    ImageMissing {
        loop_id: String,
        image: String,
        engine: String,
    },
    /// The manifest is not in the commit the run's worktree is made from.
    #[error("`{manifest}` is not committed on the run's branch; the run works in its own worktree, made from commits (tracked files only)")]
    ManifestUncommitted { manifest: String },
    /// A state file's damage could not be set aside.
    #[error("cannot repair `{path}`: {source}")]
    Heal {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// `image: auto` cannot tell what to build.
    #[error(transparent)]
    AutoImage(#[from] crate::manifest::auto_image::AutoError),
    #[error(transparent)]
    Cage(#[from] CageError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The container engine stopped answering mid-run.
    #[error(
        "the container engine went away while {during}; start it ({how}) and {again} to resume"
    )]
    EngineGone {
        during: String,
        /// How to start this kind of engine.
        how: &'static str,
        /// The command that resumes.
        again: String,
    },
}

/// `a`, `b`: names in backticks, joined by commas.
fn ticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first ten paths, and how many more there are.
pub(super) fn first_ten(paths: &[String]) -> String {
    let shown: Vec<&str> = paths.iter().take(10).map(String::as_str).collect();
    let more = if paths.len() > 10 {
        format!(" and {} more", paths.len() - 10)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

impl DomainError for RunError {
    fn output(&self) -> Option<String> {
        match self {
            RunError::Engine(e) => e.output(),
            _ => None,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            RunError::NoCommits => "commit your work once, then run proctor".into(),
            RunError::NoJudge { .. } => "name the judge in `.proctor/config.yaml` (`judge: CMD`, or `judge: {command: CMD, env: [NAMES], network: open, timeout: 5m}`) and commit it, or remove `judge:` from the loop".into(),
            RunError::NoAgent(_) => {
                "set `agent:` in the manifest (it is inherited by child loops) or pass `--agent CMD`".into()
            }
            RunError::UntimedWatchers { ids, first_runs } => format!(
                "give it a wall-clock budget, e.g. `budget: {} / 8h` on loop `{}`",
                first_runs.map_or("10 runs".to_string(), |n| format!("{n} runs")),
                ids.first().map(String::as_str).unwrap_or_default()
            ),
            RunError::SecretsInRepo { .. } => {
                "keep approval keys and trusted approvers outside the repository (the defaults are under `~/.config/proctor`)".into()
            }
            RunError::MountMissing { .. } => "create it, or take it out of `mounts:` and commit the config (a toolchain that moved: `proctor init` in a scratch copy shows what this machine needs)".into(),
            RunError::ImageMissing { image, .. } => format!(
                "proctor never pulls: import a root filesystem with `proctor image import DIR|ROOTFS.tar.gz --name {image}`, or build or pull the image yourself"
            ),
            RunError::ManifestUncommitted { manifest } => format!(
                "commit it and the files its exam needs (`git add {manifest} && git commit`), then run again"
            ),
            RunError::EngineGone { .. } => {
                "the cut-short attempt is settled then: committed as interrupted if it left edits, not charged if it left none".into()
            }
            RunError::Manifest(e) => return e.hint(),
            RunError::AutoImage(_) => "commit a `.proctor/Dockerfile` (or a devcontainer, or a root `Dockerfile`), or name an image in `image:` (see images/README.md)".into(),
            RunError::Cage(e) => return e.hint(),
            RunError::Git(e) => return e.hint(),
            RunError::Lock(e) => return e.hint(),
            RunError::Key(e) => return e.hint(),
            RunError::Engine(e) => return e.hint(),
            RunError::NoSuchLoop { .. } | RunError::Signals(_) | RunError::Heal { .. } => {
                return None
            }
        })
    }

    fn is_users_to_fix(&self) -> bool {
        match self {
            RunError::Signals(_) | RunError::Heal { .. } => false,
            RunError::Manifest(e) => e.is_users_to_fix(),
            RunError::Cage(e) => e.is_users_to_fix(),
            RunError::Git(e) => e.is_users_to_fix(),
            RunError::Lock(e) => e.is_users_to_fix(),
            RunError::Key(e) => e.is_users_to_fix(),
            RunError::Engine(e) => e.is_users_to_fix(),
            _ => true,
        }
    }
}
