//! Quarantine records: `.proctor/quarantine/<id>/`.
//!
//! Each record keeps what an agent (or code under test) tried to put in
//! place of a watched file, next to the trusted copy, and a small
//! `record.json` saying which loop, run and phase, which paths, what changed
//! and which rule caught it. Records are host-written; the agent's container
//! sees them read-only. The attempted content is copied without following
//! links: a link is recorded by its target, never read through.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsafe::{self, Found, SAVE_CAP};
use super::{Change, Tamper};
use crate::git::BlobMode;

pub const RECORD_VERSION: u32 = 1;
/// Copies kept per record (files, bytes); past them paths are listed only,
/// so an agent that writes a million files outside its allow-list cannot
/// make proctor copy them all.
pub const COPY_FILES: usize = 1000;
pub const COPY_BYTES: u64 = 256 * 1024 * 1024;
pub const RECORD_FILE: &str = "record.json";

/// One quarantined path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub change: Change,
    pub rule: String,
    /// Where the attempted content is kept, relative to the record's
    /// directory (`attempted/<path>`), when it was a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted: Option<String>,
    /// The link target, when the attempt was a symlink (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// SHA-256 (hex) and size of the attempted file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Where the trusted copy is kept (`trusted/<path>`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted: Option<String>,
}

/// `record.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub id: String,
    /// Unix seconds.
    pub ts: f64,
    /// The proctor run (process) that set it aside.
    pub run: String,
    #[serde(rename = "loop")]
    pub loop_id: String,
    /// The attempt number (0 before any attempt of this loop).
    pub attempt: u32,
    /// When it was caught: `agent` (after an agent run), `exam` (before an
    /// exam, in the working tree or the commit to examine), `verify` (in
    /// the verifier's tree after the exam ran).
    pub phase: String,
    /// The commit the trusted copies come from.
    pub trusted_from: String,
    pub files: Vec<Entry>,
}

/// Who is setting a record aside, and where the trusted copies come from.
pub struct Meta<'a> {
    pub run: &'a str,
    pub loop_id: &'a str,
    pub attempt: u32,
    pub phase: &'a str,
    pub trusted_from: String,
}

/// The trusted mode and content of a path, if the trusted commit has it.
pub type TrustedSource<'a> = dyn Fn(&str) -> Option<(BlobMode, Vec<u8>)> + 'a;

/// Saves the attempted content of `tampers` (read from `root`) and the
/// trusted copies (from `trusted`) as a new record under `dir`.
pub fn save(
    dir: &Path,
    meta: &Meta<'_>,
    root: &Path,
    tampers: &[Tamper],
    trusted: &TrustedSource<'_>,
) -> io::Result<Record> {
    crate::state::ensure_dir(dir)?;
    let id = new_id(dir, meta);
    let rec_dir = dir.join(&id);
    fs::create_dir(&rec_dir)?;
    let mut files = Vec::new();
    let (mut copied, mut copied_bytes) = (0usize, 0u64);
    for t in tampers {
        let mut entry = Entry {
            path: t.path.clone(),
            change: t.change,
            rule: t.rule.clone(),
            attempted: None,
            link_target: None,
            sha256: None,
            bytes: None,
            trusted: None,
        };
        match fsafe::locate(root, &t.path)? {
            Found::File { sha256, len, .. } => {
                entry.sha256 = Some(hex::encode(sha256));
                entry.bytes = Some(len);
                if copied < COPY_FILES && copied_bytes < COPY_BYTES {
                    let bytes = fsafe::read_capped(root, &t.path, SAVE_CAP)?;
                    let rel = format!("attempted/{}", t.path);
                    fsafe::write_under(&rec_dir, &rel, &bytes)?;
                    copied += 1;
                    copied_bytes += bytes.len() as u64;
                    entry.attempted = Some(rel);
                }
            }
            Found::Link { target } => {
                entry.link_target = Some(String::from_utf8_lossy(&target).into_owned())
            }
            Found::Blocked {
                link_target: Some(target),
                ..
            } => entry.link_target = Some(String::from_utf8_lossy(&target).into_owned()),
            _ => {}
        }
        if let Some((mode, content)) = trusted(&t.path) {
            let rel = format!("trusted/{}", t.path);
            let body = if mode == BlobMode::Link {
                format!("symlink to {}\n", String::from_utf8_lossy(&content)).into_bytes()
            } else {
                content
            };
            fsafe::write_under(&rec_dir, &rel, &body)?;
            entry.trusted = Some(rel);
        }
        files.push(entry);
    }
    let record = Record {
        v: RECORD_VERSION,
        id,
        ts: crate::state::now(),
        run: meta.run.to_string(),
        loop_id: meta.loop_id.to_string(),
        attempt: meta.attempt,
        phase: meta.phase.to_string(),
        trusted_from: meta.trusted_from.clone(),
        files,
    };
    let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
    fsafe::write_new(&rec_dir.join(RECORD_FILE), &json, 0o644)?;
    Ok(record)
}

