//! The napi glue of the named (process-wide) cache.
//!
//! `SharedCacheHandle` (a napi-rs class, one per `NamedLRUCache` object)
//! owns a registry handle on the shared store, kept in a per-thread slot
//! table under a numeric id. The hot operations (`get`, `set`, `has`,
//! `peek`, `delete`) are hand-registered Node-API functions that take that
//! id: they skip napi-rs's `this` unwrapping and argument conversions, and
//! look keys up from a stack buffer without allocating (measured in
//! bench/lru-cache-named.bench.mjs and docs/named-cache-architecture.md).
//! Everything else is an ordinary class method.
//!
//! Values come back as a JS string (tag `STR`), a number (tag `NUM`), or a
//! `Buffer` whose first byte is the tag (the JS layer decodes it: a Buffer,
//! a Uint8Array, or V8-serialized bytes).
//!
//! Lifetime: the class's finalizer (run when the JS object is collected,
//! and at environment teardown when a worker exits or is terminated) frees
//! the slot, which drops the registry handle; the last handle in the process
//! frees the store.

use super::guard;
use std::cell::RefCell;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::Instant;

use napi::bindgen_prelude::{Env, FromNapiValue, Object, ToNapiValue, TypeName, ValidateNapiValue};
use napi::{sys, Status, ValueType};
use napi_derive::napi;

use crate::error::{Error, ErrorCode};
use crate::registry::{Named, Registry};
use crate::shared_cache::{
  Disposed, Flights, Joined, Key, Options, ReadOptions, SetOutcome, SharedCache, Value,
  WriteOptions, ENTRY_OVERHEAD, KEY_STR,
};

/// Unwraps a `napi::Result` in a raw callback, throwing on error.
macro_rules! tri {
  ($env:expr, $e:expr) => {
    match $e {
      Ok(v) => v,
      Err(e) => return throw_napi($env, e),
    }
  };
}

static CACHES: Registry<NamedStore> = Registry::new();
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// What one name holds: the store, and the `fetch()` calls in flight.
struct NamedStore {
  cache: SharedCache,
  flights: Flights<Waiter>,
}
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Value tags; the JS layer (lib/lru-cache-named.js) uses the same numbers.
const TAG_STR: u8 = 0;
const TAG_NUM: u8 = 1;
/// A string whose UTF-8 bytes are all ASCII: made back into a JS string
/// with a plain Latin-1 copy instead of UTF-8 decoding (internal; JS sees a
/// string either way).
const TAG_ASCII: u8 = 5;

/// Flag bits of the calls, shared with lib/lru-cache-named.js.
const ALLOW_STALE: u32 = 1;
const UPDATE_AGE: u32 = 2;
const NO_DELETE_ON_STALE: u32 = 4;
const COLLECT: u32 = 8;
const NO_DISPOSE_ON_SET: u32 = 16;
const NO_UPDATE_TTL: u32 = 32;

/// Ids are `generation * 2^20 + index`, so an id of a freed slot never
/// reaches the handle that reuses the index.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// Milliseconds on the process-wide clock every thread shares, unless the
/// caller passed its own `now` (lru-cache's `perf` option, for tests).
fn now_or(now: f64) -> f64 {
  if now >= 0.0 {
    now
  } else {
    // Start at 1 ms so no real time is ever 0.
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0 + 1.0
  }
}

// ---------------------------------------------------------------------------
// The per-thread slot table.

struct Slot {
  generation: u32,
  /// This handle's id as a fetch owner (unique in the process).
  owner: u64,
  store: Option<Named<NamedStore>>,
  disposed: Vec<Disposed>,
}

#[derive(Default)]
struct Slots {
  slots: Vec<Slot>,
  free: Vec<u32>,
}

thread_local! {
  // Only ever borrowed for a store operation that calls no JS, so no
  // finalizer can run (and re-borrow) while it is borrowed.
  static SLOTS: RefCell<Slots> = RefCell::new(Slots::default());
}

fn open_slot(store: Named<NamedStore>) -> u64 {
  SLOTS.with(|cell| {
    let mut t = cell.borrow_mut();
    let index = match t.free.pop() {
      Some(i) => i,
      None => {
        t.slots.push(Slot {
          generation: 0,
          owner: 0,
          store: None,
          disposed: Vec::new(),
        });
        (t.slots.len() - 1) as u32
      }
    };
    let slot = &mut t.slots[index as usize];
    slot.generation = slot.generation.wrapping_add(1) & 0x0FFF_FFFF;
    slot.store = Some(store);
    slot.owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
    ((slot.generation as u64) << INDEX_BITS) | index as u64
  })
}

fn close_slot(id: u64) {
  // At thread exit the table may already be gone; its own drop then
  // released every handle.
  let _ = SLOTS.try_with(|cell| {
    let released = {
      let mut t = cell.borrow_mut();
      let index = (id & INDEX_MASK) as u32;
      match t.slots.get_mut(index as usize) {
        Some(slot) if slot.generation as u64 == id >> INDEX_BITS && slot.store.is_some() => {
          let store = slot.store.take();
          let disposed = std::mem::take(&mut slot.disposed);
          // Fetches this handle was running will never finish: release
          // their waiters (in any thread) with an error.
          let orphans = store
            .as_ref()
            .map(|s| s.flights.abandon(slot.owner))
            .unwrap_or_default();
          t.free.push(index);
          Some((store, disposed, orphans))
        }
        _ => None,
      }
    };
    // Woken and dropped outside the borrow.
    if let Some((_, _, orphans)) = &released {
      for w in orphans {
        w.wake(false, ORPHANED);
      }
    }
    drop(released);
  });
}

