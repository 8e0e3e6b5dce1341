//! The in-toto Statement v1 of a closed run and how it is gathered: from
//! the run's events, the manifest and exam materials as the base commit
//! holds them, and the authenticated answers and approvals in the ledger
//! the run committed. Nothing here is taken from a file an agent could
//! have written unchecked: the ledger's lines count only when their HMAC
//! or signature verifies.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::chain::{self, EventChain};
use super::AttestError;
use crate::engine::events::{self, Event, Outcome, Phase, Record, Verdict};
use crate::git::{GitRepo, Oid};
use crate::manifest::{self, LoopSpec, Network, Order};
use crate::protect::{Rules, Watch};
use crate::state::approver::Trusted;
use crate::state::gate;
use crate::state::key::AnswerKey;
use crate::state::ledger;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// proctor's predicate. A URN: proctor has no web address that would
/// serve the schema; docs/attest.md describes every field.
pub const PREDICATE_TYPE: &str = "urn:proctor:verdict:v1";
const LEDGER_PATH: &str = ".proctor/ledger.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// What proctor vouches for: which exams passed on which commits, how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    /// The run id (one `proctor run` process).
    pub run: String,
    /// The root loop.
    pub root: String,
    /// The branch the run committed to.
    pub branch: String,
    /// The manifest, repo-relative, and SHA-256 of it at the base commit.
    pub manifest: String,
    pub manifest_sha256: String,
    /// The container engine, as the run named it.
    pub engine: String,
    /// The commit the run started from.
    pub base: String,
    /// The commit the root loop closed on (the subject).
    pub head: String,
    /// Unix seconds.
    pub started: f64,
    pub ended: f64,
    /// Every loop the run examined, children before parents.
    pub loops: Vec<LoopRecord>,
    pub events: EventChain,
    /// A `proctor once` run's loop (it has no manifest file): the document
    /// its flags made, as the run recorded it (JSON, the agent command
    /// left out). `manifest` is then `proctor once` and `manifest_sha256`
    /// the SHA-256 of this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopRecord {
    #[serde(rename = "loop")]
    pub id: String,
    /// `done_when`, run as `/bin/sh -c` in the verifier.
    pub exam: String,
    /// The exam's materials as pinned to the base commit.
    pub materials: Materials,
    /// The image as the manifest (or config) names it.
    pub image: String,
    /// The id of the image the exam last ran in (`sha256:...`).
    pub image_digest: String,
    /// The verifier's network: `none`, `open` or the allowed hosts.
    pub network: String,
    /// Agent runs the loop used (its close event's count).
    pub runs: Option<u32>,
    /// The commit the loop closed on.
    pub closed_on: Option<String>,
    /// Every exam of the loop in the run, in order.
    pub verdicts: Vec<VerdictRecord>,
    /// The judge's rulings on the loop's passes (a judge can only veto).
    #[serde(default)]
    pub judges: Vec<JudgeRecord>,
    /// Authenticated human answers to the loop (by the host's answer-auth key).
    pub answers: Vec<AnswerRecord>,
    /// Trusted approvers' signed decisions on the loop's gate.
    pub approvals: Vec<ApprovalRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Materials {
    /// SHA-256 over `<mode> <sha256> <path>\n` of every watched file.
    pub sha256: String,
    pub files: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub phase: Phase,
    pub commit: String,
    pub verdict: Verdict,
    pub exit: i64,
    pub timed_out: bool,
    pub image_digest: String,
    /// Unix seconds.
    pub ts: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRecord {
    /// The commit under judgement.
    pub commit: String,
    /// No veto (first line exactly `PASS`, exit 0).
    pub pass: bool,
    pub exit: i64,
    pub timed_out: bool,
    /// The id of the image the judge ran in.
    pub image_digest: String,
    /// Unix seconds.
    pub ts: f64,
    /// The judge's first lines, for a veto.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    /// Who vouches for it: the attesting host's answer-auth key.
    pub by: String,
    /// Unix milliseconds.
    pub ts: i64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The approver's id (a hash of their public key).
    pub by: String,
    /// Unix milliseconds.
    pub ts: i64,
    pub commit: String,
    /// `approve`, or a rejection's text.
    pub decision: String,
}

/// Where a statement's facts come from.
pub struct Sources<'a> {
    pub git: &'a GitRepo,
    /// The events file's text.
    pub events: &'a str,
    pub answer_key: &'a AnswerKey,
    pub approvers: &'a Trusted,
    /// The config's default image (a loop without `image:` runs it).
    pub default_image: String,
}

