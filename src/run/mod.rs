//! The run lifecycle: everything around the engine that one run of a loop
//! tree does, as named steps in order:
//!
//! preflight → lock → branch → trust → engine → teardown → notify.
//!
//! `run`, `once` and `demo` call [`execute`] and only render what it
//! reports. Like the engine, this module never prints: events, and the few
//! warnings a run has before or beside them, go to an [`Observer`] that the
//! caller renders. Each step's failure is a [`RunError`] naming what to do.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cage::{Cage, DockerCage, EngineKind, RuntimeChoice, LABEL_RUN};
use crate::engine::events::{Event, Outcome};
use crate::engine::{Ending, Engine, Report, Settings};
use crate::exit_codes;
use crate::leftovers;
use crate::manifest::{preset, Config, LoopSpec, Manifest, Order};
use crate::notify;
use crate::state::key::{key_dir, random_id, AnswerKey};
use crate::state::lock::{LockError, RunLock};
use crate::state::{self, Paths};

mod branch;
pub mod dry_run;
mod error;
pub mod image_auto;
mod preflight;
mod trust;

pub use error::RunError;

/// How `proctor once` names its manifest (it has none).
pub const ONCE_LABEL: &str = "proctor once";

/// How a `once` run resumes: its flags are not recorded.
pub const ONCE_AGAIN: &str = "run the same `proctor once` again";

/// The command that resumes a run of manifest `label` (as its `run_start`
/// names it): `proctor run`, `proctor run --file FILE`, or [`ONCE_AGAIN`].
pub fn rerun(label: &str) -> String {
    if label == ONCE_LABEL {
        ONCE_AGAIN.into()
    } else if crate::manifest::MANIFEST_NAMES.contains(&label) {
        "proctor run".into()
    } else {
        format!("proctor run --file {label}")
    }
}

/// What to run: a directory inside the repository and a validated tree.
pub struct Request {
    pub dir: PathBuf,
    pub root: LoopSpec,
    /// How the manifest is named in events and messages (its path relative
    /// to the repository root, or a name such as `proctor once`).
    pub manifest_label: String,
    pub default_agent: Option<String>,
    /// Host paths to mount beyond the config's (`once --mount`):
    /// `PATH[:rw]`.
    pub mounts: Vec<String>,
    /// `proctor once`'s loop document, recorded in `run_start` (see
    /// `Event::RunStart::once`); `None` for a manifest's run.
    pub once: Option<String>,
}

/// How [`execute`] runs, beyond the request itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// A detached run ignores SIGHUP (its terminal closing).
    pub ignore_hangup: bool,
    /// A held lock means "skip", exit 0.
    pub skip_if_running: bool,
}

/// What a run established.
pub struct RunSummary {
    /// Another run held the lock and the request said to skip.
    pub skipped: bool,
    pub exit: i32,
    pub ending: Option<Ending>,
    pub report: Report,
    pub branch: String,
    pub start_branch: Option<String>,
    pub run_id: String,
    /// The run's worktree, relative to the checkout, when the run kept it
    /// to resume (blocked, gated, interrupted); `None` once it closed.
    pub worktree: Option<String>,
    /// The run came from `proctor once` (no manifest, so no `land`).
    pub once: bool,
    /// The command that resumes it ([`rerun`]).
    pub rerun: String,
}

/// Where a run's output goes; the caller renders it.
pub trait Observer {
    /// The run has an id and writes its events to `paths.events`: every
    /// later [`Observer::event`] belongs to it.
    fn begin(&mut self, run_id: &str, paths: &Paths);
    fn event(&mut self, event: Event);
    /// Something the user should know that is not an event.
    fn warn(&mut self, warning: Warning);
}