/// Runs `f` on the store of handle `id` and its dispose list.
fn with_store<R>(
  id: u64,
  f: impl FnOnce(&SharedCache, &mut Vec<Disposed>) -> R,
) -> Result<R, Error> {
  with_named(id, |store, _, disposed| f(&store.cache, disposed))
}

/// Runs `f` on the named store of handle `id`, its owner id and dispose list.
fn with_named<R>(
  id: u64,
  f: impl FnOnce(&NamedStore, u64, &mut Vec<Disposed>) -> R,
) -> Result<R, Error> {
  SLOTS.with(|cell| {
    let mut t = cell.borrow_mut();
    match t.slots.get_mut((id & INDEX_MASK) as usize) {
      Some(Slot {
        generation,
        owner,
        store: Some(store),
        disposed,
      }) if *generation as u64 == id >> INDEX_BITS => Ok(f(store, *owner, disposed)),
      _ => Err(Error::closed("this named LRUCache is closed")),
    }
  })
}

// ---------------------------------------------------------------------------
// Cross-thread wake-ups for `fetch()`.
//
// Each JS thread that waits for another thread's fetch installs one waker:
// a Node-API thread-safe function around a JS callback `(waiterId, ok,
// message)`, unref'd so an idle thread can exit (the JS layer refs it while
// it has waiters). A `Waiter` is the waker plus the id of one waiting call.
// Node finalizes the thread-safe function when its environment is torn
// down; the finalizer empties `Waker::tsfn` under its mutex, so no thread
// calls a finalized function.

const ORPHANED: &str = "the thread fetching this key closed its named LRUCache or exited";

struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: a thread-safe function may be called from any thread; it is only
// used under `Waker::tsfn`'s mutex, which its finalizer also takes.
unsafe impl Send for Tsfn {}

struct Waker {
  tsfn: Mutex<Option<Tsfn>>,
}

struct Waiter {
  waker: Arc<Waker>,
  id: u32,
}

struct Wake {
  id: u32,
  ok: bool,
  message: String,
}

impl Waiter {
  fn wake(&self, ok: bool, message: &str) {
    let guard = self.waker.tsfn.lock();
    if let Some(Tsfn(tsfn)) = guard.as_ref() {
      let data = Box::into_raw(Box::new(Wake {
        id: self.id,
        ok,
        message: message.to_owned(),
      }));
      // SAFETY: the function is alive (its finalizer clears it under this
      // lock); on failure (the environment is closing) the data is ours again.
      let status = unsafe {
        sys::napi_call_threadsafe_function(
          *tsfn,
          data.cast(),
          sys::ThreadsafeFunctionCallMode::nonblocking,
        )
      };
      if status != sys::Status::napi_ok {
        drop(unsafe { Box::from_raw(data) });
      }
    }
  }
}

thread_local! {
  static WAKER: RefCell<Option<Arc<Waker>>> = const { RefCell::new(None) };
}

unsafe extern "C" fn waker_call_js(
  env: sys::napi_env,
  callback: sys::napi_value,
  _context: *mut std::ffi::c_void,
  data: *mut std::ffi::c_void,
) {
  guard::quiet(|| {
    // SAFETY: `data` is the `Box<Wake>` passed to napi_call_threadsafe_function.
    let wake = Box::from_raw(data.cast::<Wake>());
    if env.is_null() || callback.is_null() {
      return; // the environment is going away; nobody is waiting any more
    }
    let mut argv = [ptr::null_mut(); 3];
    let mut undefined = ptr::null_mut();
    if js_number(env, wake.id as f64).map(|v| argv[0] = v).is_err()
      || sys::napi_get_boolean(env, wake.ok, &mut argv[1]) != sys::Status::napi_ok
      || js_string(env, wake.message.as_bytes())
        .map(|v| argv[2] = v)
        .is_err()
      || sys::napi_get_undefined(env, &mut undefined) != sys::Status::napi_ok
    {
      return;
    }
    sys::napi_call_function(env, undefined, callback, 3, argv.as_ptr(), ptr::null_mut());
  })
}

unsafe extern "C" fn waker_finalize(
  _env: sys::napi_env,
  data: *mut std::ffi::c_void,
  _hint: *mut std::ffi::c_void,
) {
  guard::quiet(|| {
    // SAFETY: `data` is the `Arc<Waker>` leaked in `install_waker`.
    let waker = Arc::from_raw(data.cast::<Waker>());
    *waker.tsfn.lock() = None;
    let _ = WAKER.try_with(|w| {
      if w
        .borrow()
        .as_ref()
        .is_some_and(|mine| Arc::ptr_eq(mine, &waker))
      {
        *w.borrow_mut() = None;
      }
    });
  })
}

