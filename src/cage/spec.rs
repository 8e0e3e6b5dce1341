//! One engine-neutral description of a container, and its translations into
//! Docker's create body and Podman's native (libpod) create body.
//!
//! Everything that hardens a container is decided here, once, so the two
//! engines cannot drift apart. This file must stay free of I/O.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, ResourcesUlimits,
};
use serde_json::{json, Value};

use super::host_image::parse_numeric_user;
use super::seccomp;
use super::Limits;

/// `PATH` for commands when the invocation does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command's `$HOME`: its own tmpfs inside `/tmp`, owned by the
/// container's user, gone with the container.
pub(crate) const HOME_DIR: &str = "/tmp/home";

/// How long after proctor's own deadline a container kills its command
/// itself. proctor kills at the deadline; this is the backstop for when
/// proctor is gone (killed with `kill -9`, say), and comes late enough that
/// a live proctor's kill always comes first and reports the timeout.
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// The container's own deadline for a command with `timeout`: the timeout
/// in whole seconds, rounded up, plus [`DEADLINE_GRACE`]. Counted from the
/// moment the command starts, which is never before proctor's own clock
/// starts, so the container never kills before proctor would.
pub(crate) fn container_deadline(timeout: Duration) -> Duration {
    let whole = timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0));
    Duration::from_secs(whole).saturating_add(DEADLINE_GRACE)
}

/// The shell snippet that arms a container's own deadline: after
/// `$proctor_deadline` seconds it kills the shell it runs in (`$$`, which
/// then `exec`s the command, so the command itself) with SIGKILL. The init
/// (PID 1) then exits with the command, and the kernel kills whatever else
/// runs in the container with it: the container stops, with or without
/// proctor. It runs in the background with its output on `/dev/null`, so
/// it never holds the output stream open, and dies with the container when
/// the command ends first. It needs `sleep` in the image (every image with
/// a shell has one; the `host` image has the host's).
pub(crate) const DEADLINE_TIMER: &str =
    r#"(sleep "$proctor_deadline" && kill -KILL $$) </dev/null >/dev/null 2>&1 &"#;

/// Where a container's network namespace is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetMode {
    /// A fresh namespace with loopback only.
    None,
    /// A fresh namespace on the engine's default bridge.
    Open,
    /// A fresh namespace on this engine network (the egress proxy on the
    /// config's `egress_network`).
    Network(String),
    /// The namespace of this running container (a loop's network holder,
    /// see `docker/egress.rs`): no namespace of its own, so no network
    /// setup at all (on Docker 20.10 no `libnetwork-setkey` hook either).
    Join(String),
}

impl NetMode {
    /// Docker's `HostConfig.NetworkMode`.
    fn docker_mode(&self) -> String {
        match self {
            NetMode::None => "none".into(),
            NetMode::Open => "bridge".into(),
            NetMode::Network(name) => name.clone(),
            NetMode::Join(container) => format!("container:{container}"),
        }
    }

    /// Podman's `netns` (and its `Networks`, when one is named).
    fn libpod_netns(&self) -> (Value, Option<Value>) {
        match self {
            NetMode::None => (json!({ "nsmode": "none" }), None),
            NetMode::Open => (json!({ "nsmode": "bridge" }), None),
            NetMode::Network(name) => (
                json!({ "nsmode": "bridge" }),
                Some(json!({ name.as_str(): {} })),
            ),
            NetMode::Join(container) => (
                json!({ "nsmode": "container", "value": container.as_str() }),
                None,
            ),
        }
    }
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindSpec {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// A host folder mounted copy-on-write ([`Access::CopyOnWrite`](super::Access)):
/// an overlay whose lower layer is `lower` and whose writes go to a layer
/// of the container's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverlaySpec {
    /// The host folder (canonical), never written.
    pub lower: PathBuf,
    pub target: String,
    /// A fresh host directory for this one container, holding the
    /// overlay's `upper` and `work` directories (see `overlay.rs`). Set
    /// just before the create call; `None` while the spec is only planned
    /// or compared.
    pub scratch: Option<PathBuf>,
}

impl OverlaySpec {
    /// The overlay's mount data, as both engines pass it to the kernel:
    /// `lower` with this container's upper layer. Without a scratch
    /// directory, `lower` alone (never created: only compared).
    ///
    /// `metacopy=on`: a hard link to a lower file (rustc's incremental
    /// cache hard-links every file of its last session) copies up only
    /// the file's metadata, not its data; without it each exam copied a
    /// build's whole incremental cache (200 MB took 340 ms here). Safe
    /// here: the kernel's warning is about layers carrying forged
    /// `trusted.` attributes, which no one without `CAP_SYS_ADMIN` can
    /// write, and the containers that write these layers have none.
    ///
    /// Podman's own overlay volumes (`-v SRC:DST:O`) take no `metacopy`,
    /// which made a cargo exam there copy rustc's whole incremental cache
    /// into every exam's layer; so Podman gets this same overlay too.
    fn overlay_data(&self) -> String {
        let lower = self.lower.to_string_lossy();
        match &self.scratch {
            Some(scratch) => format!(
                "lowerdir={lower},upperdir={},workdir={},metacopy=on",
                scratch.join(OVERLAY_UPPER).to_string_lossy(),
                scratch.join(OVERLAY_WORK).to_string_lossy()
            ),
            None => format!("lowerdir={lower}"),
        }
    }

