//! `proctor run`: run the manifest's loop tree until it closes, blocks or
//! gates. The lifecycle itself is `crate::run`; this verb (and `once` and
//! `demo`, through [`execute`]) renders it.

use std::path::PathBuf;

use super::{detach, CommandError};
use crate::engine::events::Event;
use crate::engine::Ending;
use crate::exit_codes;
use crate::git::GitRepo;
use crate::manifest;
use crate::progress::{Progress, Ticker};
use crate::render::Stream;
use crate::run::{self, Observer, Request, RunOptions, RunSummary, Warning};
use crate::state::lock::{self, LockError};
use crate::state::{self, Paths};

/// Run the loop tree in `proctor.yaml` (or `lute.yaml` when there is no
/// `proctor.yaml`) until every loop's exam passes (exit 0), a budget runs out
/// (exit 3) or a gate waits for a person (exit 4). Work happens on branch
/// `proctor/<root>`; your branch is not touched.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run only this loop (and its children) instead of the whole tree.
    pub root: Option<String>,
    /// The manifest to run.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Agent command for loops that name none (in `agent:` of their own or
    /// of a parent); a loop with its own `agent:` keeps it.
    #[arg(long, value_name = "CMD")]
    pub agent: Option<String>,
    /// Stay in the foreground and print one compact line per event (the
    /// default when not at a terminal).
    #[arg(long, conflicts_with = "bg")]
    pub plain: bool,
    /// Detach from the terminal even when not at one: the run goes on in
    /// its own session (output in `.proctor/runner.log`); this prints its pid
    /// and exits. At a terminal this is the default.
    #[arg(long)]
    pub bg: bool,
    /// Exit 0 without doing anything when a run already holds this
    /// repository's lock (for cron ticks).
    #[arg(long)]
    pub skip_if_running: bool,
    /// Print the loop tree, which exam would run first and the prompt the
    /// first agent to wake would read; start nothing: no branch, no
    /// container, no lock, nothing spent.
    #[arg(long, conflicts_with_all = ["bg", "skip_if_running"])]
    pub dry_run: bool,
    /// Internal: this process is the detached run.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

/// The manifest `args` names, else the repository's.
fn manifest_path(
    cwd: &std::path::Path,
    git: &GitRepo,
    args: &Args,
) -> Result<PathBuf, CommandError> {
    Ok(match &args.file {
        Some(file) => cwd.join(file),
        None => manifest::find(git.root()).ok_or_else(|| {
            CommandError::hint(
                format!(
                    "no `proctor.yaml` or `lute.yaml` in `{}`",
                    git.root().display()
                ),
                "write one with `proctor init`, or run an ad-hoc loop with `proctor once`",
            )
        })?,
    })
}

/// `proctor run --bg` without a foreground run to fall back on: checks the
/// manifest, then starts the detached run (for `proctor mcp`).
pub fn start_detached(args: &Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let path = manifest_path(&cwd, &git, args)?;
    let manifest = manifest::load(&path)?;
    let root = run::select_root(&manifest, args.root.as_deref())?;
    run::refuse_untimed_watchers(&manifest, &root)?;
    detach_run(&git, &cwd, args, &path)
}

/// Starts the detached run unless a run already holds the lock.
fn detach_run(
    git: &GitRepo,
    cwd: &std::path::Path,
    args: &Args,
    path: &std::path::Path,
) -> Result<i32, CommandError> {
    let paths = Paths::new(git.root());
    if let Some(info) = lock::holder_info(&paths.lock) {
        return Err(LockError::Held {
            pid: info.pid,
            who: info.to_string(),
        }
        .into());
    }
    git.ensure_excluded(&state::EXCLUDE_PATTERNS)?;
    let file = args.file.as_ref().map(|_| path);
    detach::spawn(&paths, cwd, detach::child_args(args, file))
}

