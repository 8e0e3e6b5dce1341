//! Sealing the exam's materials in an exported tree, however many there are.
//!
//! Read-only bind mounts cost one mount each and engines slow down (and
//! finally refuse) past a few hundred, so they cannot cover every
//! protected file of a large suite. Ownership can: each watched file (and
//! link) of the tree is given to a uid other than the verifier's, without
//! write permission, and each directory on the way to one is given to that
//! uid too, writable by the verifier's group and sticky. The verifier runs
//! with every capability dropped (no `CAP_DAC_OVERRIDE`, `CAP_FOWNER` or
//! `CAP_CHOWN`) and `no-new-privileges`, so code under test can neither
//! write a sealed file, nor make it writable, nor unlink, rename or replace
//! it (the sticky bit reserves that to the owner), while it still creates
//! and changes its own files anywhere, next to the sealed ones included.
//!
//! Only a process that may give files away (root) can seal; [`seal`] says
//! when it could not, and the caller falls back to read-only mounts.
//! Nothing here follows a link: every component is checked with `lstat`
//! and files are changed through a descriptor opened with `O_NOFOLLOW`.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::fsafe;

/// The owner of sealed entries when the verifier itself runs as root
/// (uid 0 without capabilities is still the owner of root's files).
const SEAL_UID_FOR_ROOT: u32 = 65534;

/// What [`seal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// This many watched entries (files and links) are sealed.
    Done(usize),
    /// This process cannot give files away (it is not root): nothing done.
    NotPermitted,
}

/// The uid that owns sealed entries for a verifier running as `verifier_uid`.
pub fn seal_owner(verifier_uid: u32) -> u32 {
    if verifier_uid == 0 {
        SEAL_UID_FOR_ROOT
    } else {
        0
    }
}

/// Whether this process may seal (give files away): it runs as root.
/// [`seal`] answers [`Sealed::NotPermitted`] exactly when this is false.
pub fn permitted() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Seals `paths` (repo-relative watched paths) under `root`, an exported
/// tree whose verifier runs as `verifier` (`uid`, `gid`). A path that is
/// absent, or reached through a link or a file, is skipped (the after-exam
/// check sees it). Call it after the tree is handed to the verifier's user
/// and before the exam's stamps are taken.
pub fn seal<'a>(
    root: &Path,
    paths: impl IntoIterator<Item = &'a str>,
    verifier: (u32, u32),
) -> io::Result<Sealed> {
    if !permitted() {
        return Ok(Sealed::NotPermitted);
    }
    let owner = seal_owner(verifier.0);
    let group = verifier.1;
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut sealed = 0;
    'paths: for rel in paths {
        let Ok(parts) = fsafe::components(rel) else {
            continue;
        };
        let mut path = root.to_path_buf();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'paths,
                Err(e) => return Err(e),
            };
            let kind = meta.file_type();
            if i + 1 < parts.len() {
                if !kind.is_dir() {
                    continue 'paths;
                }
                continue;
            }
            if kind.is_symlink() {
                // A link's own mode means nothing; its owner and the sticky
                // directory keep it from being re-pointed.
                std::os::unix::fs::lchown(&path, Some(owner), Some(group))?;
            } else if kind.is_file() {
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)?;
                if !file.metadata()?.file_type().is_file() {
                    continue 'paths;
                }
                std::os::unix::fs::fchown(&file, Some(owner), Some(group))?;
                let exec = meta.mode() & 0o111 != 0;
                let mode = if exec { 0o555 } else { 0o444 };
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            } else {
                continue 'paths;
            }
            sealed += 1;
            for up in 0..parts.len() {
                dirs.insert(parts[..up].join("/"));
            }
        }
    }
    for dir in &dirs {
        let path = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(dir)
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
            .open(&path)?;
        let meta = file.metadata()?;
        std::os::unix::fs::fchown(&file, Some(owner), Some(group))?;
        // Sticky and writable by the verifier's group; what others could
        // read stays as it was.
        let mode = 0o1770 | (meta.mode() & 0o005);
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(Sealed::Done(sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seal_owner_is_never_the_verifier() {
        assert_eq!(seal_owner(0), SEAL_UID_FOR_ROOT);
        assert_eq!(seal_owner(1000), 0);
        assert_eq!(seal_owner(SEAL_UID_FOR_ROOT), 0);
    }

    #[test]
    fn sealing_gives_files_and_their_directories_away_and_skips_links_on_the_way() {
        // SAFETY: geteuid has no preconditions.
        let root_user = unsafe { libc::geteuid() } == 0;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("tests")).unwrap();
        fs::write(root.join("tests/a.sh"), "exit 1\n").unwrap();
        fs::write(root.join("tests/notes.txt"), "mine\n").unwrap();
        fs::write(root.join("run.sh"), "sh tests/a.sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("via")).unwrap();
        let got = seal(
            root,
            ["tests/a.sh", "run.sh", "via/passwd", "gone.sh"],
            (1000, 1000),
        )
        .unwrap();
        if !root_user {
            assert_eq!(got, Sealed::NotPermitted);
            return;
        }
        assert_eq!(got, Sealed::Done(2));
        let a = fs::symlink_metadata(root.join("tests/a.sh")).unwrap();
        assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (0, 1000, 0o444));
        let run = fs::symlink_metadata(root.join("run.sh")).unwrap();
        assert_eq!(run.mode() & 0o7777, 0o555);
        let tests = fs::symlink_metadata(root.join("tests")).unwrap();
        assert_eq!((tests.uid(), tests.gid()), (0, 1000));
        assert_eq!(tests.mode() & 0o7770, 0o1770);
        let notes = fs::symlink_metadata(root.join("tests/notes.txt")).unwrap();
        assert_ne!(
            notes.mode() & 0o7777,
            0o444,
            "an unwatched file is left alone"
        );
        assert_eq!(
            fs::symlink_metadata("/etc/passwd").unwrap().uid(),
            0,
            "never through a link"
        );
    }
}
