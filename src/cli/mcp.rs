//! `proctor mcp`: the verbs an agent may use, as an MCP server on stdio.
//!
//! Each tool runs the verb's own code in this process (its output captured,
//! `views::out::capture`), never a second proctor; a run is started the way
//! `proctor run --bg` starts one, so it outlives the server. What it must
//! never do: approve or reject a gate. A gate's decision is signed with the
//! human's approver key by a human at a terminal; an MCP client is an
//! agent, so every such call is refused with that reason.

use std::path::PathBuf;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, ServerHandler, ServiceExt};
use serde_json::json;

use super::CommandError;
use crate::git::GitRepo;
use crate::state::gate::is_approval;
use crate::state::Paths;
use crate::views::out::{capture_blocking, reserve_stdout};
use crate::views::{history, json, text, ManifestFile, View};

/// Serve this repository to your agent: an MCP server on stdin/stdout.
///
/// For Claude Code, Codex and other MCP clients (see the README for how
/// to add it). Its tools: start a run in the background, status, the
/// watch snapshot (JSON), inbox, runs, audit, lint, stop and answer. It
/// never approves or rejects a gate: that needs your key and you at a
/// terminal.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serve this repository instead of the working directory's (for
    /// clients that start servers elsewhere).
    #[arg(long, short = 'C', value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub manifest: ManifestFile,
}

pub async fn cmd_mcp(args: Args) -> Result<i32, CommandError> {
    if let Some(dir) = &args.dir {
        std::env::set_current_dir(dir)
            .map_err(|e| CommandError::user(format!("--dir `{}`: {e}", dir.display())))?;
    }
    // stdout is the protocol from here on: stray output goes to stderr.
    reserve_stdout();
    let server = Proctor {
        file: args.manifest.file,
        tool_router: Proctor::tool_router(),
    };
    let service =
        server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| CommandError::Internal {
                message: format!("cannot start the MCP server on stdio: {e}"),
            })?;
    service
        .waiting()
        .await
        .map_err(|e| CommandError::Internal {
            message: format!("the MCP server failed: {e}"),
        })?;
    Ok(0)
}

/// Why no MCP call may approve or reject a gate.
pub const NEVER_APPROVE: &str = "refused: a gate's approval or rejection is signed with the human's approver key by a human at a terminal (`proctor answer LOOP approve`), never through MCP, which an agent drives";

#[derive(Debug, Clone)]
struct Proctor {
    /// `--file`: the manifest, when not the default.
    file: Option<PathBuf>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct StartParams {
    /// Run only this loop (and its children) instead of the whole tree.
    #[serde(rename = "loop", default)]
    loop_id: Option<String>,
    /// Agent command for loops that name none.
    #[serde(default)]
    agent: Option<String>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct RunsParams {
    /// Show at most this many (the most recent); 20 when absent.
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AuditParams {
    /// The run id (or a prefix of it), or `all`; the latest run when absent.
    #[serde(default)]
    run: Option<String>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AnswerParams {
    /// The loop to answer, as named on its card in `INBOX/`.
    #[serde(rename = "loop")]
    loop_id: String,
    /// The answer: it goes into the loop's next prompt.
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct ApproveParams {
    /// The gated loop.
    #[serde(rename = "loop", default)]
    #[allow(dead_code)]
    loop_id: Option<String>,
}

/// A verb's result as a tool's: its exit code and what it printed; a
/// verb's error is a tool error carrying the message and hint.
fn verb_result((result, output): (Result<i32, CommandError>, String)) -> CallToolResult {
    match result {
        Ok(exit) => CallToolResult::structured(json!({ "exit": exit, "output": output })),
        Err(e) => {
            let mut text = output;
            text.push_str(&e.render());
            CallToolResult::error(vec![ContentBlock::text(text)])
        }
    }
}

/// A blocking verb's result (see [`capture_blocking`]).
async fn blocking(
    verb: impl FnOnce() -> Result<i32, CommandError> + Send + 'static,
) -> Result<CallToolResult, ErrorData> {
    match capture_blocking(verb).await {
        Ok(done) => Ok(verb_result(done)),
        Err(e) => Err(ErrorData::internal_error(
            format!("the verb failed: {e}"),
            None,
        )),
    }
}

/// Runs an async verb to its end on a runtime of its own, on the calling
/// (blocking) thread: `lint` and `stop` wait on the engine and sleep.
fn on_own_runtime(
    verb: impl std::future::Future<Output = Result<i32, CommandError>>,
) -> Result<i32, CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Internal {
            message: format!("cannot start an async runtime: {e}"),
        })?;
    runtime.block_on(verb)
}

fn error_result(e: CommandError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.render())])
}

fn refused() -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(NEVER_APPROVE)])
}

impl Proctor {
    fn view(&self) -> Result<View, CommandError> {
        let manifest = ManifestFile {
            file: self.file.clone(),
        };
        let ctx = manifest.context(&super::cwd()?)?;
        Ok(View::build(&ctx))
    }
}

