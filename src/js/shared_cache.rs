//! The napi glue of the named (process-wide) cache: `SharedCacheHandle`, one
//! per `NamedLRUCache` object, holding a registry handle on the shared store.
//!
//! Every operation is one call. Keys and values are converted by hand
//! (`KeyIn`, `ValueIn`, `Js`) with single Node-API calls rather than through
//! napi-rs `Either`s, which try each type in turn. Values come back as a JS
//! string (tag `STR`), a number (tag `NUM`), or a `Buffer` whose first byte is
//! the tag (the JS layer decodes it: a Buffer, a Uint8Array, or V8-serialized
//! bytes). The handle's finalizer runs when its environment is torn down, so
//! a worker that exits without `close()` still lets go of the store.

use std::os::raw::c_char;
use std::ptr;
use std::sync::OnceLock;
use std::time::Instant;

use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName, ValidateNapiValue};
use napi::{sys, Status, ValueType};
use napi_derive::napi;

use crate::error::{Error, ErrorCode};
use crate::registry::{Named, Registry};
use crate::shared_cache::{
  Disposed, Key, Options, ReadOptions, SetOutcome, SharedCache, Value, WriteOptions, ENTRY_OVERHEAD,
};

static CACHES: Registry<SharedCache> = Registry::new();
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Value tags; the JS layer (lib/lru-cache-named.js) uses the same numbers.
const TAG_STR: u8 = 0;
const TAG_NUM: u8 = 1;

/// Read flags (bits of `flags`), shared with lib/lru-cache-named.js.
const ALLOW_STALE: u32 = 1;
const UPDATE_AGE: u32 = 2;
const NO_DELETE_ON_STALE: u32 = 4;
const COLLECT: u32 = 8;
const NO_DISPOSE_ON_SET: u32 = 16;
const NO_UPDATE_TTL: u32 = 32;

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

/// Reads a JS string as UTF-8 bytes: through a stack buffer when it fits,
/// else with one length query and one heap read.
unsafe fn read_utf8(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Vec<u8>> {
  const STACK: usize = 512;
  let mut buf = [0u8; STACK];
  let mut len = 0usize;
  check(
    sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr() as *mut c_char, STACK, &mut len),
    "expected a string",
  )?;
  if len < STACK - 4 {
    return Ok(buf[..len].to_vec());
  }
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

/// A key from JS: a string or a number (the JS layer rejects other types
/// with lru-cache-style `TypeError`s before calling).
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
    match type_of(env, v)? {
      sys::ValueType::napi_number => {
        let mut n = 0f64;
        check(
          sys::napi_get_value_double(env, v, &mut n),
          "expected a number",
        )?;
        Ok(KeyIn(Key::num(n)))
      }
      sys::ValueType::napi_string => {
        let bytes = read_utf8(env, v)?;
        // JS strings read as UTF-8 are valid UTF-8 (lone surrogates become U+FFFD).
        let s = String::from_utf8(bytes).map_err(|_| napi::Error::from_reason("invalid UTF-8"))?;
        Ok(KeyIn(Key::Str(s.into())))
      }
      _ => Err(napi::Error::new(
        Status::InvalidArg,
        "named cache keys must be strings or numbers".to_owned(),
      )),
    }
  }
}

/// A value from JS: a string, a number, or a `Uint8Array` (the tag argument
/// of `set` says what its bytes encode).
pub struct ValueIn(ValueKind);

/// What a [`ValueIn`] held.
pub enum ValueKind {
  /// A string's UTF-8 bytes.
  Str(Vec<u8>),
  /// A number.
  Num(f64),
  /// A typed array's bytes.
  Bytes(Vec<u8>),
}

impl TypeName for ValueIn {
  fn type_name() -> &'static str {
    "string | number | Uint8Array"
  }
  fn value_type() -> ValueType {
    ValueType::Unknown
  }
}

impl ValidateNapiValue for ValueIn {}

