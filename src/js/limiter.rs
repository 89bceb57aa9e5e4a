//! napi glue of `Limiter`: a thin handle on [`crate::limiter::LimiterCore`].
//!
//! The JS layer (`lib/p-limit.js`) keeps the closures and promises; this
//! module only moves ids and numbers. Per task it is called twice, submit
//! and finish, and both return a number, never a fresh JS array, on the
//! common path: an id is encoded as `id * 2 + flag`, and the rarer case of
//! several started tasks is fetched with `takeStarted()`. Time is read here
//! from a monotonic clock, so JS passes none.
//!
//! The cores live in a per-thread table indexed by a small handle, so the
//! two per-task calls can be hand-registered Node-API functions
//! (`limiterSubmit`, `limiterFinish`, from `limiterRawFunctions()`) that skip napi-rs's `this` unwrapping;
//! `bench/p-limit.bench.mjs` measures both paths. Everything else goes
//! through the `NativeLimiter` class, which owns its table entry and frees
//! it when collected.

use super::guard;
use super::raw::{args as read_args, define_functions, RawCallback};
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::ptr;

use napi::bindgen_prelude::{Env, Object};
use napi::{sys, JsValue};
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

struct Entry {
  core: LimiterCore,
  clock: MonotonicClock,
}

thread_local! {
  // Cores of this thread's limiters; a handle is an index. Each JS thread
  // (main or worker) has its own table, as each has its own limiters.
  static CORES: RefCell<Vec<Option<Entry>>> = const { RefCell::new(Vec::new()) };
}

fn with_entry<R>(handle: u32, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
  CORES
    .try_with(|cores| {
      let mut cores = cores.borrow_mut();
      cores.get_mut(handle as usize)?.as_mut().map(f)
    })
    .ok()
    .flatten()
}

fn closed() -> Error {
  Error::closed("the limiter's native core is gone")
}

/// The permit/queue state machine of one `Limiter` (internal; use `Limiter`).
#[napi]
pub struct NativeLimiter {
  handle: u32,
}

impl Drop for NativeLimiter {
  fn drop(&mut self) {
    // A finalizer: a panic here must not unwind into Node.
    guard::quiet(|| {
      let handle = self.handle as usize;
      // `try_with`: at thread exit the table may be gone already.
      let _ = CORES.try_with(|cores| {
        if let Some(slot) = cores.borrow_mut().get_mut(handle) {
          *slot = None;
        }
      });
    })
  }
}

