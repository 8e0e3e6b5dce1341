//! The run's own worktree: `.proctor/wt/<name>` on branch `proctor/<name>`.
//!
//! A run never works in the user's checkout. It works in a linked worktree
//! that proctor creates from the branch tip (tracked files only, so the
//! user's ignored and untracked files never reach it), reuses on resume and
//! removes when asked. Every commit goes onto the tip proctor last wrote, as
//! a compare-and-swap on the branch ref: if anyone deleted, reset or moved
//! the branch meanwhile, the commit is refused with an error naming what
//! moved, never made parentless or on another branch.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository, WorktreeAddOptions, WorktreePruneOptions};

use super::{git, io, GitError, GitRepo, Oid};

/// Where the worktrees live, relative to the user's working tree root.
pub const WORKTREES_DIR: &str = ".proctor/wt";

/// What happened to the branch since proctor last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The ref no longer exists.
    Deleted,
    /// The ref now points at an ancestor of the tip proctor wrote.
    Reset { to: Oid },
    /// Someone committed on top of proctor's tip.
    Advanced { to: Oid },
    /// The ref points at a commit unrelated to proctor's tip.
    Replaced { to: Oid },
    /// The worktree's HEAD is no longer on the branch (detached, or on
    /// another branch).
    Switched { head: String },
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |o: &Oid| o.to_string().chars().take(12).collect::<String>();
        match self {
            Moved::Deleted => write!(f, "was deleted"),
            Moved::Reset { to } => write!(f, "was reset back to {}", short(to)),
            Moved::Advanced { to } => write!(
                f,
                "gained commits proctor did not write (now at {})",
                short(to)
            ),
            Moved::Replaced { to } => write!(f, "was moved to an unrelated commit {}", short(to)),
            Moved::Switched { head } => write!(
                f,
                "is no longer checked out in its worktree (HEAD is {head})"
            ),
        }
    }
}

/// One worktree under [`WORKTREES_DIR`], as found on disk and in git's
/// admin entries (for `proctor reap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceEntry {
    pub name: String,
    pub path: PathBuf,
    /// git has an admin entry for it (`git worktree list` shows it).
    pub registered: bool,
    /// Its directory exists.
    pub present: bool,
}

/// A run's worktree, opened. Commits go through [`Workspace::commit`],
/// which only ever extends the tip it last wrote.
pub struct Workspace {
    repo: GitRepo,
    name: String,
    guard: BranchGuard,
    reused: bool,
}

/// The branch a run writes and the tip it last wrote there: every commit
/// through it is a compare-and-swap on the branch ref, and HEAD must still
/// be on the branch. A run's worktree keeps one; so does a run that works
/// in the checkout itself.
#[derive(Debug)]
pub struct BranchGuard {
    branch: String,
    tip: Cell<Oid>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("root", &self.repo.root)
            .field("branch", &self.guard.branch)
            .field("tip", &self.guard.tip.get())
            .finish()
    }
}

impl BranchGuard {
    /// The guard of the branch HEAD is on, at HEAD's commit; `None` when
    /// HEAD is detached or unborn (nothing to guard yet).
    pub fn at_head(repo: &GitRepo) -> Result<Option<BranchGuard>, GitError> {
        let (Some(branch), Some(tip)) = (repo.head_branch()?, repo.head()?) else {
            return Ok(None);
        };
        Ok(Some(BranchGuard {
            branch,
            tip: Cell::new(tip),
        }))
    }

    /// Checks that HEAD (of the worktree, or the checkout) is still the branch and the branch
    /// still points at the tip proctor last wrote.
    pub fn check(&self, repo: &GitRepo) -> Result<(), GitError> {
        match self.moved(repo)? {
            None => Ok(()),
            Some(moved) => Err(self.moved_error(moved)),
        }
    }

    /// The tip proctor last wrote (or found when the guard was made).
    pub fn tip(&self) -> Oid {
        self.tip.get()
    }

