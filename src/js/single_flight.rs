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

use super::guard;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Either, Float64Array, Float64ArraySlice, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use parking_lot::Mutex;

use crate::clock::{Clock, MonotonicClock};
use crate::error::{Error, ErrorCode};
use crate::registry::{Named, Registry};
use crate::single_flight::{
  Begin, DeadlineEntry, DeadlineQueue, FlightId, FlightKey, MemberId, SharedEvent, SharedFlights,
};

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
  #[napi(constructor, catch_unwind)]
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
  #[napi(catch_unwind)]
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

  /// How many deadlines are queued: the live flights whose deadline was
  /// handed over (a settled flight's removal takes its entry out exactly).
  #[napi(getter, catch_unwind)]
  pub fn length(&self) -> u32 {
    self.queue.len() as u32
  }

  /// Drops every queued deadline.
  #[napi(catch_unwind)]
  pub fn clear(&mut self) {
    self.queue.clear();
  }
}

impl Default for FlightDeadlines {
  fn default() -> Self {
    Self::new()
  }
}

// ---------------------------------------------------------------------------
// Named groups: one flight table per name, shared by every thread.
// ---------------------------------------------------------------------------

/// The wake-up channel of one member: a weak thread-safe function (it never
/// keeps its thread's event loop alive) and the events waiting for it.
struct Member {
  wake: ThreadsafeFunction<(), (), (), Status, false, true>,
  outbox: Vec<SharedEvent>,
}

struct SharedInner {
  flights: SharedFlights,
  members: HashMap<MemberId, Member>,
  next_member: MemberId,
}

/// The process-wide state of one named group.
struct SharedGroup {
  timeout: Option<Duration>,
  max_keys: Option<usize>,
  inner: Mutex<SharedInner>,
}

impl SharedGroup {
  /// Queues `events` and wakes each member that had nothing queued (one
  /// call per member per batch, however many events it gets).
  fn dispatch(inner: &mut SharedInner, events: Vec<(MemberId, SharedEvent)>) {
    for (member, event) in events {
      if let Some(m) = inner.members.get_mut(&member) {
        let was_empty = m.outbox.is_empty();
        m.outbox.push(event);
        if was_empty {
          // A closing member (its thread is exiting) is dropped by its own
          // finalizer; nothing to do if the call fails.
          let _ = m.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
      }
    }
  }
}

static NAMED_GROUPS: Registry<SharedGroup> = Registry::new();
static CLOCK: OnceLock<MonotonicClock> = OnceLock::new();

fn now() -> Duration {
  CLOCK.get_or_init(MonotonicClock::new).now()
}

fn opt_ms(ms: Option<f64>) -> Option<Duration> {
  ms.filter(|m| m.is_finite() && *m > 0.0).map(ms_to_duration)
}

fn flight_key(key: Either<String, f64>) -> FlightKey {
  match key {
    Either::A(s) => FlightKey::Str(s),
    Either::B(n) => FlightKey::number(n),
  }
}

/// One event for a member (internal, see `lib/single-flight.js`): `kind` is
/// 0 settled (with `ok` and `bytes`), 1 timed out, 2 leader exited, 3 abort,
/// 4 forgotten.
#[napi(object)]
pub struct FlightEvent {
  /// 0 settled, 1 timed out, 2 leader exited, 3 abort, 4 forgotten.
  pub kind: u32,
  /// The flight id.
  pub id: f64,
  /// For `kind` 0: whether `fn` fulfilled.
  pub ok: bool,
  /// For `kind` 0: the serialized outcome.
  pub bytes: Option<Buffer>,
}

/// Counters of a named group, across every thread.
#[napi(object)]
pub struct NamedFlightStats {
  /// Flights started.
  pub flights: f64,
  /// Member calls that started or joined a flight (a thread's first caller of a key).
  pub calls: f64,
  /// Member calls that joined a flight another member started.
  pub shared: f64,
  /// Flights that passed their deadline.
  pub timeouts: f64,
  /// Members that left a flight.
  pub aborts: f64,
  /// Flights whose `fn` threw or rejected.
  pub errors: f64,
}

/// One thread's handle on a named `SingleFlight` group (internal: used by
/// `lib/single-flight.js`). Flights, deadlines and counts live in Rust and
/// are shared by every thread that opens the same name; each handle is a
/// member that is woken through `wake` when it has events to take.
#[napi]
pub struct NamedFlightGroup {
  handle: Option<Named<SharedGroup>>,
  member: MemberId,
}

#[napi]
impl NamedFlightGroup {
  /// Opens (or creates) the group `name`. A group that exists must have been
  /// opened with the same `timeoutMs` and `maxKeys`, else `ERR_INVALID_ARG`.
  #[napi(constructor, catch_unwind)]
  pub fn new(
    name: String,
    timeout_ms: Option<f64>,
    max_keys: Option<u32>,
    wake: Function<(), ()>,
  ) -> napi::Result<Self, ErrorCode> {
    if name.is_empty() {
      return Err(Error::invalid_arg("options.name must be a non-empty string").into());
    }
    let timeout = opt_ms(timeout_ms);
    let max_keys = max_keys.map(|m| m as usize);
    let wake = wake
      .build_threadsafe_function::<()>()
      .callee_handled::<false>()
      .weak::<true>()
      .build()
      .map_err(|e| Error::new(ErrorCode::Internal, e.reason.clone()))?;
    let handle = NAMED_GROUPS.open(
      &name,
      || {
        Ok::<_, Error>(SharedGroup {
          timeout,
          max_keys,
          inner: Mutex::new(SharedInner {
            flights: SharedFlights::new(max_keys, timeout),
            members: HashMap::new(),
            next_member: 1,
          }),
        })
      },
      |existing| {
        if existing.timeout == timeout && existing.max_keys == max_keys {
          Ok(())
        } else {
          Err(Error::invalid_arg(format!(
            "the SingleFlight group {name:?} is open with other options.timeout/options.maxKeys"
          )))
        }
      },
    )?;
    let member = {
      let mut inner = handle.inner.lock();
      let member = inner.next_member;
      inner.next_member += 1;
      inner.members.insert(
        member,
        Member {
          wake,
          outbox: Vec::new(),
        },
      );
      member
    };
    Ok(Self {
      handle: Some(handle),
      member,
    })
  }

