//! `proctor attest`: a closed run's signed statement, verified by proctor
//! and by an independent DSSE implementation; tampering fails naming what.

use crate::common;

use base64::Engine as _;
use common::{require_engine, stderr, stdout, TestRepo};
use proctor::attest::dsse::{self, Envelope, IN_TOTO_PAYLOAD_TYPE};
use proctor::attest::key::AttestKey;
use proctor::cage::EngineKind;

const CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST: &str = ". ./calc.sh\n[ \"$(add 2 2)\" = 4 ] || { echo \"FAIL: add 2 2 printed $(add 2 2)\"; exit 1; }\necho ok\n";
const FIX: &str = "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh\n";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A repository whose run closed after one agent run.
fn closed_run() -> TestRepo {
    let repo = TestRepo::new()
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", FIX)
        .file(".proctor/config.yaml", "judge: \"cat >/dev/null; echo PASS\"\n")
        .manifest("loop: fix\ntask: make test.sh pass\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 3 runs\nprotected: [test.sh]\njudge: the fix is minimal\n")
        .commit("buggy");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo
}

fn envelope(repo: &TestRepo, file: &str) -> Envelope {
    serde_json::from_str(&repo.read(file)).unwrap()
}

fn payload(envelope: &Envelope) -> serde_json::Value {
    serde_json::from_slice(&b64().decode(&envelope.payload).unwrap()).unwrap()
}

fn write_envelope(repo: &TestRepo, file: &str, envelope: &Envelope) {
    repo.write(file, &serde_json::to_string_pretty(envelope).unwrap());
}

/// Verifies `file` with proctor: (exit code, stdout).
fn verify(repo: &TestRepo, file: &str) -> (Option<i32>, String) {
    let out = repo.proctor(&["attest", "--verify", file]);
    (out.status.code(), stdout(&out))
}

/// Verifies `file` with securesystemslib (tests/it/dsse_verify.py).
fn verify_independently(repo: &TestRepo, file: &str, key: &str) -> std::process::Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/dsse_verify.py");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(repo.path().join(file))
        .arg(repo.path().join(key))
        .output()
        .expect("python3 runs (apt-get install python3)");
    assert_ne!(
        out.status.code(),
        Some(2),
        "the independent DSSE verifier cannot run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `file` verifies with proctor, the event chain included, and with an
/// independent implementation (securesystemslib) under the exported public
/// key `attest.pub`; its subject is commit `tip`.
fn assert_verifies_both_ways(repo: &TestRepo, file: &str, tip: &str) {
    let (code, text) = verify(repo, file);
    assert_eq!(code, Some(0), "{text}");
    for check in ["signature", "subject", "commits", "events"] {
        assert!(text.contains(&format!("ok   {check}: ")), "{check}: {text}");
    }
    let out = verify_independently(repo, file, "attest.pub");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("https://in-toto.io/Statement/v1\nurn:proctor:verdict:v1\n{tip}\n")
    );
}

