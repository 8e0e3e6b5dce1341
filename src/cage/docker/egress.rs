//! A loop's network: the *holder* container whose network namespace the
//! loop's agents join, and, when `network:` is a host list, the egress
//! proxy (`cage/proxy.rs`) that is the holder's only way out.
//!
//! One holder per (run, loop, network policy), created on first use (when
//! an agent is prepared or run) and kept until the run, or the cage's
//! [`settle`](crate::cage::Cage::settle), ends; sequential agents of a loop
//! share its namespace, loops never share one. A holder runs a single
//! long-lived process under the usual hardening and nothing else listens
//! in it:
//!
//! - `open`: `sleep` on the engine's default bridge. Agents that join it
//!   get no network setup of their own (on Docker 20.10, no re-exec of
//!   dockerd as the `libnetwork-setkey` hook per agent).
//! - a host list: no network but loopback, and proctor's relay listening on
//!   `127.0.0.1:PROXY_PORT`, which carries each connection over a unix
//!   socket (in a host directory mounted into the holder and the proxy,
//!   never into an agent) to the proxy. The proxy runs on the default
//!   bridge (or the config's `egress_network`), admits only the listed
//!   hosts and logs every refusal to a file on the host, read after each
//!   container to report `network_denied`.
//!
//! A verifier with a host list gets a holder of its own for that one
//! container (verifiers never share a namespace), relaying to the loop's
//! proxy. Holders and proxies are labelled like containers (roles `netns`
//! and `proxy`) and removed with them: at the end of the run, on
//! interruption, by the reaper, and by `settle`. A holder found dead is
//! replaced before the next agent runs; an agent whose holder dies under it
//! has less network than its policy, never more. This file must never give
//! a holder or the proxy anything but the toolchain, proctor's own binary,
//! the socket directory and their log files, and never mount the socket
//! directory into an agent.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{InspectContainerOptions, ListNetworksOptionsBuilder};

use super::lifecycle::{create_attach_start, keep_attached, remove_container};
use super::runtime::{explain_runtime_failure, InitPlan};
use super::{bounded, lock, DockerCage, EngineKind, EngineLink, API_TIMEOUT};
use crate::cage::host_image::{private_temp_dir, toolchain_binds, unique_suffix};
use crate::cage::proxy::{
    AllowList, LogLine, PROXY_EXE_IN_CONTAINER, PROXY_LOG_IN_CONTAINER, PROXY_PORT,
    PROXY_SOCKET_DIR_IN_CONTAINER, PROXY_SOCKET_NAME, RELAY_LOG_IN_CONTAINER,
};
use crate::cage::spec::{BindSpec, ContainerSpec, NetMode, DEFAULT_PATH, HOME_DIR};
use crate::cage::{
    Cage, CageError, Invocation, Labels, Limits, NetworkPolicy, Role, HOST_IMAGE, LABEL_LOOP,
    LABEL_REPO, LABEL_ROLE, LABEL_RUN,
};

/// The role label of egress proxy containers.
pub const PROXY_ROLE: &str = "proxy";
/// The role label of network holder containers.
pub const HOLDER_ROLE: &str = "netns";
/// Holders and the proxy run as `nobody`: they need no file of the
/// repository's owner.
const SIDECAR_USER: (u32, u32) = (65534, 65534);
/// How long a fresh proxy or relay may take to report that it listens (the
/// relay waits up to 15 s for the proxy behind it).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The open holder's process: it stays alive until its stdin closes,
/// which is when proctor goes away ([`keep_attached`]); `read` is a shell
/// builtin, so it needs nothing from the image.
const SLEEPER: &str = "while read -r proctor_line; do :; done";
/// `proctor __proxy`'s flag that ends the proxy or relay when its stdin
/// closes, like [`SLEEPER`].
const UNTIL_STDIN_CLOSES: &str = "--until-stdin-closes";

/// Whether a container of `inv` runs in a loop's shared holder: agents with
/// a network (`open` or a host list). `none` agents and every verifier get
/// a fresh namespace of their own.
pub(crate) fn shares_holder(inv: &Invocation) -> bool {
    inv.labels.role == Role::Agent && inv.network != NetworkPolicy::None
}

