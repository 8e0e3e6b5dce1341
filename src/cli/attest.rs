//! `proctor attest`: a signed in-toto statement of a closed run, and its
//! verification.

use std::path::PathBuf;

use super::CommandError;
use crate::attest::dsse::{self, IN_TOTO_PAYLOAD_TYPE};
use crate::attest::key::{parse_public, AttestKey};
use crate::attest::statement::{self, Sources};
use crate::attest::verify::{self, Status};
use crate::engine::events;
use crate::exit_codes;
use crate::git::GitRepo;
use crate::manifest;
use crate::state::approver::{approvers_dir, ApproverKey, Trusted};
use crate::state::key::{key_dir, AnswerKey};
use crate::state::Paths;
use crate::views::out::{print_out, say};

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
/// run; exit 0 only if every check passes (1 otherwise, naming it).
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
}

pub async fn cmd_attest(args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    match &args.verify {
        Some(file) => verify_file(&args, file, &git, &paths),
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
            eprintln!(
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

fn verify_file(
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
        Ok(exit_codes::CLOSED)
    } else {
        let failed: Vec<&str> = result
            .checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| c.name)
            .collect();
        eprintln!(
            "error: `{}` does not verify: {} failed",
            file.display(),
            failed.join(", ")
        );
        Ok(exit_codes::USAGE)
    }
}
