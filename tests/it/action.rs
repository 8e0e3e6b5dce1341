//! `contrib/github-action/run.sh`: the exit contract mapped onto the job,
//! with a stand-in `proctor` that exits with a chosen code (the mapping is
//! the action's; a real run is `loop::`'s business).

use std::path::Path;

const RUN_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/github-action/run.sh");

/// Runs the action's step against a `proctor` that records its arguments
/// and exits `code`. Returns the step's exit code, its outputs and the
/// recorded arguments.
fn step(code: i32, env: &[(&str, &str)]) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("proctor");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" > \"{}/args\"\nexit {code}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = dir.path().join("output");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(RUN_SH)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROCTOR_ACTION_BIN", &fake)
        .env("GITHUB_OUTPUT", &output);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (
        out.status.code().unwrap(),
        read(&output),
        read(&dir.path().join("args")),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_action_maps_the_exit_contract_onto_the_job() {
    let (exit, outputs, args, _) = step(0, &[]);
    assert_eq!(exit, 0);
    assert!(
        outputs.contains("exit-code=0\n") && outputs.contains("outcome=closed\n"),
        "{outputs}"
    );
    assert_eq!(args.trim(), "run --plain");

    // Blocked fails by default, with proctor's code and an annotation.
    let (exit, outputs, _, stdout) = step(3, &[]);
    assert_eq!(exit, 3);
    assert!(outputs.contains("outcome=blocked"), "{outputs}");
    assert!(stdout.contains("::error::proctor: blocked"), "{stdout}");
    let (exit, _, _, stdout) = step(3, &[("PROCTOR_ACTION_ON_BLOCKED", "warn")]);
    assert_eq!(exit, 0);
    assert!(stdout.contains("::warning::proctor: blocked"), "{stdout}");

    // Gated warns by default; `fail` makes it red.
    let (exit, outputs, _, stdout) = step(4, &[]);
    assert_eq!(exit, 0);
    assert!(outputs.contains("outcome=gated"), "{outputs}");
    assert!(stdout.contains("::warning::proctor: gated"), "{stdout}");
    let (exit, _, _, _) = step(4, &[("PROCTOR_ACTION_ON_GATED", "fail")]);
    assert_eq!(exit, 4);
    let (exit, _, _, _) = step(4, &[("PROCTOR_ACTION_ON_GATED", "pass")]);
    assert_eq!(exit, 0);

    // Interrupted and anything else fail with proctor's code.
    let (exit, outputs, _, _) = step(130, &[]);
    assert_eq!((exit, outputs.contains("outcome=interrupted")), (130, true));
    let (exit, outputs, _, _) = step(2, &[]);
    assert_eq!((exit, outputs.contains("outcome=error")), (2, true));

    // The inputs reach proctor's command line; a bad policy is refused.
    let (_, _, args, _) = step(
        0,
        &[
            ("PROCTOR_ACTION_LOOP", "fix"),
            ("PROCTOR_ACTION_MANIFEST", "ci.yaml"),
            ("PROCTOR_ACTION_AGENT", "claude"),
        ],
    );
    assert_eq!(
        args.trim(),
        "run --plain --file ci.yaml --agent claude -- fix"
    );
    let (exit, _, args, stdout) = step(0, &[("PROCTOR_ACTION_ON_GATED", "maybe")]);
    assert_eq!((exit, args.as_str()), (1, ""));
    assert!(stdout.contains("fail, warn or pass"), "{stdout}");
}