/// Whether a container of `inv` gets a holder of its own for its one run:
/// a verifier or a judge with a host list, which must reach the proxy but
/// never shares a namespace.
pub(crate) fn needs_private_holder(inv: &Invocation) -> bool {
    inv.labels.role != Role::Agent && matches!(inv.network, NetworkPolicy::Hosts(_))
}

/// Settings and live state of the network side of a [`DockerCage`].
#[derive(Debug, Default)]
pub(crate) struct EgressTable {
    holders: Mutex<HashMap<LoopKey, Arc<Holder>>>,
    proxies: Mutex<HashMap<LoopKey, Arc<Egress>>>,
    /// Holders and proxies found dead and replaced during the run; removed
    /// with the rest (on Podman a holder cannot go before the containers
    /// that joined it).
    retired_holders: Mutex<Vec<Arc<Holder>>>,
    retired_proxies: Mutex<Vec<Arc<Egress>>>,
    /// The proxy's binary; `None` = this very executable.
    exe: Option<PathBuf>,
    /// The network the proxy reaches the listed hosts through; `None` =
    /// the engine's default bridge.
    network: Option<String>,
}

/// A loop of a run, and one of its network policies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LoopKey {
    repo: String,
    run: String,
    loop_id: String,
    /// `open`, or the canonical host list.
    net: String,
}

impl LoopKey {
    fn new(labels: &Labels, net: String) -> LoopKey {
        LoopKey {
            repo: labels.repo.clone(),
            run: labels.run.clone(),
            loop_id: labels.loop_id.clone(),
            net,
        }
    }
}

/// One loop's egress proxy: its container, the host directory of its
/// socket, and its log.
#[derive(Debug)]
pub(crate) struct Egress {
    proxy: String,
    allow: AllowList,
    dir: PathBuf,
    log: PathBuf,
    /// How far the log has been read.
    read_upto: Mutex<u64>,
    labels: HashMap<String, String>,
    started: tokio::sync::OnceCell<()>,
    /// Whether a start was ever tried, so a retry clears its leftover.
    attempted: AtomicBool,
}

impl Egress {
    fn new(labels: &Labels, allow: AllowList) -> Result<Egress, CageError> {
        let suffix = unique_suffix();
        let dir = private_temp_dir()?.join(format!("egress-{suffix}"));
        create_sidecar_dir(&dir)?;
        let log = private_temp_dir()?.join(format!("egress-{suffix}.log"));
        if let Err(error) = create_sidecar_log(&log) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(error);
        }
        Ok(Egress {
            proxy: format!("proctor-proxy-{suffix}"),
            allow,
            dir,
            log,
            read_upto: Mutex::new(0),
            labels: base_labels(labels),
            started: tokio::sync::OnceCell::new(),
            attempted: AtomicBool::new(false),
        })
    }

    /// Targets refused since the last call, oldest first.
    pub(crate) fn take_denials(&self) -> Vec<String> {
        let mut upto = lock(&self.read_upto);
        let mut fresh = Vec::new();
        let read = std::fs::File::open(&self.log).and_then(|mut file| {
            file.seek(SeekFrom::Start(*upto))?;
            file.read_to_end(&mut fresh)
        });
        if read.is_err() {
            return Vec::new();
        }
        // Only whole lines: a line being written is read next time.
        let complete = fresh.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        *upto += complete as u64;
        String::from_utf8_lossy(&fresh[..complete])
            .lines()
            .filter_map(LogLine::parse)
            .filter_map(|line| match line {
                LogLine::Denied { target, .. } => Some(target),
                LogLine::Ready { .. } => None,
            })
            .collect()
    }

    /// Starts the proxy unless it is started (or being started) already.
    async fn start(&self, sidecars: &Sidecars) -> Result<(), CageError> {
        self.started
            .get_or_try_init(|| async {
                if self.attempted.swap(true, Ordering::SeqCst) {
                    remove_container(&sidecars.link.docker, &self.proxy, false).await;
                }
                let spec = sidecars.proxy_spec(self)?;
                let started = async {
                    sidecars.start_detached(&spec).await?;
                    sidecars
                        .wait_ready(&self.proxy, &self.log, "the egress proxy")
                        .await
                };
                match started.await {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        remove_container(&sidecars.link.docker, &self.proxy, false).await;
                        Err(error)
                    }
                }
            })
            .await
            .map(|_| ())
    }

    fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A network holder: the container whose namespace agents join.
