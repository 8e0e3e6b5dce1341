//! Containers started ahead of need.
//!
//! Starting a container is most of its cost (create, attach, start: about
//! 150 ms with runc; the command itself is often a few ms). So the engine
//! may [`prepare`](super::Cage::prepare) the invocations it will most likely
//! run next, and this pool starts their containers in the background. Such
//! a container runs a tiny gate, not the command: the gate waits on stdin
//! for proctor's `go`, taking `NAME=value` lines before it for values known
//! only at the last moment ([`LATE_ENV`]), then `exec`s `/bin/sh -c CMD`
//! exactly as a cold container would, with the rest of the stream (the
//! prompt) as its stdin. The container's own deadline (`spec.rs`) travels
//! with the `go` (`go SECONDS`) and is armed only then, as the command
//! starts: a container that waited long for its turn is not killed early.
//!
//! A prepared container is used only for an invocation equal to the one it
//! was prepared for (everything that shapes the container: image id,
//! command, mounts, environment, network, user, labels, limits); anything
//! else starts cold. An unused one is removed by
//! [`Cage::settle`](super::Cage::settle). A gate that
//! never hears `go` never runs the command, so a wrong prediction can cost a
//! container, never a result.

use std::sync::Mutex;

use serde_json::Value;
use tokio::task::JoinHandle;

use super::docker::{create_attach_start, lock, EngineLink, Launched, RemovalGuard};
use super::spec::{ContainerSpec, DEADLINE_TIMER};
use super::CageError;

/// Environment values the engine only knows at the last moment (the commit
/// an exam runs on); they travel through the gate instead of the create
/// call, and are left out when invocations are compared.
pub(crate) const LATE_ENV: &[&str] = &["PROCTOR_COMMIT"];

/// What must be done before a prepared container is created (start the
/// loop's network holder that the container joins).
pub(crate) type Before =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CageError>> + Send>>;

/// The gate's script; the real command is its `$0`. `go SECONDS` arms the
/// container's deadline ([`DEADLINE_TIMER`]) just before the command starts.
fn gate_script() -> String {
    format!(
        r#"while IFS= read -r proctor_line; do case $proctor_line in go) exec /bin/sh -c "$0" ;; "go "*) proctor_deadline=${{proctor_line#go }}; {DEADLINE_TIMER} exec /bin/sh -c "$0" ;; *=*) export "$proctor_line" ;; *) exit 125 ;; esac; done; exit 125"#
    )
}

/// The pool of prepared containers of one cage.
#[derive(Default)]
pub(crate) struct WarmPool {
    entries: Mutex<Vec<Entry>>,
    /// Removals of used containers left to run in the background.
    removals: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("prepared", &self.len())
            .finish()
    }
}

struct Entry {
    key: Value,
    task: JoinHandle<Result<Launched, CageError>>,
}

/// A prepared container, taken for use.
pub(crate) struct Taken {
    pub launched: Launched,
    /// What to write on its stdin before the invocation's own stdin: the
    /// late environment and `go`.
    pub preamble: Vec<u8>,
}

