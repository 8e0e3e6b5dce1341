//! The small languages inside manifest values: durations, budgets, memory
//! sizes, cron expressions and ids. Each parser takes untrusted text and
//! returns `None`/`Err` rather than panicking or overflowing.

use std::fmt;
use std::time::Duration;

use super::Budget;

/// The budget a loop gets when it names none (Lute's default).
pub const DEFAULT_BUDGET: Budget = Budget {
    runs: Some(10),
    wall: None,
};

/// How long to sleep after a "not yet" (75) exam when `check_every` is absent.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Parses `30s`, `90m`, `48h` or `2d` (a whole number and one unit, no
/// space, as Lute writes them; `d` is proctor's addition). Zero is a valid
/// duration here; callers that need a positive one check for it.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(scale).map(Duration::from_secs)
}

/// Writes a duration the way a manifest would: the largest unit that divides
/// it exactly (`5400s` is `90m`, `172800s` is `2d`). Sub-second parts are
/// dropped, since no manifest field can express them.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, scale) in [('d', 86_400), ('h', 3600), ('m', 60)] {
        if secs != 0 && secs.is_multiple_of(scale) {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

/// Parses a budget: `N runs` (or `1 run`), a duration, or both joined by
/// `/`, e.g. `30 runs / 48h`. A kind given twice keeps the tighter cap, as
/// Lute (which stops at whichever cap is hit first) does. The error is a
/// lowercase sentence naming the offending part.
pub fn parse_budget(s: &str) -> Result<Budget, String> {
    let mut budget = Budget {
        runs: None,
        wall: None,
    };
    for part in s.split('/') {
        let part = part.trim();
        if let Some(runs) = parse_runs(part) {
            let runs =
                runs.map_err(|()| format!("`{part}` is more runs than proctor can count"))?;
            if runs == 0 {
                return Err("`0 runs` allows no work; give at least `1 run`".to_owned());
            }
            budget.runs = Some(budget.runs.map_or(runs, |r| r.min(runs)));
        } else if let Some(wall) = parse_duration(part) {
            if wall.is_zero() {
                return Err(format!("`{part}` allows no time; give a positive duration"));
            }
            budget.wall = Some(budget.wall.map_or(wall, |w| w.min(wall)));
        } else if part.is_empty() {
            return Err(format!(
                "`{s}` has an empty part (use `N runs` or a duration like `90m`, joined by `/`)"
            ));
        } else {
            return Err(format!(
                "bad part `{part}` (use `N runs` or a duration like `90m`, joined by `/`)"
            ));
        }
    }
    Ok(budget)
}

/// `Some(Ok(n))` for `N runs`/`N run`/`Nruns`, `Some(Err(()))` when N does
/// not fit, `None` when this is not a run count at all.
fn parse_runs(part: &str) -> Option<Result<u32, ()>> {
    let rest = part
        .strip_suffix("runs")
        .or_else(|| part.strip_suffix("run"))?;
    let digits = rest.trim_end();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u32>().map_err(|_| ()))
}

impl fmt::Display for Budget {
    /// The manifest spelling: `10 runs`, `1 run`, `48h`, `30 runs / 2h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs = self
            .runs
            .map(|n| format!("{n} run{}", if n == 1 { "" } else { "s" }));
        let wall = self.wall.map(format_duration);
        match (runs, wall) {
            (Some(r), Some(w)) => write!(f, "{r} / {w}"),
            (Some(r), None) => f.write_str(&r),
            (None, Some(w)) => f.write_str(&w),
            (None, None) => f.write_str("unlimited"),
        }
    }
}

/// Parses a memory size: a byte count, or a number with a binary unit as
/// Docker spells them (`512m`, `2g`, `1.5G`, `256MiB`).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(scale);
    }
    let value: f64 = number.parse().ok()?;
    let bytes = value * scale as f64;
    // f64 holds every u64 below 2^53 exactly; memory sizes never get close.
    (bytes.is_finite() && bytes >= 0.0 && bytes < 2f64.powi(53)).then(|| bytes.floor() as u64)
}

/// Writes bytes as the shortest exact manifest spelling (`2g`, `512m`, `1000`).
pub fn format_memory(bytes: u64) -> String {
    for (unit, shift) in [('t', 40), ('g', 30), ('m', 20), ('k', 10)] {
        let scale = 1u64 << shift;
        if bytes != 0 && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    bytes.to_string()
}

/// Whether `id` is kebab-case: lowercase letters and digits in words joined by
/// single hyphens (Lute's `^[a-z0-9]+(-[a-z0-9]+)*$`).
pub fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The kebab-case spelling of `s` (`Fix_Tests` → `fix-tests`), or `None` if
/// nothing of it survives. Splits camelCase words too.
pub fn to_kebab(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
            prev_lower = false;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    (!out.is_empty()).then_some(out)
}

/// Whether `name` can be an environment variable name passed through.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` is a valid named-volume name (Docker's
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub fn is_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a `network` allow-list entry: `host` or `host:port`, where host is
/// a DNS name or IPv4 address, or `[v6]` with an optional port.
pub fn check_host(entry: &str) -> Result<(), String> {
    let port = if let Some(rest) = entry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(format!("`{entry}` opens `[` without closing it"));
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("`{entry}` is not an IPv6 address in brackets"));
        }
        if after.is_empty() {
            None
        } else {
            let Some(port) = after.strip_prefix(':') else {
                return Err(format!("`{entry}` has text after `]` that is not `:port`"));
            };
            Some(port)
        }
    } else {
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        };
        check_dns(host, entry)?;
        port
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("`{entry}` has a bad port `{port}` (1 to 65535)")),
        }
    }
    Ok(())
}

fn check_dns(host: &str, entry: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{entry}` is not a host name (letters, digits, `-` and `.`; optionally `:port`)"
        ))
    }
}

/// Checks a 5-field cron expression (`minute hour day-of-month month
/// day-of-week`) or one of crontab's `@hourly`-style shorthands. The check
/// is syntactic: `0 0 31 2 *` passes and simply never fires.
pub fn check_cron(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return match expr {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(()),
            _ => Err(format!(
                "`{expr}` is not a cron shorthand (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`)"
            )),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "`{expr}` has {} field{}; cron needs 5 (minute hour day-of-month month day-of-week)",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, MONTHS, 1),
        ("day-of-week", 0, 7, DAYS, 0),
    ];
    for (field, (name, lo, hi, names, base)) in fields.iter().zip(specs) {
        check_cron_field(field, lo, hi, names, base)
            .map_err(|why| format!("`{expr}`: {name} field `{field}` {why}"))?;
    }
    Ok(())
}

fn check_cron_field(
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    base: u32,
) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + base);
        }
        match s.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
            _ => Err(format!("has `{s}`, outside {lo}-{hi}")),
        }
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s > 0 && step.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => return Err(format!("has a bad step `/{step}`")),
            }
        }
        if range == "*" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("has a backwards range `{range}`"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}
