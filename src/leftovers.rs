//! Files a proctor process makes on the host outside the repository, and
//! the sweep that removes those whose process is gone.
//!
//! Per process (one run, one `demo`, one `gauntlet`), proctor makes:
//!
//! - in the cage's private temp directory (`$TMPDIR/proctor-cage-<euid>/`):
//!   an egress proxy's socket directory `egress-<suffix>/` and its log
//!   `egress-<suffix>.log`, a relay's log `relay-<suffix>.log`, and for a
//!   moment `<name>.tmp<suffix>` while a generated file is written
//!   ([`unique_suffix`](crate::cage::unique_suffix) is `<pid>-<counter>-<nanos>`,
//!   in hex);
//! - exam scratch trees `proctor-exam-<pid>-<run>-<random>` in `/dev/shm`,
//!   the temp directory, or `PROCTOR_TMPDIR` ([`exam_prefix`]);
//! - a copy-on-write mount's upper layer on Docker,
//!   `proctor-layer-<pid>-<random>`, in `PROCTOR_TMPDIR` or the temp
//!   directory ([`layer_prefix`]), for as long as its container exists;
//! - the context of an `image: auto` build, `proctor-build-<pid>-<random>`,
//!   in the temp directory ([`build_prefix`]), while it is sent;
//! - `proctor-demo-<pid>-<random>` and `proctor-gauntlet-<pid>-<random>`
//!   in the temp directory ([`scratch_prefix`]).
//!
//! The generated `passwd-*`, `group-*`, `hosts` and `seccomp-<hash>.json`
//! of the private directory are shared by every run of the user and
//! reused: they stay.
//!
//! A process removes its own files when it ends (also on SIGINT, SIGTERM
//! and errors); one killed with `kill -9` cannot, and [`sweep`] (run by
//! `proctor reap`, `proctor stop` and at the start of every run) removes
//! what such processes left. Runs in other repositories share these
//! directories, so the sweep must never remove a file whose creator may be
//! alive: a pid it cannot check counts as alive, a reused pid keeps a dead
//! run's file (harmless), and a tree holding a live run's lock stays.
//! Liveness is judged in this process's pid namespace: a run in another
//! pid namespace that shares the temp directory is not protected.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cage::existing_private_temp_dir;

/// The name prefix of an exam scratch tree of run `run_id` (tempfile adds
/// a random part without dashes).
pub fn exam_prefix(run_id: &str) -> String {
    format!("{EXAM}{:x}-{run_id}-", std::process::id())
}

/// The name prefix of the directory holding a copy-on-write mount's upper
/// layer for one Docker container (see `cage::Access::CopyOnWrite`).
pub fn layer_prefix() -> String {
    format!("{LAYER}{:x}-", std::process::id())
}

/// The name prefix of the scratch directory holding an `image: auto`
/// build's context and its tar while the engine builds.
pub fn build_prefix() -> String {
    format!("{BUILD}{:x}-", std::process::id())
}

/// The name prefix of the scratch directory of `proctor demo` (`what` =
/// `demo`) or `proctor gauntlet` (`gauntlet`).
pub fn scratch_prefix(what: &str) -> String {
    format!("proctor-{what}-{:x}-", std::process::id())
}

const EXAM: &str = "proctor-exam-";
const DEMO: &str = "proctor-demo-";
const LAYER: &str = "proctor-layer-";
const GAUNTLET: &str = "proctor-gauntlet-";
const BUILD: &str = "proctor-build-";

/// Which kind of directory an entry was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The cage's private temp directory.
    Private,
    /// A shared scratch directory (`/dev/shm`, the temp directory,
    /// `PROCTOR_TMPDIR`).
    Scratch,
}

/// What a name says about the entry: the process that made it, and
/// whether a live run may be working inside it under another pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// A demo or gauntlet tree: repositories whose runs hold their own
    /// locks (a gauntlet's runs are child processes).
    pub holds_runs: bool,
}

