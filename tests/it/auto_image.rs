//! `image: auto` end to end on both engines, with no registry: the
//! repository's `.proctor/Dockerfile` (`FROM scratch`, a static busybox
//! from the build context, a `RUN` step) is built by `lint`, found built
//! (same content, same tag) by `run`, `land` and `once --image auto`,
//! and a loop closes in it; a Dockerfile whose `FROM` is not on the
//! engine stops the run with one line naming the image, before any agent;
//! a Dockerfile an agent commits changes the image neither of its run nor
//! of the run's resume.
//!
//! Needs `/bin/busybox` from Debian's `busybox-static` (`.ci/run` installs
//! it). Like every container test, a missing engine fails the test.

use crate::common;

use common::{on_both_engines, stderr, stdout, unique, TestImage, TestRepo};
use proctor::cage::EngineKind;
use proctor::engine::events::{Event, Record};

const DOCKERFILE: &str = "FROM scratch\nCOPY rootfs/ /\nCOPY . /context/\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built > /etc/built\"]\nENV PATH=/bin\n";

/// The exam passes only in the built image: its marker file is there and
/// the host's toolchain is not.
fn exam(marker: &str) -> String {
    format!("test -f agent-ran && grep -q {marker} /etc/marker && test -f /etc/built && test ! -e /usr/lib")
}

/// `(image, id, built)` of each `image_ready` event.
fn ready(events: &[Record]) -> Vec<(String, String, bool)> {
    events
        .iter()
        .filter_map(|r| match &r.event {
            Event::ImageReady {
                image, id, built, ..
            } => Some((image.clone(), id.clone(), *built)),
            _ => None,
        })
        .collect()
}

fn check_images(events: &[Record]) -> Vec<String> {
    events
        .iter()
        .filter_map(|r| match &r.event {
            Event::CheckResult { image, .. } => Some(image.clone()),
            _ => None,
        })
        .collect()
}