impl WarmPool {
    /// Starts a container for `spec` in the background unless one for an
    /// equal spec is already there, after `before` succeeded. `spec.name`
    /// must be set.
    pub(crate) fn prepare(
        &self,
        engine: EngineLink,
        spec: &ContainerSpec,
        runtime: Option<String>,
        before: Option<Before>,
    ) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let key = key_of(spec);
        let mut entries = lock(&self.entries);
        if entries.iter().any(|e| e.key == key) {
            return;
        }
        let mut gated = gated(spec);
        let task = handle.spawn(async move {
            if let Some(before) = before {
                if let Err(error) = before.await {
                    tracing::debug!(%error, "not starting a container ahead of need");
                    return Err(error);
                }
            }
            // Armed before the create call, like a cold launch.
            let mut guard = RemovalGuard::new(engine.docker.clone(), gated.name.clone());
            if let Err(error) = guard.make_layers(&mut gated) {
                guard.remove_now().await;
                tracing::debug!(%error, "not starting a container ahead of need");
                return Err(error);
            }
            match create_attach_start(&engine, &gated, runtime.as_deref()).await {
                Ok((id, attach)) => Ok(Launched { id, guard, attach }),
                Err(error) => {
                    guard.remove_now().await;
                    tracing::debug!(%error, "a container started ahead of need failed");
                    Err(error)
                }
            }
        });
        entries.push(Entry { key, task });
    }

    /// The prepared container for `spec`, if there is one and it started.
    pub(crate) async fn take(&self, spec: &ContainerSpec) -> Option<Taken> {
        let key = key_of(spec);
        let entry = {
            let mut entries = lock(&self.entries);
            let at = entries.iter().position(|e| e.key == key)?;
            entries.swap_remove(at)
        };
        let launched = match entry.task.await {
            Ok(Ok(launched)) => launched,
            Ok(Err(_)) => return None,
            Err(error) => {
                tracing::debug!(%error, "a container start ahead of need did not finish");
                return None;
            }
        };
        let mut preamble = Vec::new();
        for kv in &spec.env {
            let Some((name, _)) = kv.split_once('=') else {
                continue;
            };
            if LATE_ENV.contains(&name) {
                if kv.contains('\n') {
                    // Cannot travel as one line: start cold instead.
                    launched.guard.remove_now().await;
                    return None;
                }
                preamble.extend_from_slice(kv.as_bytes());
                preamble.push(b'\n');
            }
        }
        match spec.deadline {
            Some(deadline) => {
                preamble.extend_from_slice(format!("go {}\n", deadline.as_secs()).as_bytes())
            }
            None => preamble.extend_from_slice(b"go\n"),
        }
        Some(Taken { launched, preamble })
    }

    /// Removes a used container in the background; [`WarmPool::settle`]
    /// waits for it. Without an async runtime, removes it here and now.
    pub(crate) async fn remove_later(&self, guard: RemovalGuard) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let task = handle.spawn(guard.remove_now());
                let mut removals = lock(&self.removals);
                removals.retain(|r| !r.is_finished());
                removals.push(task);
            }
            Err(_) => guard.remove_now().await,
        }
    }

    /// Removes every prepared container (waiting for starts in flight, so
    /// none is created after this returns) and waits for the removals
    /// running in the background.
    pub(crate) async fn settle(&self) {
        let entries: Vec<Entry> = std::mem::take(&mut *lock(&self.entries));
        let removals = entries.into_iter().map(|entry| async move {
            if let Ok(Ok(launched)) = entry.task.await {
                launched.guard.remove_now().await;
            }
        });
        futures_util::future::join_all(removals).await;
        let background: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.removals));
        for removal in background {
            if let Err(error) = removal.await {
                tracing::warn!(%error, "a container removal did not finish");
            }
        }
    }

    /// How many containers are prepared or being prepared.
    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// The container a prepared `spec` really runs: the gate, with stdin open,
/// the late environment left out, and no deadline until `go`.
fn gated(spec: &ContainerSpec) -> ContainerSpec {
    let mut gated = spec.clone();
    let command = spec.cmd.last().cloned().unwrap_or_default();
    gated.cmd = vec!["/bin/sh".into(), "-c".into(), gate_script(), command];
    gated.deadline = None;
    gated.stdin = true;
    gated.env.retain(|kv| !is_late(kv));
    gated
}

fn is_late(kv: &str) -> bool {
    kv.split_once('=')
        .is_some_and(|(name, _)| LATE_ENV.contains(&name))
}