/// The owner of a proctor entry named `name` in `place`; `None` for
/// anything proctor does not make per process (shared files, names of
/// older versions without a pid, other programs' files).
pub fn owner(place: Place, name: &str) -> Option<Owner> {
    let pid = |suffix: &str, fields: usize| {
        let parts: Vec<&str> = suffix.split('-').collect();
        if parts.len() != fields || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let pid = parse_pid(parts[0])?;
        Some(Owner {
            pid,
            holds_runs: false,
        })
    };
    match place {
        Place::Private => {
            // `egress-<suffix>[.log]`, `relay-<suffix>.log`, `<name>.tmp<suffix>`.
            let suffix = if let Some(rest) = name.strip_prefix("egress-") {
                rest.strip_suffix(".log").unwrap_or(rest)
            } else if let Some(rest) = name.strip_prefix("relay-") {
                rest.strip_suffix(".log")?
            } else {
                name.rsplit_once(".tmp")?.1
            };
            pid(suffix, 3).filter(|_| all_hex(suffix))
        }
        Place::Scratch => {
            if let Some(rest) = name.strip_prefix(EXAM) {
                return pid(rest, 3);
            }
            if let Some(rest) = name
                .strip_prefix(LAYER)
                .or_else(|| name.strip_prefix(BUILD))
            {
                return pid(rest, 2);
            }
            let rest = name
                .strip_prefix(DEMO)
                .or_else(|| name.strip_prefix(GAUNTLET))?;
            pid(rest, 2).map(|o| Owner {
                holds_runs: true,
                ..o
            })
        }
    }
}

fn all_hex(s: &str) -> bool {
    s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

/// A process id in lowercase hex, as proctor writes it: positive and
/// within the kernel's range.
fn parse_pid(hex: &str) -> Option<u32> {
    if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let pid = u32::from_str_radix(hex, 16).ok()?;
    (pid > 0 && pid <= i32::MAX as u32).then_some(pid)
}

/// Whether process `pid` may be alive, as seen in `proc` (normally
/// `/proc`): only a missing `/proc/<pid>` in a working `/proc` means dead;
/// anything that cannot be checked counts as alive.
pub fn may_be_alive(proc: &Path, pid: u32) -> bool {
    match fs::symlink_metadata(proc.join(pid.to_string())) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Without a mounted /proc every pid would look dead.
            fs::symlink_metadata(proc.join("self")).is_err()
        }
        Err(_) => true,
    }
}

/// What a sweep removed and what it could not.
#[derive(Debug, Default)]
pub struct Sweep {
    pub removed: Vec<PathBuf>,
    /// Leftovers that stay, each with why.
    pub failed: Vec<(PathBuf, String)>,
}

impl Sweep {
    /// One line naming what could not be removed, if anything.
    pub fn failure_line(&self) -> Option<String> {
        let (first, why) = self.failed.first()?;
        let more = match self.failed.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(format!(
            "cannot remove `{}`, left by a proctor process that is gone: {why}{more}",
            first.display()
        ))
    }
}

/// Removes the files of dead proctor processes from the cage's private
/// temp directory and from the scratch directories.
pub fn sweep() -> Sweep {
    let mut sweep = Sweep::default();
    let proc = Path::new("/proc");
    if let Some(dir) = existing_private_temp_dir() {
        sweep_dir(&mut sweep, proc, &dir, Place::Private);
    }
    for dir in scratch_dirs() {
        sweep_dir(&mut sweep, proc, &dir, Place::Scratch);
    }
    sweep.removed.sort();
    sweep
}

/// Where exam, demo and gauntlet trees may be: `PROCTOR_TMPDIR`,
/// `/dev/shm` and the temp directory, each once.
fn scratch_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("PROCTOR_TMPDIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from("/dev/shm"));
    dirs.push(std::env::temp_dir());
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        let fresh = !seen.contains(&key);
        seen.push(key);
        fresh
    });
    dirs
}