pub async fn cmd_run(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let path = manifest_path(&cwd, &git, &args)?;
    let manifest = manifest::load(&path)?;
    let root = run::select_root(&manifest, args.root.as_deref())?;
    run::refuse_untimed_watchers(&manifest, &root)?;
    if args.dry_run {
        let plan = run::dry_run::plan(&cwd, &root, args.agent.as_deref())?;
        crate::views::out::say_raw!("{}", render_dry_run(&plan));
        return Ok(exit_codes::CLOSED);
    }
    let label = path
        .strip_prefix(git.root())
        .unwrap_or(&path)
        .display()
        .to_string();
    let paths = Paths::new(git.root());
    // The web view's fleet page lists this repository from now on.
    let registry = state::registry::registry_file();
    if let Err(e) = state::registry::register(&registry, git.root()) {
        tracing::warn!(
            "cannot add this repository to `{}`: {e}",
            registry.display()
        );
    }
    if args.skip_if_running {
        if let Some(who) = lock::holder_info(&paths.lock) {
            crate::views::out::say!(
                "proctor: a run is already active in this repository ({who}); skipping"
            );
            return Ok(exit_codes::CLOSED);
        }
    }
    if args.detached_child {
        // SAFETY: setting a signal disposition has no preconditions. The
        // parent set this already; a detached run never ends on SIGHUP.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    } else if detach::should_detach(args.bg, args.plain, detach::interactive()) {
        return detach_run(&git, &cwd, &args, &path);
    }
    drop(git);
    let summary = execute(
        Request {
            once: None,
            dir: cwd,
            root,
            manifest_label: label,
            default_agent: args.agent,
            mounts: Vec::new(),
        },
        RunOptions {
            ignore_hangup: args.detached_child,
            skip_if_running: args.skip_if_running,
        },
    )
    .await?;
    if summary.skipped {
        crate::views::out::say!("proctor: a run is already active in this repository; skipping");
        return Ok(exit_codes::CLOSED);
    }
    print_report(&summary);
    Ok(summary.exit)
}

/// Renders a run at the terminal: every event to the events file and a
/// line on stderr (under a live progress line at a terminal), warnings as
/// `warning:` lines.
struct Terminal {
    /// Whether to draw the live progress line.
    progress: bool,
    stream: Option<Stream>,
    ticker: Option<Ticker>,
}

impl Terminal {
    fn new() -> Terminal {
        Terminal {
            // A progress line under the event lines at a terminal; never in
            // the detached run (its output is a file).
            progress: crate::terminal::stderr_progress(),
            stream: None,
            ticker: None,
        }
    }

    /// Ends the rendering: stops the progress line and reports problems
    /// writing the events file.
    fn finish(mut self) {
        self.ticker = None;
        for problem in self.stream.iter().flat_map(|s| &s.write_errors) {
            crate::views::out::say_err!("warning: {problem}");
        }
    }
}

impl Observer for Terminal {
    fn begin(&mut self, run_id: &str, paths: &Paths) {
        let mut stream = Stream::new(run_id, paths.events.clone());
        if self.progress {
            let line = Progress::new();
            stream.progress = Some(line.clone());
            self.ticker = Some(line.start_ticker());
        }
        self.stream = Some(stream);
    }

    fn event(&mut self, event: Event) {
        if let Some(stream) = &mut self.stream {
            stream.emit(event);
        }
    }

    fn warn(&mut self, warning: Warning) {
        match warning {
            Warning::ManifestDiffers { .. } => {
                crate::views::out::say_err!(
                    "proctor: note: {}",
                    crate::terminal::line(&warning.to_string())
                )
            }
            Warning::Sweep(_)
            | Warning::Uncommitted { .. }
            | Warning::WorktreeLeft { .. }
            | Warning::EnvUnset(_)
            | Warning::PresetKeyless { .. } => {
                crate::views::out::say_err!(
                    "warning: {}",
                    crate::terminal::line(&warning.to_string())
                )
            }
        }
    }
}

/// Runs the request, rendering it at the terminal.
pub async fn execute(req: Request, opts: RunOptions) -> Result<RunSummary, CommandError> {
    let mut terminal = Terminal::new();
    let summary = run::execute(req, opts, &mut terminal).await?;
    terminal.finish();
    Ok(summary)
}

/// The residual-risk report every run ends with: what was verified and how,
/// what was not, and what the boundary decided.
pub fn print_report(summary: &RunSummary) {
    let report = &summary.report;
    let mut out = String::new();
    out.push_str(&format!("\nproctor report · run {}\n", summary.run_id));
    out.push_str("verified:\n");
    if report.verified.is_empty() {
        out.push_str("  - nothing: no exam passed in this run\n");
    }
    for line in &report.verified {
        out.push_str(&format!("  - {}\n", crate::terminal::line(line)));
    }
    out.push_str("not verified:\n");
    for line in &report.unverified {
        out.push_str(&format!("  - {}\n", crate::terminal::line(line)));
    }
    out.push_str(
        "  - anything the exam does not test: a pass proves the exam's exit code, nothing more\n",
    );
    out.push_str("  - the agent's exit codes and claims: logged, never used as a verdict\n");
    out.push_str("  - edits to files that are neither `protected:` nor outside a `writes:` allow-list: kept, and judged only by the exam\n");
    if !report.guarded.is_empty() {
        out.push_str("guarded:\n");
        for line in &report.guarded {
            out.push_str(&format!("  - {}\n", crate::terminal::line(line)));
        }
    }
    if !report.boundary.is_empty() {
        out.push_str("boundary:\n");
        for line in &report.boundary {
            out.push_str(&format!("  - {}\n", crate::terminal::line(line)));
        }
    }
    out.push_str(&format!(
        "agent time: {} in {} run{}\n",
        crate::engine::fmt_secs(report.agent_secs),
        report.agent_runs,
        if report.agent_runs == 1 { "" } else { "s" }
    ));
    out.push_str(&work_lines(summary));
    crate::views::out::say_raw!("{out}");
}

