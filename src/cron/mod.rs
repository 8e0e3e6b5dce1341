//! Schedules: the manifest's `schedules:` compiled into the user's crontab
//! (a managed block) or into systemd user timers. proctor is never a
//! daemon: each tick is a fresh `proctor run --skip-if-running <loop>`,
//! which exits 0 without work when a run already holds the repository.
//!
//! The crontab is the user's file: it is read whole, the managed block is
//! replaced (or removed) and every other line is written back as it was. A
//! crontab that cannot be read, is not text, or has a broken managed block
//! is never written: the user fixes it by hand first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod systemd;

/// Names the crontab file to use instead of `crontab -l` / `crontab -`
/// (tests, and hosts where the crontab lives in a file the user manages).
pub const CRONTAB_FILE_ENV: &str = "PROCTOR_CRONTAB_FILE";

/// Host variables a tick needs to see what the syncing shell saw (the
/// answer-auth key, trusted approvers, the engine); cron starts jobs with
/// an almost empty environment.
pub const CARRIED_ENV: &[&str] = &[
    "PROCTOR_KEY_DIR",
    "PROCTOR_APPROVERS_DIR",
    "DOCKER_HOST",
    "XDG_CONFIG_HOME",
];

#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("cannot read the crontab: {0}; it was not changed")]
    Read(String),
    #[error("cannot write the crontab: {0}")]
    Write(String),
    #[error("the crontab is malformed: {0}; it was not changed")]
    Malformed(String),
    #[error("{0}")]
    Refused(String),
}

impl crate::exit_codes::DomainError for CronError {
    /// Writing failing is the system's; the rest is the user's crontab.
    fn is_users_to_fix(&self) -> bool {
        !matches!(self, CronError::Write(_))
    }

    fn hint(&self) -> Option<String> {
        match self {
            CronError::Malformed(_) => {
                Some("fix or remove the block by hand, then sync again".into())
            }
            _ => None,
        }
    }
}

/// One scheduled tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The cron expression (validated by the manifest).
    pub at: String,
    /// The loop to run.
    pub loop_id: String,
}

/// Everything a tick's command line needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub repo: PathBuf,
    pub exe: PathBuf,
    /// `--file` for a manifest that is not found by default.
    pub manifest: Option<PathBuf>,
    /// `NAME=value` pairs to set for the tick.
    pub env: Vec<(String, String)>,
}

impl Job {
    /// The shell command of one tick.
    pub fn command(&self, loop_id: &str) -> String {
        let mut cmd = format!("cd {} &&", sh_quote(&self.repo.to_string_lossy()));
        for (name, value) in &self.env {
            cmd.push_str(&format!(" {name}={}", sh_quote(value)));
        }
        cmd.push_str(&format!(
            " {} run --skip-if-running",
            sh_quote(&self.exe.to_string_lossy())
        ));
        if let Some(file) = &self.manifest {
            cmd.push_str(&format!(" --file {}", sh_quote(&file.to_string_lossy())));
        }
        cmd.push_str(&format!(" {loop_id}"));
        cmd
    }

    /// Refuses paths and values a crontab line cannot carry unambiguously.
    pub fn check(&self) -> Result<(), CronError> {
        let mut texts: Vec<String> = vec![
            self.repo.to_string_lossy().into_owned(),
            self.exe.to_string_lossy().into_owned(),
        ];
        if let Some(file) = &self.manifest {
            texts.push(file.to_string_lossy().into_owned());
        }
        texts.extend(self.env.iter().map(|(_, v)| v.clone()));
        if texts.iter().any(|t| t.contains('\n') || t.contains('\r')) {
            return Err(CronError::Refused(
                "a path or variable holds a newline; refusing to write an ambiguous crontab line"
                    .into(),
            ));
        }
        Ok(())
    }
}

pub fn begin_marker(repo: &Path) -> String {
    format!("# BEGIN proctor {}", repo.display())
}

pub fn end_marker(repo: &Path) -> String {
    format!("# END proctor {}", repo.display())
}

/// The managed block for `repo`: markers around one line per tick.
pub fn block(job: &Job, ticks: &[Tick]) -> Vec<String> {
    if ticks.is_empty() {
        return Vec::new();
    }
    let mut out = vec![begin_marker(&job.repo)];
    out.push("# managed by `proctor cron sync`; `proctor cron remove` deletes this block".into());
    for tick in ticks {
        // `%` ends a crontab command (the rest is stdin) unless escaped.
        out.push(format!(
            "{} {}",
            tick.at,
            job.command(&tick.loop_id).replace('%', "\\%")
        ));
    }
    out.push(end_marker(&job.repo));
    out
}

