//! `proctor init --template NAME`: starter manifests for the common cases,
//! each with a working exam, its test files `protected:`, a JUnit audit
//! where the ecosystem writes JUnit without a plugin, and a budget that
//! fits one agent's job. The toolchain config comes from
//! [`super::toolchain`], as for an inferred exam.
//! Reads the repository's top directories (for the migration's children);
//! writes nothing.

use std::path::Path;

use super::starter::quoted;
use super::toolchain::Ecosystem;

/// The template names, in the order `--help` and errors list them.
pub const TEMPLATES: &[&str] = &["cargo", "npm", "pytest", "go", "make", "migration"];

/// The ecosystem a template's exam runs in (the migration's: the repo's,
/// inferred; `None` when nothing is recognised).
pub fn ecosystem(name: &str, root: &Path) -> Option<Ecosystem> {
    match name {
        "cargo" => Some(Ecosystem::Cargo),
        "npm" => Some(Ecosystem::Npm),
        "pytest" => Some(Ecosystem::Pytest),
        "go" => Some(Ecosystem::Go),
        "make" => Some(Ecosystem::Make),
        _ => super::starter::detect(root).first().copied(),
    }
}

/// The manifest text of template `name` for the repository at `root`,
/// or `None` for an unknown name. The text always passes
/// [`super::parse`].
pub fn template(name: &str, root: &Path, agent: Option<&str>) -> Option<String> {
    let id = super::starter::loop_id(root);
    let agent = agent.map_or_else(|| "codex".to_owned(), quoted);
    let head = format!(
        "# proctor.yaml from `proctor init --template {name}`; fields: docs/manifest.md.\n\
         # The exam's toolchain on this machine is in .proctor/config.yaml (init\n\
         # writes it when the `host` image cannot see it).\n\
         loop: {id}\n\
         agent: {agent}\n"
    );
    let body = match name {
        "cargo" => String::from(
            "task: >-\n  Make `cargo test` pass. Fix the code, not the tests: never delete, skip or\n  weaken a test.\n\
             done_when: \"CARGO_TARGET_DIR=/cache/target cargo test\"\n\
             budget: 10 runs / 2h\n\
             protected: [\"tests/**\", \"benches/**\"]\n\
             # cargo writes no JUnit itself; cargo-nextest with a `ci` profile whose junit\n\
             # path is set writes it under the target directory, which the audit reads\n\
             # only in the tree: for one, `cargo nextest run --profile ci` without\n\
             # CARGO_TARGET_DIR (a cold build each exam), and:\n\
             # tests: {junit: target/nextest/ci, min: 1}\n",
        ) + &Ecosystem::Cargo.caches_yaml(),
        "npm" => String::from(
            "task: >-\n  Make `npm test` pass. Fix the code, not the tests: never delete, skip or\n  weaken a test.\n\
             done_when: \"npm test\"\n\
             budget: 10 runs / 2h\n\
             protected: [\"test/**\", \"tests/**\", \"__tests__/**\", \"**/*.test.js\", \"**/*.spec.js\"]\n\
             # npm's runners write JUnit through a reporter (jest-junit, mocha-junit-reporter,\n\
             # tap-junit); with one writing to reports/junit:\n\
             # tests: {junit: reports/junit, min: 1}\n"
        ),
        "pytest" => String::from(
            "task: >-\n  Make the test suite pass. Fix the code, not the tests: never delete, skip or\n  weaken a test.\n\
             done_when: \"python3 -m pytest -q --junitxml=reports/junit/pytest.xml\"\n\
             budget: 10 runs / 2h\n\
             protected: [\"tests/**\", \"conftest.py\", \"pytest.ini\"]\n\
             # The exam's JUnit report: at least one test ran, none skipped, no fewer than\n\
             # on the base commit.\n\
             tests: {junit: reports/junit, min: 1, expect_delta: 0}\n"
        ),
        "go" => String::from(
            "task: >-\n  Make `go test ./...` pass. Fix the code, not the tests: never delete, skip\n  or weaken a test.\n\
             done_when: \"export GOCACHE=/cache/go-build; go vet ./... && go test ./...\"\n\
             budget: 10 runs / 2h\n\
             protected: [\"**/*_test.go\", \"**/testdata/**\"]\n\
             # go test writes no JUnit itself; with gotestsum on the PATH:\n\
             # done_when: \"export GOCACHE=/cache/go-build; gotestsum --junitfile reports/junit/go.xml ./...\"\n\
             # tests: {junit: reports/junit, min: 1}\n",
        ) + &Ecosystem::Go.caches_yaml(),
        "make" => String::from(
            "task: >-\n  Make `make test` pass. Fix the code, not the tests: never delete, skip or\n  weaken a test.\n\
             done_when: \"make test\"\n\
             budget: 10 runs / 2h\n\
             protected: [\"Makefile\", \"tests/**\", \"test/**\"]\n"
        ),
        "migration" => migration(root),
        _ => return None,
    };
    Some(head + &body)
}

