//! The web view's HTML: the fleet page, a run page and its live sections.
//! Every string from a repository (loop ids, card text, log and diff
//! lines: an agent or the code under test wrote many of them) goes
//! through `esc`; the only markup is this file's.

use std::fmt::Write;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::engine::events::{self, Event, Record};
use crate::engine::{fmt_secs, short};
use crate::git::GitRepo;
use crate::protect::review::Review;
use crate::state::Paths;
use crate::views::{self, text, Context, Node, View};

/// The run page's script: events arrive as `line`s, changed sections
/// replace their element.
pub const APP_JS: &str = r#""use strict";
const es = new EventSource(location.pathname + "/events");
const list = document.getElementById("events");
es.addEventListener("line", (e) => {
  const li = document.createElement("li");
  li.textContent = e.data;
  list.appendChild(li);
  while (list.children.length > 300) list.removeChild(list.firstChild);
  document.body.dataset.events = String(Number(document.body.dataset.events || 0) + 1);
});
es.addEventListener("section", (e) => {
  const m = JSON.parse(e.data);
  const el = document.getElementById(m.id);
  if (el) el.innerHTML = m.html;
});
es.onopen = () => { document.body.dataset.live = "yes"; };
"#;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em}\
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;max-height:30em}\
.word{display:inline-block;min-width:6em;font-weight:bold}\
.done{color:#18794e}.blocked{color:#b42318}.gated{color:#b54708}\
.card{border:1px solid #ccc;padding:.6em;margin:.6em 0}\
.flag{color:#b42318}ol#events{font-family:monospace;font-size:90%}";

/// HTML-escapes text (also for attribute values).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn doc(title: &str, body: &str, script: bool) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}{}</body></html>\n",
        esc(title),
        if script {
            "<script src=\"../app.js\"></script>\n"
        } else {
            ""
        }
    )
}

fn view_of(root: &Path) -> View {
    View::build(&Context::load(root, None))
}

/// Every repository with the state of its loop tree.
pub fn fleet(repos: &[std::path::PathBuf]) -> String {
    let mut body = String::from("<h1>proctor: runs on this machine</h1>\n");
    if repos.is_empty() {
        body.push_str("<p>No repositories yet: <code>proctor run</code> adds its repository here, or name repositories: <code>proctor serve REPO...</code>.</p>\n");
    }
    body.push_str("<ul id=\"fleet\">\n");
    for root in repos {
        let view = view_of(root);
        let _ = write!(
            body,
            "<li class=\"repo\"><a href=\"repo/{}\">{}</a> · <span class=\"outcome\">{}</span> · {}\n{}</li>\n",
            super::repo_id(root),
            esc(&root.display().to_string()),
            view.outcome.as_str(),
            esc(&text::run_line(&view)),
            tree_html(&view)
        );
    }
    body.push_str("</ul>\n");
    doc("proctor", &body, false)
}

/// A run page: its sections now, then kept live by the script.
pub fn repo(root: &Path, csrf: &str, note: Option<&str>) -> String {
    let mut body = format!(
        "<h1>proctor · {}</h1>\n<p><a href=\"../\">all repositories</a></p>\n",
        esc(&root.display().to_string())
    );
    if let Some(note) = note.filter(|n| !n.is_empty()) {
        let _ = writeln!(body, "<p id=\"note\"><b>{}</b></p>", esc(note));
    }
    for (id, html) in sections(root, csrf) {
        let _ = writeln!(body, "<section id=\"{id}\">{html}</section>");
    }
    body.push_str("<h2>Events</h2>\n<ol id=\"events\"></ol>\n");
    doc("proctor run", &body, true)
}

