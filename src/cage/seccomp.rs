//! proctor's own seccomp profile (`cage/seccomp.json`, compiled into the
//! binary), applied to every container proctor creates on both engines.
//!
//! It is the engines' default allow-list without the calls that reach into
//! another process or out of the container's namespaces: `ptrace`,
//! `process_vm_readv`/`writev`, `perf_event_open`, `bpf`, `userfaultfd`,
//! the key ring (`keyctl`, `add_key`, `request_key`), the mount and
//! namespace families (`mount`, `unshare`, `setns`, `clone` with a
//! namespace flag, the new mount API, ...), module and kexec loading. Those
//! fail with `EPERM`; `clone3` fails with `ENOSYS` (its flags sit in memory
//! a filter cannot read), so libc falls back to `clone`, whose flags it
//! can. Docker takes the profile inline in `SecurityOpt`; Podman 4's API
//! reads it from a file on the engine's host (measured: inline JSON in
//! `SecurityOpt` fails with "file name too long"), written here once into
//! the user's private temp directory. This module decides nothing else.

use std::path::PathBuf;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

use super::host_image::{private_temp_dir, write_atomically};
use super::CageError;

/// The profile as shipped (`cage/seccomp.json`).
pub(crate) const PROFILE: &str = include_str!("../../cage/seccomp.json");

/// The profile on one line (what Docker receives): the file is indented
/// one name a line for readable diffs, which would only bloat each create.
static COMPACT: LazyLock<String> = LazyLock::new(|| {
    serde_json::from_str::<serde_json::Value>(PROFILE)
        .map(|v| v.to_string())
        // A unit test proves it parses; the engine would refuse it anyway.
        .unwrap_or_else(|_| PROFILE.to_string())
});

/// Docker's `HostConfig.SecurityOpt` entry carrying the profile.
pub(crate) fn docker_security_opt() -> String {
    format!("seccomp={}", COMPACT.as_str())
}

/// The profile's file for Podman: `seccomp-<sha256 prefix>.json` in the
/// private temp directory, written when missing (a new proctor with a new
/// profile writes a new name, so a running older one keeps its own).
pub(crate) fn profile_file() -> Result<PathBuf, CageError> {
    let digest = Sha256::digest(PROFILE.as_bytes());
    let name = format!("seccomp-{}.json", &hex::encode(digest)[..16]);
    let path = private_temp_dir()?.join(name);
    let intact = std::fs::read(&path).is_ok_and(|bytes| bytes == PROFILE.as_bytes());
    if !intact {
        write_atomically(&path, PROFILE.as_bytes())?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn profile() -> Value {
        serde_json::from_str(PROFILE).unwrap()
    }

    /// Names the rules give `action` (with `errnoRet`, when `errno` is set),
    /// unconditionally (no argument filter).
    fn names_with(action: &str, errno: Option<u64>) -> Vec<String> {
        profile()["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == action && r.get("args").is_none())
            .filter(|r| errno.is_none() || r["errnoRet"].as_u64() == errno)
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    const DENIED: &[&str] = &[
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "perf_event_open",
        "bpf",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        "mount",
        "umount2",
        "pivot_root",
        "unshare",
        "setns",
        "open_by_handle_at",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "fsopen",
        "open_tree",
        "move_mount",
    ];

    #[test]
    fn the_profile_denies_reaching_into_other_processes_and_namespaces() {
        let p = profile();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed = names_with("SCMP_ACT_ALLOW", None);
        let eperm = names_with("SCMP_ACT_ERRNO", Some(1));
        for name in DENIED {
            assert!(!allowed.iter().any(|a| a == name), "{name} is allowed");
            assert!(eperm.iter().any(|a| a == name), "{name} is not EPERM");
        }
        assert!(!allowed.iter().any(|a| a == "clone" || a == "clone3"));
        assert_eq!(names_with("SCMP_ACT_ERRNO", Some(38)), ["clone3"]);
        // `clone` only without namespace flags.
        let clone: Vec<&Value> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["names"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::from("clone"))
            })
            .collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone[0]["args"][0]["value"], 0x7E02_0000u64);
        assert_eq!(clone[0]["args"][0]["valueTwo"], 0);
        // What every agent and exam needs is still there.
        for name in [
            "execve", "openat", "read", "write", "wait4", "fork", "vfork",
        ] {
            assert!(allowed.iter().any(|a| a == name), "{name} is not allowed");
        }
    }

    #[test]
    fn docker_gets_the_profile_inline_on_one_line() {
        let opt = docker_security_opt();
        let json = opt.strip_prefix("seccomp=").unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<Value>(json).unwrap(), profile());
    }

    #[test]
    fn podman_gets_the_profile_as_a_private_file() {
        let path = profile_file().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), PROFILE);
        assert_eq!(profile_file().unwrap(), path);
    }
}