  /// Starts or joins the flight for `key`: returns the flight id, positive
  /// if this member leads (and must run `fn`), negative if it joined. Throws
  /// `ERR_QUEUE_FULL` past `maxKeys`. (One number, not an array: building a
  /// JS array measured ~2 us of a ~3 us join here.)
  #[napi(catch_unwind)]
  pub fn begin(
    &self,
    key: Either<String, f64>,
    timeout_ms: Option<f64>,
  ) -> napi::Result<f64, ErrorCode> {
    let group = self.group()?;
    let mut inner = group.inner.lock();
    let timeout = opt_ms(timeout_ms).or(group.timeout);
    let begun = inner
      .flights
      .begin(self.member, flight_key(key), now(), timeout)?;
    Ok(match begun {
      Begin::Lead(id) => id.0 as f64,
      Begin::Join(id) => -(id.0 as f64),
    })
  }

  /// The leader reports the outcome of flight `id` (`bytes`: the serialized
  /// value or error); every other waiting member is woken.
  #[napi(catch_unwind)]
  pub fn settle(&self, id: f64, ok: bool, bytes: Buffer) -> napi::Result<(), ErrorCode> {
    let group = self.group()?;
    let mut inner = group.inner.lock();
    let bytes: Arc<[u8]> = Arc::from(&bytes[..]);
    let events = inner
      .flights
      .settle(self.member, FlightId(id as u64), ok, bytes);
    SharedGroup::dispatch(&mut inner, events);
    Ok(())
  }

  /// This member stops waiting on flight `id`.
  #[napi(catch_unwind)]
  pub fn leave(&self, id: f64) -> napi::Result<(), ErrorCode> {
    let group = self.group()?;
    let mut inner = group.inner.lock();
    let events = inner.flights.leave(self.member, FlightId(id as u64));
    SharedGroup::dispatch(&mut inner, events);
    Ok(())
  }

  /// Ends every flight of the group whose deadline passed (waking their
  /// members) and returns the next deadline in ms from now, or -1.
  #[napi(catch_unwind)]
  pub fn expire(&self) -> napi::Result<f64, ErrorCode> {
    let group = self.group()?;
    let mut inner = group.inner.lock();
    let now = now();
    let events = inner.flights.expire(now);
    SharedGroup::dispatch(&mut inner, events);
    Ok(
      inner
        .flights
        .next_deadline()
        .map_or(-1.0, |d| d.saturating_sub(now).as_secs_f64() * 1000.0),
    )
  }