/// Sweeps one directory (public for tests, with a stand-in for `/proc`).
pub fn sweep_dir(sweep: &mut Sweep, proc: &Path, dir: &Path, place: Place) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let euid = euid();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| owner(place, n)) else {
            continue;
        };
        if owner.pid == std::process::id() || may_be_alive(proc, owner.pid) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if place == Place::Scratch {
            // Shared directories: only our own real directories (root's
            // exam trees belong to the repository's owner).
            if !meta.is_dir() || (euid != 0 && meta.uid() != euid) {
                continue;
            }
            if owner.holds_runs && holds_live_run(&path, 3) {
                continue;
            }
        }
        if name.to_str().is_some_and(|n| n.starts_with(LAYER)) {
            // An overlay's work directory leaves `work/work` behind, owned
            // by root with mode 0: empty, so removable by name only.
            let _ = fs::remove_dir(path.join("work/work"));
        }
        let result = if meta.is_dir() {
            remove_tree(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => sweep.removed.push(path),
            // Another sweep got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => sweep.failed.push((path, e.to_string())),
        }
    }
}

/// Whether a repository within `depth` levels of `dir` holds the lock of a
/// live run.
fn holds_live_run(dir: &Path, depth: u32) -> bool {
    if crate::state::lock::holder(&dir.join(".proctor/lock")).is_some() {
        return true;
    }
    if depth == 0 {
        return false;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && holds_live_run(&e.path(), depth - 1))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Removes the tree at `path` without following links. Whatever a
/// container made read-only in it is made writable again first when this
/// process is not root (root needs no permission bits; and a chmod as root
/// could be turned onto another file by a race).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && euid() != 0 => {
            open_up(path, euid());
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// Gives the owner `rwx` on every directory of ours under `path`.
fn open_up(path: &Path, euid: u32) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() || meta.uid() != euid {
        return;
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            open_up(&entry.path(), euid);
        }
    }
}