#[test]
fn a_closed_run_attests_and_verifies_and_any_tamper_fails() {
    require_engine();
    let repo = closed_run();
    let head = repo.log("proctor/fix");
    assert_eq!(head[0], "proctor(fix): close");
    let tip = git2::Repository::open(repo.path())
        .unwrap()
        .revparse_single("proctor/fix")
        .unwrap()
        .id()
        .to_string();
    let base = git2::Repository::open(repo.path())
        .unwrap()
        .revparse_single("master")
        .unwrap()
        .id()
        .to_string();

    let out = repo.proctor(&["key", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("-----BEGIN PUBLIC KEY-----\n"));
    repo.write("attest.pub", &stdout(&out));

    let out = repo.proctor(&["attest", "-o", "att.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let env = envelope(&repo, "att.json");
    assert_eq!(env.payload_type, IN_TOTO_PAYLOAD_TYPE);
    let statement = payload(&env);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["subject"][0]["digest"]["gitCommit"], tip.as_str());
    let p = &statement["predicate"];
    assert_eq!(p["base"], base.as_str());
    assert_eq!(p["head"], tip.as_str());
    let fix = &p["loops"][0];
    assert_eq!(fix["loop"], "fix");
    assert_eq!(fix["exam"], "sh test.sh");
    assert_eq!(fix["network"], "none");
    assert_eq!(fix["runs"], 1);
    assert_eq!(fix["materials"]["files"], 3, "{fix}"); // test.sh, proctor.yaml, the config
    assert!(
        fix["image_digest"].as_str().unwrap().starts_with("sha256:"),
        "{fix}"
    );
    let verdicts = fix["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.first().unwrap()["verdict"], "fail"); // the precheck on base
    assert_eq!(verdicts.last().unwrap()["verdict"], "pass");
    let judges = fix["judges"].as_array().unwrap();
    assert_eq!(judges.len(), 1, "{fix}");
    assert_eq!(judges[0]["pass"], true);
    assert_eq!(judges[0]["commit"], verdicts.last().unwrap()["commit"]);

    assert_verifies_both_ways(&repo, "att.json", &tip);

    // A changed byte in the statement: the signature fails, for both.
    let mut changed = env.clone();
    let text_payload = String::from_utf8(b64().decode(&env.payload).unwrap()).unwrap();
    changed.payload = b64().encode(text_payload.replace("sh test.sh", "sh test.sx"));
    write_envelope(&repo, "statement.json", &changed);
    let (code, text) = verify(&repo, "statement.json");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL signature"), "{text}");
    assert_eq!(
        verify_independently(&repo, "statement.json", "attest.pub")
            .status
            .code(),
        Some(1)
    );

    // A changed byte in the signature.
    let mut changed = env.clone();
    let mut sig = b64().decode(&env.signatures[0].sig).unwrap();
    sig[10] ^= 1;
    changed.signatures[0].sig = b64().encode(sig);
    write_envelope(&repo, "signature.json", &changed);
    let (code, text) = verify(&repo, "signature.json");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL signature"), "{text}");
    assert_eq!(
        verify_independently(&repo, "signature.json", "attest.pub")
            .status
            .code(),
        Some(1)
    );

    // A changed byte in the subject: unsigned, the signature fails; signed
    // anew with the host's key, the subject no longer matches the head.
    let mut changed = env.clone();
    let forged = text_payload.replace(
        &format!("\"gitCommit\":\"{tip}\""),
        &format!("\"gitCommit\":\"{base}\""),
    );
    assert_ne!(forged, text_payload);
    changed.payload = b64().encode(&forged);
    write_envelope(&repo, "subject.json", &changed);
    let (code, text) = verify(&repo, "subject.json");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL signature"), "{text}");
    let key = AttestKey::load_or_create(&repo.home.path().join("keys")).unwrap();
    write_envelope(
        &repo,
        "subject.json",
        &dsse::seal(&key, IN_TOTO_PAYLOAD_TYPE, forged.as_bytes()),
    );
    let (code, text) = verify(&repo, "subject.json");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("ok   signature"), "{text}");
    assert!(
        text.contains(&format!(
            "FAIL subject: the subject is commit {base}, the run closed on {tip}"
        )),
        "{text}"
    );

    // A changed byte in the run's events.
    let events = repo.read(".proctor/events.jsonl");
    let tampered = events.replacen("\"verdict\":\"fail\"", "\"verdict\":\"pass\"", 1);
    assert_ne!(tampered, events);
    repo.write(".proctor/events.jsonl", &tampered);
    let (code, text) = verify(&repo, "att.json");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("ok   signature"), "{text}");
    assert!(text.contains("FAIL events: "), "{text}");
    // Without the run's events here, the chain is not checked (and says so).
    repo.write(".proctor/events.jsonl", "");
    let (code, text) = verify(&repo, "att.json");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("skip events: not checked"), "{text}");
}

