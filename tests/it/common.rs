//! Test harness: a throwaway git repository, the real `proctor` binary, and
//! a real container engine. A test that finds no engine fails and says how
//! to start one; it never skips.

use std::path::{Path, PathBuf};
use std::process::Output;

use proctor::cage::{Cage, DockerCage, EngineKind, Labels, Role, LABEL_REPO};
use proctor::engine::events::{self, Event, Record};

pub const ENGINE_HELP: &str =
    "no container engine answers: start Docker with `dockerd >/tmp/dockerd.log 2>&1 &` \
     (or Podman with `podman system service --time=0 unix:///run/podman/podman.sock &` and \
     DOCKER_HOST=unix:///run/podman/podman.sock), or run `bash .ci/run`";

/// A runtime for the test's own engine calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A name no other test process uses: `proctor-test-WHAT-ENGINE-PID`.
pub fn unique(engine: EngineKind, what: &str) -> String {
    format!(
        "proctor-test-{what}-{}-{}",
        engine.as_str(),
        std::process::id()
    )
}

pub const BUSYBOX: &str = "/bin/busybox";

/// A root filesystem holding Debian's static busybox as `/bin/busybox`
/// and `applets` linked to it.
pub fn busybox_rootfs(dir: &Path, applets: &[&str]) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's `busybox-static` (`apt-get install busybox-static`, or `bash .ci/run`)"
    );
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in applets {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

/// An image a test puts on an engine (`proctor image import`, or the
/// engine's API). When it drops, also when the test fails, it removes
/// every container made from the image and then the image itself; unless
/// the test is already failing, it then fails the test if a container was
/// left or the image is still there. A test's own removal (`proctor image
/// prune`) before that is fine.
pub struct TestImage {
    pub engine: EngineKind,
    /// The name the test gives it (`unique(engine, what)`).
    pub name: String,
}

impl TestImage {
    pub fn new(engine: EngineKind, what: &str) -> TestImage {
        TestImage {
            engine,
            name: unique(engine, what),
        }
    }

    /// The name with its tag, as `proctor image ls` and prune report it.
    pub fn latest(&self) -> String {
        format!("{}:latest", self.name)
    }

    /// Removes what is left; returns how many containers were, and whether
    /// the image is still there afterwards.
    fn remove(&self) -> Result<(usize, bool), String> {
        use bollard::query_parameters::{
            ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
        };
        let rt = runtime();
        // Not `engine_client`: this runs in `drop`, where a panic while the
        // test is already failing would abort the whole test process.
        let client = bollard::Docker::connect_with_unix(
            &socket_path(self.engine),
            60,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let client = client
                .negotiate_version()
                .await
                .map_err(|e| e.to_string())?;
            let id = match client.inspect_image(&self.name).await {
                Ok(image) => image.id.unwrap_or_else(|| self.name.clone()),
                Err(e) if is_not_found(&e) => return Ok((0, false)),
                Err(e) => return Err(format!("inspect: {e}")),
            };
            let filters =
                std::collections::HashMap::from([("ancestor".to_string(), vec![id.clone()])]);
            let containers = client
                .list_containers(Some(
                    ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(|e| format!("list containers: {e}"))?;
            for container in &containers {
                let Some(cid) = &container.id else { continue };
                let _ = client
                    .remove_container(
                        cid,
                        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
            match client
                .remove_image(
                    &id,
                    Some(RemoveImageOptionsBuilder::default().force(true).build()),
                    None,
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(format!("remove: {e}")),
            }
            let still = match client.inspect_image(&id).await {
                Ok(_) => true,
                Err(e) if is_not_found(&e) => false,
                Err(e) => return Err(format!("inspect after removal: {e}")),
            };
            Ok((containers.len(), still))
        })
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let result = self.remove();
        if std::thread::panicking() {
            if let Err(e) = result {
                eprintln!("could not remove the test image `{}`: {e}", self.name);
            }
            return;
        }
        match result {
            Ok((containers, still)) => {
                assert_eq!(
                    containers,
                    0,
                    "{containers} container(s) of the test image `{}` on {} were left behind",
                    self.name,
                    self.engine.as_str()
                );
                assert!(
                    !still,
                    "the test image `{}` is still on {} after its removal",
                    self.name,
                    self.engine.as_str()
                );
            }
            Err(e) => panic!(
                "could not remove the test image `{}` on {}: {e}",
                self.name,
                self.engine.as_str()
            ),
        }
    }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Fails the test (never skips) when no engine answers.
pub fn require_engine() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = rt.block_on(DockerCage::connect(None)) {
        panic!("{ENGINE_HELP}\n({e})");
    }
}

/// The socket of `engine` the engine tests use: the rootful one, or
/// `PROCTOR_TEST_DOCKER` / `PROCTOR_TEST_PODMAN` (e.g. a Podman service
/// started with `--runtime runc` where crun cannot run).
pub fn socket(engine: EngineKind) -> String {
    let (var, default) = match engine {
        EngineKind::Docker => ("PROCTOR_TEST_DOCKER", "unix:///var/run/docker.sock"),
        EngineKind::Podman => ("PROCTOR_TEST_PODMAN", "unix:///run/podman/podman.sock"),
    };
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// The path of [`socket`] (the variables may hold it with or without
/// `unix://`).
pub fn socket_path(engine: EngineKind) -> String {
    socket(engine).trim_start_matches("unix://").to_string()
}

/// The cage on `engine`; fails the test (never skips) with how to start the
/// engine when it does not answer, or when the socket is the other engine's.
pub async fn cage(engine: EngineKind) -> DockerCage {
    let socket = socket(engine);
    let how = match engine {
        EngineKind::Docker => "start it with `dockerd >/tmp/dockerd.log 2>&1 &`",
        EngineKind::Podman => {
            "start it with `podman system service --time=0 unix:///run/podman/podman.sock &` \
             (`podman --runtime runc system service ...` where crun cannot run)"
        }
    };
    let cage = DockerCage::connect_to(&socket).await.unwrap_or_else(|e| {
        panic!(
            "no {} engine at {socket}: {e}; {how}, or run `bash .ci/run`",
            engine.as_str()
        )
    });
    assert_eq!(cage.kind(), engine, "{socket} is not {}", engine.as_str());
    cage
}

/// A bare engine client on `engine`'s socket, for what the cage does not
/// do itself (killing a container behind its back, test networks).
pub async fn engine_client(engine: EngineKind) -> bollard::Docker {
    bollard::Docker::connect_with_unix(&socket(engine), 120, bollard::API_DEFAULT_VERSION)
        .expect("engine client")
        .negotiate_version()
        .await
        .expect("engine API version")
}

/// A repo label unique to one test on one engine, so a leftover check
/// sees only that test's containers.
pub fn test_repo_label(test: &str, engine: EngineKind) -> String {
    format!("test-{test}-{}-{}", engine.as_str(), std::process::id())
}

/// The labels of a verifier of loop `loop-a` in run `run-1` of `repo`.
pub fn verifier_labels(repo: &str) -> Labels {
    Labels {
        repo: repo.into(),
        run: "run-1".into(),
        loop_id: "loop-a".into(),
        role: Role::Verifier,
    }
}

/// `mod docker` and `mod podman` with one test each per check, so every
/// check runs on both engines: `on_both_engines!(async: a, b)` for
/// `async fn a(engine: EngineKind)`, `on_both_engines!(a, b)` for plain
/// `fn a(engine: EngineKind)`.
macro_rules! on_both_engines {
    (async: $($check:ident),* $(,)?) => {
        $crate::common::on_both_engines!(@async docker Docker $($check),*);
        $crate::common::on_both_engines!(@async podman Podman $($check),*);
    };
    (@async $module:ident $engine:ident $($check:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(::proctor::cage::EngineKind::$engine).await;
                }
            )*
        }
    };
    (@sync $module:ident $engine:ident $($check:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    super::$check(::proctor::cage::EngineKind::$engine);
                }
            )*
        }
    };
    ($($check:ident),* $(,)?) => {
        $crate::common::on_both_engines!(@sync docker Docker $($check),*);
        $crate::common::on_both_engines!(@sync podman Podman $($check),*);
    };
}
pub(crate) use on_both_engines;

pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    /// The engine socket (`unix:///...`) the binary is pointed at through
    /// `DOCKER_HOST`; `None` = the test process's own `DOCKER_HOST`, if any.
    pub engine: Option<String>,
    /// Variables the binary gets on top of the clean environment.
    pub env: Vec<(String, String)>,
}

