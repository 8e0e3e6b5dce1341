//! The judge step: a second opinion on a pass, in a container of its own
//! with no tree (an empty working directory, the rubric and the candidate
//! diff on stdin). It can only take a pass away: see `crate::judge`.

use super::events::{Event, Phase, Verdict};
use super::{io_err, short, Engine, EngineError, Exam, LOG_CAP};
use crate::cage::{Cage, Invocation, Role, JUDGE_WORKDIR};
use crate::git::Oid;
use crate::judge::{self, Ruling};
use crate::manifest::LoopSpec;
use crate::state;

impl<C: Cage> Engine<'_, C> {
    /// Asks the config's judge about the pass of `spec`'s exam on
    /// `commit`: `None` when the loop has no `judge:`. A loop with a rubric
    /// and no judge configured is vetoed (never a silent pass); a judge
    /// whose container fails is a veto too, unless the engine went away.
    pub(super) async fn judge(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
        run: u32,
    ) -> Result<Option<Ruling>, EngineError> {
        let Some(rubric) = spec.judge.clone() else {
            return Ok(None);
        };
        let id = spec.id.clone();
        let log = self.paths.logs.join(format!("{id}.run{run}.judge.log"));
        let Some(config) = self.settings.judge.clone() else {
            let ruling = Ruling {
                pass: false,
                reason: format!(
                    "loop `{id}` has `judge:` but `.proctor/config.yaml` names no judge command"
                ),
            };
            self.emit_ruling(spec, commit, run, &ruling, None, &log);
            return Ok(Some(ruling));
        };
        state::ensure_dir(&self.paths.logs).map_err(io_err(&self.paths.logs))?;
        let entries = self.git.changed_entries(self.base, commit)?;
        let diff = judge::diff_text(&entries);
        let stdin = judge::stdin(&rubric, &self.base.to_string(), &commit.to_string(), &diff);
        let image = self.image_for(spec);
        let invocation = Invocation {
            image: image.clone(),
            command: config.command.clone(),
            workdir: JUDGE_WORKDIR.into(),
            // Toolchains and agent CLIs the operator mounts, never
            // writable, and never the tree.
            mounts: self.extra_mounts(Role::Judge),
            env: self.settings.judge_env.clone(),
            stdin: Some(stdin),
            network: self.network_for(spec, Role::Judge),
            user: self.settings.user.clone(),
            labels: self.labels(spec, Role::Judge),
            timeout: config.timeout,
            log: log.clone(),
            log_cap: LOG_CAP,
        };
        let ran = match self.image_id(&image).await {
            Ok(_) => {
                let limits = self.limits_for(spec);
                self.cage
                    .run_with_limits(invocation, &limits)
                    .await
                    .map_err(EngineError::from)
            }
            Err(e) => Err(e),
        };
        let outcome = match ran {
            Ok(outcome) => outcome,
            Err(EngineError::Cage(e)) if e.engine_went_away() => return Err(e.into()),
            Err(e) => {
                let ruling = Ruling {
                    pass: false,
                    reason: format!("the judge could not run: {e}"),
                };
                self.emit_ruling(spec, commit, run, &ruling, None, &log);
                return Ok(Some(ruling));
            }
        };
        if self.engine_stopped_it(&outcome).await {
            return Err(EngineError::EngineGone {
                during: format!("the judge of loop `{id}` ran"),
            });
        }
        self.record_denials(
            spec,
            run,
            Role::Judge,
            &outcome.network_denied,
            &outcome.container_id,
        );
        let ruling = judge::rule(
            outcome.exit_code,
            outcome.timed_out,
            config.timeout,
            &outcome.output_head,
        );
        self.emit_ruling(spec, commit, run, &ruling, Some(&outcome), &log);
        if ruling.pass && spec.judged_only().is_some() {
            self.report.verified.push(format!(
                "loop `{id}`: judged, not examined: the judge (`{}`) answered `PASS` on commit {} (judge container {}, no tree, network {}); no exam ran",
                config.command,
                short(&commit.to_string()),
                short(&outcome.container_id),
                self.network_for(spec, Role::Judge).describe(),
            ));
        } else if ruling.pass {
            self.report.verified.push(format!(
                "loop `{id}`: the judge (`{}`) raised no veto on commit {} (judge container {}, no tree, network {})",
                config.command,
                short(&commit.to_string()),
                short(&outcome.container_id),
                self.network_for(spec, Role::Judge).describe(),
            ));
        }
        Ok(Some(ruling))
    }

    /// Asks the judge about `commit` (its diff from the engine's base)
    /// once, outside any loop's run: `proctor judge`.
    pub async fn judge_once(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
    ) -> Result<Ruling, EngineError> {
        let ruling = self.judge(spec, commit, 0).await?;
        Ok(ruling.unwrap_or(Ruling {
            pass: false,
            reason: "no rubric was given".into(),
        }))
    }

    /// Lute's judge as a loop's only exam (`done_when: "judge: ..."`): no
    /// verifier runs, the judge's answer is the verdict (the one place a
    /// judge grants a pass, as Lute did), and the report marks the loop
    /// judged, not examined.
    pub(super) async fn examine_by_judge(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
        phase: Phase,
        run: u32,
    ) -> Result<Exam, EngineError> {
        let id = spec.id.clone();
        (self.emit)(Event::CheckStart {
            loop_id: id.clone(),
            phase,
            commit: commit.to_string(),
        });
        let log = self.paths.logs.join(format!("{id}.run{run}.judge.log"));
        let ruling = if self.judging {
            self.judge(spec, commit, run).await?
        } else {
            None
        };
        let reason = match &ruling {
            Some(r) if r.pass => None,
            Some(r) => Some(format!("the judge vetoed it: {}", r.reason)),
            None => Some("the judge was not asked".to_string()),
        };
        let verdict = if reason.is_none() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let exit = i64::from(verdict != Verdict::Pass);
        let output = reason
            .as_ref()
            .map(|why| {
                format!("[proctor: loop `{id}` is judged, not examined (its `done_when` is a judge's rubric): {why}]\n")
            })
            .unwrap_or_default();
        let commit_text = commit.to_string();
        (self.emit)(Event::CheckResult {
            loop_id: id.clone(),
            phase,
            verdict,
            exit,
            timed_out: false,
            secs: 0.0,
            commit: commit_text.clone(),
            container: String::new(),
            image: String::new(),
            log: self.paths.rel(&log),
            streak: None,
            reason: reason.clone(),
        });
        let unverified = format!(
            "loop `{id}` is judged, not examined: its `done_when` is a judge's rubric (Lute's `judge: ...`), so no exam's exit code backs its verdict, only the judge's word"
        );
        if !self.report.unverified.contains(&unverified) {
            self.report.unverified.push(unverified);
        }
        if let (Some(why), true) = (&reason, phase != Phase::Precheck) {
            self.report.boundary.push(format!(
                "loop `{id}`: attempt at commit {} rejected: {why}",
                short(&commit_text)
            ));
        }
        Ok(Exam {
            verdict,
            exit,
            timed_out: false,
            secs: 0.0,
            output,
            log: self.paths.rel(&log),
            ruling,
        })
    }

    fn emit_ruling(
        &mut self,
        spec: &LoopSpec,
        commit: Oid,
        run: u32,
        ruling: &Ruling,
        outcome: Option<&crate::cage::Outcome>,
        log: &std::path::Path,
    ) {
        (self.emit)(Event::Judged {
            loop_id: spec.id.clone(),
            run,
            commit: commit.to_string(),
            pass: ruling.pass,
            reason: ruling.reason.clone(),
            exit: outcome.map_or(-1, |o| o.exit_code),
            timed_out: outcome.is_some_and(|o| o.timed_out),
            secs: outcome.map_or(0.0, |o| o.duration.as_secs_f64()),
            container: outcome.map(|o| short(&o.container_id)).unwrap_or_default(),
            image: outcome.map(|o| o.image_id.clone()).unwrap_or_default(),
            log: self.paths.rel(log),
        });
    }
}
