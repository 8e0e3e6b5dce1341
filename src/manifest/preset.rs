//! Agent presets: `agent: codex`, `agent: claude`, `agent: mini-swe-agent`
//! (and `--agent` the same) stand for a command that works in the cage,
//! with the flags each CLI needs there, the host variables it reads and the
//! hosts it talks to.
//!
//! Each flag was found by running the real CLI in proctor's container
//! against a scripted model endpoint (`tests/it/presets.rs`):
//! - Codex's own sandbox (`--sandbox workspace-write`) cannot make a
//!   namespace inside the container and ends with exit 0 and no edits; the
//!   cage is the sandbox, so the preset turns Codex's off.
//!   `--skip-git-repo-check` guards against Codex not taking `/work` (a
//!   read-only `.git`, in a worktree naming a host path) for a trusted
//!   repository. Codex 0.171 ignores `OPENAI_BASE_URL`; the preset passes
//!   it as `-c openai_base_url=...`.
//! - Claude Code refuses `--dangerously-skip-permissions` as root unless
//!   `IS_SANDBOX=1` says it is sandboxed; `-p` logs only its final text
//!   unless `--output-format stream-json --verbose`.
//! - mini-swe-agent asks setup questions on a fresh `$HOME` unless
//!   `MSWEA_CONFIGURED` is set, stops at the first model it cannot price
//!   unless `MSWEA_COST_TRACKING=ignore_errors`, and takes the task as an
//!   argument (`--task`), not on stdin.
//!
//! Words after the preset's name are passed to the CLI as they are
//! (`agent: codex -m gpt-5-codex`). Any other command is run as written.
//! This module only describes; the engine applies it.

/// One agent CLI, as proctor runs it in the cage.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    /// The word under `agent:` (`codex`).
    pub name: &'static str,
    /// The program the command runs (`mini` for mini-swe-agent), which
    /// must be where the agent's image sees it.
    pub cli: &'static str,
    /// Shell text run with the prompt on stdin; `{args}` is where the
    /// user's extra words go.
    command: &'static str,
    /// Host variables passed to the agent when they are set: API keys, base
    /// URLs, model names.
    pub env: &'static [&'static str],
    /// Of [`Preset::env`], the variables that hold a base URL: when one is
    /// set, its host joins [`Preset::hosts`] on a default network.
    pub base_urls: &'static [&'static str],
    /// Variables the agent always gets (they make the CLI run unattended).
    pub set: &'static [(&'static str, &'static str)],
    /// The hosts the CLI needs: the agent's network when `network:` is not
    /// set.
    pub hosts: &'static [&'static str],
    /// Of [`Preset::env`], the credentials: with none set on the host the
    /// CLI cannot reach its model (Codex retried for 11 minutes).
    pub keys: &'static [&'static str],
    /// The folder under `$HOME` where the CLI keeps a login instead of a
    /// key (`~/.codex`), when a mount of it can stand in for a key.
    pub login: Option<&'static str>,
}

/// Every preset, in the order the docs list them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "codex",
        cli: "codex",
        command: "codex exec --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check ${OPENAI_BASE_URL:+-c openai_base_url=\"$OPENAI_BASE_URL\"}{args} -",
        env: &["OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL"],
        base_urls: &["OPENAI_BASE_URL"],
        set: &[],
        hosts: &["api.openai.com"],
        keys: &["OPENAI_API_KEY", "CODEX_API_KEY"],
        login: Some(".codex"),
    },
    Preset {
        name: "claude",
        cli: "claude",
        command: "claude -p --dangerously-skip-permissions --output-format stream-json --verbose{args}",
        env: &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_MODEL",
        ],
        base_urls: &["ANTHROPIC_BASE_URL"],
        set: &[
            ("IS_SANDBOX", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ],
        hosts: &["api.anthropic.com"],
        keys: &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
        ],
        login: Some(".claude"),
    },
    Preset {
        name: "mini-swe-agent",
        cli: "mini",
        command: "mini --yolo --exit-immediately{args} --task \"$(cat)\"",
        env: &[
            "MSWEA_MODEL_NAME",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
        ],
        base_urls: &["OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"],
        set: &[
            ("MSWEA_CONFIGURED", "true"),
            ("MSWEA_COST_TRACKING", "ignore_errors"),
            // litellm fetches its price list from GitHub at import unless
            // told to use the copy it ships.
            ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        ],
        hosts: &["api.openai.com", "api.anthropic.com"],
        keys: &["OPENAI_API_KEY", "ANTHROPIC_API_KEY"],
        login: None,
    },
];

