//! The napi glue of `SingleFlight`.
//!
//! A local (unnamed) group keeps its flights in JS: joining an existing
//! flight is a JS `Map.get` and never crosses into Rust. What crosses is the
//! deadlines, in batches: the JS layer writes `(deadline, slot, id)` triples
//! into a `Float64Array` and hands the batch over only when it is full or
//! when the group's single timer fires, in the same call that returns the
//! flights whose deadline passed. A flight that settles while its triple is
//! still in the batch is taken out of the batch in JS and never reaches Rust;
//! one that settles later sends a removal triple in the next batch. So a
//! flight costs no crossing of its own, and the Rust queue holds only live
//! flights.

use std::time::Duration;

use napi::bindgen_prelude::{Float64Array, Float64ArraySlice};
use napi_derive::napi;

use crate::error::{Error, ErrorCode};
use crate::single_flight::{DeadlineEntry, DeadlineQueue};

fn ms_to_duration(ms: f64) -> Duration {
  if ms > 0.0 {
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
  } else {
    Duration::ZERO
  }
}

/// The deadline queue of one local `SingleFlight` group (internal: used by
/// `lib/single-flight.js`, not a public API).
#[napi]
pub struct FlightDeadlines {
  queue: DeadlineQueue,
  expired: Vec<DeadlineEntry>,
}

#[napi]
impl FlightDeadlines {
  /// An empty queue.
  #[napi(constructor)]
  pub fn new() -> Self {
    Self {
      queue: DeadlineQueue::new(),
      expired: Vec::new(),
    }
  }

  /// Applies the first `count` triples `(deadlineMs, slot, id)` of `batch`
  /// (a negative `slot` removes the entry `(deadlineMs, id)`, a flight that
  /// settled after its deadline was handed over; otherwise it is added), then
  /// writes the entries whose deadline is at or before `nowMs` into `out` as
  /// pairs `(slot, id)` starting at `out[1]`, as many as fit, earliest first.
  /// `out[0]` receives the earliest remaining deadline in milliseconds, or
  /// -1 if none remains. Returns how many pairs were written; if `out` was
  /// too small, the rest stay queued and `out[0] <= nowMs` says to call again.
  ///
  /// Throws `ERR_INVALID_ARG` if `count` triples do not fit in `batch` or
  /// `out` cannot hold the next deadline.
  #[napi]
  pub fn drain(
    &mut self,
    batch: Float64ArraySlice,
    count: u32,
    now_ms: f64,
    mut out: Float64Array,
  ) -> napi::Result<u32, ErrorCode> {
    // SAFETY: the JS thread is inside this call, so nothing else touches the
    // buffer while Rust writes to it; the slice does not outlive the call.
    let out = unsafe { out.as_mut() };
    let count = count as usize;
    if count.saturating_mul(3) > batch.len() || out.is_empty() {
      return Err(Error::invalid_arg("drain: batch or out is too small").into());
    }
    for triple in batch[..count * 3].chunks_exact(3) {
      let (deadline, id) = (ms_to_duration(triple[0]), triple[2] as u64);
      if triple[1] < 0.0 {
        self.queue.remove(deadline, id);
      } else {
        self.queue.push(DeadlineEntry {
          deadline,
          slot: triple[1] as u32,
          id,
        });
      }
    }
    let room = (out.len() - 1) / 2;
    self.expired.clear();
    let moved = self
      .queue
      .pop_expired(ms_to_duration(now_ms), room, &mut self.expired);
    for (i, e) in self.expired.iter().enumerate() {
      out[1 + 2 * i] = f64::from(e.slot);
      out[2 + 2 * i] = e.id as f64;
    }
    out[0] = self.queue.next().map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
    Ok(moved as u32)
  }

  /// How many deadlines (live or stale) are queued.
  #[napi(getter)]
  pub fn length(&self) -> u32 {
    self.queue.len() as u32
  }

  /// Drops every queued deadline.
  #[napi]
  pub fn clear(&mut self) {
    self.queue.clear();
  }
}

impl Default for FlightDeadlines {
  fn default() -> Self {
    Self::new()
  }
}