/// Where the work is and what to do next: the run's branch, the user's
/// branch (never touched), the worktree kept for a resume, and how the
/// work reaches the user's branch: `proctor land`, or for `once` (no
/// manifest, so no exam for `land` to re-run) a plain merge.
fn work_lines(summary: &RunSummary) -> String {
    let branch = &summary.branch;
    let mut out = String::new();
    let from = match &summary.start_branch {
        Some(b) if b != branch => format!(" (your branch `{b}` is untouched)"),
        _ => String::new(),
    };
    out.push_str(&format!("work: branch `{branch}`{from}\n"));
    // `proctor run`, `proctor run --file FILE`, or after `once` (whose
    // flags are not recorded) the same `proctor once` again.
    let (resumes, rerun) = if summary.once {
        (
            "running the same `proctor once` again resumes".to_string(),
            "run the same `proctor once` again".to_string(),
        )
    } else {
        (
            format!("`{}` resumes", summary.rerun),
            format!("`{}`", summary.rerun),
        )
    };
    if let Some(wt) = &summary.worktree {
        out.push_str(&format!(
            "worktree: `{wt}` (kept so {resumes} there; `proctor reap` removes it once no run needs it)\n"
        ));
    }
    match &summary.ending {
        Some(Ending::Blocked { loop_id }) => out.push_str(&format!(
            "next: read INBOX/{loop_id}.md, then `proctor answer {loop_id} \"...\"` and {rerun}\n"
        )),
        Some(Ending::Gated { loop_id }) => out.push_str(&format!(
            "next: review `{branch}`, `proctor answer {loop_id} approve`, then {rerun}\n"
        )),
        Some(Ending::Closed) if summary.once => {
            let into = summary.start_branch.as_deref().unwrap_or("your branch");
            out.push_str(&format!(
                "next: review `{branch}`, then merge it into `{into}` yourself, e.g. `git merge {branch}` with `{into}` checked out\n"
            ))
        }
        Some(Ending::Closed) => {
            let into = match &summary.start_branch {
                Some(b) if b != branch => format!(" into `{b}`"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "next: review `{branch}`, then `proctor land` merges it{into} if its exam passes on the merged tree\n"
            ))
        }
        None => {}
    }
    out
}

/// What `run --dry-run` prints: the tree, the first exam, the first agent
/// and its prompt.
fn render_dry_run(plan: &run::dry_run::DryRun) -> String {
    let mut out = String::from(
        "proctor run --dry-run: nothing started (no branch, no container, nothing spent)\n\nloop tree (children close before their parent):\n",
    );
    for l in &plan.loops {
        let agent = match &l.agent {
            Some(a) => format!("agent `{a}`"),
            None => "no agent (checks its children's work)".into(),
        };
        out.push_str(&format!(
            "  {}{}: exam `{}`, {agent}, budget {}\n",
            "  ".repeat(l.depth),
            l.id,
            l.exam,
            l.budget
        ));
    }
    let short: String = plan.start.to_string().chars().take(12).collect();
    out.push_str(&format!(
        "\nbranch: `{}` ({})\n",
        plan.branch,
        if plan.resumes {
            format!("exists: the run resumes it at {short}")
        } else {
            format!("would be made at HEAD, {short}")
        }
    ));
    out.push_str(&format!(
        "first: the exam of loop `{}` (`{}`) on commit {short}; a pass closes it with no agent\n",
        plan.first, plan.first_exam
    ));
    out.push_str(&format!(
        "if it fails: loop `{}`'s agent `{}` wakes for run {} with this prompt on stdin:\n\n",
        plan.first, plan.first_agent, plan.run
    ));
    out.push_str(&plan.prompt);
    if !plan.prompt.ends_with('\n') {
        out.push('\n');
    }
    // The prompt carries the journal and exam output: agent-written text.
    crate::terminal::text(&out).into_owned()
}
