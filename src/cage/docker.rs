//! [`DockerCage`]: the [`Cage`] on a local Docker or Podman engine.
//!
//! It finds the engine, imports the host image, and runs each invocation in
//! a fresh hardened container: create, attach, start, stream, wait, remove.
//! It must leave no container behind, whatever happens to the run (error,
//! timeout, or the caller dropping the future), and must never pull an
//! image, forward the host's environment, or mount the engine socket.

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, WaitContainerOptions,
};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::address::{EngineAddress, TlsEnv, TlsFiles};
use super::host_image::{
    empty_rootfs_tar, parse_numeric_user, toolchain_binds, unique_suffix, IdentityFiles,
};
use super::import::LABEL_IMAGE;
use super::output::LogSink;
use super::spec::{BindSpec, ContainerSpec, NetMode, DEFAULT_PATH, HOME_DIR};
use super::transfer::{self, TransferPlan};
use super::warm::WarmPool;
use super::{
    libpod, Cage, CageError, Invocation, Limits, NetworkPolicy, Outcome, HOST_IMAGE,
    HOST_IMAGE_REF, LABEL_LOOP, LABEL_PID, LABEL_REPO, LABEL_ROLE, LABEL_RUN,
};
use egress::{Holder, HOLDER_ROLE, PROXY_ROLE};

mod egress;

/// How long a socket may take to answer a ping before the next is tried.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on ordinary API calls (create, start, inspect, remove, ...).
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on importing the (empty) host image.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// After a kill, how long the output stream may take to close.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// After the command exits, how long the rest of its output may take to
/// arrive. Podman's streams have been seen not to close at all.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

/// Init binaries Podman can mount into a container when its configured one
/// (catatonit) is missing. Only statically linked ones: the image may have
/// no libc.
const PODMAN_DEFAULT_INIT: &str = "/usr/libexec/podman/catatonit";
const PODMAN_INIT_FALLBACKS: &[&str] = &[
    "/usr/libexec/catatonit/catatonit",
    "/usr/bin/catatonit",
    "/usr/bin/tini-static",
    "/usr/local/bin/tini-static",
    "/sbin/tini-static",
];

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

/// Which OCI runtime containers ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RuntimeChoice {
    /// On Docker, `crun` when the engine lists it (it starts containers
    /// about twice as fast as `runc`), else `runc`, else the engine's
    /// default; a runtime that cannot start a container on this host is
    /// skipped, once, on the first run, and the one that worked is kept.
    /// On Podman, the service's configured runtime: its API ignores the
    /// runtime a container asks for (fixed upstream only in 2026).
    #[default]
    Auto,
    /// Whatever the engine is configured to use.
    EngineDefault,
    /// Exactly this runtime (e.g. `runsc`), no fallback.
    Named(String),
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
    /// Loops' network holders and egress proxies, see `egress.rs`.
    egress: egress::EgressTable,
    /// Containers started ahead of need (`warm.rs`).
    warm: WarmPool,
    /// Whether used containers are removed in the background (see
    /// [`DockerCage::with_background_removal`]).
    background_removal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum InitPlan {
    /// The engine's configured init.
    Engine,
    /// Podman with this init binary instead of its missing default.
    Path(PathBuf),
    /// No init binary found: PID 1 is the shell. Leftover processes still
    /// die with it, since the kernel kills a PID namespace with its init.
    None,
}

impl DockerCage {
    /// Finds and connects to an engine: `DOCKER_HOST` if set, else `hint`
    /// (`docker`, `podman`, a socket path or a `tcp://` address), else the
    /// first of the usual sockets that answers.
    pub async fn connect(hint: Option<&str>) -> Result<DockerCage, CageError> {
        let docker_host = std::env::var("DOCKER_HOST").ok();
        let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
        let tls = TlsEnv::from_env();
        let candidates = socket_candidates(docker_host.as_deref(), hint, xdg.as_deref(), &tls)?;
        let mut tried = Vec::new();
        for address in candidates {
            match ping(&address).await {
                Ok(docker) => return DockerCage::from_engine(docker, address).await,
                Err(PingError::Fatal(error)) => return Err(error),
                Err(PingError::NoAnswer(reason)) => tried.push(format!("{address}: {reason}")),
            }
        }
        Err(CageError::NoEngine {
            tried: tried.join("; "),
        })
    }

