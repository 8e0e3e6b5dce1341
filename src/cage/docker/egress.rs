//! A loop's way out when its `network:` is a host list: an internal network
//! of its own, and proctor's egress proxy (`cage/proxy.rs`) in a container
//! of its own on that network and on the engine's ordinary bridge.
//!
//! The agent's container joins only the internal network, so the proxy is
//! the only thing it can reach: no route out, no DNS server that answers
//! (the proxy resolves names), no IPv6, and on Docker not even an address
//! of the host on that bridge. The proxy admits only the listed hosts and
//! logs every refusal to a file on the host, which is read after each
//! container to report `network_denied`.
//!
//! One network and one proxy per (run, loop, host list), created on first
//! use and kept for the run; all are labelled like containers and removed
//! with them: at the end of the run, on interruption, and by the reaper.
//! This file must never give the proxy anything but the toolchain, its own
//! binary and its log file, and never attach an agent to the egress bridge.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::models::{NetworkConnectRequest, NetworkCreateRequest};
use bollard::query_parameters::{
    InspectContainerOptions, ListNetworksOptionsBuilder, StartContainerOptions,
};
use serde_json::json;

use super::{bounded, lock, remove_container, DockerCage, EngineKind, InitPlan, API_TIMEOUT};
use crate::cage::host_image::{private_temp_dir, toolchain_binds, unique_suffix};
use crate::cage::proxy::{
    AllowList, LogLine, PROXY_EXE_IN_CONTAINER, PROXY_LOG_IN_CONTAINER, PROXY_PORT,
};
use crate::cage::spec::{BindSpec, ContainerSpec, NetMode, DEFAULT_PATH, HOME_DIR};
use crate::cage::{
    libpod, Cage, CageError, Labels, Limits, HOST_IMAGE, LABEL_LOOP, LABEL_PID, LABEL_REPO,
    LABEL_ROLE, LABEL_RUN,
};

/// The role label of proxy containers, and of the probe that checks one.
pub const PROXY_ROLE: &str = "proxy";
const PROBE_ROLE: &str = "probe";
/// How long the probe may take, start to exit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// The proxy runs as `nobody`: it needs no file of the repository's owner.
const PROXY_USER: (u32, u32) = (65534, 65534);
/// How long a fresh proxy may take to report that it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Docker's bridge driver option that leaves the bridge without an IPv4
/// address, so the host itself is not reachable from the internal network.
const DOCKER_NO_HOST_ADDRESS: &str = "com.docker.network.bridge.inhibit_ipv4";

/// Settings and live state of the egress side of a [`DockerCage`].
#[derive(Debug, Default)]
pub(crate) struct EgressTable {
    live: tokio::sync::Mutex<HashMap<EgressKey, Arc<Egress>>>,
    /// The proxy's binary; `None` = this very executable.
    exe: Option<PathBuf>,
    /// The network the proxy reaches the listed hosts through; `None` =
    /// the engine's default bridge.
    network: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EgressKey {
    repo: String,
    run: String,
    loop_id: String,
    allow: String,
}

/// One loop's internal network and its proxy.
#[derive(Debug)]
pub(crate) struct Egress {
    /// The internal network the loop's containers join.
    pub(crate) network: String,
    proxy_url: String,
    proxy: String,
    log: PathBuf,
    /// How far the log has been read.
    read_upto: Mutex<u64>,
    labels: HashMap<String, String>,
}

impl Egress {
    /// The variables that point HTTP clients at the proxy. `NO_PROXY` is
    /// set empty so that no inherited default exempts a host.
    pub(crate) fn proxy_env(&self) -> Vec<String> {
        let url = &self.proxy_url;
        vec![
            format!("HTTP_PROXY={url}"),
            format!("HTTPS_PROXY={url}"),
            format!("http_proxy={url}"),
            format!("https_proxy={url}"),
            "NO_PROXY=".into(),
            "no_proxy=".into(),
        ]
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
}

impl DockerCage {
    /// Runs egress proxies from this binary instead of the running one
    /// (tests run from a test harness, not from `proctor`).
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

