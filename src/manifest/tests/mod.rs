use std::path::Path;
use std::time::Duration;

use super::*;

mod lute_examples;
mod props;

fn ok(text: &str) -> Manifest {
    match parse(text, Path::new("proctor.yaml")) {
        Ok(m) => m,
        Err(e) => panic!("expected {text:?} to parse, got:\n{e}"),
    }
}

/// Pins the errors `text` is refused with; the manifest is the snapshot's
/// description, so a reviewer sees what was refused beside why.
macro_rules! assert_refused {
    ($text:expr) => {{
        let text: &str = $text;
        insta::with_settings!({ description => text, omit_expression => true }, {
            insta::assert_snapshot!(err(text));
        });
    }};
}

fn err(text: &str) -> String {
    match parse(text, Path::new("proctor.yaml")) {
        Ok(m) => panic!("expected {text:?} to fail, got {m:?}"),
        Err(e) => {
            assert!(!e.problems.is_empty());
            e.to_string()
        }
    }
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

// ---- Lute compatibility -------------------------------------------------

#[test]
fn lute_billing_migration_example_parses() {
    let m = ok(lute_examples::BILLING_MIGRATION);
    assert_eq!(m.root.id, "billing-migration");
    assert_eq!(
        m.root.budget,
        Budget {
            runs: None,
            wall: Some(hours(72))
        }
    );
    let ids: Vec<&str> = m.loops().iter().map(|l| l.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "billing-migration",
            "data-model",
            "ledger-schema",
            "backfill",
            "billing-api",
            "invoice-endpoints",
            "webhooks",
            "billing-ui",
            "invoice-screen",
            "admin-reporting"
        ]
    );
    // `agent` is set once at the root and inherited all the way down.
    for spec in m.loops() {
        assert_eq!(
            spec.agent.as_deref(),
            Some("claude -p --permission-mode acceptEdits")
        );
    }
    let schema = m.find_loop("ledger-schema").unwrap();
    assert_eq!(schema.protected, ["scripts/check_schema.py"]);
    assert_eq!(
        schema.budget,
        Budget {
            runs: Some(8),
            wall: None
        }
    );
    assert_eq!(m.find_loop("webhooks").unwrap().confirm, 2);
    // protected is per loop, as in Lute.
    assert!(m.find_loop("data-model").unwrap().protected.is_empty());
}

#[test]
fn lute_react_19_example_parses() {
    let m = ok(lute_examples::REACT_19);
    assert_eq!(m.root.id, "react-19");
    assert_eq!(m.root.done_when, "npm test && npm run build");
    let fix_build = m.find_loop("fix-build").unwrap();
    // A plain scalar folded over two lines, the second starting with `@`.
    assert_eq!(
        fix_build.task.as_deref(),
        Some(
            "Fix every build error from the upgrade. No downgrades, and no \
             @ts-ignore/@ts-expect-error/@ts-nocheck to silence errors."
        )
    );
    let bump = m.find_loop("bump-react").unwrap();
    assert_eq!(
        bump.done_when,
        r#"node -e 'process.exit(require("react/package.json").version.startsWith("19")?0:1)'"#
    );
    assert_eq!(
        bump.budget,
        Budget {
            runs: Some(3),
            wall: None
        }
    );
    assert_eq!(m.find_loop("fix-tests").unwrap().confirm, 2);
}

#[test]
fn lute_ship_services_example_parses() {
    let m = ok(lute_examples::SHIP_SERVICES);
    assert!(m.root.parallel);
    assert_eq!(m.root.children.len(), 3);
    // No budget anywhere: Lute's default of 10 runs.
    for spec in m.loops() {
        assert_eq!(spec.budget, DEFAULT_BUDGET);
        assert!(!spec.children.iter().any(|c| c.parallel));
    }
}

#[test]
fn lute_deploy_quiet_example_parses() {
    let m = ok(lute_examples::DEPLOY_QUIET);
    assert_eq!(m.root.check_every, Duration::from_secs(30 * 60));
    assert_eq!(
        m.root.budget,
        Budget {
            runs: None,
            wall: Some(hours(48))
        }
    );
}

#[test]
fn lute_make_it_pass_example_parses() {
    let m = ok(lute_examples::MAKE_IT_PASS);
    assert_eq!(m.root.protected, ["tests/**", "checks/**"]);
    assert_eq!(m.root.budget.runs, Some(20));
}

#[test]
fn lute_gate_fragment_parses_under_a_root() {
    // The README shows only the `loops:` part; a file needs a root around it.
    let text = format!(
        "loop: release\ndone_when: \"true\"\n{}",
        lute_examples::GATE_FRAGMENT
    );
    let m = ok(&text);
    assert_eq!(
        m.find_loop("release-ready").unwrap().gate,
        Some(Gate { approvals: 1 })
    );
    assert_eq!(m.find_loop("ship").unwrap().gate, None);
}

#[test]
fn lute_schedules_fragment_parses_beside_its_loop() {
    let text = format!(
        "{}\n{}",
        lute_examples::REACT_19,
        lute_examples::SCHEDULES_FRAGMENT
    );
    let m = ok(&text);
    assert_eq!(
        m.schedules,
        [Schedule {
            run: "react-19".into(),
            at: "0 9 * * *".into()
        }]
    );
}

#[test]
fn lute_config_examples_get_proctor_advice() {
    let on_halt = parse_config(
        lute_examples::CONFIG_ON_HALT,
        Path::new(".proctor/config.yaml"),
    )
    .unwrap();
    assert!(on_halt.on_halt.unwrap().starts_with("curl -fsS"));
    let cage = parse_config(
        lute_examples::CONFIG_CAGE,
        Path::new(".proctor/config.yaml"),
    )
    .unwrap_err()
    .to_string();
    insta::assert_snapshot!(cage);
}

