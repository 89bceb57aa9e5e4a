//! napi glue of `Limiter`: a thin handle on [`crate::limiter::LimiterCore`].
//!
//! The JS layer (`lib/p-limit.js`) keeps the closures and promises; this
//! class only moves ids and numbers. Per task it is called twice, `submit`
//! and `finish`, and both return a number, never a fresh JS array, on the
//! common path: an id is encoded as `id * 2 + flag`, and the rarer case of
//! several started tasks is fetched with `takeStarted()`. Time is read here
//! from a monotonic clock, so JS passes none.

use napi_derive::napi;

use crate::clock::{Clock, MonotonicClock};
use crate::error::{Error, ErrorCode};
use crate::limiter::{Cancel, Config, LimiterCore, Rate, TaskOptions, UNLIMITED};

fn limit_from_f64(value: f64, option: &str) -> Result<u64, Error> {
  if value == f64::INFINITY {
    return Ok(UNLIMITED);
  }
  if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
    return Ok(value as u64);
  }
  Err(Error::invalid_arg(format!(
    "options.{option} must be a non-negative integer or Infinity"
  )))
}

/// Counters and percentiles of a limiter (times in milliseconds).
#[napi(object)]
pub struct NativeLimiterStats {
  /// Tasks running.
  pub active: f64,
  /// Tasks waiting.
  pub pending: f64,
  /// Permits held by running tasks (the sum of their weights).
  pub permits_in_use: f64,
  /// Tasks whose function fulfilled.
  pub completed: f64,
  /// Tasks whose function threw or rejected.
  pub rejected: f64,
  /// Tasks that timed out, waiting or running.
  pub timed_out: f64,
  /// Tasks aborted by their signal (or `clear()`), waiting or running.
  pub aborted: f64,
  /// Calls refused with `ERR_QUEUE_FULL`.
  pub queue_full: f64,
  /// Queue wait, 50th percentile.
  pub wait_p50: f64,
  /// Queue wait, 90th percentile.
  pub wait_p90: f64,
  /// Queue wait, 99th percentile.
  pub wait_p99: f64,
  /// Run time, 50th percentile.
  pub run_p50: f64,
  /// Run time, 90th percentile.
  pub run_p90: f64,
  /// Run time, 99th percentile.
  pub run_p99: f64,
}

/// The permit/queue state machine of one `Limiter` (internal; use `Limiter`).
#[napi]
pub struct NativeLimiter {
  core: LimiterCore,
  clock: MonotonicClock,
}

#[napi]
impl NativeLimiter {
  /// `concurrency` and `maxPending` are integers or `Infinity`; `rateLimit`
  /// 0 means no rate limit.
  #[napi(constructor)]
  pub fn new(
    concurrency: f64,
    max_pending: f64,
    rate_limit: u32,
    rate_interval: f64,
  ) -> napi::Result<Self, ErrorCode> {
    let rate = (rate_limit > 0).then_some(Rate {
      limit: rate_limit,
      interval_ms: rate_interval,
    });
    let core = LimiterCore::new(Config {
      concurrency: limit_from_f64(concurrency, "concurrency")?,
      max_pending: limit_from_f64(max_pending, "maxPending")?,
      rate,
    })?;
    Ok(Self {
      core,
      clock: MonotonicClock::new(),
    })
  }

  /// Submits a task; returns `id * 2 + 1` if it started, `id * 2` if it waits.
  /// A negative `timeout` means none. Throws `ERR_QUEUE_FULL`, `ERR_INVALID_ARG`.
  #[napi]
  pub fn submit(
    &mut self,
    weight: u32,
    priority: i32,
    timeout: f64,
  ) -> napi::Result<f64, ErrorCode> {
    let options = TaskOptions {
      weight: u64::from(weight),
      priority,
      timeout_ms: (timeout >= 0.0).then_some(timeout),
    };
    let now = self.clock.now_ms();
    let submitted = self.core.submit(options, now)?;
    Ok(f64::from(submitted.id) * 2.0 + f64::from(u8::from(submitted.started)))
  }

