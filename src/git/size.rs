//! How big a tree is: the one an attempt would commit, measured before a
//! single blob of it is written (so an attempt over its caps never grows
//! `.git`), and a committed one, measured from object headers. Sizes are
//! logical: a sparse file counts in full, as it would in a blob.
//!
//! Nothing here reads a file's content or keeps a list of the tree's
//! paths: memory stays flat however many files there are.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;

use git2::build::CheckoutBuilder;
use git2::{ObjectType, Oid, Status, TreeWalkMode, TreeWalkResult};

use super::{git, io, through_link, trim_slash, GitError, GitRepo};

/// Files, bytes and the largest file of a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSize {
    pub files: u64,
    /// Sum of the files' logical sizes (a symlink counts its target's length).
    pub bytes: u64,
    /// The largest file: its path and size.
    pub largest: Option<(String, u64)>,
}

impl TreeSize {
    fn add(&mut self, path: impl FnOnce() -> String, size: u64) {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.largest.as_ref().is_none_or(|(_, max)| size > *max) {
            self.largest = Some((path(), size));
        }
    }
}

/// Status bits of a path HEAD has (the rest are new paths).
const IN_HEAD: Status = Status::WT_MODIFIED
    .union(Status::WT_DELETED)
    .union(Status::WT_TYPECHANGE)
    .union(Status::WT_RENAMED)
    .union(Status::INDEX_MODIFIED)
    .union(Status::INDEX_DELETED)
    .union(Status::INDEX_TYPECHANGE)
    .union(Status::INDEX_RENAMED)
    .union(Status::CONFLICTED);

