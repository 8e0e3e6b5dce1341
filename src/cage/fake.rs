//! A scripted double of the [`Cage`], for tests of the engine's decisions
//! without a container engine (tests only).
//!
//! It answers each invocation with the next outcome of its script, after
//! letting that outcome act on the host directory mounted at the
//! invocation's `/work` the way a container would (an agent edits the
//! live tree, an exam reads the exported one), and records every
//! invocation it receives. It enforces nothing: read-only mounts, networks,
//! limits and timeouts are the real cage's, tested on live engines.
//! It does model which invocations a container prepared ahead of need
//! would serve (the real cage's rule: an equal container, late values,
//! stdin, log and deadline aside), so tests can see which steps would
//! start cold.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{Cage, CageError, Invocation, Limits, Outcome, Role};

/// What one scripted invocation does and answers.
pub struct Scripted {
    role: Role,
    /// Acts on the host directory behind `/work` and returns the exit code.
    act: Box<dyn FnOnce(&Path) -> i64 + Send>,
    output: String,
    timed_out: bool,
    duration: Duration,
    denied: Vec<String>,
    /// The engine goes away with this container: `answers` is false after.
    stops_engine: bool,
}

impl Scripted {
    /// An agent run that exits `exit` and edits nothing.
    pub fn agent(exit: i64) -> Scripted {
        Scripted::new(Role::Agent, Box::new(move |_| exit))
    }

    /// An agent run that calls `edit` on the live tree (`/work`), then
    /// exits 0.
    pub fn agent_edits(edit: impl FnOnce(&Path) + Send + 'static) -> Scripted {
        Scripted::new(
            Role::Agent,
            Box::new(move |work| {
                edit(work);
                0
            }),
        )
    }

    /// An exam that exits `exit` whatever the tree holds.
    pub fn exam(exit: i64) -> Scripted {
        Scripted::new(Role::Verifier, Box::new(move |_| exit))
    }

    /// A judge that exits `exit` (its answer is its [`Scripted::output`]).
    pub fn judge(exit: i64) -> Scripted {
        Scripted::new(Role::Judge, Box::new(move |_| exit))
    }

    /// The exam's reviewer, exiting `exit` (its findings are its
    /// [`Scripted::output`]).
    pub fn reviewer(exit: i64) -> Scripted {
        Scripted::new(Role::Reviewer, Box::new(move |_| exit))
    }

    /// An exam whose exit code `judge` computes from the exported tree.
    pub fn exam_of(judge: impl FnOnce(&Path) -> i64 + Send + 'static) -> Scripted {
        Scripted::new(Role::Verifier, Box::new(judge))
    }

    /// An exam that passes when the committed tree holds `path`, else
    /// fails (exit 1) saying so.
    pub fn exam_needs(path: &str) -> Scripted {
        let path = path.to_string();
        let missing = format!("missing {path}");
        Scripted::exam_of(move |tree| i64::from(!tree.join(&path).exists())).output(&missing)
    }

    fn new(role: Role, act: Box<dyn FnOnce(&Path) -> i64 + Send>) -> Scripted {
        Scripted {
            role,
            act,
            output: String::new(),
            timed_out: false,
            duration: Duration::from_millis(10),
            denied: Vec::new(),
            stops_engine: false,
        }
    }

    /// What the command prints (also written to the invocation's log).
    pub fn output(mut self, text: &str) -> Scripted {
        self.output = text.to_string();
        self
    }

    /// Killed at its timeout: exit `-1`.
    pub fn timed_out(mut self) -> Scripted {
        self.timed_out = true;
        self.act = Box::new(|_| -1);
        self
    }

    /// How long it takes (advances the cage's clock hook by as much).
    pub fn taking(mut self, duration: Duration) -> Scripted {
        self.duration = duration;
        self
    }

    /// The engine stops while this runs (taking the container along, as
    /// `dockerd` does on shutdown): exit 143, and the engine no longer
    /// answers until [`FakeCage::restart_engine`].
    pub fn engine_stops(mut self) -> Scripted {
        self.stops_engine = true;
        self.act = Box::new(|_| 143);
        self
    }