    /// Short name of the guarded branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub(super) fn set_tip(&self, tip: Oid) {
        self.tip.set(tip);
    }

    fn moved(&self, repo: &GitRepo) -> Result<Option<Moved>, GitError> {
        let refname = format!("refs/heads/{}", self.branch);
        let head = repo.repo.find_reference("HEAD").map_err(git("read HEAD"))?;
        match head.symbolic_target_bytes() {
            Some(t) if t == refname.as_bytes() => {}
            Some(t) => {
                return Ok(Some(Moved::Switched {
                    head: format!("`{}`", String::from_utf8_lossy(t)),
                }))
            }
            None => {
                return Ok(Some(Moved::Switched {
                    head: "detached".into(),
                }))
            }
        }
        let expected = self.tip.get();
        let Some(now) = repo.branch_tip(&self.branch)? else {
            return Ok(Some(Moved::Deleted));
        };
        if now == expected {
            return Ok(None);
        }
        Ok(Some(if repo.is_ancestor(now, expected)? {
            Moved::Reset { to: now }
        } else if repo.is_ancestor(expected, now)? {
            Moved::Advanced { to: now }
        } else {
            Moved::Replaced { to: now }
        }))
    }

    fn moved_error(&self, moved: Moved) -> GitError {
        GitError::BranchMoved {
            branch: self.branch.clone(),
            expected: self.tip.get(),
            moved,
        }
    }

    /// Stages every change in `git`'s working tree (except paths where
    /// `skip` is true) and commits it onto the tip proctor last wrote,
    /// moving the branch only if it still points there. Commits even when
    /// nothing changed. On success the new commit is the tip.
    pub fn commit(
        &self,
        on: &GitRepo,
        message: &str,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Oid, GitError> {
        self.check(on)?;
        let repo = &on.repo;
        let parent = repo
            .find_commit(self.tip.get())
            .map_err(git("read branch tip"))?;
        let parent_tree = parent.tree().map_err(git("read branch tip tree"))?;
        let tree = on.stage_all(Some(&parent_tree), skip)?;
        let sig = on.signature()?;
        let refname = format!("refs/heads/{}", self.branch);
        // libgit2 updates the ref under its lock only if it still points at
        // the first parent (GIT_EMODIFIED otherwise): the check above names
        // what moved, this closes the window between the two.
        let oid = match repo.commit(Some(&refname), &sig, &sig, message, &tree, &[&parent]) {
            Ok(oid) => oid,
            Err(e) if e.code() == ErrorCode::Modified => {
                let moved = self.moved(on)?.unwrap_or(Moved::Deleted);
                return Err(self.moved_error(moved));
            }
            Err(e) => return Err(git("commit")(e)),
        };
        repo.cleanup_state().map_err(git("clean up state"))?;
        self.tip.set(oid);
        Ok(oid)
    }
}

impl Workspace {
    /// The worktree as a repository: its root is the tree the agent works
    /// in and its HEAD is the branch.
    pub fn repo(&self) -> &GitRepo {
        &self.repo
    }

    /// Canonical root of the worktree.
    pub fn root(&self) -> &Path {
        self.repo.root()
    }

    /// The worktree's name (also its admin entry's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Short name of the branch, `proctor/<name>`.
    pub fn branch(&self) -> &str {
        &self.guard.branch
    }

    /// The tip proctor last wrote (or found when it opened the worktree).
    pub fn tip(&self) -> Oid {
        self.guard.tip.get()
    }

    /// Whether an existing worktree was reused (a resumed run) rather than
    /// created.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Checks that the worktree's HEAD is still the branch and the branch
    /// still points at the tip proctor last wrote.
    pub fn check_tip(&self) -> Result<(), GitError> {
        self.guard.check(&self.repo)
    }

    /// Stages every change in the worktree (except paths where `skip` is
    /// true) and commits it onto the tip proctor last wrote, moving the
    /// branch only if it still points there. Commits even when nothing
    /// changed. On success the new commit is the tip.
    pub fn commit(&self, message: &str, skip: &dyn Fn(&str) -> bool) -> Result<Oid, GitError> {
        self.guard.commit(&self.repo, message, skip)
    }

    /// Merges commit `theirs` into the worktree's branch (see
    /// [`BranchGuard::merge`]).
    pub fn merge(
        &self,
        theirs: Oid,
        message: &str,
        union: &[&str],
    ) -> Result<super::Merge, GitError> {
        self.guard.merge(&self.repo, theirs, message, union)
    }

