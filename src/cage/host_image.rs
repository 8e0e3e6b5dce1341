//! The built-in `host` image: an empty image proctor imports itself, plus
//! read-only bind mounts of the host's toolchain, so that proctor works on
//! machines with no registry at all.
//!
//! This file decides *which* host paths a host-image container sees. It must
//! never mount the whole of `/etc`, `/root`, `/home`, the user's files or any
//! socket, and never mount the host's `/etc/passwd`: a minimal one for the
//! container's uid is generated instead.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::spec::BindSpec;
use super::CageError;

/// The user-facing name of the built-in host image.
pub const HOST_IMAGE: &str = "host";

/// The engine-side reference the host image is imported under. Bump the
/// suffix when the image's content changes so old imports are not reused.
pub const HOST_IMAGE_REF: &str = "proctor-host:2";

/// Host directories holding the toolchain, mounted read-only at the same
/// path. On usr-merged systems `/bin`, `/lib`, ... are symlinks into `/usr`;
/// the resolved directory is mounted, so `/bin/sh` and the dynamic loader
/// exist at their usual paths inside the container.
const TOOLCHAIN_DIRS: &[&str] = &["/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32"];

/// Selected `/etc` entries the toolchain needs and that hold no secrets:
/// Debian's alternatives (`awk`, `which`, ...), the public CA bundle for
/// TLS, OpenSSL's config, and the dynamic linker's cache (libraries in
/// directories listed under `/etc/ld.so.conf.d` are not found without it).
/// `/etc/ssl/private` is deliberately absent.
const ETC_ENTRIES: &[&str] = &[
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/ld.so.cache",
];

/// A root filesystem tarball with nothing in it but `/tmp`: every other
/// directory the container sees comes from mounts, and the runtime creates
/// mount points.
///
/// `/tmp` is there, sticky and world-writable, because Docker copies the
/// image directory's mode onto a tmpfs mounted over it, and a missing one
/// that Docker creates itself (as the working directory) comes out `0755`:
/// the container's non-root user could not write to its own `/tmp`.
pub(crate) fn empty_rootfs_tar() -> Result<Vec<u8>, std::io::Error> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut tmp = tar::Header::new_gnu();
    tmp.set_entry_type(tar::EntryType::Directory);
    tmp.set_mode(0o1777);
    tmp.set_uid(0);
    tmp.set_gid(0);
    tmp.set_mtime(0);
    tmp.set_size(0);
    builder.append_data(&mut tmp, "tmp/", std::io::empty())?;
    builder.into_inner()
}

/// The read-only toolchain mounts for a host-image container, skipping
/// anything the host does not have.
pub(crate) fn toolchain_binds() -> Vec<BindSpec> {
    let mut binds: Vec<BindSpec> = Vec::new();
    for target in TOOLCHAIN_DIRS.iter().chain(ETC_ENTRIES) {
        // canonicalize follows symlinks (`/bin` -> `/usr/bin`) and fails
        // for paths that do not exist, which are simply not mounted.
        let Ok(source) = fs::canonicalize(target) else {
            continue;
        };
        binds.push(BindSpec {
            source,
            target: (*target).to_string(),
            read_only: true,
        });
    }
    binds
}

/// A numeric `uid:gid` (or bare `uid`, meaning `uid:uid`).
pub(crate) fn parse_numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, g),
        None => (user, user),
    };
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// The generated `/etc/passwd` text for a container running as `uid:gid`.
pub(crate) fn passwd_text(uid: u32, gid: u32) -> String {
    let home = super::spec::HOME_DIR;
    let mut text = format!("root:x:0:0:root:{home}:/bin/sh\n");
    if uid != 0 && uid != 65534 {
        text.push_str(&format!("proctor:x:{uid}:{gid}:proctor:{home}:/bin/sh\n"));
    }
    text.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    text
}

/// The generated `/etc/group` text for a container running as `uid:gid`.
pub(crate) fn group_text(gid: u32) -> String {
    let mut text = String::from("root:x:0:\n");
    if gid != 0 && gid != 65534 {
        text.push_str(&format!("proctor:x:{gid}:\n"));
    }
    text.push_str("nogroup:x:65534:\n");
    text
}

/// The `/etc/hosts` of a container without network on Docker, which then
/// makes none itself (see `spec.rs`): `localhost` must still resolve.
pub(crate) const HOSTS_TEXT: &str =
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Generated passwd/group files, written once per `uid:gid` per process,
/// and the generated hosts file.
#[derive(Debug, Default)]
pub(crate) struct IdentityFiles {
    written: Mutex<HashMap<(u32, u32), (PathBuf, PathBuf)>>,
    hosts: Mutex<Option<PathBuf>>,
}

impl IdentityFiles {
    /// Binds of a generated `/etc/passwd` and `/etc/group` for `uid:gid`.
    pub(crate) fn binds(&self, uid: u32, gid: u32) -> Result<[BindSpec; 2], CageError> {
        let (passwd, group) = self.paths(uid, gid)?;
        Ok([
            BindSpec {
                source: passwd,
                target: "/etc/passwd".into(),
                read_only: true,
            },
            BindSpec {
                source: group,
                target: "/etc/group".into(),
                read_only: true,
            },
        ])
    }

