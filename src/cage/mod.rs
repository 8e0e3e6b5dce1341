//! The cage: the only module that talks to a container engine.
//!
//! Every agent and every exam runs as a fresh, labelled, hardened container
//! created through `bollard` (plus two calls to Podman's native API that
//! bollard cannot make, see `libpod.rs`). Nothing here decides *what* runs
//! or what a result means; the engine does. This module must never run a
//! user command on the host and never mount the engine socket or the
//! answer-auth key into a container.

use std::path::PathBuf;
use std::time::Duration;

mod address;
mod build;
mod docker;
#[cfg(test)]
pub mod fake;
mod host_image;
mod import;
mod libpod;
mod output;
mod overlay;
pub mod proxy;
mod seccomp;
mod spec;
mod transfer;
mod warm;

pub use address::{ClientCert, EngineAddress, TlsEnv, TlsFiles};
pub use build::{external_images, BuildRequest, Built, IgnoreRules, AUTO_REPO};
pub use docker::{DockerCage, EngineKind, LabelledContainer, RuntimeChoice, Transfer};
pub(crate) use host_image::existing_private_temp_dir;
pub use host_image::unique_suffix;
pub use host_image::{HOST_IMAGE, HOST_IMAGE_REF};
pub use import::{
    default_name, image_reference, ImageInfo, ImportReport, PruneReport, LABEL_IMAGE,
};
pub use spec::DEFAULT_PATH;

/// A judge's working directory: its own empty `$HOME` tmpfs (a judge
/// gets no tree).
pub const JUDGE_WORKDIR: &str = spec::HOME_DIR;

/// Label keys every proctor container carries.
pub const LABEL_REPO: &str = "proctor.repo";
pub const LABEL_RUN: &str = "proctor.run";
pub const LABEL_LOOP: &str = "proctor.loop";
pub const LABEL_ROLE: &str = "proctor.role";
/// The pid of the proctor process that created the container, so a reaper
/// can tell a dead run's leftovers from a live run's containers.
pub const LABEL_PID: &str = "proctor.pid";
/// That process's start time (clock ticks since boot): a pid reused by
/// another process does not keep a dead run's containers alive.
pub const LABEL_PID_START: &str = "proctor.pid.start";

/// The labels naming this process as a container's creator.
pub(crate) fn creator_labels() -> [(String, String); 2] {
    let pid = std::process::id();
    let start = crate::state::lock::process_start(pid as i32).unwrap_or(0);
    [
        (LABEL_PID.to_string(), pid.to_string()),
        (LABEL_PID_START.to_string(), start.to_string()),
    ]
}

/// Whether the proctor process named by a container's labels may still be
/// alive (this process counts): its containers are then not leftovers. A
/// container without a creator (an older version's) is a leftover; one
/// whose creator cannot be checked (no `/proc`) counts as alive.
pub fn creator_alive(labels: &std::collections::HashMap<String, String>) -> bool {
    let Some(pid) = labels.get(LABEL_PID).and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return true;
    }
    let start = labels
        .get(LABEL_PID_START)
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s != 0);
    match (start, crate::state::lock::process_start(pid)) {
        (Some(start), Some(now)) => now == start,
        // Without a start time a live pid counts (perhaps reused: the
        // container then waits for the next reap).
        (None, Some(_)) => true,
        // No such process, or no /proc to tell.
        (_, None) => !std::path::Path::new("/proc/self").exists(),
    }
}

/// The [`LABEL_REPO`] value of the repository at `root`: a stable id, so
/// a reaper finds its containers.
pub fn repo_label(root: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..8])
}

/// The `uid:gid` of the owner of the repository at `root`: containers run
/// as them, never as whoever happens to run proctor.
pub fn container_user(root: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(root) {
        Ok(meta) => format!("{}:{}", meta.uid(), meta.gid()),
        Err(_) => "65534:65534".into(),
    }
}

/// What a container is for; decides defaults such as the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Verifier,
    /// A judge: no tree, stdin only (see `crate::judge`).
    Judge,
    /// The exam's reviewer: the base commit read-only, a prompt on stdin,
    /// before a loop's first agent (see `engine/review.rs`).
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Verifier => "verifier",
            Role::Judge => "judge",
            Role::Reviewer => "reviewer",
        }
    }
}

/// The network a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// No network interface but loopback, in a fresh namespace.
    None,
    /// The engine's default bridge. An agent joins its loop's network
    /// holder there; a verifier gets a fresh namespace of its own.
    Open,
    /// Only these hosts (`host` or `host:port`, matched exactly): the
    /// container runs in a holder's namespace with nothing but loopback,
    /// where a relay on `127.0.0.1` (named in `HTTP_PROXY` and friends)
    /// leads to proctor's allow-listing egress proxy. Agents share their
    /// loop's holder; a verifier gets one of its own. See `proxy.rs` and
    /// `docker/egress.rs`.
    Hosts(Vec<String>),
}

