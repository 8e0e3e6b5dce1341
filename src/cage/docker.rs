//! [`DockerCage`]: the [`Cage`] on a local Docker or Podman engine.
//!
//! It finds the engine, imports the host image, and runs each invocation in
//! a fresh hardened container: create, attach, start, stream, wait, remove.
//! It must leave no container behind, whatever happens to the run (error,
//! timeout, or the caller dropping the future), and must never pull an
//! image, forward the host's environment, or mount the engine socket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use super::address::EngineAddress;
use super::host_image::{empty_rootfs_tar, unique_suffix, IdentityFiles};
use super::import::LABEL_IMAGE;
use super::output::LogSink;
use super::transfer;
use super::warm::WarmPool;
use super::{libpod, Cage, CageError, Invocation, Limits, Outcome, HOST_IMAGE, HOST_IMAGE_REF};
use egress::{Holder, HOLDER_ROLE, PROXY_ROLE};
use lifecycle::remove_container;
pub use lifecycle::LabelledContainer;
pub(super) use lifecycle::{create_attach_start, Launched, RemovalGuard};
use runtime::InitPlan;
pub use runtime::RuntimeChoice;

mod connect;
mod egress;
mod lifecycle;
mod runtime;

/// Bound on ordinary API calls (create, start, inspect, remove, ...).
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on importing the (empty) host image.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which engine is behind the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }
}

/// How a container's mounts reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Host paths are bind-mounted: the engine shares this machine's
    /// filesystem. The fast, local case.
    Bind,
    /// Every mount travels as a tar stream through the API: uploaded into
    /// a volume before start, writable ones downloaded and applied after
    /// the exit (see `transfer.rs`). Always so for a `tcp://` engine;
    /// `PROCTOR_TRANSFER=tar` forces it on a local one.
    Tar,
}

/// A Docker or Podman engine, reached through its API socket or address.
#[derive(Debug)]
pub struct DockerCage {
    docker: Docker,
    kind: EngineKind,
    version: String,
    address: EngineAddress,
    /// The same address for the libpod calls.
    libpod: libpod::Endpoint,
    transfer: Transfer,
    /// Podman's native API version, for the libpod calls.
    libpod_version: String,
    /// Runtime names the engine lists and whose binary exists.
    runtimes: Vec<String>,
    runtime_choice: RuntimeChoice,
    /// Under [`RuntimeChoice::Auto`], the runtime that has started a
    /// container (`Some(None)` = the engine default). Shared with the
    /// background starts of network holders.
    settled_runtime: Arc<Mutex<Option<Option<String>>>>,
    limits: Limits,
    /// Image reference → id, so repeated runs cost no API call.
    images: Mutex<HashMap<String, String>>,
    import_lock: tokio::sync::Mutex<()>,
    identities: IdentityFiles,
    /// Whether containers get an init process, and which binary on Podman.
    init: InitPlan,
    /// On a remote Podman without its configured init, the fallback init
    /// that worked (its files cannot be looked at from here).
    remote_init: Mutex<Option<PathBuf>>,
    /// The runtime the engine uses when a container names none.
    default_runtime: Option<String>,
    /// The engine host's memory, for the default memory limit.
    engine_memory: Option<i64>,
    /// The engine host's CPUs, for how many parallel children run at once.
    engine_cpus: Option<usize>,
    /// Loops' network holders and egress proxies, see `egress.rs`.
    egress: egress::EgressTable,
    /// Containers started ahead of need (`warm.rs`).
    warm: WarmPool,
    /// Whether used containers are removed in the background (see
    /// [`DockerCage::with_background_removal`]).
    background_removal: bool,
}

impl DockerCage {
    /// Sets the resource limits of every container this cage runs.
    pub fn with_limits(mut self, limits: Limits) -> DockerCage {
        self.limits = limits;
        self
    }

    /// Removes used containers in the background instead of before
    /// [`Cage::run`] returns, which takes the removal off the caller's
    /// critical path. The caller must then call [`Cage::settle`] before it
    /// exits; a crash leaves containers for the reaper, as always.
    pub fn with_background_removal(mut self) -> DockerCage {
        self.background_removal = true;
        self
    }

    /// Docker or Podman.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The engine's version, e.g. `20.10.24`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the engine answers.
    pub fn address(&self) -> &EngineAddress {
        &self.address
    }

    /// How mounts reach containers.
    pub fn transfer(&self) -> Transfer {
        self.transfer
    }

    /// Sets how mounts reach containers; [`Transfer::Bind`] is refused
    /// for a remote engine, which cannot see this machine's paths.
    pub fn with_transfer(mut self, transfer: Transfer) -> Result<DockerCage, CageError> {
        if transfer == Transfer::Bind && self.address.is_remote() {
            return Err(self.remote_refusal(
                "bind-mounting host paths",
                "leave the transfer to proctor: it sends trees as tar streams to a remote engine",
            ));
        }
        self.transfer = transfer;
        Ok(self)
    }

