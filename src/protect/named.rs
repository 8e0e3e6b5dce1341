//! The files an exam command names, for `proctor once`: a manifest lists
//! its `protected:` globs, a command line has only the exam's own words.
//!
//! The rule, documented in the README: every word of the command (split at
//! blanks and the shell's `; & | ( ) < >` and backquote, quotes removed,
//! a leading `./` or `/work/` dropped) that names a file of the repository
//! protects that file; one that names a directory protects everything under
//! it. Words holding `=` (`VAR=value`, `--opt=value`), options (`-x`),
//! `.` and the repository itself name nothing. It reads only under the root
//! it is given and never follows a link.

use std::path::Path;

use super::fsafe::{self, Found};

/// The `protected:` globs for the repository paths `command` names, in the
/// order the command names them, each once.
pub fn named_by(command: &str, root: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in words(command) {
        let Some(rel) = repo_path(&word) else {
            continue;
        };
        let glob = match fsafe::locate(root, &rel) {
            Ok(Found::File { .. }) => escape_glob(&rel),
            Ok(Found::Dir) => format!("{}/**", escape_glob(&rel)),
            _ => continue,
        };
        if !out.contains(&glob) {
            out.push(glob);
        }
    }
    out
}

/// The command's words, quotes removed (no expansion: a word with `$` in
/// it is kept as written and will name no file).
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            (None, c) if c.is_whitespace() || ";&|()<>`".contains(c) => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The repo-relative path a word names, if it can name one.
fn repo_path(word: &str) -> Option<String> {
    if word.starts_with('-') || word.contains('=') {
        return None;
    }
    let mut rel = word.strip_prefix("/work/").unwrap_or(word);
    while let Some(rest) = rel.strip_prefix("./") {
        rel = rest;
    }
    let rel = rel.trim_end_matches('/');
    fsafe::components(rel).ok()?;
    Some(rel.to_string())
}

/// `rel` as a glob matching exactly itself.
fn escape_glob(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len());
    for c in rel.chars() {
        if "*?[]{}\\!".contains(c) {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::compile_globs;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in [
            ("run-tests.sh", "exit 1\n"),
            ("calc.sh", "add() { :; }\n"),
            ("tests/test_add.sh", "true\n"),
            ("weird[1].sh", "true\n"),
        ] {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.sh")).unwrap();
        dir
    }

    #[test]
    fn the_files_and_directories_an_exam_names_are_protected() {
        let dir = repo();
        let root = dir.path();
        assert_eq!(named_by("sh run-tests.sh", root), ["run-tests.sh"]);
        assert_eq!(
            named_by("./run-tests.sh && sh 'tests/test_add.sh' >out.txt", root),
            ["run-tests.sh", "tests/test_add.sh"]
        );
        assert_eq!(
            named_by("cd /work/tests/ ; bash /work/run-tests.sh", root),
            ["tests/**", "run-tests.sh"]
        );
        assert_eq!(
            named_by("sh run-tests.sh;sh run-tests.sh|cat", root),
            ["run-tests.sh"]
        );
    }

    #[test]
    fn assignments_options_the_root_links_and_escapes_name_nothing() {
        let dir = repo();
        let root = dir.path();
        // `CALC=./calc.sh` names the code under test, not the exam.
        assert!(named_by("CALC=./calc.sh sh -c . missing.sh", root).is_empty());
        assert!(named_by("sh ../run-tests.sh /etc/passwd /work .", root).is_empty());
        assert!(named_by("sh link.sh", root).is_empty());
        assert!(named_by("sh \"run-tests.sh", root).len() == 1);
        let globs = named_by("sh weird[1].sh", root);
        assert_eq!(globs, ["weird[[]1[]].sh"]);
        let set = compile_globs(&globs).unwrap();
        assert!(set.is_match("weird[1].sh") && !set.is_match("weird1.sh"));
    }
}
