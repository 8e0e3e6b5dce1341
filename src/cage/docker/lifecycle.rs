//! A container's life: create it (trying the next runtime while the
//! runtime is still being probed), attach before start, feed its stdin,
//! copy its output, wait for the exit or kill it at the deadline, and
//! remove it, also when the caller drops the future ([`RemovalGuard`]);
//! and finding proctor's containers by label.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::runtime::PODMAN_INIT_FALLBACKS;
use super::{bounded, is_missing_image, lock, DockerCage, EngineKind, EngineLink, API_TIMEOUT};
use crate::cage::host_image::unique_suffix;
use crate::cage::output::LogSink;
use crate::cage::spec::ContainerSpec;
use crate::cage::transfer::{self, TransferPlan};
use crate::cage::{libpod, overlay, seccomp, CageError, LABEL_REPO, LABEL_ROLE, LABEL_RUN};
use crate::leftovers::ScratchDir;

/// After a kill, how long the output stream may take to close.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// After the command exits, how long the rest of its output may take to
/// arrive. Podman's streams have been seen not to close at all, so its
/// grace is short; Docker's close, but on a loaded machine the engine's
/// copy of the stream has lagged the exit by more than 3 s (a CI run lost
/// a short command's whole output), so its grace is long: it costs time
/// only when the stream is late.
fn drain_grace(kind: EngineKind) -> Duration {
    match kind {
        EngineKind::Docker => Duration::from_secs(20),
        EngineKind::Podman => Duration::from_secs(3),
    }
}

/// One of proctor's containers, as [`DockerCage::list_labelled`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledContainer {
    pub id: String,
    /// Its role label: `agent`, `verifier`, or a network holder's or
    /// egress proxy's role (see `egress.rs`).
    pub role: String,
    /// Its run label.
    pub run: String,
    /// Whether the proctor process that created it may be alive
    /// ([`crate::cage::creator_alive`]).
    pub creator_alive: bool,
}