#[test]
fn lute_yaml_is_found_when_there_is_no_proctor_yaml() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(find(dir.path()), None);
    std::fs::write(dir.path().join("lute.yaml"), lute_examples::DEPLOY_QUIET).unwrap();
    assert_eq!(find(dir.path()), Some(dir.path().join("lute.yaml")));
    std::fs::write(dir.path().join("proctor.yaml"), lute_examples::MAKE_IT_PASS).unwrap();
    let found = find(dir.path()).unwrap();
    assert_eq!(found, dir.path().join("proctor.yaml"));
    assert_eq!(load(&found).unwrap().root.id, "make-it-pass");
}

// ---- error messages -----------------------------------------------------

#[test]
fn misspelt_key_names_the_key_the_loop_and_the_fix() {
    let text = "loop: root\ndone_when: \"true\"\nloops:\n  - loop: fix-tests\n    done_when: npm test\n    budjet: 3 runs\n";
    let e = err(text);
    assert_eq!(
        e,
        "proctor.yaml:6:5: unknown key `budjet` in loop `fix-tests`; did you mean `budget`?"
    );
    let problems = parse(text, Path::new("proctor.yaml")).unwrap_err().problems;
    assert_eq!(problems[0].field, "loops[0].budjet");
}

#[test]
fn unrelated_unknown_key_gets_no_guess() {
    let e = err("loop: a\ndone_when: x\nflavour: vanilla\n");
    assert_eq!(e, "proctor.yaml:3:1: unknown key `flavour` in loop `a`");
}

#[test]
fn keys_from_elsewhere_say_where_they_belong() {
    assert_refused!("loop: a\ndone_when: x\non_halt: notify\nloops:\n  - loop: b\n    done_when: y\n    schedules: []\n");
    assert_refused!("loop: a\nuntil: make\n");
}

#[test]
fn every_problem_is_reported_one_per_line() {
    let e =
        err("loop: Fix_Tests\nconfirm: \"two\"\nbudget: 0 runs\ndone_when: \"  \"\nparallel: 2\n");
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 5, "{e}");
    assert!(lines.iter().all(|l| l.starts_with("proctor.yaml:")), "{e}");
    assert_eq!(
        lines[0],
        "proctor.yaml:1:7: loop `Fix_Tests`: `loop`: `Fix_Tests` is not kebab-case (lowercase letters and digits joined by single hyphens), e.g. `fix-tests`"
    );
    assert_eq!(
        lines[1],
        "proctor.yaml:2:10: loop `Fix_Tests`: `confirm`: expected a whole number >= 1, got `two`"
    );
    assert_eq!(
        lines[2],
        "proctor.yaml:3:9: loop `Fix_Tests`: `budget`: `0 runs` allows no work; give at least `1 run`"
    );
    assert_eq!(
        lines[3],
        "proctor.yaml:4:12: loop `Fix_Tests`: `done_when`: must not be empty"
    );
    assert_eq!(
        lines[4],
        "proctor.yaml:5:11: loop `Fix_Tests`: `parallel`: expected `true` or `false`, got `2`"
    );
}

#[test]
fn yaml_1_1_booleans_are_read_as_lute_reads_them() {
    // PyYAML (Lute) reads `yes`/`on` as true; the same file must mean the
    // same here. Elsewhere they stay strings: `NO` is a fine variable name.
    assert!(ok("loop: a\ndone_when: x\nparallel: yes\n").root.parallel);
    assert!(ok("loop: a\ndone_when: x\nparallel: On\n").root.parallel);
    assert!(!ok("loop: a\ndone_when: x\nparallel: no\n").root.parallel);
    assert_eq!(
        ok("loop: a\ndone_when: x\nenv: [NO, yes]\n").root.env,
        ["NO", "yes"]
    );
    assert_eq!(ok("loop: a\ndone_when: no\n").root.done_when, "no");
    assert_refused!("loop: a\ndone_when: x\nparallel: maybe\n");
}

#[test]
fn missing_required_fields() {
    assert_refused!("task: do it\n");
    assert_refused!("loop: a\ndone_when:\n");
    assert_refused!("loop: a\ndone_when: true\n");
}

#[test]
fn duplicate_ids_are_refused() {
    let e = err("loop: a\ndone_when: x\nloops:\n  - loop: b\n    done_when: y\n  - loop: b\n    done_when: z\n");
    assert_eq!(
        e,
        "proctor.yaml:6:11: loop `b`: `loop`: duplicate loop id `b` (first used on line 4); ids must be unique in the file"
    );
}

#[test]
fn duplicate_keys_are_refused_by_the_yaml_reader() {
    let e = err("loop: a\ndone_when: x\nbudget: 1 run\nbudget: 2 runs\n");
    assert_eq!(e, "proctor.yaml:4:1: invalid yaml: duplicate key `budget`");
}

#[test]
fn bad_yaml_reports_the_parser_position() {
    assert_refused!("loop: a\ndone_when: [unclosed\n");
    assert_eq!(err("loop: a\ndone_when: [unclosed\n").lines().count(), 1);
    assert_refused!("loop: a\n--- \nloop: b\n");
}

#[test]
fn top_level_must_be_a_mapping() {
    assert_eq!(
        err(""),
        "proctor.yaml:1:1: the top level must be a mapping with a `loop:` key, got nothing"
    );
    assert_refused!("- loop: a\n");
}

#[test]
fn missing_file_says_cannot_read() {
    let e = load(Path::new("/nonexistent/proctor.yaml"))
        .unwrap_err()
        .to_string();
    insta::assert_snapshot!(e);
}

#[test]
fn wrong_shapes_are_named() {
    assert_refused!("loop: a\ndone_when: x\nloops: b\nprotected: \"tests/**\"\nenv: [\"A=1\"]\ncaches: [\"-x\"]\n");
    assert_refused!("loop: a\ndone_when: x\nloops: [3]\n");
}

#[test]
fn bad_globs_are_refused() {
    assert_refused!("loop: a\ndone_when: x\nwrites: [\"src/[\"]\n");
}

#[test]
fn non_string_keys_are_refused() {
    assert_refused!("loop: a\ndone_when: x\n3: y\n");
}

