//! Glue of `WorkerPool`: `PoolCore` (the main thread's handle on a
//! [`crate::pool::Pool`]) and `PoolWorker` (a worker thread's handle on the
//! same pool, found by id in a process-wide table: a `.node` addon's statics
//! are shared by every worker_thread).
//!
//! Values cross as bytes. The JS layer passes primitives as they are and
//! everything else as a V8-serialized `Buffer`; this file turns either into
//! the core's opaque payload (a tag byte, then the bytes) and back:
//! `undefined`, `null`, booleans, numbers (f64) and strings (UTF-16 code
//! units, so lone surrogates survive exactly as with structured clone) skip
//! the serializer on both sides, which costs ~5 us per value here.
//!
//! Thread-safe functions: the main thread's one wake-up (`onReady`) is weak,
//! so an idle pool does not hold the process open; a worker's wake-up is
//! strong, which is what keeps an idle worker thread alive until the main
//! thread terminates it. Each worker also registers an env cleanup hook, so
//! the core stops dispatching to (and calling into) a worker whose
//! environment is going away, whatever the reason it goes.

use super::guard;
use std::collections::HashMap;
use std::ptr;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use napi::bindgen_prelude::{Env, Float64ArraySlice, Function, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, JsValue, Status};
use napi_derive::napi;
use parking_lot::Mutex;

use crate::clock::MonotonicClock;
use crate::error::{Error, ErrorCode};
use crate::pool::{run_timer, Notify, Outcome, Payload, Pool, PoolConfig, SubmitOptions, Task};

/// The last pool id handed out, and every live pool by id.
type PoolTable = (u32, HashMap<u32, Weak<Pool>>);

static POOLS: LazyLock<Mutex<PoolTable>> = LazyLock::new(|| Mutex::new((0, HashMap::new())));

type WakeFn = ThreadsafeFunction<(), (), (), Status, false, false>;
type WeakWakeFn = ThreadsafeFunction<(), (), (), Status, false, true>;

struct MainNotify(WeakWakeFn);
impl Notify for MainNotify {
  fn notify(&self) {
    // Fails only while the environment is going away; nothing is waiting then.
    let _ = self.0.call((), ThreadsafeFunctionCallMode::NonBlocking);
  }
}

struct WorkerNotify(WakeFn);
impl Notify for WorkerNotify {
  fn notify(&self) {
    let _ = self.0.call((), ThreadsafeFunctionCallMode::NonBlocking);
  }
}

const TAG_V8: u8 = 0;
const TAG_UNDEFINED: u8 = 1;
const TAG_NULL: u8 = 2;
const TAG_TRUE: u8 = 3;
const TAG_FALSE: u8 = 4;
const TAG_NUMBER: u8 = 5;
const TAG_STRING: u8 = 6;
/// V8 bytes that refer to transferred `ArrayBuffer`s (carried in `Payload::buffers`).
const TAG_V8_TRANSFER: u8 = 7;

fn napi_err(what: &str) -> napi::Error<ErrorCode> {
  napi::Error::new(ErrorCode::Internal, format!("{what} failed"))
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<(), ErrorCode> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(napi_err(what))
  }
}

