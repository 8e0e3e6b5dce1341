//! A remote engine (`DOCKER_HOST=tcp://…`) end to end on both engines: the
//! test process forwards a loopback TCP port to the engine's unix socket,
//! so the real binary talks HTTP over TCP and must take the tar path (no
//! bind mounts): the worktree is uploaded before each container starts and
//! the agent's edits are downloaded after it exits, never `.git`,
//! `.proctor` or `INBOX`.
//!
//! Needs `/bin/busybox` from Debian's `busybox-static` (`.ci/run` installs
//! it). Like every container test, a missing engine fails the test.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::path::Path;

use bollard::query_parameters::ListVolumesOptionsBuilder;
use common::{stderr, TestRepo};

const BUSYBOX: &str = "/bin/busybox";

#[derive(Clone, Copy, Debug)]
enum Engine {
    Docker,
    Podman,
}

impl Engine {
    fn socket(self) -> String {
        let (var, default) = match self {
            Engine::Docker => ("PROCTOR_TEST_DOCKER", "/var/run/docker.sock"),
            Engine::Podman => ("PROCTOR_TEST_PODMAN", "/run/podman/podman.sock"),
        };
        std::env::var(var)
            .map(|s| s.trim_start_matches("unix://").to_string())
            .unwrap_or_else(|_| default.to_string())
    }

    fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// Listens on 127.0.0.1 (a free port) and splices every connection to the
/// unix socket; returns `tcp://127.0.0.1:PORT`. The threads live as long as
/// the test process.
fn forward_tcp_to(socket: &str, engine: Engine) -> String {
    assert!(
        Path::new(socket).exists(),
        "no {} socket at {socket}; {}",
        engine.name(),
        common::ENGINE_HELP
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let socket = socket.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(engine) = UnixStream::connect(&socket) else {
                continue;
            };
            splice(client, engine);
        }
    });
    format!("tcp://127.0.0.1:{port}")
}

fn splice(client: TcpStream, engine: UnixStream) {
    let (mut client_read, mut engine_write) =
        (client.try_clone().unwrap(), engine.try_clone().unwrap());
    let (mut engine_read, mut client_write) = (engine, client);
    std::thread::spawn(move || {
        let _ = copy(&mut client_read, &mut engine_write);
        let _ = engine_write.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = copy(&mut engine_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
}

fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

/// Busybox with the applets the scripted agent and exam use.
fn busybox_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's `busybox-static` (`apt-get install busybox-static`, or `bash .ci/run`)"
    );
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "sed", "test", "[", "echo", "rm", "mkdir", "ls", "grep",
    ] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = r#". ./calc.sh
[ "$(add 2 2)" = 4 ] || { echo "FAIL: add 2 2 printed $(add 2 2)"; exit 1; }
echo ok
"#;
/// Run 1 only writes its journal; run 2 fixes the bug, deletes a file,
/// adds one, and tries to plant files in `.git`, `.proctor` and `INBOX`.
const AGENT: &str = r#"cat >/dev/null
echo "run $PROCTOR_RUN" >> .proctor/journal/notes.md
if [ "$PROCTOR_RUN" -ge 2 ]; then
  sed -i 's/\$1 - \$2/$1 + $2/' calc.sh
  rm obsolete.txt
  mkdir -p added && echo new > added/file.txt
  echo evil > .git/hooks/pre-commit
  echo forged > .proctor/planted
  echo forged > INBOX/planted
fi
"#;

fn unique(engine: Engine, what: &str) -> String {
    format!(
        "proctor-test-{what}-{}-{}",
        engine.name(),
        std::process::id()
    )
}

/// Volumes with proctor's repo label (Docker labels the anonymous volumes
/// of the tar path), and every volume's name, through the unix socket.
fn volumes(engine: Engine, label: &str) -> (Vec<String>, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client =
            bollard::Docker::connect_with_unix(&engine.socket(), 60, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let client = client.negotiate_version().await.unwrap();
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("proctor.repo={label}")],
        )]);
        let labelled = client
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap();
        let all = client
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .unwrap();
        let names = |v: bollard::models::VolumeListResponse| -> Vec<String> {
            v.volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.name)
                .collect()
        };
        (names(labelled), names(all))
    })
}