/// The run page's live sections, by element id.
pub fn sections(root: &Path, csrf: &str) -> Vec<(&'static str, String)> {
    let ctx = Context::load(root, None);
    let view = View::build(&ctx);
    let git = GitRepo::open(root).ok();
    let tip = git
        .as_ref()
        .and_then(|g| g.branch_tip(&view.branch).ok().flatten());
    let review = match (&git, tip) {
        (Some(git), Some(tip)) => crate::engine::history::base_of(git, tip)
            .ok()
            .and_then(|base| {
                git.changed_entries(base, tip)
                    .ok()
                    .map(|e| Review::new(&base.to_string(), &tip.to_string(), &e))
            }),
        _ => None,
    };
    let id = super::repo_id(root);
    vec![
        ("summary", summary_html(&view)),
        ("tree", format!("<h2>Loop tree</h2>{}", tree_html(&view))),
        (
            "cards",
            cards_html(&view, &id, csrf, tip.map(|t| t.to_string())),
        ),
        ("exams", exams_html(&ctx.records)),
        ("log", log_html(&ctx.paths, &ctx.records)),
        ("changes", changes_html(review.as_ref())),
    ]
}

fn summary_html(view: &View) -> String {
    format!(
        "<p>Loop tree <code>{}</code> on branch <code>{}</code>: <b class=\"outcome\" data-outcome=\"{}\">{}</b></p>\n<p>{}</p>\n<p>next: <code>{}</code></p>",
        esc(&view.root),
        esc(&view.branch),
        view.outcome.as_str(),
        view.outcome.as_str(),
        esc(&text::run_line(view)),
        esc(&view.next())
    )
}

fn tree_html(view: &View) -> String {
    let mut out = String::from("<ul class=\"tree\">");
    for node in view.nodes() {
        let _ = write!(
            out,
            "<li style=\"margin-left:{}em\" data-loop=\"{}\"><span class=\"word {}\">{} {}</span> {}{}</li>",
            node.depth * 2,
            esc(&node.id),
            node.state.word.as_str(),
            node.state.word.mark(),
            node.state.word.as_str(),
            esc(&node.id),
            node_detail(node)
        );
    }
    out.push_str("</ul>");
    out
}

fn node_detail(node: &Node) -> String {
    let s = &node.state;
    let mut parts = Vec::new();
    if let Some(doing) = s.doing {
        parts.push(format!(
            "{} (run {})",
            doing.as_str(),
            s.run.unwrap_or(s.runs)
        ));
    }
    parts.push(match node.budget_runs {
        Some(cap) => format!("{}/{cap} runs", s.runs),
        None => format!("{} run{}", s.runs, if s.runs == 1 { "" } else { "s" }),
    });
    if s.agent_secs > 0.0 {
        parts.push(format!("agent {}", fmt_secs(s.agent_secs)));
    }
    if s.needed.is_some() || !s.approvals.is_empty() {
        parts.push(format!(
            "{} of {} approvals",
            s.approvals.len(),
            s.needed.unwrap_or(1)
        ));
    }
    format!(" · {}", esc(&parts.join(" · ")))
}

fn cards_html(view: &View, id: &str, csrf: &str, tip: Option<String>) -> String {
    let mut out = String::from("<h2>Cards</h2>");
    if view.cards.is_empty() {
        out.push_str("<p>No card waits for an answer.</p>");
    }
    for card in &view.cards {
        let c = &card.card;
        let _ = write!(
            out,
            "<div class=\"card\" data-loop=\"{}\"><b>{}</b><p>{}</p>",
            esc(&c.loop_id),
            esc(&c.title),
            esc(&c.reason)
        );
        if card.gated {
            // The run that wrote the card resumes with its own command
            // (`proctor run --file X`, the same `proctor once` again).
            let approved = if card.answered {
                format!(
                    ": approved; the next run ({}) checks the exam once more and seals the gate",
                    esc(&card.rerun)
                )
            } else {
                String::new()
            };
            let _ = write!(
                out,
                "<p class=\"approvals\">{} of {} approvals{approved}</p>",
                card.approvals.len(),
                card.needed.unwrap_or(1),
            );
            match (&tip, card.answered) {
                (Some(commit), false) => {
                    let _ = write!(
                        out,
                        "<form class=\"approve\" method=\"post\" action=\"{id}/approve\">\
<input type=\"hidden\" name=\"loop\" value=\"{}\"><input type=\"hidden\" name=\"commit\" value=\"{}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\" id=\"approve-{}\">Approve commit {} of loop {}</button> (signed with your approver key; see the changes below)</form>",
                        esc(&c.loop_id),
                        esc(commit),
                        esc(csrf),
                        esc(&c.loop_id),
                        esc(&short(commit)),
                        esc(&c.loop_id)
                    );
                }
                (None, false) => {
                    out.push_str("<p>The run's branch is missing: nothing to approve.</p>")
                }
                _ => {}
            }
        } else if !card.answered {
            let _ = write!(
                out,
                "<form class=\"answer\" method=\"post\" action=\"{id}/answer\">\
<input type=\"hidden\" name=\"loop\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input name=\"text\" size=\"60\" placeholder=\"your answer goes into the next prompt\"> <button type=\"submit\">Answer</button></form>",
                esc(&c.loop_id),
                esc(csrf)
            );
        } else {
            let _ = write!(
                out,
                "<p>Answered; the next run (<code>{}</code>) continues.</p>",
                esc(&card.rerun)
            );
        }
        out.push_str("</div>");
    }
    out
}

