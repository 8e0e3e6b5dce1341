//! `proctor mcp` driven by an independent client: the official Python MCP
//! SDK (`mcp_client.py`) initializes, lists the tools, is refused an
//! approval, lints, starts a real run on Docker and follows it by polling
//! `watch` until it ends, and sends an unknown JSON-RPC method.

use crate::common;

use common::{socket, TestRepo};
use proctor::cage::EngineKind;

const CLIENT: &str = include_str!("mcp_client.py");
/// The interpreter `.ci/run` installs the SDK for (the system pip).
const PYTHON: &str = "/usr/bin/python3";

const FIX_CALC: &str = "add() { echo $(( $1 - $2 )); }\n";
const TEST_CALC: &str =
    ". ./calc.sh\n[ \"$(add 2 2)\" = 4 ] || { echo \"FAIL: add 2 2 printed $(add 2 2)\"; exit 1; }\n";

/// Fails the test (never skips) when the SDK is missing.
fn require_sdk() {
    let found = std::process::Command::new(PYTHON)
        .args(["-c", "import mcp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "the official Python MCP SDK is missing for {PYTHON}: \
         `/usr/bin/pip3 install --break-system-packages mcp` (or run `bash .ci/run`)"
    );
}

#[test]
fn an_mcp_client_starts_and_follows_a_run_and_is_refused_an_approval() {
    require_sdk();
    common::require_engine();
    let docker = socket(EngineKind::Docker);
    let repo = TestRepo::new()
        .engine(&docker)
        .file("calc.sh", FIX_CALC)
        .file("test.sh", TEST_CALC)
        .manifest("loop: fix\nagent: 'sed -i \"s/- \\$2/+ \\$2/\" calc.sh'\ndone_when: sh test.sh\nbudget: 2 runs\n")
        .commit("buggy");
    let script = repo.home.path().join("mcp_client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let out = std::process::Command::new(PYTHON)
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_proctor"))
        .arg(repo.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", repo.home.path())
        .env("PROCTOR_KEY_DIR", repo.home.path().join("keys"))
        .env("CI", "true")
        .env("DOCKER_HOST", &docker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the MCP client failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the client printed no JSON ({e}):\n{stderr}"));

    assert_eq!(seen["server_name"], "proctor");
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for tool in [
        "start_run",
        "status",
        "watch",
        "inbox",
        "runs",
        "audit",
        "lint",
        "stop",
        "answer",
    ] {
        assert!(tools.contains(&tool), "tool `{tool}` missing: {tools:?}");
    }
    // Never approve, however it is asked.
    for call in ["approve", "answer_approve"] {
        assert_eq!(seen[call]["is_error"], true, "{call}: {}", seen[call]);
        let text = seen[call]["text"].as_str().unwrap();
        assert!(
            text.contains("refused") && text.contains("approver key"),
            "{call}: {text}"
        );
    }
    assert!(
        !repo.read(".proctor/answers.jsonl").contains("approve"),
        "an approval was recorded"
    );
    // lint administered the (failing) exam.
    assert_eq!(seen["lint"]["exit"], 0, "{}", seen["lint"]);
    assert!(seen["lint"]["output"]
        .as_str()
        .unwrap()
        .contains("manifest valid"));
    // The run started in the background and was followed to its end.
    assert_eq!(seen["start"]["is_error"], false, "{}", seen["start"]);
    assert!(seen["start"]["structured"]["output"]
        .as_str()
        .unwrap()
        .contains("detached"));
    let watch = &seen["watch"];
    assert_eq!(watch["ended"], true, "the run never ended: {watch}");
    assert_eq!(watch["outcome"], "closed", "{watch}");
    assert_eq!(watch["exit"], 0, "{watch}");
    assert_eq!(watch["tree"]["word"], "done", "{watch}");
    assert!(repo
        .read_at("proctor/fix", "calc.sh")
        .unwrap()
        .contains("$1 + $2"));
    let runs = seen["runs"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "closed");
    assert!(seen["status"].as_str().unwrap().contains("done"));
    assert!(seen["audit"]["output"]
        .as_str()
        .unwrap()
        .contains("exam passed"));
    // Errors are errors, not crashes: the server still answered afterwards.
    assert!(
        seen["no_such_tool"]["text"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{}",
        seen["no_such_tool"]
    );
    assert_eq!(seen["inbox_after"]["cards"], serde_json::json!([]));
    let unknown = &seen["unknown_method"];
    assert_eq!(
        unknown["reply"]["error"]["code"], -32601,
        "an unknown method gets JSON-RPC's method-not-found: {unknown}"
    );
    assert_eq!(unknown["exit"], 0, "{unknown}");

    // The detached run let go of the repository and left nothing behind.
    repo.wait_until("the run releases its lock", |r| {
        proctor::state::lock::holder(&r.path().join(".proctor/lock")).is_none()
    });
    repo.assert_no_containers();
}