#[test]
fn the_loop_without_an_id_is_named_by_its_place() {
    assert_refused!("loop: a\ndone_when: x\nloops:\n  - done_when: y\n    budjet: 2 runs\n");
}

#[test]
fn empty_values_mean_the_default() {
    let m = ok("loop: a\ndone_when: x\nbudget:\ntask:\nloops:\n");
    assert_eq!(m.root.budget, DEFAULT_BUDGET);
    assert_eq!(m.root.task, None);
}

// ---- values ---------------------------------------------------------------

#[test]
fn budgets() {
    let b = |s: &str| parse_budget(s);
    assert_eq!(
        b("3 runs"),
        Ok(Budget {
            runs: Some(3),
            wall: None
        })
    );
    assert_eq!(
        b("1 run"),
        Ok(Budget {
            runs: Some(1),
            wall: None
        })
    );
    assert_eq!(
        b("5runs"),
        Ok(Budget {
            runs: Some(5),
            wall: None
        })
    );
    assert_eq!(
        b("48h"),
        Ok(Budget {
            runs: None,
            wall: Some(hours(48))
        })
    );
    assert_eq!(
        b("2d"),
        Ok(Budget {
            runs: None,
            wall: Some(hours(48))
        })
    );
    assert_eq!(
        b("90m"),
        Ok(Budget {
            runs: None,
            wall: Some(Duration::from_secs(5400))
        })
    );
    assert_eq!(
        b("30 runs / 2h"),
        Ok(Budget {
            runs: Some(30),
            wall: Some(hours(2))
        })
    );
    assert_eq!(
        b("2h/30 runs"),
        Ok(Budget {
            runs: Some(30),
            wall: Some(hours(2))
        })
    );
    let mut refusals = Vec::new();
    for bad in [
        "",
        "0 runs",
        "0h",
        "runs",
        "3 rusn",
        "30 runs /",
        "-1 runs",
        "1.5h",
        "48 h",
        "99999999999 runs",
    ] {
        match b(bad) {
            Ok(budget) => panic!("{bad:?} should be refused, got {budget:?}"),
            Err(e) => refusals.push(format!("{bad:?}: {e}")),
        }
    }
    insta::assert_snapshot!(refusals.join("\n"));
    for s in [
        "10 runs",
        "1 run",
        "30 runs / 2h",
        "90m",
        "2d",
        "45s",
        "25h",
    ] {
        assert_eq!(b(s).unwrap().to_string(), s);
    }
    // A cap given twice: the tighter one holds, as in Lute.
    assert_eq!(
        b("3 runs / 4 runs / 1h / 30m"),
        Ok(Budget {
            runs: Some(3),
            wall: Some(Duration::from_secs(1800))
        })
    );
    // Shown in the largest unit that is exact.
    assert_eq!(b("48h").unwrap().to_string(), "2d");
    assert_eq!(b("120m / 7 runs").unwrap().to_string(), "7 runs / 2h");
}

#[test]
fn budget_in_a_manifest() {
    assert_eq!(ok("loop: a\ndone_when: x\n").root.budget, DEFAULT_BUDGET);
    assert_refused!("loop: a\ndone_when: x\nbudget: 10\n");
    assert_refused!("loop: a\ndone_when: x\nbudget: 3 rusn\n");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration(" 5m "), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("2d"), Some(hours(48)));
    assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
    for bad in [
        "",
        "s",
        "5",
        "5x",
        "-5s",
        "5 s",
        "1.5h",
        "5é",
        "99999999999999999999d",
        "18446744073709551615d",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
    assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
    assert_eq!(format_duration(Duration::ZERO), "0s");
}

#[test]
fn check_every_and_timeout() {
    let m = ok("loop: a\ndone_when: x\ncheck_every: 5m\ntimeout: 1h\n");
    assert_eq!(m.root.check_every, Duration::from_secs(300));
    assert_eq!(m.root.timeout, Some(hours(1)));
    assert_eq!(
        ok("loop: a\ndone_when: x\n").root.check_every,
        Duration::from_secs(60)
    );
    assert_refused!("loop: a\ndone_when: x\ncheck_every: 0s\n");
    assert_refused!("loop: a\ndone_when: x\ntimeout: 60\n");
}

#[test]
fn gate_forms() {
    assert_eq!(ok("loop: a\ndone_when: x\n").root.gate, None);
    assert_eq!(
        ok("loop: a\ndone_when: x\ngate: human\n").root.gate,
        Some(Gate { approvals: 1 })
    );
    assert_eq!(
        ok("loop: a\ndone_when: x\ngate: {human: 2}\n").root.gate,
        Some(Gate { approvals: 2 })
    );
    assert_eq!(
        ok("loop: a\ndone_when: x\ngate:\n  human: 3\n").root.gate,
        Some(Gate { approvals: 3 })
    );
    assert_refused!("loop: a\ndone_when: x\ngate: robot\n");
    assert_refused!("loop: a\ndone_when: x\ngate: {human: 0}\n");
    assert_refused!("loop: a\ndone_when: x\ngate: {humans: 2}\n");
    assert_refused!("loop: a\ndone_when: x\ngate: {}\n");
}

#[test]
fn network_forms() {
    assert_eq!(ok("loop: a\ndone_when: x\n").root.network, Network::Open);
    assert_eq!(
        ok("loop: a\ndone_when: x\nnetwork: none\n").root.network,
        Network::None
    );
    assert_eq!(
        ok("loop: a\ndone_when: x\nnetwork: open\n").root.network,
        Network::Open
    );
    assert_eq!(
        ok("loop: a\ndone_when: x\nnetwork: [api.openai.com, \"registry.npmjs.org:443\", \"[::1]:8080\", 10.0.0.1]\n").root.network,
        Network::Hosts(vec![
            "api.openai.com".into(),
            "registry.npmjs.org:443".into(),
            "[::1]:8080".into(),
            "10.0.0.1".into()
        ])
    );
    assert_refused!("loop: a\ndone_when: x\nnetwork: closed\n");
    assert_refused!("loop: a\ndone_when: x\nnetwork: []\n");
    assert_refused!("loop: a\ndone_when: x\nnetwork: [\"https://x.com\", \"x.com:0\", \"a..b\"]\n");
}

