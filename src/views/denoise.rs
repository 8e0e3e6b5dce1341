//! The de-noise filter of `proctor watch --filter LOG` (Lute's): a block of
//! lines repeated back to back is shown once, followed by a `×N` line (for
//! a single line, ` ×N` at its end). A log without such repeats comes out
//! byte for byte as it went in. Pure text in, text out: escaping for the
//! terminal is the caller's.

/// The longest block (in lines) looked for. Longer repeats are rare in
/// agent and exam logs, and the search is quadratic in it.
const MAX_BLOCK: usize = 32;

/// `log` with every run of back-to-back copies of a block (1 to
/// [`MAX_BLOCK`] lines) collapsed to one copy and its count. At each line
/// the shortest repeating block wins, so `a a a` is `a ×3`, and a block
/// is compared line by line ignoring only the line ending.
pub fn collapse(log: &str) -> String {
    let lines: Vec<&str> = log.split_inclusive('\n').collect();
    let same = |a: usize, b: usize| strip(lines[a]) == strip(lines[b]);
    let mut out = String::with_capacity(log.len());
    let mut i = 0;
    while i < lines.len() {
        let mut collapsed = false;
        for k in 1..=MAX_BLOCK.min((lines.len() - i) / 2) {
            let repeats_at = |start: usize| (0..k).all(|j| same(i + j, start + j));
            let mut copies = 1;
            while i + (copies + 1) * k <= lines.len() && repeats_at(i + copies * k) {
                copies += 1;
            }
            if copies < 2 {
                continue;
            }
            for line in &lines[i..i + k - 1] {
                out.push_str(line);
            }
            let last = lines[i + k - 1];
            if k == 1 {
                out.push_str(strip(last));
                out.push_str(&format!(" ×{copies}\n"));
            } else {
                out.push_str(strip(last));
                out.push('\n');
                out.push_str(&format!("×{copies}\n"));
            }
            i += copies * k;
            collapsed = true;
            break;
        }
        if !collapsed {
            out.push_str(lines[i]);
            i += 1;
        }
    }
    out
}

/// A line without its ending (`\n` or `\r\n`).
fn strip(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::collapse;

    #[test]
    fn a_clean_log_is_unchanged_byte_for_byte() {
        for log in [
            "",
            "one line without an ending",
            "a\nb\nc\n",
            "a\r\nb\r\n",
            "a\nb\na\nc",
            "\n",
        ] {
            assert_eq!(collapse(log), log, "{log:?}");
        }
    }

    #[test]
    fn a_repeated_line_is_shown_once_with_its_count() {
        let log = "start\nretrying…\nretrying…\nretrying…\ndone\n";
        assert_eq!(collapse(log), "start\nretrying… ×3\ndone\n");
        // The last line may lack its ending; the count line still has one.
        assert_eq!(collapse("x\nx"), "x ×2\n");
    }

    #[test]
    fn a_repeated_block_is_shown_once_then_its_count() {
        let block = "Traceback (most recent call last):\n  File \"t.py\", line 3\nKeyError: 'a'\n";
        let log = format!("run\n{}{}{}end\n", block, block, block);
        assert_eq!(collapse(&log), format!("run\n{block}×3\nend\n"));
    }

    #[test]
    fn the_shortest_repeating_block_wins_and_runs_are_separate() {
        assert_eq!(collapse("a\na\nb\na\na\nb\n"), "a ×2\nb\na ×2\nb\n");
        assert_eq!(collapse("a\nb\na\nb\na\nb\nc\nc\n"), "a\nb\n×3\nc ×2\n");
    }

    #[test]
    fn line_endings_do_not_make_lines_differ() {
        assert_eq!(collapse("a\r\na\n"), "a ×2\n");
    }
}