impl TestRepo {
    /// An empty repository with one commit of the given files.
    pub fn new() -> TestRepo {
        let dir = tempfile::Builder::new()
            .prefix("proctor-test-")
            .tempdir()
            .unwrap();
        let home = tempfile::Builder::new()
            .prefix("proctor-home-")
            .tempdir()
            .unwrap();
        git2::Repository::init(dir.path()).unwrap();
        TestRepo {
            dir,
            home,
            engine: None,
            env: Vec::new(),
        }
    }

    /// Runs the binary (and the leftover checks) against this engine socket.
    pub fn engine(mut self, socket: &str) -> TestRepo {
        self.engine = Some(socket.to_string());
        self
    }

    /// Runs the binary with `name=value` as well (e.g. `TMPDIR`).
    pub fn env(mut self, name: &str, value: &Path) -> TestRepo {
        self.env
            .push((name.to_string(), value.to_string_lossy().into_owned()));
        self
    }

    pub fn path(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap()
    }

    pub fn file(self, rel: &str, text: &str) -> TestRepo {
        self.write(rel, text);
        self
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap_or_default()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.dir.path().join(rel).exists()
    }

    /// Commits every file as it is now (git2, no subprocess).
    pub fn commit(self, message: &str) -> TestRepo {
        let repo = git2::Repository::open(self.dir.path()).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("test", "test@example.com").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap();
        drop(tree);
        self
    }