#[test]
fn the_verifier_network_is_none_unless_the_mapping_form_opens_it() {
    let m = ok("loop: a\ndone_when: x\nnetwork: [pypi.org]\n");
    assert_eq!(m.root.verifier_network, Network::None);
    let m = ok("loop: a\ndone_when: x\nnetwork: {verifier: [pypi.org]}\n");
    assert_eq!(m.root.network, Network::Open);
    assert_eq!(
        m.root.verifier_network,
        Network::Hosts(vec!["pypi.org".into()])
    );
    // Each side is inherited on its own; the short form sets only the agent's.
    let m = ok("loop: a\ndone_when: x\nnetwork: {agent: none, verifier: open}\nloops:\n  - loop: b\n    done_when: y\n    network: [api.openai.com]\n  - loop: c\n    done_when: z\n    network: {verifier: none}\n");
    assert_eq!(m.root.network, Network::None);
    assert_eq!(m.root.verifier_network, Network::Open);
    let b = m.find_loop("b").unwrap();
    assert_eq!(b.network, Network::Hosts(vec!["api.openai.com".into()]));
    assert_eq!(b.verifier_network, Network::Open);
    let c = m.find_loop("c").unwrap();
    assert_eq!(c.network, Network::None);
    assert_eq!(c.verifier_network, Network::None);

    assert_refused!("loop: a\ndone_when: x\nnetwork: {exam: open, verifier: closed}\n");
    assert_refused!("loop: a\ndone_when: x\nnetwork: {agent: {verifier: open}}\n");
}

#[test]
fn tests_audit() {
    let m = ok("loop: a\ndone_when: x\ntests: {junit: target/junit, min: 10, expect_delta: -2, allow_skipped: 1}\n");
    assert_eq!(
        m.root.tests,
        Some(TestsAudit {
            junit: "target/junit".into(),
            min: Some(10),
            expect_delta: Some(-2),
            allow_skipped: 1
        })
    );
    let m = ok("loop: a\ndone_when: x\ntests: {junit: out}\n");
    assert_eq!(
        m.root.tests,
        Some(TestsAudit {
            junit: "out".into(),
            min: None,
            expect_delta: None,
            allow_skipped: 0
        })
    );
    assert_refused!("loop: a\ndone_when: x\ntests: {min: 3, mni: 4}\n");
    assert_refused!("loop: a\ndone_when: x\ntests: {junit: ../out}\n");
}

#[test]
fn resources() {
    let m = ok("loop: a\ndone_when: x\nresources: {memory: 512m, cpus: 1.5, pids: 256}\n");
    assert_eq!(
        m.root.resources,
        Resources {
            memory: Some(512 << 20),
            nano_cpus: Some(1_500_000_000),
            pids: Some(256),
            ..Resources::default()
        }
    );
    let m = ok("loop: a\ndone_when: x\nresources: {tree: 1g, files: 5000, file: 50m, tmp: 256m}\n");
    assert_eq!(
        m.root.resources,
        Resources {
            tree: Some(1 << 30),
            files: Some(5000),
            file: Some(50 << 20),
            tmp: Some(256 << 20),
            ..Resources::default()
        }
    );
    let e = err("loop: a\ndone_when: x\nresources: {file: 0}\n");
    assert!(e.contains("`resources.file`"), "{e}");
    assert!(e.contains("expected a size above zero"), "{e}");
    let e = err("loop: a\ndone_when: x\nresources: {files: lots}\n");
    assert!(e.contains("`resources.files`"), "{e}");
    let m = ok("loop: a\ndone_when: x\nresources: {memory: 2g, cpus: 2}\n");
    assert_eq!(m.root.resources.memory, Some(2 << 30));
    assert_eq!(m.root.resources.nano_cpus, Some(2_000_000_000));
    assert_eq!(
        ok("loop: a\ndone_when: x\nresources: {memory: 8388608}\n")
            .root
            .resources
            .memory,
        Some(8 << 20)
    );
    assert_refused!(
        "loop: a\ndone_when: x\nresources: {memory: 1k, cpus: 0, pids: -1, disk: 1g}\n"
    );
    assert_eq!(parse_memory("1.5g"), Some(3 << 29));
    assert_eq!(parse_memory("256MiB"), Some(256 << 20));
    assert_eq!(parse_memory("2x"), None);
    assert_eq!(parse_memory("99999999999t"), None);
}

#[test]
fn image_env_writes_judge_caches() {
    let m = ok("loop: a\ndone_when: x\nimage: rust:1\nenv: [OPENAI_API_KEY, _X1]\nwrites: [\"src/**\"]\njudge: no test was weakened\ncaches: [cargo-registry, npm.cache]\n");
    assert_eq!(m.root.image.as_deref(), Some("rust:1"));
    assert_eq!(m.root.env, ["OPENAI_API_KEY", "_X1"]);
    assert_eq!(m.root.writes, ["src/**"]);
    assert_eq!(m.root.judge.as_deref(), Some("no test was weakened"));
    assert_eq!(m.root.caches, ["cargo-registry", "npm.cache"]);
    assert_refused!("loop: a\ndone_when: x\nimage: \"my image\"\n");
    assert_refused!("loop: a\ndone_when: x\nenv: [1X]\n");
}

#[test]
fn env_by_side_reaches_the_exam_only_where_named() {
    let m = ok("loop: a\ndone_when: x\nenv: {agent: [KEY, PATH], verifier: [PATH, RUSTUP_HOME]}\nloops:\n  - loop: b\n    done_when: y\n    env: [OTHER]\n");
    assert_eq!(m.root.env, ["KEY", "PATH"]);
    assert_eq!(m.root.verifier_env, ["PATH", "RUSTUP_HOME"]);
    // A child's list replaces the agent's side; the exam's is inherited.
    assert_eq!(m.root.children[0].env, ["OTHER"]);
    assert_eq!(m.root.children[0].verifier_env, ["PATH", "RUSTUP_HOME"]);
    // The short form is the agent's alone.
    assert!(ok("loop: a\ndone_when: x\nenv: [KEY]\n")
        .root
        .verifier_env
        .is_empty());
    let e = err("loop: a\ndone_when: x\nenv: {exam: [PATH]}\n");
    assert!(e.contains("exam"), "{e}");
    let e = err("loop: a\ndone_when: x\nenv: {verifier: [\"A=1\"]}\n");
    assert!(e.contains("not a variable name"), "{e}");
}

