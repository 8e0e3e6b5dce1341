//! The `watch --json` shape: stable, documented in the README, for wrappers,
//! cron probes and dashboards. Keys are only ever added, never renamed or
//! removed; `v` says which version of the shape this is. Scripts should
//! match on `outcome` and each node's `word`; `mark` is decoration.

use serde_json::{json, Value};

use super::{Node, View};

pub const SHAPE_VERSION: u32 = 1;

pub fn to_json(view: &View) -> Value {
    json!({
        "v": SHAPE_VERSION,
        "root": view.root,
        "outcome": view.outcome.as_str(),
        "exit": view.exit,
        "ended": view.ended,
        "branch": view.branch,
        "run": view.run_id,
        "pid": view.pid,
        "started": view.started,
        "secs": view.secs.map(round1),
        "tree": node(&view.tree),
        "cards": view.cards.iter().map(|c| json!({
            "lid": c.card.loop_id,
            "kind": c.card.kind,
            "gated": c.gated,
            "answered": c.answered,
            "summary": c.card.title,
            "reason": c.card.reason,
            "path": c.card.path,
            "next": c.next,
            "approvals": c.approvals,
            "needed": c.needed,
        })).collect::<Vec<_>>(),
        "next": view.next(),
    })
}

fn node(n: &Node) -> Value {
    let s = &n.state;
    json!({
        "id": n.id,
        "depth": n.depth,
        "mark": s.word.mark(),
        "word": s.word.as_str(),
        "runs": s.runs,
        "budget_runs": n.budget_runs,
        "secs": round1(s.agent_secs),
        "active": s.doing.is_some(),
        "doing": s.doing.map(|d| d.as_str()),
        "run": s.run,
        "since": s.since,
        "next_check": s.next_check,
        "approvals": s.approvals,
        "needed": s.needed,
        "slot": s.slot,
        "branch": s.branch,
        "children": n.children.iter().map(node).collect::<Vec<_>>(),
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
