//! `proctor key export`: the public half of the attestation key.

use super::CommandError;
use crate::attest::key::{key_id, public_pem, AttestKey};
use crate::state::key::key_dir;
use crate::views::out::print_out;

/// The host's keys. `export` prints the public key that verifies this
/// host's attestations (`proctor attest`), as a PEM `PUBLIC KEY` block that
/// OpenSSL, cosign and securesystemslib read. The private half stays in
/// `PROCTOR_KEY_DIR` (`attest.key`, beside the answer-auth key), outside
/// the repository and every container; it is made on first use.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Print the attestation public key (PEM; `--hex` for the 32 raw bytes).
    Export {
        /// Print the key as 64 hex digits instead.
        #[arg(long)]
        hex: bool,
    },
}

pub fn cmd_key(args: Args) -> Result<i32, CommandError> {
    match args.command {
        KeyCommand::Export { hex } => {
            let key = AttestKey::load_or_create(&key_dir())?;
            let public = key.public();
            if hex {
                print_out(&format!("{}\n", hex::encode(public.as_bytes())));
            } else {
                print_out(&public_pem(&public));
            }
            tracing::debug!(keyid = %key_id(&public), "attestation key");
            Ok(0)
        }
    }
}