/// `installWaker(callback)`: makes this thread's waker (once).
unsafe extern "C" fn raw_install_waker(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let (argv, _, _) = tri!(env, args::<1>(env, info));
    if WAKER.with(|w| w.borrow().is_some()) {
      return ptr::null_mut();
    }
    let waker = Arc::new(Waker {
      tsfn: Mutex::new(None),
    });
    let name = "bulkhead.namedLRUCache.fetch";
    let mut name_v = ptr::null_mut();
    tri!(
      env,
      check(
        sys::napi_create_string_utf8(env, name.as_ptr().cast(), name.len() as isize, &mut name_v),
        "napi_create_string_utf8 failed",
      )
    );
    let finalize_data = Arc::into_raw(Arc::clone(&waker)) as *mut std::ffi::c_void;
    let mut tsfn = ptr::null_mut();
    let status = sys::napi_create_threadsafe_function(
      env,
      argv[0],
      ptr::null_mut(),
      name_v,
      0,
      1,
      finalize_data,
      Some(waker_finalize),
      ptr::null_mut(),
      Some(waker_call_js),
      &mut tsfn,
    );
    if status != sys::Status::napi_ok {
      drop(Arc::from_raw(finalize_data as *const Waker));
      return throw_napi(
        env,
        napi::Error::from_reason("napi_create_threadsafe_function failed"),
      );
    }
    sys::napi_unref_threadsafe_function(env, tsfn);
    *waker.tsfn.lock() = Some(Tsfn(tsfn));
    WAKER.with(|w| *w.borrow_mut() = Some(waker));
    ptr::null_mut()
  })
}

/// `refWaker(on)`: keeps this thread alive while it waits for fetches
/// (`on` true), or lets it exit (`on` false).
unsafe extern "C" fn raw_ref_waker(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let (argv, _, _) = tri!(env, args::<1>(env, info));
    let mut on = false;
    sys::napi_get_value_bool(env, argv[0], &mut on);
    let waker = WAKER.with(|w| w.borrow().clone());
    if let Some(waker) = waker {
      if let Some(Tsfn(tsfn)) = waker.tsfn.lock().as_ref() {
        if on {
          sys::napi_ref_threadsafe_function(env, *tsfn);
        } else {
          sys::napi_unref_threadsafe_function(env, *tsfn);
        }
      }
    }
    ptr::null_mut()
  })
}

// ---------------------------------------------------------------------------
// Conversions. Safety argument for every `unsafe fn` here: they are called
// on the JS thread of `env`, inside a Node-API callback, with values of the
// current handle scope, and check every Node-API status.

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(napi::Error::new(Status::InvalidArg, what.to_owned()))
  }
}

unsafe fn type_of(env: sys::napi_env, v: sys::napi_value) -> napi::Result<i32> {
  let mut t = 0;
  check(sys::napi_typeof(env, v, &mut t), "napi_typeof failed")?;
  Ok(t)
}

const KEY_STACK: usize = 1024;

/// An encoded key (see [`Key`]) in a stack buffer, or on the heap when long.
struct KeyBuf {
  stack: [MaybeUninit<u8>; KEY_STACK],
  len: usize,
  heap: Vec<u8>,
}

impl KeyBuf {
  fn bytes(&self) -> &[u8] {
    if self.heap.is_empty() {
      // SAFETY: the first `len` bytes of `stack` were written by `read_key`.
      unsafe { std::slice::from_raw_parts(self.stack.as_ptr().cast(), self.len) }
    } else {
      &self.heap
    }
  }
}

/// Error for a key of another type. The JS layer checks keys first with
/// lru-cache-style messages; this guards direct calls.
const BAD_KEY: &CStr = c"named LRUCache keys must be strings or numbers";

/// Reads a string or number key into `buf`. Returns false for other types.
/// Tries a string first (the common case) so it costs one Node-API call.
unsafe fn read_key(env: sys::napi_env, v: sys::napi_value, buf: &mut KeyBuf) -> napi::Result<bool> {
  buf.stack[0] = MaybeUninit::new(KEY_STR);
  let mut len = 0usize;
  let status = sys::napi_get_value_string_utf8(
    env,
    v,
    buf.stack.as_mut_ptr().add(1).cast(),
    KEY_STACK - 1,
    &mut len,
  );
  if status == sys::Status::napi_ok {
    // Node writes at most KEY_STACK - 2 bytes and a NUL, and stops before a
    // character that does not fit (up to 4 bytes). Anything shorter than
    // that margin is the whole string; otherwise read it again in full.
    if len + 2 + 4 < KEY_STACK {
      buf.len = len + 1;
    } else {
      let s = read_utf8(env, v)?;
      buf.heap = Vec::with_capacity(s.len() + 1);
      buf.heap.push(KEY_STR);
      buf.heap.extend_from_slice(&s);
    }
    return Ok(true);
  }
  let mut n = 0f64;
  if sys::napi_get_value_double(env, v, &mut n) != sys::Status::napi_ok {
    return Ok(false);
  }
  let enc = Key::encode_num(n);
  ptr::copy_nonoverlapping(enc.as_ptr(), buf.stack.as_mut_ptr().cast(), enc.len());
  buf.len = enc.len();
  Ok(true)
}

/// Reads a JS string as UTF-8 bytes (one length query, one read).
unsafe fn read_utf8(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Vec<u8>> {
  let mut len = 0usize;
  check(
    sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len),
    "expected a string",
  )?;
  let mut heap = vec![0u8; len + 1];
  check(
    sys::napi_get_value_string_utf8(env, v, heap.as_mut_ptr() as *mut c_char, len + 1, &mut len),
    "expected a string",
  )?;
  heap.truncate(len);
  Ok(heap)
}

