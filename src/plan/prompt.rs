//! What `proctor plan` tells its drafting agent and its critic.

/// The proposal file the drafting agent writes.
pub const PROPOSAL: &str = "proctor.proposed.yaml";
/// The dependency graph the drafting agent may write under `--dag`.
pub const GRAPH: &str = "proctor.plan.yaml";

/// A short guide to the manifest, for the drafting agent and the critic.
pub const GUIDE: &str = "\
## The manifest (proctor.yaml), in short

proctor keeps an agent working on the repository until an exam passes. A
manifest is a tree of loops; each loop is:

- `loop`: the id (kebab-case); work happens on branch `proctor/<id>`.
- `task`: what the agent should do (it reads this on stdin).
- `done_when`: the exam, a shell command run in a fresh container on the
  committed tree: exit 0 = done, 75 = not yet (needs a time budget), anything
  else = not done. It must FAIL on the repository as it is now and pass only
  when the goal is reached; it must test the goal's behaviour, not that a
  file or word exists.
- `budget`: `N runs`, a duration (`30m`, `8h`), or both (`10 runs / 2h`).
- `protected`: globs of the exam's materials (test files, the exam's
  scripts, fixtures): the agent's edits to them are undone. Everything the
  exam reads to decide its verdict belongs here.
- `loops`: child loops; children close before their parent, whose exam then
  checks the whole. `parallel: true` runs the direct children at once (each
  in its own branch, merged as they close): only for independent children.
- optional: `agent` (a command or preset such as `codex`), `image`,
  `timeout`, `network`, `env`, `writes`, `tests: {junit, min}`, `judge`,
  `check_every`, `confirm`.

Keep each loop small enough for one agent run to make real progress; split
a large goal into child loops, each with its own exam.
";

/// The `--dag` addition to the drafter's instructions.
pub const GRAPH_GUIDE: &str = "\
## A dependency graph instead (--dag)

You may write `proctor.plan.yaml` instead of `proctor.proposed.yaml`: the
root loop's keys at the top level (`loop`, `task`, `done_when`, `budget`,
...) and `nodes:`, a list of loops (the same keys, no `loops:`), each with
`depends_on: [ids of the nodes that must close first]`. proctor turns the
graph into a manifest (nesting for order, `parallel: true` for independent
siblings). A cycle or a dependency on an unknown node is sent back.
";

/// The drafting agent's prompt for one round.
pub fn draft(
    goal: &str,
    briefing: &str,
    dag: bool,
    round: u32,
    rounds: u32,
    previous: Option<&str>,
    sent_back: &[String],
) -> String {
    let mut out = String::new();
    out.push_str("You are drafting a proctor manifest for this goal:\n\n");
    out.push_str(goal.trim());
    out.push_str("\n\n");
    out.push_str(&format!(
        "Write your proposal to `{PROPOSAL}` in the current directory (/work). \
         It is the only file you can write: the rest of the tree is read-only, \
         and nothing else you change is kept. Do not change the code: only \
         propose the manifest.\n\n"
    ));
    out.push_str(GUIDE);
    if dag {
        out.push('\n');
        out.push_str(GRAPH_GUIDE);
    }
    out.push_str("\n# The repository\n\n");
    out.push_str(briefing);
    if round > 1 {
        out.push_str(&format!(
            "\n# Round {round} of {rounds}: your last proposal was sent back\n\n"
        ));
        for reason in sent_back {
            out.push_str(&format!("- {reason}\n"));
        }
        if let Some(previous) = previous {
            out.push_str(&format!(
                "\nYour last proposal (it is in `{PROPOSAL}` now; fix it there):\n\n```yaml\n{}\n```\n",
                previous.trim_end()
            ));
        }
    }
    out
}

/// The critic's prompt.
pub fn critic(goal: &str, briefing: &str, proposal: &str, checked: &[String]) -> String {
    let mut out = String::new();
    out.push_str(
        "You are the critic of a proposed proctor manifest. Review it; change \
         nothing (the tree is read-only). Look for:\n\
         - vacuous exams: they pass without the goal being reached (`true`, \
         `exit 0`, `ls`, a grep for a word, a test that asserts nothing);\n\
         - self-graded exams: the agent could write what decides the verdict \
         (a file the exam only reads, tests it may edit);\n\
         - exam files (tests, scripts, fixtures the exam reads) not listed \
         under `protected:`;\n\
         - missing or unbounded budgets;\n\
         - loops too large for one agent run (they should be split into \
         child loops, each with its own exam).\n\n\
         Answer with one line per problem, each beginning with FINDING: and \
         then the problem and how to fix it; or, when there is no problem, a \
         line with the single word APPROVED.\n\n",
    );
    out.push_str("# The goal\n\n");
    out.push_str(goal.trim());
    out.push_str("\n\n# The proposal\n\n```yaml\n");
    out.push_str(proposal.trim_end());
    out.push_str("\n```\n\n# What proctor checked itself\n\n");
    for line in checked {
        out.push_str(&format!("- {line}\n"));
    }
    out.push('\n');
    out.push_str(GUIDE);
    out.push_str("\n# The repository\n\n");
    out.push_str(briefing);
    out
}

/// What a critic answered: its findings, and whether it approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub findings: Vec<String>,
    pub approved: bool,
}

/// Reads a critic's output: every line that begins with `FINDING:` is a
/// finding; a line that is exactly `APPROVED` approves when there is no
/// finding. An answer with neither is no approval.
pub fn read_review(output: &str) -> Review {
    let mut findings = Vec::new();
    let mut approved = false;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("FINDING:") {
            let rest = rest.trim();
            if !rest.is_empty() && !findings.iter().any(|f| f == rest) {
                findings.push(rest.to_string());
            }
        } else if line == "APPROVED" {
            approved = true;
        }
    }
    Review {
        approved: approved && findings.is_empty(),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_with_findings_is_no_approval() {
        let r = read_review("thinking...\nFINDING: the exam is `true`\nAPPROVED\n");
        assert_eq!(r.findings, vec!["the exam is `true`".to_string()]);
        assert!(!r.approved);
        assert!(read_review("APPROVED\n").approved);
        let silent = read_review("looks fine to me\n");
        assert!(!silent.approved && silent.findings.is_empty());
    }
}
