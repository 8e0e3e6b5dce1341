//! The live progress line on a terminal: a spinner, the active loop, run N
//! of M, what the run waits on, and how long it has waited.
//!
//! It is a renderer like any other: it only observes events. It draws on
//! stderr, only when [`crate::terminal::live_progress`] allows it;
//! captured output never gets it. Event lines are printed through it so
//! the progress line stays at the bottom.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::events::{Event, Phase, Record};
use crate::state;

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const TICK: Duration = Duration::from_millis(120);

/// What the run is doing now.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub loop_id: String,
    /// `agent working`, `exam (verify)`, `not yet, next check`, ...
    pub what: String,
    /// Run N of M (M is the loop's run budget, when it has one).
    pub run: Option<(u32, Option<u32>)>,
    /// Unix seconds when this activity began.
    pub since: f64,
    /// When a sleep ends (unix seconds).
    pub until: Option<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    activity: Option<Activity>,
    run_started: Option<f64>,
    /// Last run number seen per loop, for exams between attempts.
    last_run: Vec<(String, u32, Option<u32>)>,
    frame: usize,
    shown: bool,
}

/// The progress line; share it between the printer and its ticker.
#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<Inner>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// Updates what the run is doing from one event.
    pub fn observe(&self, record: &Record) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        apply(&mut inner, record);
    }

    /// Prints `line` above the progress line, then redraws it.
    pub fn print_line(&self, line: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let mut err = std::io::stderr().lock();
        if inner.shown {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{line}");
        inner.shown = false;
        draw(&mut inner, &mut err);
    }

    /// Advances the spinner.
    pub fn tick(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.frame = inner.frame.wrapping_add(1);
        let mut err = std::io::stderr().lock();
        draw(&mut inner, &mut err);
    }

    /// Removes the progress line.
    pub fn clear(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            inner.shown = false;
        }
    }

    /// Redraws the line every tick on a thread of its own until the
    /// returned guard is dropped.
    pub fn start_ticker(self: &Arc<Self>) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::clone(self);
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    progress.tick();
                }
            })
            .ok();
        Ticker {
            progress: Arc::clone(self),
            stop,
            handle,
        }
    }
}

/// Stops the ticker and clears the line when dropped.
pub struct Ticker {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        self.progress.clear();
    }
}

fn draw(inner: &mut Inner, err: &mut impl Write) {
    let Some(activity) = &inner.activity else {
        if inner.shown {
            let _ = write!(err, "\r\x1b[2K");
            inner.shown = false;
        }
        let _ = err.flush();
        return;
    };
    let text = describe(activity, inner.run_started, state::now());
    let frame = FRAMES[inner.frame % FRAMES.len()];
    let _ = write!(err, "\r\x1b[2K{frame} {text}");
    let _ = err.flush();
    inner.shown = true;
}

fn apply(inner: &mut Inner, record: &Record) {
    let ts = record.ts;
    let run_of = |inner: &Inner, id: &str| {
        inner
            .last_run
            .iter()
            .find(|(l, _, _)| l == id)
            .map(|(_, n, of)| (*n, *of))
    };
    match &record.event {
        Event::RunStart { .. } => {
            inner.run_started = Some(ts);
            inner.activity = None;
        }
        Event::CheckStart { loop_id, phase, .. } => {
            let what = match phase {
                Phase::Precheck => "exam (check first)",
                Phase::Verify => "exam (verify the attempt)",
                Phase::Confirm => "exam (confirm)",
                Phase::Baseline => "exam (on the base commit)",
                Phase::Land => "exam (on the merged tree, to land)",
            };
            inner.activity = Some(Activity {
                loop_id: loop_id.clone(),
                what: what.into(),
                run: run_of(inner, loop_id),
                since: ts,
                until: None,
            });
        }
        Event::AgentStart {
            loop_id, run, of, ..
        } => {
            inner.last_run.retain(|(l, _, _)| l != loop_id);
            inner.last_run.push((loop_id.clone(), *run, *of));
            inner.activity = Some(Activity {
                loop_id: loop_id.clone(),
                what: "agent working".into(),
                run: Some((*run, *of)),
                since: ts,
                until: None,
            });
        }
        Event::AgentEnd { loop_id, .. } => {
            inner.activity = Some(Activity {
                loop_id: loop_id.clone(),
                what: "committing the attempt".into(),
                run: run_of(inner, loop_id),
                since: ts,
                until: None,
            });
        }
        Event::Wait { loop_id, secs } => {
            inner.activity = Some(Activity {
                loop_id: loop_id.clone(),
                what: "not yet · next check".into(),
                run: run_of(inner, loop_id),
                since: ts,
                until: Some(ts + secs),
            });
        }
        // A build step can take minutes (a `RUN` that compiles): the line
        // names the step and how long it has run.
        Event::ImageBuild { source, step } => {
            let step: String = if step.chars().count() > 48 {
                format!("{}…", step.chars().take(47).collect::<String>())
            } else {
                step.clone()
            };
            inner.activity = Some(Activity {
                loop_id: source.clone(),
                what: format!("image build: {step}"),
                run: None,
                since: ts,
                until: None,
            });
        }
        Event::ImageReady { .. }
        | Event::CheckResult { .. }
        | Event::Commit { .. }
        | Event::Close { .. } => {
            inner.activity = None;
        }
        Event::Card { .. } | Event::Gate { .. } | Event::RunEnd { .. } => inner.activity = None,
        _ => {}
    }
}

