//! Copy-on-write mounts ([`Access::CopyOnWrite`](super::Access)): what
//! the engines need on the host for one.
//!
//! Both engines mount an overlay whose upper and work directories are host
//! paths (Docker through its `local` volume driver, Podman as an OCI mount
//! of type `overlay` that its runtime makes; Podman's own overlay volumes,
//! `-v SRC:DST:O`, take no `metacopy`, see `spec.rs`): proctor makes them, per container,
//! in a directory named after this process (`proctor-layer-<pid>-...`, see
//! `leftovers.rs`), and removes it after the container (whose anonymous
//! volume goes with it). A killed run's directories are swept like its
//! exam trees. This file must never write into the lower folder.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::spec::{ContainerSpec, OVERLAY_UPPER, OVERLAY_WORK};
use super::CageError;
use crate::leftovers::{layer_prefix, ScratchDir};

/// Refuses a lower folder the engine cannot mount as an overlay: one that
/// is not a directory, or whose path holds a separator of the mount option
/// string both engines take it in.
pub(crate) fn check_lower(lower: &Path) -> Result<(), CageError> {
    if !lower.is_dir() {
        return Err(CageError::InvalidInvocation {
            reason: format!(
                "copy-on-write mount source `{}` is not a directory",
                lower.display()
            ),
        });
    }
    option_safe(lower)
}

/// Overlay mount options are separated by `,` and layers by `:`; a path
/// holding either (or a backslash, the escape) cannot be passed whole.
fn option_safe(path: &Path) -> Result<(), CageError> {
    let text = path.to_str().unwrap_or(",");
    if text.contains([',', ':', '\\']) || text.chars().any(char::is_control) {
        return Err(CageError::InvalidInvocation {
            reason: format!(
                "`{}` cannot be a layer of a copy-on-write mount: its path holds `,`, `:`, `\\` or a control character (move the repository, or `PROCTOR_TMPDIR`, to a plainer path)",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Where layer directories go: `PROCTOR_TMPDIR`, else the temp directory
/// (never `/dev/shm`: a build cache's writes can be large).
fn layer_root() -> PathBuf {
    match std::env::var_os("PROCTOR_TMPDIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir(),
    }
}

/// Makes the upper and work directories of each of `spec`'s copy-on-write
/// mounts and names them in the spec; the returned directories must
/// outlive the container (hand them to its removal guard).
pub(crate) fn make_layers(spec: &mut ContainerSpec) -> Result<Vec<ScratchDir>, CageError> {
    let root = layer_root();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CageError::Io { path, source }
    };
    let mut made = Vec::with_capacity(spec.overlays.len());
    for overlay in &mut spec.overlays {
        let dir = ScratchDir::new_in(&root, &layer_prefix()).map_err(io(&root))?;
        option_safe(dir.path())?;
        let upper = dir.path().join(OVERLAY_UPPER);
        std::fs::create_dir(&upper).map_err(io(&upper))?;
        let work = dir.path().join(OVERLAY_WORK);
        std::fs::create_dir(&work).map_err(io(&work))?;
        // The overlay's root takes the upper layer's owner and mode: the
        // lower folder's, so the container's user may write where it could
        // have written into the folder itself.
        let meta = std::fs::metadata(&overlay.lower).map_err(io(&overlay.lower))?;
        std::fs::set_permissions(
            &upper,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777),
        )
        .map_err(io(&upper))?;
        chown_as_root(&upper, meta.uid(), meta.gid());
        overlay.scratch = Some(dir.path().to_path_buf());
        made.push(dir);
    }
    Ok(made)
}

/// Gives `path` to `uid:gid` when this process is root (only root can;
/// otherwise the directory is already this user's).
fn chown_as_root(path: &Path, uid: u32, gid: u32) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    if let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: c is a valid NUL-terminated path; lchown never follows links.
        unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    }
}

/// Removes layer directories once their container is gone. The kernel
/// leaves an empty `work/work` owned by root with mode 0 that a process
/// other than root can only remove by name, so that goes first.
pub(crate) fn remove_layers(layers: Vec<ScratchDir>) {
    for layer in layers {
        let _ = std::fs::remove_dir(layer.path().join(OVERLAY_WORK).join("work"));
        drop(layer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_separators_in_a_layer_path_are_refused() {
        for bad in ["/a,b", "/a:b", "/a\\b", "/a\nb"] {
            let err = option_safe(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("cannot be a layer"), "{bad}: {err}");
        }
        assert!(option_safe(Path::new("/repo/.proctor/caches/target")).is_ok());
    }

    #[test]
    fn each_container_gets_a_fresh_upper_layer() {
        use crate::cage::spec::{tests::spec, OverlaySpec};
        let lower = tempfile::tempdir().unwrap();
        std::fs::set_permissions(lower.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let overlay = OverlaySpec {
            lower: lower.path().to_path_buf(),
            target: "/cache/deps".into(),
            scratch: None,
        };
        let mut first = spec();
        first.overlays = vec![overlay.clone()];
        let other = make_layers(&mut first).unwrap();
        let mut second = spec();
        second.overlays = vec![overlay];
        let layers = make_layers(&mut second).unwrap();
        assert_eq!(layers.len(), 1);
        let scratch = second.overlays[0].scratch.clone().expect("a scratch dir");
        assert_ne!(first.overlays[0].scratch, second.overlays[0].scratch);
        remove_layers(other);
        assert_eq!(scratch, layers[0].path());
        let name = scratch.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&layer_prefix()), "{name}");
        let upper = std::fs::metadata(scratch.join(OVERLAY_UPPER)).unwrap();
        assert_eq!(upper.mode() & 0o7777, 0o750);
        assert!(scratch.join(OVERLAY_WORK).is_dir());
        // As the kernel leaves it: an empty work/work nobody may enter.
        let inner = scratch.join(OVERLAY_WORK).join("work");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o0)).unwrap();
        remove_layers(layers);
        assert!(!scratch.exists());
        assert_eq!(std::fs::read_dir(lower.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_lower_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = check_lower(&missing).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        assert!(check_lower(dir.path()).is_ok());
    }
}
