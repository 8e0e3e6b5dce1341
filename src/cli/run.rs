//! `proctor run`: run the manifest's loop tree until it closes, blocks or
//! gates. Also the shared path behind `once` and `demo`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};

use super::{detach, CommandError};
use crate::cage::{Cage, CageError, DockerCage, RuntimeChoice, HOST_IMAGE, LABEL_REPO, LABEL_RUN};
use crate::engine::events::{Event, Outcome};
use crate::engine::gate::is_inside;
use crate::engine::{history, Ending, Engine, Report, Settings};
use crate::exit_codes;
use crate::git::GitRepo;
use crate::leftovers;
use crate::manifest::{self, Config, LoopSpec, Manifest};
use crate::notify;
use crate::progress::Progress;
use crate::protect::Rules;
use crate::render::Stream;
use crate::state::approver::approvers_dir;
use crate::state::key::{key_dir, random_id, AnswerKey};
use crate::state::lock::{self, LockError, RunLock};
use crate::state::{self, gate, ledger, Paths};

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
    /// Agent command for every loop, overriding the manifest's `agent:`.
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
    /// Internal: this process is the detached run.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

/// How `execute_with` runs, beyond the request itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// A detached run ignores SIGHUP (its terminal closing).
    pub ignore_hangup: bool,
    /// A held lock means "skip", exit 0.
    pub skip_if_running: bool,
    /// The live progress line: `None` shows it when stderr is a terminal.
    pub progress: Option<bool>,
}

/// What `execute` needs: a directory inside the repo and a validated tree.
pub struct Request {
    pub dir: PathBuf,
    pub root: LoopSpec,
    /// How the manifest is named in events and messages.
    pub manifest_label: String,
    pub agent_override: Option<String>,
    pub quiet: bool,
}

/// What a run established.
pub struct RunSummary {
    /// Another run held the lock and the request said to skip.
    pub skipped: bool,
    pub exit: i32,
    pub ending: Option<Ending>,
    pub report: Report,
    pub branch: String,
    pub start_branch: Option<String>,
    pub run_id: String,
}

pub async fn cmd_run(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let path = match &args.file {
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
    };
    let manifest = manifest::load(&path)?;
    let root = select_root(&manifest, args.root.as_deref())?;
    refuse_untimed_watchers(&manifest, &root)?;
    let label = path
        .strip_prefix(git.root())
        .unwrap_or(&path)
        .display()
        .to_string();
    let paths = Paths::new(git.root());
    if args.skip_if_running {
        if let Some(pid) = lock::holder(&paths.lock) {
            super::status::say!(
                "proctor: a run is already active in this repository (pid {pid}); skipping"
            );
            return Ok(exit_codes::CLOSED);
        }
    }
    if args.detached_child {
        // SAFETY: setting a signal disposition has no preconditions. The
        // parent set this already; a detached run never ends on SIGHUP.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    } else if detach::should_detach(args.bg, args.plain, detach::interactive()) {
        if let Some(pid) = lock::holder(&paths.lock) {
            return Err(LockError::Held { pid }.into());
        }
        git.ensure_excluded(&state::EXCLUDE_PATTERNS)?;
        let file = args.file.as_ref().map(|_| path.as_path());
        return detach::spawn(&paths, &cwd, detach::child_args(&args, file));
    }
    drop(git);
    let summary = execute_with(
        Request {
            dir: cwd,
            root,
            manifest_label: label,
            agent_override: args.agent,
            quiet: false,
        },
        RunOptions {
            ignore_hangup: args.detached_child,
            skip_if_running: args.skip_if_running,
            // A progress line under the event lines at a terminal; never in
            // the detached run (its output is a file).
            progress: None,
        },
    )
    .await?;
    if summary.skipped {
        super::status::say!("proctor: a run is already active in this repository; skipping");
        return Ok(exit_codes::CLOSED);
    }
    print_report(&summary);
    Ok(summary.exit)
}

