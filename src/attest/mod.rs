//! Attestations: a closed run's verdict as an in-toto Statement v1 in a
//! DSSE envelope, signed with an Ed25519 key kept outside every container
//! (`key.rs`), and the checks `proctor attest --verify` makes of one.
//!
//! It owns the statement's format and its gathering from the events file,
//! the base commit and the committed ledger. It never runs an exam itself
//! (`--rerun` asks the engine), never prints, and never trusts a ledger line
//! whose HMAC or signature does not verify.

pub mod chain;
pub mod dsse;
pub mod key;
pub mod statement;
pub mod verify;

use std::path::PathBuf;

use crate::git::GitError;
use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("the events file records no run to attest")]
    NoRuns,
    #[error("the events file has no run `{run}`")]
    UnknownRun { run: String },
    #[error("`{run}` names more than one run")]
    AmbiguousRun { run: String },
    #[error("run `{run}` has not ended: it is still running, or was killed before it closed")]
    NotEnded { run: String },
    #[error("run `{run}` did not close: it ended {outcome} (exit {exit}){}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    NotClosed {
        run: String,
        outcome: String,
        exit: i32,
        reason: Option<String>,
    },
    #[error("run `{run}` ran no committed manifest (`{manifest}`): its exams are not recorded where a verifier can read them")]
    NoManifest { run: String, manifest: String },
    #[error("`{commit}` is not a commit id")]
    BadCommit { commit: String },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl crate::exit_codes::DomainError for AttestError {
    fn is_users_to_fix(&self) -> bool {
        !matches!(self, AttestError::Git(_))
    }

    fn hint(&self) -> Option<String> {
        match self {
            AttestError::NoRuns | AttestError::UnknownRun { .. } => {
                Some("`proctor runs` lists the runs of this repository".into())
            }
            AttestError::AmbiguousRun { .. } => Some("give more of the run's id".into()),
            AttestError::NotEnded { .. } => {
                Some("`proctor run` resumes it; attest the run that closes".into())
            }
            AttestError::NotClosed { .. } => {
                Some("only a run whose loops all closed (exit 0) can be attested".into())
            }
            AttestError::NoManifest { .. } => Some(
                "attest a run of a committed manifest, or a `proctor once` run of this version (earlier ones did not record their loop)".into(),
            ),
            _ => None,
        }
    }
}
