//! Named operations on the user's repository: branches, the dirty check, one
//! commit per attempt, and exporting a committed tree for the verifier.
//!
//! This is the only module that touches git, and it does so only through
//! `git2` (libgit2). It never executes anything from the repository: libgit2
//! runs no hooks, no `core.fsmonitor` command and no `filter.<driver>`
//! programs (only its built-in CRLF and `ident` filters exist), and nothing
//! here shells out to `git`. Keep it that way: an agent can write every file
//! in the working tree, and in a plain clone `.git/` too.

mod export;
mod inspect;
mod land;
mod merge;
mod size;
#[cfg(test)]
mod tests;
mod workspace;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{
    CheckoutNotificationType, Commit, ErrorCode, IndexEntry, IndexTime, ObjectType, Repository,
    Signature, Status, StatusOptions, Tree, TreeEntry,
};

pub use git2::Oid;
pub use inspect::{unified_diff, BlobMode, ChangedEntry, EntryKind, Side, TreeBlob};
pub use land::LandPlan;
pub use merge::Merge;
pub use size::TreeSize;
pub use workspace::{BranchGuard, Moved, Workspace, WorkspaceEntry, WORKTREES_DIR};

/// Identity used when the repository has no `user.name` / `user.email`.
const FALLBACK_NAME: &str = "proctor";
const FALLBACK_EMAIL: &str = "proctor@localhost";

/// Everything that can go wrong while touching the repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{path}` is not inside a git repository")]
    NotARepo { path: PathBuf },
    #[error("`{path}` is a bare repository; proctor needs a working tree")]
    Bare { path: PathBuf },
    #[error("git {op} failed: {source}")]
    Git {
        op: &'static str,
        #[source]
        source: git2::Error,
    },
    /// A `*.lock` file is in the way: another git is running, or one was
    /// killed (an agent timed out mid-`git add`) and left it behind.
    #[error("git {op} failed: {source}")]
    Locked {
        op: &'static str,
        #[source]
        source: git2::Error,
    },
    #[error("cannot access `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("branch `{name}` does not exist")]
    NoSuchBranch { name: String },
    #[error(
        "switching to `{branch}` would overwrite local changes in {}",
        list_paths(paths)
    )]
    WouldClobber { branch: String, paths: Vec<String> },
    #[error(
        "the working tree of `{git_dir}` is set to `{work_tree}`, whose `.git` does not point back at it (check `core.worktree`)"
    )]
    ForeignWorkTree {
        git_dir: PathBuf,
        work_tree: PathBuf,
    },
    #[error("refusing to export unsafe tree entry `{path}`")]
    UnsafeTreeEntry { path: String },
    #[error("export destination `{path}` is not an empty directory")]
    DestNotEmpty { path: PathBuf },
    /// proctor's branch changed under a run: the next commit would not
    /// extend the tip proctor last wrote.
    #[error(
        "branch `{branch}` {moved} while the run worked (proctor last wrote {})",
        short_oid(expected)
    )]
    BranchMoved {
        branch: String,
        expected: Oid,
        moved: Moved,
    },
    #[error(
        "branch `{branch}` is checked out in `{path}`; proctor works on it in its own worktree"
    )]
    BranchCheckedOut { branch: String, path: PathBuf },
    #[error("`{name}` cannot name a worktree (letters, digits, `_`, `.` and `-` only)")]
    BadWorkspaceName { name: String },
}

fn short_oid(oid: &Oid) -> String {
    oid.to_string().chars().take(12).collect()
}

impl GitError {
    /// Whether libgit2 refused the repository because another user owns it
    /// (git's `safe.directory` check).
    pub fn is_unsafe_owner(&self) -> bool {
        matches!(self, GitError::Git { source, .. } if source.code() == ErrorCode::Owner)
    }
}

