//! The trust boundary: the exam's materials, the write allow-list and the
//! test-count audit.
//!
//! A [`Watch`] pins the exam's materials (the manifest's `protected:`
//! globs, the manifest files and `.proctor/config.yaml`) to their content in
//! the base commit, hashed with SHA-256, and compares any directory (the
//! working tree after an agent run, the exported tree after an exam) with
//! it. Differences are set aside in [`quarantine`] and the trusted copies
//! restored. [`junit`] counts the tests an exam reports.
//!
//! This module decides what counts as tampering; the engine decides when to
//! look. It never follows a link an agent planted, never reads a file
//! outside the directory it is given, and never executes anything. Git is
//! reached only through `crate::git`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use globset::GlobSet;
use serde::{Deserialize, Serialize};

use crate::git::{BlobMode, GitError, GitRepo, Oid};
use crate::manifest::compile_globs;

pub mod fsafe;
pub mod junit;
pub mod named;
pub mod quarantine;
pub mod review;
pub mod seal;

use fsafe::Found;

/// Manifest names and the host config: always part of the exam's materials.
pub const CONTROL_FILES: [&str; 3] = ["proctor.yaml", "lute.yaml", ".proctor/config.yaml"];

/// At most this many read-only mounts are added to a verifier container
/// when the materials cannot be [sealed](seal) (proctor is not root); past
/// it the after-exam checks alone guard the rest.
pub const MAX_READONLY_MOUNTS: usize = 200;

/// What to guard, as the manifest and the command line say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `protected:` globs of every loop in the manifest.
    pub protected: Vec<String>,
    /// Exact repo-relative paths of control files (the manifest in use and
    /// [`CONTROL_FILES`]).
    pub control: Vec<String>,
}

impl Rules {
    /// The rules for a manifest at `manifest_rel` (if it is a file in the
    /// repository) with these protected globs.
    pub fn new(protected: Vec<String>, manifest_rel: Option<&str>) -> Rules {
        let mut control: Vec<String> = CONTROL_FILES.iter().map(|s| s.to_string()).collect();
        if let Some(rel) = manifest_rel {
            if fsafe::components(rel).is_ok() && !control.iter().any(|c| c == rel) {
                control.insert(0, rel.to_string());
            }
        }
        Rules { protected, control }
    }
}

impl Rules {
    /// Whether these rules watch `path` (without a base commit at hand).
    pub fn watches(&self, path: &str) -> bool {
        self.control.iter().any(|c| c == path)
            || self
                .protected
                .iter()
                .any(|g| compile_globs(&[g]).is_ok_and(|set| set.is_match(path)))
    }
}

/// How a watched path differs from its trusted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Modified,
    Deleted,
    Added,
    /// Replaced by a symlink (or a parent directory was).
    Symlink,
    /// Replaced by a directory, a FIFO or another kind of file.
    Replaced,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Modified => "modified",
            Change::Deleted => "deleted",
            Change::Added => "added",
            Change::Symlink => "replaced by a symlink",
            Change::Replaced => "replaced",
        }
    }
}

/// One watched path that is not in its trusted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    pub path: String,
    pub change: Change,
    /// The rule that watches it, for people: ``protected: `tests/**` ``.
    pub rule: String,
}

/// The trusted state of one watched blob.
#[derive(Debug, Clone)]
struct Trusted {
    mode: BlobMode,
    sha256: [u8; 32],
    /// The link target, for a symlink.
    target: Vec<u8>,
}

/// One file's place on disk and the last change of its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            size: meta.size(),
        }
    }
}

/// [`Stamp`]s of the watched files of one exported tree ([`Watch::stamps`]).
#[derive(Debug, Clone, Default)]
pub struct Stamps(BTreeMap<String, Stamp>);

impl Stamps {
    /// How many files were stamped.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The exam's materials pinned to the base commit.
pub struct Watch {
    globs: Vec<(String, GlobSet)>,
    control: Vec<String>,
    base: Oid,
    trusted: BTreeMap<String, Trusted>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("base", &self.base)
            .field("files", &self.trusted.len())
            .finish()
    }
}

impl Watch {
    /// Hashes every watched blob of `base`.
    pub fn new(git: &GitRepo, base: Oid, rules: &Rules) -> Result<Watch, GitError> {
        let globs = rules
            .protected
            .iter()
            // Validation compiled these already; a glob that cannot compile
            // here watches nothing rather than everything.
            .filter_map(|g| compile_globs(&[g]).ok().map(|set| (g.clone(), set)))
            .collect();
        let mut watch = Watch {
            globs,
            control: rules.control.clone(),
            base,
            trusted: BTreeMap::new(),
        };
        for blob in git.blobs_matching(base, &|p| watch.watches(p))? {
            let content = git.blob(blob.oid)?;
            let trusted = Trusted {
                mode: blob.mode,
                sha256: fsafe::sha256(&content),
                target: if blob.mode == BlobMode::Link {
                    content
                } else {
                    Vec::new()
                },
            };
            watch.trusted.insert(blob.path, trusted);
        }
        Ok(watch)
    }

