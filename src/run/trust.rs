//! Trust: what the run obeys is what the base commit holds (the loop tree,
//! the exam's materials, the notifier), never what the working tree says
//! now: an agent of an earlier, killed run may have written it.

use super::preflight::Ready;
use super::{Observer, Request, RunError, Warning};
use crate::git::{GitRepo, Oid};
use crate::manifest::{self, LoopSpec};
use crate::notify;
use crate::protect::Rules;

/// The trust decisions of a run.
pub(super) struct Trusted {
    /// The loop tree to run, as the base commit has it.
    pub root: LoopSpec,
    /// The rules guarding the exam's materials.
    pub rules: Rules,
    /// The notifier for a halted loop, from the committed config.
    pub notifier: notify::Trust,
}

/// Decides what the run obeys, from the base commit in the run's
/// worktree `work` (never from the user's checkout).
pub(super) fn decide(
    ready: &Ready,
    work: &GitRepo,
    base: Oid,
    req: &Request,
    observer: &mut dyn Observer,
) -> Result<Trusted, RunError> {
    let (root, rules) = trusted_tree(work, &ready.root_dir, base, req)?;
    if root != req.root {
        observer.warn(Warning::ManifestDiffers {
            branch: ready.branch.clone(),
        });
    }
    Ok(Trusted {
        root,
        rules,
        notifier: notify::trusted(work, base, &ready.config),
    })
}

/// The loop tree to run and the rules guarding its exam, from the manifest
/// as the base commit has it. A manifest edited in the working tree since
/// (an agent's edit left behind by a killed run) is not obeyed; the
/// engine's first check quarantines it and restores the trusted copy.
fn trusted_tree(
    git: &GitRepo,
    checkout: &std::path::Path,
    base: Oid,
    req: &Request,
) -> Result<(LoopSpec, Rules), RunError> {
    let rel = req.manifest_label.as_str();
    let path = git.root().join(rel);
    let in_repo = crate::protect::fsafe::components(rel).is_ok()
        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
    if !in_repo {
        let in_checkout = checkout.join(rel);
        if crate::protect::fsafe::components(rel).is_ok()
            && std::fs::symlink_metadata(&in_checkout).is_ok_and(|m| m.is_file())
        {
            // The run works in a worktree made from commits: an exam whose
            // manifest is not committed would run without its materials.
            return Err(RunError::ManifestUncommitted {
                manifest: rel.to_string(),
            });
        }
        return Ok((req.root.clone(), Rules::new(req.root.all_protected(), None)));
    }
    let manifest = match git.read_blob_at(base, rel)? {
        Some(trusted) if std::fs::read(&path).ok().as_deref() != Some(trusted.as_slice()) => {
            manifest::parse(&String::from_utf8_lossy(&trusted), &path)?
        }
        _ => manifest::load(&path)?,
    };
    let root = super::select_root(&manifest, Some(&req.root.id))?;
    Ok((root, Rules::new(manifest.all_protected(), Some(rel))))
}