impl FromNapiValue for ValueIn {
  unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
    match type_of(env, v)? {
      sys::ValueType::napi_string => Ok(ValueIn(ValueKind::Str(read_utf8(env, v)?))),
      sys::ValueType::napi_number => {
        let mut n = 0f64;
        check(
          sys::napi_get_value_double(env, v, &mut n),
          "expected a number",
        )?;
        Ok(ValueIn(ValueKind::Num(n)))
      }
      _ => {
        let mut kind = 0;
        let mut len = 0usize;
        let mut data = ptr::null_mut();
        let mut ab = ptr::null_mut();
        let mut offset = 0usize;
        check(
          sys::napi_get_typedarray_info(
            env,
            v,
            &mut kind,
            &mut len,
            &mut data,
            &mut ab,
            &mut offset,
          ),
          "named cache values reach Rust as strings, numbers or Uint8Arrays",
        )?;
        if kind != sys::TypedarrayType::uint8_array {
          return Err(napi::Error::from_reason("expected a Uint8Array"));
        }
        let bytes = if len == 0 || data.is_null() {
          Vec::new()
        } else {
          // SAFETY: Node reports `len` bytes at `data` for this live typed
          // array; they are copied before the call returns.
          std::slice::from_raw_parts(data as *const u8, len).to_vec()
        };
        Ok(ValueIn(ValueKind::Bytes(bytes)))
      }
    }
  }
}

