//! `proctor attest`: a signed in-toto statement of a closed run, and its
//! verification.

use std::cell::RefCell;
use std::path::PathBuf;

use super::CommandError;
use crate::attest::dsse::{self, IN_TOTO_PAYLOAD_TYPE};
use crate::attest::key::{parse_public, AttestKey};
use crate::attest::statement::{self, Obeyed, Predicate, Sources, Statement};
use crate::attest::verify::{self, Status};
use crate::cage::Cage;
use crate::engine::events::{self, Event, Phase, Verdict};
use crate::engine::{Engine, Settings};
use crate::exit_codes;
use crate::git::GitRepo;
use crate::manifest::{self, Manifest};
use crate::protect::Watch;
use crate::state::approver::{approvers_dir, ApproverKey, Trusted};
use crate::state::key::{key_dir, random_id, AnswerKey};
use crate::state::Paths;
use crate::views::out::{print_out, say, say_err};

/// Write a signed attestation of a closed run (the latest by default): an
/// in-toto Statement v1 in a DSSE envelope, signed with this host's
/// Ed25519 attestation key (`proctor key export` prints its public half).
/// Its subject is the commit the root loop closed on; its predicate names
/// the base and head commits and, per loop, the exam, the hash of its
/// materials, the verifier image's digest, the network, the runs used,
/// every verdict, and the authenticated answers and approvals, with a hash
/// chain over the run's events. A run that did not close is refused
/// (exit 1). With `--verify FILE`: checks the signature, the statement,
/// that the subject is the closing commit, that the commits exist here,
/// and the event chain against `.proctor/events.jsonl` when it holds the
/// run; exit 0 only if every check passes (1 otherwise, naming it). With
/// `--rerun` as well: runs each recorded exam again (exit 0 only if every
/// verdict reproduces).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run id (or a unique prefix of it); default the latest run.
    #[arg(value_name = "RUN", conflicts_with = "verify")]
    pub run: Option<String>,
    /// Write the envelope to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE", conflicts_with = "verify")]
    pub output: Option<PathBuf>,
    /// Verify the envelope in FILE instead of writing one.
    #[arg(long, value_name = "FILE")]
    pub verify: Option<PathBuf>,
    /// With `--verify`: the signer's public key (PEM or hex, as `proctor key
    /// export` prints it); default this host's own key.
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub key: Option<PathBuf>,
    /// With `--verify`: run each loop's recorded exam again on the commit
    /// it decided, in a fresh verifier container of the recorded image, and
    /// say per loop whether the verdict reproduces (exit 0 only if all do).
    #[arg(long, requires = "verify")]
    pub rerun: bool,
}

pub async fn cmd_attest(args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    match &args.verify {
        Some(file) => verify_file(&args, file, &git, &paths).await,
        None => attest(&args, &git, &paths),
    }
}

fn attest(args: &Args, git: &GitRepo, paths: &Paths) -> Result<i32, CommandError> {
    let text = statement::read_events(&paths.events)?;
    let run = statement::select_run(&events::parse(&text), args.run.as_deref())?;
    let dir = key_dir();
    let answer_key = AnswerKey::load_or_create(&dir)?;
    let own = ApproverKey::load_or_create(&dir).ok();
    let approvers = Trusted::load(own.as_ref(), &approvers_dir());
    let config = manifest::load_config(git.root())?;
    let sources = Sources {
        git,
        events: &text,
        answer_key: &answer_key,
        approvers: &approvers,
        default_image: config
            .image
            .clone()
            .unwrap_or_else(|| crate::cage::HOST_IMAGE.to_string()),
    };
    let statement = statement::build(&sources, &run)?;
    let payload = serde_json::to_vec(&statement).map_err(|e| CommandError::Internal {
        message: format!("cannot encode the statement: {e}"),
    })?;
    let key = AttestKey::load_or_create(&dir)?;
    let envelope = dsse::seal(&key, IN_TOTO_PAYLOAD_TYPE, &payload);
    let mut json = serde_json::to_string_pretty(&envelope).map_err(|e| CommandError::Internal {
        message: format!("cannot encode the envelope: {e}"),
    })?;
    json.push('\n');
    match &args.output {
        None => print_out(&json),
        Some(file) => {
            std::fs::write(file, &json).map_err(|e| {
                CommandError::user(format!("cannot write `{}`: {e}", file.display()))
            })?;
            say_err!(
                "attested run {run}: loop `{}` closed on {} ({} loop{}); written to {}",
                statement.predicate.root,
                statement.predicate.head,
                statement.predicate.loops.len(),
                if statement.predicate.loops.len() == 1 {
                    ""
                } else {
                    "s"
                },
                file.display()
            );
        }
    }
    Ok(exit_codes::CLOSED)
}

async fn verify_file(
    args: &Args,
    file: &std::path::Path,
    git: &GitRepo,
    paths: &Paths,
) -> Result<i32, CommandError> {
    let bytes = std::fs::read(file)
        .map_err(|e| CommandError::user(format!("cannot read `{}`: {e}", file.display())))?;
    let public = match &args.key {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CommandError::user(format!("cannot read `--key {}`: {e}", path.display()))
            })?;
            parse_public(&text).ok_or_else(|| {
                CommandError::hint(
                    format!("`--key {}` holds no Ed25519 public key", path.display()),
                    "give the output of `proctor key export` on the attesting host",
                )
            })?
        }
        None => AttestKey::load_or_create(&key_dir())?.public(),
    };
    let events = statement::read_events(&paths.events)?;
    let result = verify::verify(&bytes, &public, git, Some(&events));
    for check in &result.checks {
        let mark = match check.status {
            Status::Passed => "ok  ",
            Status::Failed => "FAIL",
            Status::Skipped => "skip",
        };
        // The detail quotes the file's own text: escaped.
        say!(
            "{mark} {}: {}",
            check.name,
            crate::terminal::line(&check.detail)
        );
    }
    if result.passed() {
        say!("verified: {}", file.display());
        match (&result.statement, args.rerun) {
            (Some(statement), true) => rerun(statement, git).await,
            _ => Ok(exit_codes::CLOSED),
        }
    } else {
        let failed: Vec<&str> = result
            .checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| c.name)
            .collect();
        say_err!(
            "error: `{}` does not verify: {} failed",
            file.display(),
            failed.join(", ")
        );
        if args.rerun {
            say_err!("no exam was re-run: the attestation does not verify");
        }
        Ok(exit_codes::USAGE)
    }
}

