//! The verifier step: the exam, in its own container, on the committed tree.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::events::{Event, Phase, Verdict};
use super::{fmt_secs, io_err, short, Engine, EngineError, Exam, EXAM_TIMEOUT, LOG_CAP};
use crate::cage::{Access, Cage, Invocation, Mount, Outcome, Role};
use crate::git::Oid;
use crate::leftovers::{exam_prefix, ScratchDir};
use crate::manifest::LoopSpec;
use crate::protect::fsafe::{self, Found};
use crate::protect::junit;
use crate::protect::seal::{self, Sealed};
use crate::protect::Stamps;
use crate::state;

impl<C: Cage> Engine<'_, C> {
    /// Administers the loop's exam in a verifier container on the committed
    /// tree of `commit`: never the agent's live directory. A zero exit code
    /// is a pass only if the exam's materials were unchanged afterwards and
    /// the test-count audit (`tests:`) agrees.
    pub(super) async fn examine(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
        phase: Phase,
        run: u32,
        streak: u32,
    ) -> Result<Exam, EngineError> {
        if spec.judged_only().is_some() {
            return self.examine_by_judge(spec, commit, phase, run).await;
        }
        let id = spec.id.clone();
        (self.emit)(Event::CheckStart {
            loop_id: id.clone(),
            phase,
            commit: commit.to_string(),
        });
        let log = match phase {
            Phase::Land => self.paths.logs.join(format!("{id}.land.exam.log")),
            _ => self.paths.logs.join(format!("{id}.run{run}.exam.log")),
        };
        let Sitting {
            outcome,
            tree,
            stamps,
            started,
        } = self.sit(spec, commit, &log).await?;
        if self.engine_stopped_it(&outcome).await {
            // An exit code the engine caused is no verdict on the tree.
            return Err(EngineError::EngineGone {
                during: format!("the exam of loop `{id}` ran"),
            });
        }
        self.record_denials(
            spec,
            run,
            Role::Verifier,
            &outcome.network_denied,
            &outcome.container_id,
        );
        let mut verdict = Verdict::from_exit(outcome.exit_code, outcome.timed_out);
        let mut reason = None;
        let tampered = match self.check_exam_tree(spec, run, tree.path())? {
            Some(why) => Some(why),
            None => rewritten_reason(&self.watch.rewritten(tree.path(), &stamps)),
        };
        if let Some(why) = tampered {
            if verdict != Verdict::Fail {
                verdict = Verdict::Fail;
                reason = Some(why);
            }
        }
        if let Some(audit) = &spec.tests {
            let reports = junit_reports(tree.path(), &audit.junit);
            let counts = reports.as_ref().map(|r| r.counts);
            if commit == self.watch.base() {
                self.baselines
                    .entry(id.clone())
                    .or_insert(counts.map(|c| c.tests));
            }
            if verdict == Verdict::Pass {
                let baseline = self.baseline(spec).await?;
                let forgeable = format!(
                    "loop `{id}`: the test-count audit's verdicts (a report exists, lists no failing test, at most {} skipped{}{}) rest on the JUnit report under `{}`, a file the code under test could write in the verifier; the pass itself rests on the exam's exit code",
                    audit.allow_skipped,
                    audit.min.map(|m| format!(", at least {m} tests")).unwrap_or_default(),
                    audit.expect_delta.map(|d| format!(", `expect_delta` {d} against the base commit")).unwrap_or_default(),
                    audit.junit,
                );
                if !self.report.unverified.contains(&forgeable) {
                    self.report.unverified.push(forgeable);
                }
                let stale = reports.as_ref().and_then(|r| r.written_before(started));
                let judged = match stale {
                    Some(why) => Err(why),
                    None => junit::judge(audit, counts, baseline),
                };
                let unchecked = format!(
                    "loop `{id}`: `expect_delta` was not checked: the exam wrote no JUnit report on the base commit"
                );
                if audit.expect_delta.is_some()
                    && baseline.is_none()
                    && !self.report.unverified.contains(&unchecked)
                {
                    self.report.unverified.push(unchecked);
                }
                (self.emit)(Event::TestAudit {
                    loop_id: id.clone(),
                    commit: commit.to_string(),
                    counts,
                    baseline,
                    passed: judged.is_ok(),
                    reason: judged.as_ref().err().cloned(),
                });
                if let Err(why) = judged {
                    verdict = Verdict::Fail;
                    reason = Some(format!("test-count audit: {why}"));
                }
            }
        }
        drop(tree);
        // A second opinion on a pass, which can only take it away. The
        // base commit's own check and `land`'s are the exam's alone.
        let mut ruling = None;
        if self.judging
            && verdict == Verdict::Pass
            && matches!(phase, Phase::Precheck | Phase::Verify | Phase::Confirm)
        {
            ruling = self.judge(spec, commit, run).await?;
            if let Some(veto) = ruling.as_ref().filter(|r| !r.pass) {
                verdict = Verdict::Fail;
                reason = Some(format!("the judge vetoed it: {}", veto.reason));
            }
        }
        let mut output = outcome.output_head.clone();
        if !outcome.output_tail.is_empty() {
            output.push_str("\n[…]\n");
            output.push_str(&outcome.output_tail);
        }
        if outcome.timed_out && self.exam_cut_by_budget {
            output.push_str(&format!(
                "\n[proctor: the exam was killed after {}, when loop `{id}`'s time budget ended]\n",
                fmt_secs(outcome.duration.as_secs_f64())
            ));
        } else if outcome.timed_out {
            output.push_str(&format!(
                "\n[proctor: the exam was killed after its {} timeout]\n",
                fmt_secs(outcome.duration.as_secs_f64())
            ));
        }
        if let Some(why) = &reason {
            output.push_str(&format!(
                "\n[proctor: the exam exited {}, but this is not a pass: {why}]\n",
                outcome.exit_code
            ));
        }
        let streak = (verdict == Verdict::Pass && spec.confirm > 1)
            .then(|| format!("{}/{}", streak + 1, spec.confirm));
        (self.emit)(Event::CheckResult {
            loop_id: id.clone(),
            phase,
            verdict,
            exit: outcome.exit_code,
            timed_out: outcome.timed_out,
            secs: outcome.duration.as_secs_f64(),
            commit: commit.to_string(),
            container: short(&outcome.container_id),
            image: outcome.image_id.clone(),
            log: self.paths.rel(&log),
            streak,
            reason: reason.clone(),
        });
        if verdict == Verdict::Pass {
            self.report.verified.push(format!(
                "loop `{id}`: `{}` exited 0 in verifier container {} (image {}, network {}, exam materials unwritable) on commit {}",
                spec.done_when,
                short(&outcome.container_id),
                short(outcome.image_id.trim_start_matches("sha256:")),
                self.network_for(spec, Role::Verifier).describe(),
                short(&commit.to_string())
            ));
        } else if phase != Phase::Precheck {
            self.report.boundary.push(format!(
                "loop `{id}`: attempt at commit {} rejected: {}",
                short(&commit.to_string()),
                match &reason {
                    Some(why) => why.clone(),
                    None => format!(
                        "the exam exited {}{}",
                        outcome.exit_code,
                        if outcome.timed_out {
                            " (timed out)"
                        } else {
                            ""
                        }
                    ),
                }
            ));
        }
        Ok(Exam {
            verdict,
            exit: outcome.exit_code,
            timed_out: outcome.timed_out,
            secs: outcome.duration.as_secs_f64(),
            output,
            log: self.paths.rel(&log),
            ruling,
        })
    }

    /// Administers `spec`'s exam once on `commit`, a candidate no branch
    /// points at yet (`proctor land`'s merged tree), with every check a
    /// loop's exam gets. Returns the verdict, the exit code and the output
    /// (head and tail).
    pub async fn examine_candidate(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
    ) -> Result<(Verdict, i64, String), EngineError> {
        let exam = self.examine(spec, commit, Phase::Land, 0, 0).await?;
        Ok((exam.verdict, exam.exit, exam.output))
    }

    /// Runs the exam once on an export of `commit`, with the exam's
    /// materials sealed (see `protect::seal`) or, when proctor cannot
    /// seal, mounted read-only. Returns the outcome, the exported
    /// tree (for the after-exam checks; removed when dropped) and the
    /// stamps of its watched files taken just before the exam started.
    async fn sit(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
        log: &Path,
    ) -> Result<Sitting, EngineError> {
        let image = self.image_for(spec);
        self.image_id(&image).await?;
        // A scratch directory made ahead of need comes with a container
        // already started on it (see `warm.rs`).
        // Logical size, from object headers: a tree too big for `/dev/shm`
        // goes to disk (a warm directory made there is given up).
        let bytes = self.git.tree_size(commit)?.bytes;
        self.last_tree_bytes = bytes;
        let tree = match self.take_warm_tree(&spec.id) {
            Some(tree) if !tree.path().starts_with(SHM) || fits_in_shm(bytes) => tree,
            _ => self.exam_tree(bytes)?,
        };
        self.exams += 1;
        self.git.export_tree(commit, tree.path())?;
        if let Some(audit) = &spec.tests {
            // Only a report the exam writes counts, never one committed there.
            fsafe::make_dir(tree.path(), &audit.junit).map_err(io_err(tree.path()))?;
        }
        give_to(tree.path(), &self.settings.user);
        // The materials are sealed by ownership when proctor may give files
        // away (any number of them, and the exam's containers can start
        // ahead); else they are mounted read-only, up to a limit.
        let sealed = match numeric_user(&self.settings.user) {
            Some(ids) => seal::seal(tree.path(), self.watch.trusted_paths(), ids)
                .map_err(io_err(tree.path()))?,
            None => Sealed::NotPermitted,
        };
        // After the hand-over and the seal (a `chown` changes an inode's
        // change time).
        let stamps = self.watch.stamps(tree.path());
        let readonly = match sealed {
            Sealed::Done(_) => Vec::new(),
            Sealed::NotPermitted => self.readonly_mounts(tree.path()),
        };
        self.last_exam_covered = Some(!readonly.is_empty());
        let mut invocation = self.exam_invocation(
            spec,
            &commit.to_string(),
            tree.path(),
            readonly,
            log.to_path_buf(),
        )?;
        (invocation.timeout, self.exam_cut_by_budget) = self.within_wall(spec, invocation.timeout);
        let limits = self.limits_for(spec);
        let started = SystemTime::now();
        let outcome = self.cage.run_with_limits(invocation, &limits).await?;
        Ok(Sitting {
            outcome,
            tree,
            stamps,
            started,
        })
    }

    /// The test count at the base commit, for `expect_delta`: learnt when an
    /// exam ran there, else by administering the exam there once.
    async fn baseline(&mut self, spec: &LoopSpec) -> Result<Option<u32>, EngineError> {
        let Some(audit) = &spec.tests else {
            return Ok(None);
        };
        if audit.expect_delta.is_none() {
            return Ok(None);
        }
        if let Some(known) = self.baselines.get(&spec.id) {
            return Ok(*known);
        }
        let base = self.watch.base();
        (self.emit)(Event::CheckStart {
            loop_id: spec.id.clone(),
            phase: Phase::Baseline,
            commit: base.to_string(),
        });
        let log = self
            .paths
            .logs
            .join(format!("{}.baseline.exam.log", spec.id));
        let Sitting { outcome, tree, .. } = self.sit(spec, base, &log).await?;
        self.record_denials(
            spec,
            0,
            Role::Verifier,
            &outcome.network_denied,
            &outcome.container_id,
        );
        let counts = junit_counts(tree.path(), &audit.junit);
        (self.emit)(Event::CheckResult {
            loop_id: spec.id.clone(),
            phase: Phase::Baseline,
            verdict: Verdict::from_exit(outcome.exit_code, outcome.timed_out),
            exit: outcome.exit_code,
            timed_out: outcome.timed_out,
            secs: outcome.duration.as_secs_f64(),
            commit: base.to_string(),
            container: short(&outcome.container_id),
            image: outcome.image_id.clone(),
            log: self.paths.rel(&log),
            streak: None,
            reason: None,
        });
        let count = counts.map(|c| c.tests);
        self.baselines.insert(spec.id.clone(), count);
        Ok(count)
    }
}