/// Reads a value: a string, a number, or a Uint8Array whose bytes `tag`
/// describes. Binary values keep their tag as the first byte, so `get`
/// hands JS one Buffer it can decode without a second call.
unsafe fn read_value(env: sys::napi_env, v: sys::napi_value, tag: u8) -> napi::Result<Value> {
  match type_of(env, v)? {
    sys::ValueType::napi_string => {
      const STACK: usize = 4096;
      let mut stack = [MaybeUninit::<u8>::uninit(); STACK];
      let mut len = 0usize;
      check(
        sys::napi_get_value_string_utf8(env, v, stack.as_mut_ptr().cast(), STACK, &mut len),
        "expected a string",
      )?;
      // As in `read_key`: a read that came within one character of the end
      // of the buffer may have been cut, so it is read again in full.
      let bytes: Arc<[u8]> = if len + 1 + 4 < STACK {
        // SAFETY: Node wrote `len` bytes (and a NUL) into `stack`.
        Arc::from(std::slice::from_raw_parts(stack.as_ptr().cast::<u8>(), len))
      } else {
        read_utf8(env, v)?.into()
      };
      let tag = if bytes.is_ascii() { TAG_ASCII } else { TAG_STR };
      Ok(Value { tag, bytes })
    }
    sys::ValueType::napi_number => {
      let mut n = 0f64;
      check(
        sys::napi_get_value_double(env, v, &mut n),
        "expected a number",
      )?;
      Ok(Value::new(TAG_NUM, &n.to_le_bytes()))
    }
    _ => {
      let mut kind = 0;
      let mut len = 0usize;
      let mut data = ptr::null_mut();
      let mut ab = ptr::null_mut();
      let mut offset = 0usize;
      check(
        sys::napi_get_typedarray_info(env, v, &mut kind, &mut len, &mut data, &mut ab, &mut offset),
        "named cache values reach Rust as strings, numbers or Uint8Arrays",
      )?;
      if kind != sys::TypedarrayType::uint8_array {
        return Err(napi::Error::from_reason("expected a Uint8Array"));
      }
      let mut bytes = Vec::with_capacity(len + 1);
      bytes.push(tag);
      if len != 0 && !data.is_null() {
        // SAFETY: Node reports `len` bytes at `data` for this live typed
        // array; they are copied before the call returns.
        bytes.extend_from_slice(std::slice::from_raw_parts(data as *const u8, len));
      }
      Ok(Value {
        tag,
        bytes: bytes.into(),
      })
    }
  }
}

unsafe fn js_string(env: sys::napi_env, bytes: &[u8]) -> napi::Result<sys::napi_value> {
  let mut out = ptr::null_mut();
  check(
    sys::napi_create_string_utf8(
      env,
      bytes.as_ptr() as *const c_char,
      bytes.len() as isize,
      &mut out,
    ),
    "napi_create_string_utf8 failed",
  )?;
  Ok(out)
}

unsafe fn js_number(env: sys::napi_env, n: f64) -> napi::Result<sys::napi_value> {
  let mut out = ptr::null_mut();
  check(
    sys::napi_create_double(env, n, &mut out),
    "napi_create_double failed",
  )?;
  Ok(out)
}

unsafe fn js_value(env: sys::napi_env, v: &Value) -> napi::Result<sys::napi_value> {
  match v.tag {
    TAG_STR => js_string(env, &v.bytes),
    TAG_ASCII => {
      let mut out = ptr::null_mut();
      check(
        sys::napi_create_string_latin1(
          env,
          v.bytes.as_ptr() as *const c_char,
          v.bytes.len() as isize,
          &mut out,
        ),
        "napi_create_string_latin1 failed",
      )?;
      Ok(out)
    }
    TAG_NUM => {
      let mut le = [0u8; 8];
      le.copy_from_slice(&v.bytes[..8]);
      js_number(env, f64::from_le_bytes(le))
    }
    _ => {
      let mut data = ptr::null_mut();
      let mut out = ptr::null_mut();
      check(
        sys::napi_create_buffer_copy(
          env,
          v.bytes.len(),
          v.bytes.as_ptr().cast(),
          &mut data,
          &mut out,
        ),
        "napi_create_buffer_copy failed",
      )?;
      Ok(out)
    }
  }
}

unsafe fn js_key(env: sys::napi_env, k: &Key) -> napi::Result<sys::napi_value> {
  match k.as_str_bytes() {
    Some(s) => js_string(env, s),
    None => js_number(env, k.as_f64().unwrap_or(f64::NAN)),
  }
}

/// A key argument of the class methods.
pub struct KeyIn(Key);

impl TypeName for KeyIn {
  fn type_name() -> &'static str {
    "string | number"
  }
  fn value_type() -> ValueType {
    ValueType::Unknown
  }
}

impl ValidateNapiValue for KeyIn {}

impl FromNapiValue for KeyIn {
  unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
    let mut buf = KeyBuf {
      stack: [MaybeUninit::uninit(); KEY_STACK],
      len: 0,
      heap: Vec::new(),
    };
    if !read_key(env, v, &mut buf)? {
      return Err(napi::Error::new(
        Status::InvalidArg,
        BAD_KEY.to_string_lossy().into_owned(),
      ));
    }
    Ok(KeyIn(Key::from_encoded(buf.bytes())))
  }
}

