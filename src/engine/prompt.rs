//! The prompt an agent reads on stdin: the task, the failing exam output
//! (head and tail, bounded), human answers and the loop's journal.

use crate::manifest::LoopSpec;

/// Bytes of failing output kept at each end.
pub const OUTPUT_HEAD: usize = 4 * 1024;
pub const OUTPUT_TAIL: usize = 8 * 1024;
/// Bytes of journal carried (its end, the most recent notes).
pub const JOURNAL_MAX: usize = 16 * 1024;

pub struct PromptParts<'a> {
    pub spec: &'a LoopSpec,
    pub run: u32,
    pub cap: Option<u32>,
    pub failure: &'a str,
    pub answers: &'a [String],
    pub journal_rel: &'a str,
    pub journal: &'a str,
    pub notes: &'a [String],
}

/// Keeps the head and tail of a long text, marking what was cut.
pub fn head_tail(text: &str, head: usize, tail: usize) -> String {
    if text.len() <= head + tail {
        return text.to_string();
    }
    let mut h = head;
    while !text.is_char_boundary(h) {
        h -= 1;
    }
    let mut t = text.len() - tail;
    while !text.is_char_boundary(t) {
        t += 1;
    }
    format!(
        "{}\n[… {} bytes cut by proctor …]\n{}",
        &text[..h],
        t - h,
        &text[t..]
    )
}

pub fn build(p: &PromptParts) -> String {
    let spec = p.spec;
    let of = p.cap.map(|c| format!(" of {c}")).unwrap_or_default();
    let mut out = format!("# proctor: loop `{}`, run {}{of}\n\n", spec.id, p.run);
    out.push_str("## Task\n\n");
    out.push_str(
        spec.task
            .as_deref()
            .unwrap_or("Make the exam below pass.")
            .trim(),
    );
    out.push_str("\n\n## The exam\n\n");
    out.push_str(&format!(
        "`{}` must exit 0. proctor runs it itself, in a separate container, on the tree \
         it commits after you exit. Your exit code and your claims are not used; only the \
         exam's exit code is. Edit the working tree in the current directory and exit.\n\n",
        spec.done_when
    ));
    if !spec.caches.is_empty() {
        // init writes `CARGO_TARGET_DIR=/cache/target cargo test`: run
        // as it stands in the agent's container, which has no `/cache`,
        // it fails before it tests anything.
        out.push_str(&format!(
            "The exam's caches ({}) exist only in the exam's container: to run the exam \
             yourself, leave out what points a tool at them (for example run \
             `cargo test`, not `CARGO_TARGET_DIR=/cache/target cargo test`).\n\n",
            spec.caches
                .iter()
                .map(|c| format!("`/cache/{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !p.failure.trim().is_empty() {
        out.push_str("## The exam's last failing output\n\n```\n");
        out.push_str(head_tail(p.failure, OUTPUT_HEAD, OUTPUT_TAIL).trim_end());
        out.push_str("\n```\n\n");
    }
    for note in p.notes {
        out.push_str(&format!("Note from proctor: {note}\n\n"));
    }
    if !p.answers.is_empty() {
        out.push_str("## Answers from a human\n\n");
        for answer in p.answers {
            out.push_str(&format!("- {}\n", answer.trim()));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "## Journal (`{}`)\n\nYour memory across runs: append short notes on what you tried and learned.\n\n",
        p.journal_rel
    ));
    let journal = p.journal.trim();
    if !journal.is_empty() {
        let start = journal.len().saturating_sub(JOURNAL_MAX);
        let mut s = start;
        while !journal.is_char_boundary(s) {
            s += 1;
        }
        out.push_str(&journal[s..]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt_of(yaml: &str) -> String {
        let manifest = crate::manifest::parse(yaml, std::path::Path::new("proctor.yaml")).unwrap();
        build(&PromptParts {
            spec: &manifest.root,
            run: 1,
            cap: None,
            failure: "",
            answers: &[],
            journal_rel: ".proctor/journal.md",
            journal: "",
            notes: &[],
        })
    }

    #[test]
    fn an_exam_with_caches_tells_the_agent_how_to_run_it_without_them() {
        let prompt = prompt_of(
            "loop: a\ndone_when: CARGO_TARGET_DIR=/cache/target cargo test\ncaches: [target]\n",
        );
        assert!(
            prompt.contains("caches (`/cache/target`) exist only in the exam's container"),
            "{prompt}"
        );
        let prompt = prompt_of("loop: a\ndone_when: cargo test\n");
        assert!(!prompt.contains("/cache"), "{prompt}");
    }

    #[test]
    fn head_tail_keeps_both_ends() {
        let text = format!("{}{}{}", "a".repeat(100), "b".repeat(1000), "c".repeat(100));
        let cut = head_tail(&text, 100, 100);
        assert!(cut.starts_with(&"a".repeat(100)));
        assert!(cut.ends_with(&"c".repeat(100)));
        assert!(cut.contains("1000 bytes cut"));
        assert_eq!(head_tail("short", 10, 10), "short");
    }

    #[test]
    fn head_tail_respects_char_boundaries() {
        let text = "é".repeat(500);
        let _ = head_tail(&text, 7, 7);
    }
}
