//! `image: auto`: the loops' image built from the repository's own
//! definition (`.proctor/Dockerfile`, a devcontainer, or `Dockerfile`), as
//! the run's base commit has it, before any agent wakes.
//!
//! The definition and the build context are read from the base commit,
//! never from a working tree: an agent that commits a changed Dockerfile
//! changes neither the image of this run's exams nor of a resumed run's
//! (it resumes from the same base). The next run from a new base builds
//! afresh, or reuses the tag when the content is the same.

use std::path::Path;
use std::time::Instant;

use super::RunError;
use crate::cage::{BuildRequest, Cage, CageError, DockerCage};
use crate::engine::events::Event;
use crate::git::{GitRepo, Oid};
use crate::leftovers::{build_prefix, ScratchDir};
use crate::manifest::auto_image::{self, AutoSource, AUTO};
use crate::manifest::{Config, LoopSpec, Order};

/// Where a build's whole output goes, under `.proctor/logs/`.
pub const BUILD_LOG: &str = "image-auto.log";

/// Whether any loop of the tree, or the config's default image, is
/// `image: auto`.
pub fn wanted(root: &LoopSpec, config: &Config) -> bool {
    let default_auto = config.image.as_deref() == Some(AUTO);
    root.walk(Order::ParentsFirst)
        .iter()
        .any(|spec| match spec.image.as_deref() {
            Some(image) => image == AUTO,
            None => default_auto,
        })
}

/// The definition `image: auto` means at `commit`.
pub fn source_at(git: &GitRepo, commit: Oid) -> Result<AutoSource, RunError> {
    // The closure cannot return the git error: remember the first.
    let failed = std::cell::RefCell::new(None);
    let read = |path: &str| match git.read_blob_at(commit, path) {
        Ok(bytes) => bytes,
        Err(e) => {
            failed.borrow_mut().get_or_insert(e);
            None
        }
    };
    let found = auto_image::find(&read);
    if let Some(e) = failed.into_inner() {
        return Err(e.into());
    }
    Ok(found?)
}

/// Builds (or finds) the image `source` defines at `commit`, reporting
/// each build step and the result through `emit`; returns the image
/// reference the loops run in. A missing base image, a failed build or a
/// missing devcontainer image is a [`CageError`].
pub async fn prepare(
    git: &GitRepo,
    commit: Oid,
    source: &AutoSource,
    cage: &DockerCage,
    logs: &Path,
    emit: &mut dyn FnMut(Event),
) -> Result<String, RunError> {
    let started = Instant::now();
    let spec = match source {
        AutoSource::Image { origin, image } => {
            let id = cage.ensure_image(image).await?;
            emit(Event::ImageReady {
                source: origin.clone(),
                image: image.clone(),
                id,
                built: false,
                secs: started.elapsed().as_secs_f64(),
            });
            return Ok(image.clone());
        }
        AutoSource::Build(spec) => spec,
    };
    let dockerfile =
        git.read_blob_at(commit, &spec.dockerfile)?
            .ok_or_else(|| CageError::Dockerfile {
                path: spec.dockerfile.clone(),
                reason: format!(
                    "`{}` names it, but the base commit has no such file",
                    spec.origin
                ),
            })?;
    let tmp = std::env::temp_dir();
    let scratch = ScratchDir::new_in(&tmp, &build_prefix()).map_err(|source| CageError::Io {
        path: tmp.clone(),
        source,
    })?;
    let context = scratch.path().join("context");
    if !git.export_dir(commit, &spec.context, &context)? {
        return Err(CageError::Dockerfile {
            path: spec.origin.clone(),
            reason: format!(
                "the build context `{}` is not a directory in the base commit",
                display_dir(&spec.context)
            ),
        }
        .into());
    }
    drop_run_state(&context, &spec.context).map_err(|source| CageError::Io {
        path: context.clone(),
        source,
    })?;
    std::fs::create_dir_all(logs).map_err(|source| CageError::Io {
        path: logs.to_path_buf(),
        source,
    })?;
    let req = BuildRequest {
        context,
        dockerfile_name: spec.dockerfile.clone(),
        dockerfile_in_context: inside(&spec.context, &spec.dockerfile),
        dockerfile,
        args: spec.args.clone(),
        target: spec.target.clone(),
        scratch: scratch.path().to_path_buf(),
        log: logs.join(BUILD_LOG),
    };
    let origin = spec.origin.clone();
    let mut step = |line: &str| {
        emit(Event::ImageBuild {
            source: origin.clone(),
            step: line.to_string(),
        })
    };
    let built = cage.build_auto(&req, &mut step).await?;
    drop(scratch);
    emit(Event::ImageReady {
        source: spec.origin.clone(),
        image: built.tag.clone(),
        id: built.id,
        built: built.built,
        secs: started.elapsed().as_secs_f64(),
    });
    Ok(built.tag)
}