    /// Targets the egress proxy refused while it ran.
    pub fn denied(mut self, targets: &[&str]) -> Scripted {
        self.denied = targets.iter().map(|t| t.to_string()).collect();
        self
    }
}

type Hook = Box<dyn Fn(Duration) + Send + Sync>;

/// The scripted cage. Running out of script, or a script expecting another
/// role, fails the test with the invocation that did not fit.
#[derive(Default)]
pub struct FakeCage {
    script: Mutex<VecDeque<Scripted>>,
    calls: Mutex<Vec<Invocation>>,
    limits: Mutex<Vec<Limits>>,
    prepared: Mutex<Vec<Invocation>>,
    /// Prepared and not used yet, as the real cage's pool holds them.
    pool: Mutex<Vec<(Invocation, Limits)>>,
    /// For each call, whether a prepared container would have served it.
    warm: Mutex<Vec<bool>>,
    settled: Mutex<u32>,
    removed: Mutex<Vec<Vec<(String, String)>>>,
    elapse: Option<Hook>,
    /// Whether a scripted step stopped the engine.
    gone: Mutex<bool>,
}

impl FakeCage {
    /// A cage that answers with `script`, in order.
    pub fn new(script: impl IntoIterator<Item = Scripted>) -> FakeCage {
        FakeCage {
            script: Mutex::new(script.into_iter().collect()),
            ..FakeCage::default()
        }
    }

    /// Calls `hook` with each outcome's duration as it runs (to move a
    /// fake clock as the container would have taken time).
    pub fn on_elapse(mut self, hook: impl Fn(Duration) + Send + Sync + 'static) -> FakeCage {
        self.elapse = Some(Box::new(hook));
        self
    }

    /// Appends outcomes to the script.
    pub fn then(&self, more: impl IntoIterator<Item = Scripted>) {
        lock(&self.script).extend(more);
    }

    /// Every invocation run so far, in order.
    pub fn calls(&self) -> Vec<Invocation> {
        lock(&self.calls).clone()
    }

    /// The invocations of `role` run so far, in order.
    pub fn calls_of(&self, role: Role) -> Vec<Invocation> {
        self.calls()
            .into_iter()
            .filter(|i| i.labels.role == role)
            .collect()
    }

    /// The limits each run got, in order.
    pub fn limits(&self) -> Vec<Limits> {
        lock(&self.limits).clone()
    }

    /// Outcomes scripted but not used.
    pub fn left(&self) -> usize {
        lock(&self.script).len()
    }

    /// Invocations prepared ahead of need.
    pub fn prepared(&self) -> Vec<Invocation> {
        lock(&self.prepared).clone()
    }

    /// For each invocation run so far, in order, whether a container
    /// prepared ahead of need served it (`false`: it started cold).
    pub fn started_warm(&self) -> Vec<bool> {
        lock(&self.warm).clone()
    }

    /// How many times the engine settled the cage.
    pub fn settled(&self) -> u32 {
        *lock(&self.settled)
    }

    /// The engine answers again after [`Scripted::engine_stops`].
    pub fn restart_engine(&self) {
        *lock(&self.gone) = false;
    }

    /// The label sets `remove_labelled` was asked for.
    pub fn removed(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.removed).clone()
    }
}

/// The host directory an invocation sees as `/work`.
pub fn work_dir(inv: &Invocation) -> Option<PathBuf> {
    inv.mounts
        .iter()
        .find(|m| m.container == "/work")
        .map(|m| m.host.clone())
}

