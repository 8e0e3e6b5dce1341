//! The verifier step: the exam, in its own container, on the committed tree.

use std::path::{Path, PathBuf};

use super::events::{Event, Phase, Verdict};
use super::{fmt_secs, io_err, short, Engine, EngineError, Exam, EXAM_TIMEOUT, LOG_CAP};
use crate::cage::{Cage, Invocation, Mount, NetworkPolicy, Role};
use crate::git::Oid;
use crate::manifest::LoopSpec;
use crate::state;

impl<C: Cage> Engine<'_, C> {
    /// Administers the loop's exam in a verifier container on the committed
    /// tree of `commit`: never the agent's live directory.
    pub(super) async fn examine(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
        phase: Phase,
        run: u32,
        streak: u32,
    ) -> Result<Exam, EngineError> {
        let id = spec.id.clone();
        let image = self.image_for(spec);
        self.image_id(&image).await?;
        (self.emit)(Event::CheckStart {
            loop_id: id.clone(),
            phase,
            commit: commit.to_string(),
        });
        let scratch = exam_scratch_dir();
        let tree = tempfile::Builder::new()
            .prefix(&format!("proctor-exam-{}-", self.settings.run_id))
            .tempdir_in(&scratch)
            .map_err(io_err(&scratch))?;
        self.git.export_tree(commit, tree.path())?;
        give_to(tree.path(), &self.settings.user);
        let mut mounts = vec![Mount {
            host: tree.path().to_path_buf(),
            container: "/work".into(),
            read_only: false,
        }];
        for cache in &spec.caches {
            let dir = self.paths.caches.join(cache);
            state::ensure_dir(&dir).map_err(io_err(&dir))?;
            give_to(&dir, &self.settings.user);
            mounts.push(Mount {
                host: dir,
                container: format!("/cache/{cache}"),
                read_only: false,
            });
        }
        mounts.extend(self.extra_mounts());
        let log = self.paths.logs.join(format!("{id}.run{run}.exam.log"));
        let outcome = self
            .cage
            .run(Invocation {
                image: image.clone(),
                command: spec.done_when.clone(),
                workdir: "/work".into(),
                mounts,
                env: vec![
                    ("PROCTOR_LOOP".into(), id.clone()),
                    ("PROCTOR_COMMIT".into(), commit.to_string()),
                    ("CI".into(), "true".into()),
                ],
                stdin: None,
                network: NetworkPolicy::None,
                user: self.settings.user.clone(),
                labels: self.labels(spec, Role::Verifier),
                timeout: spec
                    .timeout
                    .or(self.settings.default_timeout)
                    .unwrap_or(EXAM_TIMEOUT),
                log: log.clone(),
                log_cap: LOG_CAP,
            })
            .await?;
        let verdict = Verdict::from_exit(outcome.exit_code, outcome.timed_out);
        let mut output = outcome.output_head.clone();
        if !outcome.output_tail.is_empty() {
            output.push_str("\n[…]\n");
            output.push_str(&outcome.output_tail);
        }
        if outcome.timed_out {
            output.push_str(&format!(
                "\n[proctor: the exam was killed after its {} timeout]\n",
                fmt_secs(outcome.duration.as_secs_f64())
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
        });
        if verdict == Verdict::Pass {
            self.report.verified.push(format!(
                "loop `{id}`: `{}` exited 0 in verifier container {} (image {}, network none) on commit {}",
                spec.done_when,
                short(&outcome.container_id),
                short(outcome.image_id.trim_start_matches("sha256:")),
                short(&commit.to_string())
            ));
        } else if phase != Phase::Precheck {
            self.report.boundary.push(format!(
                "loop `{id}`: attempt at commit {} rejected: the exam exited {}{}",
                short(&commit.to_string()),
                outcome.exit_code,
                if outcome.timed_out {
                    " (timed out)"
                } else {
                    ""
                }
            ));
        }
        Ok(Exam {
            verdict,
            exit: outcome.exit_code,
            timed_out: outcome.timed_out,
            secs: outcome.duration.as_secs_f64(),
            output,
        })
    }
}

/// Where the committed tree is exported for an exam: a tmpfs when the host
/// has one (writing thousands of files to disk costs more than the exam's
/// container), else the temp dir. `PROCTOR_TMPDIR` overrides both.
fn exam_scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROCTOR_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let writable = std::fs::metadata(shm)
        .map(|m| m.is_dir() && !m.permissions().readonly())
        .unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Makes a host directory the container user's, so an exam or a cache can
/// write where it runs. Only root needs (and can do) this.
fn give_to(dir: &Path, user: &str) {
    let Some((uid, gid)) = user.split_once(':') else {
        return;
    };
    let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
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