#[napi]
impl NativeLimiter {
  /// `concurrency` and `maxPending` are integers or `Infinity`; `rateLimit`
  /// 0 means no rate limit.
  #[napi(constructor, catch_unwind)]
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
    let entry = Entry {
      core,
      clock: MonotonicClock::new(),
    };
    let handle = CORES.with(|cores| {
      let mut cores = cores.borrow_mut();
      if let Some(free) = cores.iter().position(Option::is_none) {
        cores[free] = Some(entry);
        free
      } else {
        cores.push(Some(entry));
        cores.len() - 1
      }
    });
    Ok(Self {
      handle: handle as u32,
    })
  }

  /// The handle the raw functions `limiterSubmit` / `limiterFinish` take.
  #[napi(getter, catch_unwind)]
  pub fn handle(&self) -> u32 {
    self.handle
  }

  /// Submits a task; returns `id * 2 + 1` if it started, `id * 2` if it waits.
  /// A negative `timeout` (`queueTimeout`: the most ms it may wait) means none. Throws `ERR_QUEUE_FULL`, `ERR_INVALID_ARG`.
  #[napi(catch_unwind)]
  pub fn submit(
    &mut self,
    weight: u32,
    priority: i32,
    timeout: f64,
    queue_timeout: f64,
  ) -> napi::Result<f64, ErrorCode> {
    let options = TaskOptions {
      weight: u64::from(weight),
      priority,
      timeout_ms: (timeout >= 0.0).then_some(timeout),
      queue_timeout_ms: (queue_timeout >= 0.0).then_some(queue_timeout),
    };
    let submitted = with_entry(self.handle, |e| {
      let now = e.clock.now_ms();
      e.core.submit(options, now)
    })
    .ok_or_else(closed)??;
    Ok(encode(submitted.id, submitted.started))
  }

  /// The function of running task `id` settled. Returns -1 if no task
  /// started, else `first * 2 + more` (call `takeStarted()` when `more`).
  #[napi(catch_unwind)]
  pub fn finish(&mut self, id: u32, ok: bool) -> f64 {
    with_entry(self.handle, |e| finish(e, id, ok)).unwrap_or(-1.0)
  }

  /// Aborts (`timedOut` false) or times out task `id`. Returns a bit set:
  /// 1 = it was waiting and is gone, 2 = tasks started (`takeStarted()`).
  #[napi(catch_unwind)]
  pub fn cancel(&mut self, id: u32, timed_out: bool) -> u32 {
    let why = if timed_out {
      Cancel::TimedOut
    } else {
      Cancel::Aborted
    };
    with_entry(self.handle, |e| {
      let now = e.clock.now_ms();
      let was_waiting = e.core.cancel(id, why, now);
      u32::from(was_waiting) | (u32::from(e.core.has_started()) << 1)
    })
    .unwrap_or(0)
  }

  /// Times out due tasks and starts what the rate allows; returns the
  /// expired tasks as `id * 2 + wasWaiting`. Then call `takeStarted()`.
  #[napi(catch_unwind)]
  pub fn expire(&mut self) -> Vec<u32> {
    with_entry(self.handle, |e| {
      let now = e.clock.now_ms();
      let expired = e.core.expire(now);
      e.core.poll(now);
      expired
        .into_iter()
        .map(|x| x.id * 2 + u32::from(x.was_waiting))
        .collect()
    })
    .unwrap_or_default()
  }

  /// Milliseconds until `expire()` should run again, or -1 for never.
  #[napi(catch_unwind)]
  pub fn next_wake_in(&self) -> f64 {
    with_entry(self.handle, |e| match e.core.next_wake() {
      Some(at) => (at - e.clock.now_ms()).max(0.0),
      None => -1.0,
    })
    .unwrap_or(-1.0)
  }

  /// The ids started since the last call, in start order.
  #[napi(catch_unwind)]
  pub fn take_started(&mut self) -> Vec<u32> {
    with_entry(self.handle, |e| e.core.take_started()).unwrap_or_default()
  }

  /// Changes the permits; returns whether tasks started.
  #[napi(catch_unwind)]
  pub fn set_concurrency(&mut self, concurrency: f64) -> napi::Result<bool, ErrorCode> {
    let concurrency = limit_from_f64(concurrency, "concurrency")?;
    with_entry(self.handle, |e| {
      let now = e.clock.now_ms();
      e.core.set_concurrency(concurrency, now)?;
      Ok::<_, Error>(e.core.has_started())
    })
    .ok_or_else(closed)?
    .map_err(Into::into)
  }

  /// Stops starting waiting tasks.
  #[napi(catch_unwind)]
  pub fn pause(&mut self) {
    with_entry(self.handle, |e| e.core.pause());
  }

  /// Starts waiting tasks again; returns whether tasks started.
  #[napi(catch_unwind)]
  pub fn resume(&mut self) -> bool {
    with_entry(self.handle, |e| {
      let now = e.clock.now_ms();
      e.core.resume(now);
      e.core.has_started()
    })
    .unwrap_or(false)
  }

  /// Removes every waiting task; returns their ids.
  #[napi(catch_unwind)]
  pub fn clear(&mut self) -> Vec<u32> {
    with_entry(self.handle, |e| e.core.clear()).unwrap_or_default()
  }

  /// Counters and percentiles.
  #[napi(catch_unwind)]
  pub fn stats(&self) -> NativeLimiterStats {
    to_js_stats(with_entry(self.handle, |e| e.core.stats()).unwrap_or_default())
  }

  /// Task slots allocated in the core (live or free), for leak tests.
  #[napi(getter, catch_unwind)]
  pub fn slots(&self) -> u32 {
    with_entry(self.handle, |e| e.core.slots() as u32).unwrap_or(0)
  }
}

