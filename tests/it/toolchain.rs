//! From `proctor init` to a closed loop, per ecosystem, with no hand edit:
//! `init` finds the exam's toolchain and dependencies on this machine
//! (rustup under ~/.cargo, a venv, a pyenv version, node_modules, Go) and writes the
//! manifest and `.proctor/config.yaml`; a scripted shell agent fixes the
//! failing test; the exam runs with no network in the `host` image.
//! And each `init --template` (cargo, pytest, npm, go, make) on the same
//! fixtures: its exam runs, fails on the bug and passes on the fix.

use crate::common;

use common::{on_both_engines, require_engine, socket, stderr, stdout, TestRepo};
use proctor::cage::EngineKind;

/// `init --agent FIX`, commit, `lint` (the exam runs and fails: not an
/// error), `run`: closed at run 1. Where init gave the exam a build cache
/// (cargo, go), the run's base-commit exam filled it and the agent, which
/// fixes the code only if it sees neither `/cache` nor a variable pointing
/// there, never did.
fn init_lint_run(engine: EngineKind, repo: TestRepo, fix: &str, config_needed: bool) -> TestRepo {
    require_engine();
    let repo = repo.engine(&socket(engine));
    let agent =
        format!("test ! -e /cache && test -z \"${{CARGO_TARGET_DIR-}}${{GOCACHE-}}\" && {fix}");
    let out = repo.proctor(&["init", "--agent", &agent]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        repo.exists(".proctor/config.yaml"),
        config_needed,
        "{}",
        stdout(&out)
    );
    let repo = repo.commit("proctor init");
    let out = repo.proctor(&["lint"]);
    let lint = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{lint}{}", stderr(&out));
    assert!(lint.contains("  fail "), "{lint}");
    assert!(!stderr(&out).contains("/cache/"), "{}", stderr(&out));
    // lint's exam of HEAD fills the caches too: empty them, so what the
    // run leaves there is its own base-commit exam's.
    let caches = proctor::manifest::parse(
        &repo.read("proctor.yaml"),
        std::path::Path::new("proctor.yaml"),
    )
    .unwrap()
    .root
    .caches
    .iter()
    .map(|name| repo.path().join(".proctor/caches").join(name))
    .collect::<Vec<_>>();
    for dir in &caches {
        assert!(filled(dir), "lint left {} empty", dir.display());
        std::fs::remove_dir_all(dir).unwrap();
    }
    let out = repo.proctor(&["run", "--plain"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let branch = repo
        .events()
        .iter()
        .find_map(|r| match &r.event {
            proctor::engine::events::Event::RunStart { branch, .. } => Some(branch.clone()),
            _ => None,
        })
        .expect("a run_start event");
    let log = repo.log(&branch);
    assert!(log.iter().any(|l| l.ends_with(": run 1")), "{log:?}");
    for dir in &caches {
        assert!(filled(dir), "the run left {} empty", dir.display());
    }
    repo.assert_no_containers();
    repo
}

fn filled(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// A fixture repository, the shell command that fixes its failing test,
/// and whether `init` writes a `.proctor/config.yaml` for it here.
type Fixture = (TestRepo, &'static str, bool);

/// A cargo package whose one test fails; the fix; whether init writes a
/// config for it here.
fn cargo_fixture() -> Fixture {
    let repo = TestRepo::new()
        .file(
            "Cargo.toml",
            "[package]\nname = \"adder\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .file(
            "src/lib.rs",
            "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\n#[test]\nfn adds() {\n    assert_eq!(add(2, 2), 4);\n}\n",
        )
        .file(".gitignore", "/target\n");
    // rustup under a HOME (the machine's own ~/.cargo) needs the config;
    // a distribution's cargo under /usr does not.
    let per_user = which("cargo").is_some_and(|p| !p.starts_with("/usr"));
    (repo, "sed -i 's/a - b/a + b/' src/lib.rs", per_user)
}

fn cargo_with_rustup(engine: EngineKind) {
    let (repo, fix, config) = cargo_fixture();
    init_lint_run(engine, repo, fix, config);
}

/// A Python module whose pytest test fails, with a venv over the system
/// interpreter (which has pytest).
fn pytest_fixture() -> Fixture {
    let repo = TestRepo::new()
        .file("calc.py", "def add(a, b):\n    return a - b\n")
        .file(
            "tests/test_calc.py",
            "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n",
        )
        .file(
            "pyproject.toml",
            "[tool.pytest.ini_options]\npythonpath = [\".\"]\n",
        )
        .file(".gitignore", ".venv/\n__pycache__/\n.pytest_cache/\n");
    // A venv over the system interpreter, which has pytest (`.ci/run`
    // installs python3-pytest): git-ignored, so the exam sees it only
    // through the mount init writes.
    let made = std::process::Command::new("/usr/bin/python3")
        .args([
            "-m",
            "venv",
            "--without-pip",
            "--system-site-packages",
            ".venv",
        ])
        .current_dir(repo.path())
        .status()
        .expect("/usr/bin/python3 runs");
    assert!(made.success(), "python3 -m venv failed");
    let pytest = std::process::Command::new(repo.path().join(".venv/bin/python3"))
        .args(["-c", "import pytest"])
        .status()
        .unwrap();
    assert!(
        pytest.success(),
        "the system python3 has no pytest: `apt-get install python3-pytest` (.ci/run does)"
    );
    (repo, "sed -i 's/a - b/a + b/' calc.py", true)
}

fn pytest_in_a_venv(engine: EngineKind) {
    let (repo, fix, config) = pytest_fixture();
    init_lint_run(engine, repo, fix, config);
}

/// The same Python module, with no venv: `python3` on PATH is a pyenv
/// shim, and the version the pyenv root names has pytest in its own
/// site-packages. init resolves the shim to that version's directory and
/// mounts it; the exam runs its interpreter in the `host` image.
///
/// The version directory is made here, offline: a venv (`--copies`, so
/// its `bin/python3` is a real interpreter, not a link) over the system
/// Python, with the system's pytest and its dependencies copied into its
/// own site-packages, where a pyenv-built Python keeps them. Its standard
/// library stays the system's (`/usr`, which the `host` image mounts); a
/// real pyenv build carries its own, under the same mounted directory.
fn pytest_with_pyenv(engine: EngineKind) {
    let (repo, fix, _) = pytest_fixture();
    std::fs::remove_dir_all(repo.path().join(".venv")).unwrap();
    let pyenv = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(pyenv.path()).unwrap();
    let version = root.join("versions/3.11.99");
    let made = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--copies", "--without-pip"])
        .arg(&version)
        .status()
        .expect("/usr/bin/python3 runs");
    assert!(made.success(), "python3 -m venv --copies failed");
    let site = std::fs::read_dir(version.join("lib"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .expect("the venv's lib/python3.X/site-packages");
    let dist = std::path::Path::new("/usr/lib/python3/dist-packages");
    for package in [
        "pytest",
        "_pytest",
        "pluggy",
        "iniconfig",
        "packaging",
        "py",
        "py.py",
        "attr",
        "attrs",
    ] {
        let from = dist.join(package);
        assert!(
            from.exists(),
            "no {} (the system pytest): `apt-get install python3-pytest` (.ci/run does)",
            from.display()
        );
        let copied = std::process::Command::new("cp")
            .arg("-r")
            .arg(&from)
            .arg(&site)
            .status()
            .unwrap();
        assert!(copied.success(), "cp -r {}", from.display());
    }
    std::fs::create_dir_all(root.join("shims")).unwrap();
    let shim = root.join("shims/python3");
    std::fs::write(
        &shim,
        "#!/bin/sh\nexec \"$PYENV_ROOT/versions/$(cat \"$PYENV_ROOT/version\")/bin/python3\" \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("version"), "3.11.99\n").unwrap();
    // This machine's own pyenv, if it has one, stays out of the way.
    let repo = repo.env("PYENV_ROOT", &root).env(
        "PATH",
        std::path::Path::new(&format!("{}:/usr/bin:/bin", root.join("shims").display())),
    );
    let repo = init_lint_run(engine, repo, fix, true);
    let config = repo.read(".proctor/config.yaml");
    assert!(
        config.contains(&version.display().to_string()),
        "init did not mount pyenv's version: {config}"
    );
    drop(pyenv);
}

/// An npm package whose test fails, with a dependency in node_modules.
fn npm_fixture() -> Fixture {
    assert!(
        which("node").is_some(),
        "no node: `apt-get install nodejs npm` (.ci/run does)"
    );
    let repo = TestRepo::new()
        .file(
            "package.json",
            r#"{"name": "calc", "version": "1.0.0", "scripts": {"test": "node test.js"}, "dependencies": {"pad-two": "1.0.0"}}"#,
        )
        .file("calc.js", "exports.add = (a, b) => a - b;\n")
        .file(
            "test.js",
            "const pad = require('pad-two');\nconst { add } = require('./calc');\nif (pad(add(2, 2)) !== '04') { console.error('add(2, 2) = ' + add(2, 2)); process.exit(1); }\nconsole.log('ok');\n",
        )
        .file(".gitignore", "node_modules/\n")
        // What `npm install` left: git-ignored, so never in a commit.
        .file(
            "node_modules/pad-two/package.json",
            r#"{"name": "pad-two", "version": "1.0.0", "main": "index.js"}"#,
        )
        .file(
            "node_modules/pad-two/index.js",
            "module.exports = (n) => String(n).padStart(2, '0');\n",
        );
    (repo, "sed -i 's/a - b/a + b/' calc.js", true)
}

fn npm_with_node_modules(engine: EngineKind) {
    let (repo, fix, config) = npm_fixture();
    init_lint_run(engine, repo, fix, config);
}

/// A Go module whose test fails.
fn go_fixture() -> Fixture {
    assert!(
        which("go").is_some(),
        "no go: `apt-get install golang-go` (.ci/run does)"
    );
    let repo = TestRepo::new()
        .file("go.mod", "module example.com/calc\n\ngo 1.19\n")
        .file("calc.go", "package calc\n\nfunc Add(a, b int) int { return a - b }\n")
        .file(
            "calc_test.go",
            "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal(Add(2, 2))\n\t}\n}\n",
        );
    // Go's offline settings (GOPROXY=off, GOTOOLCHAIN=local) go in the config.
    (repo, "sed -i 's/a - b/a + b/' calc.go", true)
}

fn go_module(engine: EngineKind) {
    let (repo, fix, config) = go_fixture();
    init_lint_run(engine, repo, fix, config);
}

/// A Makefile whose `test` target fails (make and sh are in /usr: no
/// config).
fn make_fixture() -> Fixture {
    let repo = TestRepo::new()
        .file("calc.sh", "echo $(($1 - $2))\n")
        .file("Makefile", "test:\n\ttest \"$$(sh calc.sh 2 2)\" = 4\n");
    (repo, "sed -i 's/1 - /1 + /' calc.sh", false)
}

/// `init --template NAME` for each template but the migration (whose
/// exam is the others' behind a grep), on its ecosystem's fixture: the
/// template's exam runs in the `host` image with the config init wrote,
/// and fails (`lint`: `fail`, exit 0); once the fix is committed it
/// passes. An exam that cannot find its toolchain, or fails for another
/// reason than the test, would not turn to `pass`. One engine: the cage
/// is not what this tests.
fn every_template_s_exam_runs(engine: EngineKind) {
    require_engine();
    type Make = fn() -> Fixture;
    let fixtures = [
        ("cargo", cargo_fixture as Make),
        ("pytest", pytest_fixture),
        ("npm", npm_fixture),
        ("go", go_fixture),
        ("make", make_fixture),
    ];
    for (name, fixture) in fixtures {
        let (repo, fix, config_needed) = fixture();
        let repo = repo.engine(&socket(engine));
        let out = repo.proctor(&["init", "--template", name, "--agent", "true"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert_eq!(
            repo.exists(".proctor/config.yaml"),
            config_needed,
            "{name}: {}",
            stdout(&out)
        );
        assert!(
            repo.read("proctor.yaml")
                .contains(&format!("from `proctor init --template {name}`")),
            "{name}"
        );
        let repo = repo.commit("proctor init");
        let out = repo.proctor(&["lint"]);
        let lint = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {lint}{}", stderr(&out));
        assert!(lint.contains("  fail "), "{name}: {lint}");
        let fixed = std::process::Command::new("sh")
            .args(["-c", fix])
            .current_dir(repo.path())
            .status()
            .unwrap();
        assert!(fixed.success(), "{name}: {fix}");
        let repo = repo.commit("fix");
        let out = repo.proctor(&["lint"]);
        let lint = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {lint}{}", stderr(&out));
        assert!(lint.contains("  pass "), "{name}: {lint}");
    }
}

#[test]
fn every_template_s_exam_runs_on_docker() {
    every_template_s_exam_runs(EngineKind::Docker);
}

/// `caches:` is not inherited: a child whose exam names its parent's
/// cache folder has none (`lint` warns, naming the child only), while the
/// parent's exam finds it mounted. One engine: the warning is the
/// manifest's.
#[test]
fn lint_warns_of_a_cache_folder_the_loop_does_not_mount() {
    require_engine();
    let repo = TestRepo::new()
        .engine(&socket(EngineKind::Docker))
        .manifest(
            "loop: parent\nagent: \"true\"\ndone_when: \"test -d /cache/target\"\ncaches: [target]\nloops:\n  - loop: child\n    done_when: \"test -d /cache/target\"\n",
        )
        .commit("start");
    let out = repo.proctor(&["lint"]);
    let (lint, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{lint}{err}");
    assert!(
        err.contains("warning: loop `child`'s exam names `/cache/target` but the loop has no `caches: [target]`"),
        "{err}"
    );
    assert!(!err.contains("loop `parent`'s"), "{err}");
    let status = |id: &str| {
        lint.lines()
            .find(|l| l.contains(&format!(" {id}: ")))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_owned)
    };
    assert_eq!(status("parent").as_deref(), Some("pass"), "{lint}");
    assert_eq!(status("child").as_deref(), Some("fail"), "{lint}");
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

on_both_engines!(
    cargo_with_rustup,
    pytest_in_a_venv,
    pytest_with_pyenv,
    npm_with_node_modules,
    go_module
);
