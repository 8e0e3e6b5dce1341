//! The boundary step: the exam's materials are compared with the base
//! commit before every exam and after every agent run, the agent's writes
//! with the loop's allow-list after every run, and proctor's own state is
//! checked for links and other things the host never writes. Whatever fails
//! is set aside under `.proctor/quarantine/` and the trusted copy restored.
//!
//! It decides nothing about verdicts; `exam.rs` asks it whether the tree an
//! exam ran on still held the trusted materials afterwards.

use std::path::Path;

use super::events::{Event, QuarantinedFile};
use super::{io_err, short, Engine, EngineError};
use crate::cage::{Access, Cage, Mount};
use crate::git::{BlobMode, Oid};
use crate::manifest::LoopSpec;
use crate::protect::fsafe::{self, Found};
use crate::protect::quarantine::{self, Meta, Record};
use crate::protect::{self, Allow, Change, Tamper};
use crate::state;

/// Where the trusted copy of a quarantined path comes from.
#[derive(Clone, Copy)]
enum Trust {
    /// The pinned base commit (the exam's materials).
    Base,
    /// The last commit (allow-list violations: the agent's own earlier
    /// work stays).
    Head(Oid),
}

impl<C: Cage> Engine<'_, C> {
    /// Before an exam: repairs state, sets aside tampered materials in the
    /// working tree, and commits the trusted copies when the commit to
    /// examine carries a tamper (one committed earlier, by another version
    /// or before a crash). Returns the commit to examine.
    pub(super) fn guard_before_exam(&mut self, spec: &LoopSpec) -> Result<Oid, EngineError> {
        self.check_workspace()?;
        self.repair_state();
        let attempt = self.runs.get(&spec.id).copied().unwrap_or(0);
        let root = self.paths.work.clone();
        let dirty = self.git.dirty_paths(&|p| state::is_private(p))?;
        let tampers = self.watch.scan(&root, &dirty).map_err(io_err(&root))?;
        let record = if tampers.is_empty() {
            None
        } else {
            Some(self.set_aside(spec, attempt, "exam", &root, &tampers, Trust::Base, true)?)
        };
        let head = self.head()?;
        let changed = self
            .watch
            .changed_in(&self.git.changed_paths(self.watch.base(), head)?);
        let mut involved: Vec<String> = changed.clone();
        involved.extend(tampers.iter().map(|t| t.path.clone()));
        let commit = if changed.is_empty() {
            None
        } else {
            let message = format!(
                "proctor({id}): restore protected files\n\nProctor-Loop: {id}\nProctor-Restored: {}\n",
                changed.join(" "),
                id = spec.id
            );
            let related = |p: &str| {
                involved.iter().any(|c| {
                    c == p || c.starts_with(&format!("{p}/")) || p.starts_with(&format!("{c}/"))
                })
            };
            let commit = self.commit(&message, &|p| state::is_private(p) || !related(p))?;
            self.report.boundary.push(format!(
                "loop `{}`: commit {} carried edits to the exam's materials ({}); proctor committed the trusted copies as {} before examining",
                spec.id,
                short(&head.to_string()),
                changed.join(", "),
                short(&commit.to_string())
            ));
            Some(commit)
        };
        if let Some(record) = record {
            self.announce(spec, attempt, &record, commit);
        }
        Ok(commit.unwrap_or(head))
    }

    /// After an agent run, before its commit: the exam's materials against
    /// the base commit, then the loop's `writes:` allow-list and the
    /// journal directory's rule (its own journal only, capped) against the
    /// last commit.
    pub(super) fn guard_after_agent(
        &mut self,
        spec: &LoopSpec,
        run: u32,
    ) -> Result<(), EngineError> {
        self.check_workspace()?;
        self.repair_state();
        let root = self.paths.work.clone();
        let dirty = self.git.dirty_paths(&|p| state::is_private(p))?;
        let tampers = self.watch.scan(&root, &dirty).map_err(io_err(&root))?;
        if !tampers.is_empty() {
            let record = self.set_aside(spec, run, "agent", &root, &tampers, Trust::Base, true)?;
            self.announce(spec, run, &record, None);
        }
        let allow = Allow::new(&spec.writes);
        let head = self.head()?;
        let dirty = self.git.dirty_paths(&|p| state::is_private(p))?;
        let mut violations = Vec::new();
        for path in dirty {
            // The journal directory is writable in the agent's container,
            // so it is a way around `writes:` (a fake `node_modules/.bin`,
            // a blob) unless only the loop's own, capped, journal passes.
            let rule = if path.starts_with(protect::JOURNAL_DIR) {
                let len = match fsafe::locate(&root, &path).map_err(io_err(&root))? {
                    Found::File { len, .. } => Some(len),
                    _ => None,
                };
                protect::journal_rule(&spec.id, &path, len)
            } else if !allow.allows(&path) {
                Some(allow.rule())
            } else {
                None
            };
            let Some(rule) = rule else {
                continue;
            };
            let in_head = self.git.entry_at(head, &path)?;
            let found = fsafe::locate(&root, &path).map_err(io_err(&root))?;
            let change = match (in_head, found) {
                (None, _) => Change::Added,
                (Some(_), Found::Absent | Found::Blocked { .. }) => Change::Deleted,
                (Some(_), Found::Link { .. }) => Change::Symlink,
                (Some(_), Found::Dir | Found::Special) => Change::Replaced,
                (Some(_), Found::File { .. }) => Change::Modified,
            };
            violations.push(Tamper { path, change, rule });
        }
        if !violations.is_empty() {
            let record = self.set_aside(
                spec,
                run,
                "agent",
                &root,
                &violations,
                Trust::Head(head),
                true,
            )?;
            self.announce(spec, run, &record, None);
        }
        Ok(())
    }

    /// After an exam: whether the tree it ran on still holds the trusted
    /// materials. A change (code under test rewriting the exam around the
    /// read-only mounts) is set aside and voids the verdict.
    pub(super) fn check_exam_tree(
        &mut self,
        spec: &LoopSpec,
        run: u32,
        tree: &Path,
    ) -> Result<Option<String>, EngineError> {
        let tampers = self.watch.scan(tree, &[]).map_err(io_err(tree))?;
        if tampers.is_empty() {
            return Ok(None);
        }
        let record = self.set_aside(spec, run, "verify", tree, &tampers, Trust::Base, false)?;
        self.announce(spec, run, &record, None);
        let paths: Vec<&str> = tampers.iter().map(|t| t.path.as_str()).collect();
        Ok(Some(format!(
            "the exam's materials changed while it ran ({}); quarantine record `{}`",
            paths.join(", "),
            record.id
        )))
    }

    /// Read-only mounts of the exam's materials over the verifier's `/work`.
    pub(super) fn readonly_mounts(&mut self, tree: &Path) -> Vec<Mount> {
        let (cover, cut) = self.watch.readonly_cover(tree);
        if cut && !self.readonly_cut_reported {
            self.readonly_cut_reported = true;
            self.report.unverified.push(format!(
                "more than {} protected paths: the rest are not mounted read-only in the verifier; they are hashed after each exam, and one rewritten during it (even if put back) fails the exam",
                crate::protect::MAX_READONLY_MOUNTS
            ));
        }
        cover
            .into_iter()
            .map(|rel| Mount {
                host: tree.join(&rel),
                container: format!("/work/{rel}"),
                access: Access::ReadOnly,
            })
            .collect()
    }

    /// Saves a quarantine record of `tampers` under `root` and, when
    /// `restore`, puts the trusted copies back.
    #[allow(clippy::too_many_arguments)]
    fn set_aside(
        &mut self,
        spec: &LoopSpec,
        attempt: u32,
        phase: &str,
        root: &Path,
        tampers: &[Tamper],
        trust: Trust,
        restore: bool,
    ) -> Result<Record, EngineError> {
        let git = self.git;
        let from = match trust {
            Trust::Base => self.watch.base(),
            Trust::Head(oid) => oid,
        };
        // A path the trusted commit lacks has no trusted copy; an unreadable
        // one is treated the same (the edit is still removed).
        let trusted = |path: &str| git.entry_at(from, path).ok().flatten();
        let qdir = self.paths.state.join("quarantine");
        let meta = Meta {
            run: &self.settings.run_id,
            loop_id: &spec.id,
            attempt,
            phase,
            trusted_from: from.to_string(),
        };
        let record =
            quarantine::save(&qdir, &meta, root, tampers, &trusted).map_err(io_err(&qdir))?;
        if restore {
            for t in tampers {
                let entry: Option<(BlobMode, Vec<u8>)> = trusted(&t.path);
                fsafe::restore(
                    root,
                    &t.path,
                    entry.as_ref().map(|(m, c)| (*m, c.as_slice())),
                )
                .map_err(io_err(&root.join(&t.path)))?;
            }
        }
        Ok(record)
    }

    /// The event, the report line and the note for the next prompt.
    fn announce(&mut self, spec: &LoopSpec, attempt: u32, record: &Record, commit: Option<Oid>) {
        let qdir = self.paths.state.join("quarantine");
        let files: Vec<QuarantinedFile> = record
            .files
            .iter()
            .map(|f| QuarantinedFile {
                path: f.path.clone(),
                change: f.change,
                rule: f.rule.clone(),
            })
            .collect();
        let described: Vec<String> = record
            .files
            .iter()
            .map(|f| format!("`{}` ({}; {})", f.path, f.change.as_str(), f.rule))
            .collect();
        (self.emit)(Event::Quarantine {
            loop_id: spec.id.clone(),
            run: attempt,
            phase: record.phase.clone(),
            id: record.id.clone(),
            path: self.paths.rel(&quarantine::record_dir(&qdir, record)),
            files,
            commit: commit.map(|c| c.to_string()),
        });
        let when = match record.phase.as_str() {
            "agent" => format!("after run {attempt}"),
            "verify" => "while its exam ran".to_string(),
            _ => "before an exam".to_string(),
        };
        self.report.boundary.push(format!(
            "loop `{}`: quarantined {} {when}; record `{}`",
            spec.id,
            described.join(", "),
            record.id
        ));
        let restored = if record.phase == "verify" {
            "the exam's verdict was voided"
        } else {
            "the trusted copies are back and your edits are not in the commit"
        };
        self.pending_notes.push(format!(
            "proctor set aside edits to {} as quarantine record `{}` ({}: `proctor quarantine diff {}`); {restored}. The exam's materials and files outside the write allow-list are not yours to change: fix the code instead.",
            described.join(", "),
            record.id,
            self.paths.rel(&quarantine::record_dir(&qdir, record)),
            record.id
        ));
    }

    /// Notes that an agent may be editing the working tree, until its
    /// attempt is committed: after a crash, leftovers are the agent's, and
    /// the next run commits them as this attempt (see `attempt.rs`).
    pub(super) fn mark_attempt(
        &mut self,
        loop_id: &str,
        run: u32,
        started: f64,
    ) -> Result<(), EngineError> {
        let path = attempt_marker(&self.paths);
        let marker = MarkedAttempt {
            loop_id: loop_id.to_string(),
            run,
            started: Some(started),
        };
        state::write_file(&path, marker.to_line().as_bytes()).map_err(io_err(&path))
    }

    pub(super) fn clear_attempt(&mut self) {
        let _ = std::fs::remove_file(attempt_marker(&self.paths));
    }

    /// Checks that proctor's state paths are what the host writes: real
    /// directories, and plain files in the journal. Anything else (a link
    /// an agent planted in the journal, a FIFO) is removed and reported.
    pub(super) fn repair_state(&mut self) {
        let paths = self.paths.clone();
        let mut repaired: Vec<(String, String)> = Vec::new();
        for dir in [
            &paths.state,
            &paths.work_state,
            &paths.journal,
            &paths.inbox,
            &paths.logs,
        ] {
            if let Some(was) = describe_unless(dir, |m| m.is_dir()) {
                if state::ensure_dir(dir).is_ok() {
                    repaired.push((paths.rel(dir), was));
                }
            }
        }
        for file in [&paths.ledger, &paths.events] {
            if let Some(was) = describe_unless(file, |m| m.is_file()) {
                if state::repair_file(file).is_ok() {
                    repaired.push((paths.rel(file), was));
                }
            }
        }
        // Logs and cards are written by the host alone: anything in their
        // directories but a plain file (a link planted at a log's path)
        // goes, so no later write can follow it (issue 12, item 8).
        for dir in [&paths.logs, &paths.inbox] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match std::fs::symlink_metadata(&path) {
                    // A directory is left alone: removing one could take
                    // a person's files with it, and nothing writes through it.
                    Ok(m) if m.is_file() || m.is_dir() => {}
                    Ok(_) => {
                        let was = describe(&path);
                        if fsafe::remove_any(&path).is_ok() {
                            repaired.push((paths.rel(&path), was));
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        let mut stack = vec![paths.journal.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => stack.push(path),
                    Ok(m) if m.is_file() => {}
                    Ok(_) => {
                        let was = describe(&path);
                        if fsafe::remove_any(&path).is_ok() {
                            repaired.push((paths.rel(&path), was));
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        for (path, was) in repaired {
            self.report
                .boundary
                .push(format!("repaired `{path}`: it was {was}"));
            (self.emit)(Event::Repaired { path, was });
        }
    }
}

/// Present while an agent's attempt is not yet committed (private state).
pub fn attempt_marker(paths: &state::Paths) -> std::path::PathBuf {
    paths.attempt.clone()
}

/// Whether a killed run left an uncommitted attempt behind: then edits in
/// the working tree are the agent's, not the user's.
pub fn attempt_interrupted(paths: &state::Paths) -> bool {
    std::fs::symlink_metadata(attempt_marker(paths)).is_ok_and(|m| m.is_file())
}

/// The attempt an attempt marker names: which loop, which run, and when
/// its agent started (absent in markers of older versions).
#[derive(Debug, Clone, PartialEq)]
pub struct MarkedAttempt {
    pub loop_id: String,
    pub run: u32,
    pub started: Option<f64>,
}

impl MarkedAttempt {
    fn to_line(&self) -> String {
        match self.started {
            Some(at) => format!("{} {} {at:.3}\n", self.loop_id, self.run),
            None => format!("{} {}\n", self.loop_id, self.run),
        }
    }

    /// Parses `<loop> <run> [<started>]`; anything else is `None` (a
    /// marker is host-written, but a crash can cut it short).
    pub fn parse(text: &str) -> Option<MarkedAttempt> {
        let mut words = text.split_whitespace();
        let loop_id = words.next()?.to_string();
        let run = words.next()?.parse().ok()?;
        let started = words.next().and_then(|w| w.parse::<f64>().ok());
        Some(MarkedAttempt {
            loop_id,
            run,
            started,
        })
    }
}

/// The attempt a killed run left uncommitted, if any.
pub fn marked_attempt(paths: &state::Paths) -> Option<MarkedAttempt> {
    if !attempt_interrupted(paths) {
        return None;
    }
    let text = std::fs::read_to_string(attempt_marker(paths)).ok()?;
    MarkedAttempt::parse(&text)
}

/// What is at `path`, unless it is absent or `ok` accepts it.
fn describe_unless(path: &Path, ok: impl Fn(&std::fs::Metadata) -> bool) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if ok(&meta) {
        return None;
    }
    Some(describe(path))
}

fn describe(path: &Path) -> String {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(path) {
            Ok(t) => format!("a symlink to `{}`", t.display()),
            Err(_) => "a symlink".into(),
        },
        Ok(m) if m.is_dir() => "a directory".into(),
        Ok(m) if m.is_file() => "a file".into(),
        Ok(_) => "a FIFO, socket or device".into(),
        Err(_) => "unreadable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::MarkedAttempt;

    #[test]
    fn attempt_markers_parse_back_and_old_or_cut_ones_are_told_apart() {
        let marker = MarkedAttempt {
            loop_id: "fix-tests".into(),
            run: 3,
            started: Some(1700000000.25),
        };
        assert_eq!(MarkedAttempt::parse(&marker.to_line()), Some(marker));
        // Markers of older versions name no start time.
        assert_eq!(
            MarkedAttempt::parse("fix 2\n"),
            Some(MarkedAttempt {
                loop_id: "fix".into(),
                run: 2,
                started: None
            })
        );
        // A marker a crash cut short names no attempt.
        assert_eq!(MarkedAttempt::parse("fix"), None);
        assert_eq!(MarkedAttempt::parse(""), None);
    }
}