    /// The `local` volume driver's options for Docker: an overlay mount
    /// with [`overlay_data`](Self::overlay_data).
    fn docker_driver_options(&self) -> HashMap<String, String> {
        HashMap::from([
            ("type".to_string(), "overlay".to_string()),
            ("device".to_string(), "overlay".to_string()),
            ("o".to_string(), self.overlay_data()),
        ])
    }

    /// Podman's mount: an OCI mount of type `overlay` that its runtime
    /// makes with [`overlay_data`](Self::overlay_data) (nothing of the
    /// layer is Podman's storage; proctor removes it with the container).
    fn libpod_mount(&self) -> Value {
        let mut options: Vec<String> = self.overlay_data().split(',').map(str::to_string).collect();
        options.extend(["nosuid".to_string(), "nodev".to_string()]);
        json!({
            "destination": self.target,
            "type": "overlay",
            "source": "overlay",
            "options": options,
        })
    }
}

/// The overlay's upper and work directories inside an [`OverlaySpec`]'s
/// scratch directory (the same file system, as overlayfs requires).
pub(crate) const OVERLAY_UPPER: &str = "upper";
pub(crate) const OVERLAY_WORK: &str = "work";

/// Everything the engine needs to create one container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerSpec {
    /// Unique name, known before the create call so a cancelled create can
    /// still be cleaned up by name.
    pub name: String,
    /// The resolved image id, so the container runs exactly the image that
    /// is reported in the outcome.
    pub image_id: String,
    /// The command, as the engine would run it without a deadline.
    pub cmd: Vec<String>,
    /// The container's own deadline ([`container_deadline`]): when set, the
    /// container runs `cmd` behind [`DEADLINE_TIMER`] and kills it itself
    /// this long after it started, whether proctor is still there or not.
    /// `None` for the sidecars (network holders and egress proxies), which
    /// live as long as their run, and for a container started ahead of need
    /// (its gate arms the deadline when the command starts, `warm.rs`).
    pub deadline: Option<Duration>,
    pub workdir: String,
    pub user: String,
    /// `NAME=value` pairs: the complete environment.
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Whether the command's stdin is a pipe fed through the attach stream
    /// (otherwise it is `/dev/null`).
    pub stdin: bool,
    pub binds: Vec<BindSpec>,
    /// Container paths that get an anonymous volume, removed with the
    /// container (the tar path: trees are uploaded there before start).
    pub volumes: Vec<String>,
    /// Host folders mounted copy-on-write.
    pub overlays: Vec<OverlaySpec>,
    /// On Docker, whether a container without network skips libnetwork
    /// (and so gets no `/etc/hosts`; the bind-mount path mounts its own).
    pub skip_network_stack: bool,
    pub network: NetMode,
    pub limits: Limits,
    /// Whether PID 1 is an init that reaps zombies and forwards signals.
    pub init: bool,
    /// Init binary for Podman when its configured one is missing.
    pub init_path: Option<PathBuf>,
    /// The role, for readable container names.
    pub role: &'static str,
}