fn to_js_stats(s: crate::limiter::Stats) -> NativeLimiterStats {
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

fn encode(id: u32, flag: bool) -> f64 {
  f64::from(id) * 2.0 + f64::from(u8::from(flag))
}

/// Finishes `id`; returns -1 if no task started, else `first * 2 + more`.
fn finish(e: &mut Entry, id: u32, ok: bool) -> f64 {
  let now = e.clock.now_ms();
  e.core.finish(id, ok, now);
  match e.core.take_first_started() {
    None => -1.0,
    Some((first, more)) => encode(first, more),
  }
}

// ---------------------------------------------------------------------------
// Hand-registered Node-API functions for the two per-task calls.
//
// Safety argument, for both callbacks: Node calls them on the JS thread of
// `env` with a valid `info` for the current call; values they create live in
// the handle scope Node opened for the call and are not kept. Arguments are
// read with `napi_get_cb_info` into fixed arrays of the declared length (Node
// fills missing ones with `undefined`) and every status is checked: on a
// failure the callback throws and returns null, which Node turns into the
// pending exception. They call no JS, so the `RefCell` borrow of the
// thread's core table cannot be re-entered.
// ---------------------------------------------------------------------------

unsafe fn throw(env: sys::napi_env, code: &CStr, message: &str) -> sys::napi_value {
  let message = CString::new(message).unwrap_or_else(|_| c"error".to_owned());
  sys::napi_throw_error(env, code.as_ptr(), message.as_ptr());
  ptr::null_mut()
}

unsafe fn get_u32(env: sys::napi_env, value: sys::napi_value) -> Option<u32> {
  let mut out = 0u32;
  (sys::napi_get_value_uint32(env, value, &mut out) == sys::Status::napi_ok).then_some(out)
}

unsafe fn get_i32(env: sys::napi_env, value: sys::napi_value) -> Option<i32> {
  let mut out = 0i32;
  (sys::napi_get_value_int32(env, value, &mut out) == sys::Status::napi_ok).then_some(out)
}

unsafe fn get_f64(env: sys::napi_env, value: sys::napi_value) -> Option<f64> {
  let mut out = 0f64;
  (sys::napi_get_value_double(env, value, &mut out) == sys::Status::napi_ok).then_some(out)
}

unsafe fn double(env: sys::napi_env, value: f64) -> sys::napi_value {
  let mut result = ptr::null_mut();
  sys::napi_create_double(env, value, &mut result);
  result
}

const ERR_INVALID_ARG: &CStr = c"ERR_INVALID_ARG";
const ERR_CLOSED: &CStr = c"ERR_CLOSED";

/// `limiterSubmit(handle, weight, priority, timeout, queueTimeout)`: as `NativeLimiter.submit`.
unsafe extern "C" fn raw_submit(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let Some([h, w, p, t, q]) = read_args::<5>(env, info) else {
      return throw(env, ERR_INVALID_ARG, "limiterSubmit: cannot read arguments");
    };
    let (Some(handle), Some(weight), Some(priority), Some(timeout), Some(queue_timeout)) = (
      get_u32(env, h),
      get_u32(env, w),
      get_i32(env, p),
      get_f64(env, t),
      get_f64(env, q),
    ) else {
      return throw(
        env,
        ERR_INVALID_ARG,
        "limiterSubmit: arguments must be numbers",
      );
    };
    let options = TaskOptions {
      weight: u64::from(weight),
      priority,
      timeout_ms: (timeout >= 0.0).then_some(timeout),
      queue_timeout_ms: (queue_timeout >= 0.0).then_some(queue_timeout),
    };
    let outcome = with_entry(handle, |e| {
      let now = e.clock.now_ms();
      e.core.submit(options, now)
    });
    match outcome {
      Some(Ok(submitted)) => double(env, encode(submitted.id, submitted.started)),
      Some(Err(err)) => {
        let code = CString::new(err.code.as_str()).expect("codes have no NUL");
        throw(env, &code, &err.message)
      }
      None => throw(env, ERR_CLOSED, "the limiter's native core is gone"),
    }
  })
}

/// `limiterFinish(handle, id, ok)`: as `NativeLimiter.finish`.
unsafe extern "C" fn raw_finish(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let Some([h, i, o]) = read_args::<3>(env, info) else {
      return throw(env, ERR_INVALID_ARG, "limiterFinish: cannot read arguments");
    };
    let mut ok = false;
    let (Some(handle), Some(id)) = (get_u32(env, h), get_u32(env, i)) else {
      return throw(
        env,
        ERR_INVALID_ARG,
        "limiterFinish: handle and id must be numbers",
      );
    };
    if sys::napi_get_value_bool(env, o, &mut ok) != sys::Status::napi_ok {
      return throw(env, ERR_INVALID_ARG, "limiterFinish: ok must be a boolean");
    }
    double(
      env,
      with_entry(handle, |e| finish(e, id, ok)).unwrap_or(-1.0),
    )
  })
}