/// A short, readable id: `<loop>-run<N>-<hex>` (or `-check-` before any run).
fn new_id(dir: &Path, meta: &Meta<'_>) -> String {
    let stem = if meta.attempt == 0 {
        format!("{}-{}", meta.loop_id, meta.phase)
    } else {
        format!("{}-run{}", meta.loop_id, meta.attempt)
    };
    loop {
        let id = format!("{stem}-{}", crate::state::key::random_id(2));
        if !dir.join(&id).exists() {
            return id;
        }
    }
}

/// Every readable record under `dir`, oldest first. Unreadable ones are
/// skipped.
pub fn list(dir: &Path) -> Vec<Record> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Record> = entries
        .flatten()
        .filter_map(|e| load_dir(&e.path()))
        .collect();
    out.sort_by(|a, b| a.ts.total_cmp(&b.ts).then(a.id.cmp(&b.id)));
    out
}

fn load_dir(path: &Path) -> Option<Record> {
    let name = path.file_name()?.to_str()?.to_string();
    let bytes = fsafe::read_capped(path, RECORD_FILE, 4 * 1024 * 1024).ok()?;
    let record: Record = serde_json::from_slice(&bytes).ok()?;
    (record.id == name).then_some(record)
}

/// The record with this id, or the only one whose id starts with it.
pub fn find(dir: &Path, id: &str) -> Result<Record, String> {
    let all = list(dir);
    if let Some(r) = all.iter().find(|r| r.id == id) {
        return Ok(r.clone());
    }
    let matches: Vec<&Record> = all.iter().filter(|r| r.id.starts_with(id)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!("no quarantine record `{id}`")),
        many => Err(format!(
            "`{id}` matches {} records: {}",
            many.len(),
            many.iter()
                .map(|r| format!("`{}`", r.id))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The directory of a record.
pub fn record_dir(dir: &Path, record: &Record) -> PathBuf {
    dir.join(&record.id)
}

/// Reads a file a record kept (`attempted/…` or `trusted/…`).
pub fn kept(dir: &Path, record: &Record, rel: &str) -> Option<Vec<u8>> {
    fsafe::read_capped(&record_dir(dir, record), rel, SAVE_CAP).ok()
}

/// Removes one record.
pub fn drop_record(dir: &Path, record: &Record) -> io::Result<()> {
    fsafe::components(&record.id)?;
    fsafe::remove_any(&record_dir(dir, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_attempt_and_the_trusted_copy_and_round_trip() {
        let repo = tempfile::tempdir().unwrap();
        let qdir = repo.path().join(".proctor/quarantine");
        fs::create_dir_all(repo.path().join("tests")).unwrap();
        fs::write(repo.path().join("tests/t.sh"), "exit 0\n").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::write(outside.path(), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), repo.path().join("exam.sh")).unwrap();
        let tampers = vec![
            Tamper {
                path: "tests/t.sh".into(),
                change: Change::Modified,
                rule: "protected: `tests/**`".into(),
            },
            Tamper {
                path: "exam.sh".into(),
                change: Change::Symlink,
                rule: "protected: `exam.sh`".into(),
            },
        ];
        let meta = Meta {
            run: "r1",
            loop_id: "fix",
            attempt: 2,
            phase: "agent",
            trusted_from: "abc".into(),
        };
        let record = save(&qdir, &meta, repo.path(), &tampers, &|p| {
            Some((BlobMode::File, format!("trusted {p}\n").into_bytes()))
        })
        .unwrap();
        assert!(record.id.starts_with("fix-run2-"));
        assert_eq!(
            kept(&qdir, &record, "attempted/tests/t.sh").unwrap(),
            b"exit 0\n"
        );
        assert_eq!(
            kept(&qdir, &record, "trusted/tests/t.sh").unwrap(),
            b"trusted tests/t.sh\n"
        );
        let link = &record.files[1];
        assert_eq!(link.attempted, None, "a link's target is never read");
        assert!(link.link_target.as_deref().unwrap().contains("tmp"));
        assert_eq!(list(&qdir), vec![record.clone()]);
        assert_eq!(find(&qdir, "fix-run2").unwrap(), record);
        drop_record(&qdir, &record).unwrap();
        assert!(list(&qdir).is_empty());
        assert_eq!(fs::read_to_string(outside.path()).unwrap(), "secret");
    }
}
