//! `proctor answer`: a person's reply to a card, authenticated with the
//! answer-auth key and recorded in the ledger.

use super::CommandError;
use crate::git::GitRepo;
use crate::manifest;
use crate::state::key::{key_dir, AnswerKey};
use crate::state::{ledger, Paths};

/// Answer a blocked loop: the text goes into the loop's next prompt and
/// refreshes its budget once. The answer is signed with a key kept outside
/// the repository (`PROCTOR_KEY_DIR`), so no agent can forge one.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The loop to answer (as named on its card in `INBOX/`).
    #[arg(value_name = "LOOP")]
    pub loop_id: String,
    /// The answer.
    #[arg(required = true, value_name = "TEXT")]
    pub text: Vec<String>,
}

pub fn cmd_answer(args: Args) -> Result<i32, CommandError> {
    let git = GitRepo::open(&super::cwd()?)?;
    let paths = Paths::new(git.root());
    let text = args.text.join(" ");
    if text.trim().is_empty() {
        return Err(CommandError::user("the answer is empty"));
    }
    let known_in_manifest = manifest::find(git.root())
        .and_then(|p| manifest::load(&p).ok())
        .map(|m| contains(&m.root, &args.loop_id));
    let has_card = paths.card_for(&args.loop_id).exists();
    if known_in_manifest == Some(false) && !has_card {
        return Err(CommandError::hint(
            format!(
                "no loop `{}` in the manifest and no card `INBOX/{}.md`",
                args.loop_id, args.loop_id
            ),
            "`ls INBOX/` shows the loops waiting for an answer",
        ));
    }
    let key = AnswerKey::load_or_create(&key_dir())?;
    let entry = ledger::signed_answer(&key, &args.loop_id, &text);
    ledger::append(&paths.ledger, &entry).map_err(|e| CommandError::Internal {
        message: format!("cannot write `{}`: {e}", paths.ledger.display()),
    })?;
    println!(
        "recorded the answer for loop `{}`: it goes into the next prompt and refreshes the loop's budget once; continue with `proctor run`",
        args.loop_id
    );
    Ok(0)
}

fn contains(spec: &manifest::LoopSpec, id: &str) -> bool {
    spec.id == id || spec.children.iter().any(|c| contains(c, id))
}