#[derive(Debug)]
pub(crate) struct Holder {
    /// The container's name, which joining containers name.
    pub(crate) name: String,
    /// The proxy behind the relay; `None` for an `open` holder.
    egress: Option<Arc<Egress>>,
    relay_log: Option<PathBuf>,
    labels: HashMap<String, String>,
    started: tokio::sync::OnceCell<()>,
    attempted: AtomicBool,
}

impl Holder {
    fn new(labels: &Labels, egress: Option<Arc<Egress>>) -> Result<Holder, CageError> {
        let suffix = unique_suffix();
        let relay_log = match &egress {
            Some(_) => {
                let log = private_temp_dir()?.join(format!("relay-{suffix}.log"));
                create_sidecar_log(&log)?;
                Some(log)
            }
            None => None,
        };
        Ok(Holder {
            name: format!("proctor-netns-{suffix}"),
            egress,
            relay_log,
            labels: base_labels(labels),
            started: tokio::sync::OnceCell::new(),
            attempted: AtomicBool::new(false),
        })
    }

    /// The loop's proxy, for a holder with a host list.
    pub(crate) fn egress(&self) -> Option<&Arc<Egress>> {
        self.egress.as_ref()
    }

    /// Whether the namespace has an interface besides loopback.
    pub(crate) fn has_network(&self) -> bool {
        self.egress.is_none()
    }

    /// The variables that point HTTP clients at the relay: nothing for an
    /// `open` holder. `NO_PROXY` is set empty so that no inherited default
    /// exempts a host.
    pub(crate) fn proxy_env(&self) -> Vec<String> {
        if self.egress.is_none() {
            return Vec::new();
        }
        let url = format!("http://127.0.0.1:{PROXY_PORT}");
        vec![
            format!("HTTP_PROXY={url}"),
            format!("HTTPS_PROXY={url}"),
            format!("http_proxy={url}"),
            format!("https_proxy={url}"),
            "NO_PROXY=".into(),
            "no_proxy=".into(),
        ]
    }

    /// Starts the holder (and the proxy behind it) unless it is started
    /// or being started already: when this returns `Ok`, containers can
    /// join it and, with a host list, its relay reaches the proxy.
    pub(super) async fn start(&self, sidecars: &Sidecars) -> Result<(), CageError> {
        self.started
            .get_or_try_init(|| async {
                if let Some(egress) = &self.egress {
                    egress.start(sidecars).await?;
                }
                if self.attempted.swap(true, Ordering::SeqCst) {
                    remove_container(&sidecars.link.docker, &self.name, false).await;
                }
                let spec = sidecars.holder_spec(self)?;
                let started = async {
                    sidecars.start_detached(&spec).await?;
                    match &self.relay_log {
                        Some(log) => sidecars.wait_ready(&self.name, log, "the relay").await,
                        None => Ok(()),
                    }
                };
                match started.await {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        remove_container(&sidecars.link.docker, &self.name, false).await;
                        Err(error)
                    }
                }
            })
            .await
            .map(|_| ())
    }

    fn remove_files(&self) {
        if let Some(log) = &self.relay_log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// The labels every holder and proxy of a loop carries (the role is added
/// per container).
fn base_labels(labels: &Labels) -> HashMap<String, String> {
    let mut base = HashMap::from([
        (LABEL_REPO.to_string(), labels.repo.clone()),
        (LABEL_RUN.to_string(), labels.run.clone()),
        (LABEL_LOOP.to_string(), labels.loop_id.clone()),
    ]);
    base.extend(crate::cage::creator_labels());
    base
}

fn labels_match(have: &HashMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| have.get(*k).is_some_and(|have| have == v))
}

/// What proctor needs to start its own containers (holders, proxies),
/// owned, so a start can run in a background task (a holder created while
/// an agent is prepared).
#[derive(Debug, Clone)]
pub(super) struct Sidecars {
    link: EngineLink,
    image_id: String,
    init: InitPlan,
    /// Runtimes to try in order, and whether the first that works is kept.
    plan: Vec<Option<String>>,
    probing: bool,
    settled: Arc<Mutex<Option<Option<String>>>>,
    /// Toolchain and identity binds of a `nobody` container.
    binds: Vec<BindSpec>,
    /// proctor's own binary, or why it cannot be used.
    exe: Result<PathBuf, String>,
    egress_network: Option<String>,
}