    /// A read-only bind of a generated `/etc/hosts` ([`HOSTS_TEXT`]).
    pub(crate) fn hosts_bind(&self) -> Result<BindSpec, CageError> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let path = match hosts.as_ref().filter(|p| p.exists()) {
            Some(path) => path.clone(),
            None => {
                let path = private_temp_dir()?.join("hosts");
                write_atomically(&path, HOSTS_TEXT.as_bytes())?;
                *hosts = Some(path.clone());
                path
            }
        };
        Ok(BindSpec {
            source: path,
            target: "/etc/hosts".into(),
            read_only: true,
        })
    }

    fn paths(&self, uid: u32, gid: u32) -> Result<(PathBuf, PathBuf), CageError> {
        // A poisoned lock only means another run panicked while inserting;
        // the map itself is still usable.
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, g)) = written.get(&(uid, gid)) {
            // A tmp cleaner may have removed them during a long run.
            if p.exists() && g.exists() {
                return Ok((p.clone(), g.clone()));
            }
        }
        let dir = private_temp_dir()?;
        let passwd = dir.join(format!("passwd-{uid}-{gid}"));
        let group = dir.join(format!("group-{uid}-{gid}"));
        write_atomically(&passwd, passwd_text(uid, gid).as_bytes())?;
        write_atomically(&group, group_text(gid).as_bytes())?;
        written.insert((uid, gid), (passwd.clone(), group.clone()));
        Ok((passwd, group))
    }
}

/// A name part unique within this host that starts with this process's
/// id: pid, a process-wide counter, and time, in hex (`<pid>-<n>-<nanos>`).
/// Every per-process name in the private directory ends with one, so the
/// sweep (`leftovers.rs`) can tell whose it is.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}-{n:x}-{nanos:x}", std::process::id())
}

/// `$TMPDIR/proctor-cage-<euid>/`, created private to this user. The
/// shared temp directory is world-writable, so an existing entry is only
/// trusted when it is a real directory owned by us.
pub(crate) fn private_temp_dir() -> Result<PathBuf, CageError> {
    let (dir, euid) = private_temp_path();
    let io_err = |source| CageError::Io {
        path: dir.clone(),
        source,
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(e)),
    }
    let meta = fs::symlink_metadata(&dir).map_err(io_err)?;
    if !is_private(&meta, euid) {
        return Err(io_err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "exists but is not a private directory owned by this user",
        )));
    }
    Ok(dir)
}

/// [`private_temp_dir`] if it exists and is private to this user, without
/// creating it: where a sweep looks for leftovers.
pub(crate) fn existing_private_temp_dir() -> Option<PathBuf> {
    let (dir, euid) = private_temp_path();
    let meta = fs::symlink_metadata(&dir).ok()?;
    is_private(&meta, euid).then_some(dir)
}

fn private_temp_path() -> (PathBuf, u32) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("proctor-cage-{euid}"));
    (dir, euid)
}

fn is_private(meta: &fs::Metadata, euid: u32) -> bool {
    meta.file_type().is_dir() && meta.uid() == euid && meta.mode() & 0o022 == 0
}

/// Writes `bytes` to `path` through a uniquely named temporary file and a
/// rename, so a concurrent run never mounts a half-written file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CageError> {
    let tmp = path.with_extension(format!("tmp{}", unique_suffix()));
    let io_err = |source| CageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            // Readable by the container's (non-root) user.
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_users_parse() {
        assert_eq!(parse_numeric_user("1000:1001"), Some((1000, 1001)));
        assert_eq!(parse_numeric_user("1000"), Some((1000, 1000)));
        assert_eq!(parse_numeric_user("alice"), None);
        assert_eq!(parse_numeric_user("1000:staff"), None);
    }

    #[test]
    fn passwd_names_the_container_user_with_home_in_tmp() {
        let text = passwd_text(1000, 1000);
        assert!(text.contains("proctor:x:1000:1000:proctor:/tmp/home:/bin/sh\n"));
        assert_eq!(passwd_text(65534, 65534).matches(":x:65534:").count(), 1);
        assert!(text.starts_with("root:x:0:0:"));
        assert_eq!(passwd_text(0, 0).matches(":x:0:").count(), 1);
        assert!(group_text(1000).contains("proctor:x:1000:\n"));
        assert!(!group_text(65534).contains("proctor"));
    }

    #[test]
    fn toolchain_binds_never_include_secrets_or_all_of_etc() {
        for bind in toolchain_binds() {
            assert!(bind.read_only);
            assert!(!["/etc", "/root", "/home", "/etc/ssl"].contains(&bind.target.as_str()));
            assert!(!bind.target.starts_with("/etc/ssl/private"));
        }
    }

    #[test]
    fn rootfs_holds_only_a_sticky_tmp() {
        let bytes = empty_rootfs_tar().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (path, e.header().mode().unwrap())
            })
            .collect();
        assert_eq!(entries, [("tmp/".to_string(), 0o1777)]);
    }
}