impl ValueIn {
  fn into_value(self, tag: u32) -> Value {
    match self.0 {
      ValueKind::Str(bytes) => Value {
        tag: TAG_STR,
        bytes: bytes.into(),
      },
      ValueKind::Num(n) => Value::new(TAG_NUM, &n.to_le_bytes()),
      ValueKind::Bytes(mut bytes) => {
        // Binary values keep their tag as the first byte, so `get` hands
        // JS one Buffer it can decode without a second call.
        let tag = tag as u8;
        bytes.insert(0, tag);
        Value {
          tag,
          bytes: bytes.into(),
        }
      }
    }
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

impl ToNapiValue for Js {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    match val {
      Js::Key(Key::Str(s)) => js_string(env, s.as_bytes()),
      Js::Key(key) => js_number(env, key.as_f64().unwrap_or(f64::NAN)),
      Js::Num(n) => js_number(env, n),
      Js::Str(s) => js_string(env, s.as_bytes()),
      Js::Value(v) => match v.tag {
        TAG_STR => js_string(env, &v.bytes),
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
      },
    }
  }
}

/// A handle on a named cache store shared by every worker_thread. Used by
/// `NamedLRUCache` (lib/lru-cache-named.js); not meant to be used directly.
#[napi]
pub struct SharedCacheHandle {
  handle: Option<Named<SharedCache>>,
  disposed: Vec<Disposed>,
}

fn incompatible(name: &str, option: &str, have: f64, want: f64) -> Error {
  Error::invalid_arg(format!(
    "options.{option} is {want}, but the named cache '{name}' is already open with {option} {have}; \
     every handle on one name must use the same {option}"
  ))
}

#[napi]
impl SharedCacheHandle {
  /// Opens (or creates) the store called `name`. Options of 0 mean "none".
  /// Throws `ERR_INVALID_ARG` naming the option if the name is open with
  /// different `max`, `maxSize`, `maxEntrySize` or `ttl`.
  #[napi(constructor)]
  pub fn new(
    name: String,
    max: f64,
    max_size: f64,
    max_entry_size: f64,
    ttl: f64,
  ) -> napi::Result<Self, ErrorCode> {
    if name.is_empty() {
      return Err(Error::invalid_arg("options.name must be a non-empty string").into());
    }
    let options = Options {
      max: max as u64,
      max_size: max_size as u64,
      max_entry_size: max_entry_size as u64,
      ttl,
    };
    let handle = CACHES.open(
      &name,
      || Ok::<_, Error>(SharedCache::new(options)),
      |existing| {
        let have = existing.options();
        let pairs = [
          ("max", have.max as f64, options.max as f64),
          ("maxSize", have.max_size as f64, options.max_size as f64),
          (
            "maxEntrySize",
            have.max_entry_size as f64,
            options.max_entry_size as f64,
          ),
          ("ttl", have.ttl, options.ttl),
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
      handle: Some(handle),
      disposed: Vec::new(),
    })
  }

  fn store(&self) -> Result<&SharedCache, Error> {
    self
      .handle
      .as_deref()
      .ok_or_else(|| Error::closed("this named LRUCache is closed"))
  }

  fn parts(&mut self, flags: u32) -> Result<(&SharedCache, Option<&mut Vec<Disposed>>), Error> {
    let store = self
      .handle
      .as_deref()
      .ok_or_else(|| Error::closed("this named LRUCache is closed"))?;
    let out = (flags & COLLECT != 0).then_some(&mut self.disposed);
    Ok((store, out))
  }

  /// `get`: the value (a string, number or tagged Buffer) or `undefined`.
  #[napi(ts_return_type = "string | number | Buffer | undefined")]
  pub fn get(&mut self, key: KeyIn, now: f64, flags: u32) -> napi::Result<Option<Js>, ErrorCode> {
    let (store, out) = self.parts(flags)?;
    let opts = ReadOptions {
      allow_stale: flags & ALLOW_STALE != 0,
      update_age: flags & UPDATE_AGE != 0,
      no_delete_on_stale: flags & NO_DELETE_ON_STALE != 0,
    };
    Ok(store.get(&key.0, now_or(now), opts, out).map(Js::Value))
  }

  /// `peek`: the value without touching recency or removing a stale entry.
  #[napi(ts_return_type = "string | number | Buffer | undefined")]
  pub fn peek(
    &self,
    key: KeyIn,
    now: f64,
    allow_stale: bool,
  ) -> napi::Result<Option<Js>, ErrorCode> {
    Ok(
      self
        .store()?
        .peek(&key.0, now_or(now), allow_stale)
        .map(Js::Value),
    )
  }

  /// `has`: whether a fresh value is held.
  #[napi]
  pub fn has(&self, key: KeyIn, now: f64, update_age: bool) -> napi::Result<bool, ErrorCode> {
    Ok(self.store()?.has(&key.0, now_or(now), update_age))
  }

  /// `set`: stores the value; `tag` says what a Uint8Array's bytes encode.
  /// `ttl`/`start` below 0 mean "the default". Returns false if the entry
  /// was larger than `maxEntrySize` and was not stored.
  #[allow(clippy::too_many_arguments)]
  #[napi]
  pub fn set(
    &mut self,
    key: KeyIn,
    value: ValueIn,
    tag: u32,
    ttl: f64,
    start: f64,
    now: f64,
    flags: u32,
  ) -> napi::Result<bool, ErrorCode> {
    let (store, out) = self.parts(flags)?;
    let opts = WriteOptions {
      ttl: (ttl >= 0.0).then_some(ttl),
      start: (start >= 0.0).then_some(start),
      no_dispose_on_set: flags & NO_DISPOSE_ON_SET != 0,
      no_update_ttl: flags & NO_UPDATE_TTL != 0,
    };
    let outcome = store.set(key.0, value.into_value(tag), now_or(now), opts, out);
    Ok(outcome == SetOutcome::Stored)
  }

  /// `delete`: removes the key; returns whether it was present.
  #[napi]
  pub fn delete(&mut self, key: KeyIn, flags: u32) -> napi::Result<bool, ErrorCode> {
    let (store, out) = self.parts(flags)?;
    Ok(store.delete(&key.0, out))
  }

  /// `clear`: removes every entry.
  #[napi]
  pub fn clear(&mut self, flags: u32) -> napi::Result<(), ErrorCode> {
    let (store, out) = self.parts(flags)?;
    store.clear(out);
    Ok(())
  }

  /// `pop`: removes the least recently used entry and returns its value.
  #[napi(ts_return_type = "string | number | Buffer | undefined")]
  pub fn pop(&mut self, flags: u32) -> napi::Result<Option<Js>, ErrorCode> {
    let (store, out) = self.parts(flags)?;
    Ok(store.pop(out).map(|(_, v)| Js::Value(v)))
  }

  /// `purgeStale`: removes every stale entry; returns whether any was.
  #[napi]
  pub fn purge_stale(&mut self, now: f64, flags: u32) -> napi::Result<bool, ErrorCode> {
    let (store, out) = self.parts(flags)?;
    Ok(store.purge_stale(now_or(now), out))
  }

  /// `getRemainingTTL`.
  #[napi]
  pub fn remaining_ttl(&self, key: KeyIn, now: f64) -> napi::Result<f64, ErrorCode> {
    Ok(self.store()?.remaining_ttl(&key.0, now_or(now)))
  }

  /// A snapshot for iteration: `[key, value, key, value, ...]`, most
  /// recently used first (least first with `reverse`).
  #[napi(ts_return_type = "Array<string | number | Buffer>")]
  pub fn entries(
    &self,
    now: f64,
    allow_stale: bool,
    reverse: bool,
  ) -> napi::Result<Vec<Js>, ErrorCode> {
    let entries = self.store()?.entries(now_or(now), allow_stale, reverse);
    let mut flat = Vec::with_capacity(entries.len() * 2);
    for (k, v) in entries {
      flat.push(Js::Key(k));
      flat.push(Js::Value(v));
    }
    Ok(flat)
  }

  /// `dump`: `[key, value, ttl, age, size, ...]`, least recently used first.
  #[napi(ts_return_type = "Array<string | number | Buffer>")]
  pub fn dump(&self, now: f64) -> napi::Result<Vec<Js>, ErrorCode> {
    let now = now_or(now);
    let dump = self.store()?.dump();
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
  #[napi(ts_return_type = "Array<string | number | Buffer> | undefined")]
  pub fn take_disposed(&mut self) -> Option<Vec<Js>> {
    if self.disposed.is_empty() {
      return None;
    }
    let mut flat = Vec::with_capacity(self.disposed.len() * 3);
    for d in self.disposed.drain(..) {
      flat.push(Js::Key(d.key));
      flat.push(Js::Value(d.value));
      flat.push(Js::Str(d.reason.as_str()));
    }
    Some(flat)
  }

  /// `[hits, misses, sets, evictions, expirations, deletes, size, calculatedSize]`.
  #[napi]
  pub fn stats(&self) -> napi::Result<Vec<f64>, ErrorCode> {
    let (len, bytes, s) = self.store()?.snapshot();
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

  /// How many entries are held.
  #[napi(getter)]
  pub fn size(&self) -> napi::Result<u32, ErrorCode> {
    Ok(self.store()?.len() as u32)
  }

  /// The bytes held (key + value + per-entry overhead of every entry).
  #[napi(getter)]
  pub fn calculated_size(&self) -> napi::Result<f64, ErrorCode> {
    Ok(self.store()?.calculated_size() as f64)
  }

  /// The current time on the shared clock, in ms.
  #[napi]
  pub fn now() -> f64 {
    now_or(-1.0)
  }

  /// Lets go of this handle; the store is freed when no thread holds one.
  #[napi]
  pub fn close(&mut self) {
    self.handle = None;
    self.disposed = Vec::new();
  }

  /// Whether `close()` was called.
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.handle.is_none()
  }

  /// How many named caches are alive in the process (for leak tests).
  #[napi]
  pub fn live_count() -> u32 {
    CACHES.len() as u32
  }

  /// The fixed bytes each entry is charged besides its key and value.
  #[napi]
  pub fn entry_overhead() -> u32 {
    ENTRY_OVERHEAD as u32
  }
}
