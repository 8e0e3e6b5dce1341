//! What a person approves at a human gate, shown by proctor itself: the
//! change from the run's base to the exact commit under review, read from
//! git's object database without the repository's `.gitattributes`, diff
//! drivers or filters (an agent that adds `* -diff` cannot turn its change
//! into "Binary files differ"). Binary files are listed with size and
//! SHA-256; files that change how git, CI or tools treat the repository
//! (meta files), links, submodules and mode changes are flagged first.
//!
//! Pure: it renders what `crate::git` read, and decides nothing.

use std::fmt::Write as _;

use crate::git::{unified_diff, ChangedEntry, EntryKind, Side};
use crate::state::cards::fence_for;
use crate::terminal;

/// Bytes of diff text a review shows; the file list is always complete.
pub const DIFF_CAP: usize = 256 * 1024;

/// Base names that steer git, CI or tooling wherever they sit.
const META_NAMES: &[&str] = &[
    ".gitattributes",
    ".gitmodules",
    ".gitignore",
    ".mailmap",
    ".lfsconfig",
    ".git-blame-ignore-revs",
    "CODEOWNERS",
    ".gitlab-ci.yml",
    ".travis.yml",
    ".drone.yml",
    "Jenkinsfile",
    "azure-pipelines.yml",
    "bitbucket-pipelines.yml",
    ".pre-commit-config.yaml",
    ".envrc",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    "proctor.yaml",
    "lute.yaml",
];

/// Directories whose files steer CI, hooks, editors or build tools.
const META_DIRS: &[&str] = &[
    ".github/",
    ".gitlab/",
    ".circleci/",
    ".buildkite/",
    ".husky/",
    ".githooks/",
    ".devcontainer/",
    ".vscode/",
    ".cargo/",
];

/// Whether `path` is a meta file: it changes how git, CI or tools treat
/// the repository rather than being code or data under review.
pub fn is_meta(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    META_NAMES.contains(&name)
        || META_DIRS
            .iter()
            .any(|d| path.starts_with(d) || path.contains(&format!("/{d}")))
        || path == ".proctor/config.yaml"
}

/// One changed path, as the review lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub path: String,
    /// `added`, `deleted`, `modified`, `mode changed`, `type changed`.
    pub change: &'static str,
    /// Why it is flagged at the top, if it is.
    pub flag: Option<String>,
    /// One line: kind, size, hash for binaries, line counts for text.
    pub summary: String,
    /// The unified diff, for text on both sides.
    pub diff: Option<String>,
}

/// The change under review, from `base` to `commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub base: String,
    pub commit: String,
    pub files: Vec<Reviewed>,
}