/// One JS value built from the store: a key, a value, a number or a string.
pub enum Js {
  /// A key.
  Key(Key),
  /// A value.
  Value(Value),
  /// A number.
  Num(f64),
  /// A static string (dispose reasons).
  Str(&'static str),
}

impl ToNapiValue for Js {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    match val {
      Js::Key(k) => js_key(env, &k),
      Js::Num(n) => js_number(env, n),
      Js::Str(s) => js_string(env, s.as_bytes()),
      Js::Value(v) => js_value(env, &v),
    }
  }
}

// ---------------------------------------------------------------------------
// The class.

/// A handle on a named cache store shared by every worker_thread. Used by
/// `NamedLRUCache` (lib/lru-cache-named.js); not meant to be used directly.
#[napi]
pub struct SharedCacheHandle {
  id: u64,
  closed: bool,
}

fn incompatible(name: &str, option: &str, have: f64, want: f64) -> Error {
  Error::invalid_arg(format!(
    "options.{option} is {want}, but the named cache '{name}' is already open with {option} {have}; \
     every handle on one name must use the same {option}"
  ))
}

#[napi]
impl SharedCacheHandle {
  /// Opens (or creates) the store called `name`. Options of 0 mean "none";
  /// `shards` of 0 or 1 means one exact LRU order.
  /// Throws `ERR_INVALID_ARG` naming the option if the name is open with
  /// different `max`, `maxSize`, `maxEntrySize`, `ttl` or `shards`.
  #[napi(constructor, catch_unwind)]
  pub fn new(
    name: String,
    max: f64,
    max_size: f64,
    max_entry_size: f64,
    ttl: f64,
    shards: Option<f64>,
  ) -> napi::Result<Self, ErrorCode> {
    if name.is_empty() {
      return Err(Error::invalid_arg("options.name must be a non-empty string").into());
    }
    let options = Options {
      max: max as u64,
      max_size: max_size as u64,
      max_entry_size: max_entry_size as u64,
      ttl,
      shards: (shards.unwrap_or(1.0) as u32).max(1),
    };
    let handle = CACHES.open(
      &name,
      || {
        Ok::<_, Error>(NamedStore {
          cache: SharedCache::new(options),
          flights: Flights::default(),
        })
      },
      |existing| {
        let have = existing.cache.options();
        let pairs = [
          ("max", have.max as f64, options.max as f64),
          ("maxSize", have.max_size as f64, options.max_size as f64),
          (
            "maxEntrySize",
            have.max_entry_size as f64,
            options.max_entry_size as f64,
          ),
          ("ttl", have.ttl, options.ttl),
          ("shards", have.shards as f64, options.shards as f64),
        ];
        for (option, have, want) in pairs {
          if have != want {
            return Err(incompatible(&name, option, have, want));
          }
        }
        Ok(())
      },
    )?;
    Ok(Self {
      id: open_slot(handle),
      closed: false,
    })
  }

  /// The id `sharedCacheRawFunctions` binds the hot-path functions to, or -1 once closed.
  #[napi(getter, catch_unwind)]
  pub fn id(&self) -> f64 {
    if self.closed {
      -1.0
    } else {
      self.id as f64
    }
  }

  /// `clear`: removes every entry.
  #[napi(catch_unwind)]
  pub fn clear(&self, flags: u32) -> napi::Result<(), ErrorCode> {
    with_store(self.id, |s, d| s.clear(collect(flags, d)))?;
    Ok(())
  }

  /// `pop`: removes the least recently used entry and returns its value.
  #[napi(ts_return_type = "string | number | Buffer | undefined", catch_unwind)]
  pub fn pop(&self, flags: u32) -> napi::Result<Option<Js>, ErrorCode> {
    let popped = with_store(self.id, |s, d| s.pop(collect(flags, d)))?;
    Ok(popped.map(|(_, v)| Js::Value(v)))
  }

  /// `purgeStale`: removes every stale entry; returns whether any was.
  #[napi(catch_unwind)]
  pub fn purge_stale(&self, now: f64, flags: u32) -> napi::Result<bool, ErrorCode> {
    Ok(with_store(self.id, |s, d| {
      s.purge_stale(now_or(now), collect(flags, d))
    })?)
  }

  /// `getRemainingTTL`.
  #[napi(catch_unwind)]
  pub fn remaining_ttl(&self, key: KeyIn, now: f64) -> napi::Result<f64, ErrorCode> {
    Ok(with_store(self.id, |s, _| {
      s.remaining_ttl(key.0.encoded(), now_or(now))
    })?)
  }

  /// A snapshot for iteration: `[key, value, key, value, ...]`, most
  /// recently used first (least first with `reverse`).
  #[napi(ts_return_type = "Array<string | number | Buffer>", catch_unwind)]
  pub fn entries(
    &self,
    now: f64,
    allow_stale: bool,
    reverse: bool,
  ) -> napi::Result<Vec<Js>, ErrorCode> {
    let entries = with_store(self.id, |s, _| s.entries(now_or(now), allow_stale, reverse))?;
    let mut flat = Vec::with_capacity(entries.len() * 2);
    for (k, v) in entries {
      flat.push(Js::Key(k));
      flat.push(Js::Value(v));
    }
    Ok(flat)
  }