#[tool_router]
impl Proctor {
    #[tool(
        name = "start_run",
        description = "Start `proctor run` in the background for this repository (as `proctor run --bg`): it outlives this server. Returns once the run holds the repository's lock (or has already ended: then `exit` is its exit code, 0 closed, 3 blocked, 4 gated). Follow it with `watch`."
    )]
    async fn start_run(
        &self,
        Parameters(p): Parameters<StartParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let args = super::run::Args {
            root: p.loop_id,
            file: self.file.clone(),
            agent: p.agent,
            plain: false,
            bg: true,
            skip_if_running: false,
            dry_run: false,
            detached_child: false,
        };
        blocking(move || super::run::start_detached(&args)).await
    }

    #[tool(
        name = "status",
        description = "Where every loop stands (done, running, waiting, blocked, gated, untouched), runs used of each budget and the next command, as text. Read-only."
    )]
    async fn status(&self) -> Result<CallToolResult, ErrorData> {
        Ok(match self.view() {
            Ok(view) => CallToolResult::success(vec![ContentBlock::text(text::tree(
                &view,
                "proctor status",
                false,
            ))]),
            Err(e) => error_result(e),
        })
    }

    #[tool(
        name = "watch",
        description = "One snapshot of the repository's run as JSON (the `proctor watch --json` shape: root, outcome, exit, ended, branch, tree, cards). Poll it to follow a run: `ended` is true and `exit` set once the run is over. Read-only."
    )]
    async fn watch(&self) -> Result<CallToolResult, ErrorData> {
        Ok(match self.view() {
            Ok(view) => CallToolResult::structured(json::to_json(&view)),
            Err(e) => error_result(e),
        })
    }

    #[tool(
        name = "inbox",
        description = "Every blocked or gated loop waiting for a person (its card in INBOX/), as JSON `cards` and as text with the command to answer it. Read-only."
    )]
    async fn inbox(&self) -> Result<CallToolResult, ErrorData> {
        Ok(match self.view() {
            Ok(view) => {
                let all = json::to_json(&view);
                let mut result = CallToolResult::structured(json!({ "cards": all["cards"] }));
                result.content = vec![ContentBlock::text(text::inbox(&view, false))];
                result
            }
            Err(e) => error_result(e),
        })
    }

    #[tool(
        name = "runs",
        description = "Past runs of this repository (newest last): start, loop tree, outcome, duration, agent runs and agent time, as JSON. Read-only."
    )]
    async fn runs(
        &self,
        Parameters(p): Parameters<RunsParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let manifest = ManifestFile {
            file: self.file.clone(),
        };
        let ctx = match super::cwd().and_then(|cwd| Ok(manifest.context(&cwd)?)) {
            Ok(ctx) => ctx,
            Err(e) => return Ok(error_result(e)),
        };
        let rows = history::runs(&ctx.records, ctx.holder);
        let skip = rows.len().saturating_sub(p.limit.unwrap_or(20));
        let rows = serde_json::to_value(&rows[skip..]).unwrap_or_default();
        Ok(CallToolResult::structured(json!({ "runs": rows })))
    }

    #[tool(
        name = "audit",
        description = "The trail of a run (every event, what each exam said, every answer and gate decision), as text. Read-only."
    )]
    async fn audit(
        &self,
        Parameters(p): Parameters<AuditParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let args = super::audit::Args {
            run: p.run,
            json: false,
        };
        blocking(move || super::audit::cmd_audit(args)).await
    }

    #[tool(
        name = "lint",
        description = "Validate the manifest and administer every loop's exam once in a verifier container on HEAD (`proctor lint`): `exit` 0 when every exam can be administered."
    )]
    async fn lint(&self) -> Result<CallToolResult, ErrorData> {
        let args = super::lint::Args {
            file: self.file.clone(),
            verbose: false,
            // A judge usually calls a paid model: only a person asks that.
            judges: false,
        };
        blocking(move || on_own_runtime(super::lint::cmd_lint(args))).await
    }

    #[tool(
        name = "stop",
        description = "End this repository's active run with its containers (`proctor stop`); the state is kept and `start_run` resumes it."
    )]
    async fn stop(&self) -> Result<CallToolResult, ErrorData> {
        let args = super::stop::Args {
            timeout: std::time::Duration::from_secs(60),
        };
        blocking(move || on_own_runtime(super::stop::cmd_stop(args))).await
    }

    #[tool(
        name = "answer",
        description = "Answer a blocked loop with text (`proctor answer LOOP TEXT`): it goes into the loop's next prompt and refreshes its budget once; `start_run` continues. A gated loop cannot be answered here: approving or rejecting a gate needs the human's key at a terminal."
    )]
    async fn answer(
        &self,
        Parameters(p): Parameters<AnswerParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let gated = super::cwd()
            .and_then(|cwd| Ok(GitRepo::open(&cwd)?))
            .map(|git| {
                let paths = Paths::new(git.root());
                super::answer::is_gated(&git, &paths, &p.loop_id)
            });
        match gated {
            Err(e) => return Ok(error_result(e)),
            Ok(true) => return Ok(refused()),
            Ok(false) if is_approval(&p.text) => return Ok(refused()),
            Ok(false) => {}
        }
        let args = super::answer::Args {
            loop_id: p.loop_id,
            text: vec![p.text],
        };
        blocking(move || super::answer::cmd_answer(args)).await
    }

    #[tool(
        name = "approve",
        description = "Always refused: a gate is approved only by a human with their approver key at a terminal (`proctor answer LOOP approve`). Listed so an agent learns why."
    )]
    async fn approve(
        &self,
        Parameters(_): Parameters<ApproveParams>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(refused())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Proctor {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("proctor", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "proctor keeps an AI coding agent working on this git repository until its exam passes. \
                 Start a run with `start_run`, follow it by polling `watch` until `ended` is true, \
                 read `inbox` for loops waiting for a person and `answer` a blocked one. \
                 Gates are never approved here: that is the human's, at a terminal.",
            )
    }
}