/// Refuses a loop that says its exam answers 75 (it sets `check_every`)
/// but has no time budget: waiting spends no runs, so nothing would end it.
pub fn refuse_untimed_watchers(manifest: &Manifest, root: &LoopSpec) -> Result<(), CommandError> {
    let untimed = manifest.untimed_watchers(root);
    let Some(first) = untimed.first() else {
        return Ok(());
    };
    let ids: Vec<String> = untimed.iter().map(|s| format!("`{}`", s.id)).collect();
    Err(CommandError::hint(
        format!(
            "loop {} sets `check_every`, so its exam may answer 75 (not yet), but has no time budget: waiting spends no runs, so nothing would end the wait",
            ids.join(", ")
        ),
        format!(
            "give it a wall-clock budget, e.g. `budget: {} / 8h` on loop `{}`",
            first.budget.runs.map_or("10 runs".to_string(), |n| format!("{n} runs")),
            first.id
        ),
    ))
}

/// The loop to run: the root, or the named subtree.
pub fn select_root(manifest: &Manifest, id: Option<&str>) -> Result<LoopSpec, CommandError> {
    fn find<'m>(spec: &'m LoopSpec, id: &str) -> Option<&'m LoopSpec> {
        if spec.id == id {
            return Some(spec);
        }
        spec.children.iter().find_map(|c| find(c, id))
    }
    match id {
        None => Ok(manifest.root.clone()),
        Some(id) => find(&manifest.root, id).cloned().ok_or_else(|| {
            CommandError::user(format!("no loop `{id}` in `{}`", manifest.path.display()))
        }),
    }
}

fn all_loops(spec: &LoopSpec) -> Vec<&LoopSpec> {
    let mut out = vec![spec];
    for child in &spec.children {
        out.extend(all_loops(child));
    }
    out
}

/// The engine the config names (or the first that answers), set up as the
/// config says: OCI runtime and the egress proxy's network.
pub async fn connect_cage(config: &Config) -> Result<DockerCage, CommandError> {
    let runtime = match &config.runtime {
        Some(name) => RuntimeChoice::Named(name.clone()),
        None => RuntimeChoice::Auto,
    };
    Ok(DockerCage::connect(config.engine.as_deref())
        .await?
        .with_runtime(runtime)
        .with_egress_network(config.egress_network.clone()))
}

/// A stable id for a repository: labels its containers.
pub fn repo_label(root: &Path) -> String {
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..8])
}

/// The repository owner's `uid:gid`: containers run as them, never as
/// whoever happens to run proctor.
pub fn container_user(root: &Path) -> String {
    match std::fs::metadata(root) {
        Ok(meta) => format!("{}:{}", meta.uid(), meta.gid()),
        Err(_) => "65534:65534".into(),
    }
}

/// Runs a loop tree to its end. Refuses before touching anything when the
/// input is bad, the tree is dirty or no engine answers.
pub async fn execute(req: Request) -> Result<RunSummary, CommandError> {
    execute_with(req, RunOptions::default()).await
}