    /// The loop's network and proxy for this host list, started on first use.
    pub(crate) async fn egress_for(
        &self,
        labels: &Labels,
        hosts: &[String],
    ) -> Result<Arc<Egress>, CageError> {
        let allow =
            AllowList::parse(hosts).map_err(|reason| CageError::InvalidInvocation { reason })?;
        if allow.is_empty() {
            return Err(CageError::InvalidInvocation {
                reason: "an empty host list allows nothing; use network `none`".into(),
            });
        }
        let key = EgressKey {
            repo: labels.repo.clone(),
            run: labels.run.clone(),
            loop_id: labels.loop_id.clone(),
            allow: allow.to_arg(),
        };
        let mut live = self.egress.live.lock().await;
        if let Some(egress) = live.get(&key) {
            if self.is_running(&egress.proxy).await {
                return Ok(egress.clone());
            }
            tracing::warn!(proxy = %egress.proxy, "the egress proxy is gone; starting another");
            if let Some(stale) = live.remove(&key) {
                self.discard(&stale).await;
            }
        }
        let egress = Arc::new(self.create_egress(labels, &allow).await?);
        live.insert(key, egress.clone());
        Ok(egress)
    }

    /// Removes proctor's networks whose labels match all of `labels`, and
    /// forgets their proxies. Containers on them must be gone already.
    pub(super) async fn remove_networks(&self, labels: &[(&str, &str)]) -> Result<(), CageError> {
        {
            let mut live = self.egress.live.lock().await;
            let matching: Vec<EgressKey> = live
                .iter()
                .filter(|(_, e)| {
                    labels
                        .iter()
                        .all(|(k, v)| e.labels.get(*k).is_some_and(|have| have == v))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in matching {
                if let Some(egress) = live.remove(&key) {
                    let _ = std::fs::remove_file(&egress.log);
                }
            }
        }
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

    async fn discard(&self, egress: &Egress) {
        remove_container(&self.docker, &egress.proxy, false).await;
        self.remove_network(&egress.network).await;
        let _ = std::fs::remove_file(&egress.log);
    }

    async fn is_running(&self, container: &str) -> bool {
        let inspect = tokio::time::timeout(
            API_TIMEOUT,
            self.docker
                .inspect_container(container, None::<InspectContainerOptions>),
        )
        .await;
        matches!(inspect, Ok(Ok(i)) if i.state.as_ref().and_then(|s| s.running).unwrap_or(false))
    }

    async fn create_egress(&self, labels: &Labels, allow: &AllowList) -> Result<Egress, CageError> {
        let suffix = unique_suffix();
        let network = format!("proctor-net-{suffix}");
        let proxy = format!("proctor-proxy-{suffix}");
        let mut label_map = HashMap::from([
            (LABEL_REPO.to_string(), labels.repo.clone()),
            (LABEL_RUN.to_string(), labels.run.clone()),
            (LABEL_LOOP.to_string(), labels.loop_id.clone()),
            (LABEL_PID.to_string(), std::process::id().to_string()),
        ]);
        let log = private_temp_dir()?.join(format!("egress-{suffix}.log"));
        create_log(&log)?;
        let egress = Egress {
            network: network.clone(),
            proxy_url: String::new(),
            proxy: proxy.clone(),
            log,
            read_upto: Mutex::new(0),
            labels: label_map.clone(),
        };
        let started = async {
            let image_id = self.ensure_image(HOST_IMAGE).await?;
            self.create_internal_network(&network, &label_map).await?;
            label_map.insert(LABEL_ROLE.to_string(), PROXY_ROLE.to_string());
            let spec = self.proxy_spec(
                &proxy,
                image_id.clone(),
                &network,
                allow,
                &egress.log,
                label_map.clone(),
            )?;
            self.start_detached(&spec).await?;
            let address = self.address_on(&proxy, &network).await?;
            self.wait_ready(&proxy, &egress.log).await?;
            self.probe(image_id, &network, &address, label_map).await?;
            Ok::<_, CageError>(address)
        };
        // Also cleaned up when this future is dropped halfway: everything
        // carries the run's labels, and the run removes them at its end.
        match started.await {
            Ok(address) => Ok(Egress {
                proxy_url: format!("http://{address}:{PROXY_PORT}"),
                ..egress
            }),
            Err(error) => {
                self.discard(&egress).await;
                Err(error)
            }
        }
    }

    async fn create_internal_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), CageError> {
        match self.kind {
            EngineKind::Docker => {
                let request = NetworkCreateRequest {
                    name: name.to_string(),
                    driver: Some("bridge".into()),
                    internal: Some(true),
                    labels: Some(labels.clone()),
                    options: Some(HashMap::from([(
                        DOCKER_NO_HOST_ADDRESS.to_string(),
                        "true".to_string(),
                    )])),
                    ..Default::default()
                };
                bounded(
                    "create network",
                    API_TIMEOUT,
                    self.docker.create_network(request),
                )
                .await?;
            }
            EngineKind::Podman => {
                // No DNS server: nothing on this network has a name to look
                // up, and aardvark-dns would forward other names outwards.
                let body = json!({
                    "name": name,
                    "driver": "bridge",
                    "internal": true,
                    "dns_enabled": false,
                    "labels": labels,
                });
                libpod::create_network(&self.libpod, &self.libpod_version, &body, API_TIMEOUT)
                    .await?;
            }
        }
        Ok(())
    }

    fn proxy_exe(&self) -> Result<PathBuf, CageError> {
        let exe = match &self.egress.exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().map_err(|source| CageError::Io {
                path: PathBuf::from("/proc/self/exe"),
                source,
            })?,
        };
        std::fs::canonicalize(&exe).map_err(|e| CageError::InvalidInvocation {
            reason: format!(
                "the egress proxy runs proctor's own binary, and `{}` cannot be read: {e}",
                exe.display()
            ),
        })
    }

    fn proxy_spec(
        &self,
        name: &str,
        image_id: String,
        network: &str,
        allow: &AllowList,
        log: &Path,
        labels: HashMap<String, String>,
    ) -> Result<ContainerSpec, CageError> {
        let egress = self
            .egress
            .network
            .clone()
            .unwrap_or_else(|| match self.kind {
                EngineKind::Docker => "bridge".into(),
                EngineKind::Podman => "podman".into(),
            });
        let mut spec = self.own_binary_spec(
            name,
            image_id,
            vec![
                "--listen".into(),
                format!("0.0.0.0:{PROXY_PORT}"),
                "--allow".into(),
                allow.to_arg(),
                "--log".into(),
                PROXY_LOG_IN_CONTAINER.into(),
            ],
            NetMode::Proxy {
                internal: network.to_string(),
                egress,
            },
            labels,
            PROXY_ROLE,
        )?;
        spec.binds.push(BindSpec {
            source: log.to_path_buf(),
            target: PROXY_LOG_IN_CONTAINER.into(),
            read_only: false,
        });
        Ok(spec)
    }

    /// A container running `proctor __proxy <args>` as `nobody` in the host
    /// image: the proxy, or a probe of it.
    fn own_binary_spec(
        &self,
        name: &str,
        image_id: String,
        args: Vec<String>,
        network: NetMode,
        labels: HashMap<String, String>,
        role: &'static str,
    ) -> Result<ContainerSpec, CageError> {
        let mut binds = toolchain_binds();
        binds.extend(self.identities.binds(PROXY_USER.0, PROXY_USER.1)?);
        binds.push(BindSpec {
            source: self.proxy_exe()?,
            target: PROXY_EXE_IN_CONTAINER.into(),
            read_only: true,
        });
        let mut cmd = vec![PROXY_EXE_IN_CONTAINER.to_string(), "__proxy".into()];
        cmd.extend(args);
        Ok(ContainerSpec {
            name: name.to_string(),
            image_id,
            cmd,
            workdir: "/".into(),
            user: format!("{}:{}", PROXY_USER.0, PROXY_USER.1),
            env: vec![
                format!("PATH={DEFAULT_PATH}"),
                format!("HOME={HOME_DIR}"),
                "PROCTOR_LOG=warn".into(),
            ],
            labels,
            stdin: false,
            binds,
            volumes: Vec::new(),
            skip_network_stack: true,
            network,
            limits: proxy_limits(),
            init: self.init != InitPlan::None,
            init_path: match &self.init {
                InitPlan::Path(path) => Some(path.clone()),
                _ => None,
            },
            role,
        })
    }

    /// Checks, from a container on the internal network, that the proxy
    /// can be reached there: some hosts' firewalls drop traffic between
    /// containers on an internal bridge, which would leave every listed
    /// host unreachable with nothing but timeouts to show for it.
    async fn probe(
        &self,
        image_id: String,
        network: &str,
        address: &str,
        mut labels: HashMap<String, String>,
    ) -> Result<(), CageError> {
        labels.insert(LABEL_ROLE.to_string(), PROBE_ROLE.to_string());
        let name = format!("proctor-probe-{}", unique_suffix());
        let spec = self.own_binary_spec(
            &name,
            image_id,
            vec!["--probe".into(), format!("{address}:{PROXY_PORT}")],
            NetMode::Internal(network.to_string()),
            labels,
            PROBE_ROLE,
        )?;
        let checked = async {
            self.start_detached(&spec).await?;
            self.wait_container(&name, PROBE_TIMEOUT).await
        };
        let result = tokio::time::timeout(PROBE_TIMEOUT, checked).await;
        remove_container(&self.docker, &name, false).await;
        match result {
            Ok(Ok(0)) => Ok(()),
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) | Err(_) => Err(self.unreachable_proxy()),
        }
    }