    /// Removes git lock files a killed process left in this worktree (its
    /// index, HEAD and the branch ref), so a resumed run does not fail on
    /// them. Only call while holding the run lock: then no other proctor
    /// process writes here, and nothing else has reason to. Returns what
    /// was removed.
    pub fn clear_stale_locks(&self) -> Result<Vec<PathBuf>, GitError> {
        let admin = self.repo.git_dir();
        let common = self.repo.repo.commondir().to_path_buf();
        let mut candidates = vec![
            admin.join("index.lock"),
            admin.join("HEAD.lock"),
            admin.join("ORIG_HEAD.lock"),
            admin.join("logs").join("HEAD.lock"),
        ];
        let mut reference = common.join("refs").join("heads");
        reference.push(&self.guard.branch);
        let mut ref_lock = reference.into_os_string();
        ref_lock.push(".lock");
        candidates.push(PathBuf::from(ref_lock));
        let mut removed = Vec::new();
        for path in candidates {
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() || meta.file_type().is_symlink() => {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    removed.push(path);
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(removed)
    }
}

/// A worktree name proctor accepts: a loop id (or `<root>__<child>`), so
/// it is a single safe path component and a valid ref component.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !name.ends_with(".lock")
        && !name.contains("..")
}

impl GitRepo {
    /// Path of the worktree named `name`.
    pub fn workspace_path(&self, name: &str) -> PathBuf {
        self.root.join(WORKTREES_DIR).join(name)
    }

    /// Opens the run's worktree `.proctor/wt/<name>` on `proctor/<name>`,
    /// creating the branch at `start` if it does not exist, and the worktree
    /// from the branch tip if there is none (or only a broken one). An
    /// intact worktree on the existing branch is reused as it is, with
    /// whatever an interrupted attempt left in it.
    pub fn open_workspace(&self, name: &str, start: Oid) -> Result<Workspace, GitError> {
        if !valid_name(name) {
            return Err(GitError::BadWorkspaceName {
                name: name.to_string(),
            });
        }
        let branch = format!("proctor/{name}");
        let path = self.workspace_path(name);
        let (tip, branch_existed) = match self.branch_tip(&branch)? {
            Some(tip) => (tip, true),
            None => {
                self.create_branch(&branch, start)?;
                (start, false)
            }
        };
        if branch_existed {
            if let Some(repo) = self.intact_workspace(name, &path, &branch)? {
                return Ok(Workspace {
                    repo,
                    name: name.to_string(),
                    guard: BranchGuard {
                        branch,
                        tip: Cell::new(tip),
                    },
                    reused: true,
                });
            }
        }
        self.remove_workspace(name)?;
        if self.head_branch()?.as_deref() == Some(branch.as_str()) {
            return Err(GitError::BranchCheckedOut {
                branch,
                path: self.root.clone(),
            });
        }
        let parent = self.root.join(WORKTREES_DIR);
        ensure_real_dir(&self.root.join(".proctor"))?;
        ensure_real_dir(&parent)?;
        let reference = self
            .repo
            .find_reference(&format!("refs/heads/{branch}"))
            .map_err(git("find branch"))?;
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(&reference));
        match self.repo.worktree(name, &path, Some(&opts)) {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::Exists || e.message().contains("checked out") => {
                return Err(GitError::BranchCheckedOut {
                    branch,
                    path: self
                        .checked_out_at(name)
                        .unwrap_or_else(|| self.root.clone()),
                })
            }
            Err(e) => return Err(git("create worktree")(e)),
        }
        let repo = GitRepo::open(&path)?;
        Ok(Workspace {
            repo,
            name: name.to_string(),
            guard: BranchGuard {
                branch,
                tip: Cell::new(tip),
            },
            reused: false,
        })
    }