/// A warning beside the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The manifest given differs from the one committed at the branch's
    /// base; the run follows the committed one.
    ManifestDiffers { branch: String },
    /// Leftover files of dead runs that could not be removed.
    Sweep(String),
    /// The checkout's uncommitted changes to tracked files: the run
    /// starts from the HEAD commit without them.
    Uncommitted { paths: Vec<String> },
    /// A closed run's worktree could not be removed.
    WorktreeLeft { path: String, error: String },
    /// Names under `env:` that are not set on the host: the agent and the
    /// exam run without them.
    EnvUnset(Vec<String>),
    /// A preset agent with none of its credentials set on the host (and
    /// no mount of its login folder): it cannot reach its model.
    PresetKeyless {
        preset: &'static str,
        keys: &'static [&'static str],
        login: Option<&'static str>,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::ManifestDiffers { branch } => write!(
                f,
                "the manifest you ran differs from the one on `{branch}` at its base commit; this run follows the branch's (to run yours, commit it on your branch and start afresh with `proctor reap && git branch -D {branch}`, or `proctor land` first)"
            ),
            Warning::Sweep(line) => f.write_str(line),
            Warning::Uncommitted { paths } => write!(
                f,
                "uncommitted changes in your checkout are not part of this run (it starts from your last commit): {}",
                error::first_ten(paths)
            ),
            Warning::WorktreeLeft { path, error } => write!(
                f,
                "cannot remove the closed run's worktree `{path}` ({error}); `proctor reap` removes it"
            ),
            Warning::EnvUnset(names) => {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                write!(
                    f,
                    "{} under `env:` {} not set here: the containers run without {}",
                    names.join(", "),
                    if names.len() == 1 { "is" } else { "are" },
                    if names.len() == 1 { "it" } else { "them" }
                )
            }
            Warning::PresetKeyless {
                preset,
                keys,
                login,
            } => {
                let keys: Vec<String> = keys.iter().map(|n| format!("`{n}`")).collect();
                let login = login.map_or(String::new(), |dir| {
                    format!(" and no `~/{dir}` (a login) is mounted")
                });
                write!(
                    f,
                    "agent `{preset}`: none of {} is set here{login}, so it has no credentials to reach its model and may retry until its timeout",
                    keys.join(", ")
                )
            }
        }
    }
}

/// The loop to run: the root, or the named subtree.
pub fn select_root(manifest: &Manifest, id: Option<&str>) -> Result<LoopSpec, RunError> {
    match id {
        None => Ok(manifest.root.clone()),
        Some(id) => manifest
            .find_loop(id)
            .cloned()
            .ok_or_else(|| RunError::NoSuchLoop {
                id: id.to_string(),
                manifest: manifest.path.clone(),
            }),
    }
}

/// The engine the config names (or the first that answers), set up as the
/// config says: OCI runtime and the egress proxy's network.
pub async fn connect_cage(config: &Config) -> Result<DockerCage, crate::cage::CageError> {
    let runtime = match &config.runtime {
        Some(name) => RuntimeChoice::Named(name.clone()),
        None => RuntimeChoice::Auto,
    };
    Ok(DockerCage::connect(config.engine.as_deref())
        .await?
        .with_runtime(runtime)
        .with_egress_network(config.egress_network.clone()))
}

pub use preflight::{check_mounts, refuse_unjudged, refuse_untimed_watchers};