    /// The error for something a remote engine (or the tar path) cannot do.
    pub(super) fn remote_refusal(&self, what: &str, hint: &str) -> CageError {
        CageError::Remote {
            engine: format!("{} at {}", self.describe(), self.address),
            what: what.to_string(),
            hint: hint.to_string(),
        }
    }

    /// The bollard client, for the image calls in `import.rs`.
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    /// Drops a cached image id: the name now points at another image.
    pub(super) fn forget_image(&self, image: &str) {
        lock(&self.images).remove(image);
    }

    /// Drops every cached image id (after images were removed).
    pub(super) fn forget_all_images(&self) {
        lock(&self.images).clear();
    }

    /// The memory limit of a container whose limits set none: three
    /// quarters of the engine host's memory, so that one runaway container
    /// cannot take the whole machine down with it.
    pub fn default_memory_bytes(&self) -> Option<i64> {
        self.engine_memory.map(|total| total / 4 * 3)
    }

    /// [`Cage::run_with_limits`], the one path every invocation takes.
    async fn run_limited(&self, inv: Invocation, limits: &Limits) -> Result<Outcome, CageError> {
        let started = Instant::now();
        let deadline = deadline_after(inv.timeout);
        let image_id = self.ensure_image(&inv.image).await?;
        // Before any container exists, so a bad log path costs nothing.
        let sink = LogSink::create(&inv.log, inv.log_cap).await?;
        // Holders run on the `host` image, which a remote engine (the tar
        // path) cannot have: there every container has its own namespace.
        let local = self.transfer != Transfer::Tar;
        let (holder, private) = if local && egress::shares_holder(&inv) {
            (Some(self.holder_for(&inv).await?), false)
        } else if local && egress::needs_private_holder(&inv) {
            (Some(self.private_holder(&inv).await?), true)
        } else {
            (None, false)
        };
        // Removes a private holder if this future is dropped before the end.
        let guard = holder
            .as_ref()
            .filter(|_| private)
            .map(|h| RemovalGuard::new(self.docker.clone(), h.name.clone()));
        let outcome = self
            .run_joined(
                inv,
                limits,
                image_id,
                holder.as_deref(),
                sink,
                started,
                deadline,
            )
            .await;
        if let (Some(holder), Some(guard)) = (&holder, guard) {
            self.remove_private_holder(holder).await;
            guard.disarm();
        }
        outcome
    }