/// `existing` with `repo`'s managed block replaced by `block` (removed when
/// empty), everything else kept in order.
pub fn splice(existing: &str, repo: &Path, block: &[String]) -> Result<String, CronError> {
    let begin = begin_marker(repo);
    let end = end_marker(repo);
    let mut kept: Vec<&str> = Vec::new();
    let mut inside = false;
    let mut insert_at: Option<usize> = None;
    for (n, line) in existing.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == begin {
            if inside || insert_at.is_some() {
                return Err(CronError::Malformed(format!(
                    "line {}: a second `{begin}`",
                    n + 1
                )));
            }
            inside = true;
            insert_at = Some(kept.len());
        } else if trimmed == end {
            if !inside {
                return Err(CronError::Malformed(format!(
                    "line {}: `{end}` without its `{begin}`",
                    n + 1
                )));
            }
            inside = false;
        } else if !inside {
            kept.push(line);
        }
    }
    if inside {
        return Err(CronError::Malformed(format!("`{begin}` has no `{end}`")));
    }
    let mut lines: Vec<String> = kept.iter().map(|l| l.to_string()).collect();
    let at = insert_at.unwrap_or(lines.len());
    lines.splice(at..at, block.iter().cloned());
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

/// Where the crontab is read from and written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crontab {
    /// The `crontab` command (the user's real crontab).
    System,
    /// A plain file.
    File(PathBuf),
}

impl Crontab {
    /// `PROCTOR_CRONTAB_FILE` when set, else the `crontab` command.
    pub fn from_env() -> Crontab {
        match std::env::var_os(CRONTAB_FILE_ENV).filter(|v| !v.is_empty()) {
            Some(path) => Crontab::File(PathBuf::from(path)),
            None => Crontab::System,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Crontab::System => "your crontab".into(),
            Crontab::File(path) => format!("`{}`", path.display()),
        }
    }

    pub fn read(&self) -> Result<String, CronError> {
        match self {
            Crontab::File(path) => match std::fs::read(path) {
                Ok(bytes) => String::from_utf8(bytes)
                    .map_err(|_| CronError::Malformed(format!("`{}` is not text", path.display()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(CronError::Read(format!("`{}`: {e}", path.display()))),
            },
            Crontab::System => {
                let out = Command::new("crontab")
                    .arg("-l")
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| CronError::Read(format!("cannot run `crontab -l`: {e}")))?;
                if out.status.success() {
                    return String::from_utf8(out.stdout)
                        .map_err(|_| CronError::Malformed("`crontab -l` printed non-text".into()));
                }
                let err = String::from_utf8_lossy(&out.stderr);
                // "no crontab for <user>": an empty crontab, not an error.
                if err.to_lowercase().contains("no crontab") {
                    return Ok(String::new());
                }
                Err(CronError::Read(format!(
                    "`crontab -l` failed: {}",
                    err.trim()
                )))
            }
        }
    }

    pub fn write(&self, text: &str) -> Result<(), CronError> {
        match self {
            Crontab::File(path) => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let tmp = dir.join(format!(
                    ".{}.proctor-tmp{}",
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    std::process::id()
                ));
                std::fs::write(&tmp, text)
                    .and_then(|_| {
                        if let Ok(meta) = std::fs::metadata(path) {
                            let _ = std::fs::set_permissions(&tmp, meta.permissions());
                        }
                        std::fs::rename(&tmp, path)
                    })
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        CronError::Write(format!("`{}`: {e}", path.display()))
                    })
            }
            Crontab::System => {
                use std::io::Write;
                let mut child = Command::new("crontab")
                    .arg("-")
                    .stdin(Stdio::piped())
                    .spawn()
                    .map_err(|e| CronError::Write(format!("cannot run `crontab -`: {e}")))?;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin
                        .write_all(text.as_bytes())
                        .map_err(|e| CronError::Write(e.to_string()))?;
                }
                let status = child.wait().map_err(|e| CronError::Write(e.to_string()))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(CronError::Write(format!("`crontab -` exited {status}")))
                }
            }
        }
    }
}

