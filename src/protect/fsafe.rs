//! Filesystem access that never follows a link an agent planted.
//!
//! Every path is walked component by component with `lstat`: a parent that
//! is a symlink (or a file) where a directory should be is reported, never
//! entered. Files are opened with `O_NOFOLLOW | O_NONBLOCK` and checked to
//! be regular before a byte is read, so a planted link to a host file or a
//! FIFO can neither leak nor hang anything.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::git::BlobMode;

/// Bytes of one file a quarantine record keeps; the rest is counted.
pub const SAVE_CAP: u64 = 16 * 1024 * 1024;

/// What sits at a path, found without following any link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Absent,
    File {
        sha256: [u8; 32],
        exec: bool,
        len: u64,
    },
    Link {
        target: Vec<u8>,
    },
    Dir,
    /// A FIFO, socket or device.
    Special,
    /// A parent of the path is not a real directory.
    Blocked {
        /// Repo-relative path of the parent in the way.
        ancestor: String,
        /// What it is instead (a link to its target, or a file).
        link_target: Option<Vec<u8>>,
    },
}

/// Splits a repo-relative path into its components, refusing anything that
/// could leave `root`.
pub fn components(rel: &str) -> io::Result<Vec<&str>> {
    let parts: Vec<&str> = rel.split('/').collect();
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsafe repository path `{rel}`"),
        ));
    }
    Ok(parts)
}

/// Looks at `root/rel` without following links anywhere below `root`.
pub fn locate(root: &Path, rel: &str) -> io::Result<Found> {
    let parts = components(rel)?;
    let mut path = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Absent),
            Err(e) => return Err(e),
        };
        let last = i + 1 == parts.len();
        let kind = meta.file_type();
        if !last {
            if kind.is_dir() {
                continue;
            }
            let link_target = kind
                .is_symlink()
                .then(|| fs::read_link(&path).map(|t| t.as_os_str().as_bytes().to_vec()))
                .transpose()?;
            return Ok(Found::Blocked {
                ancestor: parts[..=i].join("/"),
                link_target,
            });
        }
        if kind.is_symlink() {
            let target = fs::read_link(&path)?;
            return Ok(Found::Link {
                target: target.as_os_str().as_bytes().to_vec(),
            });
        }
        if kind.is_dir() {
            return Ok(Found::Dir);
        }
        if !kind.is_file() {
            return Ok(Found::Special);
        }
        let (sha256, len, exec) = hash_file(&path)?;
        return Ok(Found::File { sha256, exec, len });
    }
    Ok(Found::Absent)
}

fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// SHA-256, length and executable bit of a regular file (never a link).
pub fn hash_file(path: &Path) -> io::Result<([u8; 32], u64, bool)> {
    let mut file = open_regular(path)?;
    let exec = file.metadata()?.permissions().mode() & 0o111 != 0;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hasher.finalize().into(), len, exec))
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Up to `cap` bytes of a regular file under `root` (never through a link).
pub fn read_capped(root: &Path, rel: &str, cap: u64) -> io::Result<Vec<u8>> {
    let parts = components(rel)?;
    let mut path = root.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        path.push(part);
        if !fs::symlink_metadata(&path)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a parent of `{rel}` is not a directory"),
            ));
        }
    }
    path.push(parts[parts.len() - 1]);
    let file = open_regular(&path)?;
    let mut out = Vec::new();
    file.take(cap).read_to_end(&mut out)?;
    Ok(out)
}

/// Removes whatever is at `path` (a directory with its content), never
/// following a link. Absent is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes every parent of `root/rel` a real directory: a link or file in the
/// way is removed (not followed) and replaced. Returns the full path.
fn make_parents(root: &Path, parts: &[&str]) -> io::Result<PathBuf> {
    let mut path = root.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&path)?;
                fs::create_dir(&path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&path)?,
            Err(e) => return Err(e),
        }
    }
    path.push(parts[parts.len() - 1]);
    Ok(path)
}