/// Runs a loop tree to its end. Refuses before touching anything when the
/// input is bad, the tree is dirty or no engine answers.
pub async fn execute(
    req: Request,
    opts: RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let ready = preflight::check(&req).await?;
    let Some(_lock) = lock(&ready, opts)? else {
        return Ok(RunSummary {
            skipped: true,
            exit: exit_codes::CLOSED,
            ending: None,
            report: Report::default(),
            branch: ready.branch,
            start_branch: ready.start_branch,
            run_id: String::new(),
            worktree: None,
            once: req.manifest_label == ONCE_LABEL,
            rerun: rerun(&req.manifest_label),
        });
    };
    let key = AnswerKey::load_or_create(&key_dir())?;
    let entered = branch::enter(&ready)?;
    if !ready.uncommitted.is_empty() {
        observer.warn(Warning::Uncommitted {
            paths: ready.uncommitted.clone(),
        });
    }
    // Before anything appends to them: the events file in the checkout,
    // the ledger in the run's worktree.
    let healed = heal(&entered.paths)?;
    branch::take_answers(&entered.paths)?;
    let base = entered.base;
    let trusted = trust::decide(&ready, entered.ws.repo(), base, &req, observer)?;
    // `image: auto` is defined by the base commit: found now, built once
    // the run has started (its steps are events).
    let auto_image = if image_auto::wanted(&trusted.root, &ready.config) {
        Some(image_auto::source_at(entered.ws.repo(), base)?)
    } else {
        None
    };
    let run_id = random_id(4);
    observer.begin(&run_id, &entered.paths);
    for (path, was) in healed {
        observer.event(Event::Repaired { path, was });
    }
    let ran = drive(
        &ready,
        &entered,
        &req,
        &trusted,
        auto_image.as_ref(),
        &key,
        &run_id,
        opts,
        observer,
    )
    .await;
    let (exit, ending, report) =
        teardown(&ready, &run_id, &req.manifest_label, ran, started, observer).await?;
    // A closed run's worktree has nothing left to resume: it goes, and
    // `git worktree list` shows the checkout alone. A blocked, gated or
    // interrupted run keeps it for the next `proctor run`.
    let closed = matches!(ending, Some(Ending::Closed));
    let worktree = ready.paths.rel(entered.ws.root());
    let name = entered.ws.name().to_string();
    drop(entered);
    let kept = if closed {
        if let Err(e) = ready.git.remove_workspace(&name) {
            observer.warn(Warning::WorktreeLeft {
                path: worktree.clone(),
                error: e.to_string(),
            });
        }
        None
    } else {
        Some(worktree)
    };
    notify(&ready, &trusted, ending.as_ref(), exit, started, observer);
    Ok(RunSummary {
        skipped: false,
        exit,
        ending,
        report,
        branch: ready.branch,
        start_branch: ready.start_branch,
        run_id,
        worktree: kept,
        once: req.manifest_label == ONCE_LABEL,
        rerun: rerun(&req.manifest_label),
    })
}