    /// Connects to exactly this address (`unix:///path`, `/path` or
    /// `tcp://host:port`), with no discovery and regardless of
    /// `DOCKER_HOST` (though TLS still follows `DOCKER_TLS_VERIFY`).
    pub async fn connect_to(address: &str) -> Result<DockerCage, CageError> {
        let address = EngineAddress::parse(address, "engine", &TlsEnv::from_env())?;
        match ping(&address).await {
            Ok(docker) => DockerCage::from_engine(docker, address).await,
            Err(PingError::Fatal(error)) => Err(error),
            Err(PingError::NoAnswer(reason)) => Err(CageError::NoEngine {
                tried: format!("{address}: {reason}"),
            }),
        }
    }

    async fn from_engine(docker: Docker, address: EngineAddress) -> Result<DockerCage, CageError> {
        // One `/version` call both identifies the engine and negotiates the
        // API version (bollard defaults to a newer one than dockerd 20.10
        // speaks), instead of `negotiate_version` plus `version`: Podman
        // answers each in about 300 ms.
        let version = bounded("version", API_TIMEOUT, docker.version()).await?;
        let docker = negotiated(docker, &address, version.api_version.as_deref())?;
        let remote = address.is_remote();
        let info = bounded("info", API_TIMEOUT, docker.info()).await?;

        let podman = version
            .components
            .iter()
            .flatten()
            .find(|c| c.name == "Podman Engine");
        let (kind, engine_version, libpod_version) = match podman {
            Some(component) => {
                let api = component
                    .details
                    .as_ref()
                    .and_then(|d| d.get("APIVersion"))
                    .cloned()
                    .unwrap_or_else(|| component.version.clone());
                (EngineKind::Podman, component.version.clone(), api)
            }
            None => (
                EngineKind::Docker,
                version.version.clone().unwrap_or_default(),
                String::new(),
            ),
        };
        // Drop build metadata (`20.10.24+dfsg1` -> `20.10.24`).
        let engine_version = engine_version
            .split('+')
            .next()
            .unwrap_or_default()
            .to_string();

        let mut runtimes: Vec<String> = info
            .runtimes
            .unwrap_or_default()
            .into_iter()
            // Podman lists every runtime its config knows of, installed or
            // not; a relative path (Docker's `runc`) is looked up in PATH.
            .filter(|(_, rt)| match rt.path.as_deref() {
                // A remote engine's files are not this machine's to check.
                Some(path) if path.starts_with('/') && !remote => Path::new(path).exists(),
                _ => true,
            })
            .map(|(name, _)| name)
            .collect();
        runtimes.sort();

        let init = match kind {
            // dockerd lists its init among the version's components when
            // it has one; asking for an init it lacks fails every start.
            EngineKind::Docker
                if version
                    .components
                    .iter()
                    .flatten()
                    .any(|c| c.name == "docker-init") =>
            {
                InitPlan::Engine
            }
            EngineKind::Docker => InitPlan::None,
            // Whether a remote Podman has its init cannot be seen from here;
            // a missing one fails the first start with the engine's error.
            EngineKind::Podman if remote => InitPlan::Engine,
            EngineKind::Podman if Path::new(PODMAN_DEFAULT_INIT).exists() => InitPlan::Engine,
            EngineKind::Podman => PODMAN_INIT_FALLBACKS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .map(InitPlan::Path)
                .unwrap_or(InitPlan::None),
        };

        let transfer = if remote || transfer_forced() {
            Transfer::Tar
        } else {
            Transfer::Bind
        };
        Ok(DockerCage {
            docker,
            kind,
            version: engine_version,
            libpod: libpod::Endpoint::new(&address)?,
            address,
            transfer,
            libpod_version,
            runtimes,
            runtime_choice: RuntimeChoice::Auto,
            settled_runtime: Arc::new(Mutex::new(None)),
            limits: Limits::default(),
            images: Mutex::new(HashMap::new()),
            import_lock: tokio::sync::Mutex::new(()),
            identities: IdentityFiles::default(),
            init,
            remote_init: Mutex::new(None),
            default_runtime: info.default_runtime.clone(),
            engine_memory: info.mem_total.filter(|m| *m > 0),
            egress: egress::EgressTable::default(),
            warm: WarmPool::default(),
            background_removal: false,
        })
    }

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