#[test]
fn inheritance() {
    let m = ok(r#"
loop: root
agent: codex exec --sandbox workspace-write
image: rust:1
network: none
env: [OPENAI_API_KEY]
writes: ["src/**"]
resources: {memory: 2g, cpus: 2}
timeout: 30m
done_when: cargo test
task: the root task
budget: 30 runs
confirm: 2
gate: human
protected: ["tests/**"]
parallel: true
tests: {junit: target/junit}
judge: a rubric
caches: [deps]
check_every: 5m
loops:
  - loop: child
    done_when: cargo test -p child
    image: node:22
    resources: {cpus: 1}
    loops:
      - loop: grandchild
        done_when: "true"
        network: [api.openai.com]
        env: []
  - loop: sibling
    done_when: "false"
    agent: ./my-agent.sh
"#);
    let child = m.find_loop("child").unwrap();
    // Inherited: agent, image, network, env, writes, resources, timeout.
    assert_eq!(
        child.agent.as_deref(),
        Some("codex exec --sandbox workspace-write")
    );
    assert_eq!(child.image.as_deref(), Some("node:22"));
    assert_eq!(child.network, Network::None);
    assert_eq!(child.env, ["OPENAI_API_KEY"]);
    assert_eq!(child.writes, ["src/**"]);
    // Resources merge field by field: cpus overridden, memory inherited.
    assert_eq!(
        child.resources,
        Resources {
            memory: Some(2 << 30),
            nano_cpus: Some(1_000_000_000),
            ..Resources::default()
        }
    );
    assert_eq!(child.timeout, Some(Duration::from_secs(1800)));
    // Not inherited.
    assert_eq!(child.task, None);
    assert_eq!(child.budget, DEFAULT_BUDGET);
    assert_eq!(child.confirm, 1);
    assert_eq!(child.gate, None);
    assert!(child.protected.is_empty());
    assert!(!child.parallel);
    assert_eq!(child.tests, None);
    assert_eq!(child.judge, None);
    assert!(child.caches.is_empty());
    assert_eq!(child.check_every, DEFAULT_CHECK_EVERY);

    let grandchild = m.find_loop("grandchild").unwrap();
    assert_eq!(grandchild.image.as_deref(), Some("node:22"));
    assert_eq!(
        grandchild.network,
        Network::Hosts(vec!["api.openai.com".into()])
    );
    // An explicit empty list replaces the parent's rather than adding to it.
    assert!(grandchild.env.is_empty());
    assert_eq!(grandchild.resources.nano_cpus, Some(1_000_000_000));
    let sibling = m.find_loop("sibling").unwrap();
    assert_eq!(sibling.agent.as_deref(), Some("./my-agent.sh"));
    assert_eq!(sibling.image.as_deref(), Some("rust:1"));
    assert_eq!(m.all_protected(), ["tests/**"]);
}

// ---- schedules ------------------------------------------------------------

#[test]
fn schedules() {
    let m = ok("loop: a\ndone_when: x\nloops:\n  - loop: b\n    done_when: y\nschedules:\n  - run: a\n    at: \"0 9 * * 1-5\"\n  - {run: b, at: \"@hourly\"}\n");
    assert_eq!(m.schedules.len(), 2);
    assert_eq!(
        m.schedules[1],
        Schedule {
            run: "b".into(),
            at: "@hourly".into()
        }
    );
    let e =
        err("loop: react-19\ndone_when: x\nschedules:\n  - run: react-18\n    at: \"0 9 * * *\"\n");
    assert_eq!(
        e,
        "proctor.yaml:4:10: `schedules[0].run`: no loop has the id `react-18`; did you mean `react-19`?"
    );
    assert_refused!("loop: a\ndone_when: x\nschedules:\n  - run: a\n    at: \"0 9 * *\"\n  - run: a\n    at: \"61 * * * *\"\n  - run: a\n    cron: \"* * * * *\"\n  - nope\n");
}

#[test]
fn cron_syntax() {
    for good in [
        "* * * * *",
        "*/15 0-6 1,15 jan-mar MON-FRI",
        "0 0 * * 7",
        "5 4 * * sun",
        "@daily",
        "0 9 1-31/2 * *",
    ] {
        assert_eq!(check_cron(good), Ok(()), "{good}");
    }
    let mut refusals = Vec::new();
    for bad in [
        "",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "@reboot",
        "a * * * *",
        "1,,2 * * * *",
    ] {
        match check_cron(bad) {
            Ok(()) => panic!("{bad:?} should be refused"),
            Err(e) => refusals.push(format!("{bad:?}: {e}")),
        }
    }
    insta::assert_snapshot!(refusals.join("\n"));
}

// ---- config ---------------------------------------------------------------

#[test]
fn config_defaults_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load_config(dir.path()).unwrap(), Config::default());
    std::fs::create_dir(dir.path().join(".proctor")).unwrap();
    std::fs::write(dir.path().join(CONFIG_PATH), "# nothing yet\n").unwrap();
    assert_eq!(load_config(dir.path()).unwrap(), Config::default());
}

