//! `proctor plan`: from a goal to a proposed manifest. A drafting agent,
//! caged like any agent on a read-only copy of the committed tree, writes
//! `proctor.proposed.yaml` (or, with `--dag`, a graph proctor turns into
//! one); proctor checks the proposal itself (it parses and lints; each exam
//! runs once on HEAD in a verifier container and must fail there, and be
//! able to run); a critic, caged and read-only, reviews what proctor cannot
//! judge; what either finds goes back to the drafter, for at most N rounds.
//!
//! Nothing here decides that work is done, and nothing runs the proposal:
//! the user reads it and renames it (or passes `--accept`). Like the engine,
//! this module never prints: it reports each [`Step`] to the caller.

use std::path::{Path, PathBuf};

use crate::cage::{Cage, LABEL_RUN};
use crate::engine::runnable::{self, Class};
use crate::engine::{fmt_secs, Engine, EngineError, PlannerRun, Settings};
use crate::git::{GitError, GitRepo, Oid};
use crate::leftovers::ScratchDir;
use crate::manifest::{self, Config, LoopSpec, Manifest, Order};
use crate::protect;
use crate::state::key::{random_id, AnswerKey};
use crate::state::{self, Paths};

pub mod briefing;
pub mod dag;
pub mod prompt;

pub use prompt::{GRAPH, PROPOSAL};

/// The largest proposal proctor reads back.
const PROPOSAL_CAP: u64 = 256 * 1024;

/// What to plan.
#[derive(Debug, Clone)]
pub struct Request {
    pub goal: String,
    /// The drafting agent (a command or a preset).
    pub agent: String,
    /// The critic (default: the drafting agent).
    pub critic: Option<String>,
    /// The drafter may answer with a graph (`proctor.plan.yaml`).
    pub dag: bool,
    /// Rounds at most (>= 1).
    pub rounds: u32,
    /// Per-container time limit for the drafter and the critic.
    pub timeout: Option<std::time::Duration>,
}

/// What happened, as it happens (the caller renders it).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Drafting {
        round: u32,
        of: u32,
    },
    Drafted {
        round: u32,
        exit: i64,
        secs: f64,
        log: String,
    },
    /// The drafter answered with a graph, turned into a manifest.
    FromGraph {
        round: u32,
    },
    /// proctor's own checks of this round's proposal, one line each.
    Checked {
        round: u32,
        lines: Vec<String>,
    },
    Critiquing {
        round: u32,
    },
    Critiqued {
        round: u32,
        findings: Vec<String>,
        approved: bool,
        log: String,
    },
    /// What goes back to the drafter.
    SentBack {
        round: u32,
        reasons: Vec<String>,
    },
}

/// How planning ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Checked by proctor and approved by the critic.
    pub accepted: bool,
    pub rounds: u32,
    /// The last proposal's manifest text (`None`: no round produced one).
    pub proposal: Option<String>,
    /// The last graph the drafter wrote (under `--dag`).
    pub graph: Option<String>,
    /// What proctor checked on the last proposal, one line each.
    pub checked: Vec<String>,
    /// What proctor still finds wrong with it.
    pub problems: Vec<String>,
    /// The critic's last findings.
    pub critic_notes: Vec<String>,
    /// Whether the critic reviewed the last proposal.
    pub critic_reviewed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("cannot prepare `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the repository has no commits yet")]
    NoCommits,
    #[error("the {role} could not run: exit {exit}{why} (log: {log})")]
    AgentFailed {
        role: &'static str,
        exit: i64,
        why: String,
        log: String,
    },
}

