//! The engine's loop decisions, tested against a real git repository in a
//! temp dir with the scripted [`FakeCage`] and a [`FakeClock`]: no
//! container engine, each test in milliseconds. What only an engine can
//! show (hardening, networks, removal, timeouts) stays in `tests/`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::clock::{Clock, FakeClock};
use super::events::Event;
use super::{history, Ending, Engine, Report, Settings};
use crate::cage::fake::{FakeCage, Scripted};
use crate::cage::{Role, HOST_IMAGE};
use crate::git::GitRepo;
use crate::manifest::{self, Resources};
use crate::protect::Rules;
use crate::state::key::AnswerKey;
use crate::state::{self, Paths};

mod agentless;
mod budgets;
mod caps;
mod gates;
mod interrupted;
mod judged;
mod parallel;
mod planner;
mod presets;
mod review;
mod unrunnable;
mod warm;
mod work;
mod workspace;

/// When the fake clock starts: a fixed instant, so no test depends on the
/// host's time.
const EPOCH: f64 = 1_800_000_000.0;

/// A repository with a committed manifest (`proctor.yaml`) and files, an
/// answer key outside it, and a fake clock.
pub(super) struct Repo {
    /// Kept for the repository's lifetime (removed on drop).
    _dir: tempfile::TempDir,
    /// The answer key's directory (an approver key goes beside it).
    keys: tempfile::TempDir,
    pub git: GitRepo,
    pub key: AnswerKey,
    pub paths: Paths,
    pub clock: Arc<FakeClock>,
}

/// What one engine run did.
pub(super) struct Run {
    pub ending: Ending,
    pub events: Vec<Event>,
    pub report: Report,
}

impl Repo {
    pub fn new(manifest: &str, files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = tempfile::tempdir().expect("temp dir for keys");
        write(dir.path(), "proctor.yaml", manifest);
        for (path, text) in files {
            write(dir.path(), path, text);
        }
        let git = GitRepo::init_with_commit(dir.path(), "start").expect("init repo");
        git.ensure_excluded(&state::EXCLUDE_PATTERNS)
            .expect("exclude state");
        let key = AnswerKey::load_or_create(keys.path()).expect("answer key");
        let paths = Paths::new(git.root());
        Repo {
            _dir: dir,
            keys,
            git,
            key,
            paths,
            clock: Arc::new(FakeClock::at(EPOCH)),
        }
    }

    pub fn root(&self) -> &Path {
        self.git.root()
    }

    /// The directory of the answer key: an approver key made here is the
    /// host's own, which its gates trust.
    pub fn key_dir(&self) -> &Path {
        self.keys.path()
    }

    /// A fake cage answering with `script`, whose outcomes move this
    /// repository's clock by their duration.
    pub fn cage(&self, script: impl IntoIterator<Item = Scripted>) -> FakeCage {
        let clock = self.clock.clone();
        FakeCage::new(script).on_elapse(move |d| clock.advance(d))
    }

    /// One `proctor run` of the engine over the manifest's tree, as
    /// `src/run/branch.rs` sets it up: the base is the branch's fork point.
    pub fn run(&self, cage: &FakeCage) -> Run {
        self.run_with(cage, |_| {})
    }

    /// [`Repo::run`] with settings changed by `tweak` (e.g. `--agent`).
    pub fn run_with(&self, cage: &FakeCage, tweak: impl FnOnce(&mut Settings)) -> Run {
        self.try_run_with(cage, tweak).expect("engine run")
    }

    /// [`Repo::run`], for a run that may end in an error.
    pub fn try_run(&self, cage: &FakeCage) -> Result<Run, super::EngineError> {
        self.try_run_with(cage, |_| {})
    }

    fn try_run_with(
        &self,
        cage: &FakeCage,
        tweak: impl FnOnce(&mut Settings),
    ) -> Result<Run, super::EngineError> {
        let manifest = self.manifest();
        let tip = self.git.head().expect("head").expect("a commit");
        let base = history::base_of(&self.git, tip).expect("base");
        let mut settings = self.settings(&manifest);
        tweak(&mut settings);
        let mut events = Vec::new();
        let mut emit = |e: Event| events.push(e);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (ending, report) = runtime.block_on(async {
            let mut engine = Engine::new(cage, &self.git, &self.key, settings, base, &mut emit)
                .expect("engine")
                .with_clock(&*self.clock);
            let ending = engine.run(&manifest.root).await;
            (ending, std::mem::take(&mut engine.report))
        });
        Ok(Run {
            ending: ending?,
            events,
            report,
        })
    }

