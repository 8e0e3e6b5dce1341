//! Time as the engine sees it: the wall clock it reads for budgets and
//! commit trailers, and the waits between `75` (not yet) checks.
//!
//! Behind a small trait so the loop's decisions (time budgets, waits that
//! spend no runs) can be tested in milliseconds with a clock the test moves
//! (`FakeClock`, tests only). Outcome durations are the cage's to
//! measure, not the clock's.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Where the engine reads the time and how it waits.
pub trait Clock {
    /// Unix seconds now.
    fn now(&self) -> f64;
    /// Waits `length`.
    fn sleep(&self, length: Duration) -> Pin<Box<dyn Future<Output = ()> + '_>>;
}

/// The host's wall clock and tokio's timer: what a real run uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        crate::state::now()
    }

    fn sleep(&self, length: Duration) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(tokio::time::sleep(length))
    }
}

/// The engine's clock unless a test injects another.
pub(super) static SYSTEM: SystemClock = SystemClock;

/// A clock that moves only when told to, or when the engine sleeps on it
/// (a sleep returns at once, the clock that much later); it records every
/// sleep. Shared with the fake cage, which advances it by each scripted
/// outcome's duration.
#[cfg(test)]
#[derive(Debug)]
pub struct FakeClock {
    now: std::sync::Mutex<f64>,
    slept: std::sync::Mutex<Vec<Duration>>,
}

#[cfg(test)]
impl FakeClock {
    /// A clock that reads `start` (Unix seconds) until moved.
    pub fn at(start: f64) -> FakeClock {
        FakeClock {
            now: std::sync::Mutex::new(start),
            slept: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by.as_secs_f64();
    }

    /// Every sleep the engine asked for, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> f64 {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep(&self, length: Duration) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        self.slept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(length);
        self.advance(length);
        Box::pin(std::future::ready(()))
    }
}