  /// Takes this member's queued events.
  #[napi(catch_unwind)]
  pub fn take_events(&self) -> napi::Result<Vec<FlightEvent>, ErrorCode> {
    let group = self.group()?;
    let events = {
      let mut inner = group.inner.lock();
      match inner.members.get_mut(&self.member) {
        Some(m) => std::mem::take(&mut m.outbox),
        None => Vec::new(),
      }
    };
    Ok(
      events
        .into_iter()
        .map(|event| match event {
          SharedEvent::Settled { id, ok, bytes } => FlightEvent {
            kind: 0,
            id: id.0 as f64,
            ok,
            bytes: Some(Buffer::from(bytes.to_vec())),
          },
          SharedEvent::TimedOut { id } => FlightEvent {
            kind: 1,
            id: id.0 as f64,
            ok: false,
            bytes: None,
          },
          SharedEvent::LeaderExited { id } => FlightEvent {
            kind: 2,
            id: id.0 as f64,
            ok: false,
            bytes: None,
          },
          SharedEvent::Abort { id } => FlightEvent {
            kind: 3,
            id: id.0 as f64,
            ok: false,
            bytes: None,
          },
          SharedEvent::Forgotten { id } => FlightEvent {
            kind: 4,
            id: id.0 as f64,
            ok: false,
            bytes: None,
          },
        })
        .collect(),
    )
  }

  /// Unmaps `key` for every thread (the others are told with an event).
  #[napi(catch_unwind)]
  pub fn forget(&self, key: Either<String, f64>) -> napi::Result<bool, ErrorCode> {
    let group = self.group()?;
    let mut inner = group.inner.lock();
    let (was, events) = inner.flights.forget(self.member, &flight_key(key));
    SharedGroup::dispatch(&mut inner, events);
    Ok(was)
  }

  /// Whether a flight for `key` is in progress in any thread.
  #[napi(catch_unwind)]
  pub fn in_flight(&self, key: Either<String, f64>) -> napi::Result<bool, ErrorCode> {
    Ok(
      self
        .group()?
        .inner
        .lock()
        .flights
        .in_flight(&flight_key(key)),
    )
  }

  /// How many keys have a flight in progress, across threads.
  #[napi(getter, catch_unwind)]
  pub fn size(&self) -> napi::Result<u32, ErrorCode> {
    Ok(self.group()?.inner.lock().flights.size() as u32)
  }

  /// How many flights are alive, across threads (for leak tests).
  #[napi(getter, catch_unwind)]
  pub fn live_flights(&self) -> napi::Result<u32, ErrorCode> {
    Ok(self.group()?.inner.lock().flights.live_flights() as u32)
  }

  /// How many flight deadlines the shared table holds, across threads:
  /// exactly the live flights that have one (for leak tests).
  #[napi(getter, catch_unwind)]
  pub fn queued_deadlines(&self) -> napi::Result<u32, ErrorCode> {
    Ok(self.group()?.inner.lock().flights.queued_deadlines() as u32)
  }

  /// The group's counters, across threads.
  #[napi(catch_unwind)]
  pub fn stats(&self) -> napi::Result<NamedFlightStats, ErrorCode> {
    let s = self.group()?.inner.lock().flights.stats();
    Ok(NamedFlightStats {
      flights: s.flights as f64,
      calls: s.calls as f64,
      shared: s.shared as f64,
      timeouts: s.timeouts as f64,
      aborts: s.aborts as f64,
      errors: s.errors as f64,
    })
  }

  /// Leaves the group: flights this member leads end (their other members
  /// get `ERR_WORKER_EXITED`) and it leaves the flights it joined. Also
  /// done by the finalizer when the thread exits or the handle is collected.
  #[napi(catch_unwind)]
  pub fn close(&mut self) {
    if let Some(handle) = self.handle.take() {
      let mut inner = handle.inner.lock();
      inner.members.remove(&self.member);
      let events = inner.flights.remove_member(self.member);
      SharedGroup::dispatch(&mut inner, events);
    }
  }

  /// How many named groups are alive in the process (for leak tests).
  #[napi(catch_unwind)]
  pub fn live_groups() -> u32 {
    NAMED_GROUPS.len() as u32
  }

  fn group(&self) -> Result<&SharedGroup, Error> {
    self
      .handle
      .as_deref()
      .ok_or_else(|| Error::closed("the SingleFlight group is closed"))
  }
}

impl Drop for NamedFlightGroup {
  fn drop(&mut self) {
    // A finalizer: a panic here must not unwind into Node.
    guard::quiet(|| {
      self.close();
    })
  }
}
