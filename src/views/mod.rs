//! Views: read-only pictures of a repository's runs for `status`, `watch`,
//! `inbox`, `runs`, `stats` and `estimate`.
//!
//! They are rendered from `.proctor/events.jsonl`, the cards in `INBOX/`
//! and, to count approvals and answers, the ledger. A view never runs an
//! exam, never starts a container and never writes a file, so looking is
//! free and cannot disturb a live run. Everything here is informational:
//! the files it reads are ones an agent can write, and no decision of the
//! engine is ever taken from a view.

use std::path::{Path, PathBuf};

use crate::engine::events::{self, Outcome, Record};
use crate::engine::gate::card_kind;
use crate::git::{GitError, GitRepo};
use crate::manifest::{self, LoopSpec, Manifest};
use crate::state::approver::{approvers_dir, ApproverKey, Trusted};
use crate::state::key::{key_dir, AnswerKey};
use crate::state::{gate, jsonl, ledger, lock, Paths};

pub mod denoise;
pub mod estimate;
pub mod history;
pub mod json;
pub mod out;
pub mod replay;
pub mod text;

pub use replay::{Doing, LoopState, Replay, Word};

/// `--file`, shared by the verbs that show a view.
#[derive(Debug, clap::Args)]
pub struct ManifestFile {
    /// The manifest (default: proctor.yaml, else lute.yaml).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl ManifestFile {
    /// The view context of the repository around `cwd` (a relative
    /// `--file` is taken from `cwd`).
    pub fn context(self, cwd: &Path) -> Result<Context, GitError> {
        let git = GitRepo::open(cwd)?;
        let file = self.file.map(|f| cwd.join(f));
        Ok(Context::load(git.root(), file.as_deref()))
    }
}

/// Everything a view reads, loaded once.
pub struct Context {
    pub paths: Paths,
    pub manifest: Option<Manifest>,
    pub records: Vec<Record>,
    /// Every line's `type` and `run`, including event types this version
    /// does not know (counted by `stats`).
    pub raw: Vec<(String, String)>,
    /// The pid holding the run lock, if that process is alive.
    pub holder: Option<i32>,
    pub cards: Vec<CardFile>,
    pub now: f64,
}

/// A card file in `INBOX/`.
#[derive(Debug, Clone, PartialEq)]
pub struct CardFile {
    pub loop_id: String,
    /// `blocked`, `ready` or `superseded` (from the card's first line).
    pub kind: String,
    /// The card's title line, e.g. `BLOCKED: fix`.
    pub title: String,
    /// The card's first sentence (why it was written).
    pub reason: String,
    pub path: String,
    /// Modification time, unix seconds.
    pub mtime: f64,
}

impl Context {
    /// Loads the state of the repository at `root` (a repo root). The
    /// manifest is `file`, else the usual one; a manifest that does not
    /// load is left out (views then show the loops the events name).
    pub fn load(root: &Path, file: Option<&Path>) -> Context {
        let paths = Paths::new(root);
        let text = jsonl::read_text(&paths.events);
        let records = events::parse(&text);
        let manifest = match file {
            Some(file) => manifest::load(file).ok(),
            None => run_manifest(root, &records),
        };
        let raw = raw_types(&text);
        let holder = lock::holder(&paths.lock);
        let cards = read_cards(&paths);
        Context {
            paths,
            manifest,
            records,
            raw,
            holder,
            cards,
            now: crate::state::now(),
        }
    }
}