/// An `agent:` value that names a preset, with the words after the name.
#[derive(Debug, PartialEq, Eq)]
pub struct Chosen {
    pub preset: &'static Preset,
    /// The user's extra words, as written (shell text).
    pub args: String,
}

impl Chosen {
    /// The shell command the agent's container runs.
    pub fn command(&self) -> String {
        let args = if self.args.is_empty() {
            String::new()
        } else {
            format!(" {}", self.args)
        };
        self.preset.command.replace("{args}", &args)
    }
}

/// The preset `agent` names: its first word is a preset's name and any
/// words after it are flags (`codex exec ...` is a command, not a preset).
pub fn chosen(agent: &str) -> Option<Chosen> {
    let agent = agent.trim();
    let (name, rest) = match agent.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (agent, ""),
    };
    if !rest.is_empty() && !rest.starts_with('-') {
        return None;
    }
    let preset = PRESETS.iter().find(|p| p.name == name)?;
    Some(Chosen {
        preset,
        args: rest.to_owned(),
    })
}

/// The command `agent` runs: a preset's, or `agent` as written.
pub fn command(agent: &str) -> String {
    match chosen(agent) {
        Some(c) => c.command(),
        None => agent.to_owned(),
    }
}

/// `host` or `host:port` of a base URL (`https://llm.example:8443/v1` →
/// `llm.example:8443`); `None` for text that is not a URL with a host.
pub fn url_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if scheme.is_empty() {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() || authority.starts_with('[') {
        return None;
    }
    Some(authority.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_a_variable_the_preset_passes() {
        for p in PRESETS {
            assert!(
                Chosen {
                    preset: p,
                    args: String::new()
                }
                .command()
                .starts_with(&format!("{} ", p.cli)),
                "{}",
                p.name
            );
            assert!(!p.keys.is_empty(), "{}", p.name);
            for key in p.keys {
                assert!(p.env.contains(key), "{}: {key}", p.name);
            }
        }
    }

    #[test]
    fn a_bare_name_is_the_preset() {
        let c = chosen("codex").unwrap();
        assert_eq!(c.preset.name, "codex");
        assert!(c.command().starts_with("codex exec --dangerously-bypass"));
        assert!(c.command().ends_with(" -"));
        assert!(!c.command().contains("{args}"));
    }

    #[test]
    fn flags_after_the_name_reach_the_cli() {
        let c = chosen("codex -m gpt-5-codex").unwrap();
        assert!(
            c.command().ends_with("\"} -m gpt-5-codex -"),
            "{}",
            c.command()
        );
        let c = chosen("mini-swe-agent  -m openai/x").unwrap();
        assert_eq!(
            c.command(),
            "mini --yolo --exit-immediately -m openai/x --task \"$(cat)\""
        );
    }

    #[test]
    fn a_command_is_not_a_preset() {
        assert_eq!(chosen("codex exec --sandbox workspace-write"), None);
        assert_eq!(chosen("sh fix.sh"), None);
        assert_eq!(chosen("claudette"), None);
        assert_eq!(command("sh fix.sh"), "sh fix.sh");
        assert!(command("claude").contains("--output-format stream-json"));
    }

    #[test]
    fn base_urls_name_their_host() {
        assert_eq!(
            url_host("http://10.0.0.2:8000/v1").as_deref(),
            Some("10.0.0.2:8000")
        );
        assert_eq!(
            url_host("https://user@LLM.example/v1").as_deref(),
            Some("llm.example")
        );
        assert_eq!(url_host("llm.example"), None);
        assert_eq!(url_host("http:///v1"), None);
    }

    #[test]
    fn every_base_url_variable_is_passed() {
        for p in PRESETS {
            for var in p.base_urls {
                assert!(p.env.contains(var), "{}: {var}", p.name);
            }
        }
    }
}
