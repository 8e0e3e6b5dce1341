//! JSON Lines state files (`.proctor/events.jsonl`, `.proctor/ledger.jsonl`):
//! one serde value a line, read and appended the same way for every kind.
//!
//! Reading never fails and never panics: a missing or unreadable file is
//! empty, bytes that are not UTF-8 are read lossily, and a line that is not
//! a value of the wanted type (garbage, another kind of entry sharing the
//! file, a line cut short by a crash) is skipped. Appending goes through
//! [`super::append_line`], so it never follows a planted symlink.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

/// A state file's damage set aside by [`heal`].
#[derive(Debug, Clone, PartialEq)]
pub struct Healed {
    /// Where the damaged bytes are kept.
    pub aside: PathBuf,
    /// How many bytes were set aside.
    pub bytes: usize,
    /// How many whole lines were not JSON (only with `whole_lines`).
    pub garbage_lines: usize,
}

impl Healed {
    /// What the file was, for a `repaired` event ("it was ...").
    pub fn was(&self, rel_aside: &str) -> String {
        let what = match self.garbage_lines {
            0 => "cut off mid-line".to_string(),
            1 => "holding a line that is not JSON".to_string(),
            n => format!("holding {n} lines that are not JSON"),
        };
        format!("{what}; the {} bytes are kept in `{rel_aside}`", self.bytes)
    }
}

/// Sets aside a partial last line (a crash or a full disk mid-write), so
/// the next line appended starts on a line of its own instead of gluing
/// onto the fragment, and with `whole_lines` also every line that is not
/// JSON (garbage that must not travel on, e.g. into a commit). The damage
/// is kept in a new file in `aside_dir`, never deleted. `None` when the
/// file is whole (or absent).
pub fn heal(path: &Path, aside_dir: &Path, whole_lines: bool) -> io::Result<Option<Healed>> {
    super::repair_file(path)?;
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut kept: Vec<u8> = Vec::with_capacity(whole);
    let mut aside: Vec<u8> = Vec::new();
    let mut garbage_lines = 0;
    if whole_lines {
        for line in bytes[..whole].split_inclusive(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(line);
            let blank = text.trim().is_empty();
            if blank || serde_json::from_str::<serde_json::Value>(text.trim()).is_ok() {
                kept.extend_from_slice(line);
            } else {
                garbage_lines += 1;
                aside.extend_from_slice(line);
            }
        }
    } else {
        kept.extend_from_slice(&bytes[..whole]);
    }
    aside.extend_from_slice(&bytes[whole..]);
    if aside.is_empty() {
        return Ok(None);
    }
    super::ensure_dir(aside_dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let aside_path = unique_aside(aside_dir, &name)?;
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside_path)?;
        file.write_all(&aside)?;
        file.sync_all()?;
    }
    if whole_lines && garbage_lines > 0 {
        super::write_file(path, &kept)?;
    } else {
        // Only the tail goes: cutting the file keeps everything before it
        // as it was, even when the file is large.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.set_len(whole as u64)?;
    }
    Ok(Some(Healed {
        aside: aside_path,
        bytes: aside.len(),
        garbage_lines,
    }))
}

/// `<name>.torn-<unix seconds>[-<n>]` in `dir`, not existing yet.
fn unique_aside(dir: &Path, name: &str) -> io::Result<PathBuf> {
    let secs = super::now() as u64;
    for n in 0..1000u32 {
        let file = match n {
            0 => format!("{name}.torn-{secs}"),
            n => format!("{name}.torn-{secs}-{n}"),
        };
        let path = dir.join(file);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(path);
        }
    }
    Err(io::Error::other(format!(
        "no free name for a side file of `{name}` in `{}`",
        dir.display()
    )))
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

    #[test]
    fn a_line_cut_short_is_set_aside_and_the_next_starts_on_its_own() {
        // The bug of issue 13: the next run's first event glued onto the
        // fragment and was lost.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let aside = dir.path().join("logs");
        assert_eq!(heal(&path, &aside, false).unwrap(), None);
        append(&path, &Line { n: 1 }).unwrap();
        assert_eq!(heal(&path, &aside, false).unwrap(), None);
        std::fs::write(
            &path,
            [std::fs::read(&path).unwrap(), b"{\"n\":2,\"tr".to_vec()].concat(),
        )
        .unwrap();
        let healed = heal(&path, &aside, false).unwrap().unwrap();
        assert_eq!(healed.bytes, 10);
        assert_eq!(
            std::fs::read_to_string(&healed.aside).unwrap(),
            "{\"n\":2,\"tr"
        );
        append(&path, &Line { n: 3 }).unwrap();
        assert_eq!(read::<Line>(&path), vec![Line { n: 1 }, Line { n: 3 }]);
        assert_eq!(heal(&path, &aside, false).unwrap(), None);
        // A second tear the same second gets its own side file.
        std::fs::write(&path, "{\"n\":4").unwrap();
        let again = heal(&path, &aside, false).unwrap().unwrap();
        assert_ne!(again.aside, healed.aside);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn garbage_lines_are_set_aside_when_whole_lines_must_be_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let aside = dir.path().join("logs");
        std::fs::write(&path, "{\"n\":1}\n\0\0\0garbage\n{\"n\":2}\n{\"n\"").unwrap();
        let healed = heal(&path, &aside, true).unwrap().unwrap();
        assert_eq!(healed.garbage_lines, 1);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(
            std::fs::read_to_string(&healed.aside).unwrap(),
            "\0\0\0garbage\n{\"n\""
        );
        assert!(healed.was(".proctor/logs/x").contains("not JSON"));
    }
}