/// Puts `root/rel` into the trusted state: `Some((mode, content))` writes a
/// fresh file or link, `None` removes the path. Whatever was there (a link
/// to anywhere, a directory, a FIFO) is removed first, never written through.
pub fn restore(root: &Path, rel: &str, trusted: Option<(BlobMode, &[u8])>) -> io::Result<()> {
    let parts = components(rel)?;
    let Some((mode, content)) = trusted else {
        // Removing: if a parent is not a real directory, the path does not
        // exist below `root` anyway; the parent itself is handled by its
        // own record.
        if let Found::Blocked { .. } = locate(root, rel)? {
            return Ok(());
        }
        return remove_any(&root.join(rel));
    };
    let path = make_parents(root, &parts)?;
    remove_any(&path)?;
    match mode {
        BlobMode::Link => std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(content), &path),
        BlobMode::File | BlobMode::Exec => {
            let bits = if mode == BlobMode::Exec { 0o755 } else { 0o644 };
            write_new(&path, content, bits)
        }
    }
}

/// Creates a new file (never reusing or following what is there).
pub fn write_new(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(path)?;
    file.write_all(content)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// Makes `root/rel` a fresh, empty, real directory (whatever was there,
/// and any link in place of a parent, is removed first).
pub fn make_dir(root: &Path, rel: &str) -> io::Result<()> {
    let parts = components(rel.trim_end_matches('/'))?;
    let path = make_parents(root, &parts)?;
    remove_any(&path)?;
    fs::create_dir(&path)
}

/// Writes `content` to `root/rel`, creating parents, replacing what is there.
pub fn write_under(root: &Path, rel: &str, content: &[u8]) -> io::Result<()> {
    let parts = components(rel)?;
    let path = make_parents(root, &parts)?;
    remove_any(&path)?;
    write_new(&path, content, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlinked_parent_is_reported_and_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("t.sh"), "outside").unwrap();
        let root = dir.path();
        std::os::unix::fs::symlink(outside.path(), root.join("tests")).unwrap();
        match locate(root, "tests/t.sh").unwrap() {
            Found::Blocked {
                ancestor,
                link_target,
            } => {
                assert_eq!(ancestor, "tests");
                assert!(link_target.is_some());
            }
            other => panic!("{other:?}"),
        }
        restore(root, "tests/t.sh", Some((BlobMode::File, b"trusted"))).unwrap();
        assert_eq!(
            fs::read_to_string(outside.path().join("t.sh")).unwrap(),
            "outside"
        );
        assert_eq!(
            fs::read_to_string(root.join("tests/t.sh")).unwrap(),
            "trusted"
        );
        assert!(fs::symlink_metadata(root.join("tests")).unwrap().is_dir());
    }

    #[test]
    fn a_leaf_link_is_replaced_and_its_target_kept() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::write(outside.path(), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("exam.sh")).unwrap();
        assert!(matches!(
            locate(dir.path(), "exam.sh").unwrap(),
            Found::Link { .. }
        ));
        assert!(read_capped(dir.path(), "exam.sh", 100).is_err());
        restore(dir.path(), "exam.sh", Some((BlobMode::Exec, b"exit 1\n"))).unwrap();
        assert_eq!(fs::read_to_string(outside.path()).unwrap(), "secret");
        match locate(dir.path(), "exam.sh").unwrap() {
            Found::File { exec, len, .. } => assert!(exec && len == 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a"] {
            assert!(components(bad).is_err(), "{bad}");
        }
        assert_eq!(components("a/b.txt").unwrap(), ["a", "b.txt"]);
    }

    #[test]
    fn a_fifo_is_special_and_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert_eq!(locate(dir.path(), "fifo").unwrap(), Found::Special);
        assert!(read_capped(dir.path(), "fifo", 10).is_err());
    }
}
