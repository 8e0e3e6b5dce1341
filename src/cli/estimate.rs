//! `proctor estimate`: what past runs say each loop will cost. Read-only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CommandError;
use crate::engine::events::Event;
use crate::git::GitRepo;
use crate::manifest::{self, Order};
use crate::views::estimate::{estimate, render};
use crate::views::out::{print_json, print_out};
use crate::views::Context;

/// Estimate each loop's cost from past runs: runs used, wall time, blocked
/// rate and agent time: `proctor estimate --json`
///
/// Per loop: the runs used and the wall time (median and worst) of its past
/// closes, how often it blocked, and its agent time. A loop with no history
/// gets the past loops whose exam commands are most alike. Read-only, from
/// `.proctor/events.jsonl`; the exam commands of past loops come from the
/// manifest each run started with (at its base commit).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest whose loops to estimate (default: proctor.yaml, else
    /// lute.yaml; without one, every loop of the history).
    pub file: Option<PathBuf>,
    /// Print JSON instead.
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_estimate(args: Args) -> Result<i32, CommandError> {
    let cwd = super::cwd()?;
    let git = GitRepo::open(&cwd)?;
    let root = git.root().to_path_buf();
    let manifest = match &args.file {
        Some(file) => Some(manifest::load(&cwd.join(file))?),
        None => manifest::find(&root)
            .map(|path| manifest::load(&path))
            .transpose()?,
    };
    let ctx = Context::load(&root, None);
    let wanted: Option<Vec<(String, String)>> = manifest.as_ref().map(|m| {
        m.root
            .walk(Order::ParentsFirst)
            .into_iter()
            .map(|l| (l.id.clone(), l.done_when.clone()))
            .collect()
    });
    // The exam commands of the history's loops: the manifest's own, then
    // those of the manifest each run started with.
    let mut exams: BTreeMap<String, String> =
        wanted.clone().unwrap_or_default().into_iter().collect();
    let mut seen = std::collections::BTreeSet::new();
    for record in &ctx.records {
        let Event::RunStart { base, manifest, .. } = &record.event else {
            continue;
        };
        if !seen.insert((base.clone(), manifest.clone())) {
            continue;
        }
        let Ok(oid) = crate::git::Oid::from_str(base) else {
            continue;
        };
        let Ok(Some(bytes)) = git.read_blob_at(oid, manifest) else {
            continue;
        };
        let Ok(then) = manifest::parse(
            &String::from_utf8_lossy(&bytes),
            std::path::Path::new(manifest),
        ) else {
            continue;
        };
        for l in then.root.walk(Order::ParentsFirst) {
            exams
                .entry(l.id.clone())
                .or_insert_with(|| l.done_when.clone());
        }
    }
    let loops = estimate(&ctx.records, wanted.as_deref(), &exams);
    if args.json {
        print_json(&serde_json::json!({ "loops": loops }));
        return Ok(0);
    }
    print_out(&render(&loops));
    Ok(0)
}
