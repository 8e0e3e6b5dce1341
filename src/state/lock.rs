//! `.proctor/lock`: one active run per repository.
//!
//! The lock is a kernel lock: an open-file-description write lock
//! (`F_OFD_SETLK`) on `.proctor/lock`, held for the run's whole life and
//! released by the kernel when the run's process ends, however it ends. Two
//! runs starting at the same instant cannot both get it, and a run killed
//! with `kill -9` leaves nothing stale behind. The file's content (the
//! holder's pid and process start time) only says who holds it, for
//! `stop`, `status` and the detached start; whether a run is active is
//! decided by the kernel lock alone, never by the content.
//!
//! The file is never deleted: a run that unlinked it on exit could leave a
//! second run locking the unlinked file while a third locks a new one. The
//! holder empties it when it ends instead.
//!
//! OFD locks rather than `flock`: `F_OFD_GETLK` asks whether the lock is
//! held without taking it, so `status` or a cron tick polling the lock
//! can never make a starting run believe another one is active. They
//! belong to the open file, not the process, so a second `open` of the
//! file in the same process (a sweep, a view) cannot release them, as it
//! would a POSIX record lock.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another proctor run is active in this repository ({who})")]
    Held {
        /// The holder's pid here; 0 when it is not visible from here.
        pid: i32,
        /// Who holds it, for people ([`HolderInfo`]'s `Display`).
        who: String,
    },
    #[error("cannot take the lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
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

/// What the lock file says about the run that holds the lock: enough for a
/// person to find it when its pid means nothing here (a run in a container
/// or on another host that shares the repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderInfo {
    /// The holder's pid, alive in this pid namespace; 0 when it is not.
    pub pid: i32,
    /// What the holder wrote, if it wrote anything readable.
    pub named: Option<Owner>,
}

/// The content of a held lock: `<pid> <start> [ns=<pid namespace inode>]
/// [host=<hostname>] [since=<unix seconds>]`. Only the first two fields are
/// required (older versions wrote only those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub start: u64,
    pub pid_ns: Option<u64>,
    pub host: Option<String>,
    pub since: Option<u64>,
}

impl Owner {
    fn ours() -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            pid,
            start: process_start(pid).unwrap_or(0),
            pid_ns: own_pid_ns(),
            host: own_host(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
        }
    }

    fn line(&self) -> String {
        let mut line = format!("{} {}", self.pid, self.start);
        if let Some(ns) = self.pid_ns {
            line.push_str(&format!(" ns={ns}"));
        }
        if let Some(host) = &self.host {
            line.push_str(&format!(" host={host}"));
        }
        if let Some(since) = self.since {
            line.push_str(&format!(" since={since}"));
        }
        line.push('\n');
        line
    }

    /// Parses [`Owner::line`]; unknown or malformed extra fields are
    /// ignored (the file is in the working tree: anything may be there).
    fn parse(text: &str) -> Option<Owner> {
        let line = text.strip_suffix('\n')?;
        let mut fields = line.split(' ');
        let pid: i32 = fields.next()?.parse().ok()?;
        let start: u64 = fields.next()?.parse().ok()?;
        if pid <= 0 {
            return None;
        }
        let mut owner = Owner {
            pid,
            start,
            pid_ns: None,
            host: None,
            since: None,
        };
        for field in fields {
            match field.split_once('=') {
                Some(("ns", v)) => owner.pid_ns = v.parse().ok(),
                Some(("host", v)) => owner.host = Some(v.to_string()).filter(|h| is_host_name(h)),
                Some(("since", v)) => owner.since = v.parse().ok(),
                _ => {}
            }
        }
        Some(owner)
    }
}

/// A host name as shown to people: letters, digits, `.`, `-`, `_` only.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid` reads
/// `pid:[INODE]`).
fn own_pid_ns() -> Option<u64> {
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

fn own_host() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|h| is_host_name(h))
}