/// The manifest of the latest run: the file its `run_start` names (a run
/// of `run --file other.yaml` shows `other.yaml`'s tree), none after
/// `once` (its one loop is drawn from the events), the usual one when no
/// run is recorded or the named file is gone or no longer has the run's
/// root loop.
fn run_manifest(root: &Path, records: &[Record]) -> Option<Manifest> {
    let usual = || manifest::find(root).and_then(|p| manifest::load(&p).ok());
    let latest = records.iter().rev().find_map(|r| match &r.event {
        events::Event::RunStart {
            root: id, manifest, ..
        } => Some((id, manifest)),
        _ => None,
    });
    let Some((id, label)) = latest else {
        return usual();
    };
    if label == crate::run::ONCE_LABEL {
        return None;
    }
    let has_root = |m: &Manifest| m.find_loop(id).is_some();
    // The label is relative to the repository; never follow it out.
    let named = Path::new(label);
    let inside = named.is_relative()
        && named
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if inside {
        if let Some(m) = manifest::load(&root.join(named))
            .ok()
            .filter(|m| has_root(m))
        {
            return Some(m);
        }
    }
    usual().filter(|m| has_root(m))
}

/// Every line's `type` and `run`, also of event types this version does
/// not know.
fn raw_types(text: &str) -> Vec<(String, String)> {
    jsonl::parse::<serde_json::Value>(text)
        .into_iter()
        .filter_map(|v| {
            let kind = v.get("type")?.as_str()?.to_string();
            let run = v
                .get("run")
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_string();
            Some((kind, run))
        })
        .collect()
}

/// Cards in `INBOX/`: regular files named `<loop>.md`, sorted by loop.
pub fn read_cards(paths: &Paths) -> Vec<CardFile> {
    let Ok(entries) = std::fs::read_dir(&paths.inbox) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let Some(loop_id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".md"))
            .map(str::to_string)
        else {
            continue;
        };
        if !meta.is_file() || meta.len() > 1 << 20 {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let kind = card_kind(&text).unwrap_or("unknown").to_string();
        let title = text
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or("")
            .to_string();
        let reason = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("<!--") && !l.starts_with('#'))
            .unwrap_or("")
            .to_string();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        out.push(CardFile {
            loop_id,
            kind,
            title,
            reason,
            path: paths.rel(&path),
            mtime,
        });
    }
    out.sort_by(|a, b| a.loop_id.cmp(&b.loop_id));
    out
}

/// How the latest run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// No run recorded yet.
    None,
    Running,
    Closed,
    Blocked,
    Gated,
    /// Ended by a signal (or `proctor stop`), or killed without a word.
    Interrupted,
    Error,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::None => "none",
            RunOutcome::Running => "running",
            RunOutcome::Closed => "closed",
            RunOutcome::Blocked => "blocked",
            RunOutcome::Gated => "gated",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Error => "error",
        }
    }
}

/// One loop in a view, with its children.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub depth: usize,
    pub state: LoopState,
    /// The loop's run budget from the manifest.
    pub budget_runs: Option<u32>,
    pub children: Vec<Node>,
}

/// A card with what a person should type.
#[derive(Debug, Clone, PartialEq)]
pub struct CardView {
    pub card: CardFile,
    pub gated: bool,
    /// Blocked: a signed answer newer than the card exists. Gated: enough
    /// trusted approvals of the card's commit exist.
    pub answered: bool,
    pub approvals: Vec<String>,
    pub needed: Option<u32>,
    pub next: String,
    /// The command that resumes the run that wrote this card (an older
    /// card may come from another manifest or a `once`).
    pub rerun: String,
}

/// The picture every view draws.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub root: String,
    pub branch: String,
    /// The commit the work branch forked from.
    pub base: Option<String>,
    pub outcome: RunOutcome,
    pub exit: Option<i32>,
    pub ended: bool,
    pub run_id: Option<String>,
    pub pid: Option<u32>,
    pub started: Option<f64>,
    /// Seconds the latest run took (or has taken so far).
    pub secs: Option<f64>,
    pub tree: Node,
    pub cards: Vec<CardView>,
    pub now: f64,
    /// The command that resumes the latest run: `proctor run`, `proctor
    /// run --file FILE`, or the same `proctor once` again.
    pub rerun: String,
}