impl crate::exit_codes::DomainError for GitError {
    /// Not a repository, a bare one, or one owned by someone else.
    fn is_users_to_fix(&self) -> bool {
        matches!(self, GitError::NotARepo { .. } | GitError::Bare { .. }) || self.is_unsafe_owner()
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            GitError::NotARepo { .. } | GitError::Bare { .. } => {
                "run proctor inside a git repository with at least one commit".into()
            }
            e if e.is_unsafe_owner() => "the repository belongs to another user; run proctor as its owner, or trust it with `git config --global --add safe.directory <path>`".into(),
            GitError::Locked { .. } => "if no other git process is using this repository, delete the stale `.lock` file".into(),
            GitError::WouldClobber { .. } => "commit or move them first".into(),
            GitError::BranchMoved {
                branch,
                expected,
                moved,
            } => {
                let back = match moved {
                    Moved::Deleted => format!("`git branch {branch} {expected}`"),
                    _ => format!("`git update-ref refs/heads/{branch} {expected}`"),
                };
                format!(
                    "to go on from proctor's last commit, put the branch back with {back} and run `proctor run` again; to start over from the branch as it is now, run `proctor reap` (it removes the run's worktree, not the branch), then `proctor run`"
                )
            }
            GitError::BranchCheckedOut { branch, .. } => format!(
                "switch your checkout to another branch (e.g. `git switch -`): proctor works on `{branch}` in a worktree of its own"
            ),
            _ => return None,
        })
    }
}

fn list_paths(paths: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = paths
        .iter()
        .take(SHOWN)
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        out.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    if out.is_empty() {
        out.push_str("the working tree");
    }
    out
}