fn exams_html(records: &[Record]) -> String {
    let mut rows = Vec::new();
    for r in records.iter().rev() {
        if let Event::CheckResult {
            loop_id,
            verdict,
            exit,
            secs,
            commit,
            reason,
            ..
        } = &r.event
        {
            rows.push(format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{exit}</td><td>{}</td><td>{}</td></tr>",
                esc(&views::utc(r.ts)),
                esc(loop_id),
                esc(&format!("{verdict:?}").to_lowercase()),
                esc(&fmt_secs(*secs)),
                esc(&format!(
                    "{}{}",
                    short(commit),
                    reason
                        .as_deref()
                        .map(|r| format!(" · {r}"))
                        .unwrap_or_default()
                ))
            ));
            if rows.len() == 20 {
                break;
            }
        }
    }
    if rows.is_empty() {
        return "<h2>Exam results</h2><p>No exam has run yet.</p>".into();
    }
    format!(
        "<h2>Exam results</h2><table><tr><th>when</th><th>loop</th><th>verdict</th><th>exit</th><th>took</th><th>commit</th></tr>{}</table>",
        rows.concat()
    )
}

/// The tails of the latest agent's log and the latest exam's, read only
/// from `.proctor/logs/` by file name.
fn log_html(paths: &Paths, records: &[Record]) -> String {
    let agent = records.iter().rev().find_map(|r| match &r.event {
        Event::AgentStart { log, .. } | Event::AgentWorking { log, .. } => Some(log.clone()),
        _ => None,
    });
    let exam = records.iter().rev().find_map(|r| match &r.event {
        Event::CheckResult { log, .. } => Some(log.clone()),
        _ => None,
    });
    if agent.is_none() && exam.is_none() {
        return "<h2>Logs</h2><p>No attempt yet.</p>".into();
    }
    let mut out = String::from("<h2>Logs</h2>");
    for (what, log) in [("agent", agent), ("exam", exam)] {
        let Some(name) = log.as_deref().and_then(|l| Path::new(l).file_name()) else {
            continue;
        };
        let tail = crate::state::read_tail(&paths.logs.join(name), 8 * 1024).unwrap_or_default();
        let _ = write!(
            out,
            "<h3>{what}: <code>{}</code> (tail)</h3><pre class=\"log-{what}\">{}</pre>",
            esc(&name.to_string_lossy()),
            esc(&tail)
        );
    }
    out
}

/// At most this much diff text on a page.
const DIFF_CAP: usize = 256 * 1024;

fn changes_html(review: Option<&Review>) -> String {
    let Some(review) = review else {
        return "<h2>Changes</h2><p>No run branch yet.</p>".into();
    };
    let mut out = format!(
        "<h2>Changes</h2><p>Commit <code>{}</code> against the run's base <code>{}</code> (proctor's own diff, read from git's objects; an approval binds to this commit):</p>",
        esc(&review.commit),
        esc(&short(&review.base))
    );
    out.push_str("<ul>");
    for f in &review.files {
        let _ = write!(
            out,
            "<li{}><code>{}</code> ({}): {}{}</li>",
            if f.flag.is_some() {
                " class=\"flag\""
            } else {
                ""
            },
            esc(&f.path),
            f.change,
            esc(&f.summary),
            f.flag
                .as_deref()
                .map(|flag| format!(" · ⚠ {}", esc(flag)))
                .unwrap_or_default()
        );
    }
    out.push_str("</ul>");
    let mut budget = DIFF_CAP;
    for f in &review.files {
        let Some(diff) = &f.diff else { continue };
        if diff.len() > budget {
            out.push_str("<p>(more diff not shown: over the page's cap; <code>proctor answer</code> shows it all)</p>");
            break;
        }
        budget -= diff.len();
        let _ = write!(out, "<pre class=\"diff\">{}</pre>", esc(diff));
    }
    out
}

