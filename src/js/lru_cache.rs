//! Glue of `LRUCache` (`lib/lru-cache.js`): hand-registered Node-API
//! functions over the plain-Rust [`Policy`](crate::cache::Policy).
//!
//! Why raw functions: every crossing here is on a hot path (a set that adds
//! or evicts, a flush of the access log), and the boundary table
//! (`bench/boundary.bench.mjs`) measures a napi-rs class method at several
//! times a raw Node-API call. So each function takes exactly one argument,
//! the cache's handle (a Node-API `External` owning the policy), and every
//! number goes in and out through a small `Float64Array` (`io`) shared with
//! JS: no per-argument conversion calls and no `this` unwrapping.
//!
//! Memory shared with JS (all allocated by JS as `ArrayBuffer`s, handed over
//! once with `lruCreate`/`lruBind`, and kept referenced by the owning
//! `LRUCache` for as long as the handle is used):
//! - `io` (`Float64Array`): arguments, results, counters (layout below);
//! - `log` (`Uint32Array`): the access log, slots of reads to replay;
//! - `out` (`Uint32Array`, one cell per slot): victims and iteration order;
//! - `starts`, `ttls` (`Float64Array`, one cell per slot, only once TTLs are
//!   tracked): the TTL columns JS reads to answer "is it stale?".

use super::guard;
use super::raw::{args, define_functions, throw_type_error as throw, RawCallback};
use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use napi::bindgen_prelude::{Env, Object};
use napi::sys;
use napi_derive::napi;

use crate::cache::{Policy, PolicyOptions, Removal, TtlColumns, NONE};

// io layout (indices into the Float64Array); mirrored in lib/lru-cache.js.
const IO_LOG_N: usize = 0;
const IO_A: usize = 1;
const IO_B: usize = 2;
const IO_C: usize = 3;
const IO_D: usize = 4;
const IO_RET: usize = 5;
const IO_NVICT: usize = 6;
const IO_CALC: usize = 7;
// 8, 9: hits and misses, counted by JS.
const IO_NEXT_DEADLINE: usize = 10;
const IO_NOW: usize = 11;
const IO_SETS: usize = 12;
const IO_EVICTIONS: usize = 13;
const IO_EXPIRATIONS: usize = 14;
const IO_DELETES: usize = 15;
const IO_LEN: usize = 16;

/// Cells at the end of the `log` buffer that carry reserved slot ids.
const RESERVE_LEN: usize = 64;

/// Bit set on a victim slot in `out` when it left because it expired.
const EXPIRED_BIT: u32 = 0x8000_0000;

struct Shared {
  ptr: *mut u8,
  bytes: usize,
}

impl Shared {
  const NULL: Shared = Shared {
    ptr: ptr::null_mut(),
    bytes: 0,
  };

  /// # Safety
  /// The buffer must be alive and not detached (see the module docs).
  unsafe fn f64s<'a>(&self) -> &'a mut [f64] {
    if self.ptr.is_null() {
      return &mut [];
    }
    std::slice::from_raw_parts_mut(self.ptr.cast::<f64>(), self.bytes / 8)
  }

  /// # Safety
  /// As for [`Shared::f64s`].
  unsafe fn u32s<'a>(&self) -> &'a mut [u32] {
    if self.ptr.is_null() {
      return &mut [];
    }
    std::slice::from_raw_parts_mut(self.ptr.cast::<u32>(), self.bytes / 4)
  }
}

struct Native {
  policy: Policy,
  io: Shared,
  log: Shared,
  out: Shared,
  starts: Shared,
  ttls: Shared,
  victims: Vec<(u32, Removal)>,
}

impl Native {
  /// # Safety
  /// The shared buffers are alive (the caller is a method of the owning cache).
  unsafe fn replay(&mut self) -> &'static mut [f64] {
    let io = self.io.f64s();
    let log = self.log.u32s();
    let log = &log[..log.len().saturating_sub(RESERVE_LEN)];
    let n = (io[IO_LOG_N] as usize).min(log.len());
    io[IO_LOG_N] = 0.0;
    self.policy.replay(&log[..n], self.ttl_columns().as_ref());
    self.policy.release_reserved();
    // The log may carry sizes; JS reads the total from here between calls.
    io[IO_CALC] = self.policy.calculated_size();
    io
  }

  /// # Safety
  /// As for [`Native::replay`].
  unsafe fn ttl_columns(&self) -> Option<TtlColumns<'static>> {
    if self.starts.ptr.is_null() || self.ttls.ptr.is_null() {
      return None;
    }
    Some(TtlColumns {
      starts: self.starts.f64s(),
      ttls: self.ttls.f64s(),
    })
  }

  /// Publishes victims into `out` and the totals into `io`.
  unsafe fn publish(&mut self, io: &mut [f64]) {
    let out = self.out.u32s();
    let mut n = 0;
    for &(slot, why) in &self.victims {
      if n < out.len() {
        out[n] = slot
          | if why == Removal::Expire {
            EXPIRED_BIT
          } else {
            0
          };
        n += 1;
      }
    }
    self.victims.clear();
    io[IO_NVICT] = n as f64;
    io[IO_CALC] = self.policy.calculated_size();
  }

  fn write_slots(&self, io: &mut [f64], slots: impl IntoIterator<Item = u32>) {
    // SAFETY: `out` is alive while the owning cache calls us.
    let out = unsafe { self.out.u32s() };
    let mut n = 0;
    for slot in slots {
      if n >= out.len() {
        break;
      }
      out[n] = slot;
      n += 1;
    }
    io[IO_RET] = n as f64;
  }
}