  /// The function of running task `id` settled. Returns -1 if no task
  /// started, else `first * 2 + more` (call `takeStarted()` when `more`).
  #[napi]
  pub fn finish(&mut self, id: u32, ok: bool) -> f64 {
    let now = self.clock.now_ms();
    self.core.finish(id, ok, now);
    self.first_started()
  }

  /// Aborts (`timedOut` false) or times out task `id`. Returns a bit set:
  /// 1 = it was waiting and is gone, 2 = tasks started (`takeStarted()`).
  #[napi]
  pub fn cancel(&mut self, id: u32, timed_out: bool) -> u32 {
    let why = if timed_out {
      Cancel::TimedOut
    } else {
      Cancel::Aborted
    };
    let now = self.clock.now_ms();
    let was_waiting = self.core.cancel(id, why, now);
    u32::from(was_waiting) | (u32::from(self.core.has_started()) << 1)
  }

  /// Times out due tasks and starts what the rate allows; returns the
  /// expired tasks as `id * 2 + wasWaiting`. Then call `takeStarted()`.
  #[napi]
  pub fn expire(&mut self) -> Vec<u32> {
    let now = self.clock.now_ms();
    let expired = self.core.expire(now);
    self.core.poll(now);
    expired
      .into_iter()
      .map(|e| e.id * 2 + u32::from(e.was_waiting))
      .collect()
  }

  /// Milliseconds until `expire()` should run again, or -1 for never.
  #[napi]
  pub fn next_wake_in(&self) -> f64 {
    match self.core.next_wake() {
      Some(at) => (at - self.clock.now_ms()).max(0.0),
      None => -1.0,
    }
  }

  /// The ids started since the last call, in start order.
  #[napi]
  pub fn take_started(&mut self) -> Vec<u32> {
    self.core.take_started()
  }

  /// Changes the permits; returns whether tasks started.
  #[napi]
  pub fn set_concurrency(&mut self, concurrency: f64) -> napi::Result<bool, ErrorCode> {
    let now = self.clock.now_ms();
    self
      .core
      .set_concurrency(limit_from_f64(concurrency, "concurrency")?, now)?;
    Ok(self.core.has_started())
  }

  /// Stops starting waiting tasks.
  #[napi]
  pub fn pause(&mut self) {
    self.core.pause();
  }

  /// Starts waiting tasks again; returns whether tasks started.
  #[napi]
  pub fn resume(&mut self) -> bool {
    let now = self.clock.now_ms();
    self.core.resume(now);
    self.core.has_started()
  }

  /// Removes every waiting task; returns their ids.
  #[napi]
  pub fn clear(&mut self) -> Vec<u32> {
    self.core.clear()
  }

  /// Counters and percentiles.
  #[napi]
  pub fn stats(&self) -> NativeLimiterStats {
    let s = self.core.stats();
    NativeLimiterStats {
      active: s.active as f64,
      pending: s.pending as f64,
      permits_in_use: s.permits_in_use as f64,
      completed: s.completed as f64,
      rejected: s.rejected as f64,
      timed_out: s.timed_out as f64,
      aborted: s.aborted as f64,
      queue_full: s.queue_full as f64,
      wait_p50: s.wait_p50,
      wait_p90: s.wait_p90,
      wait_p99: s.wait_p99,
      run_p50: s.run_p50,
      run_p90: s.run_p90,
      run_p99: s.run_p99,
    }
  }

  /// Task slots allocated in the core (live or free), for leak tests.
  #[napi(getter)]
  pub fn slots(&self) -> u32 {
    self.core.slots() as u32
  }

  fn first_started(&mut self) -> f64 {
    match self.core.take_first_started() {
      None => -1.0,
      Some((id, more)) => f64::from(id) * 2.0 + f64::from(u8::from(more)),
    }
  }
}