impl crate::exit_codes::DomainError for PlanError {
    fn is_users_to_fix(&self) -> bool {
        match self {
            PlanError::Engine(e) => e.is_users_to_fix(),
            PlanError::Git(e) => e.is_users_to_fix(),
            PlanError::Manifest(_) | PlanError::NoCommits | PlanError::AgentFailed { .. } => true,
            PlanError::Io { .. } => false,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            PlanError::Engine(e) => e.hint(),
            PlanError::Git(e) => e.hint(),
            PlanError::NoCommits => Some("commit once, then plan".into()),
            PlanError::AgentFailed { .. } => Some(
                "check the command with `proctor once` or in the image; its whole output is in the log".into(),
            ),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PlanError + '_ {
    move |source| PlanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A loop for a planner container: `id`, the agent, the timeout.
fn planner_spec(
    id: &str,
    agent: &str,
    timeout: Option<std::time::Duration>,
) -> Result<LoopSpec, PlanError> {
    let mut doc = serde_json::json!({
        "loop": id,
        "task": "plan",
        "agent": agent,
        "done_when": "true",
    });
    if let Some(t) = timeout {
        doc["timeout"] = serde_json::json!(format!("{}s", t.as_secs().max(1)));
    }
    let text = doc.to_string();
    Ok(manifest::parse(&text, Path::new("proctor plan"))?.root)
}

/// Plans `req` in the repository of `git` with the engine behind `cage`.
pub async fn plan<C: Cage>(
    cage: &C,
    git: &GitRepo,
    config: &Config,
    key: &AnswerKey,
    req: &Request,
    observe: &mut dyn FnMut(Step),
) -> Result<Outcome, PlanError> {
    let head = git.head()?.ok_or(PlanError::NoCommits)?;
    let paths = Paths::new(git.root());
    git.ensure_excluded(&state::EXCLUDE_PATTERNS)?;
    let tmp = paths.state.join("tmp");
    state::ensure_dir(&tmp).map_err(io_err(&tmp))?;
    // A copy of the committed tree: the drafter reads it, never the
    // checkout with its ignored files, and nothing it does there is kept.
    let scratch = ScratchDir::new_in(&tmp, "plan-").map_err(io_err(&tmp))?;
    let tree = scratch.path().join("tree");
    git.export_tree(head, &tree)?;
    let briefing = briefing::build(git, head, &tree);
    let run_id = format!("plan-{}", random_id(3));
    let drafter = planner_spec("plan-draft", &req.agent, req.timeout)?;
    let critic = planner_spec(
        "plan-critic",
        req.critic.as_deref().unwrap_or(&req.agent),
        req.timeout,
    )?;

    let (host_env, _) = crate::run::host_env(&drafter, None);
    let (critic_env, _) = crate::run::host_env(&critic, None);
    let mut settings = Settings::new(
        run_id.clone(),
        git.root(),
        config,
        protect::Rules::new(Vec::new(), None),
    );
    settings.host_env = host_env.into_iter().chain(critic_env).collect();
    let mut ignore = |_e| {};
    let mut engine = Engine::new(cage, git, key, settings.clone(), head, &mut ignore)?;

    let result = rounds(
        cage,
        git,
        key,
        req,
        observe,
        &mut engine,
        &settings,
        head,
        &tree,
        &briefing,
        &drafter,
        &critic,
    )
    .await;
    // The planners' and exams' containers are gone; this removes any
    // egress network they used.
    let _ = cage.remove_labelled(&[(LABEL_RUN, run_id.as_str())]).await;
    drop(scratch);
    result
}

#[allow(clippy::too_many_arguments)]
async fn rounds<C: Cage>(
    cage: &C,
    git: &GitRepo,
    key: &AnswerKey,
    req: &Request,
    observe: &mut dyn FnMut(Step),
    engine: &mut Engine<'_, C>,
    settings: &Settings,
    head: Oid,
    tree: &Path,
    briefing: &str,
    drafter: &LoopSpec,
    critic: &LoopSpec,
) -> Result<Outcome, PlanError> {
    let rounds = req.rounds.max(1);
    let mut out = Outcome {
        accepted: false,
        rounds: 0,
        proposal: None,
        graph: None,
        checked: Vec::new(),
        problems: Vec::new(),
        critic_notes: Vec::new(),
        critic_reviewed: false,
    };
    let mut previous: Option<String> = None;
    let mut sent_back: Vec<String> = Vec::new();
    for round in 1..=rounds {
        out.rounds = round;
        observe(Step::Drafting { round, of: rounds });
        // The files the drafter may write, as the last round left them.
        let proposal_path = tree.join(PROPOSAL);
        let graph_path = tree.join(GRAPH);
        state::write_file(
            &proposal_path,
            previous.clone().unwrap_or_default().as_bytes(),
        )
        .map_err(io_err(&proposal_path))?;
        let mut writable = vec![PROPOSAL];
        if req.dag {
            let graph_seed = out.graph.clone().unwrap_or_default();
            state::write_file(&graph_path, graph_seed.as_bytes()).map_err(io_err(&graph_path))?;
            writable.push(GRAPH);
        }
        let text = prompt::draft(
            &req.goal,
            briefing,
            req.dag,
            round,
            rounds,
            previous.as_deref(),
            &sent_back,
        );
        let ran = engine
            .run_planner(
                drafter,
                tree,
                &writable,
                text,
                &format!("plan.round{round}.draft.log"),
            )
            .await?;
        observe(Step::Drafted {
            round,
            exit: ran.exit,
            secs: ran.secs,
            log: ran.log.clone(),
        });
        refuse_unrunnable("drafting agent", &ran)?;

        // What the drafter wrote.
        let mut reasons = Vec::new();
        let written = read_capped(&proposal_path);
        let graph = if req.dag {
            read_capped(&graph_path)
        } else {
            None
        };
        let text = match (graph, written) {
            (Some(Err(why)), _) | (None, Some(Err(why))) => {
                reasons.push(why);
                None
            }
            (Some(Ok(graph)), _) => {
                out.graph = Some(graph.clone());
                observe(Step::FromGraph { round });
                match dag::to_manifest(&graph) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        reasons.push(e.to_string());
                        None
                    }
                }
            }
            (None, Some(Ok(text))) => Some(text),
            (None, None) => {
                reasons.push(if req.dag {
                    format!("you wrote neither `{PROPOSAL}` nor `{GRAPH}`")
                } else {
                    format!("you wrote no proposal: `{PROPOSAL}` is empty")
                });
                None
            }
        };
        if let Some(text) = &text {
            out.proposal = Some(text.clone());
            previous = Some(text.clone());
        }
        out.checked.clear();
        out.critic_notes.clear();
        out.critic_reviewed = false;
        if let Some(text) = &text {
            let (checked, problems) = check(cage, git, key, settings, head, tree, text).await?;
            out.checked = checked;
            reasons.extend(problems);
        }
        out.problems = reasons.clone();
        observe(Step::Checked {
            round,
            lines: out
                .checked
                .iter()
                .cloned()
                .chain(out.problems.iter().map(|p| format!("sent back: {p}")))
                .collect(),
        });
        if reasons.is_empty() {
            if let Some(text) = &text {
                observe(Step::Critiquing { round });
                let ask = prompt::critic(&req.goal, briefing, text, &out.checked);
                let ran = engine
                    .run_planner(
                        critic,
                        tree,
                        &[],
                        ask,
                        &format!("plan.round{round}.critic.log"),
                    )
                    .await?;
                refuse_unrunnable("critic", &ran)?;
                let review = prompt::read_review(&ran.output);
                out.critic_reviewed = true;
                out.critic_notes = review.findings.clone();
                observe(Step::Critiqued {
                    round,
                    findings: review.findings.clone(),
                    approved: review.approved,
                    log: ran.log.clone(),
                });
                if review.approved {
                    out.accepted = true;
                    return Ok(out);
                }
                if review.findings.is_empty() {
                    reasons.push(format!(
                        "the critic neither approved nor named a problem (its answer: {})",
                        ran.log
                    ));
                } else {
                    reasons.extend(review.findings.iter().map(|f| format!("the critic: {f}")));
                }
            }
        }
        if round < rounds {
            observe(Step::SentBack {
                round,
                reasons: reasons.clone(),
            });
        }
        sent_back = reasons;
    }
    Ok(out)
}

/// A planner whose command is not there (126/127 with the shell's words)
/// ends planning: another round would not find it either.
fn refuse_unrunnable(role: &'static str, ran: &PlannerRun) -> Result<(), PlanError> {
    if ran.timed_out {
        return Ok(());
    }
    if let Some(why) = runnable::cannot_run(ran.exit, &ran.output) {
        return Err(PlanError::AgentFailed {
            role,
            exit: ran.exit,
            why: format!(": {why}"),
            log: ran.log.clone(),
        });
    }
    Ok(())
}

/// The file at `path` when it has content: `Some(Err)` when it cannot be
/// used (too big, not UTF-8), `None` when it is empty or missing.
fn read_capped(path: &Path) -> Option<Result<String, String>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return Some(Err(format!("`{name}` is not a regular file")));
    }
    if meta.len() > PROPOSAL_CAP {
        return Some(Err(format!(
            "`{name}` is {} bytes; a proposal is at most {PROPOSAL_CAP}",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).ok()?;
    match String::from_utf8(bytes) {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(Ok(text)),
        Err(_) => Some(Err(format!("`{name}` is not UTF-8 text"))),
    }
}

/// proctor's own checks of a proposal: it parses and lints; each exam runs
/// once on HEAD and must fail there (not pass, not be unable to run, not
/// answer 75 without a time budget); the files each exam names are
/// protected. Returns (what was checked, what is wrong).
#[allow(clippy::too_many_arguments)]
async fn check<C: Cage>(
    cage: &C,
    git: &GitRepo,
    key: &AnswerKey,
    settings: &Settings,
    head: Oid,
    tree: &Path,
    text: &str,
) -> Result<(Vec<String>, Vec<String>), PlanError> {
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    let manifest = match manifest::parse(text, Path::new(PROPOSAL)) {
        Ok(m) => m,
        Err(e) => {
            problems.extend(e.to_string().lines().map(str::to_string));
            return Ok((checked, problems));
        }
    };
    let untimed = manifest.untimed_watchers(&manifest.root);
    if !untimed.is_empty() {
        let ids: Vec<String> = untimed.iter().map(|s| format!("`{}`", s.id)).collect();
        problems.push(format!(
            "loop(s) {} wait with `check_every` but have no time budget: add one such as `budget: 8h`",
            ids.join(", ")
        ));
    }
    checked.push(format!(
        "`{PROPOSAL}` parses and lints ({} loop(s))",
        manifest.loops().len()
    ));
    problems.extend(unprotected(&manifest, tree));

    let mut settings = settings.clone();
    settings.rules = protect::Rules::new(manifest.all_protected(), Some(PROPOSAL));
    let mut ignore = |_e| {};
    let mut exams = Engine::new(cage, git, key, settings, head, &mut ignore)?;
    for spec in manifest.root.walk(Order::ChildrenFirst) {
        if spec.image.as_deref() == Some(manifest::auto_image::AUTO) {
            // Built from the run's base commit when the run starts; plan
            // builds nothing (the container would ask for an image named
            // `auto`).
            checked.push(format!(
                "loop `{}`: exam `{}` not run here: `image: auto` is built when the run starts (`proctor lint` builds it and runs the exam once)",
                spec.id, spec.done_when
            ));
            continue;
        }
        let exam = exams.administer_once(spec, head).await?;
        let class = runnable::classify(
            exam.exit,
            exam.timed_out,
            spec.budget.wall.is_some(),
            &exam.output,
        );
        let said = format!(
            "loop `{}`: exam `{}` on HEAD: exit {} in {}",
            spec.id,
            spec.done_when,
            exam.exit,
            fmt_secs(exam.secs)
        );
        match class {
            Class::Fail => checked.push(format!("{said}: fails before the work, as it must")),
            Class::NotYet => checked.push(format!("{said}: not yet, within a time budget")),
            Class::Pass => problems.push(format!(
                "{said}: it already passes, so it cannot tell the goal reached from the repository as it is; write an exam that fails now"
            )),
            Class::Error => {
                let why = if exam.exit == 75 {
                    "it answered 75 (not yet) but the loop has no time budget; add one such as `budget: 8h`".to_string()
                } else {
                    match runnable::cannot_run(exam.exit, &exam.output) {
                        Some(why) => format!("it cannot run at all: {why}"),
                        None => "it cannot run at all".to_string(),
                    }
                };
                problems.push(format!("{said}: {why}"));
            }
        }
    }
    Ok((checked, problems))
}

/// The repository files an exam names that its loop does not protect.
fn unprotected(manifest: &Manifest, tree: &Path) -> Vec<String> {
    let mut out = Vec::new();
    // The whole tree's `protected:` globs are watched during a run.
    let Ok(set) = manifest::compile_globs(&manifest.all_protected()) else {
        return out;
    };
    for spec in manifest.loops() {
        for named in protect::named::named_by(&spec.done_when, tree) {
            let probe = match named.strip_suffix("/**") {
                Some(dir) => format!("{dir}/x"),
                None => named.clone(),
            };
            if !set.is_match(&probe) {
                out.push(format!(
                    "loop `{}`: its exam reads `{named}`, which is not under `protected:`; the agent could change what grades it",
                    spec.id
                ));
            }
        }
    }
    out
}
#[cfg(test)]
mod tests;
