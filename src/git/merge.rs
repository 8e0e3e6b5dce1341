//! Merging a parallel child's branch into its parent's, with libgit2 only.
//!
//! The merge is computed in memory; the parent's branch and working tree
//! change only when it is clean. A conflicting file is never resolved here
//! (nor by an agent): the caller gets the paths and a person decides. The
//! one exception is what proctor itself appends to line by line (the
//! ledger): two children's lines are both kept, as git's `union` driver
//! would.

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{BranchType, ErrorCode, IndexEntry, MergeOptions};

use super::workspace::BranchGuard;
use super::{git, GitError, GitRepo, Oid};

/// What merging a branch into the guarded one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// A merge commit (`commit`) now is the guarded branch's tip.
    Merged { commit: Oid },
    /// Everything of the other side was already on the branch.
    AlreadyIn,
    /// These files conflict; nothing was changed.
    Conflict { paths: Vec<String> },
}

impl BranchGuard {
    /// Merges commit `theirs` into the guarded branch checked out in `on`:
    /// a merge commit with `message` onto the tip proctor last wrote (a
    /// compare-and-swap, as [`BranchGuard::commit`]), and `on`'s working
    /// tree updated to it. Conflicts in files where `union` is true are
    /// resolved by keeping both sides' lines; any other conflict leaves
    /// branch, index and working tree exactly as they were.
    pub fn merge(
        &self,
        on: &GitRepo,
        theirs: Oid,
        message: &str,
        union: &[&str],
    ) -> Result<Merge, GitError> {
        self.check(on)?;
        let repo = &on.repo;
        let ours = self.tip();
        if theirs == ours || on.is_ancestor(theirs, ours)? {
            return Ok(Merge::AlreadyIn);
        }
        let our_commit = repo.find_commit(ours).map_err(git("read branch tip"))?;
        let their_commit = repo
            .find_commit(theirs)
            .map_err(git("read merged commit"))?;
        let mut opts = MergeOptions::new();
        opts.fail_on_conflict(false);
        let mut index = repo
            .merge_commits(&our_commit, &their_commit, Some(&opts))
            .map_err(git("merge"))?;
        let mut conflicted = Vec::new();
        if index.has_conflicts() {
            let conflicts: Vec<_> = index
                .conflicts()
                .map_err(git("read merge conflicts"))?
                .collect::<Result<_, _>>()
                .map_err(git("read merge conflicts"))?;
            for c in conflicts {
                let Some(entry) = c.our.as_ref().or(c.their.as_ref()).or(c.ancestor.as_ref())
                else {
                    continue;
                };
                let path = String::from_utf8_lossy(&entry.path).into_owned();
                match (&c.our, &c.their) {
                    (Some(o), Some(t)) if union.contains(&path.as_str()) => {
                        let text = union_lines(
                            &blob(repo, o.id)?,
                            &blob(repo, t.id)?,
                            c.ancestor.as_ref().map(|a| blob(repo, a.id)).transpose()?,
                        );
                        let id = repo.blob(&text).map_err(git("write merged file"))?;
                        // Stage 0 (the stage bits cleared): resolved.
                        let merged = IndexEntry {
                            ctime: o.ctime,
                            mtime: o.mtime,
                            dev: o.dev,
                            ino: o.ino,
                            mode: o.mode,
                            uid: o.uid,
                            gid: o.gid,
                            file_size: text.len() as u32,
                            id,
                            flags: o.flags & 0x0fff,
                            flags_extended: o.flags_extended,
                            path: o.path.clone(),
                        };
                        index
                            .conflict_remove(Path::new(&path))
                            .map_err(git("resolve merge"))?;
                        index.add(&merged).map_err(git("resolve merge"))?;
                    }
                    _ => conflicted.push(path),
                }
            }
        }
        if !conflicted.is_empty() {
            conflicted.sort();
            conflicted.dedup();
            return Ok(Merge::Conflict { paths: conflicted });
        }
        let tree_id = index
            .write_tree_to(repo)
            .map_err(git("write merged tree"))?;
        let tree = repo.find_tree(tree_id).map_err(git("read merged tree"))?;
        // Lines appended to a union file in the working tree since the tip
        // (an answer not yet committed) are set aside, so the checkout
        // finds it clean, and appended again after.
        let our_tree = our_commit.tree().map_err(git("read branch tip tree"))?;
        let mut pending: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
        for rel in union {
            let file = on.root().join(rel);
            let Ok(working) = std::fs::read(&file) else {
                continue;
            };
            let committed = match our_tree.get_path(Path::new(rel)) {
                Ok(entry) => blob(repo, entry.id())?,
                Err(_) => Vec::new(),
            };
            if working == committed {
                continue;
            }
            let extra = union_lines(&[], &working, Some(committed.clone()));
            std::fs::write(&file, &committed).map_err(super::io(&file))?;
            pending.push((file, extra));
        }
        // The working tree first, against the branch tip it holds: a file
        // someone changed there makes libgit2 refuse before writing.
        let mut checkout = CheckoutBuilder::new();
        checkout.safe().overwrite_ignored(false);
        if let Err(e) = repo.checkout_tree(tree.as_object(), Some(&mut checkout)) {
            for (file, extra) in &pending {
                let now = std::fs::read(file).unwrap_or_default();
                let _ = std::fs::write(file, union_lines(&now, extra, None));
            }
            return Err(git("check out merged tree")(e));
        }
        let sig = on.signature()?;
        let refname = format!("refs/heads/{}", self.branch());
        let oid = match repo.commit(
            Some(&refname),
            &sig,
            &sig,
            message,
            &tree,
            &[&our_commit, &their_commit],
        ) {
            Ok(oid) => oid,
            Err(e) if e.code() == ErrorCode::Modified => {
                self.check(on)?;
                return Err(git("merge commit")(e));
            }
            Err(e) => return Err(git("merge commit")(e)),
        };
        self.set_tip(oid);
        for (file, extra) in pending {
            let now = std::fs::read(&file).unwrap_or_default();
            let text = union_lines(&now, &extra, None);
            std::fs::write(&file, text).map_err(super::io(&file))?;
        }
        Ok(Merge::Merged { commit: oid })
    }
}