impl Sidecars {
    fn spec(
        &self,
        name: &str,
        cmd: Vec<String>,
        network: NetMode,
        mut labels: HashMap<String, String>,
        role: &'static str,
        limits: Limits,
    ) -> ContainerSpec {
        labels.insert(LABEL_ROLE.to_string(), role.to_string());
        ContainerSpec {
            name: name.to_string(),
            image_id: self.image_id.clone(),
            cmd,
            deadline: None,
            workdir: "/".into(),
            user: format!("{}:{}", SIDECAR_USER.0, SIDECAR_USER.1),
            env: vec![
                format!("PATH={DEFAULT_PATH}"),
                format!("HOME={HOME_DIR}"),
                "PROCTOR_LOG=warn".into(),
            ],
            labels,
            // Held open by proctor: the container ends when proctor does.
            stdin: true,
            binds: self.binds.clone(),
            volumes: Vec::new(),
            overlays: Vec::new(),
            skip_network_stack: true,
            network,
            limits,
            init: self.init != InitPlan::None,
            init_path: match &self.init {
                InitPlan::Path(path) => Some(path.clone()),
                _ => None,
            },
            role,
        }
    }

    /// `proctor __proxy <args>` with proctor's binary mounted read-only.
    fn own_binary_spec(
        &self,
        name: &str,
        args: Vec<String>,
        network: NetMode,
        labels: HashMap<String, String>,
        role: &'static str,
    ) -> Result<ContainerSpec, CageError> {
        let exe = self
            .exe
            .clone()
            .map_err(|reason| CageError::InvalidInvocation { reason })?;
        let mut cmd = vec![
            PROXY_EXE_IN_CONTAINER.to_string(),
            "__proxy".into(),
            UNTIL_STDIN_CLOSES.into(),
        ];
        cmd.extend(args);
        let mut spec = self.spec(name, cmd, network, labels, role, proxy_limits());
        spec.binds.push(BindSpec {
            source: exe,
            target: PROXY_EXE_IN_CONTAINER.into(),
            read_only: true,
        });
        Ok(spec)
    }

    fn proxy_spec(&self, egress: &Egress) -> Result<ContainerSpec, CageError> {
        let network = match &self.egress_network {
            Some(name) => NetMode::Network(name.clone()),
            None => NetMode::Open,
        };
        let mut spec = self.own_binary_spec(
            &egress.proxy,
            vec![
                "--listen-unix".into(),
                format!("{PROXY_SOCKET_DIR_IN_CONTAINER}/{PROXY_SOCKET_NAME}"),
                "--allow".into(),
                egress.allow.to_arg(),
                "--log".into(),
                PROXY_LOG_IN_CONTAINER.into(),
            ],
            network,
            egress.labels.clone(),
            PROXY_ROLE,
        )?;
        spec.binds.push(BindSpec {
            source: egress.dir.clone(),
            target: PROXY_SOCKET_DIR_IN_CONTAINER.into(),
            read_only: false,
        });
        spec.binds.push(BindSpec {
            source: egress.log.clone(),
            target: PROXY_LOG_IN_CONTAINER.into(),
            read_only: false,
        });
        Ok(spec)
    }

    fn holder_spec(&self, holder: &Holder) -> Result<ContainerSpec, CageError> {
        let (Some(egress), Some(relay_log)) = (&holder.egress, &holder.relay_log) else {
            let cmd = vec!["/bin/sh".into(), "-c".into(), SLEEPER.into()];
            return Ok(self.spec(
                &holder.name,
                cmd,
                NetMode::Open,
                holder.labels.clone(),
                HOLDER_ROLE,
                sleeper_limits(),
            ));
        };
        let mut spec = self.own_binary_spec(
            &holder.name,
            vec![
                "--listen".into(),
                format!("127.0.0.1:{PROXY_PORT}"),
                "--relay-to".into(),
                format!("{PROXY_SOCKET_DIR_IN_CONTAINER}/{PROXY_SOCKET_NAME}"),
                "--log".into(),
                RELAY_LOG_IN_CONTAINER.into(),
            ],
            NetMode::None,
            holder.labels.clone(),
            HOLDER_ROLE,
        )?;
        // Read-only: connecting to a socket needs no write access to the
        // mount, and the relay has nothing to create there.
        spec.binds.push(BindSpec {
            source: egress.dir.clone(),
            target: PROXY_SOCKET_DIR_IN_CONTAINER.into(),
            read_only: true,
        });
        spec.binds.push(BindSpec {
            source: relay_log.clone(),
            target: RELAY_LOG_IN_CONTAINER.into(),
            read_only: false,
        });
        Ok(spec)
    }