impl DockerCage {
    /// Proctor's containers (running or not) whose labels match all of
    /// `labels`.
    pub async fn list_labelled(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<LabelledContainer>, CageError> {
        // Always narrowed to proctor's containers: an empty filter must not
        // mean "every container on the engine".
        let mut filters: Vec<String> = vec![LABEL_REPO.to_string()];
        filters.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label".to_string(), filters)]))
            .build();
        // Podman reports a container between its exit and its cleanup as
        // `stopped`, a state bollard cannot parse: the listing fails for
        // that moment (more often now that containers stop at their own
        // deadline with nobody waiting on them), so ask again, briefly.
        let mut parse_failures = 0;
        let found = loop {
            let listed = bounded(
                "list containers",
                API_TIMEOUT,
                self.docker.list_containers(Some(options.clone())),
            )
            .await;
            match listed {
                Err(CageError::Engine {
                    source: BollardError::JsonDataError { .. },
                    ..
                }) if parse_failures < 20 => {
                    parse_failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other?,
            }
        };
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
                Some(LabelledContainer {
                    id: c.id?,
                    role: label(LABEL_ROLE),
                    run: label(LABEL_RUN),
                    creator_alive: crate::cage::creator_alive(&labels),
                })
            })
            .collect())
    }

    /// Removes what dead runs left of repository `repo`: the containers
    /// (and egress networks) of every run whose proctor process is gone.
    /// A live run's containers stay, whoever asks: a second run starting,
    /// `stop`, `reap`. Returns how many containers were removed.
    pub async fn reap_dead_runs(&self, repo: &str) -> Result<usize, CageError> {
        use crate::cage::Cage;
        let found = self.list_labelled(&[(LABEL_REPO, repo)]).await?;
        let any_alive = found.iter().any(|c| c.creator_alive);
        let dead_runs: std::collections::BTreeSet<&str> = found
            .iter()
            .filter(|c| !c.creator_alive)
            .map(|c| c.run.as_str())
            .collect();
        let mut removed = 0;
        for run in dead_runs {
            if run.is_empty() {
                continue;
            }
            removed += self
                .remove_labelled(&[(LABEL_REPO, repo), (LABEL_RUN, run)])
                .await?;
        }
        for c in found
            .iter()
            .filter(|c| !c.creator_alive && c.run.is_empty())
        {
            removed += usize::from(remove_container(&self.docker, &c.id, false).await);
        }
        if !any_alive {
            // Networks whose run left no container behind.
            self.remove_networks(&[(LABEL_REPO, repo)]).await?;
        }
        Ok(removed)
    }

    /// Creates, attaches to and starts a container, trying the next runtime
    /// while the runtime is still being probed.
    pub(super) async fn launch(
        &self,
        spec: &ContainerSpec,
        transfer: Option<&TransferPlan>,
    ) -> Result<Launched, CageError> {
        self.refuse_ignored_runtime()?;
        let (plan, probing) = self.runtime_plan();
        let mut last_error = None;
        for runtime in plan {
            let mut spec = spec.clone();
            spec.name = format!("proctor-{}-{}", spec.role, unique_suffix());
            // Armed before the create call: if this future is dropped while
            // the create is in flight, the container is still removed.
            let mut guard = RemovalGuard::new(self.docker.clone(), spec.name.clone());
            if let Err(error) = guard.make_layers(&mut spec) {
                guard.remove_now().await;
                return Err(error);
            }
            match self
                .create_attach_start(&spec, runtime.as_deref(), transfer)
                .await
            {
                Ok((id, attach)) => {
                    if probing {
                        *lock(&self.settled_runtime) = Some(runtime);
                    }
                    return Ok(Launched { id, guard, attach });
                }
                Err(error) => {
                    guard.remove_now().await;
                    let weakened = matches!(error, CageError::Weakened { .. });
                    if !probing || weakened || is_missing_image(&error) {
                        return Err(self.explain_runtime_failure(error));
                    }
                    tracing::debug!(
                        runtime = runtime.as_deref().unwrap_or("(engine default)"),
                        %error,
                        "runtime cannot start a container here; trying the next"
                    );
                    last_error = Some(error);
                }
            }
        }
        Err(
            self.explain_runtime_failure(last_error.unwrap_or_else(|| CageError::Unsupported {
                what: "an engine without any OCI runtime".into(),
            })),
        )
    }

    async fn create_attach_start(
        &self,
        spec: &ContainerSpec,
        runtime: Option<&str>,
        plan: Option<&TransferPlan>,
    ) -> Result<(String, AttachStreams), CageError> {
        let engine = self.link();
        let id = match create_container(&engine, spec, runtime).await {
            // A remote Podman whose configured init is missing: try the
            // usual fallbacks on its host, once, and keep the one that works.
            Err(error)
                if self.address.is_remote()
                    && error
                        .to_string()
                        .contains("container-init binary not found") =>
            {
                let mut last = error;
                let mut created = None;
                for path in PODMAN_INIT_FALLBACKS {
                    let mut spec = spec.clone();
                    spec.init_path = Some(PathBuf::from(path));
                    match create_container(&engine, &spec, runtime).await {
                        Ok(id) => {
                            *lock(&self.remote_init) = Some(PathBuf::from(path));
                            created = Some(id);
                            break;
                        }
                        Err(error) => last = error,
                    }
                }
                created.ok_or(last)?
            }
            other => other?,
        };
        if let Some(plan) = plan {
            let moved = transfer::upload(&self.docker, &id, plan).await?;
            tracing::debug!(container = %id, entries = moved.entries, bytes = moved.bytes, "tree uploaded");
        }
        attach_start(&engine, id, spec).await
    }

    /// Feeds stdin, streams output and waits for the exit, all at once (a
    /// command like `cat` stops reading its input while its output is not
    /// read). Returns the exit code and whether the timeout killed it.
    pub(super) async fn supervise(
        &self,
        id: &str,
        attach: AttachStreams,
        stdin: Option<&[u8]>,
        sink: &mut LogSink,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(i64, bool), CageError> {
        let (exited_tx, exited_rx) = watch::channel(false);
        let (eof_tx, eof_rx) = watch::channel(false);
        let feed = feed_stdin(attach.input, stdin, deadline, exited_rx.clone());
        let hard_deadline = deadline.checked_add(KILL_GRACE).unwrap_or(deadline);
        let pump = async {
            let pumped = pump_output(
                attach.output,
                sink,
                hard_deadline,
                drain_grace(self.kind),
                exited_rx,
            )
            .await;
            // Ignored error: the wait may already be done.
            let _ = eof_tx.send(true);
            pumped
        };
        let wait = async {
            let status = self.wait_or_kill(id, deadline, timeout, eof_rx).await;
            // Ignored error: the pump and feed may already be done.
            let _ = exited_tx.send(true);
            status
        };
        let ((), pumped, status) = tokio::join!(feed, pump, wait);
        let status = status?;
        pumped?;
        Ok(status)
    }

    /// Waits for the exit code; at the deadline, kills the container.
    /// `output_ended` turns true when the attach stream has closed.
    async fn wait_or_kill(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
        timeout: Duration,
        output_ended: watch::Receiver<bool>,
    ) -> Result<(i64, bool), CageError> {
        let exit = async {
            match self.kind {
                EngineKind::Docker => self.wait_container(id, timeout).await,
                EngineKind::Podman => {
                    tokio::select! {
                        code = libpod::wait_container(
                            &self.libpod,
                            &self.libpod_version,
                            id,
                            timeout.saturating_add(API_TIMEOUT),
                        ) => code,
                        code = self.podman_early_exit(id, output_ended) => Ok(code),
                    }
                }
            }
        };
        match tokio::time::timeout_at(deadline, exit).await {
            Ok(code) => Ok((code?, false)),
            Err(_elapsed) => {
                let options = KillContainerOptionsBuilder::default()
                    .signal("KILL")
                    .build();
                // It may have exited in the meantime; removal follows anyway.
                let _ = bounded(
                    "kill container",
                    API_TIMEOUT,
                    self.docker.kill_container(id, Some(options)),
                )
                .await;
                Ok((-1, true))
            }
        }
    }

    /// Docker's wait. (Podman's compatible wait spins; see
    /// `libpod::wait_container`.)
    async fn wait_container(&self, id: &str, timeout: Duration) -> Result<i64, CageError> {
        // bollard's request timeout covers the whole wait when the engine
        // sends its reply headers only at the exit, so this call gets a
        // client whose timeout outlasts the invocation's own.
        let waiter = self
            .docker
            .clone()
            .with_timeout(timeout.saturating_add(API_TIMEOUT));
        let mut wait = waiter.wait_container(id, None::<WaitContainerOptions>);
        match wait.next().await {
            // A wait that failed (e.g. the container was removed
            // meanwhile) can come as status 0 with an error message.
            Some(Ok(reply)) => match reply.error.and_then(|e| e.message) {
                Some(message) if !message.is_empty() => Err(CageError::EngineReply {
                    op: "wait for container",
                    status: 0,
                    message,
                }),
                _ => Ok(reply.status_code),
            },
            // bollard turns a non-zero exit into an error carrying the code.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(source)) => Err(CageError::Engine {
                op: "wait for container",
                source,
            }),
            None => Err(CageError::EngineReply {
                op: "wait for container",
                status: 0,
                message: "the engine closed the wait without an exit code".into(),
            }),
        }
    }

    /// Podman's exit code as soon as the command has ended, read from the
    /// container's `stopped` state once its output stream has closed (see
    /// `libpod::exit_code_if_ended`). Never resolves if that does not work
    /// out; the regular wait then decides.
    async fn podman_early_exit(&self, id: &str, mut output_ended: watch::Receiver<bool>) -> i64 {
        if output_ended.wait_for(|ended| *ended).await.is_err() {
            return std::future::pending().await;
        }
        // Polling starts only when the output has closed, which normally
        // means the command is gone; the backoff bounds the cost when a
        // command closed its output but runs on.
        let mut pause = Duration::from_millis(5);
        loop {
            match libpod::exit_code_if_ended(&self.libpod, &self.libpod_version, id, API_TIMEOUT)
                .await
            {
                Ok(Some(code)) => return code,
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot read the exit code early");
                    return std::future::pending().await;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }
}

/// Creates a container; refuses it (the caller's removal guard, armed by
/// name, removes it) when the engine says it dropped a resource limit.
pub(super) async fn create_container(
    engine: &EngineLink,
    spec: &ContainerSpec,
    runtime: Option<&str>,
) -> Result<String, CageError> {
    let (id, warnings) = match engine.kind {
        EngineKind::Docker => {
            let options = CreateContainerOptionsBuilder::default()
                .name(&spec.name)
                .build();
            let created = bounded(
                "create container",
                API_TIMEOUT,
                engine
                    .docker
                    .create_container(Some(options), spec.docker_body(runtime)),
            )
            .await?;
            (created.id, created.warnings)
        }
        EngineKind::Podman => {
            libpod::create_container(
                &engine.libpod,
                &engine.libpod_version,
                &spec.libpod_body(runtime, &seccomp::profile_file()?),
                API_TIMEOUT,
            )
            .await?
        }
    };
    refuse_discarded_limits(&engine.describe, &warnings)?;
    Ok(id)
}

/// A create call that succeeded with a warning that a limit was dropped
/// (a missing cgroup controller, say) made a weaker container than asked.
fn refuse_discarded_limits(engine: &str, warnings: &[String]) -> Result<(), CageError> {
    let dropped = warnings.iter().find(|w| {
        let w = w.to_lowercase();
        w.contains("discarded") || w.contains("ignored")
    });
    match dropped {
        None => Ok(()),
        Some(warning) => Err(CageError::Weakened {
            engine: engine.to_string(),
            what: format!("apply a resource limit: \"{}\"", warning.trim()),
            hint: "enable the cgroup controller it names, or run proctor against an engine that has it".into(),
        }),
    }
}

/// Creates a container, attaches to it (before start: nothing it prints is
/// missed) and starts it.
pub(in crate::cage) async fn create_attach_start(
    engine: &EngineLink,
    spec: &ContainerSpec,
    runtime: Option<&str>,
) -> Result<(String, AttachStreams), CageError> {
    let id = create_container(engine, spec, runtime).await?;
    attach_start(engine, id, spec).await
}

/// Attaches to a created container and starts it.
async fn attach_start(
    engine: &EngineLink,
    id: String,
    spec: &ContainerSpec,
) -> Result<(String, AttachStreams), CageError> {
    // Attach before start: nothing the command prints is missed, and
    // following logs instead is slow on Podman (see ENGINE-NOTES).
    let options = AttachContainerOptionsBuilder::default()
        .stdin(spec.stdin)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(false)
        .build();
    let attach = bounded(
        "attach to container",
        API_TIMEOUT,
        engine.docker.attach_container(&id, Some(options)),
    )
    .await?;
    bounded(
        "start container",
        API_TIMEOUT,
        engine
            .docker
            .start_container(&id, None::<StartContainerOptions>),
    )
    .await?;
    Ok((
        id,
        AttachStreams {
            output: attach.output,
            input: attach.input,
        },
    ))
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>;

/// Holds a started container's stdin open for as long as this process
/// lives, and reads (and drops) its output so the engine never blocks on
/// it. proctor's own long-lived containers (network holders, egress
/// proxies) run until their stdin closes: when proctor dies, even by
/// `kill -9`, the kernel closes the attach connection, the engine closes
/// the container's stdin (`StdinOnce`) and the container stops on its
/// own, with nobody left to stop it. The task ends when the container's
/// output ends (it stopped or was removed).
pub(in crate::cage) fn keep_attached(attach: AttachStreams) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let AttachStreams { mut output, input } = attach;
        while let Some(Ok(_)) = output.next().await {}
        drop(input);
    });
}