/// For a verb outside a run (`lint`, `land`, `judge`, `plan`): when the
/// config's `image` or a loop of `root` is `auto`, builds (or finds) the
/// image `commit` defines and puts its reference in their place, so the
/// verb's containers run in what a run's would.
pub async fn resolve_outside_run(
    git: &GitRepo,
    commit: Oid,
    cage: &DockerCage,
    config: &mut Config,
    root: Option<&mut LoopSpec>,
    emit: &mut dyn FnMut(Event),
) -> Result<(), RunError> {
    let default_auto = config.image.as_deref() == Some(AUTO);
    let tree_auto = root.as_deref().is_some_and(|r| wanted(r, config));
    if !default_auto && !tree_auto {
        return Ok(());
    }
    let source = source_at(git, commit)?;
    let logs = crate::state::Paths::new(git.root()).logs;
    let image = prepare(git, commit, &source, cage, &logs, emit).await?;
    if let Some(root) = root {
        substitute(root, &image);
    }
    if default_auto {
        config.image = Some(image);
    }
    Ok(())
}

/// `image: auto` replaced by `image` in every loop of the tree that names
/// it (a loop that inherits the config's default is handled by the
/// default).
pub fn substitute(spec: &mut LoopSpec, image: &str) {
    if spec.image.as_deref() == Some(AUTO) {
        spec.image = Some(image.to_string());
    }
    for child in &mut spec.children {
        substitute(child, image);
    }
}

/// The run state proctor commits with the work (the ledger, the
/// journals), repository-relative.
const RUN_STATE: [&str; 2] = [".proctor/ledger.jsonl", ".proctor/journal"];

/// Removes proctor's committed run state from an exported context (at
/// `dir`, repository-relative `context`): it is no build input, and every
/// landed run changes it, which would change the tag and rebuild an
/// image whose real inputs did not change.
fn drop_run_state(dir: &Path, context: &str) -> std::io::Result<()> {
    for state in RUN_STATE {
        let rel = if context.is_empty() {
            Some(state)
        } else {
            state
                .strip_prefix(context)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        let Some(rel) = rel else { continue };
        let path = dir.join(rel);
        let result = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => Ok(()),
        };
        result?;
    }
    Ok(())
}

/// The Dockerfile's path inside the context, when it is inside.
fn inside(context: &str, dockerfile: &str) -> Option<String> {
    if context.is_empty() {
        return Some(dockerfile.to_string());
    }
    dockerfile
        .strip_prefix(context)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(str::to_string)
}

fn display_dir(dir: &str) -> &str {
    if dir.is_empty() {
        "."
    } else {
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_and_journals_are_no_build_input() {
        for (context, state_dir) in [("", ".proctor"), (".proctor", "")] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join(state_dir);
            std::fs::create_dir_all(state.join("journal")).unwrap();
            std::fs::write(state.join("journal/fix.md"), "notes").unwrap();
            std::fs::write(state.join("ledger.jsonl"), "{}").unwrap();
            std::fs::write(state.join("Dockerfile"), "FROM scratch").unwrap();
            drop_run_state(dir.path(), context).unwrap();
            assert!(!state.join("journal").exists() && !state.join("ledger.jsonl").exists());
            assert!(state.join("Dockerfile").exists());
        }
        // A context elsewhere has none of it; nothing there is touched.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger.jsonl"), "{}").unwrap();
        drop_run_state(dir.path(), ".devcontainer").unwrap();
        assert!(dir.path().join("ledger.jsonl").exists());
    }

    #[test]
    fn a_dockerfile_travels_at_its_place_in_the_context() {
        assert_eq!(inside("", "Dockerfile").as_deref(), Some("Dockerfile"));
        assert_eq!(
            inside(".devcontainer", ".devcontainer/Dockerfile").as_deref(),
            Some("Dockerfile")
        );
        assert_eq!(inside(".devcontainer/x", ".devcontainer/Dockerfile"), None);
        assert_eq!(inside(".dev", ".devcontainer/Dockerfile"), None);
    }
}