    /// Creates and starts a container that lives until proctor goes away
    /// (or removes it; [`keep_attached`]), with the same
    /// runtime choice as every other container.
    async fn start_detached(&self, spec: &ContainerSpec) -> Result<(), CageError> {
        let mut last_error = None;
        for runtime in &self.plan {
            match self.create_start(spec, runtime.as_deref()).await {
                Ok(()) => {
                    if self.probing {
                        *lock(&self.settled) = Some(runtime.clone());
                    }
                    return Ok(());
                }
                Err(error) => {
                    remove_container(&self.link.docker, &spec.name, false).await;
                    if !self.probing || matches!(error, CageError::Weakened { .. }) {
                        return Err(explain_runtime_failure(self.link.kind, error));
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(explain_runtime_failure(
            self.link.kind,
            last_error.unwrap_or_else(|| CageError::Unsupported {
                what: "an engine without any OCI runtime".into(),
            }),
        ))
    }

    async fn create_start(
        &self,
        spec: &ContainerSpec,
        runtime: Option<&str>,
    ) -> Result<(), CageError> {
        let (_, attach) = create_attach_start(&self.link, spec, runtime).await?;
        keep_attached(attach);
        Ok(())
    }

    /// Waits until the proxy or relay in `container` has logged that it
    /// listens.
    async fn wait_ready(&self, container: &str, log: &Path, what: &str) -> Result<(), CageError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text
                .lines()
                .any(|l| matches!(LogLine::parse(l), Some(LogLine::Ready { .. })))
            {
                return Ok(());
            }
            if Instant::now() >= deadline || !is_running(&self.link, container).await {
                return Err(self.not_ready(what));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    fn not_ready(&self, what: &str) -> CageError {
        if what == "the relay" {
            // The proxy was ready, so what failed is the unix socket
            // between two containers: something on this host (an LSM, a
            // remote engine) keeps them from sharing it.
            return CageError::Weakened {
                engine: self.link.describe.clone(),
                what: "connect a loop's network holder to its egress proxy through a unix socket in a host directory mounted into both".into(),
                hint: "run proctor against a local engine that honours bind mounts of the host's temp directory (SELinux hosts: relabelling is not done yet), or use `network: none` or `open`".into(),
            };
        }
        CageError::EngineReply {
            op: "start egress proxy",
            status: 0,
            message: format!(
                "{what} did not start listening within {}s",
                READY_TIMEOUT.as_secs()
            ),
        }
    }
}

async fn is_running(link: &EngineLink, container: &str) -> bool {
    let inspect = tokio::time::timeout(
        API_TIMEOUT,
        link.docker
            .inspect_container(container, None::<InspectContainerOptions>),
    )
    .await;
    matches!(inspect, Ok(Ok(i)) if i.state.as_ref().and_then(|s| s.running).unwrap_or(false))
}

impl DockerCage {
    /// Runs egress proxies and relays from this binary instead of the
    /// running one (tests run from a test harness, not from `proctor`).
    pub fn with_proxy_exe(mut self, exe: PathBuf) -> DockerCage {
        self.egress.exe = Some(exe);
        self
    }

    /// Lets egress proxies reach the listed hosts through this engine
    /// network instead of the default bridge (`egress_network` in the
    /// config).
    pub fn with_egress_network(mut self, network: Option<String>) -> DockerCage {
        self.egress.network = network.filter(|n| !n.trim().is_empty());
        self
    }

    /// Names of the network holders of this cage that are alive or being
    /// started (for tests and diagnostics).
    pub fn holder_names(&self) -> Vec<String> {
        lock(&self.egress.holders)
            .values()
            .map(|h| h.name.clone())
            .collect()
    }

    /// The launcher of proctor's own containers, with the host image `image_id`.
    fn sidecars(&self, image_id: String) -> Result<Sidecars, CageError> {
        if self.init == InitPlan::None {
            return Err(self.no_init());
        }
        self.refuse_ignored_runtime()?;
        let (plan, probing) = self.runtime_plan();
        let mut binds = toolchain_binds();
        binds.extend(self.identities.binds(SIDECAR_USER.0, SIDECAR_USER.1)?);
        Ok(Sidecars {
            link: self.link(),
            image_id,
            init: self.init.clone(),
            plan,
            probing,
            settled: self.settled_runtime.clone(),
            binds,
            exe: self.proxy_exe(),
            egress_network: self.egress.network.clone(),
        })
    }

    /// [`DockerCage::sidecars`] if the host image is known already (no
    /// engine call), for preparing containers ahead of need.
    pub(super) fn sidecars_now(&self) -> Option<Sidecars> {
        let image_id = lock(&self.images).get(HOST_IMAGE).cloned()?;
        self.sidecars(image_id).ok()
    }

    async fn sidecars_ready(&self) -> Result<Sidecars, CageError> {
        let image_id = self.ensure_image(HOST_IMAGE).await?;
        self.sidecars(image_id)
    }

    fn proxy_exe(&self) -> Result<PathBuf, String> {
        let exe = match &self.egress.exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("proctor's own binary cannot be found: {e}"))?,
        };
        std::fs::canonicalize(&exe).map_err(|e| {
            format!(
                "the egress proxy runs proctor's own binary, and `{}` cannot be read: {e}",
                exe.display()
            )
        })
    }

    /// The loop's holder for `inv`'s policy as recorded, not necessarily
    /// started: no engine call, so preparing an agent can name it.
    pub(super) fn holder_slot(&self, inv: &Invocation) -> Result<Arc<Holder>, CageError> {
        let net = match &inv.network {
            NetworkPolicy::Open => "open".to_string(),
            NetworkPolicy::Hosts(hosts) => format!("hosts:{}", allow_list(hosts)?.to_arg()),
            NetworkPolicy::None => {
                return Err(CageError::InvalidInvocation {
                    reason: "a container without network joins no holder".into(),
                })
            }
        };
        let key = LoopKey::new(&inv.labels, net);
        if let Some(holder) = lock(&self.egress.holders).get(&key) {
            return Ok(holder.clone());
        }
        let egress = match &inv.network {
            NetworkPolicy::Hosts(hosts) => Some(self.egress_slot(&inv.labels, hosts)?),
            _ => None,
        };
        let fresh = Arc::new(Holder::new(&inv.labels, egress)?);
        let mut holders = lock(&self.egress.holders);
        // Another caller may have made one meanwhile: keep theirs.
        let holder = holders.entry(key).or_insert_with(|| fresh.clone()).clone();
        if !Arc::ptr_eq(&holder, &fresh) {
            fresh.remove_files();
        }
        Ok(holder)
    }

    fn egress_slot(&self, labels: &Labels, hosts: &[String]) -> Result<Arc<Egress>, CageError> {
        let allow = allow_list(hosts)?;
        let key = LoopKey::new(labels, allow.to_arg());
        if let Some(egress) = lock(&self.egress.proxies).get(&key) {
            return Ok(egress.clone());
        }
        let fresh = Arc::new(Egress::new(labels, allow)?);
        let mut proxies = lock(&self.egress.proxies);
        let egress = proxies.entry(key).or_insert_with(|| fresh.clone()).clone();
        if !Arc::ptr_eq(&egress, &fresh) {
            fresh.remove_files();
        }
        Ok(egress)
    }

    /// The loop's holder for `inv`, started, alive, and (with a host list)
    /// with a live proxy behind it; a dead one is replaced.
    pub(super) async fn holder_for(&self, inv: &Invocation) -> Result<Arc<Holder>, CageError> {
        let sidecars = self.sidecars_ready().await?;
        let mut holder = self.holder_slot(inv)?;
        if holder.started.initialized() {
            let link = self.link();
            let proxy_alive = match &holder.egress {
                Some(egress) => is_running(&link, &egress.proxy).await,
                None => true,
            };
            if !proxy_alive || !is_running(&link, &holder.name).await {
                tracing::warn!(holder = %holder.name, "the loop's network holder or proxy is gone; starting another");
                self.retire(&holder, !proxy_alive);
                holder = self.holder_slot(inv)?;
            }
        }
        holder.start(&sidecars).await?;
        Ok(holder)
    }

    /// A holder for `inv` alone (a verifier with a host list), started;
    /// the caller removes it with [`DockerCage::remove_private_holder`].
    pub(super) async fn private_holder(&self, inv: &Invocation) -> Result<Arc<Holder>, CageError> {
        let NetworkPolicy::Hosts(hosts) = &inv.network else {
            return Err(CageError::InvalidInvocation {
                reason: "only a host list needs a holder of its own".into(),
            });
        };
        let sidecars = self.sidecars_ready().await?;
        let mut egress = self.egress_slot(&inv.labels, hosts)?;
        if egress.started.initialized() && !is_running(&self.link(), &egress.proxy).await {
            tracing::warn!(proxy = %egress.proxy, "the loop's egress proxy is gone; starting another");
            self.retire_egress(&egress);
            egress = self.egress_slot(&inv.labels, hosts)?;
        }
        let holder = Arc::new(Holder::new(&inv.labels, Some(egress))?);
        if let Err(error) = holder.start(&sidecars).await {
            holder.remove_files();
            return Err(error);
        }
        Ok(holder)
    }

    pub(super) async fn remove_private_holder(&self, holder: &Holder) {
        remove_container(&self.docker, &holder.name, false).await;
        holder.remove_files();
    }

    /// Takes a dead holder (and its proxy, if that is dead too) out of use;
    /// they are removed with the rest.
    fn retire(&self, holder: &Arc<Holder>, proxy_too: bool) {
        let mut holders = lock(&self.egress.holders);
        holders.retain(|_, h| !Arc::ptr_eq(h, holder));
        drop(holders);
        lock(&self.egress.retired_holders).push(holder.clone());
        if let (true, Some(egress)) = (proxy_too, &holder.egress) {
            self.retire_egress(egress);
        }
    }

    fn retire_egress(&self, egress: &Arc<Egress>) {
        lock(&self.egress.proxies).retain(|_, e| !Arc::ptr_eq(e, egress));
        lock(&self.egress.retired_proxies).push(egress.clone());
    }

    /// Removes the holders and proxies of this cage whose labels match all
    /// of `labels` (all of them for an empty filter): holders first, since
    /// Podman keeps a container whose namespace others joined, then the
    /// proxies behind them. Containers that joined a holder must be gone.
    pub(super) async fn release_holders(&self, labels: &[(&str, &str)]) {
        let matching = |have: &HashMap<String, String>| labels_match(have, labels);
        let mut holders: Vec<Arc<Holder>> = Vec::new();
        lock(&self.egress.holders).retain(|_, h| {
            let hit = matching(&h.labels);
            if hit {
                holders.push(h.clone());
            }
            !hit
        });
        lock(&self.egress.retired_holders).retain(|h| {
            let hit = matching(&h.labels);
            if hit {
                holders.push(h.clone());
            }
            !hit
        });
        let mut proxies: Vec<Arc<Egress>> = Vec::new();
        lock(&self.egress.proxies).retain(|_, e| {
            let hit = matching(&e.labels);
            if hit {
                proxies.push(e.clone());
            }
            !hit
        });
        lock(&self.egress.retired_proxies).retain(|e| {
            let hit = matching(&e.labels);
            if hit {
                proxies.push(e.clone());
            }
            !hit
        });
        // Only containers that were ever asked for: a slot that never
        // started has none.
        let removals = holders
            .iter()
            .filter(|h| h.attempted.load(Ordering::SeqCst))
            .map(|h| remove_container(&self.docker, &h.name, false));
        futures_util::future::join_all(removals).await;
        let removals = proxies
            .iter()
            .filter(|e| e.attempted.load(Ordering::SeqCst))
            .map(|e| remove_container(&self.docker, &e.proxy, false));
        futures_util::future::join_all(removals).await;
        for holder in &holders {
            holder.remove_files();
        }
        for egress in &proxies {
            egress.remove_files();
        }
    }

    /// Removes proctor's networks whose labels match all of `labels`:
    /// leftovers of versions that gave host lists an internal network.
    pub(super) async fn remove_networks(&self, labels: &[(&str, &str)]) -> Result<(), CageError> {
        for name in self.list_labelled_networks(labels).await? {
            self.remove_network(&name).await;
        }
        Ok(())
    }

    /// Names of proctor's networks whose labels match all of `labels`.
    pub async fn list_labelled_networks(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<String>, CageError> {
        // Always narrowed to proctor's networks, as for containers.
        let mut filters: Vec<String> = vec![LABEL_REPO.to_string()];
        filters.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let options = ListNetworksOptionsBuilder::default()
            .filters(&HashMap::from([("label".to_string(), filters)]))
            .build();
        let found = bounded(
            "list networks",
            API_TIMEOUT,
            self.docker.list_networks(Some(options)),
        )
        .await?;
        Ok(found
            .into_iter()
            .filter_map(|network| network.name.or(network.id))
            .collect())
    }

    async fn remove_network(&self, name: &str) {
        for attempt in 0..3 {
            match tokio::time::timeout(API_TIMEOUT, self.docker.remove_network(name)).await {
                Ok(Ok(())) => return,
                Ok(Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                })) => return,
                // A container that was just removed may still be detaching.
                Ok(Err(error)) if attempt < 2 => {
                    tracing::debug!(network = name, %error, "network removal failed; retrying");
                }
                Ok(Err(error)) => {
                    tracing::warn!(network = name, %error, "cannot remove network");
                }
                Err(_) => tracing::warn!(network = name, "removing the network timed out"),
            }
            tokio::time::sleep(Duration::from_millis(300 * (attempt + 1))).await;
        }
    }
}

fn allow_list(hosts: &[String]) -> Result<AllowList, CageError> {
    let allow =
        AllowList::parse(hosts).map_err(|reason| CageError::InvalidInvocation { reason })?;
    if allow.is_empty() {
        return Err(CageError::InvalidInvocation {
            reason: "an empty host list allows nothing; use network `none`".into(),
        });
    }
    Ok(allow)
}

/// Limits of a proxy or relay: a few hundred connections' buffers.
fn proxy_limits() -> Limits {
    Limits {
        pids: 256,
        memory_bytes: Some(256 << 20),
        nano_cpus: None,
        tmp_bytes: Some(16 << 20),
        ..Limits::default()
    }
}

/// Limits of an `open` holder: an init, a shell and `sleep`.
fn sleeper_limits() -> Limits {
    Limits {
        pids: 16,
        memory_bytes: Some(32 << 20),
        nano_cpus: None,
        tmp_bytes: Some(1 << 20),
        ..Limits::default()
    }
}

/// Hands `path` to the sidecars' `nobody`; when proctor is not root, makes
/// it writable by anyone instead, which is safe because it sits in
/// proctor's private temp directory and is reachable only through mounts.
fn give_to_sidecars(path: &Path, mode_if_not_root: u32) -> Result<(), CageError> {
    let io_err = |source| CageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        io_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path has a NUL byte",
        ))
    })?;
    // SAFETY: c_path is a valid NUL-terminated path; lchown never follows links.
    let chowned = unsafe { libc::lchown(c_path.as_ptr(), SIDECAR_USER.0, SIDECAR_USER.1) } == 0;
    if !chowned {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode_if_not_root))
            .map_err(io_err)?;
    }
    Ok(())
}

/// A log file for the proxy or a relay: empty, private to this host user,
/// writable by `nobody`.
fn create_sidecar_log(path: &Path) -> Result<(), CageError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    give_to_sidecars(path, 0o666)
}

/// The directory of the proxy's socket: only the proxy writes there.
fn create_sidecar_dir(path: &Path) -> Result<(), CageError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|source| CageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    give_to_sidecars(path, 0o777)
}

/// Whether `kind` needs a generated `/etc/hosts` for a container joining
/// `holder`: Docker makes none for a namespace whose networking is disabled.
pub(super) fn joined_needs_hosts_file(kind: EngineKind, holder: &Holder) -> bool {
    kind == EngineKind::Docker && !holder.has_network()
}