/// A dependency migration: one child per top directory of the code, run in
/// parallel, each done when its directory no longer names the old
/// dependency; the parent done when none does and the suite passes.
fn migration(root: &Path) -> String {
    let exam = ecosystem("migration", root).map_or("sh test.sh", |e| e.exam());
    let src = ["src", "lib", "pkg", "app"]
        .into_iter()
        .find(|d| root.join(d).is_dir())
        .unwrap_or(".");
    let mut parts: Vec<String> = std::fs::read_dir(root.join(src))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| {
                    !n.starts_with('.')
                        && !matches!(
                            n.as_str(),
                            "node_modules" | "target" | "tests" | "test" | "vendor"
                        )
                })
                .filter(|n| super::units::to_kebab(n).is_some_and(|k| k == *n))
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts.truncate(4);
    let mut out = String::new();
    out.push_str("# Set OLD to the dependency being replaced (a word grep can find).\n");
    out.push_str("task: >-\n  Replace the dependency `OLD` with `NEW` everywhere. Keep behaviour and the\n  tests as they are.\n");
    out.push_str(&format!(
        "done_when: {}\n",
        quoted(&format!(
            "! grep -rIl --exclude-dir=.git --exclude=proctor.yaml OLD . && {exam}"
        ))
    ));
    out.push_str("budget: 4 runs / 4h\n");
    out.push_str("protected: [\"tests/**\", \"test/**\"]\n");
    out.push_str("# The children close first, side by side, each in its own worktree and\n");
    out.push_str("# branch, merged as they close; then the parent's exam checks the whole.\n");
    out.push_str("parallel: true\n");
    out.push_str("loops:\n");
    if parts.is_empty() {
        parts.push(String::new());
    }
    for part in &parts {
        let (id, dir) = if part.is_empty() {
            ("migrate".to_owned(), src.to_owned())
        } else if src == "." {
            (format!("migrate-{part}"), part.clone())
        } else {
            (format!("migrate-{part}"), format!("{src}/{part}"))
        };
        out.push_str(&format!("  - loop: {id}\n"));
        out.push_str(&format!(
            "    task: Replace `OLD` with `NEW` in `{dir}/`; change nothing outside it.\n"
        ));
        out.push_str(&format!(
            "    done_when: {}\n",
            quoted(&format!("! grep -rIl OLD {dir}"))
        ));
        out.push_str("    budget: 5 runs / 1h\n");
        out.push_str(&format!("    writes: [{}]\n", quoted(&format!("{dir}/**"))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        dir
    }

    #[test]
    fn every_template_parses_with_protected_files_and_a_budget() {
        let dir = repo(&["Cargo.toml", "src/core/lib.rs", "src/cli/main.rs"]);
        for name in TEMPLATES {
            let text = template(name, dir.path(), Some("sh fix.sh")).unwrap();
            let m = match super::super::parse(&text, Path::new("proctor.yaml")) {
                Ok(m) => m,
                Err(e) => panic!("template {name} did not parse:\n{e}\n---\n{text}"),
            };
            assert!(!m.root.protected.is_empty(), "{name}");
            assert_eq!(m.root.agent.as_deref(), Some("sh fix.sh"), "{name}");
            assert!(m.root.budget.wall.is_some(), "{name}");
        }
        assert!(template("cargoo", dir.path(), None).is_none());
    }

    /// cargo's and Go's exams keep their build in a cache (`/cache/<name>`,
    /// the exam's only) that their own command points at; the others have
    /// none.
    #[test]
    fn cargo_and_go_exams_build_in_a_cache() {
        let dir = repo(&[]);
        for (name, cache, exam) in [
            (
                "cargo",
                "target",
                "CARGO_TARGET_DIR=/cache/target cargo test",
            ),
            (
                "go",
                "go-build",
                "export GOCACHE=/cache/go-build; go vet ./... && go test ./...",
            ),
        ] {
            let m = super::super::parse(
                &template(name, dir.path(), None).unwrap(),
                Path::new("proctor.yaml"),
            )
            .unwrap();
            assert_eq!(m.root.caches, [cache], "{name}");
            assert_eq!(m.root.done_when, exam, "{name}");
            assert!(m.root.verifier_env.is_empty() && m.root.env.is_empty());
        }
        for name in ["npm", "pytest", "make"] {
            let m = super::super::parse(
                &template(name, dir.path(), None).unwrap(),
                Path::new("proctor.yaml"),
            )
            .unwrap();
            assert!(m.root.caches.is_empty(), "{name}");
        }
    }

    #[test]
    fn pytest_audits_its_junit_report() {
        let dir = repo(&[]);
        let m = super::super::parse(
            &template("pytest", dir.path(), None).unwrap(),
            Path::new("proctor.yaml"),
        )
        .unwrap();
        let audit = m.root.tests.expect("a tests: audit");
        assert_eq!(audit.junit, "reports/junit");
        assert!(m.root.done_when.contains("--junitxml=reports/junit/"));
    }

    #[test]
    fn migration_is_a_parent_exam_over_parallel_children_per_directory() {
        let dir = repo(&["Cargo.toml", "src/core/lib.rs", "src/cli/main.rs"]);
        let m = super::super::parse(
            &template("migration", dir.path(), None).unwrap(),
            Path::new("proctor.yaml"),
        )
        .unwrap();
        assert!(m.root.parallel);
        let ids: Vec<&str> = m.root.children.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["migrate-cli", "migrate-core"]);
        assert!(
            m.root.done_when.ends_with("&& cargo test"),
            "{}",
            m.root.done_when
        );
        assert_eq!(m.root.children[0].writes, vec!["src/cli/**".to_string()]);
    }
}