impl GitRepo {
    /// Deletes branch `name` if it still points at `at` (a merged child's,
    /// whose commits the parent now holds); anything else leaves it.
    pub fn delete_branch_at(&self, name: &str, at: Oid) -> Result<(), GitError> {
        let mut branch = match self.repo.find_branch(name, BranchType::Local) {
            Ok(b) => b,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(()),
            Err(e) => return Err(git("find branch")(e)),
        };
        if branch.get().target() != Some(at) {
            return Ok(());
        }
        branch.delete().map_err(git("delete branch"))
    }
}

fn blob(repo: &git2::Repository, id: Oid) -> Result<Vec<u8>, GitError> {
    Ok(repo
        .find_blob(id)
        .map_err(git("read conflicting file"))?
        .content()
        .to_vec())
}

/// Our lines, then each of theirs that is neither ours nor the common
/// ancestor's (what both sides appended since they forked).
fn union_lines(ours: &[u8], theirs: &[u8], ancestor: Option<Vec<u8>>) -> Vec<u8> {
    let lines = |b: &[u8]| -> Vec<Vec<u8>> {
        b.split_inclusive(|&c| c == b'\n')
            .map(|l| {
                let mut l = l.to_vec();
                if l.last() != Some(&b'\n') {
                    l.push(b'\n');
                }
                l
            })
            .collect()
    };
    let base = ancestor.as_deref().map(lines).unwrap_or_default();
    let mut out = lines(ours);
    for line in lines(theirs) {
        if !out.contains(&line) && !base.contains(&line) {
            out.push(line);
        }
    }
    out.concat()
}

#[cfg(test)]
mod tests {
    use super::union_lines;

    #[test]
    fn union_keeps_both_sides_appended_lines_once() {
        let base = b"a\n".to_vec();
        let out = union_lines(b"a\nb\n", b"a\nc", Some(base));
        assert_eq!(out, b"a\nb\nc\n");
    }
}
