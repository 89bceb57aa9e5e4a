//! Time for the cores, injectable so no test sleeps.
//!
//! Cores that keep deadlines read time through [`Clock`]. Production code
//! uses [`MonotonicClock`]; tests use [`ManualClock`] and move time forward
//! by hand (the idea of lru-cache's `perf` option and tokio's paused time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic source of time, measured from the clock's own origin.
pub trait Clock: Send + Sync {
  /// Time elapsed since this clock's origin. Never goes backwards.
  fn now(&self) -> Duration;

  /// [`Clock::now`] in milliseconds, the unit JS timers and `performance.now()` use.
  fn now_ms(&self) -> f64 {
    self.now().as_secs_f64() * 1000.0
  }
}

/// The real clock: [`Instant`] measured from when the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
  origin: Instant,
}

impl MonotonicClock {
  /// A clock whose origin is now.
  pub fn new() -> Self {
    Self {
      origin: Instant::now(),
    }
  }
}

impl Default for MonotonicClock {
  fn default() -> Self {
    Self::new()
  }
}

impl Clock for MonotonicClock {
  fn now(&self) -> Duration {
    self.origin.elapsed()
  }
}

/// A clock that moves only when told to. Safe to share between threads.
///
/// # Examples
///
/// ```
/// use bulkhead::clock::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now_ms(), 250.0);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
  nanos: AtomicU64,
}

impl ManualClock {
  /// A clock standing at zero.
  pub fn new() -> Self {
    Self::default()
  }

  /// Moves the clock forward by `by`.
  pub fn advance(&self, by: Duration) {
    let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
    self.nanos.fetch_add(nanos, Ordering::SeqCst);
  }

  /// Sets the clock to `to` since its origin.
  ///
  /// # Panics
  ///
  /// Panics if `to` is earlier than the current time: a monotonic clock
  /// never goes backwards, and a test that tries has a bug.
  pub fn set(&self, to: Duration) {
    let nanos = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
    let previous = self.nanos.swap(nanos, Ordering::SeqCst);
    assert!(
      previous <= nanos,
      "ManualClock::set would move time backwards"
    );
  }
}

impl Clock for ManualClock {
  fn now(&self) -> Duration {
    Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn manual_clock_moves_only_when_told() {
    let clock = ManualClock::new();
    assert_eq!(clock.now(), Duration::ZERO);
    clock.advance(Duration::from_millis(5));
    clock.advance(Duration::from_millis(5));
    assert_eq!(clock.now_ms(), 10.0);
    clock.set(Duration::from_secs(1));
    assert_eq!(clock.now(), Duration::from_secs(1));
  }

  #[test]
  #[should_panic(expected = "backwards")]
  fn manual_clock_refuses_to_go_back() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(2));
    clock.set(Duration::from_secs(1));
  }

  #[test]
  fn monotonic_clock_never_goes_back() {
    let clock = MonotonicClock::new();
    let a = clock.now();
    let b = clock.now();
    assert!(b >= a);
  }
}
