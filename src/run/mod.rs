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
use std::time::Instant;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cage::{Cage, DockerCage, RuntimeChoice, LABEL_REPO, LABEL_RUN};
use crate::engine::events::{Event, Outcome};
use crate::engine::{Ending, Engine, Report, Settings};
use crate::exit_codes;
use crate::git::Oid;
use crate::leftovers;
use crate::manifest::{Config, LoopSpec, Manifest, Order};
use crate::notify;
use crate::state::key::{key_dir, random_id, AnswerKey};
use crate::state::lock::{LockError, RunLock};
use crate::state::{self, Paths};

mod branch;
pub mod dry_run;
mod error;
mod preflight;
mod trust;

pub use error::RunError;

/// What to run: a directory inside the repository and a validated tree.
pub struct Request {
    pub dir: PathBuf,
    pub root: LoopSpec,
    /// How the manifest is named in events and messages (its path relative
    /// to the repository root, or a name such as `proctor once`).
    pub manifest_label: String,
    pub default_agent: Option<String>,
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
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::ManifestDiffers { branch } => write!(
                f,
                "the manifest you ran differs from the one on `{branch}` at its base commit; this run follows the branch's (commit your change on `{branch}` to use it)"
            ),
            Warning::Sweep(line) => f.write_str(line),
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

pub use preflight::refuse_untimed_watchers;

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
        });
    };
    let key = AnswerKey::load_or_create(&key_dir())?;
    let base = branch::enter(&ready)?;
    let trusted = trust::decide(&ready, base, &req, observer)?;
    let run_id = random_id(4);
    observer.begin(&run_id, &ready.paths);
    let ran = drive(&ready, &req, &trusted, &key, base, &run_id, opts, observer).await;
    let (exit, ending, report) = teardown(&ready, &run_id, ran, started, observer).await?;
    notify(&ready, &trusted, ending.as_ref(), exit, started, observer);
    Ok(RunSummary {
        skipped: false,
        exit,
        ending,
        report,
        branch: ready.branch,
        start_branch: ready.start_branch,
        run_id,
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
    req: &Request,
    trusted: &trust::Trusted,
    key: &AnswerKey,
    base: Oid,
    run_id: &str,
    opts: RunOptions,
    observer: &mut dyn Observer,
) -> Result<(Ran, Report), RunError> {
    let label = crate::cage::repo_label(&ready.root_dir);
    let reaped = ready
        .cage
        .remove_labelled(&[(LABEL_REPO, label.as_str())])
        .await?;
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
        base: base.to_string(),
        manifest: req.manifest_label.clone(),
        engine: ready.cage.describe(),
        pid: std::process::id(),
    });

    let mut settings = Settings::new(
        run_id.to_string(),
        &ready.root_dir,
        &ready.config,
        trusted.rules.clone(),
    );
    settings.default_agent = req.default_agent.clone();
    settings.host_env = host_env(&req.root);

    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    // A detached run leaves SIGHUP ignored: its terminal closing is not a
    // reason to stop.
    let mut sighup = if opts.ignore_hangup {
        None
    } else {
        Some(signal(SignalKind::hangup()).map_err(RunError::Signals)?)
    };
    let mut emit = |e: Event| observer.event(e);
    let mut engine = Engine::new(&ready.cage, &ready.git, key, settings, base, &mut emit)?;
    let ran = tokio::select! {
        r = engine.run(&trusted.root) => Some(r),
        _ = sigint.recv() => None,
        _ = sigterm.recv() => None,
        _ = hangup(&mut sighup) => None,
    };
    Ok((ran, std::mem::take(&mut engine.report)))
}

/// The host variables the tree's loops pass to their agents, by name.
fn host_env(root: &LoopSpec) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for spec in root.walk(Order::ParentsFirst) {
        for name in &spec.env {
            if let Ok(value) = std::env::var(name) {
                env.insert(name.clone(), value);
            }
        }
    }
    env
}

/// Teardown: whatever ended the run, no container of it outlives it.
/// Returns the exit code and the ending; an engine error is recorded as the
/// run's end and returned.
async fn teardown(
    ready: &preflight::Ready,
    run_id: &str,
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
            let _ = ready.cage.remove_labelled(&[(LABEL_RUN, run_id)]).await;
            return Err(e);
        }
    };
    // Containers are gone already; this removes the run's egress networks
    // and proxies, and after a signal whatever the dropped engine future
    // left behind.
    let _ = ready.cage.remove_labelled(&[(LABEL_RUN, run_id)]).await;
    let (exit, ending) = match ran {
        None => (exit_codes::INTERRUPTED, None),
        Some(Err(e)) => {
            // The exit code recorded is the one the command exits with.
            let error = RunError::from(e);
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
