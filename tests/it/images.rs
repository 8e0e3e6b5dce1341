//! `proctor image` end to end on both engines: a self-contained rootfs
//! (Debian's static busybox, no host mounts to lean on) is imported as a
//! directory and as a `.tar.gz`, listed, used by a real loop through the
//! real binary, and pruned; other images are never touched.
//!
//! Needs `/bin/busybox` from Debian's `busybox-static` (`.ci/run` installs
//! it). Like every container test, a missing engine fails the test.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
};
use common::{on_both_engines, runtime, stderr, stdout, unique, TestImage, TestRepo};
use futures_util::StreamExt;
use proctor::cage::EngineKind;
use proctor::engine::events::Event;

/// A root filesystem with nothing but a static busybox, the usual applet
/// links, and a fifo that the import must skip.
fn busybox_rootfs(dir: &Path) {
    common::busybox_rootfs(dir, &["sh", "ls", "cat", "test", "echo", "id", "env"]);
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/os-release"), "NAME=busybox-rootfs\n").unwrap();
    let fifo =
        std::ffi::CString::new(dir.join("etc/a-fifo").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: fifo is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
}

/// The same rootfs as a gzipped tar, written with tar + flate2.
fn busybox_tar_gz(rootfs: &Path, out: &Path) {
    let file = std::fs::File::create(out).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);
    for entry in ["bin", "etc/os-release"] {
        let path = rootfs.join(entry);
        if path.is_dir() {
            builder.append_dir_all(entry, &path).unwrap();
        } else {
            builder.append_path_with_name(&path, entry).unwrap();
        }
    }
    builder
        .into_inner()
        .unwrap()
        .finish()
        .unwrap()
        .flush()
        .unwrap();
}