fn is_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::protect::fsafe::sha256(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn describe(side: &Side) -> String {
    match side.kind {
        EntryKind::Submodule => format!("submodule at commit {}", side.oid),
        EntryKind::Link => format!(
            "symlink to `{}`",
            terminal::line(&String::from_utf8_lossy(&side.content))
        ),
        EntryKind::File | EntryKind::Exec if is_text(&side.content) => format!(
            "{}text, {} bytes",
            if side.kind == EntryKind::Exec {
                "executable "
            } else {
                ""
            },
            side.content.len()
        ),
        EntryKind::File | EntryKind::Exec => format!(
            "{}binary, {} bytes, sha256 {}",
            if side.kind == EntryKind::Exec {
                "executable "
            } else {
                ""
            },
            side.content.len(),
            sha256_hex(&side.content)
        ),
    }
}

impl Review {
    pub fn new(base: &str, commit: &str, entries: &[ChangedEntry]) -> Review {
        let files = entries
            .iter()
            .map(|e| {
                let change = match (&e.old, &e.new) {
                    (None, _) => "added",
                    (_, None) => "deleted",
                    (Some(o), Some(n)) if o.oid == n.oid && o.kind != n.kind => {
                        if matches!(
                            (o.kind, n.kind),
                            (EntryKind::File, EntryKind::Exec) | (EntryKind::Exec, EntryKind::File)
                        ) {
                            "mode changed"
                        } else {
                            "type changed"
                        }
                    }
                    (Some(o), Some(n)) if o.kind != n.kind => "type changed",
                    _ => "modified",
                };
                let mut why: Vec<&str> = Vec::new();
                if is_meta(&e.path) {
                    why.push("a meta file: it changes how git, CI or tools treat the repository");
                }
                let kinds = [&e.old, &e.new].into_iter().flatten().map(|s| s.kind);
                let kinds: Vec<EntryKind> = kinds.collect();
                if e.new.as_ref().is_some_and(|s| s.kind == EntryKind::Link) {
                    why.push("a symlink");
                }
                if kinds.contains(&EntryKind::Submodule) {
                    why.push("a submodule");
                }
                if change == "mode changed"
                    || e.new.as_ref().is_some_and(|s| s.kind == EntryKind::Exec)
                        && e.old.as_ref().is_none_or(|s| s.kind != EntryKind::Exec)
                {
                    why.push("made executable");
                }
                let summary = match (&e.old, &e.new) {
                    (None, Some(n)) => describe(n),
                    (Some(o), None) => format!("was {}", describe(o)),
                    (Some(o), Some(n)) => format!("{} → {}", describe(o), describe(n)),
                    (None, None) => String::new(),
                };
                let diff = match (&e.old, &e.new) {
                    (o, n)
                        if [o, n].into_iter().flatten().all(|s| {
                            matches!(s.kind, EntryKind::File | EntryKind::Exec)
                                && is_text(&s.content)
                        }) =>
                    {
                        let empty = Vec::new();
                        let old = o.as_ref().map_or(&empty, |s| &s.content);
                        let new = n.as_ref().map_or(&empty, |s| &s.content);
                        // The path is the agent's: escaped, it cannot start a line.
                        let label = terminal::line(&e.path);
                        Some(unified_diff(old, new, &label, &label))
                            .filter(|d| !d.trim().is_empty())
                    }
                    _ => None,
                };
                Reviewed {
                    path: e.path.clone(),
                    change,
                    flag: (!why.is_empty()).then(|| why.join("; ")),
                    summary,
                    diff,
                }
            })
            .collect();
        Review {
            base: base.to_string(),
            commit: commit.to_string(),
            files,
        }
    }

    pub fn flagged(&self) -> impl Iterator<Item = &Reviewed> {
        self.files.iter().filter(|f| f.flag.is_some())
    }

    /// The flagged paths, as Markdown for the top of a card: empty when
    /// nothing is flagged.
    pub fn flags_markdown(&self) -> String {
        let flagged: Vec<&Reviewed> = self.flagged().collect();
        if flagged.is_empty() {
            return String::new();
        }
        let mut out = format!(
            "**Flagged: review these first.** Commit `{}` changes files that steer git, CI or tools, links, submodules or modes:\n\n",
            short(&self.commit)
        );
        for f in &flagged {
            let _ = writeln!(
                out,
                "- ⚠ `{}` ({}): {}",
                terminal::line(&f.path),
                f.change,
                f.flag.as_deref().unwrap_or("")
            );
        }
        out.push('\n');
        out
    }

    /// The complete file list, then the diff (capped at [`DIFF_CAP`]) in a
    /// fence no line of it can close; every agent-written string escaped.
    pub fn body_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## What you approve\n\nCommit `{}` against the run's base `{}`: proctor's own diff, read from git's objects without the repository's `.gitattributes`, diff drivers or filters. The approval binds to this commit.\n",
            self.commit,
            short(&self.base)
        );
        let _ = writeln!(
            out,
            "{} file{} changed:\n",
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" }
        );
        for f in &self.files {
            let _ = writeln!(
                out,
                "- `{}` ({}): {}",
                terminal::line(&f.path),
                f.change,
                f.summary
            );
        }
        out.push('\n');
        let mut diff = String::new();
        for f in &self.files {
            if let Some(d) = &f.diff {
                diff.push_str(&terminal::text(d));
            }
        }
        if !diff.is_empty() {
            let mut shown = diff.as_str();
            let mut cut = 0;
            if shown.len() > DIFF_CAP {
                let mut end = DIFF_CAP;
                while !shown.is_char_boundary(end) {
                    end -= 1;
                }
                cut = shown.len() - end;
                shown = &shown[..end];
            }
            let fence = fence_for(shown);
            let _ = writeln!(
                out,
                "{fence}diff\n{}\n{fence}\n",
                shown.trim_end_matches('\n')
            );
            if cut > 0 {
                let _ = writeln!(
                    out,
                    "({cut} more bytes of diff not shown; the file list above is complete.)\n"
                );
            }
        }
        out
    }
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(kind: EntryKind, content: &[u8]) -> Option<Side> {
        Some(Side {
            kind,
            content: content.to_vec(),
            oid: format!("{:040x}", content.len()),
        })
    }

    #[test]
    fn meta_files_links_and_binaries_are_flagged_or_listed_with_size_and_hash() {
        let entries = vec![
            ChangedEntry {
                path: "src/.gitattributes".into(),
                old: None,
                new: side(EntryKind::File, b"* -diff\n"),
            },
            ChangedEntry {
                path: ".github/workflows/ci.yml".into(),
                old: side(EntryKind::File, b"on: push\n"),
                new: side(EntryKind::File, b"on: never\n"),
            },
            ChangedEntry {
                path: "src/calc.sh".into(),
                old: side(EntryKind::File, b"add() { echo $(( $1 - $2 )); }\n"),
                new: side(EntryKind::File, b"add() { echo $(( $1 + $2 )); }\n"),
            },
            ChangedEntry {
                path: "src/blob.bin".into(),
                old: None,
                new: side(EntryKind::File, b"\0\x01\x02"),
            },
            ChangedEntry {
                path: "src/link".into(),
                old: None,
                new: side(EntryKind::Link, b"/etc/passwd"),
            },
        ];
        let review = Review::new(&"b".repeat(40), &"c".repeat(40), &entries);
        let flags = review.flags_markdown();
        assert!(
            flags.contains("`src/.gitattributes` (added): a meta file"),
            "{flags}"
        );
        assert!(
            flags.contains("`.github/workflows/ci.yml` (modified): a meta file"),
            "{flags}"
        );
        assert!(flags.contains("`src/link` (added): a symlink"), "{flags}");
        assert!(!flags.contains("calc.sh"), "{flags}");
        let body = review.body_markdown();
        assert!(body.contains("-add() { echo $(( $1 - $2 )); }"), "{body}");
        assert!(body.contains("+add() { echo $(( $1 + $2 )); }"), "{body}");
        assert!(
            body.contains("`src/blob.bin` (added): binary, 3 bytes, sha256 ae4b3280e56e2faf83f414a6e3dabe9d5fbe18976544c05fed121accb85b53fc"),
            "{body}"
        );
        insta::assert_snapshot!(format!("{flags}{body}"));
    }

    #[test]
    fn meta_paths_are_recognised_anywhere_in_the_tree() {
        for meta in [
            ".gitattributes",
            "a/b/.gitattributes",
            ".gitmodules",
            ".github/CODEOWNERS",
            "sub/.gitlab-ci.yml",
            ".cargo/config.toml",
            "proctor.yaml",
        ] {
            assert!(is_meta(meta), "{meta}");
        }
        for plain in ["src/main.rs", "docs/github.md", "gitattributes.txt"] {
            assert!(!is_meta(plain), "{plain}");
        }
    }
}