impl std::fmt::Display for HolderInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid > 0 {
            return write!(f, "pid {}", self.pid);
        }
        let Some(owner) = &self.named else {
            return f.write_str("its holder has not written who it is");
        };
        let since = owner.since.and_then(|since| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Some(format!(", started {} ago", ago(now.saturating_sub(since))))
        });
        let since = since.unwrap_or_default();
        let host = owner
            .host
            .as_ref()
            .map(|h| format!(" on host `{h}`"))
            .unwrap_or_default();
        let elsewhere = match (owner.pid_ns, own_pid_ns()) {
            (Some(theirs), Some(ours)) if theirs != ours => "in another pid namespace",
            _ => "not visible from here",
        };
        write!(f, "pid {} {elsewhere}{host}{since}", owner.pid)
    }
}

/// `42s`, `3m 5s`, `2h 10m`.
fn ago(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

/// A held lock; released (and its content emptied) on drop, or by the
/// kernel when the process ends.
#[derive(Debug)]
pub struct RunLock {
    file: fs::File,
}

/// The start time of a process (clock ticks since boot), from /proc.
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How long a reader waits for a just-taken lock's content to name its
/// holder: the holder writes it right after taking the lock.
const CONTENT_WAIT: Duration = Duration::from_millis(500);
const CONTENT_POLL: Duration = Duration::from_millis(5);

/// The pid of the run holding the lock at `path`; `None` when no run holds
/// it. `Some(0)` when the lock is held but its content never named a
/// process alive here (a holder in another pid namespace or on another
/// host: [`holder_info`] says more).
pub fn holder(path: &Path) -> Option<i32> {
    holder_info(path).map(|info| info.pid)
}

/// Who holds the lock at `path`; `None` when no run holds it.
pub fn holder_info(path: &Path) -> Option<HolderInfo> {
    let file = open_no_follow(path, false).ok()?;
    holder_of(&file)
}

/// Who holds the lock on `file`, waiting briefly for a holder that has
/// just taken it to write its pid; `None` once the lock is free.
fn holder_of(file: &fs::File) -> Option<HolderInfo> {
    let waited = std::time::Instant::now();
    loop {
        if !is_locked(file).ok()? {
            return None;
        }
        let named = read_owner(file);
        if let Some(owner) = &named {
            if process_start(owner.pid) == Some(owner.start) {
                return Some(HolderInfo {
                    pid: owner.pid,
                    named,
                });
            }
        }
        if waited.elapsed() >= CONTENT_WAIT {
            return Some(HolderInfo { pid: 0, named });
        }
        std::thread::sleep(CONTENT_POLL);
    }
}

/// The [`Owner`] line written by [`RunLock::acquire`].
fn read_owner(file: &fs::File) -> Option<Owner> {
    let mut buf = [0u8; 256];
    let n = file.read_at(&mut buf, 0).ok()?;
    Owner::parse(std::str::from_utf8(&buf[..n]).ok()?)
}

fn open_no_follow(path: &Path, write: bool) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// A write lock over the whole file, of type `kind`.
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero bytes are a valid value
    // (and OFD requests require `l_pid` to be 0).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0;
    lock
}

/// Whether some open file (in any process) holds the lock, without taking it.
fn is_locked(file: &fs::File) -> io::Result<bool> {
    let mut lock = whole_file(libc::F_WRLCK);
    // SAFETY: the descriptor is open for the call's duration and `lock`
    // is a valid, exclusively borrowed `flock` the kernel writes into.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Takes the lock without waiting; false when another open file holds it.
fn try_lock(file: &fs::File) -> io::Result<bool> {
    let lock = whole_file(libc::F_WRLCK);
    // SAFETY: the descriptor is open for the call's duration and `lock`
    // is a valid `flock` the kernel only reads.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc == -1 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(error),
        };
    }
    Ok(true)
}