/// Why an exam whose watched files were rewritten during it (and put back:
/// their content matched afterwards) is not a pass; `None` when none was.
fn rewritten_reason(paths: &[String]) -> Option<String> {
    const SHOWN: usize = 5;
    if paths.is_empty() {
        return None;
    }
    let mut shown: Vec<&str> = paths.iter().take(SHOWN).map(String::as_str).collect();
    if paths.len() > SHOWN {
        shown.push("…");
    }
    Some(format!(
        "the exam's materials were rewritten while it ran and put back before it ended ({} file{}: {})",
        paths.len(),
        if paths.len() == 1 { "" } else { "s" },
        shown.join(", ")
    ))
}

/// One exam as it ran: its outcome, the exported tree it ran on (removed
/// when dropped), the stamps of the tree's watched files and when the
/// exam's container was asked to start.
struct Sitting {
    outcome: Outcome,
    tree: ScratchDir,
    stamps: Stamps,
    started: SystemTime,
}

/// What the JUnit reports under `tree/dir` say; `None` when there is none
/// or the directory was replaced by a link.
fn junit_reports(tree: &Path, dir: &str) -> Option<junit::Reports> {
    match fsafe::locate(tree, dir.trim_end_matches('/')) {
        Ok(Found::Dir) => junit::read_reports(&tree.join(dir)),
        _ => None,
    }
}