impl View {
    pub fn build(ctx: &Context) -> View {
        let mut replay = replay::replay(&ctx.records);
        let live = ctx.holder.is_some() && replay.end.is_none() && replay.root.is_some();
        let (outcome, exit, ended) = match (&replay.end, replay.root.is_some()) {
            (Some((outcome, exit, _)), _) => (from_outcome(*outcome), Some(*exit), true),
            (None, true) if live => (RunOutcome::Running, None, false),
            (None, true) => (RunOutcome::Interrupted, None, false),
            (None, false) => (RunOutcome::None, None, false),
        };
        if !live {
            replay.idle();
        }
        let secs = match (&replay.end, replay.started) {
            (Some((_, _, secs)), _) => Some(*secs),
            (None, Some(start)) if live => Some((ctx.now - start).max(0.0)),
            (None, Some(start)) => replay.last_ts.map(|t| (t - start).max(0.0)),
            _ => None,
        };
        // The run's root loop, never another loop of the manifest: a
        // manifest without it (another file's run, `once`) draws the loops
        // the events name.
        let spec = ctx
            .manifest
            .as_ref()
            .and_then(|m| match replay.root.as_deref() {
                Some(id) => m.find_loop(id),
                None => Some(&m.root),
            });
        let root_id = spec
            .map(|s| s.id.clone())
            .or_else(|| replay.root.clone())
            .or_else(|| replay.order.first().cloned())
            .unwrap_or_default();
        let card_word = |id: &str| {
            ctx.cards
                .iter()
                .find(|c| c.loop_id == id)
                .and_then(|c| match c.kind.as_str() {
                    "blocked" => Some(Word::Blocked),
                    "ready" | "review" => Some(Word::Gated),
                    _ => None,
                })
        };
        let mut tree = match spec {
            Some(spec) => node(spec, 0, &replay),
            None => flat(&root_id, &replay),
        };
        apply_cards(&mut tree, &card_word);
        let rerun = rerun(replay.manifest.as_deref());
        let cards = card_views(ctx, &replay, spec, &rerun);
        View {
            root: root_id.clone(),
            branch: replay
                .branch
                .clone()
                .unwrap_or_else(|| format!("proctor/{root_id}")),
            base: replay.base.clone(),
            outcome,
            exit,
            ended,
            run_id: replay.run_id.clone(),
            pid: replay.pid,
            started: replay.started,
            secs,
            tree,
            cards,
            now: ctx.now,
            rerun,
        }
    }

    /// [`View::rerun`] inside a sentence: "`proctor run` resumes it".
    pub fn rerun_phrase(&self) -> String {
        rerun_phrase(&self.rerun)
    }

