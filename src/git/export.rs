//! Writing a committed tree to a plain directory for the verifier.
//!
//! Blobs are written straight from the object database: no checkout
//! machinery, no index, no filters, no attributes. The tree may have been
//! shaped by the agent, so every name is checked and nothing already on disk
//! is ever followed or overwritten.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};

use super::{git, io, GitError};

const MODE_LINK: i32 = 0o120000;
const MODE_EXEC: i32 = 0o100755;

pub(super) fn export(repo: &Repository, root: &Tree<'_>, dest: &Path) -> Result<(), GitError> {
    prepare_dest(dest)?;
    // Explicit stack: a forged tree can nest deeper than a thread stack likes.
    let mut pending: Vec<(Oid, PathBuf, Vec<u8>)> = vec![(root.id(), dest.to_path_buf(), vec![])];
    while let Some((tree_id, dir, prefix)) = pending.pop() {
        let tree = repo.find_tree(tree_id).map_err(git("read tree"))?;
        for entry in tree.iter() {
            let name = entry.name_bytes();
            let mut rel = prefix.clone();
            rel.extend_from_slice(name);
            if !safe_name(name) {
                return Err(GitError::UnsafeTreeEntry {
                    path: String::from_utf8_lossy(&rel).into_owned(),
                });
            }
            let path = dir.join(OsStr::from_bytes(name));
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    // create_dir (not _all) fails on anything already there,
                    // including a symlink planted by an earlier duplicate entry.
                    fs::create_dir(&path).map_err(io(&path))?;
                    rel.push(b'/');
                    pending.push((entry.id(), path, rel));
                }
                Some(ObjectType::Blob) => {
                    let blob = repo.find_blob(entry.id()).map_err(git("read blob"))?;
                    if entry.filemode() == MODE_LINK {
                        // Creates the link itself; the target is never opened.
                        std::os::unix::fs::symlink(OsStr::from_bytes(blob.content()), &path)
                            .map_err(io(&path))?;
                    } else {
                        let mode = if entry.filemode() == MODE_EXEC {
                            0o755
                        } else {
                            0o644
                        };
                        write_file(&path, blob.content(), mode)?;
                    }
                }
                // A submodule's commit is not in this repository; the
                // directory keeps the shape of the tree.
                Some(ObjectType::Commit) => fs::create_dir(&path).map_err(io(&path))?,
                _ => {
                    return Err(GitError::UnsafeTreeEntry {
                        path: String::from_utf8_lossy(&rel).into_owned(),
                    })
                }
            }
        }
    }
    Ok(())
}

/// Names git itself would never write into a tree and that could escape
/// `dest` or smuggle a repository into the verifier's view.
fn safe_name(name: &[u8]) -> bool {
    !(name.is_empty()
        || name == b"."
        || name == b".."
        || name.eq_ignore_ascii_case(b".git")
        || name.contains(&b'/')
        || name.contains(&0))
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), GitError> {
    // create_new is O_CREAT|O_EXCL: it never follows or reuses what is there.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    file.write_all(content).map_err(io(path))?;
    // The umask may have stripped bits; the verifier must see the committed mode.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io(path))
}

fn prepare_dest(dest: &Path) -> Result<(), GitError> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(io(dest))
        }
        Err(e) => Err(io(dest)(e)),
        Ok(meta) if !meta.is_dir() => Err(GitError::DestNotEmpty {
            path: dest.to_path_buf(),
        }),
        Ok(_) => {
            let mut entries = fs::read_dir(dest).map_err(io(dest))?;
            match entries.next() {
                None => Ok(()),
                Some(Ok(_)) => Err(GitError::DestNotEmpty {
                    path: dest.to_path_buf(),
                }),
                Some(Err(e)) => Err(io(dest)(e)),
            }
        }
    }
}
