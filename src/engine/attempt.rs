//! The agent step: one attempt in a container on the live tree, then a commit.

use super::boundary::{self, MarkedAttempt};
use super::events::Event;
use super::policy::{Breach, TreeCaps};
use super::{history, io_err, prompt, short, Engine, EngineError, AGENT_TIMEOUT, LOG_CAP};
use crate::cage::{Access, Cage, Invocation, Mount, Outcome, Role};
use crate::manifest::{preset, LoopSpec};
use crate::state::{self, ledger};

/// What a container's exit code is when its main process died of SIGTERM
/// or SIGKILL (128 + the signal), as an engine that stops reports it.
const KILLED_BY_SIGNAL: [i64; 2] = [128 + 15, 128 + 9];

impl<C: Cage> Engine<'_, C> {
    /// One attempt: the agent in a container on the live tree, then a commit.
    /// Returns (run number, agent exit code, seconds, whether it edited).
    pub(super) async fn attempt(
        &mut self,
        spec: &LoopSpec,
        failure: &str,
        notes: &[String],
    ) -> Result<(u32, i64, f64, bool), EngineError> {
        let id = spec.id.clone();
        let agent = self
            .agent_for(spec)
            .ok_or_else(|| EngineError::NoAgent(id.clone()))?;
        let run = self.runs.get(&id).copied().unwrap_or(0) + 1;
        let started = self.clock.now();
        let image = self.image_for(spec);
        self.image_id(&image).await?;

        let journal_path = self.paths.journal_for(&id);
        if !journal_path.exists() {
            let header = format!("# Journal of loop `{id}`\n\n");
            state::write_file(&journal_path, header.as_bytes()).map_err(io_err(&journal_path))?;
        }
        let journal = state::read_tail(&journal_path, prompt::JOURNAL_MAX).unwrap_or_default();
        let answers: Vec<String> = ledger::answers_for(&self.ledger_entries(), self.key, &id)
            .into_iter()
            .map(|a| a.text)
            .collect();
        let journal_rel = self.paths.rel(&journal_path);
        // The runs allowed now: each answer refreshes the budget once (as
        // `budget_spent` counts), so run 3 after one refresh of 2 reads
        // "run 3/4", not "run 3/2".
        let allowed = spec
            .budget
            .runs
            .map(|cap| cap.saturating_mul(1 + answers.len() as u32));
        let text = prompt::build(&prompt::PromptParts {
            spec,
            run,
            cap: allowed,
            failure,
            answers: &answers,
            journal_rel: &journal_rel,
            journal: &journal,
            notes,
        });

        let log = self.paths.logs.join(format!("{id}.run{run}.log"));
        state::ensure_dir(&self.paths.logs).map_err(io_err(&self.paths.logs))?;
        (self.emit)(Event::AgentStart {
            loop_id: id.clone(),
            run,
            of: allowed,
            log: self.paths.rel(&log),
            image: image.clone(),
        });
        let mut invocation =
            self.agent_invocation(spec, run, agent, Some(text.into_bytes()), log.clone())?;
        let cut_by_budget;
        (invocation.timeout, cut_by_budget) = self.within_wall(spec, invocation.timeout);
        self.mark_attempt(&id, run, started)?;
        let limits = self.limits_for(spec);
        // On an error the marker stays: the next run settles the attempt.
        let outcome = self.cage.run_with_limits(invocation, &limits).await?;
        if self.engine_stopped_it(&outcome).await {
            return Err(EngineError::EngineGone {
                during: format!("the agent of loop `{id}` ran (run {run})"),
            });
        }
        let secs = outcome.duration.as_secs_f64();
        // Before anything lists the tree's changes: a flood of files is
        // refused (and undone) by a walk of bounded memory.
        let over = self.measure_caps(spec)?;
        let edits = over.is_some() || self.agent_edited()?;
        (self.emit)(Event::AgentEnd {
            loop_id: id.clone(),
            run,
            exit: outcome.exit_code,
            timed_out: outcome.timed_out,
            secs,
            edits,
            container: short(&outcome.container_id),
            image: outcome.image_id.clone(),
        });
        if !edits && !outcome.timed_out && matches!(outcome.exit_code, 126 | 127) {
            // The agent never ran: charging a run for it would burn the
            // budget on a command that is not there.
            let output = format!("{}\n{}", outcome.output_head, outcome.output_tail);
            if let Some(why) = super::runnable::cannot_run(outcome.exit_code, &output) {
                self.clear_attempt();
                return Err(EngineError::AgentCannotRun {
                    loop_id: id,
                    run,
                    why,
                    tail: super::runnable::tail_lines(&output, 12).join("\n"),
                    log: self.paths.rel(&log),
                });
            }
        }
        self.record_denials(
            spec,
            run,
            Role::Agent,
            &outcome.network_denied,
            &outcome.container_id,
        );
        if outcome.timed_out && cut_by_budget {
            self.report.boundary.push(format!(
                "loop `{id}`: run {run}: the agent was stopped when the loop's time budget ended"
            ));
        } else if outcome.timed_out {
            self.report.boundary.push(format!(
                "loop `{id}`: run {run}: the agent was killed at its timeout"
            ));
        }
        if !edits {
            self.report
                .boundary
                .push(format!("loop `{id}`: run {run}: the agent changed nothing"));
        }
        self.report.agent_runs += 1;
        self.report.agent_secs += secs;
        // Before the protection check: a quarantine would copy what is
        // over the caps, and a commit would write it into `.git`.
        let rejected = over.map(|(breach, caps)| self.reject(spec, run, breach, caps));
        self.guard_after_agent(spec, run)?;

        // The ledger's size before this run's line: if the commit fails
        // (a full disk), the line goes again, so the ledger never records
        // a run the branch does not have.
        let ledger_before = std::fs::symlink_metadata(&self.paths.ledger)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        ledger::append(
            &self.paths.ledger,
            &ledger::Entry::Run {
                v: ledger::LEDGER_VERSION,
                loop_id: id.clone(),
                run,
                secs,
                exit: outcome.exit_code,
                ts: self.clock.now() as i64,
            },
        )
        .map_err(io_err(&self.paths.ledger))?;
        let mut message = history::run_message(&id, run, started, secs, outcome.exit_code);
        if let Some(cap) = rejected {
            message.push_str(&format!("Proctor-Rejected: over the `{cap}` cap\n"));
        }
        let commit = match self.commit(&message, &|p| state::is_private(p)) {
            Ok(commit) => commit,
            Err(error) => {
                // Best effort: the commit's error is the one to report.
                let _ = state::truncate_to(&self.paths.ledger, ledger_before);
                return Err(error);
            }
        };
        self.clear_attempt();
        self.runs.insert(id.clone(), run);
        self.attempted.insert(id.clone());
        (self.emit)(Event::Commit {
            loop_id: id,
            run,
            commit: commit.to_string(),
        });
        Ok((run, outcome.exit_code, secs, edits))
    }

    /// Holds the tree the attempt would commit to the loop's caps
    /// (`resources: {tree, files, file}`), measured before anything is
    /// written to `.git`. Over one, the attempt's edits are undone (the
    /// tree goes back to the last commit) and the breach is returned for
    /// [`Self::reject`]: an event names the cap, and the next prompt says
    /// why; the attempt is still committed (with the last commit's tree)
    /// and counts.
    pub(super) fn measure_caps(
        &mut self,
        spec: &LoopSpec,
    ) -> Result<Option<(Breach, TreeCaps)>, EngineError> {
        let caps = self.caps_for(spec);
        let skip = |p: &str| state::is_private(p);
        // A bounded walk first: a flood of new files is over the caps
        // before git's status list (which holds every path) is built.
        let lower = self
            .git
            .scan_size(&skip, &|size| caps.breach(size).is_some())?;
        let breach = match caps.breach(&lower) {
            Some(breach) => breach,
            None => {
                let size = self.git.pending_size(&skip)?;
                let Some(breach) = caps.breach(&size) else {
                    return Ok(None);
                };
                breach
            }
        };
        self.check_workspace()?;
        self.git.restore_head()?;
        Ok(Some((breach, caps)))
    }

    /// Reports an attempt [`Self::measure_caps`] rejected: the event, the
    /// report's line and the note for the next prompt. Returns the cap.
    fn reject(
        &mut self,
        spec: &LoopSpec,
        run: u32,
        breach: Breach,
        caps: TreeCaps,
    ) -> &'static str {
        let what = breach.describe();
        (self.emit)(Event::CapExceeded {
            loop_id: spec.id.clone(),
            run,
            cap: breach.cap.to_string(),
            limit: breach.limit,
            size: breach.size,
            path: breach.path.clone(),
        });
        self.report.boundary.push(format!(
            "loop `{}`: run {run} was rejected before its commit: {what}; its edits were undone (nothing of them was committed) and the run counted",
            spec.id
        ));
        self.pending_notes.push(format!(
            "run {run} was rejected and none of its edits were kept: {what}. Each attempt's tree must stay within {} files, {} in all and {} per file (`resources:` in the manifest sets these caps).",
            caps.files,
            super::fmt_bytes(caps.tree),
            super::fmt_bytes(caps.file)
        ));
        breach.cap
    }

    /// Whether the agent (or anything else) changed the tree outside
    /// proctor's state and the cards.
    fn agent_edited(&self) -> Result<bool, EngineError> {
        Ok(!self
            .git
            .dirty_paths(&|p| p.starts_with(".proctor/") || p.starts_with("INBOX/"))?
            .is_empty())
    }

    /// Whether a container that died of SIGTERM or SIGKILL (not at its
    /// timeout) was stopped by its engine going away: then the exit code is
    /// the engine's doing, not the command's, and no attempt or verdict may
    /// be recorded from it.
    pub(super) async fn engine_stopped_it(&self, outcome: &Outcome) -> bool {
        !outcome.timed_out
            && KILLED_BY_SIGNAL.contains(&outcome.exit_code)
            && !self.cage.answers().await
    }

    /// Settles an attempt that a killed run (or a lost engine) left
    /// uncommitted, before anything else runs, so that its leftovers never
    /// end up in the next agent's commit. With edits, the protection check
    /// runs on them as after any agent and they are committed as that
    /// attempt, `run N (interrupted)`, which counts against the budget.
    /// Without edits (outside proctor's state), the attempt is not charged
    /// and run N is used again. Either way the event says so, and the
    /// interrupted attempt's log is kept beside the one that redoes it.
    pub(super) async fn settle_interrupted(&mut self, root: &LoopSpec) -> Result<(), EngineError> {
        let Some(marked) = boundary::marked_attempt(&self.paths) else {
            if boundary::attempt_interrupted(&self.paths) {
                // A marker cut short by a crash names no attempt: if the
                // tree holds edits, they are committed under the root loop.
                self.settle_unnamed(root).await?;
            }
            return Ok(());
        };
        let MarkedAttempt {
            loop_id,
            run,
            started,
        } = marked;
        let committed = self.runs.get(&loop_id).copied().unwrap_or(0);
        if run <= committed {
            // It was committed; only the marker's removal was cut short.
            self.clear_attempt();
            return Ok(());
        }
        let spec = match root.find(&loop_id) {
            Some(spec) => spec.clone(),
            // The loop left the manifest since: its edits are still its
            // own, checked against the root's write allow-list.
            None => LoopSpec {
                id: loop_id.clone(),
                children: Vec::new(),
                ..root.clone()
            },
        };
        let log = self.paths.logs.join(format!("{loop_id}.run{run}.log"));
        if log.is_file() {
            let kept = self
                .paths
                .logs
                .join(format!("{loop_id}.run{run}.interrupted.log"));
            let _ = std::fs::rename(&log, &kept);
        }
        let edits = self.agent_edited()?;
        if !edits {
            self.clear_attempt();
            self.report.boundary.push(format!(
                "loop `{loop_id}`: run {run} was cut short and left no edits; it was not charged"
            ));
            (self.emit)(Event::Interrupted {
                loop_id,
                run,
                edits: false,
                commit: None,
            });
            return Ok(());
        }
        let rejected = self
            .measure_caps(&spec)?
            .map(|(breach, caps)| self.reject(&spec, run, breach, caps));
        self.guard_after_agent(&spec, run)?;
        let mut message = history::interrupted_message(&loop_id, run, started);
        if let Some(cap) = rejected {
            message.push_str(&format!("Proctor-Rejected: over the `{cap}` cap\n"));
        }
        let commit = self.commit(&message, &|p| state::is_private(p))?;
        self.clear_attempt();
        self.runs.insert(loop_id.clone(), run);
        self.attempted.insert(loop_id.clone());
        if let Some(at) = started {
            self.started.entry(loop_id.clone()).or_insert(at);
        }
        self.report.boundary.push(format!(
            "loop `{loop_id}`: run {run} was cut short; its leftover edits were committed as that run ({}), charged against the budget",
            short(&commit.to_string())
        ));
        (self.emit)(Event::Interrupted {
            loop_id,
            run,
            edits: true,
            commit: Some(commit.to_string()),
        });
        Ok(())
    }

    /// [`Self::settle_interrupted`] for a marker that names no attempt.
    async fn settle_unnamed(&mut self, root: &LoopSpec) -> Result<(), EngineError> {
        let run = self.runs.get(&root.id).copied().unwrap_or(0) + 1;
        let marker = boundary::attempt_marker(&self.paths);
        let line = format!("{} {run}\n", root.id);
        state::write_file(&marker, line.as_bytes()).map_err(io_err(&marker))?;
        Box::pin(self.settle_interrupted(root)).await
    }

    /// The agent's container for run `run` of `spec`: the live tree at
    /// `/work` with `.git`, proctor's state and the cards read-only and the
    /// journal writable; only the environment names under `env:`. Also what
    /// `warm.rs` prepares ahead, so the two cannot drift apart.
    pub(super) fn agent_invocation(
        &self,
        spec: &LoopSpec,
        run: u32,
        agent: String,
        stdin: Option<Vec<u8>>,
        log: std::path::PathBuf,
    ) -> Result<Invocation, EngineError> {
        // The run's own worktree (or, outside a run, the checkout): never
        // the user's working tree with its ignored files.
        let root = self.paths.work.clone();
        // Mount targets must exist (and be real directories) before start.
        let work_inbox = root.join("INBOX");
        for dir in [
            &self.paths.state,
            &self.paths.work_state,
            &self.paths.journal,
            &self.paths.inbox,
            &work_inbox,
        ] {
            state::ensure_dir(dir).map_err(io_err(dir))?;
        }
        let mounts = vec![
            Mount {
                host: root.clone(),
                container: "/work".into(),
                access: Access::ReadWrite,
            },
            // An agent must not plant hooks or config that anything later
            // runs (in a worktree `.git` is a file naming the admin entry).
            Mount {
                host: root.join(".git"),
                container: "/work/.git".into(),
                access: Access::ReadOnly,
            },
            // proctor's records (the ledger, and outside a worktree also
            // events, logs and quarantine) are the host's: an agent can read
            // them, never forge them.
            Mount {
                host: self.paths.work_state.clone(),
                container: "/work/.proctor".into(),
                access: Access::ReadOnly,
            },
            // The journal is the agent's memory across runs.
            Mount {
                host: self.paths.journal.clone(),
                container: "/work/.proctor/journal".into(),
                access: Access::ReadWrite,
            },
            // Cards are written by the host only.
            Mount {
                host: self.paths.inbox.clone(),
                container: "/work/INBOX".into(),
                access: Access::ReadOnly,
            },
        ];
        Ok(self.caged_agent(spec, Some(run), agent, mounts, stdin, log))
    }

    /// An agent's container for `spec` over `mounts` (its `/work`), whoever
    /// asks: an attempt (run `run`) or `proctor plan`'s drafter and critic
    /// (no run). The config's mounts follow `mounts`; the environment is
    /// the config's toolchain variables (what `init` wrote: `PATH`,
    /// `CARGO_HOME`...) under the loop's and the preset's and proctor's
    /// own; the preset's command, the agent's network, the loop's image and
    /// timeout. One builder, so no agent's container drifts from another's.
    pub(super) fn caged_agent(
        &self,
        spec: &LoopSpec,
        run: Option<u32>,
        agent: String,
        mut mounts: Vec<Mount>,
        stdin: Option<Vec<u8>>,
        log: std::path::PathBuf,
    ) -> Invocation {
        mounts.extend(self.extra_mounts(Role::Agent));
        let chosen = preset::chosen(&agent);
        let mut env = self.agent_env(spec, chosen.as_ref());
        env.push(("PROCTOR_LOOP".into(), spec.id.clone()));
        if let Some(run) = run {
            env.push(("PROCTOR_RUN".into(), run.to_string()));
        }
        if let Some(slot) = self.settings.slot {
            env.push(("PROCTOR_SLOT".into(), slot.to_string()));
        }
        let env = super::with_toolchain_env(&self.settings.toolchain_env, env);
        Invocation {
            image: self.image_for(spec),
            command: match &chosen {
                Some(chosen) => chosen.command(),
                None => agent,
            },
            workdir: "/work".into(),
            mounts,
            env,
            stdin,
            network: self.network_for(spec, Role::Agent),
            user: self.settings.user.clone(),
            labels: self.labels(spec, Role::Agent),
            timeout: spec
                .timeout
                .or(self.settings.default_timeout)
                .unwrap_or(AGENT_TIMEOUT),
            log,
            log_cap: LOG_CAP,
        }
    }

    /// The agent's environment: the loop's `env:` names set on the host,
    /// and for a preset the variables its CLI reads (when set on the host)
    /// and those that make it run unattended.
    pub(super) fn agent_env(
        &self,
        spec: &LoopSpec,
        chosen: Option<&preset::Chosen>,
    ) -> Vec<(String, String)> {
        let mut env = self
            .settings
            .host_values(spec.env.iter().map(String::as_str));
        if let Some(chosen) = chosen {
            let preset = self.settings.host_values(
                chosen
                    .preset
                    .env
                    .iter()
                    .copied()
                    .filter(|name| !env.iter().any(|(n, _)| n == name)),
            );
            env.extend(preset);
            for (name, value) in chosen.preset.set {
                env.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        env
    }
}