/// The run to attest: `wanted` (an id or a unique prefix of one), else
/// the latest run in the events file.
pub fn select_run(records: &[Record], wanted: Option<&str>) -> Result<String, AttestError> {
    let mut ids: Vec<&str> = Vec::new();
    for record in records {
        if matches!(record.event, Event::RunStart { .. }) && !ids.contains(&record.run.as_str()) {
            ids.push(&record.run);
        }
    }
    match wanted {
        None => ids
            .last()
            .map(|id| id.to_string())
            .ok_or(AttestError::NoRuns),
        Some(wanted) => {
            if let Some(id) = ids.iter().find(|id| **id == wanted) {
                return Ok(id.to_string());
            }
            let matching: Vec<&&str> = ids.iter().filter(|id| id.starts_with(wanted)).collect();
            match matching.as_slice() {
                [one] => Ok(one.to_string()),
                [] => Err(AttestError::UnknownRun {
                    run: wanted.to_string(),
                }),
                _ => Err(AttestError::AmbiguousRun {
                    run: wanted.to_string(),
                }),
            }
        }
    }
}

/// The statement of run `run`, which must have closed.
pub fn build(src: &Sources<'_>, run: &str) -> Result<Statement, AttestError> {
    let records: Vec<Record> = events::parse(src.events)
        .into_iter()
        .filter(|r| r.run == run)
        .collect();
    let unknown = || AttestError::UnknownRun {
        run: run.to_string(),
    };
    let (start_ts, root, branch, base, manifest_rel, engine, once) = records
        .iter()
        .find_map(|r| match &r.event {
            Event::RunStart {
                root,
                branch,
                base,
                manifest,
                engine,
                once,
                ..
            } => Some((
                r.ts,
                root.clone(),
                branch.clone(),
                base.clone(),
                manifest.clone(),
                engine.clone(),
                once.clone(),
            )),
            _ => None,
        })
        .ok_or_else(unknown)?;
    let ended = records.iter().rev().find_map(|r| match &r.event {
        Event::RunEnd { outcome, exit, .. } => Some((r.ts, *outcome, *exit)),
        _ => None,
    });
    let end_ts = match ended {
        None => {
            return Err(AttestError::NotEnded {
                run: run.to_string(),
            })
        }
        Some((ts, Outcome::Closed, _)) => ts,
        Some((_, outcome, exit)) => {
            let reason = records.iter().rev().find_map(|r| match &r.event {
                Event::Card { reason, .. } => Some(reason.clone()),
                _ => None,
            });
            return Err(AttestError::NotClosed {
                run: run.to_string(),
                outcome: format!("{outcome:?}").to_lowercase(),
                exit,
                reason,
            });
        }
    };
    let mut closes: BTreeMap<&str, (u32, &str)> = BTreeMap::new();
    let mut verdicts: BTreeMap<&str, Vec<VerdictRecord>> = BTreeMap::new();
    let mut judges: BTreeMap<&str, Vec<JudgeRecord>> = BTreeMap::new();
    for r in &records {
        match &r.event {
            Event::Close {
                loop_id,
                runs,
                commit,
            } => {
                closes.insert(loop_id, (*runs, commit));
            }
            Event::CheckResult {
                loop_id,
                phase,
                verdict,
                exit,
                timed_out,
                commit,
                image,
                reason,
                ..
            } => verdicts.entry(loop_id).or_default().push(VerdictRecord {
                phase: *phase,
                commit: commit.clone(),
                verdict: *verdict,
                exit: *exit,
                timed_out: *timed_out,
                image_digest: image.clone(),
                ts: r.ts,
                reason: reason.clone(),
            }),
            Event::Judged {
                loop_id,
                commit,
                pass,
                reason,
                exit,
                timed_out,
                image,
                ..
            } => judges.entry(loop_id).or_default().push(JudgeRecord {
                commit: commit.clone(),
                pass: *pass,
                exit: *exit,
                timed_out: *timed_out,
                image_digest: image.clone(),
                ts: r.ts,
                reason: reason.clone(),
            }),
            _ => {}
        }
    }
    let head = closes
        .get(root.as_str())
        .map(|(_, commit)| commit.to_string())
        .ok_or_else(|| AttestError::NotClosed {
            run: run.to_string(),
            outcome: "closed".into(),
            exit: 0,
            reason: Some(format!("its root loop `{root}` has no close event")),
        })?;
    let base_oid = oid(&base)?;
    let head_oid = oid(&head)?;

    let obeyed = Obeyed::read(src.git, base_oid, &manifest_rel, once.as_deref(), run)?;
    let root_spec = obeyed
        .manifest
        .find_loop(&root)
        .ok_or_else(|| AttestError::NoManifest {
            run: run.to_string(),
            manifest: manifest_rel.clone(),
        })?;
    let (materials_sha, materials_files) = Watch::new(src.git, base_oid, &obeyed.rules)?.digest();

    let ledger_text = src
        .git
        .read_blob_at(head_oid, LEDGER_PATH)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let ledger_entries = ledger::parse(&ledger_text);
    let gate_entries = gate::parse(&ledger_text);

    let mut loops = Vec::new();
    for spec in root_spec.walk(Order::ChildrenFirst) {
        let verdicts = verdicts.remove(spec.id.as_str()).unwrap_or_default();
        let judges = judges.remove(spec.id.as_str()).unwrap_or_default();
        let close = closes.get(spec.id.as_str());
        if verdicts.is_empty() && close.is_none() {
            continue;
        }
        loops.push(loop_record(
            src,
            spec,
            verdicts,
            judges,
            close.copied(),
            Materials {
                sha256: materials_sha.clone(),
                files: materials_files,
            },
            (&ledger_entries, &gate_entries),
        ));
    }

    let events_chain = chain::chain(&chain::run_lines(src.events, run));
    let mut digest = BTreeMap::new();
    digest.insert("gitCommit".to_string(), head.clone());
    Ok(Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: branch.clone(),
            digest,
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            run: run.to_string(),
            root,
            branch,
            manifest: manifest_rel,
            manifest_sha256: hex::encode(crate::protect::fsafe::sha256(&obeyed.text)),
            engine,
            base,
            head,
            started: start_ts,
            ended: end_ts,
            loops,
            events: events_chain,
            once,
        },
    })
}

