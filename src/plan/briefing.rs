//! The briefing `proctor plan` gives its drafting agent and its critic:
//! what the repository is, bounded in size. Built from git's objects and a
//! few files at the root; it runs nothing.

use std::path::Path;

use crate::git::{GitRepo, Oid};
use crate::manifest;
use crate::state;

/// The whole briefing's cap, in bytes.
pub const BRIEFING_CAP: usize = 16 * 1024;
/// Entries of the tree listed at most.
const TREE_ENTRIES: usize = 120;
/// Recent commits listed at most.
const COMMITS: usize = 10;
/// Uncommitted paths listed at most.
const DIRTY: usize = 20;
/// Bytes of an existing manifest quoted at most.
const MANIFEST_CAP: usize = 6 * 1024;

/// The briefing for the repository of `git` at `head`, whose committed
/// tree is exported at `tree`.
pub fn build(git: &GitRepo, head: Oid, tree: &Path) -> String {
    let mut out = String::new();
    out.push_str("## Git status\n\n");
    match git.head_branch() {
        Ok(Some(branch)) => out.push_str(&format!("branch `{branch}`, ")),
        _ => out.push_str("no branch (detached HEAD), "),
    }
    out.push_str(&format!("HEAD {}\n", &head.to_string()[..12]));
    match git.dirty_paths(&|p| state::is_private(p) || p.starts_with(".proctor/")) {
        Ok(dirty) if dirty.is_empty() => out.push_str("no uncommitted changes\n"),
        Ok(dirty) => {
            out.push_str(&format!(
                "{} uncommitted path(s) (not part of the plan's tree):\n",
                dirty.len()
            ));
            for path in dirty.iter().take(DIRTY) {
                out.push_str(&format!("- {path}\n"));
            }
        }
        Err(_) => {}
    }

    out.push_str("\n## Build systems and test commands found\n\n");
    let found = manifest::detected_exams(tree);
    if found.is_empty() {
        out.push_str("none recognised (Cargo, Go, npm, pytest, make)\n");
    }
    for (evidence, exam, cache) in found {
        match cache {
            Some(name) => out.push_str(&format!(
                "- {evidence}: `{exam}` with `caches: [{name}]` (the exam's build cache, at /cache/{name} in exams only)\n"
            )),
            None => out.push_str(&format!("- {evidence}: `{exam}`\n")),
        }
    }

    out.push_str("\n## Top of the tree (committed files at HEAD)\n\n");
    let entries = top_of_tree(tree);
    for entry in entries.iter().take(TREE_ENTRIES) {
        out.push_str(&format!("{entry}\n"));
    }
    if entries.len() > TREE_ENTRIES {
        out.push_str(&format!("... and {} more\n", entries.len() - TREE_ENTRIES));
    }

    out.push_str("\n## Recent commits\n\n");
    if let Ok(log) = git.first_parent_log(head, None) {
        for commit in log.iter().take(COMMITS) {
            let subject = commit.message.lines().next().unwrap_or("");
            out.push_str(&format!(
                "- {} {}\n",
                &commit.oid.to_string()[..8],
                cut(subject, 120)
            ));
        }
    }

    out.push_str("\n## Existing manifest\n\n");
    match manifest::find(tree) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            out.push_str(&format!(
                "`{}`:\n\n```yaml\n{}\n```\n",
                name.unwrap_or_default(),
                cut(&text, MANIFEST_CAP).trim_end()
            ));
        }
        None => out.push_str("none (no proctor.yaml or lute.yaml at HEAD)\n"),
    }
    cut(&out, BRIEFING_CAP)
}

/// The tree's top two levels, directories marked with `/`, sorted; what
/// git does not track is not there (the tree is an export of HEAD).
fn top_of_tree(tree: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (name, is_dir) in sorted_entries(tree) {
        if is_dir {
            out.push(format!("{name}/"));
            for (inner, inner_dir) in sorted_entries(&tree.join(&name)) {
                out.push(format!(
                    "  {name}/{inner}{}",
                    if inner_dir { "/" } else { "" }
                ));
            }
        } else {
            out.push(name);
        }
    }
    out
}

fn sorted_entries(dir: &Path) -> Vec<(String, bool)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut entries: Vec<(String, bool)> = read
        .flatten()
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    entries.sort();
    entries
}

/// `text` cut to at most `cap` bytes at a character boundary, with a note
/// when it was cut.
pub fn cut(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... cut at {cap} bytes]", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drafter is told the exam `init` would write, with its cache, so
    /// a proposal keeps the exam's build warm as `init`'s does.
    #[test]
    fn the_briefing_names_init_s_exam_with_its_cache() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\n").expect("write");
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"scripts": {"test": "tape"}}"#,
        )
        .expect("write");
        let git = GitRepo::init_with_commit(dir.path(), "start").expect("init");
        let head = git.head().expect("head").expect("a commit");
        let text = build(&git, head, dir.path());
        assert!(
            text.contains(
                "- Cargo.toml: `CARGO_TARGET_DIR=/cache/target cargo test` with `caches: [target]`"
            ),
            "{text}"
        );
        assert!(
            text.contains("- the `test` script in package.json: `npm test`\n"),
            "{text}"
        );
    }
}
