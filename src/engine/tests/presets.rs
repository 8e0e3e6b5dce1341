//! An agent named by a preset: the command, variables and network its
//! container gets, from `agent:` and from `--agent` alike.

use super::{make_done, Repo};
use crate::cage::fake::Scripted;
use crate::cage::{NetworkPolicy, Role};
use crate::engine::Ending;

fn agent_call(
    manifest: &str,
    tweak: impl FnOnce(&mut crate::engine::Settings),
) -> crate::cage::Invocation {
    let repo = Repo::new(manifest, &[]);
    let cage = repo.cage([
        Scripted::exam(1),
        Scripted::agent_edits(make_done),
        Scripted::exam(0),
    ]);
    let run = repo.run_with(&cage, tweak);
    assert_eq!(run.ending, Ending::Closed);
    let mut agents = cage.calls_of(Role::Agent);
    assert_eq!(agents.len(), 1);
    agents.remove(0)
}

fn env_of<'a>(inv: &'a crate::cage::Invocation, name: &str) -> Option<&'a str> {
    inv.env
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_preset_runs_its_command_with_its_variables_and_hosts() {
    let inv = agent_call(
        "loop: fix\nagent: claude --model opus\ndone_when: test -f done\nbudget: 2 runs\n",
        |s| {
            s.host_env
                .insert("ANTHROPIC_API_KEY".into(), "sk-test".into());
            s.host_env
                .insert("ANTHROPIC_BASE_URL".into(), "http://10.1.2.3:8000".into());
            s.host_env
                .insert("OPENAI_API_KEY".into(), "not-for-claude".into());
        },
    );
    assert_eq!(
        inv.command,
        "claude -p --dangerously-skip-permissions --output-format stream-json --verbose --model opus"
    );
    assert_eq!(env_of(&inv, "ANTHROPIC_API_KEY"), Some("sk-test"));
    assert_eq!(env_of(&inv, "IS_SANDBOX"), Some("1"));
    // Only the preset's own names: another CLI's key stays on the host.
    assert_eq!(env_of(&inv, "OPENAI_API_KEY"), None);
    assert_eq!(
        inv.network,
        NetworkPolicy::Hosts(vec!["api.anthropic.com".into(), "10.1.2.3:8000".into()])
    );
}

#[test]
fn a_network_the_manifest_sets_wins_over_the_presets_hosts() {
    let inv = agent_call(
        "loop: fix\nagent: codex\nnetwork: open\ndone_when: test -f done\nbudget: 2 runs\n",
        |_| {},
    );
    assert!(inv
        .command
        .starts_with("codex exec --dangerously-bypass-approvals-and-sandbox"));
    assert_eq!(inv.network, NetworkPolicy::Open);
}

#[test]
fn the_run_flag_names_a_preset_too() {
    let inv = agent_call(
        "loop: fix\ndone_when: test -f done\nbudget: 2 runs\n",
        |s| {
            s.default_agent = Some("mini-swe-agent".into());
        },
    );
    assert!(inv.command.starts_with("mini --yolo"), "{}", inv.command);
    assert_eq!(env_of(&inv, "MSWEA_CONFIGURED"), Some("true"));
    assert_eq!(
        inv.network,
        NetworkPolicy::Hosts(vec!["api.openai.com".into(), "api.anthropic.com".into()])
    );
}

#[test]
fn a_command_runs_as_written_on_the_default_network() {
    let inv = agent_call(
        "loop: fix\nagent: codex exec --full-auto\ndone_when: test -f done\nbudget: 2 runs\n",
        |_| {},
    );
    assert_eq!(inv.command, "codex exec --full-auto");
    assert_eq!(inv.network, NetworkPolicy::Open);
    assert_eq!(env_of(&inv, "IS_SANDBOX"), None);
}
