//! A hash chain over one run's lines of `.proctor/events.jsonl`, as
//! written: any changed, dropped, added or reordered line of the run
//! changes the head.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const SEED: &[u8] = b"proctor-events-v1";

/// What an attestation records of the run's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventChain {
    /// How the head is computed, for verifiers that are not proctor.
    pub algorithm: String,
    /// How many lines of the run the chain covers.
    pub count: usize,
    /// The last link, hex.
    pub head: String,
}

pub const ALGORITHM: &str = "h0 = sha256(\"proctor-events-v1\"); h(i) = sha256(h(i-1) || sha256(line i)), over the run's lines of .proctor/events.jsonl in file order, without their newline";

/// The lines of `text` (an events file) whose `run` is `run`, as written.
pub fn run_lines<'t>(text: &'t str, run: &str) -> Vec<&'t str> {
    text.lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .is_some_and(|v| v.get("run").and_then(|r| r.as_str()) == Some(run))
        })
        .collect()
}

/// The chain over `lines`.
pub fn chain(lines: &[&str]) -> EventChain {
    let mut head: [u8; 32] = Sha256::digest(SEED).into();
    for line in lines {
        let mut hasher = Sha256::new();
        hasher.update(head);
        hasher.update(Sha256::digest(line.as_bytes()));
        head = hasher.finalize().into();
    }
    EventChain {
        algorithm: ALGORITHM.to_string(),
        count: lines.len(),
        head: hex::encode(head),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_to_the_runs_lines_changes_the_head() {
        let text = "{\"run\":\"a\",\"n\":1}\n{\"run\":\"b\"}\n{\"run\":\"a\",\"n\":2}\nnot json\n";
        let lines = run_lines(text, "a");
        assert_eq!(lines.len(), 2);
        let base = chain(&lines);
        assert_eq!(base.count, 2);
        // Other runs' lines and garbage do not count.
        let other = text.replace("{\"run\":\"b\"}", "{\"run\":\"b\",\"x\":1}");
        assert_eq!(chain(&run_lines(&other, "a")), base);
        let changed = text.replace("\"n\":2", "\"n\":3");
        assert_ne!(chain(&run_lines(&changed, "a")).head, base.head);
        let reordered = [lines[1], lines[0]];
        assert_ne!(chain(&reordered).head, base.head);
        assert_ne!(chain(&lines[..1]).head, base.head);
    }
}
