//! Writing a committed tree to a plain directory for the verifier.
//!
//! Blobs are written straight from the object database: no checkout
//! machinery, no index, no filters, no attributes. The tree may have been
//! shaped by the agent, so every name is checked and nothing already on disk
//! is ever followed or overwritten.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};

use super::{git, io, GitError};

const MODE_LINK: i32 = 0o120000;
const MODE_EXEC: i32 = 0o100755;

pub(super) fn export(repo: &Repository, root: &Tree<'_>, dest: &Path) -> Result<(), GitError> {
    prepare_dest(dest)?;
    let odb = repo.odb().map_err(git("open object database"))?;
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
                    if entry.filemode() == MODE_LINK {
                        let blob = repo.find_blob(entry.id()).map_err(git("read blob"))?;
                        // Creates the link itself; the target is never opened.
                        std::os::unix::fs::symlink(OsStr::from_bytes(blob.content()), &path)
                            .map_err(io(&path))?;
                    } else {
                        let mode = if entry.filemode() == MODE_EXEC {
                            0o755
                        } else {
                            0o644
                        };
                        write_blob(repo, &odb, entry.id(), &path, mode)?;
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

/// Writes blob `id` to a new file at `path`, streamed from the object
/// database in [`CHUNK`]-sized pieces (a loose object is never held whole
/// in memory), with runs of zeros left as holes: a sparse file the agent
/// committed stays sparse in the exam's tree (on a tmpfs above all).
fn write_blob(
    repo: &Repository,
    odb: &git2::Odb<'_>,
    id: Oid,
    path: &Path,
    mode: u32,
) -> Result<(), GitError> {
    // create_new is O_CREAT|O_EXCL: it never follows or reuses what is there.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    match odb.reader(id) {
        Ok((mut reader, _, _)) => copy_sparse(&mut reader, &mut file).map_err(io(path))?,
        // Packed objects cannot be streamed by libgit2: read whole (what
        // an attempt adds is loose, and capped by `resources: {file}`).
        Err(_) => {
            let blob = repo.find_blob(id).map_err(git("read blob"))?;
            copy_sparse(&mut blob.content(), &mut file).map_err(io(path))?
        }
    };
    // The umask may have stripped bits; the verifier must see the committed mode.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io(path))
}

/// Bytes read and written at a time, and the size of a hole worth leaving.
const CHUNK: usize = 64 * 1024;

/// Copies `from` into the new, empty `to`, seeking over chunks of zeros
/// instead of writing them. Returns the bytes copied.
pub(super) fn copy_sparse(from: &mut dyn Read, to: &mut fs::File) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    let mut hole = false;
    loop {
        // Fill the chunk, so holes line up with whole chunks.
        let mut filled = 0;
        while filled < CHUNK {
            match from.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        let chunk = &buf[..filled];
        if chunk.iter().all(|b| *b == 0) {
            to.seek(SeekFrom::Current(filled as i64))?;
            hole = true;
        } else {
            to.write_all(chunk)?;
            hole = false;
        }
        total += filled as u64;
        if filled < CHUNK {
            break;
        }
    }
    if hole {
        // A trailing hole: seeking alone leaves the file short.
        to.set_len(total)?;
    }
    Ok(total)
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