    pub fn base(&self) -> Oid {
        self.base
    }

    /// SHA-256 over every watched blob of the base commit (path, mode and
    /// content hash, in path order), hex, and how many there are: the exam's
    /// materials as an attestation names them.
    pub fn digest(&self) -> (String, usize) {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for (path, trusted) in &self.trusted {
            let mode = match trusted.mode {
                BlobMode::File => "100644",
                BlobMode::Exec => "100755",
                BlobMode::Link => "120000",
            };
            hasher.update(format!("{mode} {} {path}\n", hex::encode(trusted.sha256)));
        }
        (hex::encode(hasher.finalize()), self.trusted.len())
    }

    /// Watched paths present in the base commit.
    pub fn trusted_paths(&self) -> impl Iterator<Item = &str> {
        self.trusted.keys().map(String::as_str)
    }

    /// Whether any rule watches `path`.
    pub fn watches(&self, path: &str) -> bool {
        self.rule_for(path).is_some()
    }

    /// The rule watching `path`, for messages.
    pub fn rule_for(&self, path: &str) -> Option<String> {
        if self.control.iter().any(|c| c == path) {
            return Some(format!("control file `{path}`"));
        }
        self.globs
            .iter()
            .find(|(_, set)| set.is_match(path))
            .map(|(glob, _)| format!("protected: `{glob}`"))
    }

    /// Compares the watched paths under `root` with the base commit:
    /// every path watched in the base, plus `candidates` (changed paths
    /// from `git status`) that a rule watches. A parent directory replaced
    /// by a link or file is reported once, under its own path.
    pub fn scan(&self, root: &Path, candidates: &[String]) -> std::io::Result<Vec<Tamper>> {
        let mut paths: BTreeSet<&str> = self.trusted.keys().map(String::as_str).collect();
        paths.extend(
            candidates
                .iter()
                .map(String::as_str)
                .filter(|p| self.watches(p)),
        );
        let mut out: Vec<Tamper> = Vec::new();
        let mut blocked: BTreeSet<String> = BTreeSet::new();
        for path in paths {
            let rule = self.rule_for(path).unwrap_or_default();
            let found = fsafe::locate(root, path)?;
            let change = match (self.trusted.get(path), found) {
                (
                    _,
                    Found::Blocked {
                        ancestor,
                        link_target,
                    },
                ) => {
                    if blocked.insert(ancestor.clone()) {
                        out.push(Tamper {
                            path: ancestor,
                            change: if link_target.is_some() {
                                Change::Symlink
                            } else {
                                Change::Replaced
                            },
                            rule,
                        });
                    }
                    continue;
                }
                (None, Found::Absent) => continue,
                (None, _) => Change::Added,
                (Some(_), Found::Absent) => Change::Deleted,
                (Some(t), Found::File { sha256, exec, .. }) => {
                    let same_mode = match t.mode {
                        BlobMode::File => !exec,
                        BlobMode::Exec => exec,
                        BlobMode::Link => false,
                    };
                    if t.mode == BlobMode::Link {
                        Change::Replaced
                    } else if sha256 == t.sha256 && same_mode {
                        continue;
                    } else {
                        Change::Modified
                    }
                }
                (Some(t), Found::Link { target }) => {
                    if t.mode == BlobMode::Link && target == t.target {
                        continue;
                    }
                    Change::Symlink
                }
                (Some(_), Found::Dir | Found::Special) => Change::Replaced,
            };
            out.push(Tamper {
                path: path.to_string(),
                change,
                rule,
            });
        }
        // A path under a replaced parent is covered by the parent's record.
        out.retain(|t| {
            !blocked
                .iter()
                .any(|b| t.path.starts_with(&format!("{b}/")) && t.path != *b)
        });
        Ok(out)
    }

    /// Where each watched file of the exported tree at `export` lives on
    /// disk and when its inode last changed, taken before an exam: a file
    /// rewritten during the exam and put back has the trusted content again
    /// but a new change time (which no unprivileged process can set back)
    /// or a new inode, so [`Watch::rewritten`] still sees it, however many
    /// files are watched and whether or not they were mounted read-only.
    pub fn stamps(&self, export: &Path) -> Stamps {
        let mut stamps = BTreeMap::new();
        for (path, trusted) in &self.trusted {
            if trusted.mode == BlobMode::Link {
                continue;
            }
            // The tree was exported by proctor a moment ago: no link of the
            // exam's in it yet.
            if let Ok(meta) = std::fs::symlink_metadata(export.join(path)) {
                if meta.file_type().is_file() {
                    stamps.insert(path.clone(), Stamp::of(&meta));
                }
            }
        }
        Stamps(stamps)
    }