#[test]
fn config_reads_every_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".proctor")).unwrap();
    std::fs::write(
        dir.path().join(CONFIG_PATH),
        "engine: podman\nimage: proctor/agent:1\nmounts: [\"~/.config/codex\", /etc/ssl/certs]\njudge: claude -p\non_halt: notify-send proctor\nresources: {memory: 4g, pids: 512}\nruntime: runsc\ntimeout: 2h\negress_network: corp-egress\nenv: {PATH: \"~/.cargo/bin:/usr/bin\", CARGO_HOME: ~/.cargo}\n",
    )
    .unwrap();
    let c = load_config(dir.path()).unwrap();
    assert_eq!(
        c,
        Config {
            engine: Some("podman".into()),
            image: Some("proctor/agent:1".into()),
            mounts: vec!["~/.config/codex".into(), "/etc/ssl/certs".into()],
            env: vec![
                ("PATH".into(), "~/.cargo/bin:/usr/bin".into()),
                ("CARGO_HOME".into(), "~/.cargo".into()),
            ],
            judge: Some(crate::manifest::JudgeConfig::command("claude -p")),
            review: None,
            on_halt: Some("notify-send proctor".into()),
            resources: Resources {
                memory: Some(4 << 30),
                pids: Some(512),
                ..Resources::default()
            },
            runtime: Some("runsc".into()),
            timeout: Some(hours(2)),
            egress_network: Some("corp-egress".into()),
        }
    );
}

#[test]
fn config_judge_long_form_names_env_network_and_timeout() {
    let p = Path::new(".proctor/config.yaml");
    let c = parse_config(
        "judge:\n  command: sh judge.sh\n  env: [OPENAI_API_KEY]\n  network: [api.openai.com]\n  timeout: 90s\n",
        p,
    )
    .unwrap();
    assert_eq!(
        c.judge,
        Some(crate::manifest::JudgeConfig {
            command: "sh judge.sh".into(),
            env: vec!["OPENAI_API_KEY".into()],
            network: Network::Hosts(vec!["api.openai.com".into()]),
            timeout: Duration::from_secs(90),
        })
    );
    let short = parse_config("judge: claude -p\n", p)
        .unwrap()
        .judge
        .unwrap();
    assert_eq!(short.network, Network::None);
    let e = parse_config("judge: {env: [A=b], netwrok: open}\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown key `netwrok` in `judge`"), "{e}");
    assert!(e.contains("`A=b` is not a variable name"), "{e}");
    assert!(e.contains("the judge needs a `command`"), "{e}");
}

#[test]
fn config_review_is_a_command_or_a_judge_like_mapping_with_block() {
    let p = Path::new(".proctor/config.yaml");
    let short = parse_config("review: claude -p\n", p)
        .unwrap()
        .review
        .unwrap();
    assert_eq!(short.caged.command, "claude -p");
    assert_eq!(short.caged.network, Network::None);
    assert_eq!(short.caged.timeout, Duration::from_secs(600));
    assert!(!short.block);
    let long = parse_config(
        "review:\n  command: sh review.sh\n  env: [OPENAI_API_KEY]\n  network: open\n  timeout: 2m\n  block: true\n",
        p,
    )
    .unwrap()
    .review
    .unwrap();
    assert_eq!(
        long,
        crate::manifest::ReviewConfig {
            caged: crate::manifest::JudgeConfig {
                command: "sh review.sh".into(),
                env: vec!["OPENAI_API_KEY".into()],
                network: Network::Open,
                timeout: Duration::from_secs(120),
            },
            block: true,
        }
    );
    let e = parse_config("review: {block: maybe, blok: true}\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown key `blok` in `review`"), "{e}");
    assert!(
        e.contains("`review.block`: expected `true` or `false`"),
        "{e}"
    );
    assert!(e.contains("the review needs a `command`"), "{e}");
    // The judge's own keys stay its own.
    let e = parse_config("judge: {command: x, block: true}\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown key `block` in `judge`"), "{e}");
}

#[test]
fn a_lute_judge_as_done_when_is_the_loops_rubric() {
    let m = ok("loop: docs\ndone_when: \"judge: the README explains every flag\"\n");
    assert_eq!(m.root.judged_only(), Some("the README explains every flag"));
    assert_eq!(
        m.root.judge.as_deref(),
        Some("the README explains every flag")
    );
    assert_eq!(
        ok("loop: a\ndone_when: sh judge.sh\n").root.judged_only(),
        None
    );
    let e = err("loop: docs\ndone_when: \"judge: a\"\njudge: b\n");
    assert!(e.contains("already a judge's rubric"), "{e}");
    let e = err("loop: docs\ndone_when: \"judge:\"\n");
    assert!(e.contains("`judge:` needs a rubric"), "{e}");
}

#[test]
fn config_env_refuses_bad_names_and_proctors_own() {
    let p = Path::new(".proctor/config.yaml");
    let e = parse_config("env: {HOME: /x, \"A-B\": y, OK: \"\"}\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`HOME` is proctor's to set"), "{e}");
    assert!(e.contains("is not a variable name"), "{e}");
    assert!(e.contains("must not be empty"), "{e}");
    let e = parse_config("env: [PATH]\n", p).unwrap_err().to_string();
    assert!(e.contains("expected a mapping of variable names"), "{e}");
}

#[test]
fn config_did_you_mean() {
    let p = Path::new(".proctor/config.yaml");
    let e = parse_config(
        "imgae: x\nruntime: kata\nmounts: [relative/path]\nbudget: 3 runs\n",
        p,
    )
    .unwrap_err()
    .to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines[0],
        ".proctor/config.yaml:1:1: unknown key `imgae`; did you mean `image`?"
    );
    assert_eq!(
        lines[1],
        ".proctor/config.yaml:2:10: `runtime`: expected `runc`, `crun` or `runsc`, got `kata`"
    );
    assert_eq!(lines[2], ".proctor/config.yaml:3:10: `mounts[0]`: `relative/path` is not an absolute path; write `/...` or `~/...` (add `:rw` to let the agent write it)");
    assert_eq!(lines[3], ".proctor/config.yaml:4:1: unknown key `budget`; `budget` belongs in the manifest (`proctor.yaml`)");
    let e = parse_config("resources: {memroy: 1g}\n", p)
        .unwrap_err()
        .to_string();
    insta::assert_snapshot!(e);
    assert!(parse_config("- a\n", p).is_err());
}