/// Attaches the operation name to a libgit2 error.
fn git(op: &'static str) -> impl FnOnce(git2::Error) -> GitError {
    move |source| {
        if source.code() == ErrorCode::Locked {
            GitError::Locked { op, source }
        } else {
            GitError::Git { op, source }
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One commit of a first-parent log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub oid: Oid,
    pub message: String,
    /// Committer time, unix seconds.
    pub time: i64,
}

/// An open repository with a working tree.
///
/// Not `Sync` (libgit2 handles are not); open one per thread if needed.
pub struct GitRepo {
    repo: Repository,
    root: PathBuf,
    git_dir: PathBuf,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRepo").field("root", &self.root).finish()
    }
}

impl GitRepo {
    /// Finds the repository containing `start`, searching upwards.
    pub fn open(start: &Path) -> Result<GitRepo, GitError> {
        // `discover` (unlike `open_from_env`) ignores GIT_DIR / GIT_WORK_TREE,
        // so the environment proctor was started in cannot redirect it.
        let repo = Repository::discover(start).map_err(|source| match source.code() {
            ErrorCode::NotFound => GitError::NotARepo {
                path: start.to_path_buf(),
            },
            _ => GitError::Git {
                op: "open repository",
                source,
            },
        })?;
        let Some(workdir) = repo.workdir() else {
            return Err(GitError::Bare {
                path: repo.path().to_path_buf(),
            });
        };
        let root = workdir.canonicalize().map_err(io(workdir))?;
        let git_dir = repo.path().canonicalize().map_err(io(repo.path()))?;
        check_work_tree_claims(&root, &git_dir)?;
        Ok(GitRepo {
            repo,
            root,
            git_dir,
        })
    }

    /// Creates a repository at `dir` and commits everything in it (the
    /// demo's scratch repositories).
    pub fn init_with_commit(dir: &Path, message: &str) -> Result<GitRepo, GitError> {
        Repository::init(dir).map_err(git("init repository"))?;
        let repo = GitRepo::open(dir)?;
        repo.commit_all(message, &|_| false)?;
        Ok(repo)
    }

    /// Makes git ignore `patterns` through `info/exclude` (a managed block),
    /// so proctor's runtime state never shows in `git status` and never
    /// enters a commit, without adding files to the user's tree.
    pub fn ensure_excluded(&self, patterns: &[&str]) -> Result<(), GitError> {
        const BEGIN: &str = "# >>> proctor runtime state (managed) >>>";
        const END: &str = "# <<< proctor runtime state <<<";
        // Linked worktrees share the common directory's `info/exclude`.
        let info = self.repo.commondir().join("info");
        let path = info.join("exclude");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        let mut block = format!("{BEGIN}\n");
        for p in patterns {
            block.push_str(p);
            block.push('\n');
        }
        block.push_str(END);
        block.push('\n');
        if current.contains(&block) {
            return Ok(());
        }
        // Drop an older block, keep everything else the user wrote.
        let mut kept = String::new();
        let mut inside = false;
        for line in current.lines() {
            if line == BEGIN {
                inside = true;
            } else if line == END {
                inside = false;
            } else if !inside {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        kept.push_str(&block);
        std::fs::create_dir_all(&info).map_err(io(&info))?;
        std::fs::write(&path, kept).map_err(io(&path))
    }

    /// Canonical path of the repository's git directory (`.git`, or the
    /// admin directory of a linked worktree). Worth pinning: the engine can
    /// compare it across runs to notice a `.git` swapped for a pointer
    /// elsewhere.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Canonical root of the working tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The commit HEAD points at; `None` on an unborn branch.
    pub fn head(&self) -> Result<Option<Oid>, GitError> {
        Ok(self.head_commit()?.map(|c| c.id()))
    }

    fn head_commit(&self) -> Result<Option<Commit<'_>>, GitError> {
        match self.repo.head() {
            Ok(head) => head.peel_to_commit().map(Some).map_err(git("resolve HEAD")),
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(git("resolve HEAD")(e)),
        }
    }

    /// Short name of the branch HEAD is on (born or unborn); `None` when detached.
    pub fn head_branch(&self) -> Result<Option<String>, GitError> {
        // Read HEAD's symbolic target rather than resolving it, so an unborn
        // branch still has a name.
        let head = self.repo.find_reference("HEAD").map_err(git("read HEAD"))?;
        Ok(head
            .symbolic_target_bytes()
            .and_then(|t| t.strip_prefix(b"refs/heads/"))
            .map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// Repo-relative paths that differ from HEAD: modified, deleted, staged,
    /// renamed, conflicted, or untracked and not ignored (untracked
    /// directories are listed file by file). Paths for which `skip` is true
    /// are left out. Sorted.
    pub fn dirty_paths(&self, skip: &dyn Fn(&str) -> bool) -> Result<Vec<String>, GitError> {
        let statuses = self.statuses(false)?;
        let mut paths: Vec<String> = statuses
            .iter()
            .map(|e| status_path(e.path_bytes()))
            .filter(|p| !skip(p))
            .collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Tracked files whose working-tree or index content differs from
    /// HEAD (untracked and ignored files are not listed), except paths
    /// where `skip` is true. Sorted.
    pub fn changed_tracked_paths(
        &self,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, GitError> {
        let statuses = self.statuses(false)?;
        let mut paths: Vec<String> = statuses
            .iter()
            .filter(|e| e.status() != git2::Status::WT_NEW)
            .map(|e| status_path(e.path_bytes()))
            .filter(|p| !skip(p))
            .collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Index-vs-HEAD and workdir-vs-index changes, untracked files listed
    /// individually, no rename detection (a rename is a delete plus a new
    /// path, which is what staging needs).
    fn statuses(&self, refresh_index: bool) -> Result<git2::Statuses<'_>, GitError> {
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false)
            .include_unmodified(false)
            .renames_head_to_index(false)
            .renames_index_to_workdir(false)
            // Writing refreshed stat data back keeps later scans from
            // re-hashing files the agent merely touched.
            .update_index(refresh_index);
        self.repo
            .statuses(Some(&mut opts))
            .map_err(git("read status"))
    }

    /// Tip of `refs/heads/<name>`, if the branch exists.
    pub fn branch_tip(&self, name: &str) -> Result<Option<Oid>, GitError> {
        match self.repo.find_reference(&format!("refs/heads/{name}")) {
            Ok(r) => {
                let c = r.peel_to_commit().map_err(git("resolve branch"))?;
                Ok(Some(c.id()))
            }
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git("find branch")(e)),
        }
    }

    /// Creates `refs/heads/<name>` at `at`; fails if the branch exists.
    pub fn create_branch(&self, name: &str, at: Oid) -> Result<(), GitError> {
        let commit = self.repo.find_commit(at).map_err(git("find commit"))?;
        self.repo
            .branch(name, &commit, false)
            .map_err(git("create branch"))?;
        Ok(())
    }

    /// Points HEAD at `refs/heads/<name>` and checks out its tree without
    /// touching untracked files or local changes. If any path would be
    /// overwritten, nothing is changed and `WouldClobber` names the paths.
    pub fn switch_to(&self, name: &str) -> Result<(), GitError> {
        let refname = format!("refs/heads/{name}");
        let target = match self.repo.find_reference(&refname) {
            Ok(r) => r.peel_to_commit().map_err(git("resolve branch"))?,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(GitError::NoSuchBranch {
                    name: name.to_string(),
                })
            }
            Err(e) => return Err(git("find branch")(e)),
        };
        let conflicts = RefCell::new(Vec::new());
        let result = {
            let mut checkout = CheckoutBuilder::new();
            checkout
                .safe()
                // Ignored files can be someone's work too (local config,
                // build caches); treat them like local changes.
                .overwrite_ignored(false)
                .notify_on(CheckoutNotificationType::CONFLICT)
                .notify(|_, path, _, _, _| {
                    if let Some(p) = path {
                        conflicts
                            .borrow_mut()
                            .push(status_path(p.as_os_str().as_bytes()));
                    }
                    // Keep going so every conflicting path gets reported;
                    // libgit2 still refuses before writing anything.
                    true
                });
            // libgit2 computes every action first and fails on a conflict
            // before touching the disk, so a refusal leaves everything as it was.
            self.repo
                .checkout_tree(target.as_object(), Some(&mut checkout))
        };
        match result {
            Ok(()) => {}
            Err(e) if e.code() == ErrorCode::Conflict => {
                let mut paths = conflicts.into_inner();
                paths.sort();
                paths.dedup();
                return Err(GitError::WouldClobber {
                    branch: name.to_string(),
                    paths,
                });
            }
            Err(e) => return Err(git("checkout")(e)),
        }
        self.repo.set_head(&refname).map_err(git("set HEAD"))
    }

    /// Stages every change except paths where `skip` is true, writes the
    /// index, and commits on HEAD's branch with HEAD as parent. Commits even
    /// when nothing changed, so every attempt has its own commit.
    ///
    /// A skipped path keeps its HEAD version in the index (or stays absent),
    /// whatever the working tree or an earlier `git add` did to it.
    pub fn commit_all(&self, message: &str, skip: &dyn Fn(&str) -> bool) -> Result<Oid, GitError> {
        let parent = self.head_commit()?;
        let head_tree = match &parent {
            Some(c) => Some(c.tree().map_err(git("read HEAD tree"))?),
            None => None,
        };
        let tree = self.stage_all(head_tree.as_ref(), skip)?;
        let sig = self.signature()?;
        let parents: Vec<&Commit<'_>> = parent.iter().collect();
        let oid = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(git("commit"))?;
        // A merge or cherry-pick the agent left half-done would otherwise
        // make the next `git status` claim a merge is in progress.
        self.repo.cleanup_state().map_err(git("clean up state"))?;
        Ok(oid)
    }

    /// Stages every change against HEAD except paths where `skip` is true
    /// (those keep `head_tree`'s version), writes the index and returns its
    /// tree.
    fn stage_all(
        &self,
        head_tree: Option<&Tree<'_>>,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Tree<'_>, GitError> {
        let mut index = self.load_index()?;

        let mut to_remove: Vec<PathBuf> = Vec::new();
        let mut to_add: Vec<PathBuf> = Vec::new();
        let mut to_reset: Vec<PathBuf> = Vec::new();
        {
            let statuses = self.statuses(true)?;
            for entry in statuses.iter() {
                let bytes = trim_slash(entry.path_bytes());
                let rel = PathBuf::from(OsStr::from_bytes(bytes));
                if skip(&String::from_utf8_lossy(bytes)) {
                    let staged = Status::INDEX_NEW
                        | Status::INDEX_MODIFIED
                        | Status::INDEX_DELETED
                        | Status::INDEX_RENAMED
                        | Status::INDEX_TYPECHANGE
                        | Status::CONFLICTED;
                    if entry.status().intersects(staged) {
                        to_reset.push(rel);
                    }
                    continue;
                }
                // Decide by what is on disk now rather than by status flags:
                // present means stage it, absent means drop it.
                let abs = self.root.join(&rel);
                match std::fs::symlink_metadata(&abs) {
                    // A path reached through a symlinked parent is not in the
                    // tree: staging it would read whatever the link points at
                    // on the host into the commit.
                    Ok(_) if through_link(&self.root, bytes) => to_remove.push(rel),
                    Ok(_) => to_add.push(rel),
                    // NotADirectory: a parent became a file, so this path is gone too.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        to_remove.push(rel)
                    }
                    Err(e) => return Err(io(&abs)(e)),
                }
            }
        }

        // Removals first so a file replaced by a directory (or the reverse)
        // never collides with its own stale entry.
        for rel in &to_remove {
            index
                .remove_path(rel)
                .map_err(git("unstage deleted file"))?;
        }
        for rel in &to_add {
            // Symlinks are stored as links (libgit2 lstat()s and readlink()s);
            // their targets are never read.
            index.add_path(rel).map_err(git("stage file"))?;
        }
        for rel in &to_reset {
            reset_to_tree(&mut index, head_tree, rel)?;
        }

        index.write().map_err(git("write index"))?;
        let tree_id = index.write_tree().map_err(git("write tree"))?;
        self.repo.find_tree(tree_id).map_err(git("find tree"))
    }

    /// The repository's index, reloaded from disk. An index the agent
    /// corrupted is rebuilt from HEAD rather than blocking every later commit.
    fn load_index(&self) -> Result<git2::Index, GitError> {
        let loaded = self
            .repo
            .index()
            .and_then(|mut i| i.read(false).map(|()| i));
        match loaded {
            Ok(index) => Ok(index),
            Err(_) => {
                let path = self.repo.path().join("index");
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&path)(e)),
                }
                let mut index = git2::Index::open(&path).map_err(git("create index"))?;
                if let Some(c) = self.head_commit()? {
                    let tree = c.tree().map_err(git("read HEAD tree"))?;
                    index.read_tree(&tree).map_err(git("read HEAD tree"))?;
                }
                self.repo
                    .set_index(&mut index)
                    .map_err(git("replace index"))?;
                Ok(index)
            }
        }
    }

    /// Author and committer: the configured identity, else `proctor <proctor@localhost>`.
    fn signature(&self) -> Result<Signature<'static>, GitError> {
        let config = self.repo.config().ok();
        let get = |key: &str| {
            config
                .as_ref()
                .and_then(|c| c.get_string(key).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let name = get("user.name").unwrap_or_else(|| FALLBACK_NAME.to_string());
        let email = get("user.email").unwrap_or_else(|| FALLBACK_EMAIL.to_string());
        // A configured name libgit2 rejects (e.g. containing `<`) must not
        // stop the attempt from being recorded.
        Signature::now(&name, &email)
            .or_else(|_| Signature::now(FALLBACK_NAME, FALLBACK_EMAIL))
            .map_err(git("make signature"))
    }

    /// Paths whose content or mode differs between the trees of two commits. Sorted.
    pub fn changed_paths(&self, from: Oid, to: Oid) -> Result<Vec<String>, GitError> {
        let a = self.commit_tree(from)?;
        let b = self.commit_tree(to)?;
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&a), Some(&b), None)
            .map_err(git("diff trees"))?;
        let mut paths = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path_bytes() {
                    paths.push(String::from_utf8_lossy(p).into_owned());
                }
            }
        }
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    fn commit_tree(&self, commit: Oid) -> Result<Tree<'_>, GitError> {
        self.repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git("read commit tree"))
    }

    /// Writes the tree of `commit` into `dest` (missing or empty): files with
    /// 0644/0755, symlinks as links, submodules as empty directories, no `.git`.
    pub fn export_tree(&self, commit: Oid, dest: &Path) -> Result<(), GitError> {
        let tree = self.commit_tree(commit)?;
        export::export(&self.repo, &tree, dest)
    }

    /// Writes the directory `dir` (repository-relative, `/`-separated;
    /// empty for the whole tree) of `commit` into `dest` (missing or empty),
    /// as [`GitRepo::export_tree`] does; `false` when the commit has no
    /// such directory.
    pub fn export_dir(&self, commit: Oid, dir: &str, dest: &Path) -> Result<bool, GitError> {
        let tree = self.commit_tree(commit)?;
        if dir.is_empty() {
            export::export(&self.repo, &tree, dest)?;
            return Ok(true);
        }
        let entry = match tree.get_path(Path::new(dir)) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(false),
            Err(e) => return Err(git("look up path")(e)),
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Ok(false);
        }
        let sub = self.repo.find_tree(entry.id()).map_err(git("read tree"))?;
        export::export(&self.repo, &sub, dest)?;
        Ok(true)
    }

    /// Commits from `from` following first parents, newest first, stopping
    /// before `stop_at` (which is not included) or at the root.
    pub fn first_parent_log(
        &self,
        from: Oid,
        stop_at: Option<Oid>,
    ) -> Result<Vec<CommitInfo>, GitError> {
        let mut out = Vec::new();
        let mut next = Some(from);
        while let Some(oid) = next {
            if Some(oid) == stop_at {
                break;
            }
            let c = self.repo.find_commit(oid).map_err(git("read commit"))?;
            out.push(CommitInfo {
                oid,
                message: String::from_utf8_lossy(c.message_bytes()).into_owned(),
                time: c.time().seconds(),
            });
            next = c.parent_id(0).ok();
        }
        Ok(out)
    }

    /// Content of the blob at `path` (repo-relative, `/`-separated) in
    /// `commit`; `None` if there is no such path or it is not a blob. For a
    /// symlink this is the link target.
    pub fn read_blob_at(&self, commit: Oid, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        match self.blob_entry_at(commit, path)? {
            Some(entry) => self.blob(entry.id()).map(Some),
            None => Ok(None),
        }
    }

    /// The entry at `path` in `commit` if it is a blob; `None` if there is
    /// no such path or it is not a blob.
    fn blob_entry_at(
        &self,
        commit: Oid,
        path: &str,
    ) -> Result<Option<TreeEntry<'static>>, GitError> {
        let tree = self.commit_tree(commit)?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(git("look up path")(e)),
        };
        Ok(Some(entry).filter(|e| e.kind() == Some(ObjectType::Blob)))
    }

    /// Whether `oid` names a commit in this repository.
    pub fn has_commit(&self, oid: Oid) -> bool {
        self.repo.find_commit(oid).is_ok()
    }

    /// Whether `ancestor` is reachable from `of`. A commit counts as its own
    /// ancestor, as in `git merge-base --is-ancestor`.
    pub fn is_ancestor(&self, ancestor: Oid, of: Oid) -> Result<bool, GitError> {
        if ancestor == of {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(of, ancestor)
            .map_err(git("walk history"))
    }

    /// `user.email` from the repository's configuration (local, global or system).
    pub fn user_email(&self) -> Option<String> {
        self.repo
            .config()
            .ok()?
            .get_string("user.email")
            .ok()
            .filter(|e| !e.trim().is_empty())
    }
}