const RAW_FUNCTIONS: [(&CStr, RawCallback); 2] = [
  (c"limiterSubmit", raw_submit),
  (c"limiterFinish", raw_finish),
];

/// Returns `{ limiterSubmit, limiterFinish }`, the hand-registered per-task
/// functions (made here rather than in a `#[napi(module_exports)]` hook:
/// napi-rs keeps only one such hook per addon, and boundary.rs has it).
#[napi(catch_unwind)]
pub fn limiter_raw_functions(env: &Env) -> napi::Result<Object<'_>> {
  let functions = Object::new(env)?;
  // SAFETY: `env` is the live environment of this call and `functions` an
  // object created in its handle scope.
  unsafe { define_functions(env.raw(), functions.raw(), &RAW_FUNCTIONS)? };
  Ok(functions)
}

// ---------------------------------------------------------------------------
// Named (process-wide) limiters.
//
// One `LimiterCore` per name, behind a mutex, in a process-wide registry, so
// every worker_thread that opens the name shares its permits, queue,
// deadlines, rate and stats. Each `NamedLimiter` (one per JS `Limiter`)
// tags its tasks with its own owner number. After every operation the
// tasks started or timed out are sorted by owner: the caller's own come
// back in the return value, as for `NativeLimiter`; every other owner gets
// one batched call of its weak thread-safe function (`wake(ids)`, the ids of
// its tasks that started), on its own thread. A `NamedLimiter` that is closed or
// collected (also when its worker exits) drops its tasks and gives their
// permits back, which may wake other owners. Each handle times out only its
// own tasks (`expire_owner`, from its own timer), so an id is only ever freed
// by the thread that owns it and no timeout has to cross threads.
// ---------------------------------------------------------------------------

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use parking_lot::Mutex;

use crate::registry::{Named, Registry};

type Waker = ThreadsafeFunction<Vec<u32>, (), Vec<u32>, Status, false, true>;

struct Shared {
  core: LimiterCore,
  clock: MonotonicClock,
  wakers: HashMap<u64, Arc<Waker>>,
}

static NAMED: Registry<Mutex<Shared>> = Registry::new();
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// Events for other owners, delivered after the lock is released.
type Outbox = Vec<(Arc<Waker>, Vec<u32>)>;

/// Sorts started task ids by owner: returns `owner`'s, queues the rest.
fn route(shared: &Shared, owner: u64, started: Vec<u32>, outbox: &mut Outbox) -> Vec<u32> {
  let mut own = Vec::new();
  let mut others: HashMap<u64, Vec<u32>> = HashMap::new();
  for id in started {
    match shared.core.owner_of(id) {
      Some(o) if o == owner => own.push(id),
      Some(o) => others.entry(o).or_default().push(id),
      None => {}
    }
  }
  for (o, ids) in others {
    if let Some(waker) = shared.wakers.get(&o) {
      outbox.push((Arc::clone(waker), ids));
    }
  }
  own
}

fn deliver(outbox: Outbox) {
  for (waker, events) in outbox {
    // A waker whose thread is gone reports `Closing`; that owner's handle
    // drops its tasks when it is finalized, so the events are not needed.
    let _ = waker.call(events, ThreadsafeFunctionCallMode::NonBlocking);
  }
}

/// A handle on a process-wide limiter (internal; use `new Limiter({ name })`).
#[napi]
pub struct NamedLimiter {
  shared: Option<Named<Mutex<Shared>>>,
  owner: u64,
  own_started: Vec<u32>,
  waker: Option<Arc<Waker>>,
}

