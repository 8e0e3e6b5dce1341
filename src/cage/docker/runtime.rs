//! Planning a container: the [`ContainerSpec`] an invocation becomes
//! (mounts, environment, network, labels), the OCI runtime and init it
//! asks for, and the refusals when the engine would run it weaker than
//! asked. No engine call happens here; the hardening itself is decided in
//! `spec.rs`.

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::egress::{self, Holder};
use super::{lock, DockerCage, EngineKind, Transfer};
use crate::cage::address::EngineAddress;
use crate::cage::host_image::{parse_numeric_user, toolchain_binds};
use crate::cage::overlay;
use crate::cage::spec::{
    container_deadline, BindSpec, ContainerSpec, NetMode, OverlaySpec, DEFAULT_PATH, HOME_DIR,
};
use crate::cage::transfer::TransferPlan;
use crate::cage::{
    Access, Cage, CageError, Invocation, Limits, NetworkPolicy, HOST_IMAGE, LABEL_LOOP, LABEL_REPO,
    LABEL_ROLE, LABEL_RUN,
};

/// Init binaries Podman can mount into a container when its configured one
/// (catatonit) is missing. Only statically linked ones: the image may have
/// no libc.
pub(super) const PODMAN_DEFAULT_INIT: &str = "/usr/libexec/podman/catatonit";
pub(super) const PODMAN_INIT_FALLBACKS: &[&str] = &[
    "/usr/libexec/catatonit/catatonit",
    "/usr/bin/catatonit",
    "/usr/bin/tini-static",
    "/usr/local/bin/tini-static",
    "/sbin/tini-static",
];

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InitPlan {
    /// The engine's configured init.
    Engine,
    /// Podman with this init binary instead of its missing default.
    Path(PathBuf),
    /// No init binary found: PID 1 is the shell. Leftover processes still
    /// die with it, since the kernel kills a PID namespace with its init.
    None,
}

impl DockerCage {
    /// Sets which OCI runtime containers ask for.
    pub fn with_runtime(mut self, choice: RuntimeChoice) -> DockerCage {
        self.runtime_choice = choice;
        *lock(&self.settled_runtime) = None;
        self
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

    /// Turns an invocation into a container description.
    pub(super) fn spec_for(
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
        let mut overlays: Vec<OverlaySpec> = Vec::new();
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
            overlays.retain(|o: &OverlaySpec| o.target != mount.container);
            match mount.access {
                Access::CopyOnWrite => {
                    overlay::check_lower(&source)?;
                    overlays.push(OverlaySpec {
                        lower: source,
                        target: mount.container.clone(),
                        scratch: None,
                    });
                }
                access => binds.push(BindSpec {
                    source,
                    target: mount.container.clone(),
                    read_only: access == Access::ReadOnly,
                }),
            }
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
        // The tar path (a remote engine) has no holders: see `run_limited` in `docker.rs`.
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

        let mut labels = HashMap::from([
            (LABEL_REPO.to_string(), inv.labels.repo.clone()),
            (LABEL_RUN.to_string(), inv.labels.run.clone()),
            (LABEL_LOOP.to_string(), inv.labels.loop_id.clone()),
            (LABEL_ROLE.to_string(), inv.labels.role.as_str().to_string()),
        ]);
        labels.extend(crate::cage::creator_labels());

        Ok(ContainerSpec {
            name: String::new(),
            image_id: image_id.to_string(),
            cmd: vec!["/bin/sh".into(), "-c".into(), inv.command.clone()],
            deadline: Some(container_deadline(inv.timeout)),
            workdir: inv.workdir.clone(),
            user: inv.user.clone(),
            env,
            labels,
            stdin: inv.stdin.is_some(),
            binds,
            volumes: Vec::new(),
            overlays,
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
    pub(super) fn runtime_plan(&self) -> (Vec<Option<String>>, bool) {
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
    pub(super) fn refuse_ignored_runtime(&self) -> Result<(), CageError> {
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
    pub(super) fn no_init(&self) -> CageError {
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

    /// Turns crun's refusal of this host's cgroup layout into an error that
    /// says how to fix it; other errors pass through.
    pub(super) fn explain_runtime_failure(&self, error: CageError) -> CageError {
        explain_runtime_failure(self.kind, error)
    }

    /// The tar path's plan for `inv`: its mounts, checked like binds.
    pub(super) fn transfer_plan(&self, inv: &Invocation) -> Result<TransferPlan, CageError> {
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
            // A copy-on-write folder is uploaded and never taken back:
            // the container may write over it, the host never sees it.
            let read_only = mount.access != Access::ReadWrite;
            mounts.push((source, mount.container.clone(), read_only));
        }
        let owner = parse_numeric_user(&inv.user).map(|(u, g)| (u64::from(u), u64::from(g)));
        TransferPlan::new(&mounts, owner)
    }

    /// Why the `host` image cannot run on this engine.
    pub(super) fn host_image_refusal(&self) -> CageError {
        self.remote_refusal(
            "the built-in `host` image (bind mounts of this machine's toolchain)",
            "set `image:` in proctor.yaml or `.proctor/config.yaml` to an image on that engine: `proctor image import DIR|ROOTFS.tar.gz --name NAME`, or one you built",
        )
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

/// Whether mounting `source` would hand the container a socket: the engine
/// socket itself or a directory above it, or any other socket file.
pub(super) fn exposes_socket(source: &Path, engine: &EngineAddress) -> bool {
    if let EngineAddress::Unix(engine_socket) = engine {
        let engine = std::fs::canonicalize(engine_socket).unwrap_or_else(|_| engine_socket.into());
        if engine.starts_with(source) {
            return true;
        }
    }
    std::fs::metadata(source).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounting_above_the_engine_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = EngineAddress::Unix(dir.path().join("run/engine.sock"));
        assert!(exposes_socket(dir.path(), &socket));
        assert!(exposes_socket(&dir.path().join("run"), &socket));
        assert!(!exposes_socket(&dir.path().join("work"), &socket));
    }
}