/// Turns a JS value (a primitive, or a `Buffer` of V8-serialized bytes) into a payload.
fn encode(value: &Unknown) -> napi::Result<Vec<u8>, ErrorCode> {
  let env = value.value().env;
  let raw = value.raw();
  let mut ty = 0;
  // SAFETY (every unsafe block in this function): `env` and `raw` come from
  // the live `Unknown` argument of the current call, on its JS thread.
  check(
    unsafe { sys::napi_typeof(env, raw, &mut ty) },
    "napi_typeof",
  )?;
  match ty {
    sys::ValueType::napi_undefined => Ok(vec![TAG_UNDEFINED]),
    sys::ValueType::napi_null => Ok(vec![TAG_NULL]),
    sys::ValueType::napi_boolean => {
      let mut b = false;
      check(
        unsafe { sys::napi_get_value_bool(env, raw, &mut b) },
        "napi_get_value_bool",
      )?;
      Ok(vec![if b { TAG_TRUE } else { TAG_FALSE }])
    }
    sys::ValueType::napi_number => {
      let mut n = 0f64;
      check(
        unsafe { sys::napi_get_value_double(env, raw, &mut n) },
        "napi_get_value_double",
      )?;
      let mut out = Vec::with_capacity(9);
      out.extend_from_slice(&n.to_le_bytes());
      out.push(TAG_NUMBER);
      Ok(out)
    }
    sys::ValueType::napi_string => {
      let mut len = 0usize;
      check(
        unsafe { sys::napi_get_value_string_utf16(env, raw, ptr::null_mut(), 0, &mut len) },
        "napi_get_value_string_utf16",
      )?;
      let mut units = vec![0u16; len + 1];
      check(
        unsafe {
          sys::napi_get_value_string_utf16(env, raw, units.as_mut_ptr(), len + 1, &mut len)
        },
        "napi_get_value_string_utf16",
      )?;
      let mut out = Vec::with_capacity(1 + 2 * len);
      for u in &units[..len] {
        out.extend_from_slice(&u.to_le_bytes());
      }
      out.push(TAG_STRING);
      Ok(out)
    }
    sys::ValueType::napi_object => {
      let mut is_typed = false;
      check(
        unsafe { sys::napi_is_typedarray(env, raw, &mut is_typed) },
        "napi_is_typedarray",
      )?;
      if !is_typed {
        return Err(Error::invalid_arg("payload must be a primitive or serialized bytes").into());
      }
      let mut data = ptr::null_mut();
      let mut len = 0usize;
      let mut kind = 0;
      let mut ab = ptr::null_mut();
      let mut offset = 0usize;
      check(
        unsafe {
          sys::napi_get_typedarray_info(
            env,
            raw,
            &mut kind,
            &mut len,
            &mut data,
            &mut ab,
            &mut offset,
          )
        },
        "napi_get_typedarray_info",
      )?;
      let mut out = Vec::with_capacity(1 + len);
      if len > 0 {
        // SAFETY: a Uint8Array (the JS layer passes Buffers) of `len` bytes at `data`.
        out.extend_from_slice(unsafe { std::slice::from_raw_parts(data as *const u8, len) });
      }
      out.push(TAG_V8);
      Ok(out)
    }
    _ => Err(Error::invalid_arg("payload must be a primitive or serialized bytes").into()),
  }
}

