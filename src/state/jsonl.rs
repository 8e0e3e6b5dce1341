//! JSON Lines state files (`.proctor/events.jsonl`, `.proctor/ledger.jsonl`):
//! one serde value a line, read and appended the same way for every kind.
//!
//! Reading never fails and never panics: a missing or unreadable file is
//! empty, bytes that are not UTF-8 are read lossily, and a line that is not
//! a value of the wanted type (garbage, another kind of entry sharing the
//! file, a line cut short by a crash) is skipped. Appending goes through
//! [`super::append_line`], so it never follows a planted symlink.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The file's text, lossily decoded; empty when it cannot be read.
pub fn read_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The values of type `T` in `text`, in order; other lines are skipped.
pub fn parse<T: DeserializeOwned>(text: &str) -> Vec<T> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<T>(line.trim()).ok())
        .collect()
}

/// The values of type `T` in the file at `path`, in order.
pub fn read<T: DeserializeOwned>(path: &Path) -> Vec<T> {
    parse(&read_text(path))
}

/// Appends `value` as one line.
pub fn append<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let line = serde_json::to_string(value).map_err(std::io::Error::other)?;
    super::append_line(path, &line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Line {
        n: u32,
    }

    #[test]
    fn appended_values_read_back_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("x.jsonl");
        assert_eq!(read::<Line>(&path), vec![]);
        append(&path, &Line { n: 1 }).unwrap();
        super::super::append_line(&path, "not json\n{\"other\":true}").unwrap();
        append(&path, &Line { n: 2 }).unwrap();
        std::fs::write(
            &path,
            [std::fs::read(&path).unwrap(), b"\xff{\"n\":3".to_vec()].concat(),
        )
        .unwrap();
        assert_eq!(read::<Line>(&path), vec![Line { n: 1 }, Line { n: 2 }]);
    }
}