/// [`execute`] with options (detached, cron, progress).
pub async fn execute_with(req: Request, opts: RunOptions) -> Result<RunSummary, CommandError> {
    let started = Instant::now();
    let git = GitRepo::open(&req.dir)?;
    let root_dir = git.root().to_path_buf();
    let head = git.head()?.ok_or_else(|| {
        CommandError::hint(
            "the repository has no commits yet",
            "commit your work once, then run proctor",
        )
    })?;
    let loops = all_loops(&req.root);
    for spec in &loops {
        if req.agent_override.is_none() && spec.agent.is_none() {
            return Err(CommandError::hint(
                format!("loop `{}` has no `agent`", spec.id),
                "set `agent:` in the manifest (it is inherited by child loops) or pass `--agent CMD`",
            ));
        }
    }
    if loops.iter().any(|spec| spec.gate.is_some()) {
        for (what, dir) in [
            ("`PROCTOR_KEY_DIR`", key_dir()),
            ("`PROCTOR_APPROVERS_DIR`", approvers_dir()),
        ] {
            if is_inside(&dir, &root_dir) {
                return Err(CommandError::hint(
                    format!("{what} (`{}`) is inside the repository, where an agent can read or write it; a gate would mean nothing", dir.display()),
                    "keep approval keys and trusted approvers outside the repository (the defaults are under `~/.config/proctor`)",
                ));
            }
        }
    }
    let config = manifest::load_config(&root_dir)?;
    // Removals run in the background; `settle` below waits for them.
    let cage = connect_cage(&config).await?.with_background_removal();
    check_images(&cage, &loops, config.image.as_deref()).await?;

    let paths = Paths::new(&root_dir);
    let branch = format!("proctor/{}", req.root.id);
    let start_branch = git.head_branch()?;
    if start_branch.as_deref() != Some(branch.as_str()) {
        let dirty = git.dirty_paths(&|p| p.starts_with(".proctor/") || p.starts_with("INBOX/"))?;
        if !dirty.is_empty() {
            let shown: Vec<&str> = dirty.iter().take(10).map(String::as_str).collect();
            let more = if dirty.len() > 10 {
                format!(" and {} more", dirty.len() - 10)
            } else {
                String::new()
            };
            return Err(CommandError::hint(
                format!(
                    "the working tree has uncommitted changes: {}{more}",
                    shown.join(", ")
                ),
                "commit or stash them first; proctor commits every attempt and must not mix your edits into them",
            ));
        }
    }
    git.ensure_excluded(&state::EXCLUDE_PATTERNS)?;
    let _lock = match RunLock::acquire(&paths.lock) {
        Ok(lock) => lock,
        Err(LockError::Held { .. }) if opts.skip_if_running => {
            return Ok(RunSummary {
                skipped: true,
                exit: exit_codes::CLOSED,
                ending: None,
                report: Report::default(),
                branch,
                start_branch,
                run_id: String::new(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let key = AnswerKey::load_or_create(&key_dir())?;
    if start_branch.as_deref() != Some(branch.as_str()) {
        // Answers recorded while another branch was checked out travel along.
        let carried = carry_answers(&paths);
        if git.branch_tip(&branch)?.is_none() {
            git.create_branch(&branch, head)?;
        }
        git.switch_to(&branch)?;
        for line in carried {
            let _ = state::append_line(&paths.ledger, &line);
        }
    }
    let tip = git.head()?.unwrap_or(head);
    let base = history::base_of(&git, tip)?;
    let (root_spec, rules) = trusted_tree(&git, base, &req)?;
    if start_branch.as_deref() == Some(branch.as_str())
        && !crate::engine::boundary::attempt_interrupted(&paths)
    {
        // No attempt was cut short, so uncommitted edits to the exam's
        // materials are the user's: the boundary would undo them.
        let edited: Vec<String> = git
            .dirty_paths(&|p| state::is_private(p))?
            .into_iter()
            .filter(|p| rules.watches(p))
            .collect();
        if !edited.is_empty() {
            return Err(CommandError::hint(
                format!(
                    "{} {} uncommitted edits on `{branch}`; proctor pins the exam's materials to the run's base commit and would undo them",
                    edited.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
                    if edited.len() == 1 { "has" } else { "have" }
                ),
                format!("commit them on `{branch}` (a commit of yours becomes the run's new base), or discard them"),
            ));
        }
    }
    if root_spec != req.root && !req.quiet {
        eprintln!(
            "proctor: note: the manifest you ran differs from the one on `{branch}` at its base commit; this run follows the branch's (commit your change on `{branch}` to use it)"
        );
    }
    let run_id = random_id(4);
    let label = repo_label(&root_dir);

    let notifier = notify::trusted(&git, base, &config);
    let mut stream = Stream::new(&run_id, paths.events.clone());
    stream.quiet = req.quiet;
    let progress = opts.progress.unwrap_or_else(|| {
        crate::render::use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("CI").is_some(),
            false,
        )
    }) && !req.quiet;
    let _ticker = if progress {
        let line = Progress::new();
        stream.progress = Some(line.clone());
        Some(line.start_ticker())
    } else {
        None
    };
    let reaped = cage
        .remove_labelled(&[(LABEL_REPO, label.as_str())])
        .await?;
    // Files of any dead proctor process, not only this repository's: runs
    // elsewhere share the temp directories, and only live ones are spared.
    let swept = leftovers::sweep();
    if reaped > 0 || !swept.removed.is_empty() {
        stream.emit(Event::Reaped {
            containers: reaped,
            files: swept.removed.len(),
        });
    }
    if let Some(line) = swept.failure_line().filter(|_| !req.quiet) {
        eprintln!("warning: {line}");
    }
    stream.emit(Event::RunStart {
        root: req.root.id.clone(),
        branch: branch.clone(),
        base: base.to_string(),
        manifest: req.manifest_label.clone(),
        engine: cage.describe(),
        pid: std::process::id(),
    });

    let mut host_env = HashMap::new();
    for spec in &loops {
        for name in &spec.env {
            if let Ok(value) = std::env::var(name) {
                host_env.insert(name.clone(), value);
            }
        }
    }
    let settings = Settings {
        run_id: run_id.clone(),
        repo_label: label,
        user: container_user(&root_dir),
        default_image: config
            .image
            .clone()
            .unwrap_or_else(|| HOST_IMAGE.to_string()),
        agent_override: req.agent_override.clone(),
        host_env,
        extra_mounts: config.mounts.iter().map(PathBuf::from).collect(),
        default_timeout: config.timeout,
        rules,
        default_resources: config.resources,
    };

    let mut sigint = signal(SignalKind::interrupt()).map_err(internal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(internal)?;
    // A detached run leaves SIGHUP ignored: its terminal closing is not a
    // reason to stop.
    let mut sighup = if opts.ignore_hangup {
        None
    } else {
        Some(signal(SignalKind::hangup()).map_err(internal)?)
    };
    let (result, report) = {
        let mut emit = |e: Event| stream.emit(e);
        let mut engine = Engine::new(&cage, &git, &key, settings, base, &mut emit)?;
        let result = tokio::select! {
            r = engine.run(&root_spec) => Some(r),
            _ = sigint.recv() => None,
            _ = sigterm.recv() => None,
            _ = hangup(&mut sighup) => None,
        };
        (result, std::mem::take(&mut engine.report))
    };
    // Whatever ended the run, no container started ahead of need outlives it.
    cage.settle().await;
    let secs = started.elapsed().as_secs_f64();
    let (exit, outcome, ending) = match result {
        None => {
            // The engine future is gone; make sure its containers are too.
            let _ = cage.remove_labelled(&[(LABEL_RUN, run_id.as_str())]).await;
            (exit_codes::INTERRUPTED, Outcome::Interrupted, None)
        }
        Some(Err(e)) => {
            let _ = cage.remove_labelled(&[(LABEL_RUN, run_id.as_str())]).await;
            // The exit code recorded is the one the command exits with.
            let error = CommandError::from(e);
            stream.emit(Event::RunEnd {
                outcome: Outcome::Error,
                exit: error.exit_code(),
                secs,
            });
            return Err(error);
        }
        Some(Ok(ending)) => {
            // Containers are gone already; this removes the run's egress
            // networks and proxies.
            let _ = cage.remove_labelled(&[(LABEL_RUN, run_id.as_str())]).await;
            match &ending {
                Ending::Closed => (exit_codes::CLOSED, Outcome::Closed, Some(ending)),
                Ending::Blocked { .. } => (exit_codes::BLOCKED, Outcome::Blocked, Some(ending)),
                Ending::Gated { .. } => (exit_codes::GATED, Outcome::Gated, Some(ending)),
            }
        }
    };
    if let Some(Ending::Blocked { loop_id } | Ending::Gated { loop_id }) = &ending {
        let reason = if exit == exit_codes::GATED {
            "gated"
        } else {
            "blocked"
        };
        let mut emit = |e: Event| stream.emit(e);
        notify::on_halt(&mut emit, &notifier, &paths, loop_id, reason);
    }
    stream.emit(Event::RunEnd {
        outcome,
        exit,
        secs: started.elapsed().as_secs_f64(),
    });
    for problem in &stream.write_errors {
        eprintln!("warning: {problem}");
    }
    Ok(RunSummary {
        skipped: false,
        exit,
        ending,
        report,
        branch,
        start_branch,
        run_id,
    })
}

/// Every image the tree needs is on the engine, before anything is touched:
/// a missing image is a clear error naming `proctor image import`, not a
/// failure halfway through a run.
async fn check_images(
    cage: &DockerCage,
    loops: &[&LoopSpec],
    default_image: Option<&str>,
) -> Result<(), CommandError> {
    let mut seen = std::collections::HashSet::new();
    for spec in loops {
        let image = spec
            .image
            .as_deref()
            .or(default_image)
            .unwrap_or(HOST_IMAGE);
        if !seen.insert(image) {
            continue;
        }
        match cage.ensure_image(image).await {
            Ok(_) => {}
            Err(CageError::ImageNotFound { .. }) => {
                return Err(CommandError::hint(
                    format!(
                        "loop `{}`: image `{image}` is not on the container engine ({})",
                        spec.id,
                        cage.describe()
                    ),
                    format!("proctor never pulls: import a root filesystem with `proctor image import DIR|ROOTFS.tar.gz --name {image}`, or build or pull the image yourself"),
                ))
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

fn internal(e: std::io::Error) -> CommandError {
    CommandError::Internal {
        message: format!("cannot install signal handlers: {e}"),
    }
}

/// The loop tree to run and the rules guarding its exam, from the manifest
/// as the base commit has it. A manifest edited in the working tree since
/// (an agent's edit left behind by a killed run) is not obeyed; the
/// engine's first check quarantines it and restores the trusted copy.
fn trusted_tree(
    git: &GitRepo,
    base: crate::git::Oid,
    req: &Request,
) -> Result<(LoopSpec, Rules), CommandError> {
    let rel = req.manifest_label.as_str();
    let path = git.root().join(rel);
    let in_repo = crate::protect::fsafe::components(rel).is_ok()
        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
    if !in_repo {
        let mut globs = Vec::new();
        for spec in all_loops(&req.root) {
            for glob in &spec.protected {
                if !globs.contains(glob) {
                    globs.push(glob.clone());
                }
            }
        }
        return Ok((req.root.clone(), Rules::new(globs, None)));
    }
    let manifest = match git.read_blob_at(base, rel)? {
        Some(trusted) if std::fs::read(&path).ok().as_deref() != Some(trusted.as_slice()) => {
            manifest::parse(&String::from_utf8_lossy(&trusted), &path)?
        }
        _ => manifest::load(&path)?,
    };
    let root = select_root(&manifest, Some(&req.root.id))?;
    Ok((root, Rules::new(manifest.all_protected(), Some(rel))))
}

/// Waits for SIGHUP, or forever when it is ignored.
async fn hangup(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Takes the answer lines (answers, approvals, rejections) out of an
/// untracked working-tree ledger so the branch switch cannot trip over it;
/// they are appended again after it.
fn carry_answers(paths: &Paths) -> Vec<String> {
    let text = std::fs::read(&paths.ledger)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let answers: Vec<String> = text
        .lines()
        .filter(|line| {
            matches!(
                ledger::parse(line).first(),
                Some(ledger::Entry::Answer { .. })
            ) || matches!(
                gate::parse(line).first(),
                Some(gate::GateEntry::Approval { .. } | gate::GateEntry::Rejection { .. })
            )
        })
        .map(str::to_string)
        .collect();
    if !answers.is_empty() {
        let _ = state::repair_file(&paths.ledger);
        let _ = std::fs::remove_file(&paths.ledger);
    }
    answers
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
        out.push_str(&format!("  - {line}\n"));
    }
    out.push_str("not verified:\n");
    for line in &report.unverified {
        out.push_str(&format!("  - {line}\n"));
    }
    out.push_str(
        "  - anything the exam does not test: a pass proves the exam's exit code, nothing more\n",
    );
    out.push_str("  - the agent's exit codes and claims: logged, never used as a verdict\n");
    out.push_str("  - edits to files that are neither `protected:` nor outside a `writes:` allow-list: kept, and judged only by the exam\n");
    if !report.guarded.is_empty() {
        out.push_str("guarded:\n");
        for line in &report.guarded {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    if !report.boundary.is_empty() {
        out.push_str("boundary:\n");
        for line in &report.boundary {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    out.push_str(&format!(
        "agent time: {} in {} run{}\n",
        crate::engine::fmt_secs(report.agent_secs),
        report.agent_runs,
        if report.agent_runs == 1 { "" } else { "s" }
    ));
    let from = match &summary.start_branch {
        Some(b) if *b != summary.branch => format!(" (your branch `{b}` is untouched)"),
        _ => String::new(),
    };
    out.push_str(&format!("work: branch `{}`{from}\n", summary.branch));
    match &summary.ending {
        Some(Ending::Blocked { loop_id }) => out.push_str(&format!(
            "next: read INBOX/{loop_id}.md, then `proctor answer {loop_id} \"...\"` and `proctor run`\n"
        )),
        Some(Ending::Gated { loop_id }) => out.push_str(&format!(
            "next: `proctor answer {loop_id} approve`, then `proctor run`\n"
        )),
        _ => {}
    }
    print!("{out}");
}