fn remote_loop_takes_the_tar_path(engine: Engine) {
    let address = forward_tcp_to(&engine.socket(), engine);
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let image = unique(engine, "remote");

    let repo = TestRepo::new()
        .engine(&address)
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("obsolete.txt", "delete me\n")
        .file("agent.sh", AGENT)
        .manifest(&format!(
            "loop: fix\ntask: make test.sh pass\nimage: {image}\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 4 runs\n"
        ))
        .commit("buggy");
    let label = proctor::cli::run::repo_label(&repo.path());
    let (_, volumes_before) = volumes(engine, &label);

    // The image goes over TCP too.
    let rootfs_arg = rootfs.to_string_lossy().into_owned();
    let out = repo.proctor(&["image", "import", &rootfs_arg, "--name", &image]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(repo.agent_starts(), 2);
    let log = repo.log("proctor/fix");
    assert_eq!(log[0], "proctor(fix): close");
    assert_eq!(log[1], "proctor(fix): run 2");
    // The agent's edits came back and were committed.
    assert!(
        repo.read("calc.sh").contains("$1 + $2"),
        "{}",
        repo.read("calc.sh")
    );
    assert!(!repo.exists("obsolete.txt"));
    assert_eq!(repo.read("added/file.txt"), "new\n");
    assert_eq!(repo.read(".proctor/journal/notes.md"), "run 1\nrun 2\n");
    let git = git2::Repository::open(repo.path()).unwrap();
    let tree = git.head().unwrap().peel_to_tree().unwrap();
    assert!(tree.get_path(Path::new("added/file.txt")).is_ok());
    assert!(tree.get_path(Path::new("obsolete.txt")).is_err());
    assert!(tree
        .get_path(Path::new(".proctor/journal/notes.md"))
        .is_ok());
    // Nothing reached the host through the read-only paths.
    assert!(
        !repo.exists(".git/hooks/pre-commit"),
        "the agent wrote .git"
    );
    assert!(!repo.exists(".proctor/planted"), "the agent wrote .proctor");
    assert!(!repo.exists("INBOX/planted"), "the agent wrote INBOX");
    assert_eq!(repo.status(), Vec::<String>::new());

    // `once` over the same remote engine.
    let once = TestRepo::new()
        .engine(&address)
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("fix.sh", "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh\n")
        .commit("buggy");
    let out = once.proctor(&[
        "once",
        "--until",
        "sh test.sh",
        "--agent",
        "sh fix.sh",
        "--image",
        &image,
        "--",
        "make test.sh pass",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(once.log("proctor/once")[1], "proctor(once): run 1");
    assert!(once.read("calc.sh").contains("$1 + $2"));

    // The built-in host image is bind mounts of this machine: refused.
    let host = TestRepo::new()
        .engine(&address)
        .file("test.sh", "exit 0\n")
        .manifest("loop: h\ntask: t\nagent: 'true'\ndone_when: sh test.sh\n")
        .commit("host image");
    let out = host.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`host` image"), "{err}");
    assert!(err.contains("remote engine"), "{err}");
    assert!(err.contains("image:"), "{err}");
    assert_eq!(err.trim().lines().count(), 2, "one line and a hint: {err}");

    for r in [&repo, &once, &host] {
        r.assert_no_containers();
    }
    let (labelled, volumes_after) = volumes(engine, &label);
    assert!(labelled.is_empty(), "volumes left behind: {labelled:?}");
    let new: Vec<&String> = volumes_after
        .iter()
        .filter(|v| !volumes_before.contains(v))
        .collect();
    assert!(new.is_empty(), "volumes left behind: {new:?}");
    let _ = repo.proctor(&["image", "rm", &image]);
}

#[test]
fn bad_engine_addresses_are_one_line_errors() {
    let repo = TestRepo::new().file("a", "a\n").commit("a");
    for (address, says) in [
        ("ssh://me@host", "`ssh://` is not supported"),
        ("http://127.0.0.1:2375", "`http://` is not supported"),
        ("tcp://127.0.0.1:notaport", "is not a port number"),
    ] {
        let out = repo.proctor_env(&["reap"], &[("DOCKER_HOST", address)]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(says), "{address}: {err}");
        assert!(err.contains("tcp://host:port"), "{err}");
    }
    let certs = tempfile::tempdir().unwrap();
    let out = repo.proctor_env(
        &["reap"],
        &[
            ("DOCKER_HOST", "tcp://127.0.0.1:1"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &certs.path().to_string_lossy()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ca.pem"), "{err}");
    assert!(err.contains("DOCKER_CERT_PATH"), "{err}");
}

#[test]
fn remote_loop_takes_the_tar_path_docker() {
    remote_loop_takes_the_tar_path(Engine::Docker);
}

#[test]
fn remote_loop_takes_the_tar_path_podman() {
    remote_loop_takes_the_tar_path(Engine::Podman);
}