    /// Watched files of `export` that are no longer the inodes [`Watch::stamps`]
    /// saw, unchanged since: rewritten (even if put back), replaced or gone.
    pub fn rewritten(&self, export: &Path, before: &Stamps) -> Vec<String> {
        before
            .0
            .iter()
            .filter(|(path, stamp)| {
                std::fs::symlink_metadata(export.join(path))
                    .map_or(true, |meta| Stamp::of(&meta) != **stamp)
            })
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Watched paths whose committed entry in `commit` differs from the base,
    /// given the paths that differ between the two trees.
    pub fn changed_in(&self, changed: &[String]) -> Vec<String> {
        changed
            .iter()
            .filter(|p| self.watches(p))
            .cloned()
            .collect()
    }

    /// What to mount read-only over `/work` in a verifier container whose
    /// `/work` is the exported tree at `export`: the topmost directories
    /// that hold nothing but watched files, and the remaining watched files
    /// one by one. Only real files and directories are named (never a
    /// path reached through a link). Repo-relative, sorted; at most
    /// [`MAX_READONLY_MOUNTS`] (the bool says whether some were left out).
    pub fn readonly_cover(&self, export: &Path) -> (Vec<String>, bool) {
        let files: BTreeSet<&str> = self
            .trusted
            .iter()
            .filter(|(_, t)| t.mode != BlobMode::Link)
            .map(|(p, _)| p.as_str())
            .filter(|p| matches!(fsafe::locate(export, p), Ok(Found::File { .. })))
            .collect();
        // Every directory holding a watched file, deepest first.
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for file in &files {
            let mut parts: Vec<&str> = file.split('/').collect();
            parts.pop();
            while !parts.is_empty() {
                dirs.insert(parts.join("/"));
                parts.pop();
            }
        }
        let mut by_depth: Vec<&String> = dirs.iter().collect();
        by_depth.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        let mut full: BTreeSet<String> = BTreeSet::new();
        for dir in by_depth {
            let Ok(entries) = std::fs::read_dir(export.join(dir)) else {
                continue;
            };
            let mut all_watched = true;
            let mut any = false;
            for entry in entries {
                let Ok(entry) = entry else {
                    all_watched = false;
                    break;
                };
                any = true;
                let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
                let Ok(kind) = entry.file_type() else {
                    all_watched = false;
                    break;
                };
                let ok = (kind.is_file() && files.contains(rel.as_str()))
                    || (kind.is_dir() && full.contains(&rel));
                if !ok {
                    all_watched = false;
                    break;
                }
            }
            if any && all_watched {
                full.insert(dir.clone());
            }
        }
        let under_full = |p: &str| {
            full.iter()
                .any(|d| p.starts_with(&format!("{d}/")) && p != d)
        };
        let mut cover: Vec<String> = full.iter().filter(|d| !under_full(d)).cloned().collect();
        cover.extend(
            files
                .iter()
                .filter(|f| !under_full(f))
                .map(|f| f.to_string()),
        );
        cover.sort();
        let cut = cover.len() > MAX_READONLY_MOUNTS;
        cover.truncate(MAX_READONLY_MOUNTS);
        (cover, cut)
    }
}

/// The write allow-list of one loop.
pub struct Allow {
    globs: Vec<String>,
    set: Option<GlobSet>,
}

impl Allow {
    /// `writes:` globs; empty allows anything.
    pub fn new(globs: &[String]) -> Allow {
        Allow {
            globs: globs.to_vec(),
            set: if globs.is_empty() {
                None
            } else {
                compile_globs(globs).ok()
            },
        }
    }

    /// Whether the allow-list is in force.
    pub fn active(&self) -> bool {
        !self.globs.is_empty()
    }

    /// Whether an agent may change `path`. proctor's own state is never the
    /// agent's to judge here (it is read-only to the agent, or its journal).
    pub fn allows(&self, path: &str) -> bool {
        if path.starts_with(".proctor/") {
            return true;
        }
        match &self.set {
            None => !self.active(),
            Some(set) => set.is_match(path),
        }
    }

    /// The rule, for messages: ``writes: [`src/**`, `docs/**`]``.
    pub fn rule(&self) -> String {
        let list: Vec<String> = self.globs.iter().map(|g| format!("`{g}`")).collect();
        format!("writes: [{}]", list.join(", "))
    }
}

/// Bytes a loop's journal may hold after an agent run: far more than the
/// prompt carries (its last 16 KiB), far less than a blob worth smuggling.
pub const JOURNAL_CAP: u64 = 256 * 1024;

/// The journal directory, the only part of proctor's state the agent's
/// container can write.
pub const JOURNAL_DIR: &str = ".proctor/journal/";

/// Why a changed path under [`JOURNAL_DIR`] is not the agent's to change,
/// or `None` when it may: only its own loop's journal (`<loop>.md`), a
/// regular file of at most [`JOURNAL_CAP`] bytes. `len` is the file's size
/// now (`None` when it is gone or not a regular file: the link and FIFO
/// repair handles those).
pub fn journal_rule(loop_id: &str, path: &str, len: Option<u64>) -> Option<String> {
    let rest = path.strip_prefix(JOURNAL_DIR)?;
    let own = format!("{loop_id}.md");
    if rest != own {
        return Some(format!(
            "journal: only `{JOURNAL_DIR}{own}` is the agent's to write"
        ));
    }
    match len {
        Some(len) if len > JOURNAL_CAP => Some(format!(
            "journal: at most {} KiB (it had {len} bytes)",
            JOURNAL_CAP / 1024
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