    /// The worktree `name` if its admin entry is valid, its directory is
    /// where proctor puts it and its HEAD is on `branch`.
    fn intact_workspace(
        &self,
        name: &str,
        path: &Path,
        branch: &str,
    ) -> Result<Option<GitRepo>, GitError> {
        let Ok(wt) = self.repo.find_worktree(name) else {
            return Ok(None);
        };
        if wt.validate().is_err() {
            return Ok(None);
        }
        let same_place = match (wt.path().canonicalize(), path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same_place {
            return Ok(None);
        }
        let Ok(repo) = GitRepo::open(path) else {
            return Ok(None);
        };
        if repo.root() != path.canonicalize().map_err(io(path))? {
            return Ok(None);
        }
        if repo.head_branch()?.as_deref() != Some(branch) {
            return Ok(None);
        }
        Ok(Some(repo))
    }

    /// Where another worktree (not proctor's `name`) has the branch checked
    /// out, for the error message.
    fn checked_out_at(&self, name: &str) -> Option<PathBuf> {
        let branch = format!("refs/heads/proctor/{name}");
        let names = self.repo.worktrees().ok()?;
        names.iter().flatten().flatten().find_map(|other| {
            let wt = self.repo.find_worktree(other).ok()?;
            let repo = Repository::open_from_worktree(&wt).ok()?;
            let head = repo.find_reference("HEAD").ok()?;
            (head.symbolic_target_bytes() == Some(branch.as_bytes()))
                .then(|| wt.path().to_path_buf())
        })
    }

    /// Removes the worktree `name`: its directory (whatever is in it) and
    /// git's admin entry, so `git worktree list` no longer shows it. The
    /// branch stays. Nothing to remove is not an error.
    pub fn remove_workspace(&self, name: &str) -> Result<(), GitError> {
        if !valid_name(name) {
            return Err(GitError::BadWorkspaceName {
                name: name.to_string(),
            });
        }
        let path = self.workspace_path(name);
        match std::fs::symlink_metadata(&path) {
            // remove_dir_all never follows symlinks inside the tree.
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path).map_err(io(&path))?,
            Ok(_) => std::fs::remove_file(&path).map_err(io(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        match self.repo.find_worktree(name) {
            Ok(wt) => {
                let mut opts = WorktreePruneOptions::new();
                // The directory is gone, so the entry is prunable; `valid`
                // and `locked` cover a user's lock or a race.
                opts.valid(true).locked(true).working_tree(false);
                wt.prune(Some(&mut opts)).map_err(git("prune worktree"))?;
            }
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(git("find worktree")(e)),
        }
        Ok(())
    }

    /// Records `from` as the branch the run on `branch` started from (what
    /// `proctor land` merges into by default), in the repository's config
    /// as `branch.<branch>.proctorFrom`: it survives `.proctor/` being
    /// deleted and goes when the branch does.
    pub fn record_start_branch(&self, branch: &str, from: &str) -> Result<(), GitError> {
        let mut config = self.repo.config().map_err(git("open config"))?;
        config
            .set_str(&format!("branch.{branch}.proctorFrom"), from)
            .map_err(git("write config"))
    }

    /// The branch the run on `branch` started from, if recorded.
    pub fn start_branch_of(&self, branch: &str) -> Result<Option<String>, GitError> {
        let mut config = self.repo.config().map_err(git("open config"))?;
        let snapshot = config.snapshot().map_err(git("read config"))?;
        match snapshot.get_str(&format!("branch.{branch}.proctorFrom")) {
            Ok(from) => Ok(Some(from.to_string())),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git("read config")(e)),
        }
    }

    /// Every worktree proctor owns in this repository: admin entries whose
    /// directory is (or was) under [`WORKTREES_DIR`], and directories there
    /// git does not know. Sorted by name.
    pub fn workspaces(&self) -> Result<Vec<WorkspaceEntry>, GitError> {
        let parent = self.root.join(WORKTREES_DIR);
        let mut out: Vec<WorkspaceEntry> = Vec::new();
        let names = self.repo.worktrees().map_err(git("list worktrees"))?;
        for name in names.iter().flatten().flatten() {
            let Ok(wt) = self.repo.find_worktree(name) else {
                continue;
            };
            let path = self.workspace_path(name);
            // The admin entry records the absolute path it was made at.
            let ours = valid_name(name) && (wt.path() == path || wt.path().starts_with(&parent));
            if !ours {
                continue;
            }
            out.push(WorkspaceEntry {
                name: name.to_string(),
                present: path.is_dir(),
                path,
                registered: true,
            });
        }
        match std::fs::read_dir(&parent) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io(&parent))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    // A name proctor never gives is not proctor's to remove.
                    if !valid_name(&name) || out.iter().any(|w| w.name == name) {
                        continue;
                    }
                    out.push(WorkspaceEntry {
                        path: entry.path(),
                        name,
                        registered: false,
                        present: true,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&parent)(e)),
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Makes `dir` a real directory: a symlink or file in its place would
/// send the worktree somewhere else on the host.
fn ensure_real_dir(dir: &Path) -> Result<(), GitError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(dir).map_err(io(dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(dir)(e)),
    }
    std::fs::create_dir(dir).map_err(io(dir))
}