#[napi]
impl NamedLimiter {
  /// Opens (or creates) the limiter called `name`. A limiter that exists
  /// must have been created with the same options. `wake(events)` is called
  /// on this thread when other threads start or time out this handle's tasks.
  #[napi(constructor, catch_unwind)]
  pub fn new(
    name: String,
    concurrency: f64,
    max_pending: f64,
    rate_limit: u32,
    rate_interval: f64,
    wake: Waker,
  ) -> napi::Result<Self, ErrorCode> {
    if name.is_empty() {
      return Err(Error::invalid_arg("options.name must be a non-empty string").into());
    }
    let rate = (rate_limit > 0).then_some(Rate {
      limit: rate_limit,
      interval_ms: rate_interval,
    });
    let config = Config {
      concurrency: limit_from_f64(concurrency, "concurrency")?,
      max_pending: limit_from_f64(max_pending, "maxPending")?,
      rate,
    };
    let shared = NAMED.open(
      &name,
      || {
        Ok::<_, Error>(Mutex::new(Shared {
          core: LimiterCore::new(config)?,
          clock: MonotonicClock::new(),
          wakers: HashMap::new(),
        }))
      },
      |existing| {
        let existing = existing.lock().core.config();
        if existing == config {
          Ok(())
        } else {
          Err(Error::invalid_arg(format!(
            "a limiter named '{name}' exists with other options (concurrency, maxPending or rate)"
          )))
        }
      },
    )?;
    let owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
    let waker = Arc::new(wake);
    shared.lock().wakers.insert(owner, Arc::clone(&waker));
    Ok(Self {
      shared: Some(shared),
      owner,
      own_started: Vec::new(),
      waker: Some(waker),
    })
  }

  /// Whether this handle's wake-ups keep its thread alive: on while it has
  /// waiting tasks (another thread's release must be able to start them),
  /// off otherwise, so an idle limiter never holds a process open.
  #[napi(catch_unwind)]
  pub fn keep_alive(&self, env: &Env, on: bool) {
    if let Some(waker) = &self.waker {
      // SAFETY: called on this handle's own JS thread with its live `env`;
      // the thread-safe function is alive while `waker` is held.
      unsafe {
        if on {
          sys::napi_ref_threadsafe_function(env.raw(), waker.raw());
        } else {
          sys::napi_unref_threadsafe_function(env.raw(), waker.raw());
        }
      }
    }
  }

  /// As `NativeLimiter.submit`.
  #[napi(catch_unwind)]
  pub fn submit(
    &mut self,
    weight: u32,
    priority: i32,
    timeout: f64,
    queue_timeout: f64,
  ) -> napi::Result<f64, ErrorCode> {
    let options = TaskOptions {
      weight: u64::from(weight),
      priority,
      timeout_ms: (timeout >= 0.0).then_some(timeout),
      queue_timeout_ms: (queue_timeout >= 0.0).then_some(queue_timeout),
    };
    let owner = self.owner;
    let submitted = {
      let mut shared = self.shared()?.lock();
      let now = shared.clock.now_ms();
      shared.core.submit_owned(options, owner, now)?
    };
    Ok(encode(submitted.id, submitted.started))
  }

  /// As `NativeLimiter.finish`; other owners' started tasks are woken.
  #[napi(catch_unwind)]
  pub fn finish(&mut self, id: u32, ok: bool) -> f64 {
    self.operate(|shared, now| shared.core.finish(id, ok, now));
    self.first_own_started()
  }

  /// As `NativeLimiter.cancel`.
  #[napi(catch_unwind)]
  pub fn cancel(&mut self, id: u32, timed_out: bool) -> u32 {
    let why = if timed_out {
      Cancel::TimedOut
    } else {
      Cancel::Aborted
    };
    let mut was_waiting = false;
    self.operate(|shared, now| was_waiting = shared.core.cancel(id, why, now));
    u32::from(was_waiting) | (u32::from(!self.own_started.is_empty()) << 1)
  }

  /// As `NativeLimiter.expire`; other owners' timeouts are delivered to them.
  #[napi(catch_unwind)]
  pub fn expire(&mut self) -> Vec<u32> {
    let owner = self.owner;
    let Some(shared) = self.shared.as_ref() else {
      return Vec::new();
    };
    let mut outbox = Vec::new();
    let (expired, own_started) = {
      let mut guard = shared.lock();
      let now = guard.clock.now_ms();
      let expired = guard.core.expire_owner(owner, now);
      guard.core.poll(now);
      let started = guard.core.take_started();
      (expired, route(&guard, owner, started, &mut outbox))
    };
    deliver(outbox);
    self.own_started.extend(own_started);
    expired
      .into_iter()
      .map(|e| e.id * 2 + u32::from(e.was_waiting))
      .collect()
  }