#[test]
fn a_run_that_did_not_close_is_not_attested() {
    require_engine();
    let repo = TestRepo::new()
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", "true\n")
        .manifest("loop: fix\ntask: make test.sh pass\nagent: sh agent.sh\ndone_when: sh test.sh\nbudget: 1 runs\n")
        .commit("buggy");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = repo.proctor(&["attest", "-o", "att.json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("did not close: it ended blocked (exit 3)"),
        "{err}"
    );
    assert!(!repo.exists("att.json"));
}

/// `--rerun` on `engine`: the recorded verdict reproduces; once the exam's
/// file outside the commit (in a verifier cache) is gone, it does not.
fn rerun_reproduces_and_catches_an_exam_that_no_longer_holds(engine: EngineKind) {
    require_engine();
    let repo = TestRepo::new()
        .engine(&common::socket(engine))
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", FIX)
        .manifest("loop: fix\ntask: make test.sh pass\nagent: sh agent.sh\ndone_when: sh test.sh && test -f /cache/data/ok\nbudget: 3 runs\ncaches: [data]\n")
        .commit("buggy");
    // Outside every commit: the exam passes only while this file exists.
    repo.write(".proctor/caches/data/ok", "");
    let out = repo.proctor(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = repo.proctor(&["attest", "-o", "att.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = repo.proctor(&["attest", "--verify", "att.json", "--rerun"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("ok   rerun `fix`: `sh test.sh && test -f /cache/data/ok` on "),
        "{text}"
    );
    assert!(
        text.contains("gave pass (exit 0) again, in image sha256:"),
        "{text}"
    );
    assert!(
        text.contains("reproduced: every recorded verdict holds"),
        "{text}"
    );

    std::fs::remove_file(repo.path().join(".proctor/caches/data/ok")).unwrap();
    let out = repo.proctor(&["attest", "--verify", "att.json", "--rerun"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("FAIL rerun `fix`: `sh test.sh && test -f /cache/data/ok` on "),
        "{text}"
    );
    assert!(
        text.contains(" gave fail (exit 1); the attestation recorded pass (exit 0)"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("a recorded verdict does not reproduce"),
        "{}",
        stderr(&out)
    );
    repo.assert_no_containers();
}

common::on_both_engines!(rerun_reproduces_and_catches_an_exam_that_no_longer_holds);

/// A `proctor once` run is a run: its loop (from flags, no manifest file)
/// is recorded when it starts, so it attests, verifies (proctor and the
/// independent library) and re-runs like a manifest's run.
#[test]
fn a_closed_once_run_attests_verifies_and_reruns() {
    require_engine();
    let repo = TestRepo::new()
        .file("calc.sh", CALC)
        .file("test.sh", TEST)
        .file("agent.sh", FIX)
        .commit("buggy");
    let out = repo.proctor(&[
        "once",
        "--until",
        "sh test.sh",
        "--agent",
        "sh agent.sh",
        "--budget",
        "3 runs",
        "--",
        "make test.sh pass",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tip = git2::Repository::open(repo.path())
        .unwrap()
        .revparse_single("proctor/once")
        .unwrap()
        .id()
        .to_string();
    let out = repo.proctor(&["key", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo.write("attest.pub", &stdout(&out));

    let out = repo.proctor(&["attest", "-o", "att.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let statement = payload(&envelope(&repo, "att.json"));
    assert_eq!(statement["subject"][0]["digest"]["gitCommit"], tip.as_str());
    let p = &statement["predicate"];
    assert_eq!(p["manifest"], "proctor once");
    // The loop as the flags made it, less the agent command.
    let once: serde_json::Value = serde_json::from_str(p["once"].as_str().unwrap()).unwrap();
    assert_eq!(once["loop"], "once", "{once}");
    assert_eq!(once["task"], "make test.sh pass", "{once}");
    assert_eq!(once["done_when"], "sh test.sh", "{once}");
    assert_eq!(once["budget"], "3 runs", "{once}");
    assert_eq!(once["protected"], serde_json::json!(["test.sh"]), "{once}");
    assert!(once.get("agent").is_none(), "{once}");
    assert_eq!(
        p["manifest_sha256"],
        hex::encode(proctor::protect::fsafe::sha256(
            p["once"].as_str().unwrap().as_bytes()
        ))
    );
    let fix = &p["loops"][0];
    assert_eq!(fix["loop"], "once");
    assert_eq!(fix["exam"], "sh test.sh");
    assert_eq!(fix["network"], "none");
    assert_eq!(fix["runs"], 1);
    assert_eq!(fix["materials"]["files"], 1, "{fix}"); // test.sh, named by --until
    assert_eq!(
        fix["verdicts"].as_array().unwrap().last().unwrap()["verdict"],
        "pass"
    );

    assert_verifies_both_ways(&repo, "att.json", &tip);

    let out = repo.proctor(&["attest", "--verify", "att.json", "--rerun"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("ok   rerun `once`: `sh test.sh` on "),
        "{text}"
    );
    assert!(
        text.contains("reproduced: every recorded verdict holds"),
        "{text}"
    );
    repo.assert_no_containers();
}