  /// `dump`: `[key, value, ttl, age, size, ...]`, least recently used first.
  #[napi(ts_return_type = "Array<string | number | Buffer>", catch_unwind)]
  pub fn dump(&self, now: f64) -> napi::Result<Vec<Js>, ErrorCode> {
    let now = now_or(now);
    let dump = with_store(self.id, |s, _| s.dump())?;
    let mut flat = Vec::with_capacity(dump.len() * 5);
    for e in dump {
      flat.push(Js::Key(e.key));
      flat.push(Js::Value(e.value));
      flat.push(Js::Num(e.ttl));
      flat.push(Js::Num(now - e.start));
      flat.push(Js::Num(e.size as f64));
    }
    Ok(flat)
  }

  /// The entries the last operations removed, `[key, value, reason, ...]`,
  /// or `undefined` if none (only collected when a call passed `COLLECT`).
  #[napi(
    ts_return_type = "Array<string | number | Buffer> | undefined",
    catch_unwind
  )]
  pub fn take_disposed(&self) -> Option<Vec<Js>> {
    let disposed = with_store(self.id, |_, d| std::mem::take(d)).ok()?;
    if disposed.is_empty() {
      return None;
    }
    let mut flat = Vec::with_capacity(disposed.len() * 3);
    for d in disposed {
      flat.push(Js::Key(d.key));
      flat.push(Js::Value(d.value));
      flat.push(Js::Str(d.reason.as_str()));
    }
    Some(flat)
  }

  /// `[hits, misses, sets, evictions, expirations, deletes, size, calculatedSize]`.
  #[napi(catch_unwind)]
  pub fn stats(&self) -> napi::Result<Vec<f64>, ErrorCode> {
    let (len, bytes, s) = with_store(self.id, |s, _| s.snapshot())?;
    Ok(vec![
      s.hits as f64,
      s.misses as f64,
      s.sets as f64,
      s.evictions as f64,
      s.expirations as f64,
      s.deletes as f64,
      len as f64,
      bytes as f64,
    ])
  }

  /// Joins the `fetch()` of `key` across threads: returns 0 if this call
  /// owns it (runs the fetch method, then calls `fetchEnd`), 1 if another
  /// call does and this thread's waker will call back with `waiterId`.
  #[napi(catch_unwind)]
  pub fn fetch_begin(&self, key: KeyIn, waiter_id: u32) -> napi::Result<u32, ErrorCode> {
    let Some(waker) = WAKER.with(|w| w.borrow().clone()) else {
      return Err(
        Error::new(
          ErrorCode::Internal,
          "installWaker was not called in this thread",
        )
        .into(),
      );
    };
    let joined = with_named(self.id, |s, owner, _| {
      s.flights.join(key.0.encoded(), owner, || Waiter {
        waker,
        id: waiter_id,
      })
    })?;
    Ok(match joined {
      Joined::Owner => 0,
      Joined::Waiting => 1,
    })
  }

  /// Ends this handle's fetch of `key` and wakes its waiters with `ok` and
  /// `message`. Does nothing once closed (closing already released them).
  #[napi(catch_unwind)]
  pub fn fetch_end(&self, key: KeyIn, ok: bool, message: String) {
    let waiters = with_named(self.id, |s, owner, _| {
      s.flights.finish(key.0.encoded(), owner)
    })
    .unwrap_or_default();
    for w in waiters {
      w.wake(ok, &message);
    }
  }

  /// How many keys of this cache are being fetched (all threads).
  #[napi(getter, catch_unwind)]
  pub fn fetching(&self) -> napi::Result<u32, ErrorCode> {
    Ok(with_named(self.id, |s, _, _| s.flights.len())? as u32)
  }

  /// How many entries are held.
  #[napi(getter, catch_unwind)]
  pub fn size(&self) -> napi::Result<u32, ErrorCode> {
    Ok(with_store(self.id, |s, _| s.len())? as u32)
  }

  /// The bytes held (key + value + per-entry overhead of every entry).
  #[napi(getter, catch_unwind)]
  pub fn calculated_size(&self) -> napi::Result<f64, ErrorCode> {
    Ok(with_store(self.id, |s, _| s.calculated_size())? as f64)
  }

  /// How many shards the store has (1: one exact LRU order).
  #[napi(getter, catch_unwind)]
  pub fn shards(&self) -> napi::Result<u32, ErrorCode> {
    Ok(with_store(self.id, |s, _| s.shard_count())? as u32)
  }

  /// The largest entry the store takes, in bytes (0: no limit): with shards,
  /// at most one shard's share of `maxSize`.
  #[napi(getter, catch_unwind)]
  pub fn max_entry_size(&self) -> napi::Result<f64, ErrorCode> {
    Ok(with_store(self.id, |s, _| s.max_entry_size())? as f64)
  }

  /// The current time on the shared clock, in ms.
  #[napi(catch_unwind)]
  pub fn now() -> f64 {
    now_or(-1.0)
  }

  /// Lets go of this handle; the store is freed when no thread holds one.
  #[napi(catch_unwind)]
  pub fn close(&mut self) {
    if !self.closed {
      self.closed = true;
      close_slot(self.id);
    }
  }

  /// Whether `close()` was called.
  #[napi(getter, catch_unwind)]
  pub fn closed(&self) -> bool {
    self.closed
  }

  /// How many named caches are alive in the process (for leak tests).
  #[napi(catch_unwind)]
  pub fn live_count() -> u32 {
    CACHES.len() as u32
  }

  /// The fixed bytes each entry is charged besides its key and value.
  #[napi(catch_unwind)]
  pub fn entry_overhead() -> u32 {
    ENTRY_OVERHEAD as u32
  }
}