/// Re-runs each loop's deciding exam (its last one that was not the base
/// commit's baseline count) on the commit it ran on, with the loop as the
/// base commit's manifest has it, in a fresh verifier container of the
/// recorded image; a verdict reproduces when the exam gives the recorded
/// verdict in the recorded image, with the exam's materials unchanged.
async fn rerun(statement: &Statement, git: &GitRepo) -> Result<i32, CommandError> {
    let p = &statement.predicate;
    let base = parse_oid(&p.base)?;
    let Obeyed {
        manifest, rules, ..
    } = Obeyed::read(git, base, &p.manifest, p.once.as_deref(), &p.run)?;
    let (materials, _) = Watch::new(git, base, &rules)?.digest();
    let config = manifest::load_config(git.root())?;
    let cage = crate::run::connect_cage(&config).await?;
    let key = AnswerKey::load_or_create(&key_dir())?;
    let settings = Settings::new(
        format!("rerun-{}", random_id(4)),
        git.root(),
        &config,
        rules,
    );
    let seen: RefCell<Vec<Event>> = RefCell::new(Vec::new());
    let mut emit = |e: Event| seen.borrow_mut().push(e);
    let mut engine = Engine::new(&cage, git, &key, settings, base, &mut emit)?;
    let result = rerun_loops(&mut engine, p, &manifest, &materials, &seen).await;
    drop(engine);
    // Before any error returns: nothing of the re-run outlives it.
    cage.settle().await;
    if result? {
        say!("reproduced: every recorded verdict holds");
        Ok(exit_codes::CLOSED)
    } else {
        say_err!("error: a recorded verdict does not reproduce");
        Ok(exit_codes::USAGE)
    }
}

/// Each loop's re-run, reported as it ends; whether all reproduced.
async fn rerun_loops<C: Cage>(
    engine: &mut Engine<'_, C>,
    p: &Predicate,
    manifest: &Manifest,
    materials: &str,
    seen: &RefCell<Vec<Event>>,
) -> Result<bool, CommandError> {
    let mut all = true;
    for record in &p.loops {
        let id = &record.id;
        let Some(decided) = record
            .verdicts
            .iter()
            .rev()
            .find(|v| v.phase != Phase::Baseline)
        else {
            say!("skip rerun `{id}`: no exam of the loop was recorded");
            continue;
        };
        let why_not = if record.materials.sha256 != materials {
            Some("the exam's materials at the base commit are not the recorded ones".to_string())
        } else {
            match manifest.find_loop(id) {
                None => Some(format!(
                    "the manifest at the base commit has no loop `{id}`"
                )),
                Some(spec) if spec.done_when != record.exam => Some(format!(
                    "the manifest at the base commit names another exam: `{}`",
                    spec.done_when
                )),
                Some(_) => None,
            }
        };
        if let Some(why) = why_not {
            all = false;
            say!("FAIL rerun `{id}`: {}", crate::terminal::line(&why));
            continue;
        }
        let Some(mut spec) = manifest.find_loop(id).cloned() else {
            continue;
        };
        // The recorded image: by its id, except the built-in host image,
        // which is found by name (and its id compared below).
        if record.image != crate::cage::HOST_IMAGE {
            spec.image = Some(decided.image_digest.clone());
        } else {
            spec.image = Some(record.image.clone());
        }
        let commit = parse_oid(&decided.commit)?;
        seen.borrow_mut().clear();
        let (verdict, exit, _) = engine.examine_candidate(&spec, commit).await?;
        let ran_in = seen.borrow().iter().rev().find_map(|e| match e {
            Event::CheckResult { image, .. } => Some(image.clone()),
            _ => None,
        });
        let ran_in = ran_in.unwrap_or_default();
        let verdict_name = |v: Verdict| format!("{v:?}").to_lowercase();
        if ran_in != decided.image_digest {
            all = false;
            say!(
                "FAIL rerun `{id}`: the exam ran in image {ran_in}, not the recorded {}",
                decided.image_digest
            );
        } else if verdict != decided.verdict {
            all = false;
            say!(
                "FAIL rerun `{id}`: `{}` on {} gave {} (exit {exit}); the attestation recorded {} (exit {})",
                crate::terminal::line(&record.exam),
                decided.commit,
                verdict_name(verdict),
                verdict_name(decided.verdict),
                decided.exit
            );
        } else {
            say!(
                "ok   rerun `{id}`: `{}` on {} gave {} (exit {exit}) again, in image {ran_in}",
                crate::terminal::line(&record.exam),
                decided.commit,
                verdict_name(verdict)
            );
        }
    }
    Ok(all)
}

fn parse_oid(text: &str) -> Result<crate::git::Oid, CommandError> {
    crate::git::Oid::from_str(text)
        .map_err(|_| CommandError::user(format!("`{text}` is not a commit id")))
}