/// Refuses a work tree that does not name `git_dir` as its repository.
///
/// `core.worktree` in `.git/config` (which an agent may be able to write)
/// would otherwise point proctor's commits at any host directory, staging
/// files such as `~/.ssh` into history. A genuine work tree has a `.git`
/// directory that is the git dir, or a `.git` file (`gitdir: …`) naming it,
/// as linked worktrees and submodules do.
fn check_work_tree_claims(root: &Path, git_dir: &Path) -> Result<(), GitError> {
    let dot_git = root.join(".git");
    // Following a `.git` symlink is fine: what matters is where it ends up.
    let claimed = match std::fs::metadata(&dot_git) {
        Ok(meta) if meta.is_dir() => Some(dot_git.clone()),
        Ok(meta) if meta.is_file() => {
            let text = std::fs::read_to_string(&dot_git).map_err(io(&dot_git))?;
            text.strip_prefix("gitdir:")
                .map(|p| root.join(p.trim_end_matches(['\n', '\r']).trim_start()))
        }
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&dot_git)(e)),
    };
    let points_back = claimed
        .and_then(|p| p.canonicalize().ok())
        .is_some_and(|p| p == git_dir);
    if points_back {
        Ok(())
    } else {
        Err(GitError::ForeignWorkTree {
            git_dir: git_dir.to_path_buf(),
            work_tree: root.to_path_buf(),
        })
    }
}

