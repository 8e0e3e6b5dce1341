//! The planner's containers: `proctor plan`'s drafting agent and its
//! critic, caged like any agent (by the attempt's own builder,
//! `caged_agent`: the preset's command and variables, the config's mounts
//! and toolchain variables, the agent's network, the loop's limits), on a
//! scratch copy of the committed tree mounted read-only at `/work`. Only
//! the files the caller names are writable in it (the proposal). What
//! they answer is never a verdict: `proctor plan` checks the proposal
//! itself.

use std::path::{Path, PathBuf};

use super::{io_err, Engine, EngineError};
use crate::cage::{Access, Cage, Mount};
use crate::manifest::LoopSpec;
use crate::state;

/// What one planner container did.
#[derive(Debug, Clone)]
pub struct PlannerRun {
    pub exit: i64,
    pub timed_out: bool,
    pub secs: f64,
    /// The whole output (up to the log's cap), read back from the log.
    pub output: String,
    /// The log file, relative to the repository.
    pub log: String,
}

impl<C: Cage> Engine<'_, C> {
    /// Runs `spec`'s agent once on `tree` (read-only at `/work`) with
    /// `prompt` on stdin; the files `writable` (relative to `tree`, each
    /// already there) are bind-mounted writable over their read-only
    /// copies. The log goes to `.proctor/logs/<log_name>`.
    pub async fn run_planner(
        &mut self,
        spec: &LoopSpec,
        tree: &Path,
        writable: &[&str],
        prompt: String,
        log_name: &str,
    ) -> Result<PlannerRun, EngineError> {
        let agent = self
            .agent_for(spec)
            .ok_or_else(|| EngineError::NoAgent(spec.id.clone()))?;
        self.image_id(&self.image_for(spec)).await?;
        state::ensure_dir(&self.paths.logs).map_err(io_err(&self.paths.logs))?;
        let log: PathBuf = self.paths.logs.join(log_name);
        let mut mounts = vec![Mount {
            host: tree.to_path_buf(),
            container: "/work".into(),
            access: Access::ReadOnly,
        }];
        for rel in writable {
            mounts.push(Mount {
                host: tree.join(rel),
                container: format!("/work/{rel}"),
                access: Access::ReadWrite,
            });
        }
        let invocation = self.caged_agent(
            spec,
            None,
            agent,
            mounts,
            Some(prompt.into_bytes()),
            log.clone(),
        );
        let limits = self.limits_for(spec);
        let outcome = self.cage.run_with_limits(invocation, &limits).await?;
        let output = match std::fs::read(&log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => format!("{}{}", outcome.output_head, outcome.output_tail),
        };
        Ok(PlannerRun {
            exit: outcome.exit_code,
            timed_out: outcome.timed_out,
            secs: outcome.duration.as_secs_f64(),
            output,
            log: self.paths.rel(&log),
        })
    }
}