fn junit_counts(tree: &Path, dir: &str) -> Option<junit::Counts> {
    junit_reports(tree, dir).map(|r| r.counts)
}

impl<C: Cage> Engine<'_, C> {
    /// A fresh, empty scratch directory for an exam's copy of the tree.
    /// Its name carries this process's id, so that a sweep can remove it
    /// if the run is killed (see `leftovers.rs`).
    /// `bytes` is the tree's logical size (or a guess for one made ahead).
    pub(super) fn exam_tree(&self, bytes: u64) -> Result<ScratchDir, EngineError> {
        let scratch = exam_scratch_dir(bytes);
        ScratchDir::new_in(&scratch, &exam_prefix(&self.settings.run_id)).map_err(io_err(&scratch))
    }

    /// The verifier's container for an exam of `spec` on `commit`, whose
    /// tree is (or will be) exported to `tree`, with the exam's materials
    /// `readonly` inside it, the caches the loop declares, the verifier's
    /// network (default none) and no agent environment. Also what `warm.rs`
    /// prepares ahead, so the two cannot drift apart.
    ///
    /// A cache is written only by the exam of the base commit (the user's
    /// code, trusted like the exam itself); every other exam, whose tree
    /// an agent wrote, gets it copy-on-write: it reads the cache warm and
    /// its writes vanish with its container, so nothing the code under
    /// test plants there reaches a later exam. An exam prepared ahead
    /// (`commit` not known yet) is one of the latter.
    pub(super) fn exam_invocation(
        &self,
        spec: &LoopSpec,
        commit: &str,
        tree: &Path,
        readonly: Vec<Mount>,
        log: PathBuf,
    ) -> Result<Invocation, EngineError> {
        let mut mounts = vec![Mount {
            host: tree.to_path_buf(),
            container: "/work".into(),
            access: Access::ReadWrite,
        }];
        mounts.extend(readonly);
        let cache_access = if commit == self.watch.base().to_string() {
            Access::ReadWrite
        } else {
            Access::CopyOnWrite
        };
        for cache in &spec.caches {
            let dir = self.paths.caches.join(cache);
            state::ensure_dir(&dir).map_err(io_err(&dir))?;
            match cache_access {
                Access::ReadWrite => give_to(&dir, &self.settings.user),
                // The copy's root is the folder's: the exam may write
                // there. What is inside stays as the trusted exam left it.
                _ => give_root_to(&dir, &self.settings.user),
            }
            mounts.push(Mount {
                host: dir,
                container: format!("{CACHE_ROOT}/{cache}"),
                access: cache_access,
            });
        }
        mounts.extend(self.extra_mounts(Role::Verifier));
        let mut env = self.verifier_env(spec, commit);
        if let Some(slot) = self.settings.slot {
            env.push(("PROCTOR_SLOT".into(), slot.to_string()));
        }
        let env = super::with_toolchain_env(&self.settings.toolchain_env, env);
        Ok(Invocation {
            image: self.image_for(spec),
            command: spec.done_when.clone(),
            workdir: "/work".into(),
            mounts,
            env,
            stdin: None,
            network: self.network_for(spec, Role::Verifier),
            user: self.settings.user.clone(),
            labels: self.labels(spec, Role::Verifier),
            timeout: spec
                .timeout
                .or(self.settings.default_timeout)
                .unwrap_or(EXAM_TIMEOUT),
            log,
            log_cap: LOG_CAP,
        })
    }
}