/// Replaces (or, with no ticks, removes) `repo`'s block in `crontab`.
/// Returns the number of tick lines written.
pub fn sync(crontab: &Crontab, job: &Job, ticks: &[Tick]) -> Result<usize, CronError> {
    job.check()?;
    let existing = crontab.read()?;
    let block = block(job, ticks);
    let text = splice(&existing, &job.repo, &block)?;
    if text != existing {
        crontab.write(&text)?;
    }
    Ok(ticks.len())
}

/// `s` as one shell word.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job() -> Job {
        Job {
            repo: PathBuf::from("/srv/my repo"),
            exe: PathBuf::from("/usr/local/bin/proctor"),
            manifest: None,
            env: vec![("PROCTOR_KEY_DIR".into(), "/home/me/.keys".into())],
        }
    }

    #[test]
    fn sync_is_idempotent_and_keeps_other_lines() {
        let ticks = [Tick {
            at: "0 9 * * 1-5".into(),
            loop_id: "deps".into(),
        }];
        let other = "MAILTO=me@example.com\n# mine\n*/5 * * * * /usr/bin/backup 50%\n";
        let once = splice(other, &job().repo, &block(&job(), &ticks)).unwrap();
        let twice = splice(&once, &job().repo, &block(&job(), &ticks)).unwrap();
        assert_eq!(once, twice);
        assert!(once.starts_with(other));
        insta::assert_snapshot!(once);
        let removed = splice(&once, &job().repo, &[]).unwrap();
        assert_eq!(removed, other);
    }

    #[test]
    fn another_repos_block_is_left_alone() {
        let mut other = job();
        other.repo = PathBuf::from("/srv/other");
        let ticks = [Tick {
            at: "@daily".into(),
            loop_id: "x".into(),
        }];
        let theirs = splice("", &other.repo, &block(&other, &ticks)).unwrap();
        let both = splice(&theirs, &job().repo, &block(&job(), &ticks)).unwrap();
        let mine_removed = splice(&both, &job().repo, &[]).unwrap();
        assert_eq!(mine_removed, theirs);
    }

    #[test]
    fn a_broken_block_is_never_rewritten() {
        let repo = job().repo;
        let begin = format!("{}\n* * * * * x\n", begin_marker(&repo));
        assert!(matches!(
            splice(&begin, &repo, &[]),
            Err(CronError::Malformed(_))
        ));
        let end = format!("{}\n", end_marker(&repo));
        assert!(matches!(
            splice(&end, &repo, &[]),
            Err(CronError::Malformed(_))
        ));
        let twice = format!(
            "{b}\n{e}\n{b}\n{e}\n",
            b = begin_marker(&repo),
            e = end_marker(&repo)
        );
        assert!(matches!(
            splice(&twice, &repo, &[]),
            Err(CronError::Malformed(_))
        ));
    }

    #[test]
    fn percent_signs_are_escaped_and_newlines_refused() {
        let mut j = job();
        j.repo = PathBuf::from("/srv/100%");
        let lines = block(
            &j,
            &[Tick {
                at: "@hourly".into(),
                loop_id: "x".into(),
            }],
        );
        assert!(lines[2].contains("/srv/100\\%"), "{lines:?}");
        j.repo = PathBuf::from("/srv/a\nb");
        assert!(j.check().is_err());
    }

    #[test]
    fn an_unreadable_crontab_file_is_an_error_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Crontab::File(dir.path().join("nope"));
        assert_eq!(missing.read().unwrap(), "");
        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(Crontab::File(binary).read().is_err());
        let a_dir = Crontab::File(dir.path().to_path_buf());
        assert!(matches!(a_dir.read(), Err(CronError::Read(_))));
    }

    proptest! {
        #[test]
        fn splicing_never_loses_foreign_lines(lines in proptest::collection::vec("[a-zA-Z0-9 *#=/%.-]{0,30}", 0..12)) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let ticks = [Tick { at: "@daily".into(), loop_id: "x".into() }];
            if let Ok(synced) = splice(&text, &job().repo, &block(&job(), &ticks)) {
                let removed = splice(&synced, &job().repo, &[]).unwrap();
                let kept: Vec<&str> = text.lines().collect();
                let back: Vec<&str> = removed.lines().collect();
                prop_assert_eq!(kept, back);
            }
        }
    }

    #[test]
    fn quoting_keeps_words_whole() {
        assert_eq!(sh_quote("/usr/bin/proctor"), "/usr/bin/proctor");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