fn array_len(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Option<u32>, ErrorCode> {
  let mut is_array = false;
  // SAFETY: live env and value of the current call.
  check(
    unsafe { sys::napi_is_array(env, value, &mut is_array) },
    "napi_is_array",
  )?;
  if !is_array {
    return Ok(None);
  }
  let mut len = 0u32;
  // SAFETY: as above; `value` is an array.
  check(
    unsafe { sys::napi_get_array_length(env, value, &mut len) },
    "napi_get_array_length",
  )?;
  Ok(Some(len))
}

/// [`encode`], plus the `[bytes, ...arrayBuffers]` form of a task with transfers.
fn encode_payload(value: &Unknown) -> napi::Result<Payload, ErrorCode> {
  let env = value.value().env;
  let Some(len) = array_len(env, value.raw())? else {
    return Ok(encode(value)?.into());
  };
  let mut parts = Vec::with_capacity(len as usize);
  for i in 0..len {
    let mut element = ptr::null_mut();
    // SAFETY: live env and array of the current call; `i` is in bounds.
    check(
      unsafe { sys::napi_get_element(env, value.raw(), i, &mut element) },
      "napi_get_element",
    )?;
    if i == 0 {
      // SAFETY: `element` is a live value of this call.
      let mut bytes = encode(&unsafe { Unknown::from_raw_unchecked(env, element) })?;
      if bytes.last() != Some(&TAG_V8) {
        return Err(Error::invalid_arg("a transfer payload starts with serialized bytes").into());
      }
      *bytes.last_mut().expect("checked above") = TAG_V8_TRANSFER;
      parts.push(bytes);
      continue;
    }
    let mut data = ptr::null_mut();
    let mut byte_len = 0usize;
    // SAFETY: as above; a non-ArrayBuffer fails the status check.
    check(
      unsafe { sys::napi_get_arraybuffer_info(env, element, &mut data, &mut byte_len) },
      "reading a transferred ArrayBuffer",
    )?;
    let contents = if byte_len == 0 {
      Vec::new()
    } else {
      // SAFETY: `byte_len` bytes at `data`, owned by the ArrayBuffer, alive for this call.
      unsafe { std::slice::from_raw_parts(data as *const u8, byte_len) }.to_vec()
    };
    parts.push(contents);
  }
  let mut parts = parts.into_iter();
  Ok(Payload {
    bytes: parts.next().unwrap_or_default(),
    buffers: parts.collect(),
  })
}

/// A task's argument as a JS value: [`decode`]'s, or for a task with
/// transfers `[bytes, ...arrayBuffers]`, each ArrayBuffer made over the Rust
/// allocation (no copy; freed when the worker's GC collects it).
fn decode_payload(env: &Env, payload: Payload) -> napi::Result<sys::napi_value, ErrorCode> {
  let raw_env = env.raw();
  if payload.bytes.last() != Some(&TAG_V8_TRANSFER) {
    return decode(raw_env, payload.bytes);
  }
  let mut arr = ptr::null_mut();
  // SAFETY (every unsafe block below): `raw_env` is the env of the current
  // call on its JS thread; values live in the call's handle scope.
  check(
    unsafe { sys::napi_create_array_with_length(raw_env, payload.buffers.len() + 1, &mut arr) },
    "napi_create_array",
  )?;
  let mut head = payload.bytes;
  *head.last_mut().expect("checked above") = TAG_V8;
  let first = decode(raw_env, head)?;
  check(
    unsafe { sys::napi_set_element(raw_env, arr, 0, first) },
    "napi_set_element",
  )?;
  for (i, contents) in payload.buffers.into_iter().enumerate() {
    let ab = napi::bindgen_prelude::ArrayBuffer::from_data(env, contents)
      .map_err(|e| napi::Error::new(ErrorCode::Internal, e.reason))?;
    check(
      unsafe { sys::napi_set_element(raw_env, arr, i as u32 + 1, ab.raw()) },
      "napi_set_element",
    )?;
  }
  Ok(arr)
}

/// Serialized bytes at least this long reach JS as a `Buffer` over the Rust
/// allocation (no copy); shorter ones are copied, which is cheaper than an
/// external buffer's finalizer.
const EXTERNAL_MIN: usize = 64 * 1024;

/// Turns a payload (bytes, then a tag byte) back into a JS value (a
/// primitive, or a `Buffer` to deserialize).
fn decode(env: sys::napi_env, mut payload: Vec<u8>) -> napi::Result<sys::napi_value, ErrorCode> {
  let mut out = ptr::null_mut();
  let tag = payload.pop().unwrap_or(TAG_UNDEFINED);
  if tag == TAG_V8 && payload.len() >= EXTERNAL_MIN {
    // `env` is the environment of the current call, on its JS thread.
    let buffer = napi::bindgen_prelude::BufferSlice::from_data(&Env::from_raw(env), payload)
      .map_err(|e| napi::Error::new(ErrorCode::Internal, e.reason))?;
    return Ok(buffer.raw());
  }
  let bytes = payload.as_slice();
  let tag = &tag;
  // SAFETY (every unsafe block in this function): `env` is the environment
  // of the current call, on its JS thread; `out` is written by Node.
  let status = unsafe {
    match *tag {
      TAG_NULL => sys::napi_get_null(env, &mut out),
      TAG_TRUE => sys::napi_get_boolean(env, true, &mut out),
      TAG_FALSE => sys::napi_get_boolean(env, false, &mut out),
      TAG_NUMBER => {
        let n = bytes.try_into().map(f64::from_le_bytes).unwrap_or(f64::NAN);
        sys::napi_create_double(env, n, &mut out)
      }
      TAG_STRING => {
        let units: Vec<u16> = bytes
          .chunks_exact(2)
          .map(|c| u16::from_le_bytes([c[0], c[1]]))
          .collect();
        sys::napi_create_string_utf16(env, units.as_ptr(), units.len() as isize, &mut out)
      }
      TAG_V8 => {
        let mut data = ptr::null_mut();
        sys::napi_create_buffer_copy(env, bytes.len(), bytes.as_ptr().cast(), &mut data, &mut out)
      }
      _ => sys::napi_get_undefined(env, &mut out),
    }
  };
  check(status, "creating a value")?;
  Ok(out)
}

fn undefined(env: sys::napi_env) -> sys::napi_value {
  let mut out = ptr::null_mut();
  // SAFETY: live env of the current call.
  unsafe { sys::napi_get_undefined(env, &mut out) };
  out
}

fn ms(value: f64) -> Option<Duration> {
  (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value / 1000.0))
}

