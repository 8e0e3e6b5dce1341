//! Read-only questions about committed trees, for the trust boundary:
//! which blobs of a commit match a rule, what one entry holds, and a
//! unified diff of two buffers. Nothing here writes to the repository.

use std::path::Path;

use git2::{ErrorCode, ObjectType, Oid, Patch, TreeEntry, TreeWalkMode, TreeWalkResult};

use super::{git, GitError, GitRepo};

/// How a blob sits in a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobMode {
    File,
    Exec,
    Link,
}

impl BlobMode {
    fn from_filemode(mode: i32) -> Option<BlobMode> {
        match mode {
            0o100644 | 0o100664 => Some(BlobMode::File),
            0o100755 => Some(BlobMode::Exec),
            0o120000 => Some(BlobMode::Link),
            _ => None,
        }
    }
}

/// One blob of a committed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeBlob {
    /// Repo-relative, `/`-separated.
    pub path: String,
    pub oid: Oid,
    pub mode: BlobMode,
}

impl GitRepo {
    /// Every blob (file, executable or symlink) of `commit`'s tree whose
    /// path `keep` accepts. Submodules are skipped. Sorted by path.
    pub fn blobs_matching(
        &self,
        commit: Oid,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<TreeBlob>, GitError> {
        let tree = self.commit_tree(commit)?;
        let mut out = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return TreeWalkResult::Ok;
            }
            let Some(mode) = BlobMode::from_filemode(entry.filemode()) else {
                return TreeWalkResult::Ok;
            };
            let path = format!("{dir}{}", String::from_utf8_lossy(entry.name_bytes()));
            if keep(&path) {
                out.push(TreeBlob {
                    path,
                    oid: entry.id(),
                    mode,
                });
            }
            TreeWalkResult::Ok
        })
        .map_err(git("walk tree"))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The mode and content of the blob at `path` in `commit`; `None` when
    /// the path is absent or not a blob. For a symlink the content is the
    /// link target.
    pub fn entry_at(
        &self,
        commit: Oid,
        path: &str,
    ) -> Result<Option<(BlobMode, Vec<u8>)>, GitError> {
        let Some(entry) = self.blob_entry_at(commit, path)? else {
            return Ok(None);
        };
        let Some(mode) = BlobMode::from_filemode(entry.filemode()) else {
            return Ok(None);
        };
        Ok(Some((mode, self.blob(entry.id())?)))
    }

    /// The content of a blob by id.
    pub fn blob(&self, oid: Oid) -> Result<Vec<u8>, GitError> {
        let blob = self.repo.find_blob(oid).map_err(git("read blob"))?;
        Ok(blob.content().to_vec())
    }
}

/// What one side of a changed path holds, read from the object database
/// only: no attributes, no diff or filter driver, no textconv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub kind: EntryKind,
    /// The blob's bytes (a link's target); empty for a submodule.
    pub content: Vec<u8>,
    /// The object id (a submodule's commit).
    pub oid: String,
}

/// How an entry sits in a tree, submodules and odd modes included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Exec,
    Link,
    Submodule,
}

/// A path whose entry differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedEntry {
    pub path: String,
    pub old: Option<Side>,
    pub new: Option<Side>,
}

impl GitRepo {
    /// Every path whose entry differs from `from` to `to`, with both sides'
    /// content read straight from the object database (never through
    /// `.gitattributes`, a diff driver or a filter), sorted by path.
    pub fn changed_entries(&self, from: Oid, to: Oid) -> Result<Vec<ChangedEntry>, GitError> {
        let mut out = Vec::new();
        for path in self.changed_paths(from, to)? {
            let old = self.side_at(from, &path)?;
            let new = self.side_at(to, &path)?;
            if old.is_some() || new.is_some() {
                out.push(ChangedEntry { path, old, new });
            }
        }
        Ok(out)
    }

    fn tree_entry_at(
        &self,
        commit: Oid,
        path: &str,
    ) -> Result<Option<TreeEntry<'static>>, GitError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git("read commit tree"))?;
        match tree.get_path(Path::new(path)) {
            Ok(e) => Ok(Some(e.to_owned())),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git("look up path")(e)),
        }
    }

    fn side_at(&self, commit: Oid, path: &str) -> Result<Option<Side>, GitError> {
        let Some(entry) = self.tree_entry_at(commit, path)? else {
            return Ok(None);
        };
        let kind = match entry.filemode() {
            0o160000 => EntryKind::Submodule,
            0o100755 => EntryKind::Exec,
            0o120000 => EntryKind::Link,
            0o100644 | 0o100664 => EntryKind::File,
            _ => return Ok(None),
        };
        let content = match kind {
            EntryKind::Submodule => Vec::new(),
            _ => self.blob(entry.id())?,
        };
        Ok(Some(Side {
            kind,
            content,
            oid: entry.id().to_string(),
        }))
    }
}

/// A unified diff (git's format, three lines of context) from `old` to
/// `new`; empty when they are equal. Binary content is named, not shown.
pub fn unified_diff(old: &[u8], new: &[u8], old_label: &str, new_label: &str) -> String {
    let patch = Patch::from_buffers(
        old,
        Some(Path::new(old_label)),
        new,
        Some(Path::new(new_label)),
        None,
    );
    match patch.and_then(|mut p| p.to_buf()) {
        Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
        Err(e) => format!("(no diff: {e})\n"),
    }
}
