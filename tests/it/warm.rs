//! The cage's speed paths, on both engines. Containers started ahead of
//! need (`Cage::prepare`): the command runs only when the invocation is run,
//! with the late values and stdin of the run; a prepared container is used
//! only for an equal invocation; `settle` leaves nothing behind. Containers
//! without network (on Docker: network disabled, no libnetwork hook) still
//! resolve `localhost` and have nothing but loopback.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::on_both_engines;
use proctor::cage::{Access, Cage, DockerCage, EngineKind, Invocation, Limits, Mount, LABEL_REPO};

struct Fixture {
    cage: DockerCage,
    client: bollard::Docker,
    repo: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(test: &str, engine: EngineKind) -> Fixture {
        let cage = common::cage(engine).await;
        let client = common::engine_client(engine).await;
        // The first run settles the runtime and caches the image id, which
        // `prepare` waits for.
        let f = Fixture {
            cage,
            client,
            repo: common::test_repo_label(&format!("warm-{test}"), engine),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let work = f.work();
        std::fs::create_dir(&work).expect("mkdir");
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let outcome = f.cage.run(f.inv("true")).await.expect("first run");
        assert_eq!(outcome.exit_code, 0);
        f
    }

    fn work(&self) -> std::path::PathBuf {
        self.dir.path().join("work")
    }

    fn inv(&self, command: &str) -> Invocation {
        let labels = common::verifier_labels(&self.repo);
        Invocation {
            workdir: "/work".into(),
            mounts: vec![Mount {
                host: self.work(),
                container: "/work".into(),
                access: Access::ReadWrite,
            }],
            env: vec![("PROCTOR_COMMIT".into(), "placeholder".into())],
            ..Invocation::plain(command, labels, self.dir.path().join("run.log"))
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run.log")).expect("log")
    }

    async fn containers(&self) -> Vec<String> {
        self.cage
            .list_labelled(&[(LABEL_REPO, &self.repo)])
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// Waits until exactly one container of this test is running; its id.
    async fn prepared_and_running(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ids = self.containers().await;
            if let [id] = ids.as_slice() {
                let state = self
                    .client
                    .inspect_container(id, None)
                    .await
                    .ok()
                    .and_then(|c| c.state)
                    .and_then(|s| s.running);
                if state == Some(true) {
                    return id.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no prepared container running: {ids:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn settle_and_check(&self) {
        self.cage.settle().await;
        let left = self.containers().await;
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

on_both_engines!(
    async:
    a_prepared_container_runs_the_command_only_when_used,
    a_prepared_container_serves_only_an_equal_invocation,
    exit_codes_and_timeouts_hold_through_the_gate,
    a_prepared_containers_deadline_starts_with_its_command,
    no_network_still_resolves_localhost,
    a_prepared_container_mounts_a_folder_copy_on_write,
);

/// A copy-on-write mount on a prepared container: the same container
/// serves the run, reads the folder, writes to a layer of its own, and
/// the folder and the next container never see the writes; the layer's
/// host directory goes with the container.
async fn a_prepared_container_mounts_a_folder_copy_on_write(engine: EngineKind) {
    let f = Fixture::new("cow", engine).await;
    let cache = f.dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::write(cache.join("kept"), "base\n").expect("write");
    std::fs::set_permissions(cache.join("kept"), std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    let with_cache = |command: &str| {
        let mut inv = f.inv(command);
        inv.mounts.push(Mount {
            host: cache.clone(),
            container: "/cache".into(),
            access: Access::CopyOnWrite,
        });
        inv
    };
    // A hard link, then a write through it (the overlay copies only the
    // metadata up for the link, `metacopy=on`; the data must follow
    // before the write).
    let command = "cat /cache/kept; ln /cache/kept /cache/linked; echo more >> /cache/linked; \
                   echo planted > /cache/new; echo changed > /cache/kept; cat /cache/kept; \
                   grep ' /cache ' /proc/self/mountinfo | grep -o 'upperdir=[^,]*\\|metacopy=on' || true";
    f.cage.prepare(&with_cache(command), &Limits::default());
    let prepared = f.prepared_and_running().await;
    let outcome = f.cage.run(with_cache(command)).await.expect("run");
    assert_eq!(outcome.exit_code, 0, "{}", f.log());
    assert_eq!(
        outcome.container_id, prepared,
        "the prepared container was not used"
    );
    let log = f.log();
    assert!(log.starts_with("base\nchanged\n"), "{log}");
    assert_eq!(
        std::fs::read_to_string(cache.join("kept")).unwrap(),
        "base\n"
    );
    assert_eq!(common::entries(&cache), ["kept"]);
    let next = f
        .cage
        .run(with_cache(
            "cat /cache/kept; test ! -e /cache/new && test ! -e /cache/linked",
        ))
        .await
        .expect("next run");
    assert_eq!(next.exit_code, 0, "{}", f.log());
    assert_eq!(f.log(), "base\n");
    f.settle_and_check().await;
    assert!(log.lines().any(|l| l == "metacopy=on"), "{log}");
    let upper = log
        .lines()
        .filter_map(|l| l.strip_prefix("upperdir="))
        .find(|dir| dir.contains("/proctor-layer-"))
        .unwrap_or_else(|| panic!("no proctor layer in /cache's mount: {log}"));
    let layer = Path::new(upper).parent().expect("the layer directory");
    assert!(!layer.exists(), "{} is left behind", layer.display());
}

async fn no_network_still_resolves_localhost(engine: EngineKind) {
    let f = Fixture::new("localhost", engine).await;
    let script = "ls /sys/class/net; getent hosts localhost | head -1; \
                  cat /proc/net/route | tail -n +2 | wc -l";
    let outcome = f.cage.run(f.inv(script)).await.expect("run");
    assert_eq!(outcome.exit_code, 0, "{}", f.log());
    let log = f.log();
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("lo"), "{log}");
    let resolved = lines.next().unwrap_or_default();
    assert!(
        resolved.starts_with("127.0.0.1") || resolved.starts_with("::1"),
        "{log}"
    );
    assert_eq!(lines.next(), Some("0"), "a route out exists: {log}");
    f.settle_and_check().await;
}

async fn a_prepared_container_runs_the_command_only_when_used(engine: EngineKind) {
    let f = Fixture::new("used", engine).await;
    let command = "touch /work/started; cat; echo \"commit=$PROCTOR_COMMIT\"; id -u";
    f.cage.prepare(&f.inv(command), &Limits::default());
    let prepared = f.prepared_and_running().await;
    // Started, idle at its gate: the command has not run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!Path::new(&f.work().join("started")).exists());

    let mut inv = f.inv(command);
    inv.env = vec![("PROCTOR_COMMIT".into(), "c0ffee".into())];
    inv.stdin = Some(b"the prompt\nline two\n".to_vec());
    let outcome = f.cage.run(inv).await.expect("run");
    assert_eq!(outcome.exit_code, 0, "{}", f.log());
    assert_eq!(
        outcome.container_id, prepared,
        "the prepared container was not used"
    );
    assert_eq!(f.log(), "the prompt\nline two\ncommit=c0ffee\n1000\n");
    assert!(f.work().join("started").exists());
    f.settle_and_check().await;
}

async fn a_prepared_container_serves_only_an_equal_invocation(engine: EngineKind) {
    let f = Fixture::new("other", engine).await;
    f.cage
        .prepare(&f.inv("touch /work/wrong"), &Limits::default());
    let prepared = f.prepared_and_running().await;
    let mut inv = f.inv("touch /work/right");
    // Same command but another label: not the same container either.
    let mut relabelled = f.inv("touch /work/wrong");
    relabelled.labels.loop_id = "loop-b".into();
    inv.stdin = None;
    for other in [inv, relabelled] {
        let outcome = f.cage.run(other).await.expect("run");
        assert_eq!(outcome.exit_code, 0);
        assert_ne!(outcome.container_id, prepared);
    }
    assert!(f.work().join("right").exists());
    // The cold run of the relabelled invocation did touch it; the prepared
    // container never ran its command and is still waiting.
    std::fs::remove_file(f.work().join("wrong")).expect("cold run wrote it");
    assert_eq!(f.containers().await, [prepared]);
    f.settle_and_check().await;
    assert!(!f.work().join("wrong").exists());
}

/// The container's own deadline (timeout + 5 s, `spec.rs`) is armed by the
/// gate's `go`, not at the start: a prepared container that waited longer
/// than that still runs its command, to the end.
async fn a_prepared_containers_deadline_starts_with_its_command(engine: EngineKind) {
    let f = Fixture::new("deadline", engine).await;
    let mut inv = f.inv("echo ran");
    inv.timeout = Duration::from_secs(1);
    f.cage.prepare(&inv, &Limits::default());
    let prepared = f.prepared_and_running().await;
    // Longer than the container's deadline for this timeout (1 s + 5 s),
    // had it counted from the container's start.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let outcome = f.cage.run(inv).await.expect("run");
    assert_eq!(outcome.container_id, prepared, "the prepared one was used");
    assert_eq!(outcome.exit_code, 0, "{}", f.log());
    assert!(!outcome.timed_out);
    assert_eq!(f.log(), "ran\n");
    f.settle_and_check().await;
}

async fn exit_codes_and_timeouts_hold_through_the_gate(engine: EngineKind) {
    let f = Fixture::new("codes", engine).await;
    for (command, code) in [
        ("exit 3", 3),
        ("cat; exit 0", 0),
        ("no-such-command-x", 127),
    ] {
        f.cage.prepare(&f.inv(command), &Limits::default());
        f.prepared_and_running().await;
        let outcome = f.cage.run(f.inv(command)).await.expect("run");
        assert_eq!(outcome.exit_code, code, "`{command}`: {}", f.log());
        assert!(!outcome.timed_out);
        f.settle_and_check().await;
    }
    let mut inv = f.inv("echo started; sleep 60");
    inv.timeout = Duration::from_secs(2);
    f.cage.prepare(&inv, &Limits::default());
    f.prepared_and_running().await;
    let outcome = f.cage.run(inv).await.expect("run");
    assert!(outcome.timed_out);
    assert!(f.log().starts_with("started\n"), "{}", f.log());
    f.settle_and_check().await;
}