impl<C: Cage> Engine<'_, C> {
    /// The exam's environment: the names under `env: {verifier: ...}`
    /// that are set on the host (a toolchain's `PATH`, `RUSTUP_HOME`,
    /// `CARGO_HOME`), then proctor's own, which they cannot override.
    fn verifier_env(&self, spec: &LoopSpec, commit: &str) -> Vec<(String, String)> {
        let mut env = self.settings.host_values(
            spec.verifier_env
                .iter()
                .map(String::as_str)
                .filter(|name| !matches!(*name, "PROCTOR_LOOP" | "PROCTOR_COMMIT" | "CI")),
        );
        env.push(("PROCTOR_LOOP".into(), spec.id.clone()));
        env.push(("PROCTOR_COMMIT".into(), commit.to_string()));
        env.push(("CI".into(), "true".into()));
        env
    }
}

/// Where the loop's caches are in an exam's container.
const CACHE_ROOT: &str = "/cache";

/// Makes an exam's caches copy-on-write: for an exam on the base commit's
/// code that is not the base commit's exam (the review's stripped trees).
pub(super) fn throwaway_caches(inv: &mut Invocation) {
    let root = format!("{CACHE_ROOT}/");
    for mount in &mut inv.mounts {
        if mount.access == Access::ReadWrite && mount.container.starts_with(&root) {
            mount.access = Access::CopyOnWrite;
        }
    }
}

