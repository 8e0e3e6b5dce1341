//! `.proctor/lock`: one active run per repository.
//!
//! The lock holds the owner's pid and its process start time; a lock whose
//! process is gone (or whose pid was reused by another process) is stale and
//! is reclaimed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another proctor run is active in this repository (pid {pid})")]
    Held { pid: i32 },
    #[error("cannot write the lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::exit_codes::DomainError for LockError {
    fn is_users_to_fix(&self) -> bool {
        true
    }

    fn hint(&self) -> Option<String> {
        match self {
            LockError::Held { .. } => Some("wait for it, or end it with `proctor stop`".into()),
            LockError::Io { .. } => None,
        }
    }
}

/// A held lock; removed on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// The start time of a process (clock ticks since boot), from /proc.
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The pid holding the lock at `path`, if that process is still alive.
pub fn holder(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let pid: i32 = parts.next()?.parse().ok()?;
    let start: u64 = parts.next()?.parse().ok()?;
    (pid > 0 && process_start(pid) == Some(start)).then_some(pid)
}

impl RunLock {
    pub fn acquire(path: &Path) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            super::ensure_dir(parent).map_err(io)?;
        }
        let pid = std::process::id() as i32;
        let start = process_start(pid).unwrap_or(0);
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut file) => {
                    file.write_all(format!("{pid} {start}\n").as_bytes())
                        .map_err(io)?;
                    return Ok(RunLock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if let Some(holder) = holder(path) {
                        return Err(LockError::Held { pid: holder });
                    }
                    // Stale: its process is gone. Reclaim it.
                    super::repair_file(path).map_err(io)?;
                    let _ = fs::remove_file(path);
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(LockError::Held { pid: 0 })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_lock_is_held_and_a_dead_one_is_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = RunLock::acquire(&path).unwrap();
        assert!(matches!(
            RunLock::acquire(&path),
            Err(LockError::Held { .. })
        ));
        drop(lock);
        fs::write(&path, "999999999 1\n").unwrap();
        let _lock = RunLock::acquire(&path).unwrap();
    }
}