impl GitRepo {
    /// The size of the tree [`GitRepo::commit_all`] with the same `skip`
    /// would commit now: HEAD's blobs for what is unchanged (from object
    /// headers), the files on disk (from `lstat`) for the rest. Writes
    /// nothing: no blob, no index.
    pub fn pending_size(&self, skip: &dyn Fn(&str) -> bool) -> Result<TreeSize, GitError> {
        let mut size = TreeSize::default();
        // Paths of HEAD's that this commit replaces or drops: only changed
        // tracked paths, never the (possibly huge) list of new ones.
        let mut replaced: HashSet<Vec<u8>> = HashSet::new();
        {
            let statuses = self.statuses(false)?;
            for entry in statuses.iter() {
                let bytes = trim_slash(entry.path_bytes());
                let rel = String::from_utf8_lossy(bytes);
                if skip(&rel) {
                    continue;
                }
                if entry.status().intersects(IN_HEAD) {
                    replaced.insert(bytes.to_vec());
                }
                let abs = self.root.join(std::ffi::OsStr::from_bytes(bytes));
                match std::fs::symlink_metadata(&abs) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) if through_link(&self.root, bytes) => {}
                    Ok(meta) => size.add(|| rel.into_owned(), meta.len()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) => {}
                    Err(e) => return Err(io(&abs)(e)),
                }
            }
        }
        if let Some(head) = self.head()? {
            self.walk_blobs(head, &mut |path, bytes| {
                if !replaced.contains(path) {
                    size.add(|| String::from_utf8_lossy(path).into_owned(), bytes);
                }
            })?;
        }
        Ok(size)
    }

    /// A lower bound on the tree [`GitRepo::commit_all`] would commit: the
    /// files of the working tree that are neither ignored nor `skip`ped
    /// (a tracked file under an ignored directory is missed), counted by a
    /// walk that keeps only the directories still to visit and stops as
    /// soon as `enough` says so. Cheaper than [`GitRepo::pending_size`],
    /// whose status list holds every new path: 200,000 new files cost it
    /// some 90 MB.
    pub fn scan_size(
        &self,
        skip: &dyn Fn(&str) -> bool,
        enough: &dyn Fn(&TreeSize) -> bool,
    ) -> Result<TreeSize, GitError> {
        let mut size = TreeSize::default();
        let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(dir) = pending.pop() {
            let abs = self.root.join(std::ffi::OsStr::from_bytes(&dir));
            let entries = match std::fs::read_dir(&abs) {
                Ok(entries) => entries,
                // Gone or replaced since: what is there is counted by the
                // exact measure after this one.
                Err(_) => continue,
            };
            for entry in entries {
                let entry = entry.map_err(io(&abs))?;
                let name = entry.file_name();
                let mut rel = dir.clone();
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(name.as_bytes());
                if rel == b".git" {
                    continue;
                }
                let text = String::from_utf8_lossy(&rel);
                if skip(&text) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let ignored = self
                    .repo
                    .is_path_ignored(std::path::Path::new(std::ffi::OsStr::from_bytes(&rel)))
                    .unwrap_or(false);
                if ignored {
                    continue;
                }
                if meta.is_dir() {
                    pending.push(rel);
                } else {
                    size.add(|| text.into_owned(), meta.len());
                    if enough(&size) {
                        return Ok(size);
                    }
                }
            }
        }
        Ok(size)
    }

    /// The size of the tree of `commit`, from object headers (no blob is
    /// read).
    pub fn tree_size(&self, commit: Oid) -> Result<TreeSize, GitError> {
        let mut size = TreeSize::default();
        self.walk_blobs(commit, &mut |path, bytes| {
            size.add(|| String::from_utf8_lossy(path).into_owned(), bytes)
        })?;
        Ok(size)
    }

    /// Calls `each(path, size)` for every blob of `commit`'s tree.
    fn walk_blobs(&self, commit: Oid, each: &mut dyn FnMut(&[u8], u64)) -> Result<(), GitError> {
        let tree = self.commit_tree(commit)?;
        let odb = self.repo.odb().map_err(git("open object database"))?;
        let mut failed = None;
        let mut path = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return TreeWalkResult::Ok;
            }
            match odb.read_header(entry.id()) {
                Ok((bytes, _)) => {
                    path.clear();
                    path.extend_from_slice(root.as_bytes());
                    path.extend_from_slice(entry.name_bytes());
                    each(&path, bytes as u64);
                    TreeWalkResult::Ok
                }
                Err(e) => {
                    failed = Some(e);
                    TreeWalkResult::Abort
                }
            }
        })
        .map_err(git("walk tree"))?;
        match failed {
            Some(e) => Err(git("read object header")(e)),
            None => Ok(()),
        }
    }

    /// Whether the object database holds a blob with exactly `content`
    /// (hashed here, never written).
    pub fn contains_blob(&self, content: &[u8]) -> Result<bool, GitError> {
        let oid = Oid::hash_object(ObjectType::Blob, content).map_err(git("hash content"))?;
        let odb = self.repo.odb().map_err(git("open object database"))?;
        Ok(odb.exists(oid))
    }

    /// Puts the working tree and the index back to HEAD: changed tracked
    /// files rewritten from HEAD, new files that are not ignored removed
    /// (ignored ones, proctor's private state among them, stay). Writes no
    /// object to `.git`. New files go first, by a walk that keeps only the
    /// directories still to visit: libgit2's checkout lists every
    /// untracked path before removing any (200,000 new files cost it some
    /// 40 MB); it then only has what is left to put back.
    pub fn restore_head(&self) -> Result<(), GitError> {
        self.remove_new_files()?;
        let mut checkout = CheckoutBuilder::new();
        checkout
            .force()
            .remove_untracked(true)
            .remove_ignored(false)
            .recreate_missing(true);
        self.repo
            .checkout_head(Some(&mut checkout))
            .map_err(git("restore the last commit"))
    }

    /// Removes the files of the working tree that HEAD does not have and
    /// git does not ignore (a link is removed, never followed), and then
    /// the directories HEAD does not have that this left empty. A
    /// directory HEAD has as a submodule is left alone.
    fn remove_new_files(&self) -> Result<(), GitError> {
        let head = match self.head()? {
            Some(commit) => Some(self.commit_tree(commit)?),
            None => None,
        };
        // (directory, whether HEAD has it, whether its entries are done):
        // a directory is pushed again under its entries, so it is seen
        // once more after them.
        let mut pending: Vec<(Vec<u8>, bool, bool)> = vec![(Vec::new(), true, false)];
        while let Some((dir, in_head, done)) = pending.pop() {
            let abs = self.root.join(std::ffi::OsStr::from_bytes(&dir));
            if done {
                if !in_head {
                    // Not empty when it holds ignored files: they stay.
                    let _ = std::fs::remove_dir(&abs);
                }
                continue;
            }
            let entries = match std::fs::read_dir(&abs) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&abs)(e)),
            };
            pending.push((dir.clone(), in_head, true));
            for entry in entries {
                let entry = entry.map_err(io(&abs))?;
                let mut rel = dir.clone();
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(entry.file_name().as_bytes());
                if rel == b".git" {
                    continue;
                }
                let kind = entry.file_type().map_err(io(&entry.path()))?;
                let mut probe = rel.clone();
                if kind.is_dir() {
                    probe.push(b'/');
                }
                let ignored = self
                    .repo
                    .is_path_ignored(std::path::Path::new(std::ffi::OsStr::from_bytes(&probe)))
                    .unwrap_or(true);
                if ignored {
                    continue;
                }
                let in_tree = match (&head, in_head) {
                    (Some(tree), true) => tree
                        .get_path(std::path::Path::new(std::ffi::OsStr::from_bytes(&rel)))
                        .ok()
                        .and_then(|e| e.kind()),
                    _ => None,
                };
                if kind.is_dir() {
                    match in_tree {
                        Some(ObjectType::Commit) => {}
                        Some(ObjectType::Tree) => pending.push((rel, true, false)),
                        _ => pending.push((rel, false, false)),
                    }
                } else if in_tree != Some(ObjectType::Blob) {
                    let path = entry.path();
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&path)(e)),
                    }
                }
            }
        }
        Ok(())
    }
}