    /// Every node, depth first.
    pub fn nodes(&self) -> Vec<&Node> {
        fn walk<'n>(node: &'n Node, out: &mut Vec<&'n Node>) {
            out.push(node);
            for child in &node.children {
                walk(child, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.tree, &mut out);
        out
    }

    /// The one command a person should type next, about this run: a card
    /// of a loop outside its tree (an older run's) is `inbox`'s to list.
    pub fn next(&self) -> String {
        let nodes = self.nodes();
        let here = |c: &&CardView| nodes.iter().any(|n| n.id == c.card.loop_id);
        let waiting: Vec<&CardView> = self.cards.iter().filter(here).collect();
        if let Some(card) = waiting.iter().find(|c| !c.answered && !c.gated) {
            return card.next.clone();
        }
        if let Some(card) = waiting.iter().find(|c| !c.answered && c.gated) {
            return card.next.clone();
        }
        match self.outcome {
            RunOutcome::Running => "proctor watch".into(),
            RunOutcome::Closed => match &self.base {
                Some(base) => format!(
                    "review the work with `git diff {}..{1}`, then merge `{1}` into your branch",
                    &base[..base.len().min(12)],
                    self.branch
                ),
                None => format!("review `{0}`, then merge it into your branch", self.branch),
            },
            RunOutcome::None => "proctor run".into(),
            _ => self.rerun.clone(),
        }
    }
}

use crate::run::ONCE_AGAIN;

/// A resume command inside a sentence: "`proctor run` resumes it", "the
/// same `proctor once` again".
pub fn rerun_phrase(rerun: &str) -> String {
    match rerun.strip_prefix("run ") {
        Some(once) if rerun == ONCE_AGAIN => once.to_string(),
        _ => format!("`{rerun}`"),
    }
}

/// The command that resumes the latest run, `proctor run` when none is
/// recorded.
fn rerun(label: Option<&str>) -> String {
    label.map_or_else(|| "proctor run".into(), crate::run::rerun)
}

fn from_outcome(outcome: Outcome) -> RunOutcome {
    match outcome {
        Outcome::Closed => RunOutcome::Closed,
        Outcome::Blocked => RunOutcome::Blocked,
        Outcome::Gated => RunOutcome::Gated,
        Outcome::Interrupted => RunOutcome::Interrupted,
        Outcome::Error => RunOutcome::Error,
    }
}

fn node(spec: &LoopSpec, depth: usize, replay: &Replay) -> Node {
    Node {
        id: spec.id.clone(),
        depth,
        state: replay.loops.get(&spec.id).cloned().unwrap_or_default(),
        budget_runs: spec.budget.runs,
        children: spec
            .children
            .iter()
            .map(|c| node(c, depth + 1, replay))
            .collect(),
    }
}

/// Without a manifest: the root, with every other loop the latest run
/// touched under it (all the events name when no run started).
fn flat(root: &str, replay: &Replay) -> Node {
    let loops = if replay.root.is_some() {
        &replay.latest
    } else {
        &replay.order
    };
    Node {
        id: root.to_string(),
        depth: 0,
        state: replay.loops.get(root).cloned().unwrap_or_default(),
        budget_runs: None,
        children: loops
            .iter()
            .filter(|id| id.as_str() != root)
            .map(|id| Node {
                id: id.clone(),
                depth: 1,
                state: replay.loops.get(id).cloned().unwrap_or_default(),
                budget_runs: None,
                children: Vec::new(),
            })
            .collect(),
    }
}

/// A card outranks a stale word (a loop blocked in an earlier run shows
/// as blocked until it moves on), but never a closed loop.
fn apply_cards(node: &mut Node, card_word: &dyn Fn(&str) -> Option<Word>) {
    if node.state.word != Word::Done && node.state.doing.is_none() {
        if let Some(word) = card_word(&node.id) {
            node.state.word = word;
        }
    }
    for child in &mut node.children {
        apply_cards(child, card_word);
    }
}

/// Every answer and approval recorded so far: those waiting in the
/// checkout for the next run, and those already in a run's ledger (in its
/// worktree under `.proctor/wt/`, or the checkout's own of older runs).
fn answers_text(paths: &Paths) -> String {
    let mut text = jsonl::read_text(&paths.answers);
    text.push('\n');
    text.push_str(&jsonl::read_text(&paths.ledger));
    let worktrees = paths.state.join("wt");
    if let Ok(entries) = std::fs::read_dir(&worktrees) {
        for entry in entries.flatten() {
            let ledger = Paths::with_work(&paths.root, &entry.path()).ledger;
            text.push('\n');
            text.push_str(&jsonl::read_text(&ledger));
        }
    }
    text
}

fn card_views(
    ctx: &Context,
    replay: &Replay,
    spec: Option<&LoopSpec>,
    rerun: &str,
) -> Vec<CardView> {
    let ledger_text = answers_text(&ctx.paths);
    let dir = key_dir();
    let answer_key = AnswerKey::load(&dir.join("answer.key")).ok();
    let own = ApproverKey::load(&dir.join("approver.key")).ok();
    let trusted = Trusted::load(own.as_ref(), &approvers_dir());
    let gate_entries = gate::parse(&ledger_text);
    let entries = ledger::parse(&ledger_text);
    // Which run wrote each loop's latest card: its manifest says how to
    // resume it.
    let mut wrote: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut label: Option<&str> = None;
    for record in &ctx.records {
        match &record.event {
            events::Event::RunStart { manifest, .. } => label = Some(manifest),
            events::Event::Card { loop_id, .. } => {
                if let Some(label) = label {
                    wrote.insert(loop_id, label);
                }
            }
            _ => {}
        }
    }
    ctx.cards
        .iter()
        .filter(|c| c.kind != "superseded")
        .map(|card| {
            let id = card.loop_id.as_str();
            let gated = card.kind == "ready";
            // An exam review's card waits for `approve`, an answer of its own.
            let review = card.kind == "review";
            let state = replay.loops.get(id);
            let needed = state.and_then(|s| s.needed).or_else(|| {
                spec.and_then(|s| s.find(id))
                    .and_then(|s| s.gate)
                    .map(|g| g.approvals)
            });
            let (answered, approvals) = if gated {
                match state.and_then(|s| s.commit.as_deref()) {
                    Some(commit) => {
                        let t = gate::tally(&gate_entries, &trusted, id, commit);
                        (t.approved(needed.unwrap_or(1)), t.approvers)
                    }
                    None => (false, Vec::new()),
                }
            } else {
                let answered = answer_key.as_ref().is_some_and(|key| {
                    let answers = if review {
                        ledger::review_answers_for(&entries, key, id)
                    } else {
                        ledger::answers_for(&entries, key, id)
                    };
                    answers
                        .iter()
                        .any(|a| a.ts_ms as f64 / 1000.0 >= card.mtime)
                });
                (answered, Vec::new())
            };
            let rerun = wrote
                .get(id)
                .map_or_else(|| rerun.to_string(), |label| crate::run::rerun(label));
            let next = if answered {
                rerun.clone()
            } else if gated || review {
                format!("proctor answer {id} approve")
            } else {
                format!("proctor answer {id} \"...\"")
            };
            CardView {
                card: card.clone(),
                gated,
                answered,
                approvals,
                needed: if gated { needed } else { None },
                next,
                rerun,
            }
        })
        .collect()
}

/// `2026-11-22 09:00:03Z`, from unix seconds.
pub fn utc(ts: f64) -> String {
    let secs = ts.max(0.0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_right() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_700_000_000.0), "2023-11-14 22:13:20Z");
    }

    fn started(root: &str, manifest: &str) -> Vec<Record> {
        events::parse(&format!(
            r#"{{"v":1,"ts":1.0,"run":"r","type":"run_start","root":"{root}","branch":"proctor/{root}","base":"b","manifest":"{manifest}","engine":"docker","pid":1}}"#
        ))
    }

    #[test]
    fn views_read_the_manifest_the_latest_run_used() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("proctor.yaml"),
            "loop: main\ndone_when: 'true'\nagent: a\n",
        )
        .unwrap();
        std::fs::write(
            root.join("other.yaml"),
            "loop: other\ndone_when: 'true'\nagent: a\n",
        )
        .unwrap();
        let id = |m: Option<Manifest>| m.map(|m| m.root.id);
        assert_eq!(id(run_manifest(root, &[])), Some("main".into()));
        assert_eq!(
            id(run_manifest(root, &started("main", "proctor.yaml"))),
            Some("main".into())
        );
        assert_eq!(
            id(run_manifest(root, &started("other", "other.yaml"))),
            Some("other".into())
        );
        // `once` has no manifest: its loop comes from the events.
        assert_eq!(
            id(run_manifest(root, &started("once", "proctor once"))),
            None
        );
        // A label that leaves the repository is never read.
        assert_eq!(id(run_manifest(root, &started("x", "../other.yaml"))), None);
        // The file gone: not another tree in its place.
        std::fs::remove_file(root.join("other.yaml")).unwrap();
        assert_eq!(
            id(run_manifest(root, &started("other", "other.yaml"))),
            None
        );
    }
}