/// The loop tree a run obeyed, the text it was read from, and the rules
/// that pinned its exam's materials: a `proctor once` run's recorded loop,
/// else the manifest as the base commit holds it (the copy the run obeyed,
/// never the working tree's).
pub struct Obeyed {
    pub text: Vec<u8>,
    pub manifest: manifest::Manifest,
    pub rules: Rules,
}

impl Obeyed {
    pub fn read(
        git: &GitRepo,
        base: Oid,
        manifest_rel: &str,
        once: Option<&str>,
        run: &str,
    ) -> Result<Obeyed, AttestError> {
        if let Some(doc) = once {
            // As `proctor once` parsed it; no manifest file is among the
            // materials, as in the run.
            let manifest = manifest::parse(doc, Path::new(manifest_rel))?;
            let rules = Rules::new(manifest.all_protected(), None);
            return Ok(Obeyed {
                text: doc.as_bytes().to_vec(),
                manifest,
                rules,
            });
        }
        let text = crate::protect::fsafe::components(manifest_rel)
            .ok()
            .and_then(|_| git.read_blob_at(base, manifest_rel).transpose())
            .transpose()?
            .ok_or_else(|| AttestError::NoManifest {
                run: run.to_string(),
                manifest: manifest_rel.to_string(),
            })?;
        let manifest = manifest::parse(
            &String::from_utf8_lossy(&text),
            &git.root().join(manifest_rel),
        )?;
        let rules = Rules::new(manifest.all_protected(), Some(manifest_rel));
        Ok(Obeyed {
            text,
            manifest,
            rules,
        })
    }
}