/// The main thread's handle on a pool's queue and dispatch state machine
/// (used by `lib/pool.js`; not part of the public API).
#[napi]
pub struct PoolCore {
  pool: Arc<Pool>,
  id: u32,
}

/// Workers the JS layer starts after an exit, and the backoff before it does.
#[napi(object)]
pub struct PoolRespawn {
  /// Reserved worker ids.
  pub workers: Vec<u32>,
  /// Wait this many milliseconds first.
  pub delay: f64,
}

/// A histogram summary in milliseconds.
#[napi(object)]
pub struct PoolHistogram {
  /// Samples.
  pub count: f64,
  /// Smallest.
  pub min: f64,
  /// Largest.
  pub max: f64,
  /// Mean.
  pub mean: f64,
  /// 50th percentile.
  pub p50: f64,
  /// 90th percentile.
  pub p90: f64,
  /// 99th percentile.
  pub p99: f64,
}

/// Counters and histograms of a pool (see `WorkerPool#stats()`).
#[napi(object)]
pub struct PoolStats {
  /// Tasks submitted.
  pub submitted: f64,
  /// Tasks that ran to the end (returned or threw).
  pub completed: f64,
  /// Tasks whose function threw.
  pub failed: f64,
  /// Tasks rejected with `ERR_QUEUE_FULL`.
  pub rejected: f64,
  /// Tasks that timed out.
  pub timed_out: f64,
  /// Tasks aborted by their caller.
  pub aborted: f64,
  /// Tasks lost with their worker.
  pub worker_exits: f64,
  /// Workers started.
  pub spawned: f64,
  /// Tasks waiting now.
  pub queued: f64,
  /// Tasks running now.
  pub running: f64,
  /// Workers alive or starting.
  pub workers: f64,
  /// Time from submit to start, ms.
  pub wait_time: PoolHistogram,
  /// Time from start to finish, ms.
  pub run_time: PoolHistogram,
  /// Sum of run times, ms.
  pub run_time_total: f64,
}

fn hist(h: crate::pool::HistogramSummary) -> PoolHistogram {
  let ms = |us: u64| us as f64 / 1000.0;
  PoolHistogram {
    count: h.count as f64,
    min: ms(h.min),
    max: ms(h.max),
    mean: h.mean / 1000.0,
    p50: ms(h.p50),
    p90: ms(h.p90),
    p99: ms(h.p99),
  }
}

#[napi]
impl PoolCore {
  /// A pool core. `onReady` is called (weakly: it never keeps the process
  /// alive) when `drain()` has something.
  #[napi(constructor, catch_unwind)]
  #[allow(clippy::too_many_arguments)]
  pub fn new(
    min_threads: u32,
    max_threads: u32,
    max_queue: f64,
    concurrency: u32,
    idle_timeout: f64,
    abort_grace: f64,
    on_ready: Function<(), ()>,
  ) -> napi::Result<Self, ErrorCode> {
    let config = PoolConfig {
      min_threads: min_threads as usize,
      max_threads: max_threads as usize,
      max_queue: if max_queue.is_finite() {
        max_queue.max(0.0) as usize
      } else {
        usize::MAX
      },
      concurrency: concurrency as usize,
      idle_timeout: ms(idle_timeout).unwrap_or(Duration::ZERO),
      abort_grace: ms(abort_grace).unwrap_or(Duration::ZERO),
    };
    let pool = Arc::new(Pool::new(config, Arc::new(MonotonicClock::new()))?);
    let tsfn: WeakWakeFn = on_ready
      .build_threadsafe_function::<()>()
      .weak::<true>()
      .callee_handled::<false>()
      .build()
      .map_err(|e| napi::Error::new(ErrorCode::Internal, e.reason))?;
    pool.set_main_notify(Arc::new(MainNotify(tsfn)));
    let timer = pool.clone();
    std::thread::Builder::new()
      .name("bulkhead-pool-timer".into())
      .spawn(move || guard::supervise(|| run_timer(timer.clone())))
      .map_err(|e| napi::Error::new(ErrorCode::Internal, e.to_string()))?;
    let mut pools = POOLS.lock();
    pools.0 = pools.0.wrapping_add(1);
    let id = pools.0;
    pools.1.insert(id, Arc::downgrade(&pool));
    Ok(Self { pool, id })
  }

  /// This pool's id in the process-wide table (workers attach with it).
  #[napi(getter, catch_unwind)]
  pub fn id(&self) -> u32 {
    self.id
  }