impl NetworkPolicy {
    /// How reports name it: `none`, `open`, or the host list.
    pub fn describe(&self) -> String {
        match self {
            NetworkPolicy::None => "none".into(),
            NetworkPolicy::Open => "open".into(),
            NetworkPolicy::Hosts(hosts) => format!("only {}", hosts.join(", ")),
        }
    }
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub container: String,
    pub access: Access,
}

/// What a container may do to a mounted host folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads and writes reach the host folder (a bind mount).
    ReadWrite,
    /// Reads only; a write fails.
    ReadOnly,
    /// The container sees the host folder and may write over it, but every
    /// write lands in a layer of the container's own (an overlay over a
    /// per-container upper directory: on Docker a volume of the `local`
    /// driver with `type=overlay`, on Podman an OCI `overlay` mount), discarded
    /// with the container: the host folder never changes, and the next
    /// container sees none of it. On the tar path (a remote engine) the
    /// folder is uploaded and never taken back, which comes to the same.
    CopyOnWrite,
}

/// The labels that tie a container to a repo, a run, a loop and a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Stable id of the repository (a hash of its canonical path).
    pub repo: String,
    /// Id of the proctor run (one `proctor run` process).
    pub run: String,
    pub loop_id: String,
    pub role: Role,
}

/// Everything needed to run one command in one fresh container.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Image reference; [`HOST_IMAGE`] selects the built-in host image with
    /// the host toolchain directories mounted read-only.
    pub image: String,
    /// Shell command text, run as `/bin/sh -c <command>`.
    pub command: String,
    /// Working directory inside the container (normally `/work`).
    pub workdir: String,
    pub mounts: Vec<Mount>,
    /// The complete environment; nothing of the host leaks in besides this.
    pub env: Vec<(String, String)>,
    /// Bytes delivered on the command's standard input (the prompt), then EOF.
    pub stdin: Option<Vec<u8>>,
    pub network: NetworkPolicy,
    /// `uid:gid` the command runs as.
    pub user: String,
    pub labels: Labels,
    /// Wall-clock limit; on expiry the container is killed. The container
    /// also kills its command itself 5 s after it (rounded up to a second,
    /// counted from the command's start), for when proctor is gone: see
    /// `spec.rs`.
    pub timeout: Duration,
    /// File the combined stdout/stderr streams to, live.
    pub log: PathBuf,
    /// At most this many bytes are written to `log`; the rest is counted and
    /// a note of what was cut is appended.
    pub log_cap: u64,
}

impl Invocation {
    /// The plainest invocation, for benchmarks and tests to start from:
    /// `/bin/sh -c <command>` on [`HOST_IMAGE`] in `/tmp` as `1000:1000`,
    /// with no mounts, environment, stdin or network, a 60 s limit and at
    /// most 1 MiB of log at `log`.
    pub fn plain(
        command: impl Into<String>,
        labels: Labels,
        log: impl Into<PathBuf>,
    ) -> Invocation {
        Invocation {
            image: HOST_IMAGE.into(),
            command: command.into(),
            workdir: "/tmp".into(),
            mounts: vec![],
            env: vec![],
            stdin: None,
            network: NetworkPolicy::None,
            user: "1000:1000".into(),
            labels,
            timeout: Duration::from_secs(60),
            log: log.into(),
            log_cap: 1 << 20,
        }
    }
}

/// Resource limits of a container (a [`DockerCage`]'s own, or a loop's
/// through [`Cage::run_with_limits`]).
///
/// Unset memory means three quarters of the engine host's memory
/// ([`DockerCage::default_memory_bytes`]), so no container can take the
/// machine down; CPU stays shared unless set, because a sensible value
/// depends on the agent. The pids limit and rlimits are always set (rootful
/// Podman in some sandboxes cannot start a container without explicit
/// rlimits, see ENGINE-NOTES).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of processes and threads in the container.
    pub pids: i64,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// CPU limit in billionths of a CPU (`1_500_000_000` = 1.5 CPUs).
    pub nano_cpus: Option<i64>,
    /// `RLIMIT_NOFILE`, soft and hard.
    pub nofile: u64,
    /// `RLIMIT_NPROC`, soft and hard.
    pub nproc: u64,
    /// Size of the `/tmp` tmpfs in bytes; `None` leaves the kernel default
    /// (half of RAM).
    pub tmp_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pids: 512,
            memory_bytes: None,
            nano_cpus: None,
            nofile: 8192,
            nproc: 4096,
            tmp_bytes: None,
        }
    }
}

