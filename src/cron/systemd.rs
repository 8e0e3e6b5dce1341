//! `proctor cron sync --systemd`: the same ticks as systemd user timers, for
//! hosts without cron. Each tick is a `.service` (the run) and a `.timer`
//! (its `OnCalendar=` schedule, converted from the cron expression) in the
//! user unit directory. Files proctor did not write are never touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{CronError, Job, Tick};

/// Overrides the unit directory (tests; unusual layouts).
pub const DIR_ENV: &str = "PROCTOR_SYSTEMD_DIR";

/// `PROCTOR_SYSTEMD_DIR`, else `$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`.
pub fn unit_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/etc/xdg"))
        .join("systemd")
        .join("user")
}

fn marker(repo: &Path) -> String {
    format!("# managed by proctor for {}", repo.display())
}

/// A timer and its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// File stem: `proctor-<repo label>-<loop>-<n>`.
    pub name: String,
    pub service: String,
    pub timer: String,
}

/// The units for `ticks`; `label` tells this repository's units apart.
pub fn units(job: &Job, label: &str, ticks: &[Tick]) -> Result<Vec<Unit>, CronError> {
    let mut out = Vec::new();
    for (n, tick) in ticks.iter().enumerate() {
        let calendars = on_calendar(&tick.at)
            .map_err(|e| CronError::Refused(format!("schedule `{}`: {e}", tick.at)))?;
        let name = format!("proctor-{label}-{}-{}", tick.loop_id, n + 1);
        let description = format!(
            "proctor: loop `{}` in {} at `{}`",
            tick.loop_id,
            job.repo.display(),
            tick.at
        );
        let mut service = format!(
            "{}; `proctor cron remove --systemd` deletes it\n[Unit]\nDescription={}\n\n[Service]\nType=oneshot\nWorkingDirectory={}\n",
            marker(&job.repo),
            escape(&description),
            escape(&job.repo.to_string_lossy())
        );
        for (key, value) in &job.env {
            service.push_str(&format!(
                "Environment=\"{}\"\n",
                quote_inner(&format!("{key}={value}"))
            ));
        }
        let mut exec = vec![
            job.exe.to_string_lossy().into_owned(),
            "run".into(),
            "--skip-if-running".into(),
        ];
        if let Some(file) = &job.manifest {
            exec.push("--file".into());
            exec.push(file.to_string_lossy().into_owned());
        }
        exec.push(tick.loop_id.clone());
        let exec: Vec<String> = exec
            .iter()
            .map(|w| format!("\"{}\"", quote_inner(w)))
            .collect();
        service.push_str(&format!("ExecStart={}\n", exec.join(" ")));
        let mut timer = format!(
            "{}; `proctor cron remove --systemd` deletes it\n[Unit]\nDescription={}\n\n[Timer]\n",
            marker(&job.repo),
            escape(&description)
        );
        for calendar in calendars {
            timer.push_str(&format!("OnCalendar={calendar}\n"));
        }
        timer.push_str("Persistent=false\n\n[Install]\nWantedBy=timers.target\n");
        out.push(Unit {
            name,
            service,
            timer,
        });
    }
    Ok(out)
}

/// `%` starts a specifier in unit files.
fn escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// Inside double quotes: backslash, quote, specifiers and variables.
fn quote_inner(s: &str) -> String {
    escape(s)
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "$$")
}

/// Writes `units` into `dir` after removing this repository's old ones.
/// Returns the timer file names.
pub fn sync(dir: &Path, job: &Job, label: &str, ticks: &[Tick]) -> Result<Vec<String>, CronError> {
    job.check()?;
    let units = units(job, label, ticks)?;
    remove(dir, job, label)?;
    if units.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CronError::Write(format!("`{}`: {e}", dir.display())))?;
    let mut names = Vec::new();
    for unit in units {
        for (ext, text) in [("service", &unit.service), ("timer", &unit.timer)] {
            let path = dir.join(format!("{}.{ext}", unit.name));
            std::fs::write(&path, text)
                .map_err(|e| CronError::Write(format!("`{}`: {e}", path.display())))?;
        }
        names.push(format!("{}.timer", unit.name));
    }
    Ok(names)
}

