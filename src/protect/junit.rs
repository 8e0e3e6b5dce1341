//! The test-count audit: counting the tests an exam reports in JUnit XML,
//! and the rules (`min`, `expect_delta`, `allow_skipped`) that turn a
//! passing exit code into a fail when the suite shrank.
//!
//! The XML comes from a container running code under test, so the reader is
//! a tolerant scanner, not a validating parser: it counts `<testcase>`
//! elements and the `<failure>`, `<error>` and `<skipped>` inside them,
//! skips comments, CDATA and declarations, is bounded in what it reads, and
//! never panics on any input.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::manifest::TestsAudit;

/// Bytes of XML read per exam, over all files.
pub const READ_CAP: u64 = 64 * 1024 * 1024;
/// Files looked at per exam.
pub const FILE_CAP: usize = 1000;

/// What one or more JUnit reports say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub tests: u32,
    pub failures: u32,
    pub errors: u32,
    pub skipped: u32,
    /// Report files read.
    pub files: u32,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.tests = self.tests.saturating_add(other.tests);
        self.failures = self.failures.saturating_add(other.failures);
        self.errors = self.errors.saturating_add(other.errors);
        self.skipped = self.skipped.saturating_add(other.skipped);
        self.files = self.files.saturating_add(other.files);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CaseState {
    Passed,
    Skipped,
    Failed,
    Errored,
}

/// Counts the test cases in one XML document.
pub fn parse(text: &[u8]) -> Counts {
    let mut counts = Counts {
        files: 1,
        ..Counts::default()
    };
    let mut open: Option<CaseState> = None;
    let close = |state: Option<CaseState>, counts: &mut Counts| match state {
        Some(CaseState::Passed) | None => {}
        Some(CaseState::Skipped) => counts.skipped = counts.skipped.saturating_add(1),
        Some(CaseState::Failed) => counts.failures = counts.failures.saturating_add(1),
        Some(CaseState::Errored) => counts.errors = counts.errors.saturating_add(1),
    };
    let mut i = 0usize;
    while let Some(off) = find(text, i, b"<") {
        let at = off;
        let rest = &text[at..];
        if rest.starts_with(b"<!--") {
            i = find(text, at + 4, b"-->").map_or(text.len(), |e| e + 3);
            continue;
        }
        if rest.starts_with(b"<![CDATA[") {
            i = find(text, at + 9, b"]]>").map_or(text.len(), |e| e + 3);
            continue;
        }
        if rest.starts_with(b"<?") {
            i = find(text, at + 2, b"?>").map_or(text.len(), |e| e + 2);
            continue;
        }
        if rest.starts_with(b"<!") {
            i = find(text, at + 2, b">").map_or(text.len(), |e| e + 1);
            continue;
        }
        let end = tag_end(text, at + 1);
        let inner = &text[at + 1..end.min(text.len())];
        i = end.saturating_add(1);
        let closing = inner.first() == Some(&b'/');
        let body = if closing { &inner[1..] } else { inner };
        let name_len = body
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
            .unwrap_or(body.len());
        let name = &body[..name_len];
        let local = match name.iter().rposition(|b| *b == b':') {
            Some(p) => &name[p + 1..],
            None => name,
        };
        let self_closing = inner.last() == Some(&b'/');
        match (local, closing) {
            (b"testcase", false) => {
                close(open.take(), &mut counts);
                counts.tests = counts.tests.saturating_add(1);
                if self_closing {
                    // Passed, nothing inside.
                } else {
                    open = Some(CaseState::Passed);
                }
            }
            (b"testcase", true) => close(open.take(), &mut counts),
            (b"failure", false) => raise(&mut open, CaseState::Failed),
            (b"error", false) => raise(&mut open, CaseState::Errored),
            (b"skipped", false) => raise(&mut open, CaseState::Skipped),
            _ => {}
        }
    }
    close(open.take(), &mut counts);
    counts
}

fn raise(open: &mut Option<CaseState>, to: CaseState) {
    let rank = |s: CaseState| match s {
        CaseState::Passed => 0,
        CaseState::Skipped => 1,
        CaseState::Failed => 2,
        CaseState::Errored => 3,
    };
    if let Some(state) = open {
        if rank(to) > rank(*state) {
            *state = to;
        }
    }
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from >= hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Index of the `>` closing a tag that starts at `from`, skipping quoted
/// attribute values; the text's length if there is none.
fn tag_end(text: &[u8], from: usize) -> usize {
    let mut quote: Option<u8> = None;
    let mut i = from;
    while i < text.len() {
        let b = text[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return i,
            None => {}
        }
        i += 1;
    }
    text.len()
}

/// What the reports under a directory say, and which of them was last
/// written longest ago.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reports {
    pub counts: Counts,
    /// The report (relative to the directory) with the oldest modification
    /// time, and that time.
    pub oldest: Option<(String, SystemTime)>,
}