/// What happened to one invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command's exit code (`-1` when it never produced one, e.g. killed
    /// on timeout).
    pub exit_code: i64,
    pub timed_out: bool,
    pub duration: Duration,
    /// First bytes of the output (bounded, lossy UTF-8).
    pub output_head: String,
    /// Last bytes of the output (bounded, lossy UTF-8); empty when the whole
    /// output fits in `output_head`.
    pub output_tail: String,
    /// Total bytes of output the command produced (including any cut).
    pub output_bytes: u64,
    pub container_id: String,
    /// The image id (digest) the container ran.
    pub image_id: String,
    /// Targets (`host:port`) the egress proxy refused while this container
    /// ran, in order; always empty unless the network was a host list.
    pub network_denied: Vec<String>,
}

/// Errors from the engine, one variant per kind of failure.
#[derive(Debug, thiserror::Error)]
pub enum CageError {
    /// Nothing answers on any socket we know of.
    #[error("no container engine answers ({tried})")]
    NoEngine { tried: String },
    #[error("container engine call `{op}` failed: {source}")]
    Engine {
        op: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine did not answer an API call in time.
    #[error("container engine call `{op}` did not answer within {}s", after.as_secs())]
    EngineTimeout { op: &'static str, after: Duration },
    /// An API call proctor makes by hand (Podman's native API, which bollard
    /// does not speak) failed at the transport level.
    #[error("container engine call `{op}` failed: {source}")]
    EngineIo {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The engine answered an API call proctor makes by hand with an error.
    #[error("container engine call `{op}` failed ({status}): {message}")]
    EngineReply {
        op: &'static str,
        status: u16,
        message: String,
    },
    /// The image is not on the engine; proctor never pulls.
    #[error("image `{image}` is not on the container engine")]
    ImageNotFound { image: String },
    /// A Dockerfile proctor cannot build without a registry, or cannot read.
    #[error("`{path}`: {reason}")]
    Dockerfile { path: String, reason: String },
    /// An image a Dockerfile builds on is not on the engine; proctor never
    /// pulls.
    #[error("`{dockerfile}` builds on `{image}`, which is not on the container engine (proctor never pulls)")]
    BaseImageMissing { image: String, dockerfile: String },
    /// The engine's build of a Dockerfile failed.
    #[error("building `{dockerfile}` failed: {message}")]
    BuildFailed {
        dockerfile: String,
        message: String,
        log: PathBuf,
    },
    /// An engine address proctor cannot use.
    #[error("`{setting}` `{address}`: {reason}")]
    BadAddress {
        setting: String,
        address: String,
        reason: String,
    },
    /// A TLS file for a `tcp://` engine cannot be read.
    #[error("cannot read the TLS file `{path}` (`DOCKER_CERT_PATH` holds ca.pem, and cert.pem with key.pem for a client certificate): {source}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Half of a client certificate: `cert.pem` without `key.pem`, or the
    /// other way round.
    #[error("`DOCKER_CERT_PATH` `{dir}` holds `{present}` but no `{missing}`: a client certificate needs both (an engine that wants none needs neither)")]
    TlsHalfPair {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    /// The TLS handshake with a `tcp://` engine failed: the engine answered,
    /// but one side did not trust the other.
    #[error("TLS with the engine at `{address}` failed: {reason}")]
    Tls { address: String, reason: String },
    /// Something that needs the engine to share this machine's filesystem,
    /// asked of a remote engine.
    #[error("{what} cannot work with a remote engine ({engine})")]
    Remote {
        engine: String,
        what: String,
        hint: String,
    },
    /// A tree that came back from a container could not be applied.
    #[error("cannot take the container's `{container_path}` back: {reason}")]
    Transfer {
        container_path: String,
        reason: String,
    },
    /// The engine address or setting names something this build cannot use.
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    /// The engine's OCI runtime cannot start any container on this host.
    #[error("the container engine's OCI runtime cannot start containers on this host ({message})")]
    RuntimeUnusable { message: String, hint: String },
    /// The invocation cannot be turned into a container.
    #[error("invalid invocation: {reason}")]
    InvalidInvocation { reason: String },
    /// The engine cannot give a container a protection proctor promises;
    /// proctor refuses rather than run it in a weaker cage.
    #[error("{engine} cannot {what}, so proctor will not run the container in a weaker cage")]
    Weakened {
        engine: String,
        what: String,
        hint: String,
    },
}

impl CageError {
    /// Whether the engine itself went away (stopped, crashed, its socket
    /// gone) rather than refusing one call: the connection failed or broke
    /// off, or the engine stopped answering.
    pub fn engine_went_away(&self) -> bool {
        use bollard::errors::Error as B;
        match self {
            CageError::Engine { source, .. } => matches!(
                source,
                B::IOError { .. }
                    | B::HyperLegacyError { .. }
                    | B::HyperResponseError { .. }
                    | B::RequestTimeoutError
                    | B::SocketNotFoundError(_)
            ),
            CageError::EngineIo { .. } | CageError::EngineTimeout { .. } => true,
            _ => false,
        }
    }
}

impl crate::exit_codes::DomainError for CageError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            CageError::NoEngine { .. } => "start one with `dockerd &` or `podman system service --time=0 &`, or set `DOCKER_HOST`".into(),
            CageError::ImageNotFound { .. } => "proctor never pulls: import it with `proctor image import`, or pull or build it yourself".into(),
            CageError::BaseImageMissing { image, .. } => format!("put it on the engine first: `docker load` / `podman load` an image saved where there is a registry, or `proctor image import ROOTFS --name {image}` (see images/README.md)"),
            CageError::BuildFailed { log, .. } => format!("the whole build output: `{}`", log.display()),
            CageError::BadAddress { .. } => "proctor reaches an engine at `unix:///path/to/engine.sock` or `tcp://host:port` (TLS with `DOCKER_TLS_VERIFY=1` and `DOCKER_CERT_PATH`)".into(),
            CageError::RuntimeUnusable { hint, .. }
            | CageError::Weakened { hint, .. }
            | CageError::Remote { hint, .. } => hint.clone(),
            _ => return None,
        })
    }