#[test]
fn resources_fall_back_field_by_field() {
    let own = Resources {
        memory: Some(1),
        file: Some(4),
        ..Resources::default()
    };
    let base = Resources {
        memory: Some(2),
        nano_cpus: Some(3),
        file: Some(5),
        files: Some(6),
        ..Resources::default()
    };
    assert_eq!(
        own.or(base),
        Resources {
            memory: Some(1),
            nano_cpus: Some(3),
            file: Some(4),
            files: Some(6),
            ..Resources::default()
        }
    );
}

// ---- starter manifest -----------------------------------------------------

fn starter_in(files: &[(&str, &str)]) -> (tempfile::TempDir, String, Manifest) {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("My_Project");
    std::fs::create_dir(&root).unwrap();
    for (path, text) in files {
        let path = root.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }
    let text = starter_manifest(&root);
    let m = match parse(&text, Path::new("proctor.yaml")) {
        Ok(m) => m,
        Err(e) => panic!("starter did not parse:\n{e}\n---\n{text}"),
    };
    assert_eq!(m.root.id, "my-project");
    // A preset, not `codex exec --sandbox workspace-write`: Codex's own
    // sandbox cannot start in the container and the run waited on it.
    assert_eq!(m.root.agent.as_deref(), Some("codex"));
    assert!(!m.root.network_set);
    (parent, text, m)
}

#[test]
fn starter_for_cargo() {
    let (_d, text, m) = starter_in(&[("Cargo.toml", "[package]\n"), ("tests/it.rs", "")]);
    assert_eq!(
        m.root.done_when,
        "CARGO_TARGET_DIR=/cache/target cargo test"
    );
    assert_eq!(m.root.protected, ["tests/**"]);
    assert!(text.contains("codex, claude, mini-swe-agent"));
}

/// cargo's target directory is the exam's cache, pointed at by the exam's
/// own command: neither side's `env:` carries it (the agent has no
/// `/cache`), and only `caches:` (not inherited) mounts it.
#[test]
fn starter_for_cargo_keeps_the_exam_s_target_in_a_cache_the_agent_never_sees() {
    let (_d, text, m) = starter_in(&[("Cargo.toml", "[package]\n")]);
    assert_eq!(m.root.caches, ["target"]);
    assert!(m.root.env.is_empty() && m.root.verifier_env.is_empty());
    assert!(text.contains("\ncaches: [target]\n"), "{text}");
    // The commented `caches: [deps]` example is not offered beside it.
    assert!(!text.contains("# caches:"), "{text}");
}

/// A child that copies its parent's cached exam without `caches:` (not
/// inherited) is named, so `lint` can warn before its exam fails.
#[test]
fn an_exam_naming_a_cache_its_loop_does_not_mount_is_found() {
    let m = parse(
        "loop: root\ndone_when: \"CARGO_TARGET_DIR=/cache/target cargo test\"\ncaches: [target]\nloops:\n  - loop: child\n    done_when: \"CARGO_TARGET_DIR=/cache/target cargo test -p c && ls /var/cache/apt ~/.cache/x /cache/go-build/x /cache/\"\n",
        Path::new("proctor.yaml"),
    )
    .unwrap();
    assert!(m.root.unmounted_caches().is_empty());
    assert_eq!(
        m.root.children[0].unmounted_caches(),
        ["target", "go-build"]
    );
}

#[test]
fn starter_for_go_keeps_the_build_cache() {
    let (_d, _, m) = starter_in(&[("go.mod", "module x\n")]);
    assert_eq!(m.root.done_when, "GOCACHE=/cache/go-build go test ./...");
    assert_eq!(m.root.caches, ["go-build"]);
}