impl RunLock {
    /// Takes the repository's lock, or says who holds it.
    pub fn acquire(path: &Path) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            super::ensure_dir(parent).map_err(io)?;
        }
        let line = Owner::ours().line();
        // A few rounds: only a file replaced between our open and our lock
        // (someone deleted `.proctor/`) sends us round again.
        for _ in 0..8 {
            // A link or directory planted in its place is never a lock.
            super::repair_file(path).map_err(io)?;
            let file = open_no_follow(path, true).map_err(io)?;
            if !try_lock(&file).map_err(io)? {
                match holder_of(&file) {
                    Some(info) => {
                        return Err(LockError::Held {
                            pid: info.pid,
                            who: info.to_string(),
                        })
                    }
                    // Let go meanwhile: try again.
                    None => continue,
                }
            }
            // The lock must be on the file the path names now, or a run
            // that opens the path later would lock another file.
            let ours = file.metadata().map_err(io)?;
            match fs::symlink_metadata(path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
                _ => continue,
            }
            file.set_len(0).map_err(io)?;
            file.write_all_at(line.as_bytes(), 0).map_err(io)?;
            return Ok(RunLock { file });
        }
        Err(io(io::Error::other(
            "the lock file kept being replaced while it was taken",
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Still held here, so no other run's content is erased; the kernel
        // releases the lock when the file closes, just after.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Whether the lock is free once every holder let go. Another test's
    /// child process holds a copy of every descriptor between its fork and
    /// its exec (they close on exec), so a release may show a moment late.
    fn released(path: &Path) -> bool {
        for _ in 0..1000 {
            if holder(path).is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_live_lock_is_held_and_a_dead_one_is_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = RunLock::acquire(&path).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(holder(&path), Some(me));
        match RunLock::acquire(&path) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, me),
            other => panic!("{other:?}"),
        }
        drop(lock);
        assert!(released(&path));
        assert!(path.exists(), "the lock file is never deleted");
        // What a `kill -9`ed run leaves: content, no kernel lock.
        fs::write(&path, format!("{me} 1\n")).unwrap();
        assert_eq!(holder(&path), None);
        let _lock = RunLock::acquire(&path).unwrap();
        assert_eq!(holder(&path), Some(me));
    }

    #[test]
    fn a_holder_in_another_pid_namespace_is_described_not_shown_as_pid_0() {
        // What a run in a container sharing the repository leaves: a pid
        // that means nothing here, its namespace, host and start.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = RunLock::acquire(&path).unwrap();
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 65;
        fs::write(&path, format!("17 1 ns=1 host=box-7 since={since}\n")).unwrap();
        let info = holder_info(&path).unwrap();
        assert_eq!(info.pid, 0);
        let shown = info.to_string();
        assert!(
            shown.starts_with("pid 17 in another pid namespace on host `box-7`, started 1m "),
            "{shown}"
        );
        match RunLock::acquire(&path) {
            Err(e @ LockError::Held { pid: 0, .. }) => {
                assert!(
                    e.to_string().contains("pid 17 in another pid namespace"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Garbage where the host goes is left out, never shown.
        fs::write(&path, "17 1 host=\x1b[2J\n").unwrap();
        assert_eq!(
            holder_info(&path).unwrap().to_string(),
            "pid 17 not visible from here"
        );
        fs::write(&path, "").unwrap();
        assert_eq!(
            holder_info(&path).unwrap().to_string(),
            "its holder has not written who it is"
        );
        drop(lock);
    }

    #[test]
    fn our_own_lock_names_us_with_our_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let _lock = RunLock::acquire(&path).unwrap();
        let info = holder_info(&path).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(info.pid, me);
        let owner = info.named.clone().unwrap();
        assert_eq!(owner.pid_ns, own_pid_ns());
        assert!(owner.since.is_some());
        assert_eq!(info.to_string(), format!("pid {me}"));
    }

    #[test]
    fn content_without_the_kernel_lock_names_no_holder() {
        // The race of issue 13: a lock file that names a live process (as a
        // half-written or foreign file may) does not make a run active.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let me = std::process::id() as i32;
        let start = process_start(me).unwrap();
        fs::write(&path, format!("{me} {start}\n")).unwrap();
        assert_eq!(holder(&path), None);
        fs::write(&path, "").unwrap();
        assert_eq!(holder(&path), None);
    }

    #[test]
    fn a_planted_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        let path = dir.path().join("lock");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        assert_eq!(holder(&path), None);
        let lock = RunLock::acquire(&path).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        drop(lock);
    }

    #[test]
    fn polling_the_lock_never_makes_a_start_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        RunLock::acquire(&path).map(drop).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                // Between this thread's starts the lock is free or ours.
                let me = std::process::id() as i32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let seen = holder(&path);
                    assert!(seen.is_none() || seen == Some(me), "{seen:?}");
                }
            })
        };
        for _ in 0..200 {
            drop(RunLock::acquire(&path).unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        poller.join().unwrap();
    }

    #[test]
    fn a_hundred_simultaneous_starts_make_exactly_one_run() {
        // Each thread opens the file itself: OFD locks conflict between
        // open files, in one process as across processes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".proctor/lock");
        let me = std::process::id() as i32;
        for round in 0..20 {
            let barrier = Arc::new(Barrier::new(100));
            let held = Arc::new(Barrier::new(100));
            let threads: Vec<_> = (0..100)
                .map(|_| {
                    let (path, barrier, held) = (path.clone(), barrier.clone(), held.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let result = RunLock::acquire(&path);
                        // Every start has answered before the winner lets go.
                        held.wait();
                        match result {
                            Ok(lock) => {
                                drop(lock);
                                true
                            }
                            Err(LockError::Held { pid, .. }) => {
                                assert_eq!(pid, me);
                                false
                            }
                            Err(e) => panic!("{e}"),
                        }
                    })
                })
                .collect();
            let won = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|won| *won)
                .count();
            assert_eq!(won, 1, "round {round}");
            assert!(released(&path));
        }
    }

    /// Run as a child process by the test below: takes the lock named in
    /// the environment, says whether it got it, and holds it until told.
    #[test]
    fn lock_child() {
        let Some(path) = std::env::var_os("PROCTOR_TEST_LOCK_CHILD") else {
            return;
        };
        let go = PathBuf::from(std::env::var_os("PROCTOR_TEST_LOCK_GO").unwrap());
        let done = PathBuf::from(std::env::var_os("PROCTOR_TEST_LOCK_DONE").unwrap());
        while !go.exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let result = RunLock::acquire(Path::new(&path));
        println!(
            "LOCK-RESULT {}",
            match &result {
                Ok(_) => "won".to_string(),
                Err(LockError::Held { pid, .. }) => format!("held {pid}"),
                Err(e) => format!("error {e}"),
            }
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if result.is_ok() {
            while !done.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn a_hundred_processes_started_together_make_exactly_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".proctor/lock");
        let go = dir.path().join("go");
        let done = dir.path().join("done");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..100)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--exact", "state::lock::tests::lock_child", "--nocapture"])
                    .args(["--test-threads", "1"])
                    .env("PROCTOR_TEST_LOCK_CHILD", &path)
                    .env("PROCTOR_TEST_LOCK_GO", &go)
                    .env("PROCTOR_TEST_LOCK_DONE", &done)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        fs::write(&go, "").unwrap();
        // The losers answer while the winner still holds the lock.
        let mut winner = None;
        let mut results = Vec::new();
        let mut pending = Vec::new();
        for mut child in children {
            use std::io::BufRead;
            let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            // libtest may have printed the test's name on the same line.
            let line = (&mut stdout)
                .lines()
                .map(|l| l.unwrap())
                .find_map(|l| l.find("LOCK-RESULT ").map(|i| l[i..].to_string()))
                .unwrap_or_default();
            if line == "LOCK-RESULT won" {
                assert_eq!(winner, None, "two processes took the lock");
                winner = Some(child.id() as i32);
            }
            results.push(line);
            // Kept open: the child still writes its summary.
            pending.push((child, stdout));
        }
        let winner = winner.expect("no process took the lock");
        assert_eq!(holder(&path), Some(winner));
        for line in &results {
            assert!(
                line == "LOCK-RESULT won" || *line == format!("LOCK-RESULT held {winner}"),
                "{line}"
            );
        }
        fs::write(&done, "").unwrap();
        for (mut child, mut stdout) in pending {
            std::io::copy(&mut stdout, &mut std::io::sink()).unwrap();
            assert!(child.wait().unwrap().success());
        }
        assert!(released(&path));
    }
}