/// Deletes this repository's units from `dir` (only files that carry
/// proctor's marker for this repository). Returns how many files went.
pub fn remove(dir: &Path, job: &Job, label: &str) -> Result<usize, CronError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let prefix = format!("proctor-{label}-");
    let mark = marker(&job.repo);
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || !(name.ends_with(".service") || name.ends_with(".timer")) {
            continue;
        }
        let path = entry.path();
        let ours = std::fs::read_to_string(&path)
            .map(|t| t.lines().next().is_some_and(|l| l.starts_with(&mark)))
            .unwrap_or(false);
        if ours {
            std::fs::remove_file(&path)
                .map_err(|e| CronError::Write(format!("`{}`: {e}", path.display())))?;
            removed += 1;
        }
    }
    Ok(removed)
}

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// A cron expression as systemd `OnCalendar=` values (two when cron's
/// either-day rule needs them: day of month and day of week both set).
pub fn on_calendar(expr: &str) -> Result<Vec<String>, String> {
    let expr = expr.trim();
    let simple = |s: &str| Ok(vec![s.to_string()]);
    match expr {
        "@hourly" => return simple("*-*-* *:00:00"),
        "@daily" | "@midnight" => return simple("*-*-* 00:00:00"),
        "@weekly" => return simple("Sun *-*-* 00:00:00"),
        "@monthly" => return simple("*-*-01 00:00:00"),
        "@yearly" | "@annually" => return simple("*-01-01 00:00:00"),
        _ => {}
    }
    crate::manifest::check_cron(expr)?;
    let fields: Vec<&str> = expr.split_whitespace().collect();
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let minute = expand(fields[0], 0, 59, &[], 0)?;
    let hour = expand(fields[1], 0, 23, &[], 0)?;
    let dom = expand(fields[2], 1, 31, &[], 0)?;
    let month = expand(fields[3], 1, 12, MONTHS, 1)?;
    let dow: BTreeSet<u32> = expand(fields[4], 0, 7, DAYS, 0)?
        .into_iter()
        .map(|d| d % 7)
        .collect();
    let list = |set: &BTreeSet<u32>, lo: u32, hi: u32| {
        if set.len() as u32 == hi - lo + 1 {
            "*".to_string()
        } else {
            set.iter()
                .map(|v| format!("{v:02}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let time = format!("{}:{}:00", list(&hour, 0, 23), list(&minute, 0, 59));
    let months = list(&month, 1, 12);
    let days = list(&dom, 1, 31);
    let weekdays = if dow.len() == 7 {
        String::new()
    } else {
        dow.iter()
            .map(|d| DAY_NAMES[*d as usize])
            .collect::<Vec<_>>()
            .join(",")
    };
    // Vixie cron: when both day fields are restricted (neither starts with
    // `*`), a day matching either one fires.
    let dom_restricted = !fields[2].starts_with('*');
    let dow_restricted = !fields[4].starts_with('*');
    Ok(if dom_restricted && dow_restricted {
        vec![
            format!("{weekdays} *-{months}-* {time}"),
            format!("*-{months}-{days} {time}"),
        ]
    } else if weekdays.is_empty() {
        vec![format!("*-{months}-{days} {time}")]
    } else {
        vec![format!("{weekdays} *-{months}-{days} {time}")]
    })
}

/// The values one cron field matches.
fn expand(
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    base: u32,
) -> Result<BTreeSet<u32>, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + base);
        }
        s.parse::<u32>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| format!("`{s}` is outside {lo}-{hi}"))
    };
    let mut out = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step `/{s}`"))?,
            ),
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // `5/15` means from 5 to the end, every 15.
            (a, if step > 1 { hi } else { a })
        };
        let mut v = a;
        while v <= b {
            out.insert(v);
            v += step;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_become_calendar_specs() {
        let one = |e: &str| on_calendar(e).unwrap();
        assert_eq!(one("0 9 * * *"), ["*-*-* 09:00:00"]);
        assert_eq!(one("*/15 * * * *"), ["*-*-* *:00,15,30,45:00"]);
        assert_eq!(one("30 2 * * 1-5"), ["Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00"]);
        assert_eq!(one("0 0 1 jan,jul *"), ["*-01,07-01 00:00:00"]);
        assert_eq!(one("0 0 * * 7"), ["Sun *-*-* 00:00:00"]);
        assert_eq!(
            one("0 12 13 * fri"),
            ["Fri *-*-* 12:00:00", "*-*-13 12:00:00"]
        );
        assert_eq!(one("@weekly"), ["Sun *-*-* 00:00:00"]);
        assert_eq!(one("0 8-18/2 * * *"), ["*-*-* 08,10,12,14,16,18:00:00"]);
        assert!(on_calendar("61 * * * *").is_err());
        assert!(on_calendar("@reboot").is_err());
    }

    #[test]
    fn units_round_trip_and_leave_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job {
            repo: PathBuf::from("/srv/repo 100%"),
            exe: PathBuf::from("/usr/bin/proctor"),
            manifest: None,
            env: vec![("PROCTOR_KEY_DIR".into(), "/k".into())],
        };
        std::fs::write(dir.path().join("proctor-abc-mine.timer"), "# mine\n").unwrap();
        let ticks = [Tick {
            at: "0 9 * * *".into(),
            loop_id: "deps".into(),
        }];
        let names = sync(dir.path(), &job, "abc", &ticks).unwrap();
        assert_eq!(names, ["proctor-abc-deps-1.timer"]);
        let service =
            std::fs::read_to_string(dir.path().join("proctor-abc-deps-1.service")).unwrap();
        insta::assert_snapshot!("service", service);
        let timer = std::fs::read_to_string(dir.path().join("proctor-abc-deps-1.timer")).unwrap();
        insta::assert_snapshot!("timer", timer);
        let again = sync(dir.path(), &job, "abc", &ticks).unwrap();
        assert_eq!(again, names);
        assert_eq!(remove(dir.path(), &job, "abc").unwrap(), 2);
        assert!(dir.path().join("proctor-abc-mine.timer").exists());
    }
}