#[test]
fn starters_without_a_build_cache_write_none() {
    for files in [
        &[("package.json", r#"{"scripts": {"test": "vitest run"}}"#)][..],
        &[("pytest.ini", "[pytest]\n")][..],
        &[("Makefile", "test:\n\t./run\n")][..],
    ] {
        let (_d, text, m) = starter_in(files);
        assert!(m.root.caches.is_empty(), "{files:?}");
        assert!(!m.root.done_when.contains("/cache"), "{files:?}");
        assert!(text.contains("# caches: [deps]"), "{files:?}");
    }
}

#[test]
fn starter_for_npm() {
    let (_d, _, m) = starter_in(&[("package.json", r#"{"scripts": {"test": "vitest run"}}"#)]);
    assert_eq!(m.root.done_when, "npm test");
    // npm init's placeholder script fails by design; it is not an exam.
    let (_d, _, m) = starter_in(&[(
        "package.json",
        r#"{"scripts": {"test": "echo \"Error: no test specified\" && exit 1"}}"#,
    )]);
    assert_eq!(m.root.done_when, "sh test.sh");
}

#[test]
fn starter_for_pytest() {
    for files in [
        &[("pyproject.toml", "[project]\n")][..],
        &[("pytest.ini", "[pytest]\n")][..],
        &[("setup.cfg", "[metadata]\n")][..],
        &[("tests/test_x.py", "def test_x(): pass\n")][..],
    ] {
        let (_d, _, m) = starter_in(files);
        assert_eq!(m.root.done_when, "python3 -m pytest -q", "{files:?}");
    }
}

#[test]
fn starter_for_make() {
    let (_d, _, m) = starter_in(&[("Makefile", "build:\n\tcc x.c\n\ntest: build\n\t./run\n")]);
    assert_eq!(m.root.done_when, "make test");
    let (_d, _, m) = starter_in(&[("Makefile", "build:\n\tcc x.c\n")]);
    assert_eq!(m.root.done_when, "sh test.sh");
}

#[test]
fn starter_placeholder_says_to_replace_it() {
    let (_d, text, m) = starter_in(&[]);
    assert_eq!(m.root.done_when, "sh test.sh");
    insta::assert_snapshot!(text);
    assert!(m.root.protected.is_empty());
}

#[test]
fn starter_mentions_the_other_kinds_it_found() {
    let (_d, text, m) = starter_in(&[
        ("Cargo.toml", "[package]\n"),
        ("Makefile", "test:\n\tcargo test\n"),
    ]);
    assert_eq!(
        m.root.done_when,
        "CARGO_TARGET_DIR=/cache/target cargo test"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn starter_id_falls_back_to_main() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("___");
    std::fs::create_dir(&root).unwrap();
    let m = ok(&starter_manifest(&root));
    assert_eq!(m.root.id, "main");
}

// ---- the JSON Schema ------------------------------------------------------

fn schema() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/manifest.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn property_names(schema: &serde_json::Value, pointer: &str) -> Vec<String> {
    let props = schema
        .pointer(pointer)
        .and_then(|p| p.as_object())
        .unwrap_or_else(|| panic!("schema has no object at {pointer}"));
    let mut names: Vec<String> = props.keys().cloned().collect();
    names.sort();
    names
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    v.sort();
    v
}

#[test]
fn schema_keys_match_the_parser() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(
        property_names(&s, "/$defs/loop/properties"),
        sorted(LOOP_KEYS)
    );
    assert_eq!(property_names(&s, "/properties"), sorted(TOP_KEYS));
    assert_eq!(
        property_names(&s, "/$defs/schedule/properties"),
        sorted(SCHEDULE_KEYS)
    );
    assert_eq!(
        property_names(&s, "/$defs/tests/properties"),
        sorted(TESTS_KEYS)
    );
    assert_eq!(
        property_names(&s, "/$defs/resources/properties"),
        sorted(RESOURCES_KEYS)
    );
}

#[test]
fn windows_line_endings_and_a_byte_order_mark_are_fine() {
    let m = ok("\u{feff}loop: a\r\ndone_when: x\r\nbudget: 2 runs\r\n");
    assert_eq!(m.root.budget.runs, Some(2));
}

#[test]
fn anchors_and_merge_keys_share_settings() {
    let m = ok(r#"
loop: root
done_when: "true"
loops:
  - &common
    loop: one
    done_when: make one
    budget: 5 runs
    resources: {memory: 1g}
  - <<: *common
    loop: two
    done_when: make two
"#);
    let two = m.find_loop("two").unwrap();
    assert_eq!(two.done_when, "make two");
    assert_eq!(two.budget.runs, Some(5));
    assert_eq!(two.resources.memory, Some(1 << 30));
}

#[test]
fn out_of_range_numbers_are_refused_not_wrapped() {
    assert_refused!("loop: a\ndone_when: x\nconfirm: 99999999999999999999999\n");
    assert_refused!("loop: a\ndone_when: x\nconfirm: 4294967296\n");
    assert_eq!(
        ok("loop: a\ndone_when: x\nconfirm: 4294967295\n")
            .root
            .confirm,
        u32::MAX
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // Run where the stack is small, as on an async worker thread.
    let deep = |levels: usize| {
        let mut text = String::from("loop: l0\ndone_when: x\n");
        for depth in 1..=levels {
            let pad = "    ".repeat(depth - 1);
            text.push_str(&format!(
                "{pad}loops:\n{pad}  - loop: l{depth}\n{pad}    done_when: x\n"
            ));
        }
        text
    };
    let outcome = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let fine = parse(&deep(14), Path::new("proctor.yaml")).map(|m| m.loops().len());
            let e = parse(&deep(200), Path::new("proctor.yaml"))
                .unwrap_err()
                .to_string();
            let flow = parse(&"[".repeat(100_000), Path::new("proctor.yaml")).is_err();
            let mixed = parse(&"- {a: [".repeat(5_000), Path::new("proctor.yaml")).is_err();
            (fine, e, flow, mixed)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome.0, Ok(15));
    assert!(
        outcome
            .1
            .ends_with("invalid yaml: nested more than 32 levels deep"),
        "{}",
        outcome.1
    );
    assert!(outcome.2 && outcome.3);
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let e = err(&text);
    insta::assert_snapshot!(e);
}

#[test]
fn the_docs_merge_key_example_parses() {
    let m = ok("loop: r\ndone_when: x\nloops:\n  - &common {loop: one, done_when: make one, budget: 5 runs}\n  - {<<: *common, loop: two, done_when: make two}\n");
    let two = m.find_loop("two").unwrap();
    assert_eq!(
        (two.done_when.as_str(), two.budget.runs),
        ("make two", Some(5))
    );
}

#[test]
fn the_docs_examples_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/manifest.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    let first = blocks.first().expect("a yaml example");
    let m = ok(first);
    assert_eq!(m.schedules.len(), 1);
    let last = blocks.last().expect("a config example");
    let config = parse_config(last, Path::new(".proctor/config.yaml")).unwrap();
    assert_eq!(config.runtime.as_deref(), Some("runsc"));
}

// ---- The tree walk ----------------------------------------------------

#[test]
fn the_tree_walks_parents_first_or_children_first_with_depths() {
    let m = ok("loop: root\nagent: a\ndone_when: 'true'\nloops:\n  - loop: a\n    done_when: 'true'\n    loops:\n      - loop: a1\n        done_when: 'true'\n  - loop: b\n    done_when: 'true'\n");
    let ids = |order| -> Vec<(usize, String)> {
        m.root
            .walk_with_depth(order)
            .into_iter()
            .map(|(d, s)| (d, s.id.clone()))
            .collect()
    };
    let owned = |v: &[(usize, &str)]| -> Vec<(usize, String)> {
        v.iter().map(|(d, s)| (*d, s.to_string())).collect()
    };
    assert_eq!(
        ids(Order::ParentsFirst),
        owned(&[(0, "root"), (1, "a"), (2, "a1"), (1, "b")])
    );
    assert_eq!(
        ids(Order::ChildrenFirst),
        owned(&[(2, "a1"), (1, "a"), (1, "b"), (0, "root")])
    );
    assert_eq!(m.root.find("a1").map(|s| s.id.as_str()), Some("a1"));
    assert!(m.root.find("a").unwrap().find("b").is_none());
}