    /// Runs `inv` in a container of its own, in `holder`'s network
    /// namespace when there is one.
    #[allow(clippy::too_many_arguments)]
    async fn run_joined(
        &self,
        inv: Invocation,
        limits: &Limits,
        mut image_id: String,
        holder: Option<&Holder>,
        mut sink: LogSink,
        started: Instant,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, CageError> {
        let plan = match self.transfer {
            Transfer::Bind => None,
            Transfer::Tar => Some(self.transfer_plan(&inv)?),
        };
        let mut spec = self.spec_for(&inv, &image_id, limits, holder)?;
        if let Some(plan) = &plan {
            spec.volumes = plan.volume_targets();
        }
        let egress = holder.and_then(Holder::egress);

        // A container started ahead of need for exactly this invocation
        // skips the start-up; its gate needs a preamble before the stdin.
        let warm = match plan {
            Some(_) => None,
            None => self.warm.take(&spec).await,
        };
        let (launched, stdin) = match warm {
            Some(taken) => {
                let mut stdin = taken.preamble;
                stdin.extend_from_slice(inv.stdin.as_deref().unwrap_or_default());
                (taken.launched, Some(stdin))
            }
            None => {
                let launched = match self.launch(&spec, plan.as_ref()).await {
                    // The cached id went stale (the image was removed or
                    // re-imported behind proctor's back): resolve it again, once.
                    Err(e) if is_missing_image(&e) => {
                        lock(&self.images).remove(&inv.image);
                        image_id = self.ensure_image(&inv.image).await?;
                        spec.image_id = image_id.clone();
                        self.launch(&spec, plan.as_ref()).await?
                    }
                    other => other?,
                };
                (launched, inv.stdin)
            }
        };
        let Launched { id, guard, attach } = launched;

        let launched_after = started.elapsed();
        let status = self
            .supervise(
                &id,
                attach,
                stdin.as_deref(),
                &mut sink,
                deadline,
                inv.timeout,
            )
            .await;
        // The tree comes back whatever the exit, as a bind mount's edits
        // would stay: a killed agent's partial work is still its work.
        let taken_back = match &plan {
            Some(plan) => Some(transfer::take_back(&self.docker, &id, plan).await),
            None => None,
        };
        let ended_after = started.elapsed();
        // A container behind the egress proxy is removed before its denials
        // are read (everything the proxy refused for it was logged before
        // the refusal reached it); any other may go in the background.
        if self.background_removal && egress.is_none() {
            self.warm.remove_later(guard).await;
        } else {
            guard.remove_now().await;
        }
        let network_denied = egress.map(|e| e.take_denials()).unwrap_or_default();
        tracing::debug!(
            container = %id,
            launch_ms = launched_after.as_millis() as u64,
            run_ms = (ended_after - launched_after).as_millis() as u64,
            remove_ms = (started.elapsed() - ended_after).as_millis() as u64,
            "container done"
        );
        let (exit_code, timed_out) = status?;
        if let Some(taken_back) = taken_back {
            let moved = taken_back?;
            tracing::debug!(container = %id, entries = moved.entries, changed = moved.changed, deleted = moved.deleted, "tree taken back");
        }
        if timed_out {
            sink.note(&format!(
                "timed out after {}s; the container was killed",
                inv.timeout.as_secs()
            ))
            .await?;
        }
        let summary = sink.finish().await?;
        let (output_head, output_tail) = summary.texts();
        Ok(Outcome {
            exit_code,
            timed_out,
            duration: started.elapsed(),
            output_head,
            output_tail,
            output_bytes: summary.total(),
            container_id: id,
            image_id,
            network_denied,
        })
    }

    /// [`Cage::prepare`].
    pub fn prepare_with_limits(&self, inv: &Invocation, limits: &Limits) {
        // A verifier with a host list gets a holder of its own, made when
        // it runs, and the tar path uploads its trees at the start: both
        // start cold.
        if egress::needs_private_holder(inv) || self.transfer == Transfer::Tar {
            return;
        }
        // Only once the image id and the runtime are settled: a prepared
        // container must be exactly the one a cold start would make.
        let Some(image_id) = lock(&self.images).get(&inv.image).cloned() else {
            return;
        };
        let Some(runtime) = self.runtime() else {
            return;
        };
        if self.refuse_ignored_runtime().is_err() {
            return;
        }
        // An agent with network joins its loop's holder, which must run
        // before the agent's container is created: the background start
        // creates it first (once, however many agents are prepared).
        let holder = if egress::shares_holder(inv) {
            let (Some(sidecars), Ok(holder)) = (self.sidecars_now(), self.holder_slot(inv)) else {
                return;
            };
            Some((holder, sidecars))
        } else {
            None
        };
        let mut spec = match self.spec_for(inv, &image_id, limits, holder.as_ref().map(|h| &*h.0)) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::debug!(%error, "not starting a container ahead of need");
                return;
            }
        };
        spec.name = format!("proctor-{}-{}", spec.role, unique_suffix());
        let before = holder.map(|(holder, sidecars)| {
            Box::pin(async move { holder.start(&sidecars).await }) as super::warm::Before
        });
        self.warm.prepare(self.link(), &spec, runtime, before);
    }

    /// An owned handle on the engine, for launches that run as background
    /// tasks (containers started ahead of need, `warm.rs`).
    pub(super) fn link(&self) -> EngineLink {
        EngineLink {
            docker: self.docker.clone(),
            kind: self.kind,
            libpod: self.libpod.clone(),
            libpod_version: self.libpod_version.clone(),
            describe: self.describe(),
        }
    }

    pub(super) async fn inspect_image_id(&self, image: &str) -> Result<Option<String>, CageError> {
        match tokio::time::timeout(API_TIMEOUT, self.docker.inspect_image(image)).await {
            Ok(Ok(inspect)) => Ok(inspect.id),
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(None),
            Ok(Err(source)) => Err(CageError::Engine {
                op: "inspect image",
                source,
            }),
            Err(_) => Err(CageError::EngineTimeout {
                op: "inspect image",
                after: API_TIMEOUT,
            }),
        }
    }

    async fn ensure_host_image(&self) -> Result<String, CageError> {
        // One import at a time; a second caller finds the first's image.
        let _importing = self.import_lock.lock().await;
        if let Some(id) = self.inspect_image_id(HOST_IMAGE_REF).await? {
            return Ok(id);
        }
        let tar = empty_rootfs_tar().map_err(|source| CageError::Io {
            path: PathBuf::from(HOST_IMAGE_REF),
            source,
        })?;
        // `docker import`, not `docker load`. The tag goes inside `repo`:
        // Podman's import ignores the `tag` parameter (it names the image
        // `:latest`), and Docker accepts a tagged repo.
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(HOST_IMAGE_REF)
            .changes(vec![format!("LABEL {LABEL_IMAGE}={HOST_IMAGE_REF}")])
            .build();
        let import = async {
            let mut progress =
                self.docker
                    .create_image(Some(options), Some(bollard::body_full(tar.into())), None);
            while let Some(step) = progress.next().await {
                step?;
            }
            Ok::<_, BollardError>(())
        };
        bounded("import host image", IMPORT_TIMEOUT, import).await?;
        self.inspect_image_id(HOST_IMAGE_REF)
            .await?
            .ok_or_else(|| CageError::ImageNotFound {
                image: HOST_IMAGE_REF.into(),
            })
    }
}