fn removal(code: f64) -> Removal {
  match code as u32 {
    0 => Removal::Evict,
    1 => Removal::Expire,
    _ => Removal::Delete,
  }
}

// ---------------------------------------------------------------------------
// Safety argument, for every callback below: Node calls them on the JS thread
// of `env` with a valid `info`; they keep no `napi_value` past the call. The
// handle is an `External` made by `lru_create` whose data is a
// `Box<Native>`, freed only by its finalizer, so while JS can pass the handle
// the pointer is valid; no JS runs during a call, so the `&mut Native` is
// unique. The shared buffers are `ArrayBuffer`s created by lib/lru-cache.js
// (never detached or transferred: they live in private fields of the cache
// that owns the handle and are replaced only through `lruBind`), so their
// memory is valid during every call that cache makes. Every index into them
// is bounds-checked (slices of their real length). Nothing here panics on
// user input: slot ids from JS are checked by the policy.
// ---------------------------------------------------------------------------

unsafe fn native<'a>(env: sys::napi_env, value: sys::napi_value) -> Option<&'a mut Native> {
  let mut data: *mut c_void = ptr::null_mut();
  if sys::napi_get_value_external(env, value, &mut data) != sys::Status::napi_ok || data.is_null() {
    return None;
  }
  Some(&mut *data.cast::<Native>())
}

unsafe fn buffer(env: sys::napi_env, value: sys::napi_value) -> Option<Shared> {
  let mut kind = sys::ValueType::napi_undefined;
  sys::napi_typeof(env, value, &mut kind);
  if kind == sys::ValueType::napi_undefined {
    return Some(Shared::NULL);
  }
  let mut data: *mut c_void = ptr::null_mut();
  let mut bytes = 0usize;
  if sys::napi_get_arraybuffer_info(env, value, &mut data, &mut bytes) != sys::Status::napi_ok {
    return None;
  }
  Some(Shared {
    ptr: data.cast(),
    bytes,
  })
}

unsafe fn number(env: sys::napi_env, value: sys::napi_value) -> f64 {
  let mut n = 0.0;
  sys::napi_get_value_double(env, value, &mut n);
  n
}

/// Policies alive in the process (for the leak test).
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  guard::quiet(|| {
    drop(Box::from_raw(data.cast::<Native>()));
    LIVE.fetch_sub(1, Ordering::Relaxed);
  })
}

/// Live: RET = how many cache handles are alive in the process.
unsafe extern "C" fn lru_live(
  env: sys::napi_env,
  _info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let mut result = ptr::null_mut();
    sys::napi_create_uint32(env, LIVE.load(Ordering::Relaxed) as u32, &mut result);
    result
  })
}

/// `lruCreate(io, log, max, maxSize, flags)` -> handle.
/// flags: bit 0 track deadlines, bit 1 evict expired first.
unsafe extern "C" fn lru_create(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let Some([io, log, max, max_size, flags]) = args::<5>(env, info) else {
      return throw(env, c"lruCreate: cannot read arguments");
    };
    let (Some(io), Some(log)) = (buffer(env, io), buffer(env, log)) else {
      return throw(env, c"lruCreate: io and log must be ArrayBuffers");
    };
    if io.bytes < IO_LEN * 8 {
      return throw(env, c"lruCreate: io is too small");
    }
    let flags = number(env, flags) as u32;
    let policy = Policy::new(PolicyOptions {
      max: number(env, max) as u32,
      max_size: number(env, max_size),
      track_deadlines: flags & 1 != 0,
      evict_expired_first: flags & 2 != 0,
    });
    let data = Box::into_raw(Box::new(Native {
      policy,
      io,
      log,
      out: Shared::NULL,
      starts: Shared::NULL,
      ttls: Shared::NULL,
      victims: Vec::new(),
    }));
    let mut result = ptr::null_mut();
    if sys::napi_create_external(
      env,
      data.cast(),
      Some(finalize),
      ptr::null_mut(),
      &mut result,
    ) != sys::Status::napi_ok
    {
      drop(Box::from_raw(data));
      return throw(env, c"lruCreate: cannot create the handle");
    }
    LIVE.fetch_add(1, Ordering::Relaxed);
    result
  })
}