    fn is_users_to_fix(&self) -> bool {
        matches!(
            self,
            CageError::NoEngine { .. }
                | CageError::ImageNotFound { .. }
                | CageError::Dockerfile { .. }
                | CageError::BaseImageMissing { .. }
                | CageError::BuildFailed { .. }
                | CageError::Unsupported { .. }
                | CageError::BadAddress { .. }
                | CageError::TlsFile { .. }
                | CageError::TlsHalfPair { .. }
                | CageError::Tls { .. }
                | CageError::InvalidInvocation { .. }
                | CageError::RuntimeUnusable { .. }
                | CageError::Weakened { .. }
                | CageError::Remote { .. }
        )
    }
}

/// The container runtime behind a small trait, so the engine can be tested
/// with a double and later pointed at remote engines.
#[allow(async_fn_in_trait)]
pub trait Cage {
    /// Runs one invocation in a fresh container and removes the container
    /// afterwards, whatever happens (error, timeout, cancellation).
    async fn run(&self, inv: Invocation) -> Result<Outcome, CageError>;
    /// Like [`Cage::run`], with these resource limits instead of the cage's
    /// own (a loop's `resources:`).
    async fn run_with_limits(&self, inv: Invocation, limits: &Limits)
        -> Result<Outcome, CageError>;
    /// Removes every container whose labels match all of `labels` (key,
    /// value): agents and verifiers first, then the network holders they
    /// joined, then egress proxies, then any network of proctor's whose
    /// labels match (left by older versions); returns how many containers
    /// were removed.
    async fn remove_labelled(&self, labels: &[(&str, &str)]) -> Result<usize, CageError>;
    /// Ensures an image exists; for [`HOST_IMAGE`] imports it if needed.
    /// Returns the image id.
    async fn ensure_image(&self, image: &str) -> Result<String, CageError>;
    /// Starts the container for `inv` with `limits` ahead of need, in the
    /// background, so that a later [`Cage::run_with_limits`] of an equal
    /// invocation (its stdin, log and timeout aside) with the same limits
    /// skips most of a container's cost. The command does not start before
    /// that run. Best effort: where it cannot help, it does nothing, and
    /// the run starts a container as usual.
    fn prepare(&self, _inv: &Invocation, _limits: &Limits) {}
    /// Removes every container [`Cage::prepare`] started and no `run` used,
    /// waits for removals still running in the background, then removes the
    /// loops' network holders and egress proxies: when it returns, no
    /// container this cage made exists or is being made. Call it only when
    /// no run is in flight; the next agent with network gets a new holder.
    async fn settle(&self) {}
    /// Whether the engine still answers (a ping, bounded in time). Asked
    /// when a container died of a signal proctor did not send, to tell an
    /// engine that stopped (and took its containers along) from a command
    /// that was killed.
    async fn answers(&self) -> bool {
        true
    }
    /// A short name of the engine for reports, e.g. `docker 20.10.24`.
    fn describe(&self) -> String;
    /// The engine host's CPUs, when the engine says (the default cap on
    /// parallel children running at once).
    fn cores(&self) -> Option<usize> {
        None
    }
}