impl Cage for DockerCage {
    async fn run(&self, inv: Invocation) -> Result<Outcome, CageError> {
        let limits = self.limits.clone();
        self.run_limited(inv, &limits).await
    }

    async fn run_with_limits(
        &self,
        inv: Invocation,
        limits: &Limits,
    ) -> Result<Outcome, CageError> {
        self.run_limited(inv, limits).await
    }

    async fn remove_labelled(&self, labels: &[(&str, &str)]) -> Result<usize, CageError> {
        let found = self.list_labelled(labels).await?;
        // Agents and verifiers first, then the holders they joined (Podman
        // refuses to remove a container whose namespace others use), then
        // the proxies behind the holders.
        let mut removed = 0;
        for wave in [None, Some(HOLDER_ROLE), Some(PROXY_ROLE)] {
            let removals = found
                .iter()
                .filter(|c| match wave {
                    None => c.role != HOLDER_ROLE && c.role != PROXY_ROLE,
                    Some(wave) => c.role == wave,
                })
                .map(|c| remove_container(&self.docker, &c.id, false));
            removed += futures_util::future::join_all(removals)
                .await
                .into_iter()
                .filter(|r| *r)
                .count();
        }
        // The cage's own records of them, and their files on the host.
        self.release_holders(labels).await;
        // Networks last: an engine refuses to remove one a container is on.
        self.remove_networks(labels).await?;
        Ok(removed)
    }

    async fn ensure_image(&self, image: &str) -> Result<String, CageError> {
        if let Some(id) = lock(&self.images).get(image) {
            return Ok(id.clone());
        }
        let id = if image == HOST_IMAGE && self.transfer == Transfer::Tar {
            return Err(self.host_image_refusal());
        } else if image == HOST_IMAGE {
            self.ensure_host_image().await?
        } else {
            self.inspect_image_id(image)
                .await?
                .ok_or_else(|| CageError::ImageNotFound {
                    image: image.to_string(),
                })?
        };
        lock(&self.images).insert(image.to_string(), id.clone());
        Ok(id)
    }

    fn prepare(&self, inv: &Invocation, limits: &Limits) {
        self.prepare_with_limits(inv, limits);
    }

    async fn settle(&self) {
        self.warm.settle().await;
        // Holders last: nothing that joined one is left now.
        self.release_holders(&[]).await;
    }

    async fn answers(&self) -> bool {
        bounded("ping", connect::PING_TIMEOUT, self.docker.ping())
            .await
            .is_ok()
    }

    fn describe(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.version)
    }

    fn cores(&self) -> Option<usize> {
        self.engine_cpus
    }
}

/// The parts of a [`DockerCage`] a container launch needs, owned.
#[derive(Debug, Clone)]
pub(super) struct EngineLink {
    pub docker: Docker,
    pub kind: EngineKind,
    pub libpod: libpod::Endpoint,
    pub libpod_version: String,
    /// [`Cage::describe`], for errors.
    pub describe: String,
}

fn is_missing_image(error: &CageError) -> bool {
    match error {
        CageError::Engine {
            op: "create container",
            source:
                BollardError::DockerResponseServerError {
                    status_code,
                    message,
                },
        } => *status_code == 404 && message.to_lowercase().contains("image"),
        CageError::EngineReply { message, .. } => {
            let message = message.to_lowercase();
            message.contains("no such image") || message.contains("image not known")
        }
        _ => false,
    }
}

/// `timeout` from now, or a far future instead of overflowing.
fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Bounds an engine call by `after`.
async fn bounded<T>(
    op: &'static str,
    after: Duration,
    call: impl std::future::Future<Output = Result<T, BollardError>>,
) -> Result<T, CageError> {
    match tokio::time::timeout(after, call).await {
        Ok(result) => result.map_err(|source| CageError::Engine { op, source }),
        Err(_) => Err(CageError::EngineTimeout { op, after }),
    }
}

/// A poisoned lock only means another run panicked while holding it; the
/// maps behind these locks stay valid, so carry on.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
