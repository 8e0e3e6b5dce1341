//! "Did you mean" for misspelt keys.

/// The candidate closest to `word`, if it is close enough to be a likely
/// typo: same letters ignoring case, `-` and `_` (`done-when`, `doneWhen`),
/// or within an edit distance that grows with the word's length, so `tets`
/// suggests `tests` but `foo` suggests nothing.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let squashed = squash(word);
    if let Some(exact) = candidates.iter().find(|c| squash(c) == squashed) {
        return Some(exact);
    }
    let allowed = match word.chars().count() {
        0..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (distance(&squashed, &squash(c)), *c))
        .filter(|(d, _)| *d <= allowed)
        // `min_by_key` keeps the first of equals, so candidate order breaks ties.
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Damerau-Levenshtein (optimal string alignment) distance, so a swapped
/// pair of letters (`bugdet`) costs one edit like any other typo.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Keys are short; a word far longer than any key is not a typo of one.
    if a.len().abs_diff(b.len()) > 3 {
        return usize::MAX;
    }
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["loop", "task", "budget", "done_when", "tests", "confirm"];

    #[test]
    fn typos_find_their_key() {
        assert_eq!(closest("budjet", KEYS), Some("budget"));
        assert_eq!(closest("bugdet", KEYS), Some("budget"));
        assert_eq!(closest("done-when", KEYS), Some("done_when"));
        assert_eq!(closest("doneWhen", KEYS), Some("done_when"));
        assert_eq!(closest("tets", KEYS), Some("tests"));
        assert_eq!(closest("confrim", KEYS), Some("confirm"));
    }

    #[test]
    fn unrelated_words_get_no_suggestion() {
        assert_eq!(closest("foo", KEYS), None);
        assert_eq!(closest("depends_on", KEYS), None);
        assert_eq!(closest("", KEYS), None);
        assert_eq!(closest(&"x".repeat(500), KEYS), None);
    }
}
