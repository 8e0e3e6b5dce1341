//! Finding and connecting to an engine: `DOCKER_HOST`, a hint or the usual
//! sockets, a ping per candidate, the API version both sides speak, TLS for
//! a `tcp://` engine (and what a failed handshake means in Docker's terms),
//! and what the engine behind the socket is: Docker or Podman, its
//! runtimes, its init. Nothing here creates a container.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

use super::egress;
use super::runtime::{InitPlan, RuntimeChoice, PODMAN_DEFAULT_INIT, PODMAN_INIT_FALLBACKS};
use super::{bounded, DockerCage, EngineKind, Transfer, API_TIMEOUT};
use crate::cage::address::{EngineAddress, TlsEnv, TlsFiles};
use crate::cage::host_image::IdentityFiles;
use crate::cage::warm::WarmPool;
use crate::cage::{libpod, CageError, Limits};

/// How long a socket may take to answer a ping before the next is tried.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(2);

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
            engine_cpus: info
                .ncpu
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok()),
            egress: egress::EgressTable::default(),
            warm: WarmPool::default(),
            background_removal: false,
        })
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
}