    /// Sets which OCI runtime containers ask for.
    pub fn with_runtime(mut self, choice: RuntimeChoice) -> DockerCage {
        self.runtime_choice = choice;
        *lock(&self.settled_runtime) = None;
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

    /// Runtimes the engine lists (and whose binaries exist).
    pub fn runtimes(&self) -> &[String] {
        &self.runtimes
    }

    /// The engine's default OCI runtime, as its `/info` names it (on
    /// Podman, the one every container of the service runs with).
    pub fn default_runtime(&self) -> Option<&str> {
        self.default_runtime.as_deref()
    }

    /// The runtime containers run with, once known: `Some(None)` is the
    /// engine default, `None` means no container has started yet under
    /// [`RuntimeChoice::Auto`].
    pub fn runtime(&self) -> Option<Option<String>> {
        match &self.runtime_choice {
            RuntimeChoice::Auto if self.kind == EngineKind::Podman => Some(None),
            RuntimeChoice::Auto => lock(&self.settled_runtime).clone(),
            RuntimeChoice::EngineDefault => Some(None),
            RuntimeChoice::Named(name) => Some(Some(name.clone())),
        }
    }

    /// Ids of proctor's containers (running or not) whose labels match all
    /// of `labels`.
    pub async fn list_labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, CageError> {
        let found = self.list_labelled_roles(labels).await?;
        Ok(found.into_iter().map(|(id, _)| id).collect())
    }

    /// Like [`DockerCage::list_labelled`], with each container's role label.
    async fn list_labelled_roles(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, CageError> {
        // Always narrowed to proctor's containers: an empty filter must not
        // mean "every container on the engine".
        let mut filters: Vec<String> = vec![LABEL_REPO.to_string()];
        filters.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label".to_string(), filters)]))
            .build();
        let found = bounded(
            "list containers",
            API_TIMEOUT,
            self.docker.list_containers(Some(options)),
        )
        .await?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let role = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_ROLE))
                    .cloned()
                    .unwrap_or_default();
                Some((c.id?, role))
            })
            .collect())
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

    /// Turns an invocation into a container description.
    fn spec_for(
        &self,
        inv: &Invocation,
        image_id: &str,
        limits: &Limits,
        holder: Option<&Holder>,
    ) -> Result<ContainerSpec, CageError> {
        let invalid = |reason: String| CageError::InvalidInvocation { reason };
        if self.init == InitPlan::None {
            return Err(self.no_init());
        }
        if !inv.workdir.starts_with('/') {
            return Err(invalid(format!(
                "working directory `{}` is not absolute",
                inv.workdir
            )));
        }

        let mut binds: Vec<BindSpec> = Vec::new();
        let tar = self.transfer == Transfer::Tar;
        if tar && inv.image == HOST_IMAGE {
            return Err(self.host_image_refusal());
        }
        if inv.image == HOST_IMAGE {
            binds.extend(toolchain_binds());
            let (uid, gid) = parse_numeric_user(&inv.user).ok_or_else(|| {
                invalid(format!(
                    "the `host` image has no user database, so the user must be a numeric `uid:gid`, not `{}`",
                    inv.user
                ))
            })?;
            binds.extend(self.identities.binds(uid, gid)?);
        }
        // On the tar path mounts travel as volumes (`transfer_plan`).
        for mount in inv.mounts.iter().filter(|_| !tar) {
            if !mount.container.starts_with('/') {
                return Err(invalid(format!(
                    "mount target `{}` is not absolute",
                    mount.container
                )));
            }
            let source = std::fs::canonicalize(&mount.host)
                .map_err(|e| invalid(format!("mount source `{}`: {e}", mount.host.display())))?;
            if exposes_socket(&source, &self.address) {
                return Err(invalid(format!(
                    "mount source `{}` is or contains a socket; the engine socket is never mounted",
                    mount.host.display()
                )));
            }
            // An explicit mount replaces a toolchain mount at the same place.
            binds.retain(|b| b.target != mount.container);
            binds.push(BindSpec {
                source,
                target: mount.container.clone(),
                read_only: mount.read_only,
            });
        }

        // Docker makes no `/etc/hosts` for a container whose network is
        // disabled rather than `none` (see `spec.rs`), nor for one that
        // joins such a namespace (a holder with a host list).
        let no_hosts_file = match holder {
            Some(holder) => egress::joined_needs_hosts_file(self.kind, holder),
            None => self.kind == EngineKind::Docker && !tar && inv.network == NetworkPolicy::None,
        };
        if no_hosts_file && !binds.iter().any(|b| b.target == "/etc/hosts") {
            binds.push(self.identities.hosts_bind()?);
        }

        let mut env = Vec::with_capacity(inv.env.len() + 2);
        for (name, value) in &inv.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0')
            {
                return Err(invalid(format!("bad environment variable name `{name}`")));
            }
            env.push(format!("{name}={value}"));
        }
        if !inv.env.iter().any(|(n, _)| n == "HOME") {
            env.push(format!("HOME={HOME_DIR}"));
        }
        if !inv.env.iter().any(|(n, _)| n == "PATH") {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        // The tar path (a remote engine) has no holders: see `run_limited`.
        let joins = self.transfer == Transfer::Bind
            && (egress::shares_holder(inv) || egress::needs_private_holder(inv));
        let network = match (&inv.network, holder) {
            (NetworkPolicy::None, _) => NetMode::None,
            (NetworkPolicy::Open, None) if !joins => NetMode::Open,
            (NetworkPolicy::Open, Some(holder)) if holder.has_network() => {
                NetMode::Join(holder.name.clone())
            }
            (NetworkPolicy::Hosts(_), Some(holder)) if !holder.has_network() => {
                env.extend(holder.proxy_env());
                NetMode::Join(holder.name.clone())
            }
            _ => {
                return Err(invalid(format!(
                    "network `{}` needs the loop's network holder",
                    inv.network.describe()
                )));
            }
        };
        let mut limits = limits.clone();
        if limits.memory_bytes.is_none() {
            limits.memory_bytes = self.default_memory_bytes();
        }

        let labels = HashMap::from([
            (LABEL_REPO.to_string(), inv.labels.repo.clone()),
            (LABEL_RUN.to_string(), inv.labels.run.clone()),
            (LABEL_LOOP.to_string(), inv.labels.loop_id.clone()),
            (LABEL_ROLE.to_string(), inv.labels.role.as_str().to_string()),
            (LABEL_PID.to_string(), std::process::id().to_string()),
        ]);

        Ok(ContainerSpec {
            name: String::new(),
            image_id: image_id.to_string(),
            cmd: vec!["/bin/sh".into(), "-c".into(), inv.command.clone()],
            workdir: inv.workdir.clone(),
            user: inv.user.clone(),
            env,
            labels,
            stdin: inv.stdin.is_some(),
            binds,
            volumes: Vec::new(),
            // The tar path cannot mount an `/etc/hosts`; Docker makes one.
            skip_network_stack: !tar,
            network,
            limits,
            init: self.init != InitPlan::None,
            init_path: match &self.init {
                InitPlan::Path(path) => Some(path.clone()),
                _ => lock(&self.remote_init).clone(),
            },
            role: inv.labels.role.as_str(),
        })
    }

    /// The runtimes to try, in order, and whether a failure should move on
    /// to the next one.
    fn runtime_plan(&self) -> (Vec<Option<String>>, bool) {
        match &self.runtime_choice {
            RuntimeChoice::Named(name) => (vec![Some(name.clone())], false),
            RuntimeChoice::EngineDefault => (vec![None], false),
            // Podman's API ignores the requested runtime (fixed upstream only
            // in 2026, podman#28429): the service's configured one is used.
            RuntimeChoice::Auto if self.kind == EngineKind::Podman => (vec![None], false),
            RuntimeChoice::Auto => {
                if let Some(settled) = lock(&self.settled_runtime).clone() {
                    return (vec![settled], false);
                }
                let mut plan: Vec<Option<String>> = ["crun", "runc"]
                    .iter()
                    .filter(|name| self.runtimes.iter().any(|r| r == *name))
                    .map(|name| Some(name.to_string()))
                    .collect();
                plan.push(None);
                (plan, true)
            }
        }
    }

    /// Podman's API runs every container with the service's runtime,
    /// whatever the container asks for: a configured runtime that is not the
    /// service's (say `runsc`) would silently be a different sandbox.
    fn refuse_ignored_runtime(&self) -> Result<(), CageError> {
        let RuntimeChoice::Named(name) = &self.runtime_choice else {
            return Ok(());
        };
        if self.kind != EngineKind::Podman || self.default_runtime.as_deref() == Some(name) {
            return Ok(());
        }
        Err(CageError::Weakened {
            engine: self.describe(),
            what: format!(
                "run containers with the `{name}` runtime through its API (it always uses the service's `{}`)",
                self.default_runtime.as_deref().unwrap_or("default")
            ),
            hint: format!(
                "start the Podman service with that runtime: `podman --runtime {name} system service --time=0 unix:///run/podman/podman.sock &`, or drop `runtime:` from `.proctor/config.yaml`"
            ),
        })
    }

    /// The error for an engine without an init binary.
    fn no_init(&self) -> CageError {
        let hint = match self.kind {
            EngineKind::Docker => "install Docker's init (`docker-init`; on Debian the `tini` package provides it) and restart dockerd",
            EngineKind::Podman => "install `catatonit` or a static `tini` (Debian: `apt-get install catatonit` or `tini`)",
        };
        CageError::Weakened {
            engine: self.describe(),
            what: "start an init process in containers (no init binary found), so nothing would reap or signal what the command leaves running".into(),
            hint: hint.into(),
        }
    }

    /// Creates, attaches to and starts a container, trying the next runtime
    /// while the runtime is still being probed.
    async fn launch(
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
            let guard = RemovalGuard::new(self.docker.clone(), spec.name.clone());
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

    /// Turns crun's refusal of this host's cgroup layout into an error that
    /// says how to fix it; other errors pass through.
    fn explain_runtime_failure(&self, error: CageError) -> CageError {
        explain_runtime_failure(self.kind, error)
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

    /// The tar path's plan for `inv`: its mounts, checked like binds.
    fn transfer_plan(&self, inv: &Invocation) -> Result<TransferPlan, CageError> {
        if matches!(inv.network, NetworkPolicy::Hosts(_)) {
            return Err(self.remote_refusal(
                "a host-list `network:` (its egress proxy runs on the `host` image, which is bind mounts of this machine)",
                "use `network: open` or `network: none` for the loop with a remote engine",
            ));
        }
        let mut mounts = Vec::with_capacity(inv.mounts.len());
        for mount in &inv.mounts {
            let source =
                std::fs::canonicalize(&mount.host).map_err(|e| CageError::InvalidInvocation {
                    reason: format!("mount source `{}`: {e}", mount.host.display()),
                })?;
            if exposes_socket(&source, &self.address) {
                return Err(CageError::InvalidInvocation {
                    reason: format!(
                        "mount source `{}` is or contains a socket; the engine socket is never mounted",
                        mount.host.display()
                    ),
                });
            }
            mounts.push((source, mount.container.clone(), mount.read_only));
        }
        let owner = parse_numeric_user(&inv.user).map(|(u, g)| (u64::from(u), u64::from(g)));
        TransferPlan::new(&mounts, owner)
    }

    /// Why the `host` image cannot run on this engine.
    fn host_image_refusal(&self) -> CageError {
        self.remote_refusal(
            "the built-in `host` image (bind mounts of this machine's toolchain)",
            "set `image:` in proctor.yaml or `.proctor/config.yaml` to an image on that engine: `proctor image import DIR|ROOTFS.tar.gz --name NAME`, or one you built",
        )
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

    /// Feeds stdin, streams output and waits for the exit, all at once (a
    /// command like `cat` stops reading its input while its output is not
    /// read). Returns the exit code and whether the timeout killed it.
    async fn supervise(
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
            let pumped = pump_output(attach.output, sink, hard_deadline, exited_rx).await;
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
                        code = self.wait_container(id, timeout) => code,
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
            // Podman reports a wait that failed (e.g. the container was
            // removed meanwhile) as status 0 with an error message.
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

    async fn inspect_image_id(&self, image: &str) -> Result<Option<String>, CageError> {
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
        let found = self.list_labelled_roles(labels).await?;
        // Agents and verifiers first, then the holders they joined (Podman
        // refuses to remove a container whose namespace others use), then
        // the proxies behind the holders.
        let mut removed = 0;
        for wave in [None, Some(HOLDER_ROLE), Some(PROXY_ROLE)] {
            let removals = found
                .iter()
                .filter(|(_, role)| match wave {
                    None => role != HOLDER_ROLE && role != PROXY_ROLE,
                    Some(wave) => role == wave,
                })
                .map(|(id, _)| remove_container(&self.docker, id, false));
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

    fn describe(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.version)
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

/// Creates a container; refuses it (the caller's removal guard, armed by
/// name, removes it) when the engine says it dropped a resource limit.
async fn create_container(
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
                &spec.libpod_body(runtime),
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

/// Turns crun's refusal of this host's cgroup layout into an error that
/// says how to fix it; other errors pass through.
pub(super) fn explain_runtime_failure(kind: EngineKind, error: CageError) -> CageError {
    let message = error.to_string();
    if !message.contains("cgroups in hybrid mode not supported") {
        return error;
    }
    let hint = match kind {
        EngineKind::Podman => "give each controller listed in /sys/fs/cgroup/unified/cgroup.controllers a v1 hierarchy (e.g. `mkdir /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb`), or start Podman with runc instead: `podman --runtime runc system service --time=0 unix:///run/podman/podman.sock &`, or set `runtime = \"runc\"` under `[engine]` in /etc/containers/containers.conf",
        EngineKind::Docker => "give each controller listed in /sys/fs/cgroup/unified/cgroup.controllers a v1 hierarchy (e.g. `mkdir /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb`), or choose `runc` as the OCI runtime in `.proctor/config.yaml`",
    };
    CageError::RuntimeUnusable {
        message,
        hint: hint.into(),
    }
}

/// Creates a container, attaches to it (before start: nothing it prints is
/// missed) and starts it.
pub(super) async fn create_attach_start(
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

pub(super) struct AttachStreams {
    output: OutputStream,
    input: Pin<Box<dyn AsyncWrite + Send>>,
}

pub(super) struct Launched {
    pub id: String,
    pub guard: RemovalGuard,
    pub attach: AttachStreams,
}

/// Removes a container when dropped unless [`RemovalGuard::remove_now`]
/// ran: the cleanup path for a `run` future dropped halfway (cancellation).
pub(super) struct RemovalGuard {
    docker: Docker,
    name: String,
    armed: bool,
}

impl RemovalGuard {
    pub(super) fn new(docker: Docker, name: String) -> RemovalGuard {
        RemovalGuard {
            docker,
            name,
            armed: true,
        }
    }

    /// Forgets the container: the caller removed it.
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }

    pub(super) async fn remove_now(mut self) {
        remove_container(&self.docker, &self.name, false).await;
        // Only now: if this future is dropped mid-removal, `drop` retries.
        self.armed = false;
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
        runtime.spawn(async move {
            remove_container(&docker, &name, true).await;
        });
    }
}

/// Force-removes a container (killing it if running). Returns whether this
/// call removed it. With `create_in_flight`, a container not found yet is
/// looked for once more, in case its create call was still on its way.
async fn remove_container(docker: &Docker, name: &str, create_in_flight: bool) -> bool {
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
/// exited and [`DRAIN_GRACE`] passed, or `hard_deadline`.
async fn pump_output(
    mut output: OutputStream,
    sink: &mut LogSink,
    hard_deadline: tokio::time::Instant,
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
                deadline = deadline.min(tokio::time::Instant::now() + DRAIN_GRACE);
            }
        }
    }
}

/// The engine addresses to try, in order.
pub(crate) fn socket_candidates(
    docker_host: Option<&str>,
    hint: Option<&str>,
    xdg_runtime_dir: Option<&str>,
    tls: &TlsEnv,
) -> Result<Vec<EngineAddress>, CageError> {
    if let Some(host) = docker_host.map(str::trim).filter(|h| !h.is_empty()) {
        return Ok(vec![EngineAddress::parse(host, "DOCKER_HOST", tls)?]);
    }
    let xdg = xdg_runtime_dir.filter(|x| !x.is_empty()).map(PathBuf::from);
    let docker_rootful = PathBuf::from("/var/run/docker.sock");
    let podman_rootful = PathBuf::from("/run/podman/podman.sock");
    let docker_user = xdg.as_ref().map(|x| x.join("docker.sock"));
    let podman_user = xdg.as_ref().map(|x| x.join("podman/podman.sock"));
    let sockets: Vec<PathBuf> = match hint.map(str::trim).filter(|h| !h.is_empty()) {
        Some("docker") => [Some(docker_rootful), docker_user]
            .into_iter()
            .flatten()
            .collect(),
        Some("podman") => [Some(podman_rootful), podman_user]
            .into_iter()
            .flatten()
            .collect(),
        Some(address) => return Ok(vec![EngineAddress::parse(address, "engine", tls)?]),
        None => [
            Some(docker_rootful),
            Some(podman_rootful),
            podman_user,
            docker_user,
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    Ok(sockets.into_iter().map(EngineAddress::Unix).collect())
}

/// Whether `PROCTOR_TRANSFER=tar` asks for the tar path on a local engine.
fn transfer_forced() -> bool {
    std::env::var("PROCTOR_TRANSFER").is_ok_and(|v| v.trim() == "tar")
}

/// A bollard client for `address` speaking API `version`.
fn client(address: &EngineAddress, version: &ClientVersion) -> Result<Docker, BollardError> {
    let timeout = API_TIMEOUT.as_secs();
    match address {
        EngineAddress::Unix(path) => {
            Docker::connect_with_unix(&path.to_string_lossy(), timeout, version)
        }
        EngineAddress::Tcp {
            authority,
            tls: None,
        } => Docker::connect_with_http(&format!("tcp://{authority}"), timeout, version),
        EngineAddress::Tcp {
            authority,
            tls: Some(files),
        } => {
            // Not `connect_with_ssl`: it also trusts the system's roots and
            // sends no client certificate when it cannot parse one. This
            // is the same TLS setup as the libpod calls: only `ca.pem`.
            let config = libpod::tls_config(files).map_err(|e| BollardError::IOError {
                err: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?;
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http1()
                .wrap_connector(http);
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .build(https);
            Docker::connect_with_custom_transport(
                move |request: bollard::BollardRequest| {
                    let client = client.clone();
                    async move { client.request(request).await.map_err(BollardError::from) }
                },
                Some(format!("https://{authority}")),
                timeout,
                version,
            )
        }
    }
}

/// `docker`, or a client for the same address speaking the engine's API
/// version when that is older than bollard's default.
fn negotiated(
    docker: Docker,
    address: &EngineAddress,
    api_version: Option<&str>,
) -> Result<Docker, CageError> {
    let parsed = api_version.and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        Some(ClientVersion {
            major_version: major.parse().ok()?,
            minor_version: minor.parse().ok()?,
        })
    });
    let Some(server) = parsed else {
        return Err(CageError::EngineReply {
            op: "version",
            status: 200,
            message: format!(
                "the engine reported no usable API version ({})",
                api_version.unwrap_or("none")
            ),
        });
    };
    if server >= *API_DEFAULT_VERSION {
        return Ok(docker);
    }
    client(address, &server).map_err(|source| CageError::Engine {
        op: "connect",
        source,
    })
}

/// Why an address gave no client.
enum PingError {
    /// Nothing answers there; the next candidate may.
    NoAnswer(String),
    /// The setting itself is wrong (unreadable TLS files): no use trying on.
    Fatal(CageError),
}

/// A client for `address` if the engine behind it answers a ping in time;
/// otherwise why not.
async fn ping(address: &EngineAddress) -> Result<Docker, PingError> {
    match address {
        EngineAddress::Unix(socket) if !socket.exists() => {
            return Err(PingError::NoAnswer("no such socket".into()));
        }
        EngineAddress::Tcp {
            tls: Some(files), ..
        } => {
            files.check_readable().map_err(PingError::Fatal)?;
            // bollard reads the client certificate only during the
            // handshake and sends none if it cannot parse it; parse every
            // file now so a broken one is named, not blamed on the engine.
            libpod::Endpoint::new(address).map_err(PingError::Fatal)?;
        }
        _ => {}
    }
    let docker = client(address, API_DEFAULT_VERSION).map_err(|e| match address {
        EngineAddress::Tcp { tls: Some(_), .. } => PingError::Fatal(CageError::Engine {
            op: "connect",
            source: e,
        }),
        _ => PingError::NoAnswer(e.to_string()),
    })?;
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(error)) => match address {
            EngineAddress::Tcp {
                authority,
                tls: Some(files),
            } => {
                let mut reason = tls_failure(&error, files);
                if reason.is_none() {
                    // Over TLS 1.3 the engine refuses a client certificate
                    // after the client's handshake is done, and hyper may
                    // see only the closed connection, not the alert: ask
                    // once more and read the reply.
                    if let Ok(endpoint) = libpod::Endpoint::new(address) {
                        if let Err(probe) = libpod::ping(&endpoint, PING_TIMEOUT).await {
                            reason = tls_failure(&probe, files);
                        }
                    }
                }
                match reason {
                    Some(reason) => Err(PingError::Fatal(CageError::Tls {
                        address: format!("tcp://{authority}"),
                        reason,
                    })),
                    None => Err(PingError::NoAnswer(with_causes(&error))),
                }
            }
            _ => Err(PingError::NoAnswer(with_causes(&error))),
        },
        Err(_) => Err(PingError::NoAnswer(format!(
            "no answer within {}s",
            PING_TIMEOUT.as_secs()
        ))),
    }
}

/// What went wrong in a TLS handshake, said in terms of Docker's files,
/// if `error` comes from one.
fn tls_failure(error: &(dyn std::error::Error + 'static), files: &TlsFiles) -> Option<String> {
    let mut cause = Some(error);
    let tls = 'found: loop {
        let current = cause?;
        // std's io::Error hides the error it wraps from `source()`, and
        // hyper-rustls wraps tokio-rustls's io::Error in another.
        let mut inner = Some(current);
        while let Some(error) = inner {
            if let Some(tls) = error.downcast_ref::<rustls::Error>() {
                break 'found tls;
            }
            inner = error
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|e| e as &(dyn std::error::Error + 'static));
        }
        cause = current.source();
    };
    Some(match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            ..
        }) => format!(
            "the engine's certificate is not for this host name or address ({tls})"
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "the engine's certificate is not signed by `{}` or not valid ({tls})",
            files.ca.display()
        ),
        rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::CertificateExpired
            | rustls::AlertDescription::CertificateRevoked
            | rustls::AlertDescription::UnsupportedCertificate
            | rustls::AlertDescription::AccessDenied,
        ) => match &files.client {
            Some(client) => format!(
                "the engine refused the client certificate `{}` ({tls}); is it signed by the CA the engine trusts?",
                client.cert.display()
            ),
            None => format!(
                "the engine wants a client certificate ({tls}), and `DOCKER_CERT_PATH` `{}` holds none: put `cert.pem` and `key.pem` there",
                files.dir.display()
            ),
        },
        other => other.to_string(),
    })
}

/// `error` and its sources, each that adds something, joined by `: `
/// (bollard's transport errors say only `client error (Connect)` at the
/// top; why, such as a certificate the CA did not sign, is in the sources).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Whether mounting `source` would hand the container a socket: the engine
/// socket itself or a directory above it, or any other socket file.
fn exposes_socket(source: &Path, engine: &EngineAddress) -> bool {
    if let EngineAddress::Unix(engine_socket) = engine {
        let engine = std::fs::canonicalize(engine_socket).unwrap_or_else(|_| engine_socket.into());
        if engine.starts_with(source) {
            return true;
        }
    }
    std::fs::metadata(source).is_ok_and(|m| m.file_type().is_socket())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: Vec<EngineAddress>) -> Vec<String> {
        list.into_iter().map(|a| a.to_string()).collect()
    }

    fn candidates(
        docker_host: Option<&str>,
        hint: Option<&str>,
        xdg: Option<&str>,
    ) -> Result<Vec<EngineAddress>, CageError> {
        socket_candidates(docker_host, hint, xdg, &TlsEnv::default())
    }

    #[test]
    fn docker_host_wins_over_hint() {
        let list = candidates(Some("unix:///x/d.sock"), Some("podman"), None).unwrap();
        assert_eq!(paths(list), ["unix:///x/d.sock"]);
    }

    #[test]
    fn tcp_docker_host_and_engine_setting_are_remote() {
        let list = candidates(Some("tcp://h:2376"), None, None).unwrap();
        assert_eq!(paths(list.clone()), ["tcp://h:2376"]);
        assert!(list[0].is_remote());
        let list = candidates(None, Some("tcp://127.0.0.1:9"), None).unwrap();
        assert_eq!(paths(list), ["tcp://127.0.0.1:9"]);
        let error = candidates(Some("ssh://me@h"), None, None).unwrap_err();
        assert!(
            error.to_string().contains("`DOCKER_HOST` `ssh://me@h`"),
            "{error}"
        );
    }

    #[test]
    fn hints_name_engines_or_sockets() {
        let list = candidates(None, Some("podman"), Some("/run/user/1000")).unwrap();
        assert_eq!(
            paths(list),
            [
                "unix:///run/podman/podman.sock",
                "unix:///run/user/1000/podman/podman.sock"
            ]
        );
        let list = candidates(None, Some("/tmp/e.sock"), None).unwrap();
        assert_eq!(paths(list), ["unix:///tmp/e.sock"]);
        let error = candidates(None, Some("kubernetes"), None).unwrap_err();
        assert!(
            error.to_string().contains("`engine` `kubernetes`"),
            "{error}"
        );
    }

    #[test]
    fn default_order_prefers_rootful_then_user_sockets() {
        let list = candidates(Some(""), None, Some("/run/user/1")).unwrap();
        assert_eq!(
            paths(list),
            [
                "unix:///var/run/docker.sock",
                "unix:///run/podman/podman.sock",
                "unix:///run/user/1/podman/podman.sock",
                "unix:///run/user/1/docker.sock"
            ]
        );
    }

    #[test]
    fn mounting_above_the_engine_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = EngineAddress::Unix(dir.path().join("run/engine.sock"));
        assert!(exposes_socket(dir.path(), &socket));
        assert!(exposes_socket(&dir.path().join("run"), &socket));
        assert!(!exposes_socket(&dir.path().join("work"), &socket));
    }
}