/// The memory file system an exam's tree goes to when it fits.
const SHM: &str = "/dev/shm";

/// Trees above this logical size are exported to disk, never to
/// `/dev/shm`: it is the host's memory, shared with everything else.
pub(super) const SHM_TREE_CAP: u64 = 256 << 20;

/// Where the committed tree is exported for an exam: a tmpfs when the host
/// has one and the tree (`bytes`, logical) is at most [`SHM_TREE_CAP`] and
/// half of what is free there (writing thousands of files to disk costs
/// more than the exam's container), else the temp dir. `PROCTOR_TMPDIR`
/// overrides both.
pub(super) fn exam_scratch_dir(bytes: u64) -> PathBuf {
    if let Some(dir) = std::env::var_os("PROCTOR_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shm = Path::new(SHM);
    let writable = std::fs::metadata(shm)
        .map(|m| m.is_dir() && !m.permissions().readonly())
        .unwrap_or(false);
    if writable && fits_in_shm(bytes) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Whether a tree of `bytes` may go to `/dev/shm`.
fn fits_in_shm(bytes: u64) -> bool {
    bytes <= SHM_TREE_CAP && free_bytes(Path::new(SHM)).is_some_and(|free| bytes <= free / 2)
}

/// Bytes an unprivileged process may still write on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is a valid NUL-terminated string and stat a writable
    // statvfs that outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// The numeric `uid:gid` a container runs as, if it is one.
pub(super) fn numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// The numeric `uid:gid` to give host directories to, when this process
/// is root (only root needs, and can, give files away).
fn give_ids(user: &str) -> Option<(u32, u32)> {
    let ids = numeric_user(user)?;
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then_some(ids)
}

/// Makes a host directory itself (not what is in it) the container user's.
fn give_root_to(dir: &Path, user: &str) {
    let Some((uid, gid)) = give_ids(user) else {
        return;
    };
    if let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: c is a valid NUL-terminated path; lchown never follows links.
        unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    }
}

/// Makes a host directory the container user's, so an exam or a cache can
/// write where it runs. Only root needs (and can do) this.
pub(super) fn give_to(dir: &Path, user: &str) {
    let Some((uid, gid)) = give_ids(user) else {
        return;
    };
    fn walk(path: &Path, uid: u32, gid: u32) {
        if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid NUL-terminated path; lchown never follows links.
            unsafe { libc::lchown(c.as_ptr(), uid, gid) };
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.is_dir() {
                if let Ok(entries) = std::fs::read_dir(path) {
                    for entry in entries.flatten() {
                        walk(&entry.path(), uid, gid);
                    }
                }
            }
        }
    }
    walk(dir, uid, gid);
}