  /// Reserves the `minThreads` workers; returns their ids.
  #[napi(catch_unwind)]
  pub fn start(&self) -> Vec<u32> {
    self.pool.start()
  }

  /// Interns a task module; returns its handle.
  #[napi(catch_unwind)]
  pub fn module_id(&self, filename: String, name: String) -> u32 {
    self.pool.module_id(&filename, &name)
  }

  /// Queues task `id`. `payload` is a primitive, a `Buffer` of V8 bytes, or
  /// `[bytes, ...arrayBuffers]` for a task with a `transferList` (the
  /// buffers' contents are copied here once, and handed to the worker
  /// without another copy). Returns the ids of workers to start, or `undefined`
  /// when there are none (the common case: no array to allocate).
  #[napi(catch_unwind)]
  pub fn submit(
    &self,
    id: f64,
    payload: Unknown,
    module: u32,
    queue_timeout: f64,
    timeout: f64,
  ) -> napi::Result<Option<Vec<u32>>, ErrorCode> {
    let bytes = encode_payload(&payload)?;
    let opts = SubmitOptions {
      module,
      queue_timeout: ms(queue_timeout),
      run_timeout: ms(timeout),
    };
    let spawn = self.pool.submit(id as u64, bytes, opts)?;
    Ok((!spawn.is_empty()).then_some(spawn))
  }

  /// The caller gave up on task `id` (`code` is `ERR_ABORTED` or
  /// `ERR_TIMEOUT`). Returns whether the caller should settle it now.
  #[napi(catch_unwind)]
  pub fn cancel(&self, id: f64, timeout: bool) -> bool {
    let code = if timeout {
      ErrorCode::Timeout
    } else {
      ErrorCode::Aborted
    };
    self.pool.cancel(id as u64, &Error::new(code, ""))
  }

  /// Up to `max` finished tasks, as a flat array `[id, kind, value, ...]`
  /// (kind 0: returned, 1: threw, 2: failed with `value` = `"CODE
  /// message"`), then `-1` (or `-2` when more completions wait for another
  /// call) and the ids of workers to terminate.
  #[napi(catch_unwind)]
  pub fn drain(&self, env: Env, max: u32) -> napi::Result<Unknown<'_>, ErrorCode> {
    self.drain_batch::<false>(env, max)
  }

  /// Like `drain`, with two more numbers after each completion's value: the
  /// milliseconds it waited in the queue and ran, `-1` where unknown. The
  /// main thread calls it instead of `drain` while a tracing subscriber
  /// listens (docs/observability.md).
  #[napi(catch_unwind)]
  pub fn drain_timed(&self, env: Env, max: u32) -> napi::Result<Unknown<'_>, ErrorCode> {
    self.drain_batch::<true>(env, max)
  }

  /// The main thread saw worker `worker` exit; `message` says how.
  /// Fails its tasks with `ERR_WORKER_EXITED` (pick them up with `drain()`)
  /// and returns the workers to start instead.
  #[napi(catch_unwind)]
  pub fn worker_exited(&self, worker: u32, message: String) -> PoolRespawn {
    let r = self
      .pool
      .worker_exited(worker, &Error::new(ErrorCode::WorkerExited, message));
    PoolRespawn {
      workers: r.workers,
      delay: r.delay.as_secs_f64() * 1000.0,
    }
  }

  /// Stops accepting tasks; queued ones still run.
  #[napi(catch_unwind)]
  pub fn close(&self) {
    self.pool.close();
  }

  /// Fails every queued and running task with `ERR_CLOSED` (pick them up
  /// with `drain()`), stops the timer thread, and returns the workers to terminate.
  #[napi(catch_unwind)]
  pub fn destroy(&self) -> Vec<u32> {
    self.pool.destroy()
  }

  /// Tasks waiting for a worker.
  #[napi(getter, catch_unwind)]
  pub fn queue_size(&self) -> u32 {
    self.pool.queue_size() as u32
  }

  /// Counters and histograms.
  #[napi(catch_unwind)]
  pub fn stats(&self) -> PoolStats {
    let s = self.pool.stats();
    PoolStats {
      submitted: s.submitted as f64,
      completed: s.completed as f64,
      failed: s.failed as f64,
      rejected: s.rejected as f64,
      timed_out: s.timed_out as f64,
      aborted: s.aborted as f64,
      worker_exits: s.worker_exits as f64,
      spawned: s.spawned as f64,
      queued: s.queued as f64,
      running: s.running as f64,
      workers: s.workers as f64,
      wait_time: hist(s.wait_time),
      run_time: hist(s.run_time),
      run_time_total: s.run_time_total_us as f64 / 1000.0,
    }
  }
}

