//! The engine: check → work → commit → verify → repeat → escalate.
//!
//! It walks the loop tree depth-first. For each loop it first administers the
//! exam (a green loop wakes no agent), then runs the agent in a container,
//! commits the attempt, and administers the exam again in a verifier
//! container on the committed tree. The verdict is the exam's exit code,
//! never anything the agent says or writes. The engine never prints: it
//! emits [`events::Event`]s, and renderers consume them.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::cage::{Cage, CageError, Invocation, Labels, Mount, NetworkPolicy, Role};
use crate::git::{GitError, GitRepo, Oid};
use crate::manifest::{LoopSpec, Network};
use crate::state::cards::{self, Card, CardKind, Tried};
use crate::state::key::AnswerKey;
use crate::state::{self, ledger, Paths};

pub mod events;
pub mod history;
pub mod prompt;

use events::{Event, Phase, Verdict};

/// Default per-invocation limits when the manifest sets no `timeout`.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
pub const EXAM_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Log files are capped; the rest of the output is counted and noted.
pub const LOG_CAP: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Cage(#[from] CageError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loop `{0}` has no `agent`; set `agent:` in the manifest or pass `--agent`")]
    NoAgent(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How a loop (or the whole tree) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Closed,
    Blocked { loop_id: String },
    Gated { loop_id: String },
}

/// What the run established, for the residual-risk report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One line per exam whose pass closed a loop: which exam, which
    /// container, which commit.
    pub verified: Vec<String>,
    /// Loops that did not close, and why.
    pub unverified: Vec<String>,
    /// Boundary decisions (attempts rejected, timeouts, no-edit runs).
    pub boundary: Vec<String>,
    pub agent_runs: u32,
    pub agent_secs: f64,
}

/// Everything the engine needs that is fixed for one run.
pub struct Settings {
    pub run_id: String,
    pub repo_label: String,
    /// `uid:gid` for every container.
    pub user: String,
    pub default_image: String,
    /// Agent command from `--agent`, overriding the manifest.
    pub agent_override: Option<String>,
    /// Host variables for the agent (by name, from the manifest's `env:`).
    pub host_env: HashMap<String, String>,
    /// Extra read-only host mounts from the config.
    pub extra_mounts: Vec<PathBuf>,
    pub default_timeout: Option<Duration>,
}

/// One run of the engine over a loop tree.
pub struct Engine<'a, C: Cage> {
    cage: &'a C,
    git: &'a GitRepo,
    paths: Paths,
    key: &'a AnswerKey,
    settings: Settings,
    emit: &'a mut dyn FnMut(Event),
    /// Runs spent per loop, derived from committed history at start.
    runs: HashMap<String, u32>,
    /// When each loop's first attempt started (from history, else now).
    started: HashMap<String, f64>,
    image_ids: HashMap<String, String>,
    /// Loops that ran an agent in this process.
    attempted: std::collections::HashSet<String>,
    pub report: Report,
}

/// The result of one administration of an exam.
struct Exam {
    verdict: Verdict,
    exit: i64,
    timed_out: bool,
    secs: f64,
    output: String,
}

