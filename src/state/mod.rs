//! Run state on disk: paths, the ledger, cards, journals, the lock and the
//! answer-auth key.
//!
//! Everything here is written by the host process only. Writers never follow
//! a symlink an agent may have planted: a state path that is not a plain file
//! is removed and written anew. Nothing here talks to git or containers.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod approver;
pub mod cards;
pub mod gate;
pub mod jsonl;
pub mod key;
pub mod ledger;
pub mod lock;

/// Where proctor keeps its state inside a repository.
///
/// A run has two roots. `root` is the user's checkout: the lock, events,
/// logs, quarantine, caches and cards live there, never committed. `work`
/// is the tree the agent edits and proctor commits (the run's own worktree,
/// `.proctor/wt/<root>`): the ledger and the journals live there, committed
/// with the work. Outside a run both are the checkout's root.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub state: PathBuf,
    pub events: PathBuf,
    pub ledger: PathBuf,
    pub journal: PathBuf,
    pub logs: PathBuf,
    pub lock: PathBuf,
    pub caches: PathBuf,
    pub inbox: PathBuf,
    /// The tree the agent edits and proctor commits.
    pub work: PathBuf,
    /// `work`'s `.proctor/` (the ledger and the journals).
    pub work_state: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Paths {
        Paths::with_work(root, root)
    }

    /// A run's paths: private state in the checkout at `root`, committed
    /// state in the worktree at `work`.
    pub fn with_work(root: &Path, work: &Path) -> Paths {
        let state = root.join(".proctor");
        let work_state = work.join(".proctor");
        Paths {
            root: root.to_path_buf(),
            events: state.join("events.jsonl"),
            ledger: work_state.join("ledger.jsonl"),
            journal: work_state.join("journal"),
            logs: state.join("logs"),
            lock: state.join("lock"),
            caches: state.join("caches"),
            inbox: root.join("INBOX"),
            state,
            work: work.to_path_buf(),
            work_state,
        }
    }

    pub fn journal_for(&self, loop_id: &str) -> PathBuf {
        self.journal.join(format!("{loop_id}.md"))
    }

    pub fn card_for(&self, loop_id: &str) -> PathBuf {
        self.inbox.join(format!("{loop_id}.md"))
    }

    /// Path of a file relative to the tree it is in (the worktree, else
    /// the checkout), for messages and prompts.
    pub fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.work)
            .or_else(|_| path.strip_prefix(&self.root))
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

/// Paths proctor owns that never enter an attempt's commit nor count as a
/// dirty working tree: runtime state, logs and cards. The ledger and the
/// journals are not private: they are committed with the work.
pub fn is_private(rel: &str) -> bool {
    const PRIVATE_DIRS: [&str; 6] = [
        ".proctor/logs/",
        ".proctor/caches/",
        ".proctor/quarantine/",
        ".proctor/wt/",
        ".proctor/tmp/",
        "INBOX/",
    ];
    const PRIVATE_FILES: [&str; 4] = [
        ".proctor/events.jsonl",
        ".proctor/lock",
        ".proctor/runner.log",
        "INBOX",
    ];
    PRIVATE_DIRS.iter().any(|d| rel.starts_with(d)) || PRIVATE_FILES.contains(&rel)
}

/// The `info/exclude` patterns for [`is_private`] paths.
pub const EXCLUDE_PATTERNS: [&str; 9] = [
    "/.proctor/logs/",
    "/.proctor/caches/",
    "/.proctor/quarantine/",
    "/.proctor/wt/",
    "/.proctor/tmp/",
    "/.proctor/events.jsonl",
    "/.proctor/lock",
    "/.proctor/runner.log",
    "/INBOX/",
];

/// Makes `dir` a real directory: a symlink or file in its place is removed.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        if meta.is_dir() {
            return Ok(());
        }
        fs::remove_file(dir)?;
    }
    fs::create_dir_all(dir)
}

/// Removes whatever is at `path` unless it is a plain file, so that the next
/// write cannot be redirected through a planted symlink. Returns true when
/// something was repaired.
pub fn repair_file(path: &Path) -> std::io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(false),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map(|_| true),
        Ok(_) => fs::remove_file(path).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Appends one line to a state file, never through a symlink.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    repair_file(path)?;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Cuts a state file back to `len` bytes (what it held before a write
/// that must be undone), or removes it when it did not exist (`None`).
/// Never through a symlink.
pub fn truncate_to(path: &Path, len: Option<u64>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match len {
        Some(len) => fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?
            .set_len(len),
        None => match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Replaces a state file's content atomically, never through a symlink.
pub fn write_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    ensure_dir(parent)?;
    repair_file(path)?;
    let tmp = parent.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    fs::write(&tmp, content)?;
    fs::rename(&tmp, path)
}

/// Seconds since the Unix epoch, as a float (events and ledger timestamps).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Reads at most the last `max` bytes of a text file (lossy UTF-8). A link
/// or anything but a plain file reads as nothing: an agent-planted link to
/// a host file must not pour that file into a prompt.
pub fn read_tail(path: &Path, max: usize) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let start = bytes.len().saturating_sub(max);
    Some(String::from_utf8_lossy(&bytes[start..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_paths_stay_out_of_commits() {
        assert!(is_private(".proctor/logs/a.run1.log"));
        assert!(is_private(".proctor/events.jsonl"));
        assert!(is_private("INBOX/fix.md"));
        assert!(!is_private(".proctor/ledger.jsonl"));
        assert!(!is_private(".proctor/journal/fix.md"));
        assert!(!is_private("src/INBOX.rs"));
    }

    #[test]
    fn read_tail_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("secret");
        fs::write(&outside, "host secret").unwrap();
        let journal = dir.path().join("fix.md");
        std::os::unix::fs::symlink(&outside, &journal).unwrap();
        assert_eq!(read_tail(&journal, 100), None);
        fs::remove_file(&journal).unwrap();
        fs::write(&journal, "0123456789").unwrap();
        assert_eq!(read_tail(&journal, 4).as_deref(), Some("6789"));
    }

    #[test]
    fn append_replaces_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        fs::write(&outside, "keep").unwrap();
        let state = dir.path().join("ledger.jsonl");
        std::os::unix::fs::symlink(&outside, &state).unwrap();
        append_line(&state, "{}").unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(fs::read_to_string(&state).unwrap(), "{}\n");
    }
}
