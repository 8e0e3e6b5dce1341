//! The cage against real engines: every check runs on Docker and on Podman.
//!
//! The sockets default to the rootful ones and can be pointed elsewhere
//! with `PROCTOR_TEST_DOCKER` / `PROCTOR_TEST_PODMAN` (e.g. a Podman
//! service started with `--runtime runc` where crun cannot run). An engine
//! that does not answer fails the test with how to start it; nothing is
//! skipped. Run with `--test-threads=2` or so: each test starts containers.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{cage, on_both_engines, test_repo_label, verifier_labels};
use proctor::cage::{
    Access, Cage, CageError, DockerCage, EngineKind, Invocation, Mount, NetworkPolicy, Role,
    HOST_IMAGE, LABEL_REPO,
};

/// The uid:gid commands run as: not root, and not the test process's.
const USER: &str = "1000:1000";

struct Fixture {
    cage: DockerCage,
    repo: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(test: &str, engine: EngineKind) -> Fixture {
        Fixture {
            cage: cage(engine).await,
            repo: test_repo_label(test, engine),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn inv(&self, command: &str) -> Invocation {
        let labels = verifier_labels(&self.repo);
        Invocation {
            user: USER.into(),
            ..Invocation::plain(command, labels, self.dir.path().join("logs/nested/run.log"))
        }
    }

    async fn run(&self, inv: Invocation) -> (proctor::cage::Outcome, String) {
        let log = inv.log.clone();
        let outcome = self
            .cage
            .run(inv)
            .await
            .unwrap_or_else(|e| panic!("run: {e}"));
        let text = std::fs::read_to_string(&log).expect("log file");
        (outcome, text)
    }

    /// No container of this test may outlive its run.
    async fn assert_no_leftovers(&self) {
        let left = self
            .cage
            .list_labelled(&[(LABEL_REPO, &self.repo)])
            .await
            .expect("list containers");
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

on_both_engines!(
    async:
    exit_codes_come_back,
    stdin_reaches_the_command,
    no_stdin_means_immediate_eof,
    output_is_logged_capped_and_summarised,
    host_environment_does_not_leak,
    network_none_has_only_loopback,
    runs_as_the_given_uid,
    root_is_read_only_and_tmp_is_writable_and_executable,
    bind_mounts_honour_read_only,
    hardening_is_applied,
    host_toolchain_works_without_host_secrets,
    timeout_kills_the_container,
    dropped_run_removes_its_container,
    failed_start_leaves_nothing,
    missing_image_is_a_clear_error,
    remove_labelled_removes_only_matching_containers,
    agents_of_a_loop_share_its_holder_and_loops_do_not,
    a_dead_holder_is_replaced_before_the_next_agent,
);

async fn exit_codes_come_back(engine: EngineKind) {
    let f = Fixture::new("exit", engine).await;
    for (command, code) in [("exit 0", 0), ("exit 3", 3), ("no-such-command-here", 127)] {
        let (outcome, _) = f.run(f.inv(command)).await;
        assert_eq!(
            outcome.exit_code,
            code,
            "`{command}` on {}",
            f.cage.describe()
        );
        assert!(!outcome.timed_out);
        assert!(!outcome.container_id.is_empty());
        assert!(
            outcome.image_id.starts_with("sha256:"),
            "{}",
            outcome.image_id
        );
    }
    f.assert_no_leftovers().await;
}

async fn stdin_reaches_the_command(engine: EngineKind) {
    let f = Fixture::new("stdin", engine).await;
    let mut inv = f.inv("cat; echo '<end>'");
    inv.stdin = Some(b"the prompt: fix the tests\n".to_vec());
    let (outcome, log) = f.run(inv).await;
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(log, "the prompt: fix the tests\n<end>\n");
    assert_eq!(outcome.output_head, log);

    // Larger than any pipe buffer, so delivery and output run concurrently.
    let mut inv = f.inv("wc -c");
    inv.stdin = Some(vec![b'x'; 3 << 20]);
    let (outcome, log) = f.run(inv).await;
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(log.trim(), (3u32 << 20).to_string());

    // A command that ignores its input still finishes.
    let mut inv = f.inv("exit 4");
    inv.stdin = Some(vec![b'y'; 1 << 20]);
    let (outcome, _) = f.run(inv).await;
    assert_eq!(outcome.exit_code, 4);
    f.assert_no_leftovers().await;
}

async fn no_stdin_means_immediate_eof(engine: EngineKind) {
    let f = Fixture::new("nostdin", engine).await;
    let mut inv = f.inv("cat; echo done");
    inv.timeout = Duration::from_secs(20);
    let (outcome, log) = f.run(inv).await;
    assert!(!outcome.timed_out);
    assert_eq!(log, "done\n");
    f.assert_no_leftovers().await;
}

async fn output_is_logged_capped_and_summarised(engine: EngineKind) {
    let f = Fixture::new("output", engine).await;
    let mut inv = f.inv("yes | head -c 5000000");
    inv.log_cap = 100 * 1024;
    let (outcome, log) = f.run(inv).await;
    assert_eq!(outcome.exit_code, 0);
    let total = 5_000_000u64;
    assert_eq!(outcome.output_bytes, total);
    let (kept, note) = log.split_at(100 * 1024);
    assert!(kept.chars().all(|c| c == 'y' || c == '\n'));
    assert!(
        note.contains(&format!(
            "output cut: {} of {total} bytes",
            total - 100 * 1024
        )),
        "note: {note}"
    );
    assert!(note.len() < 200, "only a short note follows the cap");
    assert_eq!(outcome.output_head.len(), 8 * 1024);
    assert!(outcome.output_head.starts_with("y\ny\n"));
    assert_eq!(outcome.output_tail.len(), 8 * 1024);
    assert!(outcome.output_tail.ends_with("y\ny\n"));

    // Both streams reach the log (in no guaranteed order: separate pipes).
    let (outcome, log) = f.run(f.inv("echo to-stdout; echo to-stderr >&2")).await;
    assert_eq!(outcome.exit_code, 0);
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    assert_eq!(lines, ["to-stderr", "to-stdout"]);
    assert!(outcome.output_tail.is_empty());
    f.assert_no_leftovers().await;
}

async fn host_environment_does_not_leak(engine: EngineKind) {
    // Harmless to other tests: none of them reads this variable.
    std::env::set_var("PROCTOR_TEST_HOST_SECRET", "leaked-value");
    let f = Fixture::new("env", engine).await;
    let mut inv = f.inv("env");
    inv.env = vec![("GIVEN_VAR".into(), "a=b c".into())];
    let (outcome, log) = f.run(inv).await;
    assert_eq!(outcome.exit_code, 0);
    assert!(!log.contains("leaked-value"), "{log}");
    assert!(!log.contains("PROCTOR_TEST_HOST_SECRET"), "{log}");
    assert!(log.contains("GIVEN_VAR=a=b c\n"), "{log}");
    assert!(log.contains("HOME=/tmp/home\n"), "{log}");
    assert!(log.contains("PATH=/usr/local/sbin:"), "{log}");
    f.assert_no_leftovers().await;
}

async fn network_none_has_only_loopback(engine: EngineKind) {
    let f = Fixture::new("net", engine).await;
    let (outcome, log) = f.run(f.inv("ls /sys/class/net")).await;
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(log, "lo\n");

    let mut inv = f.inv("ls /sys/class/net");
    inv.network = NetworkPolicy::Open;
    let (outcome, log) = f.run(inv).await;
    assert_eq!(outcome.exit_code, 0, "{log}");
    assert!(
        log.lines().any(|l| l != "lo"),
        "open network has an interface: {log}"
    );
    f.assert_no_leftovers().await;
}

async fn runs_as_the_given_uid(engine: EngineKind) {
    let f = Fixture::new("uid", engine).await;
    let (outcome, log) = f.run(f.inv("id -u; id -g; whoami")).await;
    assert_eq!(outcome.exit_code, 0, "{log}");
    assert_eq!(log, "1000\n1000\nproctor\n");
    f.assert_no_leftovers().await;
}

async fn root_is_read_only_and_tmp_is_writable_and_executable(engine: EngineKind) {
    let f = Fixture::new("rofs", engine).await;
    let script = "touch /probe 2>/dev/null && echo root-writable; \
                  printf '#!/bin/sh\\necho tmp-exec-ok\\n' > /tmp/t.sh && chmod +x /tmp/t.sh && /tmp/t.sh";
    let (outcome, log) = f.run(f.inv(script)).await;
    assert_eq!(outcome.exit_code, 0, "{log}");
    assert_eq!(log, "tmp-exec-ok\n");
    f.assert_no_leftovers().await;
}

async fn bind_mounts_honour_read_only(engine: EngineKind) {
    let f = Fixture::new("binds", engine).await;
    let shared = f.dir.path().join("work");
    std::fs::create_dir(&shared).expect("mkdir");
    // The container user is not the test's: let it write.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    let mut inv = f.inv("echo written > /work/out.txt");
    inv.mounts = vec![Mount {
        host: shared.clone(),
        container: "/work".into(),
        access: Access::ReadWrite,
    }];
    inv.workdir = "/work".into();
    let (outcome, log) = f.run(inv.clone()).await;
    assert_eq!(outcome.exit_code, 0, "{log}");
    assert_eq!(
        std::fs::read_to_string(shared.join("out.txt")).expect("written file"),
        "written\n"
    );

    inv.mounts[0].access = Access::ReadOnly;
    inv.command = "cat /work/out.txt && echo again > /work/out.txt".into();
    let (outcome, log) = f.run(inv).await;
    assert_ne!(outcome.exit_code, 0, "read-only bind was writable: {log}");
    // stdout and stderr are separate pipes: their order is not kept.
    assert!(log.lines().any(|l| l == "written"), "{log}");
    assert_eq!(
        std::fs::read_to_string(shared.join("out.txt")).expect("file"),
        "written\n"
    );
    f.assert_no_leftovers().await;
}

async fn hardening_is_applied(engine: EngineKind) {
    let f = Fixture::new("harden", engine).await;
    let script = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n; \
                  cat /proc/1/cmdline | tr '\\0' ' '; echo";
    let (outcome, log) = f.run(f.inv(script)).await;
    assert_eq!(outcome.exit_code, 0, "{log}");
    assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
    assert!(log.contains("CapBnd:\t0000000000000000"), "{log}");
    assert!(log.contains("NoNewPrivs:\t1"), "{log}");
    assert!(log.contains("\n8192\n"), "{log}");
    // PID 1 is an init, not the shell.
    let pid1 = log.lines().last().unwrap_or_default();
    assert!(!pid1.starts_with("/bin/sh"), "pid 1 is `{pid1}`");
    f.assert_no_leftovers().await;
}

async fn host_toolchain_works_without_host_secrets(engine: EngineKind) {
    let f = Fixture::new("toolchain", engine).await;
    let script = "awk 'BEGIN { print 6 * 7 }'; ls /etc | sort | tr '\\n' ' '; echo; \
                  test -e /etc/shadow && echo shadow; test -e /root && echo root; \
                  test -e /home && echo home; test -e /etc/ssl/private && echo private; \
                  test -S /var/run/docker.sock && echo docker-socket; \
                  test -S /run/podman/podman.sock && echo podman-socket; true";
    let (outcome, log) = f.run(f.inv(script)).await;
    assert_eq!(outcome.exit_code, 0, "{log}");
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("42"), "{log}");
    let etc = lines.next().unwrap_or_default();
    assert!(etc.contains("passwd"), "{etc}");
    assert!(etc.contains("alternatives"), "{etc}");
    assert_eq!(lines.next(), None, "unexpected host paths visible: {log}");
    f.assert_no_leftovers().await;
}

async fn timeout_kills_the_container(engine: EngineKind) {
    let f = Fixture::new("timeout", engine).await;
    let mut inv = f.inv("echo started; sleep 60");
    inv.timeout = Duration::from_secs(2);
    inv.stdin = Some(b"unread".to_vec());
    let started = Instant::now();
    let (outcome, log) = f.run(inv).await;
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit_code, -1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(log.starts_with("started\n"), "{log}");
    assert!(log.contains("timed out after 2s"), "{log}");
    f.assert_no_leftovers().await;
}

async fn dropped_run_removes_its_container(engine: EngineKind) {
    let f = Fixture::new("cancel", engine).await;
    let mut inv = f.inv("sleep 60");
    inv.stdin = Some(b"prompt".to_vec());
    let run = f.cage.run(inv);
    let cancelled = tokio::time::timeout(Duration::from_secs(3), run).await;
    assert!(cancelled.is_err(), "the run should still be going");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = f
            .cage
            .list_labelled(&[(LABEL_REPO, &f.repo)])
            .await
            .expect("list");
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "container survived the dropped run: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn failed_start_leaves_nothing(engine: EngineKind) {
    let f = Fixture::new("failstart", engine).await;
    // A mount point inside a file (the generated `/etc/passwd`) cannot be
    // created by any runtime, so the container is created but cannot start.
    // (Not one inside the read-only `/usr` bind: crun binds it read-write
    // first and remounts it read-only last, so it creates the mount point
    // in the host's `/usr` and starts.)
    let mut inv = f.inv("true");
    inv.mounts = vec![Mount {
        host: f.dir.path().to_path_buf(),
        container: "/etc/passwd/proctor-cannot-exist".into(),
        access: Access::ReadOnly,
    }];
    let result = f.cage.run(inv).await;
    assert!(result.is_err(), "start should fail: {result:?}");
    f.assert_no_leftovers().await;
}

async fn missing_image_is_a_clear_error(engine: EngineKind) {
    let f = Fixture::new("noimage", engine).await;
    let first = f.cage.ensure_image(HOST_IMAGE).await.expect("host image");
    assert_eq!(f.cage.ensure_image(HOST_IMAGE).await.expect("again"), first);
    let mut inv = f.inv("true");
    inv.image = "proctor-test-no-such-image:404".into();
    match f.cage.run(inv).await {
        Err(CageError::ImageNotFound { image }) => {
            assert_eq!(image, "proctor-test-no-such-image:404")
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    f.assert_no_leftovers().await;
}

async fn remove_labelled_removes_only_matching_containers(engine: EngineKind) {
    let f = Fixture::new("reap", engine).await;
    let other = Fixture::new("reap-other", engine).await;
    let start = |fx: &Fixture| {
        let mut inv = fx.inv("echo up; sleep 30");
        inv.log = fx.dir.path().join("sleep.log");
        inv
    };
    let up = |fx: &Fixture| {
        std::fs::read_to_string(fx.dir.path().join("sleep.log")).is_ok_and(|l| l == "up\n")
    };
    let first = f.cage.run(start(&f));
    let second = other.cage.run(start(&other));
    let reap = async {
        // Let both commands run, then reap only the first repo's.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !up(&f) || !up(&other) {
            assert!(Instant::now() < deadline, "containers did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let removed = f
            .cage
            .remove_labelled(&[(LABEL_REPO, &f.repo), ("proctor.role", "verifier")])
            .await
            .expect("remove");
        let still_there = other
            .cage
            .list_labelled(&[(LABEL_REPO, &other.repo)])
            .await
            .expect("list");
        let reaped_other = other
            .cage
            .remove_labelled(&[(LABEL_REPO, &other.repo)])
            .await
            .expect("remove");
        (removed, still_there.len(), reaped_other)
    };
    let (first, second, (removed, still_there, reaped_other)) = tokio::join!(first, second, reap);
    assert_eq!(removed, 1);
    assert_eq!(still_there, 1, "another repo's container was touched");
    assert_eq!(reaped_other, 1);
    // A run whose container is removed under it ends, with an error or a
    // non-zero exit, rather than hanging.
    for outcome in [first, second].into_iter().flatten() {
        assert_ne!(outcome.exit_code, 0);
    }
    f.assert_no_leftovers().await;
    other.assert_no_leftovers().await;
}

#[tokio::test]
async fn unreachable_engine_names_what_was_tried() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("nothing.sock");
    let hint = format!("unix://{}", socket.display());
    match DockerCage::connect(Some(&hint)).await {
        Err(CageError::NoEngine { tried }) => assert!(tried.contains("nothing.sock"), "{tried}"),
        Err(other) => panic!("expected NoEngine, got {other}"),
        Ok(cage) => panic!("connected to {}", cage.describe()),
    }
    // How to start one is the error's hint (printed on its own `hint:` line).
    let hint = proctor::exit_codes::DomainError::hint(&CageError::NoEngine { tried: "x".into() })
        .unwrap_or_default();
    assert!(
        hint.contains("dockerd &") && hint.contains("podman system service"),
        "{hint}"
    );
}

#[tokio::test]
async fn describe_names_engine_and_version() {
    for engine in [EngineKind::Docker, EngineKind::Podman] {
        let cage = cage(engine).await;
        let description = cage.describe();
        let (name, version) = description.split_once(' ').expect("two words");
        assert_eq!(name, engine.as_str());
        assert!(
            version.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{description}"
        );
        assert!(cage.address().to_string().starts_with("unix:///"));
    }
}

impl Fixture {
    /// An agent of `loop_id` on `network`, logging to `name`.log.
    fn agent(
        &self,
        loop_id: &str,
        network: NetworkPolicy,
        command: &str,
        name: &str,
    ) -> Invocation {
        let mut inv = self.inv(command);
        inv.labels.role = Role::Agent;
        inv.labels.loop_id = loop_id.into();
        inv.network = network;
        inv.log = self.dir.path().join(format!("{name}.log"));
        inv
    }

    /// After `settle`, nothing of this test is left: no container, no
    /// holder on record.
    async fn settle_and_check(&self) {
        self.cage.settle().await;
        assert!(self.cage.holder_names().is_empty());
        self.assert_no_leftovers().await;
    }
}

/// The network namespace and interfaces a command sees.
const NETNS: &str = "readlink /proc/self/ns/net; ls /sys/class/net | tr '\\n' ' '";

fn hosts() -> NetworkPolicy {
    NetworkPolicy::Hosts(vec!["proctor-test.invalid".into()])
}

async fn agents_of_a_loop_share_its_holder_and_loops_do_not(engine: EngineKind) {
    let mut f = Fixture::new("holder", engine).await;
    f.cage = f.cage.with_proxy_exe(env!("CARGO_BIN_EXE_proctor").into());
    let (first, a1) = f
        .run(f.agent("loop-a", NetworkPolicy::Open, NETNS, "a1"))
        .await;
    let (_, a2) = f
        .run(f.agent("loop-a", NetworkPolicy::Open, NETNS, "a2"))
        .await;
    assert_eq!(first.exit_code, 0, "{a1}");
    assert_eq!(a1, a2, "sequential agents of a loop share one namespace");
    assert!(a1.contains("eth0") || a1.split(' ').count() > 2, "{a1}");
    assert_eq!(f.cage.holder_names().len(), 1);
    // A host list is another holder of the same loop, with loopback only.
    let (_, h1) = f.run(f.agent("loop-a", hosts(), NETNS, "h1")).await;
    let (_, h2) = f.run(f.agent("loop-a", hosts(), NETNS, "h2")).await;
    assert_eq!(h1, h2);
    assert!(h1.ends_with("\nlo "), "{h1}");
    assert_ne!(h1.lines().next(), a1.lines().next());
    assert_eq!(f.cage.holder_names().len(), 2);

    // Two loops at once: each has its own namespace, so one loop's agent
    // cannot reach what another loop's agent listens on over loopback.
    let listen = "python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\", 47777)); s.listen(); print(\"listening\", flush=True); time.sleep(8)'";
    let connect = format!(
        "{NETNS}; echo; sleep 3; python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 47777), 2); print(\"reached\")' 2>&1 | tail -1"
    );
    let in_b = f.agent("loop-b", NetworkPolicy::Open, &connect, "b");
    let in_a = f.agent("loop-a", NetworkPolicy::Open, listen, "a3");
    let ((_, a3), (_, b)) = tokio::join!(f.run(in_a), f.run(in_b));
    assert_eq!(a3, "listening\n");
    assert_ne!(b.lines().next(), a1.lines().next(), "{b}");
    assert!(!b.contains("reached"), "{b}");
    assert!(b.contains("Connection refused"), "{b}");
    assert_eq!(f.cage.holder_names().len(), 3);
    // A verifier never joins a holder.
    let mut verifier = f.agent("loop-a", NetworkPolicy::Open, NETNS, "v");
    verifier.labels.role = Role::Verifier;
    let (_, v) = f.run(verifier).await;
    assert_ne!(v.lines().next(), a1.lines().next(), "{v}");
    f.settle_and_check().await;
}

async fn a_dead_holder_is_replaced_before_the_next_agent(engine: EngineKind) {
    let mut f = Fixture::new("deadholder", engine).await;
    f.cage = f.cage.with_proxy_exe(env!("CARGO_BIN_EXE_proctor").into());
    for network in [NetworkPolicy::Open, hosts()] {
        let (_, before) = f.run(f.agent("loop-a", network.clone(), NETNS, "x1")).await;
        let names = f.cage.holder_names();
        assert_eq!(names.len(), 1, "{names:?}");
        let docker = common::engine_client(engine).await;
        docker
            .kill_container(
                &names[0],
                Some(
                    bollard::query_parameters::KillContainerOptionsBuilder::default()
                        .signal("KILL")
                        .build(),
                ),
            )
            .await
            .expect("kill the holder");
        let (outcome, after) = f.run(f.agent("loop-a", network.clone(), NETNS, "x2")).await;
        assert_eq!(outcome.exit_code, 0, "{after}");
        // (The namespace's inode number may be reused once the old one is
        // gone, so the holder's name tells them apart.)
        // Same policy as before: loopback only stays loopback only.
        assert_eq!(
            after.ends_with("\nlo "),
            before.ends_with("\nlo "),
            "{after}"
        );
        let now = f.cage.holder_names();
        assert_eq!(now.len(), 1);
        assert_ne!(now, names);
        f.settle_and_check().await;
    }
}
