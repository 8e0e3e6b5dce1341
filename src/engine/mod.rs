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

use crate::cage::{Access, Cage, CageError, Labels, Mount, Role};
use crate::git::{BranchGuard, GitError, GitRepo, Oid, Workspace};
use crate::manifest::{Config, JudgeConfig, LoopSpec, Resources, ReviewConfig};
use crate::protect::{Rules, Watch};
use crate::state::cards::{self, Card, CardKind, Tried};
use crate::state::key::AnswerKey;
use crate::state::{self, ledger, Paths};

mod attempt;
pub mod boundary;
pub mod clock;
pub mod events;
mod exam;
pub mod gate;
pub mod history;
mod judging;
mod parallel;
mod planner;
mod policy;
pub mod prompt;
pub(super) mod review;
pub mod runnable;
pub use planner::PlannerRun;
#[cfg(test)]
mod tests;
mod warm;

use clock::Clock;
use events::{Event, Phase, Verdict};
use warm::{Step, WarmTree};

/// Attempts in a row after which an unchanged failure is named in the
/// prompt and the card.
const SAME_FAILURES: u32 = 2;

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
    #[error("loop `{0}` has no `agent`")]
    NoAgent(String),
    /// A container died of SIGTERM or SIGKILL and the engine no longer
    /// answers: it was stopped with the engine, and says nothing about the
    /// command.
    #[error("the container engine went away while {during}")]
    EngineGone { during: String },
    /// The loop's first exam could not run at all (a missing command,
    /// toolchain, runner module or network): no agent can fix that, so
    /// none is woken.
    #[error(
        "the exam of loop `{loop_id}` cannot run: {why}; no agent was woken, no run was spent"
    )]
    ExamCannotRun {
        loop_id: String,
        why: String,
        tail: String,
        log: String,
        /// How to check the exam again: `proctor lint`, or after `once`
        /// (no manifest for lint to read) the same `proctor once` again.
        recheck: String,
    },
    /// The agent's command was not found or cannot be executed, and it
    /// changed nothing: the run is not charged.
    #[error("the agent of loop `{loop_id}` cannot run: {why}; run {run} was not charged")]
    AgentCannotRun {
        loop_id: String,
        run: u32,
        why: String,
        tail: String,
        log: String,
    },
}

impl crate::exit_codes::DomainError for EngineError {
    fn output(&self) -> Option<String> {
        match self {
            EngineError::ExamCannotRun { tail, .. } | EngineError::AgentCannotRun { tail, .. } => {
                Some(tail.clone())
            }
            _ => None,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EngineError::Cage(e) => e.hint(),
            EngineError::Git(e) => e.hint(),
            EngineError::NoAgent(_) => Some("set `agent:` in the manifest or pass `--agent`".into()),
            EngineError::ExamCannotRun {
                log,
                loop_id,
                recheck,
                ..
            } => Some(format!(
                "make what the exam needs visible in the container (`mounts:` and `env:`, or an `image:` that has it; `proctor init` detects host toolchains), then {recheck}; its whole output: `{log}` (`proctor logs {loop_id}`)"
            )),
            EngineError::AgentCannotRun { log, loop_id, run, .. } => Some(format!(
                "the agent's command must exist in the cage: an `image:` that has it, or `mounts:` and `env: [PATH]` for a host install, or another `--agent`; its whole output: `{log}` (`proctor logs {loop_id} {run}`)"
            )),
            EngineError::EngineGone { .. } => Some("start it again and run `proctor run` to resume: the cut-short attempt is settled then (committed as interrupted if it left edits, not charged if it left none)".into()),
            EngineError::Io { .. } => None,
        }
    }