    fn unreachable_proxy(&self) -> CageError {
        let (why, hint) = match self.kind {
            EngineKind::Podman => (
                "the host's firewall drops traffic between containers on Podman's internal networks (the FORWARD chain's policy is DROP with bridge netfilter on, as Docker sets it, and netavark adds no rule for internal networks)",
                "allow traffic within Podman's bridges, e.g. `iptables -I FORWARD -m physdev --physdev-is-bridged -i podman+ -j ACCEPT`; or run loops with a host list on Docker, or use `network: none` or `open`",
            ),
            EngineKind::Docker => (
                "the host's firewall drops traffic between containers on an internal network",
                "look for rules in the `DOCKER-USER` and `FORWARD` chains that drop traffic on proctor's bridges; or use `network: none` or `open`",
            ),
        };
        CageError::Weakened {
            engine: self.describe(),
            what: format!("connect a loop's containers to its egress proxy over an internal network on this host: {why}"),
            hint: hint.into(),
        }
    }

    /// Creates and starts a container nobody attaches to (the proxy), with
    /// the same runtime choice as every other container.
    async fn start_detached(&self, spec: &ContainerSpec) -> Result<(), CageError> {
        if self.init == InitPlan::None {
            return Err(self.no_init());
        }
        self.refuse_ignored_runtime()?;
        let (plan, probing) = self.runtime_plan();
        let mut last_error = None;
        for runtime in plan {
            match self.create_connect_start(spec, runtime.as_deref()).await {
                Ok(()) => {
                    if probing {
                        *lock(&self.settled_runtime) = Some(runtime);
                    }
                    return Ok(());
                }
                Err(error) => {
                    remove_container(&self.docker, &spec.name, false).await;
                    if !probing || matches!(error, CageError::Weakened { .. }) {
                        return Err(self.explain_runtime_failure(error));
                    }
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

    async fn create_connect_start(
        &self,
        spec: &ContainerSpec,
        runtime: Option<&str>,
    ) -> Result<(), CageError> {
        let id = self.create(spec, runtime).await?;
        // Docker's API before 1.44 creates a container on one network only.
        if let (EngineKind::Docker, NetMode::Proxy { egress, .. }) = (self.kind, &spec.network) {
            let request = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: None,
            };
            bounded(
                "connect network",
                API_TIMEOUT,
                self.docker.connect_network(egress, request),
            )
            .await?;
        }
        bounded(
            "start container",
            API_TIMEOUT,
            self.docker
                .start_container(&id, None::<StartContainerOptions>),
        )
        .await?;
        Ok(())
    }

    /// The container's IPv4 address on `network`.
    async fn address_on(&self, container: &str, network: &str) -> Result<String, CageError> {
        let inspect = bounded(
            "inspect container",
            API_TIMEOUT,
            self.docker
                .inspect_container(container, None::<InspectContainerOptions>),
        )
        .await?;
        inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|endpoint| endpoint.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| CageError::EngineReply {
                op: "inspect container",
                status: 0,
                message: format!("the egress proxy has no address on network `{network}`"),
            })
    }

    /// Waits until the proxy has logged that it listens.
    async fn wait_ready(&self, container: &str, log: &Path) -> Result<(), CageError> {
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
            if Instant::now() >= deadline || !self.is_running(container).await {
                return Err(CageError::EngineReply {
                    op: "start egress proxy",
                    status: 0,
                    message: format!(
                        "the egress proxy did not start listening within {}s",
                        READY_TIMEOUT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// Limits of a proxy container: a few hundred connections' buffers.
fn proxy_limits() -> Limits {
    Limits {
        pids: 256,
        memory_bytes: Some(256 << 20),
        nano_cpus: None,
        tmp_bytes: Some(16 << 20),
        ..Limits::default()
    }
}

/// The proxy's log: empty, private to this host user, writable by the
/// proxy's `nobody`.
fn create_log(path: &Path) -> Result<(), CageError> {
    let io_err = |source| CageError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        io_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path has a NUL byte",
        ))
    })?;
    // SAFETY: c_path is a valid NUL-terminated path; lchown never follows links.
    let chowned = unsafe { libc::lchown(c_path.as_ptr(), PROXY_USER.0, PROXY_USER.1) } == 0;
    if !chowned {
        // Not root: the directory is private to this user, so a file anyone
        // may write is still reachable only through the proxy's mount.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(io_err)?;
    }
    Ok(())
}