impl Reports {
    /// Why these reports cannot be the exam's own when it started at
    /// `started`: one was last written before. The results directory is
    /// created empty for each exam, so such a file was put there with a
    /// forged time. A second of slack covers the kernel's coarse file clock.
    pub fn written_before(&self, started: SystemTime) -> Option<String> {
        let (name, written) = self.oldest.as_ref()?;
        let slack = std::time::Duration::from_secs(1);
        (*written + slack < started).then(|| {
            format!(
                "the JUnit report `{name}` was last written before the exam started; only a report the exam writes counts"
            )
        })
    }
}

/// Reads every `*.xml` under `dir` (never through a link, bounded in files
/// and bytes). `None` when there is no report at all.
pub fn read_dir(dir: &Path) -> Option<Counts> {
    read_reports(dir).map(|r| r.counts)
}

/// [`read_dir`], with the oldest report's name and modification time.
pub fn read_reports(dir: &Path) -> Option<Reports> {
    let mut oldest: Option<(String, SystemTime)> = None;
    let mut total = Counts::default();
    let mut budget = READ_CAP;
    let mut files = 0usize;
    let mut stack = vec![(dir.to_path_buf(), 0u32)];
    while let Some((path, depth)) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth > 8 {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            for name in names.into_iter().rev() {
                stack.push((name, depth + 1));
            }
            continue;
        }
        let is_xml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
        if !meta.is_file() || !is_xml || files >= FILE_CAP || budget == 0 {
            continue;
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let Ok(bytes) = super::fsafe::read_capped(parent, &name.to_string_lossy(), budget) else {
            continue;
        };
        budget = budget.saturating_sub(bytes.len() as u64);
        files += 1;
        total.add(parse(&bytes));
        if let Ok(written) = meta.modified() {
            if oldest.as_ref().is_none_or(|(_, t)| written < *t) {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                oldest = Some((rel.to_string_lossy().into_owned(), written));
            }
        }
    }
    (total.files > 0).then_some(Reports {
        counts: total,
        oldest,
    })
}

/// The audit's verdict on a passing exam: `Err(reason)` turns it into a fail.
/// `baseline` is the test count at the base commit, when known.
pub fn judge(
    audit: &TestsAudit,
    counts: Option<Counts>,
    baseline: Option<u32>,
) -> Result<(), String> {
    let dir = &audit.junit;
    let Some(c) = counts else {
        return Err(format!(
            "the exam exited 0 but wrote no JUnit XML under `{dir}`; the test-count audit (`tests:`) needs one"
        ));
    };
    if c.tests == 0 {
        return Err(format!(
            "the JUnit report under `{dir}` lists no test cases"
        ));
    }
    let broken = c.failures.saturating_add(c.errors);
    if broken > 0 {
        return Err(format!(
            "the exam exited 0 but its JUnit report lists {broken} failing test{} of {}",
            plural(broken),
            c.tests
        ));
    }
    if c.skipped > audit.allow_skipped {
        return Err(format!(
            "{} test{} skipped ({} allowed by `allow_skipped`); a skipped test does not count as passing",
            c.skipped,
            if c.skipped == 1 { " was" } else { "s were" },
            audit.allow_skipped
        ));
    }
    if let Some(min) = audit.min {
        if c.tests < min {
            return Err(format!(
                "only {} test{} ran; `min` is {min}",
                c.tests,
                plural(c.tests)
            ));
        }
    }
    if let (Some(delta), Some(base)) = (audit.expect_delta, baseline) {
        let want = i64::from(base) + delta;
        if i64::from(c.tests) < want {
            return Err(format!(
                "the suite has {} test{}; the base commit had {base} and `expect_delta` is {delta}, so at least {want} are expected",
                c.tests,
                plural(c.tests)
            ));
        }
    }
    Ok(())
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_report_written_before_the_exam_started_is_named() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.xml"), "<testcase/>").unwrap();
        std::fs::write(dir.path().join("sub/b.xml"), "<testcase/>").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("sub/b.xml"))
            .unwrap();
        file.set_modified(old).unwrap();
        let reports = read_reports(dir.path()).unwrap();
        assert_eq!(reports.counts.tests, 2);
        assert_eq!(reports.oldest.as_ref().unwrap().0, "sub/b.xml");
        let why = reports
            .written_before(old + Duration::from_secs(60))
            .unwrap();
        assert!(why.contains("`sub/b.xml` was last written before the exam started"));
        assert_eq!(reports.written_before(old), None);
    }

    use super::*;
    use proptest::prelude::*;

    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- <testcase name="in a comment"/> -->