/// Lock: one run per repository. `None` when another run holds the lock
/// and the options say to skip.
fn lock(ready: &preflight::Ready, opts: RunOptions) -> Result<Option<RunLock>, RunError> {
    // The lock and the run's other state live in `.proctor/`, which git
    // must never see as changes.
    ready.git.ensure_excluded(&state::EXCLUDE_PATTERNS)?;
    match RunLock::acquire(&ready.paths.lock) {
        Ok(lock) => Ok(Some(lock)),
        Err(LockError::Held { .. }) if opts.skip_if_running => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The engine ended (`Some`) or a signal cut it short (`None`).
type Ran = Option<Result<Ending, crate::engine::EngineError>>;

/// Engine: reaps what dead runs left, announces the run, and drives the
/// tree until it ends or a signal arrives.
#[allow(clippy::too_many_arguments)]
async fn drive(
    ready: &preflight::Ready,
    entered: &branch::Entered,
    req: &Request,
    trusted: &trust::Trusted,
    auto_image: Option<&crate::manifest::auto_image::AutoSource>,
    key: &AnswerKey,
    run_id: &str,
    opts: RunOptions,
    observer: &mut dyn Observer,
) -> Result<(Ran, Report), RunError> {
    let label = crate::cage::repo_label(&ready.root_dir);
    // Only dead runs' containers: the lock keeps a second run from getting
    // here, and even so a live run's containers are never touched.
    let reaped = ready.cage.reap_dead_runs(&label).await?;
    // Files of any dead proctor process, not only this repository's: runs
    // elsewhere share the temp directories, and only live ones are spared.
    let swept = leftovers::sweep();
    if reaped > 0 || !swept.removed.is_empty() {
        observer.event(Event::Reaped {
            containers: reaped,
            files: swept.removed.len(),
        });
    }
    if let Some(line) = swept.failure_line() {
        observer.warn(Warning::Sweep(line));
    }
    observer.event(Event::RunStart {
        root: req.root.id.clone(),
        branch: ready.branch.clone(),
        base: entered.base.to_string(),
        manifest: req.manifest_label.clone(),
        engine: ready.cage.describe(),
        pid: std::process::id(),
        once: req.once.clone(),
    });

    let mut settings = Settings::new(
        run_id.to_string(),
        &ready.root_dir,
        &ready.config,
        trusted.rules.clone(),
    );
    settings.default_agent = req.default_agent.clone();
    settings.rerun = rerun(&req.manifest_label);
    // Before any agent wakes: the image every `image: auto` loop runs in.
    let mut root = trusted.root.clone();
    if let Some(source) = auto_image {
        let mut emit = |e: Event| observer.event(e);
        let built = image_auto::prepare(
            entered.ws.repo(),
            entered.base,
            source,
            &ready.cage,
            &entered.paths.logs,
            &mut emit,
        )
        .await;
        match built {
            Ok(image) => {
                image_auto::substitute(&mut root, &image);
                if settings.default_image == crate::manifest::auto_image::AUTO {
                    settings.default_image = image;
                }
            }
            // Recorded as the run's end, like any engine error.
            Err(RunError::Cage(e)) => {
                return Ok((
                    Some(Err(crate::engine::EngineError::Cage(e))),
                    Report::default(),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    let (env, unset) = host_env(&req.root, req.default_agent.as_deref());
    if !unset.is_empty() {
        observer.warn(Warning::EnvUnset(unset));
    }
    settings.host_env = env;
    settings.extra_mounts.extend(
        req.mounts
            .iter()
            .map(|m| crate::engine::HostMount::parse(m)),
    );
    for warning in keyless_presets(
        &req.root,
        req.default_agent.as_deref(),
        &settings.extra_mounts,
        &settings.toolchain_env,
        |name| std::env::var_os(name).is_some_and(|v| !v.is_empty()),
    ) {
        observer.warn(warning);
    }

    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    // A detached run leaves SIGHUP ignored: its terminal closing is not a
    // reason to stop.
    let mut sighup = if opts.ignore_hangup {
        None
    } else {
        Some(signal(SignalKind::hangup()).map_err(RunError::Signals)?)
    };
    // The observer, what the run was doing (should the engine go away) and
    // the agent at work (for the heartbeat), shared by the engine's events
    // and the heartbeat below; one task, so never borrowed twice at once.
    let shared = std::cell::RefCell::new(Shared {
        observer,
        last_step: None,
        working: None,
    });
    let mut emit = |e: Event| {
        let mut s = shared.borrow_mut();
        if let Some(step) = step_of(&e) {
            s.last_step = Some(step);
        }
        s.working = match &e {
            Event::AgentStart {
                loop_id, run, log, ..
            } => Some(Working {
                loop_id: loop_id.clone(),
                run: *run,
                log: log.clone(),
                since: Instant::now(),
                last_line: Instant::now(),
            }),
            Event::AgentEnd { .. } | Event::RunEnd { .. } => None,
            _ => s.working.take(),
        };
        s.observer.event(e)
    };
    let mut engine = Engine::in_workspace(
        &ready.cage,
        &entered.ws,
        &ready.root_dir,
        key,
        settings,
        entered.base,
        &mut emit,
    )?;
    let ran = {
        let run = engine.run(&root);
        tokio::pin!(run);
        let mut beat = tokio::time::interval(HEARTBEAT_CHECK);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = &mut run => break Some(r),
                _ = sigint.recv() => break None,
                _ = sigterm.recv() => break None,
                _ = hangup(&mut sighup) => break None,
                _ = beat.tick() => heartbeat(&shared),
            }
        }
    };
    let report = std::mem::take(&mut engine.report);
    drop(engine);
    let last_step = shared.into_inner().last_step;
    let ran = ran.map(|r| {
        r.map_err(|e| match e {
            crate::engine::EngineError::Cage(c) if c.engine_went_away() => {
                crate::engine::EngineError::EngineGone {
                    during: last_step.unwrap_or_else(|| "the run started".to_string()),
                }
            }
            e => e,
        })
    });
    Ok((ran, report))
}

/// How long an agent may work without a line in the stream before one says
/// it still works: a silent agent (a CLI that prints only at its end, or
/// one waiting on the network) otherwise looks like a hang.
pub const HEARTBEAT: Duration = Duration::from_secs(180);
/// How often the run looks whether a heartbeat is due.
const HEARTBEAT_CHECK: Duration = Duration::from_secs(15);

/// What [`drive`]'s event handler and its heartbeat share.
struct Shared<'o> {
    observer: &'o mut dyn Observer,
    last_step: Option<String>,
    working: Option<Working>,
}

/// The agent at work: since when, and when the stream last said so.
struct Working {
    loop_id: String,
    run: u32,
    log: String,
    since: Instant,
    last_line: Instant,
}

/// An `agent_working` line when the agent at work has had none for
/// [`HEARTBEAT`].
fn heartbeat(shared: &std::cell::RefCell<Shared<'_>>) {
    let mut s = shared.borrow_mut();
    let Some(w) = s.working.as_mut() else {
        return;
    };
    if !heartbeat_due(w.last_line.elapsed()) {
        return;
    }
    w.last_line = Instant::now();
    let event = Event::AgentWorking {
        loop_id: w.loop_id.clone(),
        run: w.run,
        secs: w.since.elapsed().as_secs_f64(),
        log: w.log.clone(),
    };
    s.observer.event(event);
}

/// Whether a heartbeat is due after `quiet` without a line about the agent.
fn heartbeat_due(quiet: Duration) -> bool {
    quiet >= HEARTBEAT
}

/// What the run was doing when `event` was its last step, as the end of
/// "while ...".
fn step_of(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStart { .. } => "the run started".to_string(),
        Event::CheckStart { loop_id, .. } => format!("the exam of loop `{loop_id}` ran"),
        Event::AgentStart { loop_id, run, .. } => {
            format!("the agent of loop `{loop_id}` ran (run {run})")
        }
        Event::AgentEnd { loop_id, run, .. } => {
            format!("run {run} of loop `{loop_id}` was being committed")
        }
        Event::Commit { loop_id, run, .. } => {
            format!("run {run} of loop `{loop_id}` was about to be checked")
        }
        Event::CheckResult { loop_id, .. } => format!("loop `{loop_id}` went on after its exam"),
        Event::Wait { loop_id, .. } => format!("loop `{loop_id}` waited to check again"),
        Event::Close { loop_id, .. } => format!("loop `{loop_id}` had just closed"),
        _ => return None,
    })
}

/// The error a run ends with when the engine went away: what it was doing,
/// how to start this kind of engine, and the command that resumes.
fn engine_gone(during: String, kind: EngineKind, manifest_label: &str) -> RunError {
    let how = match kind {
        EngineKind::Docker => "`sudo systemctl start docker`, or `dockerd &`",
        EngineKind::Podman => "`podman system service --time=0 &`",
    };
    let again = if manifest_label == ONCE_LABEL {
        "run the same `proctor once` again".to_string()
    } else {
        "run `proctor run`".to_string()
    };
    RunError::EngineGone { during, how, again }
}

/// Sets aside what a crash or a full disk cut short in the events file and
/// the ledger, before anything appends to them: the next event would glue
/// onto the fragment, and the ledger's garbage would be committed with the
/// next attempt. Returns `(path, was)` for `repaired` events.
fn heal(paths: &Paths) -> Result<Vec<(String, String)>, RunError> {
    let mut healed = Vec::new();
    for (path, whole_lines) in [(&paths.events, false), (&paths.ledger, true)] {
        let healed_one = state::jsonl::heal(path, &paths.logs, whole_lines).map_err(|source| {
            RunError::Heal {
                path: paths.rel(path),
                source,
            }
        })?;
        if let Some(h) = healed_one {
            healed.push((paths.rel(path), h.was(&paths.rel(&h.aside))));
        }
    }
    Ok(healed)
}

/// The host variables the tree's loops pass to their containers, by name
/// (those under `env:`, for the agent and the exam, and those a preset
/// agent reads), and the names under `env:` that are not set here (each
/// once, in order; a preset's are optional).
pub fn host_env(
    root: &LoopSpec,
    default_agent: Option<&str>,
) -> (HashMap<String, String>, Vec<String>) {
    let mut env = HashMap::new();
    let mut unset = Vec::new();
    for spec in root.walk(Order::ParentsFirst) {
        let preset = spec
            .agent
            .as_deref()
            .or(default_agent)
            .and_then(preset::chosen)
            .map(|c| c.preset.env)
            .unwrap_or_default();
        for name in preset.iter().copied() {
            if let Ok(value) = std::env::var(name) {
                env.insert(name.to_owned(), value);
            }
        }
        for name in spec.env.iter().chain(&spec.verifier_env) {
            match std::env::var(name) {
                Ok(value) => {
                    env.insert(name.clone(), value);
                }
                Err(_) if !unset.contains(name) => unset.push(name.clone()),
                Err(_) => {}
            }
        }
    }
    (env, unset)
}

/// A warning per preset agent of the tree that has none of its
/// credentials: not set on the host (`is_set`), not given a value by the
/// config's `env:` (`values`), and its login folder not among `mounts`.
pub fn keyless_presets(
    root: &LoopSpec,
    default_agent: Option<&str>,
    mounts: &[crate::engine::HostMount],
    values: &[(String, String)],
    is_set: impl Fn(&str) -> bool,
) -> Vec<Warning> {
    let mut warned: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for spec in root.walk(Order::ParentsFirst) {
        let Some(chosen) = spec
            .agent
            .as_deref()
            .or(default_agent)
            .and_then(preset::chosen)
        else {
            continue;
        };
        let p = chosen.preset;
        let has_key = p
            .keys
            .iter()
            .any(|k| is_set(k) || values.iter().any(|(name, _)| name == k));
        let logged_in = p
            .login
            .is_some_and(|dir| mounts.iter().any(|m| m.path.ends_with(dir)));
        if has_key || logged_in || warned.contains(&p.name) {
            continue;
        }
        warned.push(p.name);
        out.push(Warning::PresetKeyless {
            preset: p.name,
            keys: p.keys,
            login: p.login,
        });
    }
    out
}

/// The run's own containers and what dead runs of the repository left.
async fn remove_containers(ready: &preflight::Ready, run_id: &str) {
    // The run's containers are gone already; this removes its egress
    // networks and proxies, and after a signal whatever the dropped engine
    // future left behind.
    let _ = ready.cage.remove_labelled(&[(LABEL_RUN, run_id)]).await;
    // The start-up reap sees only the containers that exist at that
    // moment: a run killed while the engine still worked on its create
    // calls gets those containers after the reap (a suspect for the two
    // left behind a completed resume in the 7d0bbc1 fault run). Reaping
    // again at the end removes them within one run, whatever their state.
    let _ = ready
        .cage
        .reap_dead_runs(&crate::cage::repo_label(&ready.root_dir))
        .await;
}

/// Teardown: whatever ended the run, no container of it outlives it.
/// Returns the exit code and the ending; an engine error is recorded as the
/// run's end and returned.
async fn teardown(
    ready: &preflight::Ready,
    run_id: &str,
    manifest_label: &str,
    ran: Result<(Ran, Report), RunError>,
    started: Instant,
    observer: &mut dyn Observer,
) -> Result<(i32, Option<Ending>, Report), RunError> {
    // Whatever ended the run, no container started ahead of need outlives it.
    ready.cage.settle().await;
    let secs = started.elapsed().as_secs_f64();
    let (ran, report) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            remove_containers(ready, run_id).await;
            return Err(e);
        }
    };
    remove_containers(ready, run_id).await;
    let (exit, ending) = match ran {
        None => (exit_codes::INTERRUPTED, None),
        Some(Err(e)) => {
            // The exit code recorded is the one the command exits with.
            let error = match e {
                crate::engine::EngineError::EngineGone { during } => {
                    engine_gone(during, ready.cage.kind(), manifest_label)
                }
                e => RunError::from(e),
            };
            observer.event(Event::RunEnd {
                outcome: Outcome::Error,
                exit: exit_codes::of(&error),
                secs,
            });
            return Err(error);
        }
        Some(Ok(ending)) => {
            let exit = match &ending {
                Ending::Closed => exit_codes::CLOSED,
                Ending::Blocked { .. } => exit_codes::BLOCKED,
                Ending::Gated { .. } => exit_codes::GATED,
            };
            (exit, Some(ending))
        }
    };
    Ok((exit, ending, report))
}

