//! `proctor run --dry-run`: what a run would do first, worked out without
//! doing any of it. It reads the repository and the manifest only: it takes
//! no lock, makes no branch or worktree, writes no file, connects to no
//! container engine and spends nothing.

use std::path::Path;

use super::RunError;
use crate::engine::{fmt_secs, history, prompt};
use crate::git::{GitRepo, Oid};
use crate::manifest::{LoopSpec, Order};

/// Stands in the prompt for the exam output only a real check can produce.
pub const FAILURE_PLACEHOLDER: &str =
    "(the output of the failing first check of the exam goes here)";

/// One loop of the tree, as the dry run shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLoop {
    /// Nesting depth (the root is 0).
    pub depth: usize,
    pub id: String,
    /// The agent that would run (own, inherited or `--agent`'s default);
    /// `None` for a loop that only checks its children's work.
    pub agent: Option<String>,
    pub exam: String,
    /// `N runs`, a duration, both, or `no budget`.
    pub budget: String,
}

/// What `proctor run` would do first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The branch the run would work on, `proctor/<root>`.
    pub branch: String,
    /// Whether that branch exists already (the run would resume it).
    pub resumes: bool,
    /// The commit the first exam would examine.
    pub start: Oid,
    /// The loop tree, parents first.
    pub loops: Vec<PlannedLoop>,
    /// The loop whose exam runs first (depth-first, children first).
    pub first: String,
    /// Its exam command.
    pub first_exam: String,
    /// The agent that wakes if that exam fails.
    pub first_agent: String,
    /// The run number that agent would get.
    pub run: u32,
    /// The prompt it would read on stdin, with the exam's output
    /// replaced by [`FAILURE_PLACEHOLDER`].
    pub prompt: String,
}

/// Works out the first steps of a run of `root` in the repository at `dir`.
/// Refuses what the run itself would refuse before starting anything: no
/// commits, a loop without children and without an agent.
pub fn plan(dir: &Path, root: &LoopSpec, default_agent: Option<&str>) -> Result<DryRun, RunError> {
    let git = GitRepo::open(dir)?;
    let head = git.head()?.ok_or(RunError::NoCommits)?;
    let agent_of = |spec: &LoopSpec| spec.agent.clone().or(default_agent.map(str::to_string));
    let order = root.walk(Order::ChildrenFirst);
    if let Some(spec) = order
        .iter()
        .find(|spec| spec.children.is_empty() && agent_of(spec).is_none())
    {
        return Err(RunError::NoAgent(spec.id.clone()));
    }
    let branch = format!("proctor/{}", root.id);
    let tip = git.branch_tip(&branch)?;
    let start = tip.unwrap_or(head);
    let spent = match tip {
        Some(tip) => history::spent(&git, tip, history::base_of(&git, tip)?)?.runs,
        None => Default::default(),
    };
    let loops = root
        .walk_with_depth(Order::ParentsFirst)
        .into_iter()
        .map(|(depth, spec)| PlannedLoop {
            depth,
            id: spec.id.clone(),
            agent: agent_of(spec),
            exam: spec.done_when.clone(),
            budget: budget_text(spec),
        })
        .collect();
    // Children close first, so the first exam is the first leaf's (a
    // loop's own exam never runs before its children's).
    let first = order.first().copied().unwrap_or(root);
    let first_agent = agent_of(first).unwrap_or_default();
    let run = spent.get(&first.id).copied().unwrap_or(0) + 1;
    let journal_rel = format!(".proctor/journal/{}.md", first.id);
    let journal = git
        .read_blob_at(start, &journal_rel)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| format!("# Journal of loop `{}`\n\n", first.id));
    let prompt = prompt::build(&prompt::PromptParts {
        spec: first,
        run,
        cap: first.budget.runs,
        failure: FAILURE_PLACEHOLDER,
        answers: &[],
        journal_rel: &journal_rel,
        journal: &journal,
        notes: &[],
    });
    Ok(DryRun {
        branch,
        resumes: tip.is_some(),
        start,
        loops,
        first: first.id.clone(),
        first_exam: first.done_when.clone(),
        first_agent,
        run,
        prompt,
    })
}

fn budget_text(spec: &LoopSpec) -> String {
    let runs = spec.budget.runs.map(|n| {
        if n == 1 {
            "1 run".to_string()
        } else {
            format!("{n} runs")
        }
    });
    let wall = spec.budget.wall.map(|d| fmt_secs(d.as_secs_f64()));
    match (runs, wall) {
        (Some(r), Some(w)) => format!("{r} / {w}"),
        (Some(r), None) => r,
        (None, Some(w)) => w,
        (None, None) => "no budget".into(),
    }
}