<testsuites>
  <testsuite name="calc" tests="5">
    <testcase name="a" classname="x"/>
    <testcase name="b"><system-out><![CDATA[<testcase name="fake"/>]]></system-out></testcase>
    <testcase name="c" message="a > b"><failure message="boom"/></testcase>
    <testcase name="d"><skipped/></testcase>
    <testcase name="e"><error type="x">trace</error></testcase>
  </testsuite>
</testsuites>
"#;

    #[test]
    fn counts_cases_not_comments_or_cdata() {
        let c = parse(REPORT.as_bytes());
        assert_eq!(
            c,
            Counts {
                tests: 5,
                failures: 1,
                errors: 1,
                skipped: 1,
                files: 1
            }
        );
    }

    fn audit() -> TestsAudit {
        TestsAudit {
            junit: "reports".into(),
            min: Some(3),
            expect_delta: Some(0),
            allow_skipped: 0,
        }
    }

    fn ok(tests: u32) -> Option<Counts> {
        Some(Counts {
            tests,
            files: 1,
            ..Counts::default()
        })
    }

    #[test]
    fn the_rules_turn_a_shrunk_suite_into_a_fail() {
        assert!(judge(&audit(), ok(3), Some(3)).is_ok());
        assert!(judge(&audit(), ok(4), Some(3)).is_ok());
        let skipped = Some(Counts {
            tests: 3,
            skipped: 1,
            files: 1,
            ..Counts::default()
        });
        let why = [
            judge(&audit(), ok(2), Some(2)),
            judge(&audit(), ok(3), Some(4)),
            judge(&audit(), None, Some(3)),
            judge(&audit(), skipped, Some(3)),
        ]
        .map(|verdict| verdict.unwrap_err());
        insta::assert_snapshot!(why.join("\n"));
        let mut lenient = audit();
        lenient.allow_skipped = 1;
        assert!(judge(&lenient, skipped, Some(3)).is_ok());
        // Without a known baseline, `expect_delta` cannot fail the verdict.
        assert!(judge(&audit(), ok(3), None).is_ok());
    }

    #[test]
    fn reads_reports_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.xml"), REPORT).unwrap();
        std::fs::write(dir.path().join("b.XML"), "<testcase/><testcase/>").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "<testcase/>").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), "<testcase/>".repeat(100)).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link.xml")).unwrap();
        let c = read_dir(dir.path()).unwrap();
        assert_eq!((c.tests, c.files), (7, 2));
        assert_eq!(read_dir(&dir.path().join("missing")), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_tag_soup(parts in proptest::collection::vec(prop_oneof![
            Just("<testcase"), Just("<testcase/>"), Just("</testcase>"), Just("<failure/>"),
            Just("<skipped"), Just("<!--"), Just("-->"), Just("<![CDATA["), Just("]]>"),
            Just("\""), Just("'"), Just(">"), Just("<"), Just("<?"), Just("x"), Just("/")
        ], 0..40)) {
            let text = parts.concat();
            let c = parse(text.as_bytes());
            prop_assert!(c.failures + c.errors + c.skipped <= c.tests);
        }

        #[test]
        fn generated_reports_count_exactly(cases in proptest::collection::vec(0u8..4, 0..50)) {
            let mut xml = String::from("<?xml version=\"1.0\"?><testsuite>");
            for (i, kind) in cases.iter().enumerate() {
                match kind {
                    0 => xml.push_str(&format!("<testcase name=\"t{i}\"/>")),
                    1 => xml.push_str(&format!("<testcase name=\"t{i}\"><failure message=\"x > y\"/></testcase>")),
                    2 => xml.push_str(&format!("<testcase name=\"t{i}\"><skipped/></testcase>")),
                    _ => xml.push_str(&format!("<testcase name=\"t{i}\"><error>e</error><system-err><![CDATA[<testcase/>]]></system-err></testcase>")),
                }
            }
            xml.push_str("</testsuite>");
            let c = parse(xml.as_bytes());
            let n = |k: u8| cases.iter().filter(|c| **c == k).count() as u32;
            prop_assert_eq!(c.tests, cases.len() as u32);
            prop_assert_eq!(c.failures, n(1));
            prop_assert_eq!(c.skipped, n(2));
            prop_assert_eq!(c.errors, n(3));
        }
    }
}