fn auto_image_is_built_once_and_runs_the_loop(engine: EngineKind) {
    let host = common::socket(engine);
    let env = [("DOCKER_HOST", host.as_str())];
    // Unique content, so the tag is this test's alone.
    let marker = unique(engine, "auto");
    let repo = TestRepo::new()
        .engine(&host)
        .file(".proctor/Dockerfile", DOCKERFILE)
        .file(".proctor/rootfs/etc/marker", &format!("{marker}\n"))
        .file(".proctor/.dockerignore", "notes.txt\n")
        .file(".proctor/notes.txt", "not in the image\n")
        .manifest(&format!(
            "loop: auto\ntask: create agent-ran\nimage: auto\nagent: 'echo ran > agent-ran'\ndone_when: '{} && test -f /context/Dockerfile && test ! -e /context/notes.txt'\nbudget: 2 runs\n",
            exam(&marker)
        ));
    common::busybox_rootfs(
        &repo.dir.path().join(".proctor/rootfs"),
        &["sh", "test", "grep"],
    );
    let repo = repo.commit("an image of our own");

    // `lint` builds it: each step and the tag are shown.
    let out = repo.proctor_env(&["lint"], &env);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("proctor: image: .proctor/Dockerfile: "),
        "{text}"
    );
    let tag_at = text.find("built `proctor-auto:").expect(&text) + "built `".len();
    let tag: String = text[tag_at..].chars().take_while(|c| *c != '`').collect();
    // Removed with its containers when the test ends, however it ends.
    let _guard = TestImage {
        engine,
        name: tag.clone(),
    };

    // `run` finds it built (same content, same tag): no build, and the
    // loop closes in it.
    let out = repo.proctor_env(&["run"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events = repo.events();
    let found = ready(&events);
    assert_eq!(found.len(), 1, "{found:?}");
    let (image, id, built) = found[0].clone();
    assert_eq!((image.as_str(), built), (tag.as_str(), false));
    assert!(id.starts_with("sha256:"), "{id}");
    assert!(
        !events
            .iter()
            .any(|r| matches!(r.event, Event::ImageBuild { .. })),
        "a build step although the tag was there"
    );
    let checks = check_images(&events);
    assert!(
        !checks.is_empty() && checks.iter().all(|c| *c == id),
        "{checks:?} vs {id}"
    );
    repo.assert_no_containers();

    // `land` runs the exam on the merged tree in the same image (the
    // exam fails anywhere else): found built from the run's base commit.
    let out = repo.proctor_env(&["land"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "`{tag}` from .proctor/Dockerfile (base commit): on the engine already"
        )),
        "{err}"
    );
    repo.assert_no_containers();

    // `proctor image ls` lists it.
    let out = repo.proctor_env(&["image", "ls", "--json"], &env);
    assert!(stdout(&out).contains(&tag), "{}", stdout(&out));

    // `once --image auto`, from the same commit: the same image.
    let out = repo.proctor_env(
        &[
            "once",
            "--image",
            "auto",
            "--until",
            &exam(&marker),
            "--agent",
            "echo ran > agent-ran",
            "--budget",
            "2 runs",
            "--",
            "create agent-ran",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let once = repo.events();
    let last_run = once.last().map(|r| r.run.clone()).unwrap_or_default();
    let once: Vec<Record> = once.into_iter().filter(|r| r.run == last_run).collect();
    assert_eq!(ready(&once), [(tag.clone(), id.clone(), false)]);
    assert!(check_images(&once).iter().all(|c| *c == id));
    repo.assert_no_containers();
}

fn a_missing_base_image_stops_the_run_with_one_line(engine: EngineKind) {
    let host = common::socket(engine);
    let env = [("DOCKER_HOST", host.as_str())];
    let base = format!("{}:1", unique(engine, "nobase"));
    let repo = TestRepo::new()
        .engine(&host)
        .file("Dockerfile", &format!("FROM {base}\nRUN true\n"))
        .manifest("loop: auto\nimage: auto\nagent: 'echo ran > agent-ran'\ndone_when: 'test -f agent-ran'\nbudget: 1 runs\n")
        .commit("a base we do not have");
    let out = repo.proctor_env(&["run"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = format!(
        "error: `Dockerfile` builds on `{base}`, which is not on the container engine (proctor never pulls)"
    );
    assert!(err.lines().any(|l| l == line), "{err}");
    assert!(err.contains("images/README.md"), "{err}");
    assert_eq!(repo.agent_starts(), 0, "an agent woke");
    repo.assert_no_containers();
}

fn an_agents_dockerfile_never_changes_the_exam_image(engine: EngineKind) {
    let host = common::socket(engine);
    let env = [("DOCKER_HOST", host.as_str())];
    let marker = unique(engine, "agentdf");
    // The agent commits a Dockerfile that could not even build here.
    let broken = format!("FROM {}:1", unique(engine, "nobase"));
    let repo = TestRepo::new()
        .engine(&host)
        .file("Dockerfile", "FROM scratch\nCOPY rootfs/ /\n")
        .file("rootfs/etc/marker", &format!("{marker}\n"))
        .manifest(&format!(
            "loop: auto\nimage: auto\nagent: 'echo {broken} > Dockerfile'\ndone_when: 'test -f never'\nbudget: 1 runs\n"
        ));
    common::busybox_rootfs(&repo.dir.path().join("rootfs"), &["sh", "test"]);
    let repo = repo.commit("a root Dockerfile");

    let out = repo.proctor_env(&["run"], &env);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let first = ready(&repo.events());
    assert_eq!(first.len(), 1, "{first:?}");
    let (tag, id, built) = first[0].clone();
    let _guard = TestImage {
        engine,
        name: tag.clone(),
    };
    assert!(built, "{first:?}");
    assert_eq!(
        repo.read_at("proctor/auto", "Dockerfile").as_deref(),
        Some(format!("{broken}\n").as_str()),
        "the agent's Dockerfile is committed on the run's branch"
    );

    // The resumed run builds from the same base commit, not from the
    // agent's commit: the same image, no build, no missing `FROM`.
    let out = repo.proctor_env(&["run"], &env);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let all = repo.events();
    let last_run = all.last().map(|r| r.run.clone()).unwrap_or_default();
    let resumed: Vec<Record> = all.into_iter().filter(|r| r.run == last_run).collect();
    assert_eq!(ready(&resumed), [(tag, id, false)]);
    repo.assert_no_containers();
}

on_both_engines!(
    auto_image_is_built_once_and_runs_the_loop,
    a_missing_base_image_stops_the_run_with_one_line,
    an_agents_dockerfile_never_changes_the_exam_image
);