impl Drop for PoolCore {
  fn drop(&mut self) {
    // A finalizer: a panic here must not unwind into Node.
    guard::quiet(|| {
      // Collected without destroy(): fail what is left so nothing waits, and
      // let the timer thread go.
      self.pool.destroy();
      POOLS.lock().1.remove(&self.id);
    })
  }
}

/// A worker thread's handle on its pool (used by `lib/pool-worker.js`).
#[napi]
pub struct PoolWorker {
  pool: Arc<Pool>,
  id: u32,
}

fn find_pool(pool_id: u32) -> napi::Result<Arc<Pool>, ErrorCode> {
  POOLS
    .lock()
    .1
    .get(&pool_id)
    .and_then(Weak::upgrade)
    .ok_or_else(|| Error::closed("the pool is gone").into())
}

/// Writes `[id, module]` of `task` into `meta` and returns its payload as a
/// JS value; with no task, writes `-1` and returns `undefined`.
fn hand_out(
  env: &Env,
  task: Option<Task>,
  meta: &mut [f64],
) -> napi::Result<Unknown<'static>, ErrorCode> {
  let raw_env = env.raw();
  let value = match task {
    Some(t) => {
      if meta.len() >= 2 {
        meta[0] = t.id as f64;
        meta[1] = f64::from(t.module);
      }
      decode_payload(env, t.payload)?
    }
    None => {
      if let Some(m) = meta.first_mut() {
        *m = -1.0;
      }
      undefined(raw_env)
    }
  };
  // SAFETY: `value` is a live value of this call.
  Ok(unsafe { Unknown::from_raw_unchecked(raw_env, value) })
}

/// Attaches the calling worker thread as worker `worker_id` of pool
/// `pool_id`. `onWake` is called (strongly: it keeps this worker's event
/// loop alive) when tasks or aborts are waiting for it.
#[napi(catch_unwind)]
pub fn pool_attach(
  env: Env,
  pool_id: u32,
  worker_id: u32,
  on_wake: Function<(), ()>,
) -> napi::Result<PoolWorker, ErrorCode> {
  let pool = find_pool(pool_id)?;
  let tsfn: WakeFn = on_wake
    .build_threadsafe_function::<()>()
    .callee_handled::<false>()
    .build()
    .map_err(|e| napi::Error::new(ErrorCode::Internal, e.reason))?;
  pool.attach(worker_id, Arc::new(WorkerNotify(tsfn)))?;
  let hook_pool = Arc::downgrade(&pool);
  env
    .add_env_cleanup_hook((), move |()| {
      if let Some(p) = hook_pool.upgrade() {
        p.worker_gone(worker_id);
      }
    })
    .map_err(|e| napi::Error::new(ErrorCode::Internal, e.reason))?;
  Ok(PoolWorker {
    pool,
    id: worker_id,
  })
}

/// The module (`[filename, exportName]`) behind handle `module` of pool `pool_id`.
#[napi(catch_unwind)]
pub fn pool_module(pool_id: u32, module: u32) -> napi::Result<Vec<String>, ErrorCode> {
  let pool = find_pool(pool_id)?;
  let (f, n) = pool
    .module(module)
    .ok_or_else(|| Error::invalid_arg("unknown module handle"))?;
  Ok(vec![f, n])
}

#[napi]
impl PoolWorker {
  /// Clears the wake-up flag; returns the ids of this worker's tasks whose
  /// signal must fire.
  #[napi(catch_unwind)]
  pub fn poll(&self) -> Vec<f64> {
    self
      .pool
      .poll(self.id)
      .aborts
      .into_iter()
      .map(|id| id as f64)
      .collect()
  }