impl ContainerSpec {
    /// What the engine runs: `cmd`, behind the deadline timer when there is
    /// a deadline (`/bin/sh -c SCRIPT proctor-deadline SECONDS CMD...`; the
    /// script arms the timer and `exec`s `CMD...` unchanged, with the same
    /// stdin, pid and exit code).
    pub(crate) fn engine_cmd(&self) -> Vec<String> {
        let Some(deadline) = self.deadline else {
            return self.cmd.clone();
        };
        let script = format!(r#"proctor_deadline=$1; shift; {DEADLINE_TIMER} exec "$@""#);
        let mut cmd = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            script,
            "proctor-deadline".into(),
            deadline.as_secs().to_string(),
        ];
        cmd.extend(self.cmd.iter().cloned());
        cmd
    }

    /// Options of the writable `/tmp`: `exec` explicitly, because Docker's
    /// default tmpfs is `noexec` while Podman's is not, and build tools
    /// and test runners execute files from `/tmp`.
    pub(crate) fn tmp_options(&self) -> Vec<String> {
        let mut opts = vec![
            "rw".to_string(),
            "exec".into(),
            "nosuid".into(),
            "nodev".into(),
            "mode=1777".into(),
        ];
        if let Some(size) = self.limits.tmp_bytes {
            opts.push(format!("size={size}"));
        }
        opts
    }