/// `lruBind(h, out, starts?, ttls?)`: the per-slot buffers, after JS grew them.
unsafe extern "C" fn lru_bind(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let Some([h, out, starts, ttls]) = args::<4>(env, info) else {
      return throw(env, c"lruBind: cannot read arguments");
    };
    let Some(n) = native(env, h) else {
      return throw(env, c"lruBind: bad handle");
    };
    let (Some(out), Some(starts), Some(ttls)) =
      (buffer(env, out), buffer(env, starts), buffer(env, ttls))
    else {
      return throw(env, c"lruBind: buffers must be ArrayBuffers");
    };
    n.out = out;
    n.starts = starts;
    n.ttls = ttls;
    ptr::null_mut()
  })
}

/// Reads the handle (the only argument) and runs `f`.
unsafe fn with_native(
  env: sys::napi_env,
  info: sys::napi_callback_info,
  f: impl FnOnce(&mut Native),
) -> sys::napi_value {
  let Some([h]) = args::<1>(env, info) else {
    return throw(env, c"lru: cannot read arguments");
  };
  let Some(n) = native(env, h) else {
    return throw(env, c"lru: bad handle");
  };
  f(n);
  ptr::null_mut()
}

/// Replays the access log.
unsafe extern "C" fn lru_flush(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      n.replay();
    })
  })
}

/// Insert: A = size, B = ttl (NaN: TTLs not tracked), C = start, NOW.
/// RET = slot; victims in `out[0..NVICT]`.
unsafe extern "C" fn lru_insert(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let (size, ttl, start, now) = (io[IO_A], io[IO_B], io[IO_C], io[IO_NOW]);
      let mut cols = if ttl.is_nan() { None } else { n.ttl_columns() };
      let mut victims = std::mem::take(&mut n.victims);
      let slot = n.policy.insert(
        size,
        cols.as_mut().map(|c| (c, ttl, start)),
        now,
        &mut victims,
      );
      n.victims = victims;
      io[IO_RET] = slot as f64;
      n.publish(io);
      if let Some(d) = n.policy.next_deadline(n.ttl_columns().as_ref()) {
        io[IO_NEXT_DEADLINE] = d;
      }
    })
  })
}

/// Update: A = slot, B = size (NaN: unchanged), C = ttl (NaN: not restarted),
/// D = start, NOW. Victims as for insert.
unsafe extern "C" fn lru_update(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let (slot, size, ttl, start, now) =
        (io[IO_A] as u32, io[IO_B], io[IO_C], io[IO_D], io[IO_NOW]);
      let size = (!size.is_nan()).then_some(size);
      let mut cols = if ttl.is_nan() { None } else { n.ttl_columns() };
      let mut victims = std::mem::take(&mut n.victims);
      n.policy.update(
        slot,
        size,
        cols.as_mut().map(|c| (c, ttl, start)),
        now,
        &mut victims,
      );
      n.victims = victims;
      n.publish(io);
      if let Some(d) = n.policy.next_deadline(n.ttl_columns().as_ref()) {
        io[IO_NEXT_DEADLINE] = d;
      }
    })
  })
}

/// Remove: A = slot, B = reason (0 evict, 1 expire, 2 delete).
unsafe extern "C" fn lru_remove(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      n.policy.remove(io[IO_A] as u32, removal(io[IO_B]));
      io[IO_CALC] = n.policy.calculated_size();
    })
  })
}

/// Pop: RET = the least recently used slot (removed), or -1.
unsafe extern "C" fn lru_pop(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let slot = n.policy.pop();
      io[IO_RET] = if slot == NONE { -1.0 } else { slot as f64 };
      io[IO_CALC] = n.policy.calculated_size();
    })
  })
}

/// Order: A = 1 for most recently used first. Slots in `out[0..RET]`.
unsafe extern "C" fn lru_order(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let out = n.out.u32s();
      let mut i = 0;
      n.policy.order_into(io[IO_A] != 0.0, |slot| {
        if i < out.len() {
          out[i] = slot;
          i += 1;
        }
      });
      io[IO_RET] = i as f64;
    })
  })
}