impl<'a, C: Cage> Engine<'a, C> {
    pub fn new(
        cage: &'a C,
        git: &'a GitRepo,
        key: &'a AnswerKey,
        settings: Settings,
        base: Oid,
        emit: &'a mut dyn FnMut(Event),
    ) -> Result<Engine<'a, C>, EngineError> {
        let paths = Paths::new(git.root());
        let tip = git.head()?.unwrap_or(base);
        let spent = history::spent(git, tip, base)?;
        Ok(Engine {
            cage,
            git,
            paths,
            key,
            settings,
            emit,
            runs: spent.runs,
            started: spent.started,
            image_ids: HashMap::new(),
            attempted: Default::default(),
            report: Report::default(),
        })
    }

    /// Administers one loop's exam once on `commit` (for `lint`): returns the
    /// exit code, whether it timed out, seconds and the output.
    pub async fn administer_once(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
    ) -> Result<(i64, bool, f64, String), EngineError> {
        let exam = self.examine(spec, commit, Phase::Precheck, 0, 0).await?;
        Ok((exam.exit, exam.timed_out, exam.secs, exam.output))
    }

    /// Drives the whole tree rooted at `root`.
    pub async fn run(&mut self, root: &LoopSpec) -> Result<Ending, EngineError> {
        self.drive(root).await
    }

    fn drive<'s>(
        &'s mut self,
        spec: &'s LoopSpec,
    ) -> Pin<Box<dyn Future<Output = Result<Ending, EngineError>> + 's>> {
        Box::pin(async move {
            for child in &spec.children {
                match self.drive(child).await? {
                    Ending::Closed => {}
                    halted => return Ok(halted),
                }
            }
            self.drive_own(spec).await
        })
    }

    /// The loop's own exam and attempts, after its children closed.
    async fn drive_own(&mut self, spec: &LoopSpec) -> Result<Ending, EngineError> {
        let id = spec.id.as_str();
        let mut phase = Phase::Precheck;
        let mut streak = 0u32;
        let mut tried: Vec<Tried> = Vec::new();
        let mut idle_runs = 0u32;
        let mut notes: Vec<String> = Vec::new();
        // The wall clock of a loop starts with its first attempt (from
        // history on a resumed run), or now.
        self.started
            .entry(id.to_string())
            .or_insert_with(state::now);
        loop {
            let commit = self.head()?;
            let runs_so_far = self.runs.get(id).copied().unwrap_or(0);
            let exam = self
                .examine(spec, commit, phase, runs_so_far, streak)
                .await?;
            match exam.verdict {
                Verdict::Pass => {
                    streak += 1;
                    if streak >= spec.confirm {
                        return self.close(spec, commit).await;
                    }
                    phase = Phase::Confirm;
                    continue;
                }
                Verdict::NotYet => {
                    streak = 0;
                    phase = Phase::Precheck;
                    if spec.budget.wall.is_none() {
                        let reason = format!(
                            "the exam answered 75 (not yet), and loop `{id}` has no time budget: run budgets do not tick while waiting; add one such as `budget: 8h`"
                        );
                        return self.block(spec, reason, &tried, &exam.output, &notes);
                    }
                    if let Some(reason) = self.budget_spent(spec) {
                        return self.block(spec, reason, &tried, &exam.output, &notes);
                    }
                    let secs = spec.check_every.as_secs_f64();
                    (self.emit)(Event::Wait {
                        loop_id: id.to_string(),
                        secs,
                    });
                    tokio::time::sleep(spec.check_every).await;
                    continue;
                }
                Verdict::Fail => streak = 0,
            }
            if let Some(last) = tried.last_mut() {
                last.verdict = format!("fail (exit {})", exam.exit);
            }
            if let Some(reason) = self.budget_spent(spec) {
                return self.block(spec, reason, &tried, &exam.output, &notes);
            }
            let (run, agent_exit, secs, edits) = self.attempt(spec, &exam.output, &notes).await?;
            notes.clear();
            idle_runs = if edits { 0 } else { idle_runs + 1 };
            if idle_runs >= 2 {
                notes.push(format!(
                    "the last {idle_runs} agent runs changed nothing; is the agent command non-interactive and allowed to edit files?"
                ));
            }
            tried.push(Tried {
                run,
                agent_exit,
                agent_secs: secs,
                verdict: "pass".into(),
            });
            phase = Phase::Verify;
        }
    }

    fn head(&self) -> Result<Oid, EngineError> {
        self.git.head()?.ok_or_else(|| {
            EngineError::Git(GitError::NotARepo {
                path: self.paths.root.clone(),
            })
        })
    }

    /// The budget's verdict: `Some(reason)` when the loop may not spend
    /// another run. Answers each refresh the budget once.
    fn budget_spent(&self, spec: &LoopSpec) -> Option<String> {
        let id = spec.id.as_str();
        let answers = ledger::answers_for(&ledger::read(&self.paths.ledger), self.key, id);
        let refreshes = answers.len() as u32;
        let used = self.runs.get(id).copied().unwrap_or(0);
        if let Some(cap) = spec.budget.runs {
            let allowed = cap.saturating_mul(1 + refreshes);
            if used >= allowed {
                return Some(format!(
                    "budget spent: {used} of {allowed} runs{}",
                    if refreshes > 0 {
                        format!(" ({cap} runs, refreshed {refreshes}×)")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if let Some(wall) = spec.budget.wall {
            let now = state::now();
            let start = self.started.get(id).copied().unwrap_or(now);
            let last_answer = answers
                .last()
                .map(|a| a.ts_ms as f64 / 1000.0)
                .unwrap_or(0.0);
            let elapsed = now - start.max(last_answer);
            if elapsed >= wall.as_secs_f64() {
                return Some(format!(
                    "time budget spent: {} of {}",
                    fmt_secs(elapsed),
                    fmt_secs(wall.as_secs_f64())
                ));
            }
        }
        None
    }

    fn block(
        &mut self,
        spec: &LoopSpec,
        reason: String,
        tried: &[Tried],
        last_failure: &str,
        notes: &[String],
    ) -> Result<Ending, EngineError> {
        let card = Card {
            kind: CardKind::Blocked,
            loop_id: &spec.id,
            task: spec.task.as_deref(),
            exam: &spec.done_when,
            reason: format!("proctor stopped loop `{}`: {reason}.", spec.id),
            tried,
            last_failure: &prompt::head_tail(last_failure, 2048, 4096),
            notes,
        };
        let path = card
            .write(&self.paths.inbox)
            .map_err(io_err(&self.paths.inbox))?;
        (self.emit)(Event::Card {
            loop_id: spec.id.clone(),
            kind: "blocked".into(),
            path: self.paths.rel(&path),
            reason: reason.clone(),
        });
        self.report
            .unverified
            .push(format!("loop `{}` did not close: {reason}", spec.id));
        Ok(Ending::Blocked {
            loop_id: spec.id.clone(),
        })
    }

    async fn close(&mut self, spec: &LoopSpec, commit: Oid) -> Result<Ending, EngineError> {
        cards::clear(&self.paths.inbox, &spec.id);
        let runs = self.runs.get(&spec.id).copied().unwrap_or(0);
        // A loop that was green from the start closes on the commit it was
        // checked on: an empty close commit per `proctor run` would be noise.
        let close = if self.attempted.contains(&spec.id) {
            self.git.commit_all(
                &format!(
                    "proctor({}): close\n\nProctor-Loop: {}\nProctor-Verified: {commit}\n",
                    spec.id, spec.id
                ),
                &|p| state::is_private(p),
            )?
        } else {
            commit
        };
        (self.emit)(Event::Close {
            loop_id: spec.id.clone(),
            runs,
            commit: close.to_string(),
        });
        Ok(Ending::Closed)
    }

    fn image_for(&self, spec: &LoopSpec) -> String {
        spec.image
            .clone()
            .unwrap_or_else(|| self.settings.default_image.clone())
    }

    async fn image_id(&mut self, image: &str) -> Result<String, EngineError> {
        if let Some(id) = self.image_ids.get(image) {
            return Ok(id.clone());
        }
        let id = self.cage.ensure_image(image).await?;
        self.image_ids.insert(image.to_string(), id.clone());
        Ok(id)
    }

    fn labels(&self, spec: &LoopSpec, role: Role) -> Labels {
        Labels {
            repo: self.settings.repo_label.clone(),
            run: self.settings.run_id.clone(),
            loop_id: spec.id.clone(),
            role,
        }
    }

    fn extra_mounts(&self) -> Vec<Mount> {
        self.settings
            .extra_mounts
            .iter()
            .map(|p| Mount {
                host: p.clone(),
                container: p.to_string_lossy().into_owned(),
                read_only: true,
            })
            .collect()
    }

    /// Administers the loop's exam in a verifier container on the committed
    /// tree of `commit`: never the agent's live directory.
    async fn examine(
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

    /// One attempt: the agent in a container on the live tree, then a commit.
    /// Returns (run number, agent exit code, seconds, whether it edited).
    async fn attempt(
        &mut self,
        spec: &LoopSpec,
        failure: &str,
        notes: &[String],
    ) -> Result<(u32, i64, f64, bool), EngineError> {
        let id = spec.id.clone();
        let agent = self
            .settings
            .agent_override
            .clone()
            .or_else(|| spec.agent.clone())
            .ok_or_else(|| EngineError::NoAgent(id.clone()))?;
        let run = self.runs.get(&id).copied().unwrap_or(0) + 1;
        let started = state::now();
        let image = self.image_for(spec);
        self.image_id(&image).await?;

        let journal_path = self.paths.journal_for(&id);
        if !journal_path.exists() {
            let header = format!("# Journal of loop `{id}`\n\n");
            state::write_file(&journal_path, header.as_bytes()).map_err(io_err(&journal_path))?;
        }
        let journal = state::read_tail(&journal_path, prompt::JOURNAL_MAX).unwrap_or_default();
        let answers: Vec<String> =
            ledger::answers_for(&ledger::read(&self.paths.ledger), self.key, &id)
                .into_iter()
                .map(|a| a.text)
                .collect();
        let journal_rel = self.paths.rel(&journal_path);
        let text = prompt::build(&prompt::PromptParts {
            spec,
            run,
            cap: spec.budget.runs,
            failure,
            answers: &answers,
            journal_rel: &journal_rel,
            journal: &journal,
            notes,
        });

        let log = self.paths.logs.join(format!("{id}.run{run}.log"));
        state::ensure_dir(&self.paths.logs).map_err(io_err(&self.paths.logs))?;
        (self.emit)(Event::AgentStart {
            loop_id: id.clone(),
            run,
            of: spec.budget.runs,
            log: self.paths.rel(&log),
            image: image.clone(),
        });
        let root = self.paths.root.clone();
        let mut mounts = vec![
            Mount {
                host: root.clone(),
                container: "/work".into(),
                read_only: false,
            },
            // An agent must not plant hooks or config that anything later runs.
            Mount {
                host: root.join(".git"),
                container: "/work/.git".into(),
                read_only: true,
            },
        ];
        mounts.extend(self.extra_mounts());
        let mut env: Vec<(String, String)> = spec
            .env
            .iter()
            .filter_map(|name| {
                self.settings
                    .host_env
                    .get(name)
                    .map(|v| (name.clone(), v.clone()))
            })
            .collect();
        env.push(("PROCTOR_LOOP".into(), id.clone()));
        env.push(("PROCTOR_RUN".into(), run.to_string()));
        let outcome = self
            .cage
            .run(Invocation {
                image: image.clone(),
                command: agent,
                workdir: "/work".into(),
                mounts,
                env,
                stdin: Some(text.into_bytes()),
                network: match spec.network {
                    Network::None => NetworkPolicy::None,
                    // Host allow-lists need the egress proxy; until then a
                    // list is refused at startup rather than silently opened.
                    Network::Open | Network::Hosts(_) => NetworkPolicy::Open,
                },
                user: self.settings.user.clone(),
                labels: self.labels(spec, Role::Agent),
                timeout: spec
                    .timeout
                    .or(self.settings.default_timeout)
                    .unwrap_or(AGENT_TIMEOUT),
                log: log.clone(),
                log_cap: LOG_CAP,
            })
            .await?;
        let secs = outcome.duration.as_secs_f64();
        let edits = !self
            .git
            .dirty_paths(&|p| p.starts_with(".proctor/") || p.starts_with("INBOX/"))?
            .is_empty();
        (self.emit)(Event::AgentEnd {
            loop_id: id.clone(),
            run,
            exit: outcome.exit_code,
            timed_out: outcome.timed_out,
            secs,
            edits,
            container: short(&outcome.container_id),
        });
        if outcome.timed_out {
            self.report.boundary.push(format!(
                "loop `{id}`: run {run}: the agent was killed at its timeout"
            ));
        }
        if !edits {
            self.report
                .boundary
                .push(format!("loop `{id}`: run {run}: the agent changed nothing"));
        }
        self.report.agent_runs += 1;
        self.report.agent_secs += secs;

        ledger::append(
            &self.paths.ledger,
            &ledger::Entry::Run {
                v: ledger::LEDGER_VERSION,
                loop_id: id.clone(),
                run,
                secs,
                exit: outcome.exit_code,
                ts: state::now() as i64,
            },
        )
        .map_err(io_err(&self.paths.ledger))?;
        let message = history::run_message(&id, run, started, secs, outcome.exit_code);
        let commit = self.git.commit_all(&message, &|p| state::is_private(p))?;
        self.runs.insert(id.clone(), run);
        self.attempted.insert(id.clone());
        (self.emit)(Event::Commit {
            loop_id: id,
            run,
            commit: commit.to_string(),
        });
        Ok((run, outcome.exit_code, secs, edits))
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

pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

pub fn fmt_secs(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// The run's time, for events.
pub fn elapsed(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