pub(in crate::cage) struct AttachStreams {
    output: OutputStream,
    input: Pin<Box<dyn AsyncWrite + Send>>,
}

pub(in crate::cage) struct Launched {
    pub id: String,
    pub guard: RemovalGuard,
    pub attach: AttachStreams,
}

/// Removes a container when dropped unless [`RemovalGuard::remove_now`]
/// ran: the cleanup path for a `run` future dropped halfway (cancellation).
pub(in crate::cage) struct RemovalGuard {
    docker: Docker,
    name: String,
    armed: bool,
    /// Host directories the container uses (copy-on-write layers, see
    /// `overlay.rs`), removed after it.
    layers: Vec<ScratchDir>,
}

impl RemovalGuard {
    pub(in crate::cage) fn new(docker: Docker, name: String) -> RemovalGuard {
        RemovalGuard {
            docker,
            name,
            armed: true,
            layers: Vec::new(),
        }
    }

    /// Makes the host directories of `spec`'s copy-on-write mounts and
    /// keeps them until the container is removed.
    pub(in crate::cage) fn make_layers(
        &mut self,
        spec: &mut ContainerSpec,
    ) -> Result<(), CageError> {
        self.layers = overlay::make_layers(spec)?;
        Ok(())
    }

    /// Forgets the container: the caller removed it.
    pub(in crate::cage) fn disarm(mut self) {
        self.armed = false;
    }