    /// Options of the `$HOME` tmpfs on Docker: private to the container's
    /// user (a numeric one; a named user gets a sticky shared directory).
    fn docker_home_options(&self) -> String {
        let mut opts = vec!["rw", "exec", "nosuid", "nodev"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        match parse_numeric_user(&self.user) {
            Some((uid, gid)) => {
                opts.push("mode=0700".into());
                opts.push(format!("uid={uid}"));
                opts.push(format!("gid={gid}"));
            }
            None => opts.push("mode=1777".into()),
        }
        if let Some(size) = self.limits.tmp_bytes {
            opts.push(format!("size={size}"));
        }
        opts.join(",")
    }

    /// Options of the `$HOME` tmpfs on Podman, whose `U` chowns a mount to
    /// the container's user, named or numeric.
    fn podman_home_options(&self) -> Vec<String> {
        let mut opts: Vec<String> = ["rw", "exec", "nosuid", "nodev", "mode=0700", "U"]
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(size) = self.limits.tmp_bytes {
            opts.push(format!("size={size}"));
        }
        opts
    }

    /// Docker's `POST /containers/create` body.
    pub(crate) fn docker_body(&self, runtime: Option<&str>) -> ContainerCreateBody {
        let limits = &self.limits;
        let mut mounts: Vec<Mount> = self
            .binds
            .iter()
            .map(|b| Mount {
                target: Some(b.target.clone()),
                source: Some(b.source.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(b.read_only),
                ..Default::default()
            })
            .collect();
        mounts.extend(self.volumes.iter().map(|target| Mount {
            target: Some(target.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            // Empty, not a copy of the image's files there; labelled so a
            // leftover can be told apart (removed with the container).
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                labels: Some(self.labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        // An anonymous volume of the `local` driver mounting an overlay:
        // created with the container, unmounted when it stops and removed
        // with it (`v=true`), labelled like the tar path's volumes.
        mounts.extend(self.overlays.iter().map(|overlay| Mount {
            target: Some(overlay.target.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                labels: Some(self.labels.clone()),
                driver_config: Some(MountVolumeOptionsDriverConfig {
                    name: Some("local".into()),
                    options: Some(overlay.docker_driver_options()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let host_config = HostConfig {
            mounts: Some(mounts),
            tmpfs: Some(HashMap::from([
                ("/tmp".to_string(), self.tmp_options().join(",")),
                (HOME_DIR.to_string(), self.docker_home_options()),
            ])),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec![
                "no-new-privileges".into(),
                seccomp::docker_security_opt(),
            ]),
            init: Some(self.init),
            pids_limit: Some(limits.pids),
            memory: limits.memory_bytes,
            nano_cpus: limits.nano_cpus,
            ulimits: Some(vec![
                ulimit("nofile", limits.nofile),
                ulimit("nproc", limits.nproc),
            ]),
            network_mode: Some(self.network.docker_mode()),
            runtime: runtime.map(str::to_string),
            auto_remove: Some(false),
            // proctor streams the output itself; the engine's own log copy
            // would double the disk and CPU cost of a chatty agent.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(self.image_id.clone()),
            cmd: Some(self.engine_cmd()),
            working_dir: Some(self.workdir.clone()),
            user: Some(self.user.clone()),
            env: Some(self.env.clone()),
            labels: Some(self.labels.clone()),
            tty: Some(false),
            attach_stdin: Some(self.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(self.stdin),
            // Closing our end of the attach stream closes the command's stdin.
            stdin_once: Some(self.stdin),
            // With no network, skip libnetwork altogether: the container
            // still gets a fresh network namespace with only loopback, and
            // dockerd 20.10 no longer runs its `libnetwork-setkey` hook (a
            // re-exec of the whole daemon) at every start, a third of a
            // container's CPU there. The cage mounts an `/etc/hosts` itself.
            network_disabled: Some(self.network == NetMode::None && self.skip_network_stack),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    /// Podman's `POST /libpod/containers/create` body (a `SpecGenerator`),
    /// with proctor's seccomp profile read from `seccomp_profile` (a path
    /// on the engine's host: Podman takes no inline profile).
    ///
    /// Podman's Docker-compatible create ignores `HostConfig.Runtime` and the
    /// options of `HostConfig.Mounts` (a read-only bind would come out
    /// writable), so proctor creates Podman containers natively.
    pub(crate) fn libpod_body(&self, runtime: Option<&str>, seccomp_profile: &Path) -> Value {
        let limits = &self.limits;
        let mut mounts: Vec<Value> = self
            .binds
            .iter()
            .map(|b| {
                json!({
                    "destination": b.target,
                    "type": "bind",
                    "source": b.source.to_string_lossy(),
                    "options": [if b.read_only { "ro" } else { "rw" }, "rbind"],
                })
            })
            .collect();
        mounts.extend(self.overlays.iter().map(OverlaySpec::libpod_mount));
        mounts.push(json!({
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": self.tmp_options(),
        }));
        mounts.push(json!({
            "destination": HOME_DIR,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": self.podman_home_options(),
        }));
        let env: serde_json::Map<String, Value> = self
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Value::from(v)),
                None => (kv.clone(), Value::from("")),
            })
            .collect();
        let mut resources = json!({ "pids": { "limit": limits.pids } });
        if let Some(memory) = limits.memory_bytes {
            resources["memory"] = json!({ "limit": memory });
        }
        if let Some(nano) = limits.nano_cpus {
            // The same conversion Podman applies to Docker's NanoCpus.
            resources["cpu"] = json!({ "period": 100_000u64, "quota": nano / 10_000 });
        }
        let (netns, networks) = self.network.libpod_netns();
        let mut body = json!({
            "name": self.name,
            "image": self.image_id,
            "command": self.engine_cmd(),
            "work_dir": self.workdir,
            "user": self.user,
            "env": env,
            "labels": self.labels,
            "stdin": self.stdin,
            "terminal": false,
            "cap_drop": ["ALL"],
            "no_new_privileges": true,
            "seccomp_profile_path": seccomp_profile.to_string_lossy(),
            "read_only_filesystem": true,
            // Otherwise Podman adds its own tmpfs at /tmp, /var/tmp and /run.
            "read_only_tmpfs": false,
            "init": self.init,
            "systemd": "false",
            "mounts": mounts,
            // Anonymous (no name): removed with the container.
            "volumes": self.volumes.iter().map(|target| json!({
                "Name": "",
                "Dest": target,
                "Options": ["nocopy"],
            })).collect::<Vec<_>>(),
            "resource_limits": resources,
            "r_limits": [
                { "type": "nofile", "soft": limits.nofile, "hard": limits.nofile },
                { "type": "nproc", "soft": limits.nproc, "hard": limits.nproc },
            ],
            "netns": netns,
            // SIGKILL straight away on a forced removal: the command has
            // already exited or timed out by then.
            "stop_timeout": 0,
            "log_configuration": { "driver": "none" },
        });
        if let Some(networks) = networks {
            body["Networks"] = networks;
        }
        if let Some(runtime) = runtime {
            body["oci_runtime"] = Value::from(runtime);
        }
        if let Some(init) = &self.init_path {
            body["init_path"] = Value::from(init.to_string_lossy());
        }
        body
    }
}

fn ulimit(name: &str, value: u64) -> ResourcesUlimits {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    ResourcesUlimits {
        name: Some(name.into()),
        soft: Some(value),
        hard: Some(value),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An agent's spec on the host image; other tests change what they need.
    pub(in crate::cage) fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "proctor-test".into(),
            image_id: "sha256:abc".into(),
            cmd: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            deadline: Some(container_deadline(Duration::from_secs(60))),
            workdir: "/work".into(),
            user: "1000:1000".into(),
            env: vec!["A=1".into(), "B=x=y".into()],
            labels: HashMap::from([("proctor.repo".into(), "r".into())]),
            stdin: true,
            binds: vec![BindSpec {
                source: "/usr".into(),
                target: "/usr".into(),
                read_only: true,
            }],
            volumes: Vec::new(),
            overlays: Vec::new(),
            skip_network_stack: true,
            network: NetMode::None,
            limits: Limits::default(),
            init: true,
            init_path: None,
            role: "agent",
        }
    }

    #[test]
    fn docker_body_is_hardened() {
        let body = spec().docker_body(Some("runc"));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.init, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(hc.runtime.as_deref(), Some("runc"));
        assert_eq!(hc.pids_limit, Some(512));
        assert_eq!(hc.memory, None);
        let tmpfs = hc.tmpfs.unwrap();
        assert!(tmpfs["/tmp"].contains("exec"));
        assert!(tmpfs[HOME_DIR].contains("mode=0700,uid=1000,gid=1000"));
        assert_eq!(hc.dns, None);
        assert_eq!(hc.mounts.unwrap()[0].read_only, Some(true));
        let security = hc.security_opt.unwrap();
        assert_eq!(security[0], "no-new-privileges");
        assert_eq!(security[1], seccomp::docker_security_opt());
        assert_eq!(body.stdin_once, Some(true));
    }

    #[test]
    fn a_copy_on_write_folder_is_an_overlay_on_both_engines() {
        let mut spec = spec();
        spec.overlays = vec![OverlaySpec {
            lower: "/repo/.proctor/caches/deps".into(),
            target: "/cache/deps".into(),
            scratch: Some("/tmp/proctor-layer-1-x".into()),
        }];
        // Docker: an anonymous `local` volume mounting the overlay, removed
        // with the container.
        let mounts = spec.docker_body(None).host_config.unwrap().mounts.unwrap();
        let volume = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/cache/deps"))
            .expect("the overlay's volume");
        assert_eq!(volume.typ, Some(MountType::VOLUME));
        assert_eq!(volume.source, None);
        let driver = volume
            .volume_options
            .as_ref()
            .and_then(|v| v.driver_config.clone())
            .expect("driver options");
        assert_eq!(driver.name.as_deref(), Some("local"));
        let options = driver.options.unwrap();
        assert_eq!(options["type"], "overlay");
        assert_eq!(
            options["o"],
            "lowerdir=/repo/.proctor/caches/deps,upperdir=/tmp/proctor-layer-1-x/upper,workdir=/tmp/proctor-layer-1-x/work,metacopy=on"
        );
        // Never a bind of the folder itself.
        assert!(!mounts
            .iter()
            .any(|m| m.source.as_deref() == Some("/repo/.proctor/caches/deps")));
        // Podman: the same overlay, as an OCI mount its runtime makes.
        let body = spec.libpod_body(None, Path::new("/p/seccomp.json"));
        let mounts = body["mounts"].as_array().unwrap();
        let overlay: Vec<_> = mounts
            .iter()
            .filter(|m| m["destination"] == "/cache/deps")
            .collect();
        assert_eq!(
            overlay,
            [&json!({
                "destination": "/cache/deps",
                "type": "overlay",
                "source": "overlay",
                "options": [
                    "lowerdir=/repo/.proctor/caches/deps",
                    "upperdir=/tmp/proctor-layer-1-x/upper",
                    "workdir=/tmp/proctor-layer-1-x/work",
                    "metacopy=on",
                    "nosuid",
                    "nodev",
                ],
            })]
        );
        assert!(body.get("overlay_volumes").is_none());
    }

    #[test]
    fn libpod_body_keeps_read_only_binds_and_env_values() {
        let body = spec().libpod_body(None, Path::new("/p/seccomp.json"));
        assert_eq!(body["mounts"][0]["options"][0], "ro");
        assert_eq!(body["seccomp_profile_path"], "/p/seccomp.json");
        assert_eq!(body["no_new_privileges"], true);
        assert_eq!(body["env"]["B"], "x=y");
        assert_eq!(body["netns"]["nsmode"], "none");
        assert!(body.get("oci_runtime").is_none());
        assert_eq!(body["r_limits"][0]["type"], "nofile");
        let tmp = &body["mounts"][1];
        assert_eq!(tmp["destination"], "/tmp");
        assert!(tmp["options"]
            .as_array()
            .unwrap()
            .contains(&Value::from("exec")));
        let home = &body["mounts"][2];
        assert_eq!(home["destination"], HOME_DIR);
        assert!(home["options"]
            .as_array()
            .unwrap()
            .contains(&Value::from("U")));
        assert!(body.get("Networks").is_none());
    }

    #[test]
    fn joined_and_named_networks_translate_for_both_engines() {
        let mut s = spec();
        s.network = NetMode::Join("proctor-netns-x".into());
        let body = s.docker_body(None);
        let hc = body.host_config.unwrap();
        assert_eq!(
            hc.network_mode.as_deref(),
            Some("container:proctor-netns-x")
        );
        assert_eq!(hc.dns, None);
        assert_eq!(body.network_disabled, Some(false));
        let body = s.libpod_body(None, Path::new("/p/seccomp.json"));
        assert_eq!(body["netns"]["nsmode"], "container");
        assert_eq!(body["netns"]["value"], "proctor-netns-x");
        assert!(body.get("Networks").is_none());

        s.network = NetMode::Network("egress-net".into());
        let body = s.libpod_body(None, Path::new("/p/seccomp.json"));
        assert_eq!(body["netns"]["nsmode"], "bridge");
        assert!(body["Networks"].get("egress-net").is_some());
        let hc = s.docker_body(None).host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("egress-net"));

        s.network = NetMode::Open;
        assert_eq!(
            s.libpod_body(None, Path::new("/p/seccomp.json"))["netns"]["nsmode"],
            "bridge"
        );
        let body = s.docker_body(None);
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("bridge")
        );
        assert_eq!(body.network_disabled, Some(false));
    }

    #[test]
    fn cpu_limit_converts_like_podman() {
        let mut s = spec();
        s.limits.nano_cpus = Some(1_500_000_000);
        let body = s.libpod_body(Some("crun"), Path::new("/p/seccomp.json"));
        assert_eq!(body["resource_limits"]["cpu"]["quota"], 150_000);
        assert_eq!(body["oci_runtime"], "crun");
    }

    #[test]
    fn the_container_deadline_comes_after_proctors_and_wraps_the_command_unchanged() {
        assert_eq!(
            container_deadline(Duration::from_secs(5)),
            Duration::from_secs(5) + DEADLINE_GRACE
        );
        // Rounded up: never before proctor's own deadline.
        assert_eq!(
            container_deadline(Duration::from_millis(1500)),
            Duration::from_secs(2) + DEADLINE_GRACE
        );
        // No overflow for an absurd timeout.
        assert_eq!(container_deadline(Duration::MAX).as_secs(), u64::MAX);
        let mut s = spec();
        s.deadline = Some(Duration::from_secs(12));
        let cmd = s.engine_cmd();
        assert_eq!(cmd[..2], ["/bin/sh", "-c"]);
        assert!(cmd[2].contains(DEADLINE_TIMER), "{cmd:?}");
        assert_eq!(
            cmd[3..],
            ["proctor-deadline", "12", "/bin/sh", "-c", "true"]
        );
        assert_eq!(s.docker_body(None).cmd, Some(cmd.clone()));
        assert_eq!(
            s.libpod_body(None, Path::new("/p/seccomp.json"))["command"],
            json!(cmd)
        );
        s.deadline = None;
        assert_eq!(s.engine_cmd(), s.cmd);
    }

    #[test]
    fn the_deadline_kills_the_command_and_passes_its_stdin() {
        use std::io::Write;
        use std::os::unix::process::ExitStatusExt;
        let mut s = spec();
        s.deadline = Some(Duration::from_secs(1));
        s.cmd = vec!["/bin/sh".into(), "-c".into(), "cat; exec sleep 600".into()];
        let cmd = s.engine_cmd();
        let mut child = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"the prompt\n").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "the prompt\n");
    }
}