/// The progress text (without the spinner): pure, for tests.
pub fn describe(activity: &Activity, run_started: Option<f64>, now: f64) -> String {
    let mut parts = vec![activity.loop_id.clone()];
    if let Some((n, of)) = activity.run {
        parts.push(match of {
            Some(of) => format!("run {n}/{of}"),
            None => format!("run {n}"),
        });
    }
    match activity.until {
        Some(until) => parts.push(format!(
            "{} in {}",
            activity.what,
            clock((until - now).max(0.0))
        )),
        None => parts.push(format!(
            "{} {}",
            activity.what,
            clock((now - activity.since).max(0.0))
        )),
    }
    if let Some(start) = run_started {
        parts.push(format!("elapsed {}", clock((now - start).max(0.0))));
    }
    parts.join(" · ")
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(secs: f64) -> String {
    let s = secs as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts: f64, event: Event) -> Record {
        Record {
            v: 1,
            ts,
            run: "r".into(),
            event,
        }
    }

    #[test]
    fn the_line_names_the_loop_the_run_and_the_wait() {
        let mut inner = Inner::default();
        apply(
            &mut inner,
            &record(
                100.0,
                Event::RunStart {
                    root: "fix".into(),
                    branch: "proctor/fix".into(),
                    base: "b".into(),
                    manifest: "proctor.yaml".into(),
                    engine: "docker".into(),
                    pid: 1,
                    once: None,
                },
            ),
        );
        apply(
            &mut inner,
            &record(
                110.0,
                Event::AgentStart {
                    loop_id: "fix".into(),
                    run: 2,
                    of: Some(5),
                    log: "l".into(),
                    image: "i".into(),
                },
            ),
        );
        let activity = inner.activity.clone().unwrap();
        assert_eq!(
            describe(&activity, inner.run_started, 122.0),
            "fix · run 2/5 · agent working 0:12 · elapsed 0:22"
        );
        apply(
            &mut inner,
            &record(
                130.0,
                Event::Wait {
                    loop_id: "fix".into(),
                    secs: 90.0,
                },
            ),
        );
        let activity = inner.activity.clone().unwrap();
        assert_eq!(
            describe(&activity, None, 160.0),
            "fix · run 2/5 · not yet · next check in 1:00"
        );
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn an_image_build_shows_its_step_until_the_image_is_ready() {
        let mut inner = Inner {
            run_started: Some(100.0),
            ..Inner::default()
        };
        apply(
            &mut inner,
            &record(
                101.0,
                Event::ImageBuild {
                    source: "Dockerfile".into(),
                    step: format!("Step 3/5 : RUN cargo build {}", "x".repeat(60)),
                },
            ),
        );
        let activity = inner.activity.clone().unwrap();
        assert_eq!(
            describe(&activity, inner.run_started, 161.0),
            "Dockerfile · image build: Step 3/5 : RUN cargo build xxxxxxxxxxxxxxxxxxxx… 1:00 · elapsed 1:01"
        );
        apply(
            &mut inner,
            &record(
                170.0,
                Event::ImageReady {
                    source: "Dockerfile".into(),
                    image: "proctor-auto:0".into(),
                    id: "sha256:0".into(),
                    built: true,
                    secs: 69.0,
                },
            ),
        );
        assert!(inner.activity.is_none());
    }
}