  /// The next task for this worker, if it has a free slot (see `hand_out`).
  #[napi(catch_unwind)]
  pub fn take(
    &self,
    env: Env,
    mut meta: Float64ArraySlice,
  ) -> napi::Result<Unknown<'static>, ErrorCode> {
    // SAFETY: `meta` is this call's argument; no JS runs during the call.
    hand_out(&env, self.pool.take(self.id), unsafe { meta.as_mut() })
  }

  /// Hands back task `id`'s result (`ok`) or thrown error, and takes the
  /// next task in the same call (see `hand_out`).
  #[napi(catch_unwind)]
  pub fn complete(
    &self,
    env: Env,
    id: f64,
    ok: bool,
    value: Unknown,
    mut meta: Float64ArraySlice,
  ) -> napi::Result<Unknown<'static>, ErrorCode> {
    let bytes = encode(&value)?;
    let result = if ok { Ok(bytes) } else { Err(bytes) };
    let next = self.pool.complete(self.id, id as u64, result);
    // SAFETY: `meta` is this call's argument; no JS runs during the call.
    hand_out(&env, next, unsafe { meta.as_mut() })
  }
}

/// Lowers the calling thread's scheduling priority by `increment` nice
/// levels (piscina's `niceIncrement`), so the main thread wins the CPU when
/// workers and the main thread compete. Linux only (a thread's nice value is
/// per thread there); returns whether it was applied.
#[napi(catch_unwind)]
pub fn pool_nice_thread(increment: i32) -> bool {
  #[cfg(target_os = "linux")]
  {
    // SAFETY: plain syscalls on the calling thread; no memory is shared.
    unsafe {
      let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
      *libc::__errno_location() = 0;
      let current = libc::getpriority(libc::PRIO_PROCESS, tid);
      if current == -1 && *libc::__errno_location() != 0 {
        return false;
      }
      libc::setpriority(libc::PRIO_PROCESS, tid, current.saturating_add(increment)) == 0
    }
  }
  #[cfg(not(target_os = "linux"))]
  {
    let _ = increment;
    false
  }
}

impl PoolCore {
  // The body of `drain` and `drainTimed`.
  // `TIMES` is a const so that `drain` compiles without the timing code.
  fn drain_batch<const TIMES: bool>(
    &self,
    env: Env,
    max: u32,
  ) -> napi::Result<Unknown<'_>, ErrorCode> {
    let batch = self.pool.drain(max as usize);
    let raw_env = env.raw();
    let mut arr = ptr::null_mut();
    let stride = if TIMES { 5 } else { 3 };
    let len = batch.completions.len() * stride + 1 + batch.terminate.len();
    // SAFETY (every unsafe block in this method): `raw_env` is the env of
    // this call on its JS thread; values live in the call's handle scope.
    check(
      unsafe { sys::napi_create_array_with_length(raw_env, len, &mut arr) },
      "napi_create_array",
    )?;
    let mut i = 0u32;
    let mut push = |v: sys::napi_value| -> napi::Result<(), ErrorCode> {
      check(
        unsafe { sys::napi_set_element(raw_env, arr, i, v) },
        "napi_set_element",
      )?;
      i += 1;
      Ok(())
    };
    let num = |n: f64| -> napi::Result<sys::napi_value, ErrorCode> {
      let mut v = ptr::null_mut();
      check(
        unsafe { sys::napi_create_double(raw_env, n, &mut v) },
        "napi_create_double",
      )?;
      Ok(v)
    };
    for c in batch.completions {
      push(num(c.id as f64)?)?;
      let (wait, run) = (c.wait(), c.run());
      match c.outcome {
        Outcome::Value(bytes) => {
          push(num(0.0)?)?;
          push(decode(raw_env, bytes)?)?;
        }
        Outcome::Threw(bytes) => {
          push(num(1.0)?)?;
          push(decode(raw_env, bytes)?)?;
        }
        Outcome::Failed(err) => {
          push(num(2.0)?)?;
          let text = format!("{} {}", err.code.as_str(), err.message);
          let mut v = ptr::null_mut();
          check(
            unsafe {
              sys::napi_create_string_utf8(
                raw_env,
                text.as_ptr().cast(),
                text.len() as isize,
                &mut v,
              )
            },
            "napi_create_string_utf8",
          )?;
          push(v)?;
        }
      }
      if TIMES {
        let millis = |d: Option<std::time::Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
        push(num(millis(wait))?)?;
        push(num(millis(run))?)?;
      }
    }
    push(num(if batch.more { -2.0 } else { -1.0 })?)?;
    for w in batch.terminate {
      push(num(f64::from(w))?)?;
    }
    // SAFETY: `arr` is a live value of this call.
    Ok(unsafe { Unknown::from_raw_unchecked(raw_env, arr) })
  }
}