/// A scratch directory removed (with [`remove_tree`]) when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    /// A fresh, empty directory in `dir` whose name starts with `prefix`.
    pub fn new_in(dir: &Path, prefix: &str) -> io::Result<ScratchDir> {
        let made = tempfile::Builder::new().prefix(prefix).tempdir_in(dir)?;
        Ok(ScratchDir {
            path: Some(made.keep()),
        })
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Keeps the directory; returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(error) = remove_tree(&path) {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a scratch directory");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cage::unique_suffix;

    fn pid_of(place: Place, name: &str) -> Option<u32> {
        owner(place, name).map(|o| o.pid)
    }

    #[test]
    fn private_entries_name_their_process() {
        assert_eq!(
            pid_of(Place::Private, "egress-2654-2-3590dd69"),
            Some(0x2654)
        );
        assert_eq!(
            pid_of(Place::Private, "egress-2654-2-3590dd69.log"),
            Some(0x2654)
        );
        assert_eq!(
            pid_of(Place::Private, "relay-ff3-7-3b3740a8.log"),
            Some(0xff3)
        );
        assert_eq!(
            pid_of(Place::Private, "passwd-1000-1000.tmp1a-0-5f"),
            Some(0x1a)
        );
        assert_eq!(pid_of(Place::Private, "hosts.tmp1a-3-5f"), Some(0x1a));
        let fresh = format!("egress-{}", unique_suffix());
        assert_eq!(pid_of(Place::Private, &fresh), Some(std::process::id()));
        assert_eq!(
            pid_of(
                Place::Scratch,
                &format!("{}Ab3xYz", exam_prefix("deadbeef"))
            ),
            Some(std::process::id())
        );
        assert_eq!(
            pid_of(Place::Scratch, &format!("{}Ab3xYz", layer_prefix())),
            Some(std::process::id())
        );
        assert_eq!(
            pid_of(Place::Scratch, "proctor-layer-2a-Ab3xYz"),
            Some(0x2a)
        );
        assert_eq!(pid_of(Place::Scratch, "proctor-layer-Ab3xYz"), None);
        assert_eq!(pid_of(Place::Private, "proctor-layer-2a-Ab3xYz"), None);
        assert_eq!(
            pid_of(Place::Scratch, &format!("{}Ab3xYz", build_prefix())),
            Some(std::process::id())
        );
        assert_eq!(pid_of(Place::Scratch, "proctor-build-Ab3xYz"), None);
    }

    #[test]
    fn shared_and_foreign_names_have_no_owner() {
        for name in [
            "hosts",
            "passwd-1000-1000",
            "group-65534-65534",
            "passwd-0-0",
            // A relay's socket name, a stray file, a relay log not ending in .log.
            "relay-1-2-3",
            "egress-",
            "egress-1-2",
            "egress-1-2-3-4",
            "egress-0-1-2",
            "egress-zz-1-2",
            "egress-1--2",
            "egress-123456789-1-2",
            "notes.tmp",
            "notes.tmpx-1-2",
        ] {
            assert_eq!(owner(Place::Private, name), None, "{name}");
        }
        for name in [
            // Older versions: no pid in the name.
            "proctor-exam-deadbeef-Ab3xYz",
            "proctor-demo-Ab3xYz",
            "proctor-gauntlet-test-Ab3xYz",
            "proctor-cage-0",
            "proctor-exam-",
            "proctor-exam-x1-deadbeef-Ab3xYz",
            // Private patterns mean nothing in a shared directory.
            "egress-2654-2-3590dd69",
        ] {
            assert_eq!(owner(Place::Scratch, name), None, "{name}");
        }
    }

    #[test]
    fn demo_and_gauntlet_trees_may_hold_runs() {
        let o = owner(Place::Scratch, "proctor-gauntlet-1f-Ab3xYz").unwrap();
        assert_eq!(
            o,
            Owner {
                pid: 0x1f,
                holds_runs: true
            }
        );
        let o = owner(Place::Scratch, "proctor-demo-1f-Ab3xYz").unwrap();
        assert!(o.holds_runs);
        let o = owner(Place::Scratch, "proctor-exam-1f-deadbeef-Ab3xYz").unwrap();
        assert!(!o.holds_runs);
    }

    #[test]
    fn liveness_counts_what_it_cannot_check_as_alive() {
        let proc = Path::new("/proc");
        assert!(may_be_alive(proc, std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        // The pid may be reused meanwhile; then it is alive, which is safe.
        if !Path::new(&format!("/proc/{dead}")).exists() {
            assert!(!may_be_alive(proc, dead));
        }
        // No /proc at all: nothing can be checked.
        let empty = tempfile::tempdir().unwrap();
        assert!(may_be_alive(empty.path(), dead));
        assert!(may_be_alive(&empty.path().join("missing"), dead));
    }

    /// A stand-in `/proc` where only `alive` exists.
    fn fake_proc(alive: &[u32]) -> tempfile::TempDir {
        let proc = tempfile::tempdir().unwrap();
        fs::create_dir(proc.path().join("self")).unwrap();
        for pid in alive {
            fs::create_dir(proc.path().join(pid.to_string())).unwrap();
        }
        proc
    }

    #[test]
    fn a_sweep_removes_the_dead_and_keeps_the_live_and_the_shared() {
        let proc = fake_proc(&[0x10]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["egress-10-1-2", "egress-20-1-2"] {
            fs::create_dir(d.join(name)).unwrap();
            fs::write(d.join(name).join("proxy.sock"), "").unwrap();
        }
        for name in [
            "egress-10-1-2.log",
            "egress-20-1-2.log",
            "relay-20-3-4.log",
            "relay-10-3-4.log",
            "hosts",
            "passwd-0-0",
            "hosts.tmp20-5-6",
        ] {
            fs::write(d.join(name), "x").unwrap();
        }
        let mut sweep = Sweep::default();
        sweep_dir(&mut sweep, proc.path(), d, Place::Private);
        let mut removed: Vec<String> = sweep
            .removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                "egress-20-1-2",
                "egress-20-1-2.log",
                "hosts.tmp20-5-6",
                "relay-20-3-4.log"
            ]
        );
        assert!(sweep.failed.is_empty());
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "egress-10-1-2",
                "egress-10-1-2.log",
                "hosts",
                "passwd-0-0",
                "relay-10-3-4.log"
            ]
        );
    }

    #[test]
    fn a_tree_holding_a_live_runs_lock_stays() {
        let proc = fake_proc(&[]);
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join("proctor-gauntlet-20-Ab3xYz");
        let lock = held.join("scenario/repo/.proctor");
        fs::create_dir_all(&lock).unwrap();
        let _held = crate::state::lock::RunLock::acquire(&lock.join("lock")).unwrap();
        let free = dir.path().join("proctor-demo-20-Cd4xYz");
        fs::create_dir_all(free.join("a/.proctor")).unwrap();
        fs::write(free.join("a/.proctor/lock"), "999999999 1\n").unwrap();
        let mut sweep = Sweep::default();
        sweep_dir(&mut sweep, proc.path(), dir.path(), Place::Scratch);
        assert_eq!(sweep.removed, std::slice::from_ref(&free));
        assert!(held.exists());
        assert!(!free.exists());
    }

    #[test]
    fn a_dead_runs_overlay_layers_are_swept_with_their_locked_work_dir() {
        let proc = fake_proc(&[0x10]);
        let dir = tempfile::tempdir().unwrap();
        for name in ["proctor-layer-10-Ab3xYz", "proctor-layer-20-Cd4xYz"] {
            let layer = dir.path().join(name);
            fs::create_dir_all(layer.join("upper/target")).unwrap();
            fs::write(layer.join("upper/target/planted"), "x").unwrap();
            fs::create_dir_all(layer.join("work/work")).unwrap();
            fs::set_permissions(layer.join("work/work"), fs::Permissions::from_mode(0o000))
                .unwrap();
        }
        let mut sweep = Sweep::default();
        sweep_dir(&mut sweep, proc.path(), dir.path(), Place::Scratch);
        assert_eq!(
            sweep.removed,
            [dir.path().join("proctor-layer-20-Cd4xYz")],
            "{:?}",
            sweep.failed
        );
        assert!(dir.path().join("proctor-layer-10-Ab3xYz/upper").exists());
    }

    #[test]
    fn scratch_sweeps_skip_links_and_files() {
        let proc = fake_proc(&[]);
        let dir = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        fs::write(target.path().join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(
            target.path(),
            dir.path().join("proctor-exam-20-deadbeef-Ab3xYz"),
        )
        .unwrap();
        fs::write(dir.path().join("proctor-exam-20-deadbeef-Cd4xYz"), "x").unwrap();
        let mut sweep = Sweep::default();
        sweep_dir(&mut sweep, proc.path(), dir.path(), Place::Scratch);
        assert!(sweep.removed.is_empty());
        assert!(target.path().join("keep").exists());
    }

    #[test]
    fn read_only_trees_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = ScratchDir::new_in(dir.path(), "proctor-exam-1-x-").unwrap();
        let locked = scratch.path().join("a/b");
        fs::create_dir_all(&locked).unwrap();
        fs::write(locked.join("f"), "x").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(scratch.path().join("a"), fs::Permissions::from_mode(0o000)).unwrap();
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists());
    }

    #[test]
    fn the_failure_line_names_the_first_and_counts_the_rest() {
        let mut sweep = Sweep::default();
        assert_eq!(sweep.failure_line(), None);
        sweep
            .failed
            .push((PathBuf::from("/tmp/a"), "Permission denied".into()));
        sweep
            .failed
            .push((PathBuf::from("/tmp/b"), "Permission denied".into()));
        let line = sweep.failure_line().unwrap();
        assert!(line.contains("`/tmp/a`"), "{line}");
        assert!(line.ends_with("(and 1 more)"), "{line}");
    }
}