    pub(in crate::cage) async fn remove_now(mut self) {
        remove_container(&self.docker, &self.name, false).await;
        // Only now: if this future is dropped mid-removal, `drop` retries.
        self.armed = false;
        remove_layers_now(std::mem::take(&mut self.layers)).await;
    }
}

impl Drop for RemovalGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Without a runtime there is nothing to run the removal on; the
        // reaper removes the container by label at the next start.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(container = %self.name, "cannot remove container: no async runtime");
            return;
        };
        let docker = self.docker.clone();
        let name = std::mem::take(&mut self.name);
        let layers = std::mem::take(&mut self.layers);
        runtime.spawn(async move {
            remove_container(&docker, &name, true).await;
            remove_layers_now(layers).await;
        });
    }
}

/// Removes a removed container's layer directories off the async threads
/// (a build cache's upper layer can hold many files).
async fn remove_layers_now(layers: Vec<ScratchDir>) {
    if layers.is_empty() {
        return;
    }
    if let Err(error) = tokio::task::spawn_blocking(move || overlay::remove_layers(layers)).await {
        tracing::warn!(%error, "removing copy-on-write layers did not finish");
    }
}

/// Force-removes a container (killing it if running). Returns whether this
/// call removed it. With `create_in_flight`, a container not found yet is
/// looked for once more, in case its create call was still on its way.
pub(super) async fn remove_container(docker: &Docker, name: &str, create_in_flight: bool) -> bool {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    for attempt in 0..2 {
        let result = tokio::time::timeout(
            API_TIMEOUT,
            docker.remove_container(name, Some(options.clone())),
        )
        .await;
        match result {
            Ok(Ok(())) => return true,
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => {
                if !(create_in_flight && attempt == 0) {
                    return false;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(container = name, %error, "cannot remove container");
            }
            Err(_) => {
                tracing::warn!(container = name, "removing the container timed out");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Writes the stdin bytes, then closes our end: with `StdinOnce` the engine
/// then closes the command's stdin, which sees EOF.
async fn feed_stdin(
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    stdin: Option<&[u8]>,
    deadline: tokio::time::Instant,
    mut exited: watch::Receiver<bool>,
) {
    let Some(bytes) = stdin else {
        return;
    };
    let write = async {
        input.write_all(bytes).await?;
        input.shutdown().await
    };
    tokio::select! {
        written = write => {
            // A command that exits without reading its input breaks the pipe.
            if let Err(error) = written {
                tracing::debug!(%error, "stdin not fully delivered");
            }
        }
        _ = exited.wait_for(|exited| *exited) => {}
        _ = tokio::time::sleep_until(deadline) => {}
    }
}

/// Copies the attach stream into the log until it ends, the command has
/// exited and its `drain_grace` passed, or `hard_deadline`.
async fn pump_output(
    mut output: OutputStream,
    sink: &mut LogSink,
    hard_deadline: tokio::time::Instant,
    drain_grace: Duration,
    mut exited: watch::Receiver<bool>,
) -> Result<(), CageError> {
    let mut deadline = hard_deadline;
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            item = tokio::time::timeout_at(deadline, output.next()) => match item {
                Ok(Some(Ok(chunk))) => sink.push(chunk.as_ref()).await?,
                Ok(Some(Err(error))) => {
                    sink.note(&format!("output stream broke: {error}")).await?;
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(_) => {
                    sink.note("output stream did not close after the command ended; the rest was not read").await?;
                    return Ok(());
                }
            },
            _ = exited.wait_for(|exited| *exited), if !draining => {
                draining = true;
                deadline = deadline.min(tokio::time::Instant::now() + drain_grace);
            }
        }
    }
}