  /// As `NativeLimiter.nextWakeIn`.
  #[napi(catch_unwind)]
  pub fn next_wake_in(&self) -> f64 {
    let Ok(shared) = self.shared() else {
      return -1.0;
    };
    let shared = shared.lock();
    match shared.core.next_wake_owner(self.owner) {
      Some(at) => (at - shared.clock.now_ms()).max(0.0),
      None => -1.0,
    }
  }

  /// This handle's tasks started since the last call.
  #[napi(catch_unwind)]
  pub fn take_started(&mut self) -> Vec<u32> {
    std::mem::take(&mut self.own_started)
  }

  /// As `NativeLimiter.setConcurrency` (for every thread).
  #[napi(catch_unwind)]
  pub fn set_concurrency(&mut self, concurrency: f64) -> napi::Result<bool, ErrorCode> {
    let concurrency = limit_from_f64(concurrency, "concurrency")?;
    let mut result = Ok(());
    self.operate(|shared, now| result = shared.core.set_concurrency(concurrency, now));
    result?;
    Ok(!self.own_started.is_empty())
  }

  /// Pauses starting, for every thread.
  #[napi(catch_unwind)]
  pub fn pause(&mut self) {
    self.operate(|shared, _| shared.core.pause());
  }

  /// Resumes starting, for every thread.
  #[napi(catch_unwind)]
  pub fn resume(&mut self) -> bool {
    self.operate(|shared, now| shared.core.resume(now));
    !self.own_started.is_empty()
  }

  /// Removes this handle's waiting tasks; returns their ids.
  #[napi(catch_unwind)]
  pub fn clear(&mut self) -> Vec<u32> {
    let owner = self.owner;
    let mut ids = Vec::new();
    self.operate(|shared, now| ids = shared.core.clear_owner(owner, now));
    ids
  }

  /// Counters and percentiles of the shared limiter.
  #[napi(catch_unwind)]
  pub fn stats(&self) -> NativeLimiterStats {
    let s = self
      .shared()
      .map(|shared| shared.lock().core.stats())
      .unwrap_or_default();
    to_js_stats(s)
  }

  /// Task slots of the shared core, for leak tests.
  #[napi(getter, catch_unwind)]
  pub fn slots(&self) -> u32 {
    self
      .shared()
      .map(|shared| shared.lock().core.slots() as u32)
      .unwrap_or(0)
  }

  /// How many named limiters are alive in the process (for leak tests).
  #[napi(catch_unwind)]
  pub fn live_count() -> u32 {
    NAMED.len() as u32
  }

  /// Drops this handle's tasks (their permits come back) and lets go of the
  /// shared limiter; it is freed when no thread holds it.
  #[napi(catch_unwind)]
  pub fn close(&mut self) {
    let Some(shared) = self.shared.take() else {
      return;
    };
    let owner = self.owner;
    let mut outbox = Vec::new();
    let waker = {
      let mut guard = shared.lock();
      let now = guard.clock.now_ms();
      guard.core.forget_owner(owner, now);
      let started = guard.core.take_started();
      let _ = route(&guard, owner, started, &mut outbox);
      guard.wakers.remove(&owner)
    };
    deliver(outbox);
    drop(waker);
    self.waker = None;
    drop(shared);
  }

  fn shared(&self) -> Result<&Named<Mutex<Shared>>, Error> {
    self
      .shared
      .as_ref()
      .ok_or_else(|| Error::closed("the limiter is closed"))
  }

  /// Runs `op` under the lock, then routes the tasks it started.
  fn operate(&mut self, op: impl FnOnce(&mut Shared, f64)) {
    let owner = self.owner;
    let Some(shared) = self.shared.as_ref() else {
      return;
    };
    let mut outbox = Vec::new();
    let own = {
      let mut guard = shared.lock();
      let now = guard.clock.now_ms();
      op(&mut guard, now);
      let started = guard.core.take_started();
      route(&guard, owner, started, &mut outbox)
    };
    deliver(outbox);
    self.own_started.extend(own);
  }

  fn first_own_started(&mut self) -> f64 {
    if self.own_started.is_empty() {
      return -1.0;
    }
    let first = self.own_started.remove(0);
    encode(first, !self.own_started.is_empty())
  }
}

impl Drop for NamedLimiter {
  fn drop(&mut self) {
    // A finalizer: a panic here must not unwind into Node.
    guard::quiet(|| {
      self.close();
    })
  }
}
