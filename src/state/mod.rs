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
pub mod registry;

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
    /// Answers and approvals recorded by `proctor answer`, in the checkout
    /// (private): the next run start moves them into the run's ledger.
    pub answers: PathBuf,
    /// The tree the agent edits and proctor commits.
    pub work: PathBuf,
    /// `work`'s `.proctor/` (the ledger and the journals).
    pub work_state: PathBuf,
    /// Present while an agent's attempt in `work` is not yet committed
    /// (private state; one per worktree a run works in at once).
    pub attempt: PathBuf,
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
            attempt: state.join("tmp").join("attempt"),
            answers: state.join("answers.jsonl"),
            state,
            work: work.to_path_buf(),
            work_state,
        }
    }

    /// These paths for a parallel child working in its worktree `work`
    /// named `name`: its own attempt marker beside its siblings'.
    pub fn for_child(root: &Path, work: &Path, name: &str) -> Paths {
        let mut paths = Paths::with_work(root, work);
        paths.attempt = paths.state.join("tmp").join(format!("attempt.{name}"));
        paths
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
    const PRIVATE_FILES: [&str; 5] = [
        ".proctor/events.jsonl",
        ".proctor/answers.jsonl",
        ".proctor/lock",
        ".proctor/runner.log",
        "INBOX",
    ];
    PRIVATE_DIRS.iter().any(|d| rel.starts_with(d)) || PRIVATE_FILES.contains(&rel)
}

/// The `info/exclude` patterns for [`is_private`] paths.
pub const EXCLUDE_PATTERNS: [&str; 10] = [
    "/.proctor/logs/",
    "/.proctor/answers.jsonl",
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
    let mut file = open_append(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Opens a state file for appending (created if missing), never through a
/// symlink: whatever else is in its place is removed first, and a link
/// planted between that and the open makes the open fail (`O_NOFOLLOW`)
/// instead of writing where it points.
pub fn open_append(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    repair_file(path)?;
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates (or truncates) the state file `name` in the directory `dir`
/// without following a symlink anywhere proctor made: `dir` is made a real
/// directory and opened as a handle (`O_DIRECTORY | O_NOFOLLOW`), and the
/// file is opened relative to it with `O_NOFOLLOW`. A symlink, FIFO,
/// socket or device planted at `name` is removed (never followed, never
/// opened for reading) and described in the second value, for the caller
/// to report; a directory there is an error.
pub fn create_in(dir: &Path, name: &str) -> std::io::Result<(fs::File, Option<String>)> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unsafe state file name `{name}`"),
        )
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(invalid());
    }
    let c_name = CString::new(name).map_err(|_| invalid())?;
    ensure_dir(dir)?;
    let c_dir = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| invalid())?;
    // SAFETY: `c_dir` is a valid NUL-terminated string for the call's
    // duration; the returned descriptor is checked before it is owned.
    let raw = unsafe {
        libc::open(
            c_dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor this function alone owns.
    let dir_fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut replaced = None;
    for _ in 0..4 {
        // SAFETY: `dir_fd` is open and `c_name` is a valid NUL-terminated
        // string for the call's duration.
        let raw = unsafe {
            libc::openat(
                dir_fd.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_NOFOLLOW
                    | libc::O_NONBLOCK
                    | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        let error = std::io::Error::last_os_error();
        if raw >= 0 {
            // SAFETY: `raw` is a fresh descriptor this function alone owns.
            let file = fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
            if file.metadata()?.is_file() {
                file.set_len(0)?;
                return Ok((file, replaced));
            }
            // A FIFO with a reader, a device: not ours to write into.
        } else if !matches!(error.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENXIO)) {
            return Err(error);
        }
        replaced.get_or_insert_with(|| describe_at(&dir.join(name)));
        // SAFETY: as for `openat` above; flags 0 removes a non-directory.
        if unsafe { libc::unlinkat(dir_fd.as_raw_fd(), c_name.as_ptr(), 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Err(std::io::Error::other(format!(
        "`{}` kept being replaced while it was opened",
        dir.join(name).display()
    )))
}

/// What a path that is not a plain file is, for a report (`a symlink to
/// `/etc/passwd``, `a FIFO`), found without following it.
pub fn describe_at(path: &Path) -> String {
    use std::os::unix::fs::FileTypeExt;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::read_link(path) {
            Ok(target) => format!("a symlink to `{}`", target.display()),
            Err(_) => "a symlink".into(),
        },
        Ok(m) if m.file_type().is_fifo() => "a FIFO".into(),
        Ok(m) if m.file_type().is_socket() => "a socket".into(),
        Ok(m) if m.is_dir() => "a directory".into(),
        Ok(m) if m.is_file() => "a file".into(),
        Ok(_) => "a device".into(),
        Err(_) => "gone".into(),
    }
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
    // A leftover or planted entry at the temporary name goes first; the
    // exclusive, no-follow create then cannot write through a link.
    repair_file(&tmp)?;
    let _ = fs::remove_file(&tmp);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        file.write_all(content)?;
    }
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
    fn create_in_replaces_a_planted_link_and_says_what_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        fs::write(&outside, "keep").unwrap();
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        std::os::unix::fs::symlink(&outside, logs.join("fix.run1.log")).unwrap();
        let (mut file, replaced) = create_in(&logs, "fix.run1.log").unwrap();
        file.write_all(b"transcript").unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(
            fs::read_to_string(logs.join("fix.run1.log")).unwrap(),
            "transcript"
        );
        assert_eq!(
            replaced,
            Some(format!("a symlink to `{}`", outside.display()))
        );
        // A plain file is truncated, and nothing is reported.
        let (_, replaced) = create_in(&logs, "fix.run1.log").unwrap();
        assert_eq!(replaced, None);
        assert_eq!(fs::read_to_string(logs.join("fix.run1.log")).unwrap(), "");
        // A FIFO is removed, never opened for writing (which would hang).
        let fifo =
            std::ffi::CString::new(logs.join("fifo.log").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let (_, replaced) = create_in(&logs, "fifo.log").unwrap();
        assert_eq!(replaced.as_deref(), Some("a FIFO"));
        assert!(fs::symlink_metadata(logs.join("fifo.log"))
            .unwrap()
            .is_file());
        // The directory itself a link: made a real directory, the target
        // untouched.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
        create_in(&linked, "a.log").unwrap();
        assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
        assert!(fs::symlink_metadata(&linked).unwrap().is_dir());
        assert!(create_in(&logs, "../x").is_err());
    }

    #[test]
    fn write_file_never_writes_through_a_link_at_its_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        fs::write(&outside, "keep").unwrap();
        let state = dir.path().join("attempt");
        let tmp = dir
            .path()
            .join(format!(".attempt.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&outside, &tmp).unwrap();
        write_file(&state, b"fix 1\n").unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(fs::read_to_string(&state).unwrap(), "fix 1\n");
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
