//! The registry of repositories with proctor runs on this machine: one
//! absolute path a line in `proctor/repos` under the user's config
//! directory (`PROCTOR_REGISTRY` names another file). `proctor run` adds
//! its repository; `proctor serve` lists them. It is a hint for the web
//! view only: nothing decides anything from it, a missing or damaged file
//! is an empty list, and a path that no longer exists is dropped.

use std::fs;
use std::path::{Path, PathBuf};

/// At most this many repositories are kept (the most recently added).
const CAP: usize = 256;

/// The registry file.
pub fn registry_file() -> PathBuf {
    if let Some(file) = std::env::var_os("PROCTOR_REGISTRY").filter(|f| !f.is_empty()) {
        return PathBuf::from(file);
    }
    super::key::config_dir("PROCTOR_REGISTRY_DIR", "registry").join("repos")
}

/// The repositories listed in `file` that still exist, in order.
pub fn load(file: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string(file).unwrap_or_default();
    parse(&text)
        .into_iter()
        .filter(|p| p.join(".git").exists())
        .collect()
}

fn parse(text: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines().map(str::trim) {
        let path = PathBuf::from(line);
        if line.is_empty() || !path.is_absolute() || out.contains(&path) {
            continue;
        }
        out.push(path);
    }
    out
}

/// Adds `root` (a repository's absolute root) to `file`, atomically (a
/// new file renamed over the old), keeping the newest `CAP` entries.
/// Two runs registering at once may lose one entry; the next run of that
/// repository adds it again.
pub fn register(file: &Path, root: &Path) -> std::io::Result<()> {
    let current = parse(&fs::read_to_string(file).unwrap_or_default());
    if current.iter().any(|p| p == root) {
        return Ok(());
    }
    let mut kept: Vec<PathBuf> = current
        .into_iter()
        .filter(|p| p.join(".git").exists())
        .collect();
    kept.push(root.to_path_buf());
    let skip = kept.len().saturating_sub(CAP);
    let mut text = String::new();
    for path in kept.iter().skip(skip) {
        // A path with a newline cannot be one line: it is not listed.
        let Some(s) = path.to_str().filter(|s| !s.contains('\n')) else {
            continue;
        };
        text.push_str(s);
        text.push('\n');
    }
    super::write_file(file, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_twice_lists_a_repository_once_and_drops_vanished_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cfg/repos");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::create_dir_all(a.join(".git")).unwrap();
        fs::create_dir_all(b.join(".git")).unwrap();
        register(&file, &a).unwrap();
        register(&file, &b).unwrap();
        register(&file, &a).unwrap();
        assert_eq!(load(&file), vec![a.clone(), b.clone()]);
        fs::remove_dir_all(&b).unwrap();
        assert_eq!(load(&file), vec![a.clone()]);
        let c = dir.path().join("c");
        fs::create_dir_all(c.join(".git")).unwrap();
        register(&file, &c).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap().lines().count(), 2);
    }

    #[test]
    fn junk_lines_are_ignored() {
        assert_eq!(
            parse("relative\n\n/abs\n/abs\n"),
            vec![PathBuf::from("/abs")]
        );
    }
}