/// `proctor image ls --json`, parsed: name → id.
fn listed(repo: &TestRepo, host: &str) -> HashMap<String, String> {
    let out = repo.proctor_env(&["image", "ls", "--json"], &[("DOCKER_HOST", host)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut map = HashMap::new();
    for line in stdout(&out).lines() {
        let image: serde_json::Value = serde_json::from_str(line).unwrap();
        for name in image["names"].as_array().unwrap() {
            map.insert(
                name.as_str().unwrap().to_string(),
                image["id"].as_str().unwrap().to_string(),
            );
        }
    }
    map
}

/// The exam proves it runs in the imported image and nowhere else: busybox
/// is there, and neither the host toolchain nor the host's `/etc` is.
const EXAM: &str = "busybox --help >/dev/null && test -x /bin/sh \
    && grep -q busybox-rootfs /etc/os-release \
    && test ! -e /usr/bin/python3 && test ! -e /usr/lib \
    && test ! -e leaked && test -f agent-ran";
const AGENT: &str = "test -e /usr/bin/python3 && echo python > leaked; \
    test -e /etc/alternatives && echo alternatives >> leaked; \
    echo ran > agent-ran";

fn imported_rootfs_runs_a_loop(engine: EngineKind) {
    let host = common::socket(engine);
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let tar_gz = work.path().join("busybox-rootfs.tar.gz");
    busybox_tar_gz(&rootfs, &tar_gz);
    // Removed when the test ends, however it ends; pruned below.
    let dir_guard = TestImage::new(engine, "bbdir");
    let gz_guard = TestImage::new(engine, "bbgz");
    let (dir_image, gz_image) = (dir_guard.name.clone(), gz_guard.name.clone());

    let repo = TestRepo::new()
        .engine(&host)
        .manifest(&format!(
            "loop: bb\ntask: create agent-ran\nimage: {dir_image}\nagent: '{AGENT}'\ndone_when: '{EXAM}'\nbudget: 2 runs\n"
        ))
        .commit("manifest");
    let env = [("DOCKER_HOST", host.as_str())];

    // A directory: tarred on the fly, the fifo skipped with a note.
    let rootfs_arg = rootfs.to_string_lossy().into_owned();
    let out = repo.proctor_env(
        &["image", "import", &rootfs_arg, "--name", &dir_image],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("imported `{dir_image}:latest`")),
        "{text}"
    );
    assert!(text.contains("skipped 1 device file"), "{text}");
    assert!(text.contains("etc/a-fifo"), "{text}");

    // A gzipped tar, inflated with flate2 on the way.
    let gz_arg = tar_gz.to_string_lossy().into_owned();
    let out = repo.proctor_env(&["image", "import", &gz_arg, "--name", &gz_image], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let images = listed(&repo, &host);
    let dir_id = images
        .get(&format!("{dir_image}:latest"))
        .unwrap_or_else(|| panic!("{dir_image} not listed: {images:?}"))
        .clone();
    let gz_id = images[&format!("{gz_image}:latest")].clone();
    assert!(dir_id.starts_with("sha256:"), "{dir_id}");

    // A loop in the directory image: `image:` in the manifest.
    let out = repo.proctor_env(&["run"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !repo.work_exists("leaked"),
        "host toolchain visible to the agent"
    );
    let events = repo.events();
    let checks: Vec<&String> = events
        .iter()
        .filter_map(|r| match &r.event {
            Event::CheckResult { image, .. } => Some(image),
            _ => None,
        })
        .collect();
    assert_eq!(checks.len(), 2, "a failing check, then a pass");
    // Events carry the image's id, not just its name.
    assert!(
        checks.iter().all(|id| **id == dir_id),
        "{checks:?} vs {dir_id}"
    );
    let agent_images: Vec<&String> = events
        .iter()
        .filter_map(|r| match &r.event {
            Event::AgentEnd { image, .. } => Some(image),
            _ => None,
        })
        .collect();
    assert_eq!(agent_images, [&dir_id]);
    repo.assert_no_containers();

    // The tar.gz image, chosen by `once --image`, on a fresh repository.
    let once = TestRepo::new()
        .engine(&host)
        .file("README", "x\n")
        .commit("init");
    let out = once.proctor_env(
        &[
            "once",
            "--image",
            &gz_image,
            "--until",
            EXAM,
            "--agent",
            AGENT,
            "--budget",
            "2 runs",
            "--",
            "create agent-ran",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ids: Vec<String> = once
        .events()
        .iter()
        .filter_map(|r| match &r.event {
            Event::CheckResult { image, .. } => Some(image.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|id| *id == gz_id),
        "{ids:?}"
    );
    once.assert_no_containers();

    // The honest twin: in the built-in host image (host toolchain mounted)
    // the same exam fails, so its pass above means something.
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "the host has python3"
    );
    let twin = TestRepo::new()
        .engine(&host)
        .file("README", "x\n")
        .commit("init");
    let out = twin.proctor_env(
        &[
            "once",
            "--until",
            "test ! -e /usr/bin/python3 && test ! -e /usr/lib",
            "--agent",
            "true",
            "--budget",
            "1 runs",
            "--",
            "nothing",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    twin.assert_no_containers();

    // Pruning: an image a container uses is kept, then removed once free.
    let rt = runtime();
    let client = rt.block_on(common::engine_client(engine));
    let container = unique(engine, "holder");
    rt.block_on(
        client.create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&container)
                    .build(),
            ),
            bollard::models::ContainerCreateBody {
                image: Some(dir_id.clone()),
                cmd: Some(vec!["/bin/sh".into(), "-c".into(), "true".into()]),
                labels: Some(HashMap::from([(
                    "proctor.test".to_string(),
                    "holder".to_string(),
                )])),
                ..Default::default()
            },
        ),
    )
    .unwrap();
    let out = repo.proctor_env(&["image", "prune", &dir_image, &gz_image], &env);
    let removed_while_held = stdout(&out);
    rt.block_on(client.remove_container(
        &container,
        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
    ))
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        removed_while_held.contains(&format!("kept {dir_image}:latest")),
        "{removed_while_held}"
    );
    assert!(
        removed_while_held.contains(&format!("removed {gz_image}:latest")),
        "{removed_while_held}"
    );
    let out = repo.proctor_env(&["image", "prune", &dir_image], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("removed {dir_image}:latest")));
    let images = listed(&repo, &host);
    assert!(!images.contains_key(&format!("{dir_image}:latest")));
    assert!(!images.contains_key(&format!("{gz_image}:latest")));
}

fn prune_never_touches_other_images(engine: EngineKind) {
    let host = common::socket(engine);
    let rt = runtime();
    let client = rt.block_on(common::engine_client(engine));
    let guard = TestImage::new(engine, "foreign");
    let foreign = guard.latest();
    // An image proctor did not make: imported without proctor's label.
    let empty_tar = {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, "tmp/", std::io::empty())
            .unwrap();
        builder.into_inner().unwrap()
    };
    rt.block_on(async {
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(&foreign)
            .build();
        let mut progress = client.create_image(
            Some(options),
            Some(bollard::body_full(empty_tar.into())),
            None,
        );
        while let Some(step) = progress.next().await {
            step.unwrap();
        }
    });
    let repo = TestRepo::new()
        .engine(&host)
        .file("README", "x\n")
        .commit("init");
    let env = [("DOCKER_HOST", host.as_str())];
    let out = repo.proctor_env(&["image", "prune", &foreign], &env);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("not among proctor's images"),
        "{}",
        stderr(&out)
    );
    let out = repo.proctor_env(&["image", "ls", "--json"], &env);
    assert!(!stdout(&out).contains(&foreign), "{}", stdout(&out));
    // Still there (the guard removes it).
    rt.block_on(client.inspect_image(&foreign))
        .unwrap_or_else(|e| panic!("the foreign image is gone: {e}"));
}

fn missing_image_names_image_import_and_touches_nothing(engine: EngineKind) {
    let host = common::socket(engine);
    let repo = TestRepo::new()
        .engine(&host)
        .manifest("loop: m\nimage: proctor-test-no-such-image\nagent: 'true'\ndone_when: 'true'\n")
        .commit("manifest");
    let out = repo.proctor_env(&["run"], &[("DOCKER_HOST", host.as_str())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("image `proctor-test-no-such-image`"), "{err}");
    assert!(err.contains("proctor image import"), "{err}");
    assert_eq!(
        repo.head_branch(),
        "master",
        "the run touched the repository"
    );
    assert!(!repo.exists(".proctor/events.jsonl"));
}

fn rejects_what_is_not_a_rootfs(engine: EngineKind) {
    let host = common::socket(engine);
    let repo = TestRepo::new()
        .file("junk.tar.gz", "not a tar\n")
        .commit("init");
    let env = [("DOCKER_HOST", host.as_str())];
    let out = repo.proctor_env(&["image", "import", "junk.tar.gz"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("neither a directory nor a tar archive"));
    let out = repo.proctor_env(&["image", "import", ".", "--name", "host"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("built-in host image"),
        "{}",
        stderr(&out)
    );
    let out = repo.proctor_env(&["image", "import", ".", "--name", "Bad Name"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not an image name"),
        "{}",
        stderr(&out)
    );
}

on_both_engines!(
    imported_rootfs_runs_a_loop,
    prune_never_touches_other_images,
    missing_image_names_image_import_and_touches_nothing,
    rejects_what_is_not_a_rootfs,
);