/// Puts `rel` back to its state in `tree` (or removes it if absent there),
/// dropping any conflict stages.
fn reset_to_tree(
    index: &mut git2::Index,
    tree: Option<&Tree<'_>>,
    rel: &Path,
) -> Result<(), GitError> {
    let in_tree = match tree.map(|t| t.get_path(rel)) {
        Some(Ok(e)) => Some(e),
        Some(Err(e)) if e.code() != ErrorCode::NotFound => return Err(git("look up path")(e)),
        _ => None,
    };
    // Clears conflict stages and reuc for the path as well as stage 0.
    index
        .remove_path(rel)
        .map_err(git("unstage skipped file"))?;
    if let Some(e) = in_tree {
        if e.kind() == Some(ObjectType::Tree) {
            // HEAD has a directory here; the skipped status entry was a file
            // under it already handled by its own path.
            return Ok(());
        }
        let zero = IndexTime::new(0, 0);
        // Zeroed stat data only means the next scan re-hashes this one file.
        let entry = IndexEntry {
            ctime: zero,
            mtime: zero,
            dev: 0,
            ino: 0,
            mode: e.filemode() as u32,
            uid: 0,
            gid: 0,
            file_size: 0,
            id: e.id(),
            flags: 0,
            flags_extended: 0,
            path: rel.as_os_str().as_bytes().to_vec(),
        };
        index.add(&entry).map_err(git("restore skipped file"))?;
    }
    Ok(())
}

/// Whether any parent directory of `rel` (inside `root`) is not a real
/// directory, so that the path resolves through a symlink.
fn through_link(root: &Path, rel: &[u8]) -> bool {
    let mut dir = root.to_path_buf();
    let mut parts = rel.split(|b| *b == b'/').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return false;
        }
        dir.push(OsStr::from_bytes(part));
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            _ => return true,
        }
    }
    false
}

fn trim_slash(p: &[u8]) -> &[u8] {
    p.strip_suffix(b"/").unwrap_or(p)
}

/// Status paths as the `/`-separated strings `skip` and callers see.
fn status_path(p: &[u8]) -> String {
    String::from_utf8_lossy(trim_slash(p)).into_owned()
}