    fn is_users_to_fix(&self) -> bool {
        match self {
            EngineError::Cage(e) => e.is_users_to_fix(),
            EngineError::Git(e) => e.is_users_to_fix(),
            EngineError::NoAgent(_)
            | EngineError::EngineGone { .. }
            | EngineError::ExamCannotRun { .. }
            | EngineError::AgentCannotRun { .. } => true,
            EngineError::Io { .. } => false,
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
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
    /// Boundary decisions (attempts rejected, timeouts, no-edit runs,
    /// quarantines, allow-list violations, repaired state).
    pub boundary: Vec<String>,
    /// What the boundary guarded in this run, and how.
    pub guarded: Vec<String>,
    pub agent_runs: u32,
    pub agent_secs: f64,
}

/// Everything the engine needs that is fixed for one run.
#[derive(Clone)]
pub struct Settings {
    pub run_id: String,
    pub repo_label: String,
    /// `uid:gid` for every container.
    pub user: String,
    pub default_image: String,
    /// Agent command from `--agent`, for loops that name none.
    pub default_agent: Option<String>,
    /// The command that resumes this run, for its cards: `proctor run`,
    /// `proctor run --file FILE`, or (after `once`, whose flags are not
    /// recorded) the sentence saying to run the same `proctor once` again.
    pub rerun: String,
    /// Host variables for the agent (by name, from the manifest's `env:`).
    pub host_env: HashMap<String, String>,
    /// Extra host mounts from the config (and `once --mount`), `~`
    /// expanded: read-only unless the user wrote `:rw`, and read-only in
    /// the verifier whatever they say (code under test never writes the
    /// host).
    pub extra_mounts: Vec<HostMount>,
    /// The config's `env:` (a mounted toolchain's `PATH`, `CARGO_HOME`...),
    /// `~` expanded: set in every agent and exam container, under the
    /// manifest's host variables and proctor's own.
    pub toolchain_env: Vec<(String, String)>,
    pub default_timeout: Option<Duration>,
    /// The exam's materials: `protected:` globs and control files.
    pub rules: Rules,
    /// The config's `resources`, under every loop's own.
    pub default_resources: Resources,
    /// A parallel child's `PROCTOR_SLOT` (1..N), in its agent's and
    /// exam's environment.
    pub slot: Option<u32>,
    /// The config's judge, asked about every pass of a loop with `judge:`.
    pub judge: Option<JudgeConfig>,
    /// The host variables the judge gets (the names its config lists that
    /// are set here).
    pub judge_env: Vec<(String, String)>,
    /// Whether the exam review before a loop's first agent runs the exam
    /// on a stripped and an empty tree (one verifier container; see
    /// `review.rs`). Always on in a run; the engine's decision tests turn
    /// it off unless they script that container.
    pub review_trees: bool,
    /// The config's reviewer, asked about each loop's exam before its
    /// first agent run.
    pub reviewer: Option<ReviewConfig>,
    /// The host variables the reviewer gets (the names its config lists
    /// that are set here).
    pub reviewer_env: Vec<(String, String)>,
}

impl Settings {
    /// The settings for the engine in the repository at `root` (a run, or
    /// `lint`'s exams), from the host config: one constructor, so the two
    /// cannot drift apart. No agent override and no host environment: a run
    /// sets those from its request.
    pub fn new(run_id: String, root: &Path, config: &Config, rules: Rules) -> Settings {
        Settings {
            run_id,
            repo_label: crate::cage::repo_label(root),
            user: crate::cage::container_user(root),
            default_image: config
                .image
                .clone()
                .unwrap_or_else(|| crate::cage::HOST_IMAGE.to_string()),
            default_agent: None,
            rerun: "proctor run".into(),
            host_env: HashMap::new(),
            extra_mounts: config.mounts.iter().map(|m| HostMount::parse(m)).collect(),
            toolchain_env: config
                .env
                .iter()
                .map(|(name, value)| (name.clone(), expand_home_parts(value)))
                .collect(),
            default_timeout: config.timeout,
            rules,
            default_resources: config.resources,
            slot: None,
            judge: config.judge.clone(),
            judge_env: config
                .judge
                .iter()
                .flat_map(|j| &j.env)
                .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
                .collect(),
            review_trees: true,
            reviewer: config.review.clone(),
            reviewer_env: config
                .review
                .iter()
                .flat_map(|r| &r.caged.env)
                .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
                .collect(),
        }
    }
}

impl Settings {
    /// The host's value of each of `names` that is set there, in order:
    /// how a variable of the host reaches an agent or an exam (by the
    /// name the manifest or a preset gives; an unset one is left out).
    pub(crate) fn host_values<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Vec<(String, String)> {
        names
            .into_iter()
            .filter_map(|name| {
                self.host_env
                    .get(name)
                    .map(|value| (name.to_owned(), value.clone()))
            })
            .collect()
    }
}

/// An extra host path mounted at the same path in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub path: PathBuf,
    /// The agent may write it (`PATH:rw`); the verifier never may.
    pub writable: bool,
}

impl HostMount {
    /// `PATH`, `PATH:ro` or `PATH:rw`, with a leading `~` read as `$HOME`
    /// (the config's check made sure it is absolute or `~/...`).
    pub fn parse(text: &str) -> HostMount {
        let (path, writable) = match text.rsplit_once(':') {
            Some((path, "rw")) => (path, true),
            Some((path, "ro")) => (path, false),
            _ => (text, false),
        };
        HostMount {
            path: expand_home(path),
            writable,
        }
    }
}

/// `~` and `~/...` under `$HOME`; anything else, or no `$HOME`, as written.
pub fn expand_home(path: &str) -> PathBuf {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    match (path, home) {
        ("~", Some(home)) => PathBuf::from(home),
        (p, Some(home)) if p.starts_with("~/") => PathBuf::from(home).join(&p[2..]),
        (p, _) => PathBuf::from(p),
    }
}

/// `value` with each `:`-separated part that is `~` or opens with `~/`
/// under `$HOME` (a `PATH`-like list of toolchain directories).
pub fn expand_home_parts(value: &str) -> String {
    value
        .split(':')
        .map(|part| {
            if part == "~" || part.starts_with("~/") {
                expand_home(part).to_string_lossy().into_owned()
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// `env` with the config's toolchain variables first, each dropped where
/// `env` already sets it (the engine would otherwise get the name twice).
pub(crate) fn with_toolchain_env(
    toolchain: &[(String, String)],
    env: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = toolchain
        .iter()
        .filter(|(name, _)| !env.iter().any(|(n, _)| n == name))
        .cloned()
        .collect();
    all.extend(env);
    all
}

/// One run of the engine over a loop tree.
pub struct Engine<'a, C: Cage> {
    cage: &'a C,
    git: &'a GitRepo,
    paths: Paths,
    key: &'a AnswerKey,
    settings: Settings,
    emit: &'a mut dyn FnMut(Event),
    /// Where time is read and waited on (the system's unless injected).
    clock: &'a dyn Clock,
    /// Runs spent per loop, derived from committed history at start.
    runs: HashMap<String, u32>,
    /// When each loop's first attempt started (from history, else now).
    started: HashMap<String, f64>,
    image_ids: HashMap<String, String>,
    /// Loops that ran an agent in this process.
    attempted: std::collections::HashSet<String>,
    /// The exam's materials pinned to the base commit.
    watch: Watch,
    /// Test counts at the base commit per loop (`None`: no report there).
    baselines: HashMap<String, Option<u32>>,
    /// Boundary notes for the next prompt (and card) of the loop.
    pending_notes: Vec<String>,
    readonly_cut_reported: bool,
    /// The branch's fork point: history between it and HEAD is this work's.
    base: Oid,
    /// Gated loops this run took off their gate (see `gate.rs`).
    resumed_gates: std::collections::HashSet<String>,
    /// Exams administered so far (numbers the exams prepared ahead).
    exams: u64,
    /// Exam scratch directories made ahead of need (`warm.rs`).
    warm_trees: Vec<WarmTree>,
    /// The logical size of the last exam's tree: where the next exam's
    /// scratch directory is made ahead of need (`/dev/shm` or disk).
    last_tree_bytes: u64,
    /// Whether the last exam had read-only material mounts inside its
    /// tree, which cannot exist before the tree does (`warm.rs`).
    last_exam_covered: Option<bool>,
    /// Whether the last exam's timeout was cut to the loop's time budget.
    exam_cut_by_budget: bool,
    /// The run's own worktree, when it works in one: every commit then
    /// goes onto the tip proctor last wrote, or the run stops.
    workspace: Option<&'a Workspace>,
    /// Working in the checkout itself: the branch HEAD was on when the
    /// engine started and the tip proctor last wrote there, so a branch
    /// someone deleted, reset or moved mid-run stops the run instead of
    /// taking a commit (parentless, or over history proctor did not write).
    checkout: Option<BranchGuard>,
    /// The root loop's id (names parallel children's worktrees).
    root_id: String,
    /// A parallel child runs beside its siblings on the one cage: it
    /// prepares no container ahead (settling those would remove a
    /// sibling's).
    concurrent: bool,
    /// A parallel child's parent's ledger, where answers and approvals to
    /// the child are written too.
    outer_ledger: Option<PathBuf>,
    /// Whether a pass is put to the loop's judge (`lint` asks only with
    /// `--judges`).
    judging: bool,
    pub report: Report,
}

/// What one exam administered alone (`lint`) answered.
pub struct Administered {
    pub exit: i64,
    pub timed_out: bool,
    pub secs: f64,
    /// The output's head and tail.
    pub output: String,
    /// The whole output's log file, relative to the repository.
    pub log: String,
    /// The judge's ruling on a pass, when it was asked.
    pub ruling: Option<crate::judge::Ruling>,
}

/// The result of one administration of an exam.
pub(crate) struct Exam {
    verdict: Verdict,
    exit: i64,
    timed_out: bool,
    secs: f64,
    output: String,
    /// The log file, relative to the repository.
    log: String,
    /// The judge's ruling on the exam's pass, when it was asked.
    ruling: Option<crate::judge::Ruling>,
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
        let watch = Watch::new(git, base, &settings.rules)?;
        let mut report = Report::default();
        report.guarded.push(guarded_line(&settings.rules, &watch));
        Ok(Engine {
            cage,
            git,
            paths,
            key,
            settings,
            emit,
            clock: &clock::SYSTEM,
            runs: spent.runs,
            started: spent.started,
            image_ids: HashMap::new(),
            attempted: Default::default(),
            watch,
            baselines: HashMap::new(),
            pending_notes: Vec::new(),
            readonly_cut_reported: false,
            base,
            resumed_gates: Default::default(),
            exams: 0,
            warm_trees: Vec::new(),
            last_tree_bytes: 0,
            last_exam_covered: None,
            exam_cut_by_budget: false,
            workspace: None,
            checkout: BranchGuard::at_head(git)?,
            root_id: String::new(),
            concurrent: false,
            outer_ledger: None,
            judging: true,
            report,
        })
    }

    /// An engine working in the run's own worktree `ws`, with the run's
    /// private state (events, logs, cards, quarantine) in the checkout at
    /// `home`. The agent's `/work` and every commit are the worktree's;
    /// each commit checks that the branch is still at the tip proctor last
    /// wrote.
    pub fn in_workspace(
        cage: &'a C,
        ws: &'a Workspace,
        home: &Path,
        key: &'a AnswerKey,
        settings: Settings,
        base: Oid,
        emit: &'a mut dyn FnMut(Event),
    ) -> Result<Engine<'a, C>, EngineError> {
        ws.check_tip()?;
        let mut engine = Engine::new(cage, ws.repo(), key, settings, base, emit)?;
        engine.paths = Paths::with_work(home, ws.root());
        engine.workspace = Some(ws);
        engine.checkout = None;
        Ok(engine)
    }

    /// Commits the working tree (all but `skip`) only onto the tip proctor
    /// last wrote, in a worktree or in the checkout (a moved or deleted
    /// branch is an error naming what moved); on HEAD only when the run
    /// started on no branch.
    fn commit(&self, message: &str, skip: &dyn Fn(&str) -> bool) -> Result<Oid, EngineError> {
        Ok(match (self.workspace, &self.checkout) {
            (Some(ws), _) => ws.commit(message, skip)?,
            (None, Some(guard)) => guard.commit(self.git, message, skip)?,
            (None, None) => self.git.commit_all(message, skip)?,
        })
    }

    /// An engine that never asks a judge (`lint` without `--judges`).
    pub fn without_judges(mut self) -> Engine<'a, C> {
        self.judging = false;
        self
    }

    /// The engine reading time from `clock` and waiting on it (tests
    /// inject one they move).
    pub fn with_clock(mut self, clock: &'a dyn Clock) -> Engine<'a, C> {
        self.clock = clock;
        self
    }

    /// Administers one loop's exam once on `commit` (for `lint`).
    pub async fn administer_once(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
    ) -> Result<Administered, EngineError> {
        let exam = self.examine(spec, commit, Phase::Precheck, 0, 0).await?;
        Ok(Administered {
            exit: exam.exit,
            timed_out: exam.timed_out,
            secs: exam.secs,
            output: exam.output,
            log: exam.log,
            ruling: exam.ruling,
        })
    }

    /// Drives the whole tree rooted at `root`.
    pub async fn run(&mut self, root: &LoopSpec) -> Result<Ending, EngineError> {
        if self.root_id.is_empty() {
            self.root_id = root.id.clone();
        }
        self.settle_interrupted(root).await?;
        self.resume_gates(root)?;
        self.drive(root).await
    }

    fn drive<'s>(
        &'s mut self,
        spec: &'s LoopSpec,
    ) -> Pin<Box<dyn Future<Output = Result<Ending, EngineError>> + 's>> {
        Box::pin(async move {
            if spec.parallel && !spec.children.is_empty() {
                match self.drive_parallel(spec).await? {
                    Ending::Closed => {}
                    halted => return Ok(halted),
                }
            } else {
                for child in &spec.children {
                    match self.drive(child).await? {
                        Ending::Closed => {}
                        halted => return Ok(halted),
                    }
                }
            }
            let ending = self.drive_own(spec).await;
            // Containers started for steps this loop will not take.
            self.discard_warm().await;
            ending
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
        let mut first_exam = true;
        // Whether the exam was reviewed before this loop's first agent.
        let mut reviewed = false;
        // The last failure (exit code and output, digits masked) and how
        // many attempts in a row left it exactly as it was.
        let mut last_failure: Option<(i64, String)> = None;
        let mut same_failures = 0u32;
        // The wall clock of a loop starts with its first attempt (from
        // history on a resumed run), or now.
        let now = self.clock.now();
        self.started.entry(id.to_string()).or_insert(now);
        let mut last_output = String::new();
        loop {
            let commit = self.guard_before_exam(spec)?;
            if phase == Phase::Verify && self.wall_left(spec).is_some_and(|left| left <= 0.0) {
                // The budget ended while the agent worked (it was stopped
                // then): its work is committed; the exam would run past the
                // budget, so the next run's first check examines it.
                if let Some(spent) = self.budget_spent(spec) {
                    let run = tried.last().map_or(0, |t| t.run);
                    let reason = format!(
                        "{spent}; run {run}'s agent was stopped when it ended, and its work is committed but not examined yet (the next `proctor run` checks it first)"
                    );
                    return self.block(spec, reason, &tried, &last_output, &notes);
                }
            }
            let runs_so_far = self.runs.get(id).copied().unwrap_or(0);
            if spec.judged_only().is_none() {
                // The cage prepares a container only for an image it has
                // resolved: before the first exam, resolve it here.
                self.image_id(&self.image_for(spec)).await?;
            }
            self.warm_up(spec, Step::Exam, Some(commit));
            let exam = self
                .examine(spec, commit, phase, runs_so_far, streak)
                .await?;
            notes.append(&mut self.pending_notes);
            last_output.clone_from(&exam.output);
            if std::mem::take(&mut first_exam) && runs_so_far == 0 && exam.verdict == Verdict::Fail
            {
                // Before any agent is woken: an exam that cannot run at all
                // would fail whatever the agent did.
                if let Some(why) = runnable::cannot_run(exam.exit, &exam.output) {
                    return Err(EngineError::ExamCannotRun {
                        loop_id: id.to_string(),
                        why,
                        tail: runnable::tail_lines(&exam.output, 12).join("\n"),
                        log: exam.log.clone(),
                        recheck: if self.settings.rerun.starts_with("proctor ") {
                            "check with `proctor lint`".into()
                        } else {
                            self.settings.rerun.clone()
                        },
                    });
                }
            }
            match exam.verdict {
                Verdict::Pass => {
                    streak += 1;
                    if let Some(gate) = spec.gate {
                        match self.gate_pass(spec, gate, commit, streak, &tried).await? {
                            Some(ending) => return Ok(ending),
                            None => {
                                phase = Phase::Confirm;
                                continue;
                            }
                        }
                    }
                    if streak >= spec.confirm {
                        return self.close(spec, commit).await;
                    }
                    phase = Phase::Confirm;
                    continue;
                }
                Verdict::NotYet => {
                    streak = 0;
                    phase = Phase::Precheck;
                    self.gate_moved(spec, commit, exam.exit);
                    if spec.budget.wall.is_none() {
                        let reason = format!(
                            "the exam answered 75 (not yet), and loop `{id}` has no time budget: run budgets do not tick while waiting; add one such as `budget: 8h`"
                        );
                        return self.block(spec, reason, &tried, &exam.output, &notes);
                    }
                    if let Some(reason) = self.budget_spent(spec) {
                        return self.block(spec, reason, &tried, &exam.output, &notes);
                    }
                    // Nothing needs a container until the next check.
                    self.discard_warm().await;
                    // Never sleep past the time budget: the check at its end
                    // is the last one.
                    let left = self.wall_left(spec).unwrap_or(f64::INFINITY);
                    let secs = spec.check_every.as_secs_f64().min(left.max(0.05));
                    (self.emit)(Event::Wait {
                        loop_id: id.to_string(),
                        secs,
                    });
                    self.clock.sleep(Duration::from_secs_f64(secs)).await;
                    continue;
                }
                Verdict::Fail => {
                    streak = 0;
                    self.gate_moved(spec, commit, exam.exit);
                    let failure = (exam.exit, masked(&exam.output));
                    if phase == Phase::Verify {
                        if last_failure.as_ref() == Some(&failure) {
                            same_failures += 1;
                        } else {
                            same_failures = 0;
                        }
                    }
                    last_failure = Some(failure);
                    // An agent that changed nothing gets its own note.
                    if same_failures >= SAME_FAILURES && idle_runs == 0 {
                        notes.push(format!(
                            "the exam failed the same way (exit {}, the same output) before and after each of the last {same_failures} attempts: the edits do not reach what it checks, or it cannot pass in the cage (`proctor lint` runs it alone); its output is below",
                            exam.exit
                        ));
                    }
                }
            }
            if let Some(last) = tried.last_mut() {
                last.verdict = format!("fail (exit {})", exam.exit);
            }
            if self.agent_for(spec).is_none() {
                // A loop that only aggregates its children: nobody may fix
                // what their work fails, so a person decides.
                let reason = format!(
                    "its exam fails on what its children built, and loop `{id}` has no `agent` of its own to fix that; give it one, or pass `--agent CMD` to `proctor run`"
                );
                return self.block(spec, reason, &tried, &exam.output, &notes);
            }
            if let Some(reason) = self.budget_spent(spec) {
                return self.block(spec, reason, &tried, &exam.output, &notes);
            }
            if !std::mem::replace(&mut reviewed, true)
                && self.runs.get(id).copied().unwrap_or(0) == 0
            {
                if let Some(ending) = self.review_exam(spec).await? {
                    return Ok(ending);
                }
            }
            self.warm_up(spec, Step::Agent, None);
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

    /// The loop's agent command: its own (or inherited) `agent:`, else the
    /// run's `--agent`; `None` for a loop that only aggregates children.
    pub(super) fn agent_for(&self, spec: &LoopSpec) -> Option<String> {
        spec.agent
            .clone()
            .or_else(|| self.settings.default_agent.clone())
    }

    /// The ledger's lines, with a parallel child's parent's (where answers
    /// to the child may be written) after its own, each once.
    pub(super) fn ledger_entries(&self) -> Vec<ledger::Entry> {
        let mut entries = ledger::read(&self.paths.ledger);
        if let Some(outer) = &self.outer_ledger {
            for entry in ledger::read(outer) {
                if !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
        }
        entries
    }

    /// In a worktree: the branch is still at the tip proctor last wrote.
    /// A branch someone deleted or moved is named, never examined or
    /// guarded against.
    fn check_workspace(&self) -> Result<(), EngineError> {
        match (self.workspace, &self.checkout) {
            (Some(ws), _) => Ok(ws.check_tip()?),
            (None, Some(guard)) => Ok(guard.check(self.git)?),
            (None, None) => Ok(()),
        }
    }

    fn head(&self) -> Result<Oid, EngineError> {
        if let Some(ws) = self.workspace {
            ws.check_tip()?;
            return Ok(ws.tip());
        }
        if let Some(guard) = &self.checkout {
            guard.check(self.git)?;
            return Ok(guard.tip());
        }
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
        let answers = ledger::answers_for(&self.ledger_entries(), self.key, id);
        let refreshes = answers.len() as u32;
        let used = self.runs.get(id).copied().unwrap_or(0);
        if let Some(cap) = spec.budget.runs {
            let allowed = cap.saturating_mul(1 + refreshes);
            if used >= allowed {
                let runs = |n: u32| if n == 1 { "run" } else { "runs" };
                return Some(format!(
                    "budget spent: {used} of {allowed} {}{}",
                    runs(allowed),
                    if refreshes > 0 {
                        format!(" ({cap} {}, refreshed {refreshes}×)", runs(cap))
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if let Some(wall) = spec.budget.wall {
            let elapsed = self.wall_elapsed(id, &answers);
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

    /// Wall-clock time the loop has spent: since its first attempt (or the
    /// last answer, which restarts the clock), less the time it was halted
    /// at its gate waiting for a person.
    fn wall_elapsed(&self, id: &str, answers: &[ledger::Answer]) -> f64 {
        let now = self.clock.now();
        let start = self.started.get(id).copied().unwrap_or(now);
        let last_answer = answers
            .last()
            .map(|a| a.ts_ms as f64 / 1000.0)
            .unwrap_or(0.0);
        let since = start.max(last_answer);
        now - since - self.paused_secs(id, since, now)
    }

    /// `timeout`, cut to what is left of the loop's time budget, and
    /// whether the budget cut it: the budget binds a running agent or exam
    /// (the cage kills it when the budget ends), not only the start of the
    /// next one. With the budget already spent (the last check of a
    /// not-yet wait, a resumed run's first check) an exam keeps its own
    /// timeout: a check spends no budget, and a loop green by then closes.
    pub(super) fn within_wall(&self, spec: &LoopSpec, timeout: Duration) -> (Duration, bool) {
        match self.wall_left(spec) {
            Some(left) if left > 0.0 => match Duration::try_from_secs_f64(left) {
                Ok(left) if left < timeout => (left, true),
                _ => (timeout, false),
            },
            _ => (timeout, false),
        }
    }

    /// Seconds left on the loop's time budget, if it has one.
    fn wall_left(&self, spec: &LoopSpec) -> Option<f64> {
        let wall = spec.budget.wall?;
        let answers = ledger::answers_for(&self.ledger_entries(), self.key, &spec.id);
        Some(wall.as_secs_f64() - self.wall_elapsed(&spec.id, &answers))
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
            review: None,
            rerun: &self.settings.rerun,
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
            self.commit(
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

    pub(super) fn image_for(&self, spec: &LoopSpec) -> String {
        spec.image
            .clone()
            .unwrap_or_else(|| self.settings.default_image.clone())
    }

    pub(super) async fn image_id(&mut self, image: &str) -> Result<String, EngineError> {
        if let Some(id) = self.image_ids.get(image) {
            return Ok(id.clone());
        }
        let id = self.cage.ensure_image(image).await?;
        self.image_ids.insert(image.to_string(), id.clone());
        Ok(id)
    }

    pub(super) fn labels(&self, spec: &LoopSpec, role: Role) -> Labels {
        Labels {
            repo: self.settings.repo_label.clone(),
            run: self.settings.run_id.clone(),
            loop_id: spec.id.clone(),
            role,
        }
    }

    /// The extra host mounts for a container of `role`: writable only
    /// where the user said `:rw`, and only for the agent.
    pub(super) fn extra_mounts(&self, role: Role) -> Vec<Mount> {
        self.settings
            .extra_mounts
            .iter()
            .map(|m| Mount {
                host: m.path.clone(),
                container: m.path.to_string_lossy().into_owned(),
                access: if m.writable && role == Role::Agent {
                    Access::ReadWrite
                } else {
                    Access::ReadOnly
                },
            })
            .collect()
    }
}

/// One line for the report: what the boundary pinned, to which commit.
fn guarded_line(rules: &Rules, watch: &Watch) -> String {
    let globs: Vec<String> = rules.protected.iter().map(|g| format!("`{g}`")).collect();
    let files = watch.trusted_paths().count();
    format!(
        "the exam's materials ({files} file{} in base commit {}: {}control files {}) are hashed (SHA-256) against that commit before and after every exam and after every agent run; edits are quarantined and the trusted copies restored; they are unwritable in the verifier (sealed by ownership, or mounted read-only when proctor is not root)",
        if files == 1 { "" } else { "s" },
        short(&watch.base().to_string()),
        if globs.is_empty() {
            "no `protected:` globs; ".to_string()
        } else {
            format!("`protected:` {}; ", globs.join(", "))
        },
        rules
            .control
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Output with digits masked, so that timings and dates do not make two
/// identical failures look different.
fn masked(output: &str) -> String {
    let mut out = String::with_capacity(output.len());
    let mut in_number = false;
    for c in output.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
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

/// Bytes for people: `512 B`, `1.5 KiB`, `100.0 MiB`, `2.0 GiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The run's time, for events.
pub fn elapsed(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