impl Drop for SharedCacheHandle {
  fn drop(&mut self) {
    // A finalizer: a panic here must not unwind into Node.
    guard::quiet(|| {
      self.close();
    })
  }
}

fn collect(flags: u32, d: &mut Vec<Disposed>) -> Option<&mut Vec<Disposed>> {
  (flags & COLLECT != 0).then_some(d)
}

// ---------------------------------------------------------------------------
// Hand-registered hot paths. Safety argument (as in boundary.rs): Node calls
// each callback on the JS thread of `env` with a valid `info`; arguments are
// read with `napi_get_cb_info` into fixed arrays (missing ones are
// `undefined`); no `napi_value` outlives the call; no JS runs while the slot
// table is borrowed; every status is checked, and a failure throws and
// returns null, which Node turns into the pending exception.

unsafe fn throw(env: sys::napi_env, err: &Error) -> sys::napi_value {
  let code = err.code.as_str();
  let mut code_v = ptr::null_mut();
  let mut msg_v = ptr::null_mut();
  let mut error = ptr::null_mut();
  if sys::napi_create_string_utf8(env, code.as_ptr().cast(), code.len() as isize, &mut code_v)
    == sys::Status::napi_ok
    && sys::napi_create_string_utf8(
      env,
      err.message.as_ptr().cast(),
      err.message.len() as isize,
      &mut msg_v,
    ) == sys::Status::napi_ok
    && sys::napi_create_error(env, code_v, msg_v, &mut error) == sys::Status::napi_ok
  {
    sys::napi_throw(env, error);
  } else {
    sys::napi_throw_error(
      env,
      ptr::null(),
      c"bulkhead: could not build an error".as_ptr(),
    );
  }
  ptr::null_mut()
}

unsafe fn throw_napi(env: sys::napi_env, err: napi::Error) -> sys::napi_value {
  throw(env, &Error::new(ErrorCode::InvalidArg, err.reason.clone()))
}

unsafe fn throw_type(env: sys::napi_env, message: &CStr) -> sys::napi_value {
  sys::napi_throw_type_error(env, ptr::null(), message.as_ptr());
  ptr::null_mut()
}

/// The arguments of a raw call, how many were passed, and the handle id
/// the function was bound to (its `data` pointer).
unsafe fn args<const N: usize>(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> napi::Result<([sys::napi_value; N], usize, u64)> {
  let mut argc = N;
  let mut argv = [ptr::null_mut(); N];
  let mut data = ptr::null_mut();
  check(
    sys::napi_get_cb_info(
      env,
      info,
      &mut argc,
      argv.as_mut_ptr(),
      ptr::null_mut(),
      &mut data,
    ),
    "cannot read arguments",
  )?;
  Ok((argv, argc, data as usize as u64))
}

unsafe fn num(env: sys::napi_env, v: sys::napi_value) -> napi::Result<f64> {
  let mut n = 0f64;
  check(
    sys::napi_get_value_double(env, v, &mut n),
    "expected a number",
  )?;
  Ok(n)
}

/// `now` from an optional argument: the caller's clock if given, else the
/// shared clock.
unsafe fn now_arg(
  env: sys::napi_env,
  argv: &[sys::napi_value],
  argc: usize,
  i: usize,
) -> napi::Result<f64> {
  if argc > i {
    Ok(now_or(num(env, argv[i])?))
  } else {
    Ok(now_or(-1.0))
  }
}

unsafe fn js_bool(env: sys::napi_env, b: bool) -> sys::napi_value {
  let mut out = ptr::null_mut();
  sys::napi_get_boolean(env, b, &mut out);
  out
}

/// Reads the key argument into `key`. `Err(null)` means an exception is
/// already pending.
unsafe fn key_arg(
  env: sys::napi_env,
  k: sys::napi_value,
  key: &mut KeyBuf,
) -> Result<(), sys::napi_value> {
  match read_key(env, k, key) {
    Ok(true) => Ok(()),
    Ok(false) => Err(throw_type(env, BAD_KEY)),
    Err(e) => Err(throw_napi(env, e)),
  }
}

fn key_buf() -> KeyBuf {
  KeyBuf {
    stack: [MaybeUninit::uninit(); KEY_STACK],
    len: 0,
    heap: Vec::new(),
  }
}

/// `get(key, flags[, now])` -> value | undefined.
unsafe extern "C" fn raw_get(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  guard::raw(env, || {
    let (argv, argc, id) = tri!(env, args::<3>(env, info));
    let mut key = key_buf();
    if let Err(pending) = key_arg(env, argv[0], &mut key) {
      return pending;
    }
    let flags = tri!(env, num(env, argv[1])) as u32;
    let now = tri!(env, now_arg(env, &argv, argc, 2));
    let opts = ReadOptions {
      allow_stale: flags & ALLOW_STALE != 0,
      update_age: flags & UPDATE_AGE != 0,
      no_delete_on_stale: flags & NO_DELETE_ON_STALE != 0,
    };
    match with_store(id, |s, d| s.get(key.bytes(), now, opts, collect(flags, d))) {
      Ok(Some(v)) => js_value(env, &v).unwrap_or_else(|e| throw_napi(env, e)),
      Ok(None) => ptr::null_mut(),
      Err(e) => throw(env, &e),
    }
  })
}

/// `peek(key, allowStale[, now])` -> value | undefined.
unsafe extern "C" fn raw_peek(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let (argv, argc, id) = tri!(env, args::<3>(env, info));
    let mut key = key_buf();
    if let Err(pending) = key_arg(env, argv[0], &mut key) {
      return pending;
    }
    let allow = tri!(env, num(env, argv[1])) != 0.0;
    let now = tri!(env, now_arg(env, &argv, argc, 2));
    match with_store(id, |s, _| s.peek(key.bytes(), now, allow)) {
      Ok(Some(v)) => js_value(env, &v).unwrap_or_else(|e| throw_napi(env, e)),
      Ok(None) => ptr::null_mut(),
      Err(e) => throw(env, &e),
    }
  })
}

