use std::sync::atomic::{AtomicI64, Ordering};

use napi_derive::napi;

use crate::error::{Error, ErrorCode};
use crate::registry::{Named, Registry};

static COUNTERS: Registry<AtomicI64> = Registry::new();

/// A process-wide integer counter, shared by every worker_thread that opens
/// the same name. It is the smallest named instance: the smoke test of the
/// registry that every named primitive stands on.
#[napi]
pub struct NamedCounter {
  handle: Option<Named<AtomicI64>>,
}

#[napi]
impl NamedCounter {
  /// Opens (or creates, at 0) the counter called `name`.
  ///
  /// Throws `ERR_INVALID_ARG` if `name` is empty.
  #[napi(constructor, catch_unwind)]
  pub fn new(name: String) -> napi::Result<Self, ErrorCode> {
    if name.is_empty() {
      return Err(Error::invalid_arg("name must be a non-empty string").into());
    }
    let handle = COUNTERS.open(&name, || Ok::<_, Error>(AtomicI64::new(0)), |_| Ok(()))?;
    Ok(Self {
      handle: Some(handle),
    })
  }

  /// Adds `delta` and returns the new value. Throws `ERR_CLOSED` after `close()`.
  #[napi(catch_unwind)]
  pub fn add(&self, delta: i64) -> napi::Result<i64, ErrorCode> {
    let counter = self.counter()?;
    Ok(counter.fetch_add(delta, Ordering::SeqCst) + delta)
  }

  /// The current value. Throws `ERR_CLOSED` after `close()`.
  #[napi(getter, catch_unwind)]
  pub fn value(&self) -> napi::Result<i64, ErrorCode> {
    Ok(self.counter()?.load(Ordering::SeqCst))
  }

  /// Lets go of this handle; the counter is freed when no thread holds one.
  #[napi(catch_unwind)]
  pub fn close(&mut self) {
    self.handle = None;
  }

  /// How many named counters are alive in the process (for leak tests).
  #[napi(catch_unwind)]
  pub fn live_count() -> u32 {
    COUNTERS.len() as u32
  }

  fn counter(&self) -> Result<&AtomicI64, Error> {
    self
      .handle
      .as_deref()
      .ok_or_else(|| Error::closed("NamedCounter is closed"))
  }
}
