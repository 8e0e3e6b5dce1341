//! The command line's own checks: clap's consistency assertions, and the
//! `--help` of proctor and of every verb pinned as snapshots (plain text:
//! help is rendered without colour when it is captured).

use clap::{CommandFactory, Parser};

use super::Cli;

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

/// The argument paths of every visible verb and sub-verb, e.g. `["cron", "sync"]`.
fn verbs(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_string());
        out.push(path.clone());
        verbs(sub, &path, out);
    }
}

/// What `proctor <path> --help` prints.
fn help(path: &[String]) -> String {
    let args = std::iter::once("proctor".to_string())
        .chain(path.iter().cloned())
        .chain(std::iter::once("--help".to_string()));
    match Cli::try_parse_from(args) {
        Ok(_) => panic!(
            "`{} --help` parsed instead of printing help",
            path.join(" ")
        ),
        Err(e) => {
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
            e.render().to_string()
        }
    }
}

#[test]
fn help_of_proctor_and_every_verb() {
    let mut paths = vec![Vec::new()];
    verbs(&Cli::command(), &[], &mut paths);
    assert!(paths.len() > 15, "only {} verbs found", paths.len());
    for path in paths {
        let name = std::iter::once("help")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("_");
        insta::assert_snapshot!(name, help(&path));
    }
}
