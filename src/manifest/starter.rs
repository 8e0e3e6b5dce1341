//! The starter `proctor.yaml` that `proctor init` writes: every field
//! explained in a comment, the exam guessed from the files in the repo.
//! Reads a few files at the repo root; writes nothing.

use std::path::Path;

use super::units;

use super::toolchain::Ecosystem as Kind;

impl Kind {
    pub(crate) fn exam(self) -> &'static str {
        match self {
            Kind::Cargo => "cargo test",
            Kind::Npm => "npm test",
            Kind::Pytest => "python3 -m pytest -q",
            Kind::Go => "go test ./...",
            Kind::Make => "make test",
        }
    }

    fn evidence(self) -> &'static str {
        match self {
            Kind::Cargo => "Cargo.toml",
            Kind::Npm => "the `test` script in package.json",
            Kind::Pytest => "Python tests",
            Kind::Go => "go.mod",
            Kind::Make => "the `test` target in the Makefile",
        }
    }

    /// The exam's build cache, as (cache name, the variable that points
    /// the tool at `/cache/<name>`): where an edit rebuilds a little of a
    /// lot (cargo's target directory, Go's build cache). pytest and npm
    /// build nothing worth keeping, so they get none.
    pub(crate) fn cache(self) -> Option<(&'static str, &'static str)> {
        match self {
            Kind::Cargo => Some(("target", "CARGO_TARGET_DIR")),
            Kind::Go => Some(("go-build", "GOCACHE")),
            Kind::Npm | Kind::Pytest | Kind::Make => None,
        }
    }

    /// `exam` pointed at this ecosystem's cache. The variable is set in
    /// the exam's own command, not in `env:`: only the exam has `/cache`
    /// (the agent's container has none, and `env:` reaches the agent, is
    /// inherited by child loops, which do not inherit `caches:`, and takes
    /// names, not values).
    pub(crate) fn cached_exam(self, exam: &str) -> String {
        match self.cache() {
            None => exam.to_owned(),
            Some((name, var)) if exam.contains("&&") || exam.contains(';') => {
                format!("export {var}=/cache/{name}; {exam}")
            }
            Some((name, var)) => format!("{var}=/cache/{name} {exam}"),
        }
    }

    /// The commented `caches:` lines for a manifest whose exam is
    /// [`Self::cached_exam`], or nothing.
    pub(crate) fn caches_yaml(self) -> String {
        let Some((name, var)) = self.cache() else {
            return String::new();
        };
        format!(
            "# The exam's build cache, where {var} points: the host folder\n\
             # .proctor/caches/{name} at /cache/{name} in every exam (never in the agent's\n\
             # container). The exam of the run's base commit fills it; every other exam\n\
             # reads it warm and its writes are thrown away with its container.\n\
             caches: [{name}]\n"
        )
    }

    /// An image that has the toolchain, to suggest in a comment.
    fn image(self) -> &'static str {
        match self {
            Kind::Cargo => "rust:1",
            Kind::Npm => "node:22",
            Kind::Pytest => "python:3.12",
            Kind::Go => "golang:1",
            Kind::Make => "debian:stable",
        }
    }
}

/// Test directories that, when present, are suggested as `protected`.
const TEST_DIRS: &[&str] = &["tests", "test", "__tests__", "spec"];

/// The ecosystems the repository at `root` is tested with, the likeliest
/// first.
pub fn detect(root: &Path) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if root.join("Cargo.toml").is_file() {
        kinds.push(Kind::Cargo);
    }
    if root.join("go.mod").is_file() {
        kinds.push(Kind::Go);
    }
    if has_npm_test(root) {
        kinds.push(Kind::Npm);
    }
    if has_python_tests(root) {
        kinds.push(Kind::Pytest);
    }
    if has_make_test(root) {
        kinds.push(Kind::Make);
    }
    kinds
}

fn has_npm_test(root: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(root.join("package.json")) else {
        return false;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    match json.pointer("/scripts/test").and_then(|t| t.as_str()) {
        // `npm init` writes a test script that only fails; it is no exam.
        Some(script) => !script.trim().is_empty() && !script.contains("no test specified"),
        None => false,
    }
}

fn has_python_tests(root: &Path) -> bool {
    if ["pytest.ini", "pyproject.toml", "setup.cfg", "conftest.py"]
        .iter()
        .any(|f| root.join(f).is_file())
    {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(root.join("tests")) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "py"))
}

fn has_make_test(root: &Path) -> bool {
    ["GNUmakefile", "makefile", "Makefile"].iter().any(|name| {
        std::fs::read_to_string(root.join(name)).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix("test")
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
        })
    })
}

/// The loop id for a repo: its directory name in kebab-case, else `main`.
pub(crate) fn loop_id(root: &Path) -> String {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            // `.` and `..` have no file name; the real directory does.
            root.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_default();
    units::to_kebab(&name)
        .filter(|id| id.len() <= 64)
        .unwrap_or_else(|| "main".to_owned())
}

/// YAML double-quoted form of `s` (JSON strings are valid YAML).
pub(crate) fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A commented starter `proctor.yaml` for the repo at `repo_root`, with the
/// exam inferred where the repo says how it is tested (Cargo, npm, pytest,
/// make) and a placeholder to replace otherwise. The text always passes
/// [`super::parse`].
pub fn starter_manifest(repo_root: &Path) -> String {
    starter_manifest_with(repo_root, None)
}