/// `has(key, updateAge[, now])` -> boolean.
unsafe extern "C" fn raw_has(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  guard::raw(env, || {
    let (argv, argc, id) = tri!(env, args::<3>(env, info));
    let mut key = key_buf();
    if let Err(pending) = key_arg(env, argv[0], &mut key) {
      return pending;
    }
    let update = tri!(env, num(env, argv[1])) != 0.0;
    let now = tri!(env, now_arg(env, &argv, argc, 2));
    match with_store(id, |s, _| s.has(key.bytes(), now, update)) {
      Ok(b) => js_bool(env, b),
      Err(e) => throw(env, &e),
    }
  })
}

/// `delete(key, flags)` -> boolean.
unsafe extern "C" fn raw_delete(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let (argv, _, id) = tri!(env, args::<2>(env, info));
    let mut key = key_buf();
    if let Err(pending) = key_arg(env, argv[0], &mut key) {
      return pending;
    }
    let flags = tri!(env, num(env, argv[1])) as u32;
    match with_store(id, |s, d| s.delete(key.bytes(), collect(flags, d))) {
      Ok(b) => js_bool(env, b),
      Err(e) => throw(env, &e),
    }
  })
}

/// `set(key, value, tag, flags[, ttl, start, now])` -> boolean (false:
/// larger than `maxEntrySize`, not stored). `ttl`/`start` below 0 mean
/// "the default".
unsafe extern "C" fn raw_set(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  guard::raw(env, || {
    let (argv, argc, id) = tri!(env, args::<7>(env, info));
    let mut key = key_buf();
    if let Err(pending) = key_arg(env, argv[0], &mut key) {
      return pending;
    }
    let tag = tri!(env, num(env, argv[2])) as u8;
    let flags = tri!(env, num(env, argv[3])) as u32;
    let (ttl, start) = if argc > 4 {
      (tri!(env, num(env, argv[4])), tri!(env, num(env, argv[5])))
    } else {
      (-1.0, -1.0)
    };
    let now = tri!(env, now_arg(env, &argv, argc, 6));
    let value = tri!(env, read_value(env, argv[1], tag));
    let opts = WriteOptions {
      ttl: (ttl >= 0.0).then_some(ttl),
      start: (start >= 0.0).then_some(start),
      no_dispose_on_set: flags & NO_DISPOSE_ON_SET != 0,
      no_update_ttl: flags & NO_UPDATE_TTL != 0,
    };
    let key = Key::from_encoded(key.bytes());
    match with_store(id, |s, d| s.set(key, value, now, opts, collect(flags, d))) {
      Ok(outcome) => js_bool(env, outcome == SetOutcome::Stored),
      Err(e) => throw(env, &e),
    }
  })
}

type RawCallback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

const RAW_FUNCTIONS: [(&CStr, RawCallback); 7] = [
  (c"get", raw_get),
  (c"peek", raw_peek),
  (c"has", raw_has),
  (c"delete", raw_delete),
  (c"set", raw_set),
  (c"installWaker", raw_install_waker),
  (c"refWaker", raw_ref_waker),
];

/// The hand-registered hot-path functions of handle `id`, as an object
/// `{ get, peek, has, delete, set }`. Each function carries the id as its
/// Node-API `data`, so a call reads no handle argument. (napi 3.10 keeps one
/// `#[napi(module_exports)]` hook per addon and boundary.rs holds it; this
/// per-handle factory needs none.)
#[napi(
  ts_return_type = "Record<'get' | 'peek' | 'has' | 'delete' | 'set', (...args: unknown[]) => unknown>",
  catch_unwind
)]
pub fn shared_cache_raw_functions(env: Env, id: f64) -> napi::Result<Object<'static>> {
  let mut object = ptr::null_mut();
  // SAFETY: `env` is the live environment of this call; `name` is
  // NUL-terminated and 'static; `data` is an integer, never dereferenced;
  // the object is returned to JS at once.
  unsafe {
    check(
      sys::napi_create_object(env.raw(), &mut object),
      "napi_create_object failed",
    )?;
    for (name, callback) in RAW_FUNCTIONS {
      let mut function = ptr::null_mut();
      check(
        sys::napi_create_function(
          env.raw(),
          name.as_ptr(),
          name.to_bytes().len() as isize,
          Some(callback),
          id as u64 as usize as *mut std::ffi::c_void,
          &mut function,
        ),
        "napi_create_function failed",
      )?;
      check(
        sys::napi_set_named_property(env.raw(), object, name.as_ptr(), function),
        "napi_set_named_property failed",
      )?;
    }
    Object::from_napi_value(env.raw(), object)
  }
}