/// Complete new lines of the events file after `offset`, as human lines;
/// the first look starts at most `backlog` bytes before the end.
pub fn new_lines(root: &Path, offset: u64, backlog: Option<u64>) -> (Vec<String>, u64) {
    let path = Paths::new(root).events;
    let Ok(mut file) = std::fs::File::open(&path) else {
        return (Vec::new(), 0);
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A file healed or set aside shrinks: start again from its start.
    let mut start = if len < offset { 0 } else { offset };
    if let Some(back) = backlog {
        start = len.saturating_sub(back);
    }
    if start == len || file.seek(SeekFrom::Start(start)).is_err() {
        return (Vec::new(), start);
    }
    let mut bytes = Vec::new();
    if file.take(len - start).read_to_end(&mut bytes).is_err() {
        return (Vec::new(), start);
    }
    let skip = if backlog.is_some() && start > 0 {
        bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| p + 1)
    } else {
        0
    };
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if end <= skip {
        return (Vec::new(), start + skip as u64);
    }
    let text = String::from_utf8_lossy(&bytes[skip..end]);
    let lines = events::parse(&text)
        .iter()
        .map(|r| {
            let human = crate::render::human_line(&r.event).unwrap_or_else(|| event_type(&r.event));
            format!("{} {}", views::utc(r.ts), human)
        })
        .collect();
    (lines, start + end as u64)
}

fn event_type(event: &Event) -> String {
    serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "event".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_control_characters() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\x1b[31m"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\\u{1b}[31m"
        );
    }

    #[test]
    fn new_lines_follow_the_file_and_skip_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".proctor");
        std::fs::create_dir_all(&state).unwrap();
        let line = r#"{"v":1,"ts":1.0,"run":"r","type":"reaped","containers":2,"files":0}"#;
        std::fs::write(state.join("events.jsonl"), format!("{line}\n{{\"v\":1,")).unwrap();
        let (lines, offset) = new_lines(dir.path(), 0, None);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(offset as usize, line.len() + 1);
        let (again, same) = new_lines(dir.path(), offset, None);
        assert!(again.is_empty());
        assert_eq!(same, offset);
    }

    /// The page said "the next `proctor run`" for a card a `once` or a
    /// `run --file` run wrote: it names the run's own command.
    #[test]
    fn an_answered_card_names_its_own_runs_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut view = View::build(&Context::load(dir.path(), None));
        let card = |kind: &str, rerun: &str| views::CardView {
            card: views::CardFile {
                loop_id: "fix".into(),
                kind: kind.into(),
                title: "t".into(),
                reason: "r".into(),
                path: "INBOX/fix.md".into(),
                mtime: 0.0,
            },
            gated: kind == "ready",
            answered: true,
            approvals: Vec::new(),
            needed: Some(1),
            next: String::new(),
            rerun: rerun.into(),
        };
        view.cards = vec![
            card("blocked", "proctor run --file other.yaml"),
            card("ready", "run the same `proctor once` again"),
        ];
        let html = cards_html(&view, "r", "csrf", None);
        assert!(
            html.contains("the next run (<code>proctor run --file other.yaml</code>) continues"),
            "{html}"
        );
        assert!(
            html.contains("the next run (run the same `proctor once` again) checks the exam"),
            "{html}"
        );
        assert!(!html.contains("<code>proctor run</code>"), "{html}");
    }

    #[test]
    fn url_encoding_keeps_a_note_in_one_parameter() {
        assert_eq!(url_encode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