/// Whether a container prepared for `a` would serve `b`: everything that
/// shapes the container is equal; the late environment (`PROCTOR_COMMIT`),
/// the stdin, the log and the deadline travel at the start and may differ.
pub fn same_container(a: &Invocation, b: &Invocation) -> bool {
    let early = |inv: &Invocation| -> Vec<(String, String)> {
        inv.env
            .iter()
            .filter(|(name, _)| !super::warm::LATE_ENV.contains(&name.as_str()))
            .cloned()
            .collect()
    };
    let late = |inv: &Invocation| -> Vec<String> {
        inv.env
            .iter()
            .filter(|(name, _)| super::warm::LATE_ENV.contains(&name.as_str()))
            .map(|(name, _)| name.clone())
            .collect()
    };
    a.image == b.image
        && a.command == b.command
        && a.workdir == b.workdir
        && a.mounts == b.mounts
        && early(a) == early(b)
        && late(a) == late(b)
        && a.network == b.network
        && a.user == b.user
        && a.labels == b.labels
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cage for FakeCage {
    async fn run(&self, inv: Invocation) -> Result<Outcome, CageError> {
        self.run_with_limits(inv, &Limits::default()).await
    }

    async fn run_with_limits(
        &self,
        inv: Invocation,
        limits: &Limits,
    ) -> Result<Outcome, CageError> {
        let n = {
            let mut calls = lock(&self.calls);
            calls.push(inv.clone());
            calls.len()
        };
        lock(&self.limits).push(limits.clone());
        let warm = {
            let mut pool = lock(&self.pool);
            let at = pool
                .iter()
                .position(|(p, l)| l == limits && same_container(p, &inv));
            at.map(|at| pool.swap_remove(at)).is_some()
        };
        lock(&self.warm).push(warm);
        let next = lock(&self.script).pop_front();
        let Some(step) = next else {
            panic!(
                "fake cage: nothing scripted for invocation {n} ({} `{}`)",
                inv.labels.role.as_str(),
                inv.command
            );
        };
        assert_eq!(
            step.role,
            inv.labels.role,
            "fake cage: invocation {n} (`{}`) is not the {} the script expected",
            inv.command,
            step.role.as_str()
        );
        let work = work_dir(&inv).unwrap_or_else(|| PathBuf::from("/nonexistent"));
        let exit = (step.act)(&work);
        if step.stops_engine {
            *lock(&self.gone) = true;
        }
        if let Some(dir) = inv.log.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CageError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // As the real cage writes a log: never through a planted link.
        let dir = inv.log.parent().unwrap_or(Path::new("."));
        let name = inv
            .log
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("fake.log");
        crate::state::create_in(dir, name)
            .and_then(|(mut file, _)| std::io::Write::write_all(&mut file, step.output.as_bytes()))
            .map_err(|source| CageError::Io {
                path: inv.log.clone(),
                source,
            })?;
        // A step that takes longer than the invocation's timeout is cut
        // there, as the real cage kills it.
        let (exit, timed_out, duration) = if step.duration > inv.timeout {
            (-1, true, inv.timeout)
        } else {
            (exit, step.timed_out, step.duration)
        };
        if let Some(elapse) = &self.elapse {
            elapse(duration);
        }
        Ok(Outcome {
            exit_code: exit,
            timed_out,
            duration,
            output_bytes: step.output.len() as u64,
            output_head: step.output,
            output_tail: String::new(),
            container_id: format!("fake{n:08}"),
            image_id: "sha256:fakeimage".into(),
            network_denied: step.denied,
        })
    }

    async fn remove_labelled(&self, labels: &[(&str, &str)]) -> Result<usize, CageError> {
        lock(&self.removed).push(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Ok(0)
    }

    async fn ensure_image(&self, _image: &str) -> Result<String, CageError> {
        Ok("sha256:fakeimage".into())
    }

    fn prepare(&self, inv: &Invocation, limits: &Limits) {
        lock(&self.prepared).push(inv.clone());
        let mut pool = lock(&self.pool);
        if !pool
            .iter()
            .any(|(p, l)| l == limits && same_container(p, inv))
        {
            pool.push((inv.clone(), limits.clone()));
        }
    }

    async fn settle(&self) {
        *lock(&self.settled) += 1;
        lock(&self.pool).clear();
    }

    async fn answers(&self) -> bool {
        !*lock(&self.gone)
    }

    fn describe(&self) -> String {
        "fake cage".into()
    }
}