fn loop_record(
    src: &Sources<'_>,
    spec: &LoopSpec,
    verdicts: Vec<VerdictRecord>,
    judges: Vec<JudgeRecord>,
    close: Option<(u32, &str)>,
    materials: Materials,
    (ledger_entries, gate_entries): (&[ledger::Entry], &[gate::GateEntry]),
) -> LoopRecord {
    // The image of the exam that decided: the last one that was not the
    // base commit's baseline count.
    let image_digest = verdicts
        .iter()
        .rev()
        .find(|v| v.phase != Phase::Baseline)
        .or(verdicts.last())
        .map(|v| v.image_digest.clone())
        .unwrap_or_default();
    let answers = ledger::answers_for(ledger_entries, src.answer_key, &spec.id)
        .into_iter()
        .map(|a| AnswerRecord {
            by: "answer-auth key".into(),
            ts: a.ts_ms,
            text: a.text,
        })
        .collect();
    let approvals = gate::decisions(gate_entries, src.approvers, &spec.id)
        .into_iter()
        .map(|d| ApprovalRecord {
            by: d.approver,
            ts: d.ts,
            commit: d.commit,
            decision: if d.approved { "approve".into() } else { d.text },
        })
        .collect();
    LoopRecord {
        id: spec.id.clone(),
        exam: spec.done_when.clone(),
        materials,
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| src.default_image.clone()),
        image_digest,
        network: describe(&spec.verifier_network),
        runs: close.map(|(runs, _)| runs),
        closed_on: close.map(|(_, commit)| commit.to_string()),
        verdicts,
        judges,
        answers,
        approvals,
    }
}

fn describe(network: &Network) -> String {
    match network {
        Network::None => "none".into(),
        Network::Open => "open".into(),
        Network::Hosts(hosts) => hosts.join(","),
    }
}

pub(super) fn oid(text: &str) -> Result<Oid, AttestError> {
    Oid::from_str(text).map_err(|_| AttestError::BadCommit {
        commit: text.to_string(),
    })
}

/// Reads the events file; a missing one is empty.
pub fn read_events(path: &Path) -> Result<String, AttestError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(AttestError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::EVENTS_VERSION;

    /// The events of a closed `proctor once` run on `commit`, whose
    /// `run_start` recorded `once`.
    fn once_events(commit: &str, once: Option<&str>) -> String {
        let events = [
            Event::RunStart {
                root: "once".into(),
                branch: "proctor/once".into(),
                base: commit.into(),
                manifest: "proctor once".into(),
                engine: "docker".into(),
                pid: 1,
                once: once.map(str::to_string),
            },
            Event::Close {
                loop_id: "once".into(),
                runs: 0,
                commit: commit.into(),
            },
            Event::RunEnd {
                outcome: Outcome::Closed,
                exit: 0,
                secs: 1.0,
            },
        ];
        events
            .into_iter()
            .map(|event| {
                let record = Record {
                    v: EVENTS_VERSION,
                    ts: 1.0,
                    run: "r1".into(),
                    event,
                };
                serde_json::to_string(&record).unwrap() + "\n"
            })
            .collect()
    }

    #[test]
    fn a_once_run_is_attested_from_its_recorded_loop_and_one_that_recorded_none_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("repo")).unwrap();
        std::fs::write(dir.path().join("repo/test.sh"), "exit 0\n").unwrap();
        let git = GitRepo::init_with_commit(&dir.path().join("repo"), "base").unwrap();
        let commit = git.head().unwrap().unwrap().to_string();
        let answer_key = AnswerKey::load_or_create(&dir.path().join("keys")).unwrap();
        let approvers = Trusted::default();
        let statement = |events: &str| {
            build(
                &Sources {
                    git: &git,
                    events,
                    answer_key: &answer_key,
                    approvers: &approvers,
                    default_image: "host".into(),
                },
                "r1",
            )
        };

        let doc = r#"{"loop":"once","done_when":"sh test.sh","protected":["test.sh"]}"#;
        let s = statement(&once_events(&commit, Some(doc))).unwrap();
        let p = &s.predicate;
        assert_eq!(p.manifest, "proctor once");
        assert_eq!(p.once.as_deref(), Some(doc));
        assert_eq!(
            p.manifest_sha256,
            hex::encode(crate::protect::fsafe::sha256(doc.as_bytes()))
        );
        assert_eq!(p.loops.len(), 1);
        assert_eq!(p.loops[0].exam, "sh test.sh");
        assert_eq!(p.loops[0].image, "host");
        assert_eq!(p.loops[0].materials.files, 1);

        let refused = statement(&once_events(&commit, None)).unwrap_err();
        assert!(
            matches!(&refused, AttestError::NoManifest { manifest, .. } if manifest == "proctor once"),
            "{refused}"
        );
    }
}