    /// The committed `proctor.yaml`, loaded.
    pub fn manifest(&self) -> manifest::Manifest {
        manifest::load(&self.root().join("proctor.yaml")).expect("manifest")
    }

    /// The settings of a run of `manifest` here, as the tests start them.
    pub fn settings(&self, manifest: &manifest::Manifest) -> Settings {
        let rules = Rules::new(manifest.all_protected(), Some("proctor.yaml"));
        let meta = std::fs::metadata(self.root()).expect("repo metadata");
        Settings {
            run_id: state::key::random_id(4),
            repo_label: "test".into(),
            user: format!("{}:{}", meta.uid(), meta.gid()),
            default_image: HOST_IMAGE.into(),
            default_agent: None,
            rerun: "proctor run".into(),
            host_env: Default::default(),
            extra_mounts: Vec::new(),
            toolchain_env: Vec::new(),
            default_timeout: None,
            rules,
            default_resources: Resources::default(),
            slot: None,
            judge: None,
            judge_env: Vec::new(),
            review_trees: false,
            reviewer: None,
            reviewer_env: Vec::new(),
        }
    }

    /// The summaries of the commits after the base, oldest first.
    pub fn log(&self) -> Vec<String> {
        let tip = self.git.head().expect("head").expect("a commit");
        let mut log: Vec<String> = self
            .git
            .first_parent_log(tip, None)
            .expect("log")
            .into_iter()
            .map(|c| c.message.lines().next().unwrap_or("").to_string())
            .collect();
        log.reverse();
        log.remove(0);
        log
    }

    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root().join(path)).ok()
    }

    pub fn now(&self) -> f64 {
        self.clock.now()
    }
}

/// The findings of each `exam_review` event of the run, joined per event.
pub(super) fn reviews(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::ExamReview { findings, .. } => Some(findings.join("; ")),
            _ => None,
        })
        .collect()
}

pub(super) fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
}

impl Run {
    pub fn blocked(loop_id: &str) -> Ending {
        Ending::Blocked {
            loop_id: loop_id.into(),
        }
    }

    pub fn gated(loop_id: &str) -> Ending {
        Ending::Gated {
            loop_id: loop_id.into(),
        }
    }

    /// The decisions of the run, one short line each: exams with phase and
    /// exit code, agent runs, waits, cards, gates, quarantines, closes.
    pub fn trace(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::CheckResult {
                    loop_id,
                    phase,
                    exit,
                    ..
                } => Some(format!("{loop_id}: {} exit {exit}", phase_word(*phase))),
                Event::AgentEnd { loop_id, run, .. } => Some(format!("{loop_id}: agent {run}")),
                Event::Wait { loop_id, secs } => Some(format!("{loop_id}: wait {secs}s")),
                Event::Card { loop_id, kind, .. } => Some(format!("{loop_id}: {kind} card")),
                Event::Gate {
                    loop_id, status, ..
                } => Some(format!("{loop_id}: gate {status:?}").to_lowercase()),
                Event::Quarantine {
                    loop_id,
                    phase,
                    files,
                    ..
                } => Some(format!(
                    "{loop_id}: quarantine {} ({phase})",
                    files
                        .iter()
                        .map(|f| f.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Event::Close { loop_id, runs, .. } => {
                    Some(format!("{loop_id}: close ({runs} runs)"))
                }
                _ => None,
            })
            .collect()
    }

    /// The card event's reason, for the loop.
    pub fn card_reason(&self, loop_id: &str) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            Event::Card {
                loop_id: l, reason, ..
            } if l == loop_id => Some(reason.clone()),
            _ => None,
        })
    }
}

fn phase_word(phase: super::events::Phase) -> &'static str {
    use super::events::Phase;
    match phase {
        Phase::Precheck => "precheck",
        Phase::Verify => "verify",
        Phase::Confirm => "confirm",
        Phase::Baseline => "baseline",
        Phase::Land => "land",
    }
}

/// The prompts the agents read, in order.
pub(super) fn prompts(cage: &FakeCage) -> Vec<String> {
    cage.calls_of(Role::Agent)
        .into_iter()
        .map(|i| String::from_utf8_lossy(&i.stdin.unwrap_or_default()).into_owned())
        .collect()
}

/// The exam is `test -f done` and the agent creates `done`.
pub(super) fn make_done(work: &Path) {
    write(work, "done", "yes\n");
}

/// Guard against sleeping in real time: the fake clock records sleeps and
/// returns at once, so a test's wall time says nothing here; its slept
/// durations do.
pub(super) fn slept(repo: &Repo) -> Vec<Duration> {
    repo.clock.slept()
}