/// [`starter_manifest`] with `agent` (a preset name or a command) in place
/// of the `codex` preset.
pub fn starter_manifest_with(repo_root: &Path, agent: Option<&str>) -> String {
    let kinds = detect(repo_root);
    let id = loop_id(repo_root);
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };

    line("# proctor.yaml: proctor runs the agent, then the exam, until the exam passes.");
    line("# Every field is described in docs/manifest.md. A Lute lute.yaml works unchanged.");
    line("");
    line("# The loop id (kebab-case). Work happens on the branch `proctor/<id>`.");
    line(&format!("loop: {id}"));
    line("");
    line("# What the agent should do. It gets this on stdin, with the exam's failing output.");
    line("task: >-");
    line("  Make the exam pass. Fix the code, not the tests: never delete, skip or");
    line("  weaken a test.");
    line("");
    line("# The agent: a preset (codex, claude, mini-swe-agent: the flags each CLI needs");
    line("# in the container, its API-key variables and its hosts; see docs/agents.md),");
    line("# or any command that reads the prompt on stdin, edits the working tree");
    line("# (/work in its container) and exits, e.g. `sh scripts/my-agent.sh`.");
    line("# It must be installed in the image.");
    match agent {
        Some(agent) => line(&format!("agent: {}", quoted(agent))),
        None => line("agent: codex"),
    }
    line("");
    line("# The exam: a shell command run in a fresh container on the committed tree.");
    line("# Exit 0 = done, 75 = not yet (check again later), anything else = not done.");
    match kinds.first() {
        Some(kind) => {
            line(&format!("# Inferred from {}.", kind.evidence()));
            line(&format!(
                "done_when: {}",
                quoted(&kind.cached_exam(kind.exam()))
            ));
            for other in &kinds[1..] {
                line(&format!(
                    "# Also found {}: done_when: {}",
                    other.evidence(),
                    quoted(other.exam())
                ));
            }
        }
        None => {
            line("# TODO: no test setup was recognised; replace this with the command");
            line("# that proves the work is done.");
            line(&format!("done_when: {}", quoted("sh test.sh")));
        }
    }
    if let Some(kind) = kinds.first().filter(|k| k.cache().is_some()) {
        line("");
        for text in kind.caches_yaml().lines() {
            line(text);
        }
    }
    line("");
    line("# When to give up and write a card to INBOX/: `N runs`, a duration (30s, 90m,");
    line("# 48h, 2d), or both joined by `/`. Default: 10 runs.");
    line("budget: 10 runs");
    line("");
    line("# Consecutive passes needed to close the loop; raise it for a flaky exam.");
    line("confirm: 1");
    line("");
    line("# Exam materials the agent must not change (globs from the repo root). An edit");
    line("# to them is set aside in .proctor/quarantine/ and the original restored.");
    let dirs: Vec<&str> = TEST_DIRS
        .iter()
        .copied()
        .filter(|d| repo_root.join(d).is_dir())
        .collect();
    if dirs.is_empty() {
        line("# protected:");
        line("#   - \"tests/**\"");
    } else {
        line("protected:");
        for dir in dirs {
            line(&format!("  - {}", quoted(&format!("{dir}/**"))));
        }
    }
    line("");
    line("# Optional settings; uncomment to use.");
    let image = kinds.first().map_or("debian:stable", |k| k.image());
    line(&format!(
        "# image: {image}            # image for agent and exam; default from .proctor/config.yaml"
    ));
    line("# network: open              # the agent's network: none | open | [api.openai.com, \"host:443\"]; a preset's hosts by default");
    line("# env: [GITHUB_TOKEN]        # more host variables passed to the agent, by name only");
    line("# writes: [\"src/**\"]         # the only paths the agent may change");
    line("# timeout: 30m               # cap on each agent and exam container");
    line("# resources: {memory: 2g, cpus: 2, pids: 512}");
    line("# check_every: 60s           # wait between checks while the exam says 75 (not yet)");
    line("# gate: human                # wait for `proctor answer <id> approve` before closing");
    line("# tests: {junit: target/junit, min: 1}   # audit test counts in the exam's JUnit XML");
    line("# judge: \"the change is minimal and keeps the public API\"   # may veto a pass, never grant one");
    if kinds.first().and_then(|k| k.cache()).is_none() {
        line("# caches: [deps]             # host folder .proctor/caches/deps at /cache/deps: the base commit's exam fills it, other exams get a throwaway copy");
    }
    line("");
    line("# Child loops close first, each under its own exam; then this loop's exam");
    line("# checks the whole. Children inherit agent, image, network, env, writes,");
    line("# resources and timeout.");
    line("# loops:");
    line("#   - loop: first-step");
    line("#     task: ...");
    line("#     done_when: \"...\"");
    out
}

/// The build systems the repository at `repo_root` shows and the exam each
/// suggests, as `(evidence, exam command, its cache)`: what `init` writes
/// (the exam pointed at the cache when the ecosystem has one), for
/// `proctor plan`'s briefing.
pub fn detected_exams(repo_root: &Path) -> Vec<(&'static str, String, Option<&'static str>)> {
    detect(repo_root)
        .into_iter()
        .map(|kind| {
            (
                kind.evidence(),
                kind.cached_exam(kind.exam()),
                kind.cache().map(|(name, _)| name),
            )
        })
        .collect()
}