/// Candidates: the (up to) A least recently used slots, head first, in
/// `out[0..RET]`. JS evicts from this list without crossing while the
/// entries in it stay untouched (see `#nextVictim` in lib/lru-cache.js).
unsafe extern "C" fn lru_candidates(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let want = io[IO_A] as usize;
      let out = n.out.u32s();
      let mut i = 0;
      n.policy.order_into(false, |slot| {
        if i < want && i < out.len() {
          out[i] = slot;
          i += 1;
          true
        } else {
          false
        }
      });
      io[IO_RET] = i as f64;
    })
  })
}

/// Reserve: A = room (slot ids must stay below it). Up to 64 slot ids for
/// adds without a call, in the last 64 cells of `log`; RET = how many.
unsafe extern "C" fn lru_reserve(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let cap = io[IO_A] as u32;
      let log = n.log.u32s();
      let at = log.len().saturating_sub(RESERVE_LEN);
      let got = n.policy.reserve(log.len() - at, cap);
      log[at..at + got.len()].copy_from_slice(got);
      io[IO_RET] = got.len() as f64;
    })
  })
}

/// Stale: slots stale at NOW, least recently used first, in `out[0..RET]`.
unsafe extern "C" fn lru_stale(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let slots = match n.ttl_columns() {
        Some(cols) => n.policy.stale(&cols, io[IO_NOW]),
        None => Vec::new(),
      };
      n.write_slots(io, slots);
    })
  })
}

/// Expired: for the auto-purge timer, slots whose deadline passed at NOW,
/// earliest first, in `out[0..RET]`; NEXT_DEADLINE = the next one, or 0.
unsafe extern "C" fn lru_expired(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let slots = match n.ttl_columns() {
        Some(cols) => n.policy.expired(&cols, io[IO_NOW]),
        None => Vec::new(),
      };
      n.write_slots(io, slots);
      io[IO_NEXT_DEADLINE] = n
        .policy
        .next_deadline(n.ttl_columns().as_ref())
        .unwrap_or(0.0);
    })
  })
}

/// Clear: empties the policy.
unsafe extern "C" fn lru_clear(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      n.policy.clear();
      io[IO_CALC] = 0.0;
      io[IO_NEXT_DEADLINE] = 0.0;
    })
  })
}

/// SizeOf: RET = the size recorded for slot A (after the log, which may carry sizes).
unsafe extern "C" fn lru_size_of(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      io[IO_RET] = n.policy.size_of(io[IO_A] as u32);
    })
  })
}

/// Stats: the policy's counters into io[SETS..=DELETES].
unsafe extern "C" fn lru_stats(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.replay();
      let s = n.policy.stats();
      io[IO_SETS] = s.sets as f64;
      io[IO_EVICTIONS] = s.evictions as f64;
      io[IO_EXPIRATIONS] = s.expirations as f64;
      io[IO_DELETES] = s.deletes as f64;
    })
  })
}

/// Options: A = evictExpiredFirst (0/1).
unsafe extern "C" fn lru_options(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    with_native(env, info, |n| {
      let io = n.io.f64s();
      n.policy.set_evict_expired_first(io[IO_A] != 0.0);
    })
  })
}

const RAW_FUNCTIONS: [(&CStr, RawCallback); 17] = [
  (c"lruLive", lru_live),
  (c"lruReserve", lru_reserve),
  (c"lruCandidates", lru_candidates),
  (c"lruCreate", lru_create),
  (c"lruBind", lru_bind),
  (c"lruFlush", lru_flush),
  (c"lruInsert", lru_insert),
  (c"lruUpdate", lru_update),
  (c"lruRemove", lru_remove),
  (c"lruPop", lru_pop),
  (c"lruOrder", lru_order),
  (c"lruStale", lru_stale),
  (c"lruExpired", lru_expired),
  (c"lruClear", lru_clear),
  (c"lruSizeOf", lru_size_of),
  (c"lruStats", lru_stats),
  (c"lruOptions", lru_options),
];

/// The LRUCache entry points, as an object of hand-registered Node-API
/// functions (`lruCreate`, `lruInsert`, …). lib/lru-cache.js calls this once
/// at load. (One `#[napi(module_exports)]` hook exists per addon and belongs
/// to the boundary probes, so this module hands its functions out instead.)
#[napi(catch_unwind)]
pub fn lru_cache_functions(env: Env) -> napi::Result<Object<'static>> {
  let mut exports = ptr::null_mut();
  // SAFETY: `env` is the live environment of this call; the new object and
  // functions live in the call's handle scope and are returned to JS.
  unsafe {
    if sys::napi_create_object(env.raw(), &mut exports) != sys::Status::napi_ok {
      return Err(napi::Error::from_reason("napi_create_object failed"));
    }
    define_functions(env.raw(), exports, &RAW_FUNCTIONS)?;
    Ok(Object::from_raw(env.raw(), exports))
  }
}