/// Notify: the trusted notifier for a halted loop, then the run's end.
fn notify(
    ready: &preflight::Ready,
    trusted: &trust::Trusted,
    ending: Option<&Ending>,
    exit: i32,
    started: Instant,
    observer: &mut dyn Observer,
) {
    let outcome = match ending {
        None => Outcome::Interrupted,
        Some(Ending::Closed) => Outcome::Closed,
        Some(Ending::Blocked { .. }) => Outcome::Blocked,
        Some(Ending::Gated { .. }) => Outcome::Gated,
    };
    if let Some(Ending::Blocked { loop_id } | Ending::Gated { loop_id }) = ending {
        let reason = if exit == exit_codes::GATED {
            "gated"
        } else {
            "blocked"
        };
        let mut emit = |e: Event| observer.event(e);
        notify::on_halt(&mut emit, &trusted.notifier, &ready.paths, loop_id, reason);
    }
    observer.event(Event::RunEnd {
        outcome,
        exit,
        secs: started.elapsed().as_secs_f64(),
    });
}

/// Waits for SIGHUP, or forever when it is ignored.
async fn hangup(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> LoopSpec {
        crate::manifest::parse(yaml, std::path::Path::new("proctor.yaml"))
            .expect("manifest")
            .root
    }

    /// `agent: codex` with no key on the host retried "waiting for network"
    /// for 10 minutes with no word at the start: now one warning names the
    /// variables, unless a key, a config value or a mounted login is there.
    #[test]
    fn a_preset_with_no_credentials_is_warned_about_once() {
        let root = tree("loop: a\nagent: codex\ndone_when: 'exit 1'\nloops:\n  - loop: b\n    done_when: 'exit 1'\n  - loop: c\n    agent: claude\n    done_when: 'exit 1'\n");
        let none = |_: &str| false;
        let warnings = keyless_presets(&root, None, &[], &[], none);
        let text: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert_eq!(
            text[0],
            "agent `codex`: none of `OPENAI_API_KEY`, `CODEX_API_KEY` is set here and no `~/.codex` (a login) is mounted, so it has no credentials to reach its model and may retry until its timeout"
        );
        assert!(
            text[1].starts_with("agent `claude`: none of `ANTHROPIC_API_KEY`"),
            "{text:?}"
        );
        // A key on the host, a value from the config, a mounted login.
        let codex_only = tree("loop: a\nagent: codex\ndone_when: 'exit 1'\n");
        assert!(keyless_presets(&codex_only, None, &[], &[], |n| n == "CODEX_API_KEY").is_empty());
        let valued = [("OPENAI_API_KEY".to_string(), "sk".to_string())];
        assert!(keyless_presets(&codex_only, None, &[], &valued, none).is_empty());
        let login = [crate::engine::HostMount::parse("/home/u/.codex:rw")];
        assert!(keyless_presets(&codex_only, None, &login, &[], none).is_empty());
        // A command that is not a preset, and `--agent codex` for a tree
        // that names none.
        let script = tree("loop: a\nagent: sh fix.sh\ndone_when: 'exit 1'\n");
        assert!(keyless_presets(&script, None, &[], &[], none).is_empty());
        let bare = tree("loop: a\ndone_when: 'exit 1'\n");
        assert_eq!(
            keyless_presets(&bare, Some("codex"), &[], &[], none).len(),
            1
        );
    }

    #[test]
    fn engine_loss_mid_agent_says_what_happened_and_how_to_resume() {
        // Issue 13: the run ended with the engine library's text.
        let step = step_of(&Event::AgentStart {
            loop_id: "fix".into(),
            run: 3,
            of: Some(10),
            log: ".proctor/logs/fix.run3.log".into(),
            image: "host".into(),
        })
        .unwrap();
        let error = engine_gone(step, EngineKind::Docker, "proctor.yaml");
        assert_eq!(
            error.to_string(),
            "the container engine went away while the agent of loop `fix` ran (run 3); start it (`sudo systemctl start docker`, or `dockerd &`) and run `proctor run` to resume"
        );
        use crate::exit_codes::DomainError;
        assert!(error.hint().is_some());
        assert!(
            error.is_users_to_fix(),
            "exit 1: the user starts the engine"
        );
        let error = engine_gone("the run started".into(), EngineKind::Podman, "proctor once");
        let line = error.to_string();
        assert!(
            line.contains("`podman system service --time=0 &`"),
            "{line}"
        );
        assert!(line.contains("run the same `proctor once` again"), "{line}");
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::{heartbeat_due, HEARTBEAT};
    use std::time::Duration;

    #[test]
    fn a_heartbeat_is_due_after_a_few_quiet_minutes_only() {
        assert!(!heartbeat_due(Duration::ZERO));
        assert!(!heartbeat_due(HEARTBEAT - Duration::from_secs(1)));
        assert!(heartbeat_due(HEARTBEAT));
        assert!(HEARTBEAT <= Duration::from_secs(300));
    }
}