    pub fn manifest(self, yaml: &str) -> TestRepo {
        self.file("proctor.yaml", yaml)
    }

    /// Runs the real binary in the repository with a clean environment.
    pub fn proctor(&self, args: &[&str]) -> Output {
        self.proctor_env(args, &[])
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("PROCTOR_KEY_DIR", self.home.path().join("keys"))
            .env("CI", "true");
        if let Some(host) = self
            .engine
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
        {
            cmd.env("DOCKER_HOST", host);
        }
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Starts the binary in the background, output discarded. The run is
    /// stopped (SIGTERM, so it removes its containers) if the test ends
    /// while it still runs, a failing test included.
    pub fn spawn_quiet(&self, args: &[&str]) -> Background {
        Background(
            self.command(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Waits (up to 60 s) until `ready` holds, e.g. until an agent has
    /// started; fails the test with `what` otherwise.
    pub fn wait_until(&self, what: &str, ready: impl Fn(&TestRepo) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !ready(self) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn proctor_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        eprintln!(
            "$ proctor {}\n--- stdout\n{}--- stderr\n{}--- exit {:?}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    }

    pub fn events(&self) -> Vec<Record> {
        events::parse(&self.read(".proctor/events.jsonl"))
    }

    pub fn agent_starts(&self) -> usize {
        self.events()
            .iter()
            .filter(|r| matches!(r.event, Event::AgentStart { .. }))
            .count()
    }

    /// Commit summaries on a branch, newest first.
    pub fn log(&self, branch: &str) -> Vec<String> {
        let repo = git2::Repository::open(self.dir.path()).unwrap();
        let Ok(reference) = repo.find_branch(branch, git2::BranchType::Local) else {
            return Vec::new();
        };
        let mut walk = repo.revwalk().unwrap();
        walk.push(reference.get().target().unwrap()).unwrap();
        walk.simplify_first_parent().unwrap();
        walk.map(|oid| {
            repo.find_commit(oid.unwrap())
                .unwrap()
                .summary()
                .ok()
                .flatten()
                .unwrap_or("")
                .to_string()
        })
        .collect()
    }

    /// A file in the run's worktree `.proctor/wt/<name>` (where the agent
    /// works), empty when absent.
    pub fn wt_read(&self, name: &str, rel: &str) -> String {
        self.read(&format!(".proctor/wt/{name}/{rel}"))
    }

    pub fn wt_exists(&self, name: &str, rel: &str) -> bool {
        self.exists(&format!(".proctor/wt/{name}/{rel}"))
    }

    /// A file as the last run left it: in its worktree when the run kept
    /// it (blocked, gated, interrupted), else as committed on its branch
    /// (the one its last `run_start` event names). Empty when absent.
    pub fn work(&self, rel: &str) -> String {
        let Some(branch) = self.events().into_iter().rev().find_map(|r| match r.event {
            Event::RunStart { branch, .. } => Some(branch),
            _ => None,
        }) else {
            return String::new();
        };
        let name = branch.trim_start_matches("proctor/");
        if self.exists(&format!(".proctor/wt/{name}")) {
            return self.wt_read(name, rel);
        }
        self.read_at(&branch, rel).unwrap_or_default()
    }

    /// Whether `rel` exists where [`TestRepo::work`] reads it.
    pub fn work_exists(&self, rel: &str) -> bool {
        let Some(branch) = self.events().into_iter().rev().find_map(|r| match r.event {
            Event::RunStart { branch, .. } => Some(branch),
            _ => None,
        }) else {
            return false;
        };
        let name = branch.trim_start_matches("proctor/");
        if self.exists(&format!(".proctor/wt/{name}")) {
            return self.wt_exists(name, rel);
        }
        self.read_at(&branch, rel).is_some()
    }

    /// A file as committed at the tip of `branch`; `None` when the branch
    /// or the file does not exist.
    pub fn read_at(&self, branch: &str, rel: &str) -> Option<String> {
        let repo = git2::Repository::open(self.dir.path()).unwrap();
        let reference = repo.find_branch(branch, git2::BranchType::Local).ok()?;
        let tree = reference.get().peel_to_tree().unwrap();
        let entry = tree.get_path(Path::new(rel)).ok()?;
        let blob = repo.find_blob(entry.id()).ok()?;
        Some(String::from_utf8_lossy(blob.content()).into_owned())
    }

    /// Names of the linked worktrees `git worktree list` shows (besides
    /// the checkout).
    pub fn worktrees(&self) -> Vec<String> {
        let repo = git2::Repository::open(self.dir.path()).unwrap();
        let names = repo.worktrees().unwrap();
        names
            .iter()
            .flatten()
            .flatten()
            .map(|n| n.to_string())
            .collect()
    }

    /// Paths `git status` would list (untracked included).
    pub fn status(&self) -> Vec<String> {
        let repo = git2::Repository::open(self.dir.path()).unwrap();
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true).recurse_untracked_dirs(true);
        let statuses = repo.statuses(Some(&mut opts)).unwrap();
        statuses
            .iter()
            .map(|e| e.path().unwrap_or("").to_string())
            .collect()
    }

    pub fn head_branch(&self) -> String {
        let repo = git2::Repository::open(self.dir.path()).unwrap();
        let head = repo.head().unwrap();
        head.shorthand().unwrap_or("").to_string()
    }

    /// Asserts no container (and no network) with this repository's label
    /// exists, removing any it finds, so one failure does not leak into
    /// other tests.
    pub fn assert_no_containers(&self) {
        let label = proctor::cage::repo_label(&self.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (left, networks) = rt.block_on(async {
            let cage = match &self.engine {
                Some(socket) => DockerCage::connect_to(socket).await,
                None => DockerCage::connect(None).await,
            }
            .expect(ENGINE_HELP);
            let labels = [(LABEL_REPO, label.as_str())];
            let networks = cage.list_labelled_networks(&labels).await.unwrap();
            let left = cage.remove_labelled(&labels).await.unwrap();
            (left, networks)
        });
        assert_eq!(
            left, 0,
            "{left} container(s) with proctor's labels were left behind"
        );
        assert!(
            networks.is_empty(),
            "network(s) with proctor's labels were left behind: {networks:?}"
        );
    }
}

/// The cage's private temp directory under `tmp` (what `$TMPDIR` was).
pub fn private_dir(tmp: &Path) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    tmp.join(format!("proctor-cage-{}", unsafe { libc::geteuid() }))
}

/// Entries in `dirs` that proctor process `pid` made for itself: egress
/// socket directories and logs, relay logs, half-written generated files,
/// exam, demo and gauntlet scratch trees. Matched here by their names
/// (pid in hex), independently of the sweep's own parser.
pub fn host_files_of(pid: u32, dirs: &[impl AsRef<Path>]) -> Vec<PathBuf> {
    let starts = [
        format!("egress-{pid:x}-"),
        format!("relay-{pid:x}-"),
        format!("proctor-exam-{pid:x}-"),
        format!("proctor-layer-{pid:x}-"),
        format!("proctor-demo-{pid:x}-"),
        format!("proctor-gauntlet-{pid:x}-"),
    ];
    let tmp = format!(".tmp{pid:x}-");
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.as_ref()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if starts.iter().any(|s| name.starts_with(s.as_str())) || name.contains(&tmp) {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Names in the private temp directory under `tmp` that are not the
/// generated files every run shares (`passwd-*`, `group-*`, `hosts`,
/// Podman's `seccomp-<hash>.json`).
pub fn unshared_private_files(tmp: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(private_dir(tmp)) else {
        return Vec::new();
    };
    let mut left: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.contains(".tmp")
                || !(n == "hosts"
                    || n.starts_with("passwd-")
                    || n.starts_with("group-")
                    || n.starts_with("seccomp-"))
        })
        .collect();
    left.sort();
    left
}

/// Names of the entries of `dir`.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `text` with each path (and its canonical form) replaced by a name such
/// as `[REPO]`, so a snapshot of output naming a temp directory is the same
/// on every run.
pub fn redact(text: &str, paths: &[(&Path, &str)]) -> String {
    let mut out = text.to_string();
    for (path, name) in paths {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        for p in [canonical.as_path(), path] {
            out = out.replace(&*p.to_string_lossy(), name);
        }
    }
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A proctor process started by [`TestRepo::spawn_quiet`]: a
/// `std::process::Child` that is stopped when dropped while still running
/// (SIGTERM, then SIGKILL after 30 s), so a failing test leaves no run,
/// and hence no container, behind.
pub struct Background(pub std::process::Child);

impl std::ops::Deref for Background {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Background {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while matches!(self.0.try_wait(), Ok(None)) {
            if std::time::Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
