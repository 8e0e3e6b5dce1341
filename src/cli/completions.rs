//! `proctor completions`: shell completions and the man page, generated
//! from the clap definitions, so they can never drift from the verbs.

use clap::CommandFactory;

use super::{Cli, CommandError};
use crate::views::out::print_out;

/// Print shell completions, or the man page.
///
/// For SHELL (bash, zsh, fish, elvish, powershell), or with `man` the man
/// page (roff), generated from proctor's own command line. E.g. `proctor completions bash > ~/.local/share/bash-completion/completions/proctor`,
/// `proctor completions man > ~/.local/share/man/man1/proctor.1`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "SHELL")]
    pub shell: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// The man page (roff), for `man -l -` or a `man1` directory.
    Man,
}

pub fn cmd_completions(args: Args) -> Result<i32, CommandError> {
    let text = generate(args.shell).map_err(|e| CommandError::Internal {
        message: format!("cannot generate the man page: {e}"),
    })?;
    print_out(&text);
    Ok(0)
}

/// The completion script or the man page for `target`.
pub fn generate(target: Target) -> std::io::Result<String> {
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let shell = match target {
        Target::Bash => Shell::Bash,
        Target::Zsh => Shell::Zsh,
        Target::Fish => Shell::Fish,
        Target::Elvish => Shell::Elvish,
        Target::Powershell => Shell::PowerShell,
        Target::Man => {
            clap_mangen::Man::new(cmd).render(&mut out)?;
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
    };
    clap_complete::generate(shell, &mut cmd, "proctor", &mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_completes_the_verbs_and_their_flags() {
        for target in [
            Target::Bash,
            Target::Zsh,
            Target::Fish,
            Target::Elvish,
            Target::Powershell,
        ] {
            let script = generate(target).unwrap();
            for word in ["watch", "answer", "mcp", "completions", "--filter"] {
                assert!(script.contains(word), "{target:?} lacks `{word}`");
            }
        }
    }

    #[test]
    fn the_man_page_names_the_program_and_its_verbs() {
        let page = generate(Target::Man).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH proctor"),
            "{page}"
        );
        assert!(page.contains(".TH proctor 1"), "{page}");
        for verb in ["run", "watch", "answer", "mcp", "completions"] {
            assert!(page.contains(verb), "the man page lacks `{verb}`");
        }
    }
}