/// What makes two specs interchangeable: both engines' create bodies, with
/// the parts that legitimately differ (name, stdin, late values, the
/// deadline, which comes with the `go`) cleared.
/// Compared as JSON values, so map order does not matter.
fn key_of(spec: &ContainerSpec) -> Value {
    let mut normal = spec.clone();
    normal.name = String::new();
    normal.stdin = true;
    normal.deadline = None;
    normal.env.retain(|kv| !is_late(kv));
    let late: Vec<&str> = spec
        .env
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(n, _)| n))
        .filter(|n| LATE_ENV.contains(n))
        .collect();
    let docker = serde_json::to_value(normal.docker_body(None)).unwrap_or(Value::Null);
    serde_json::json!({
        "docker": docker,
        // Every container gets the same profile file.
        "libpod": normal.libpod_body(None, std::path::Path::new("seccomp.json")),
        "late": late,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cage::spec::BindSpec;

    fn spec(env: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: "proctor-verifier-1".into(),
            cmd: vec!["/bin/sh".into(), "-c".into(), "sh exam.sh".into()],
            env: env.iter().map(|s| s.to_string()).collect(),
            labels: HashMap::from([
                ("proctor.repo".into(), "r".into()),
                ("proctor.loop".into(), "l".into()),
            ]),
            stdin: false,
            binds: vec![BindSpec {
                source: "/dev/shm/x".into(),
                target: "/work".into(),
                read_only: false,
            }],
            role: "verifier",
            ..crate::cage::spec::tests::spec()
        }
    }

    #[test]
    fn keys_ignore_name_stdin_and_late_values_but_nothing_else() {
        let a = spec(&["PROCTOR_COMMIT=aaa", "CI=true", "X=1"]);
        // Another name, stdin, and commit value: interchangeable.
        let mut c = spec(&["CI=true", "PROCTOR_COMMIT=bbb", "X=1"]);
        c.name = "other".into();
        c.stdin = true;
        assert_eq!(key_of(&a), key_of(&c));
        // Any other environment difference is not.
        let b = spec(&["PROCTOR_COMMIT=aaa", "X=1", "CI=true"]);
        assert_ne!(key_of(&a), key_of(&b));
        assert_ne!(
            key_of(&a),
            key_of(&spec(&["PROCTOR_COMMIT=a", "CI=true", "X=2"]))
        );
        let mut d = c.clone();
        d.binds[0].read_only = true;
        assert_ne!(key_of(&a), key_of(&d));
        let mut e = c.clone();
        e.labels.insert("proctor.role".into(), "agent".into());
        assert_ne!(key_of(&a), key_of(&e));
        let mut f = c.clone();
        f.cmd[2] = "sh other.sh".into();
        assert_ne!(key_of(&a), key_of(&f));
        // The deadline comes with the `go`, not with the container.
        let mut g = c.clone();
        g.deadline = Some(std::time::Duration::from_secs(3600));
        assert_eq!(key_of(&a), key_of(&g));
        assert_ne!(key_of(&a), key_of(&spec(&["CI=true", "X=1"])));
    }

    /// Exit code of a gate that was closed without `go`.
    const GATE_CLOSED: i32 = 125;

    #[test]
    fn the_gate_runs_the_command_only_after_go() {
        let g = gated(&spec(&["PROCTOR_COMMIT=aaa", "CI=true"]));
        assert_eq!(g.env, ["CI=true"]);
        assert!(g.stdin);
        assert_eq!(g.cmd[3], "sh exam.sh");
        // No deadline runs while the gate waits: it is armed at `go`.
        assert_eq!(g.deadline, None);
        assert_eq!(g.engine_cmd(), g.cmd);
        let run = |input: &str| {
            let mut child = std::process::Command::new("/bin/sh")
                .args(["-c", &gate_script(), "echo \"ran $PROCTOR_COMMIT\"; cat"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        assert_eq!(
            run("PROCTOR_COMMIT=c0ffee\ngo\nthe prompt\nline 2"),
            (Some(0), "ran c0ffee\nthe prompt\nline 2".into())
        );
        assert_eq!(run(""), (Some(GATE_CLOSED), String::new()));
        assert_eq!(run("rm -rf /\n"), (Some(GATE_CLOSED), String::new()));
    }

    #[test]
    fn go_with_seconds_arms_the_deadline_as_the_command_starts() {
        use std::io::Write;
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", &gate_script(), "echo started; cat; exec sleep 600"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go 1\nthe prompt\n").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        // Killed by the gate's own timer, long before `sleep 600` ends.
        assert_eq!(out.status.signal(), Some(libc::SIGKILL));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "started\nthe prompt\n"
        );
    }
}
