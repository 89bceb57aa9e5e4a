//! Probes of the cost of crossing from JS into Rust, for `bench/boundary.bench.mjs`.
//!
//! Each probe does (almost) nothing, so a benchmark of it measures the
//! crossing itself. The same three operations exist twice: once through
//! napi-rs's generated wrappers, once as hand-registered Node-API functions,
//! so every later choice of entry point can cite a measured number.

use super::guard;
use super::raw::{args, define_functions, throw_type_error, RawCallback};
use std::ffi::CStr;
use std::os::raw::c_char;
use std::ptr;

use napi::bindgen_prelude::{Env, Object};
use napi::{sys, JsValue};
use napi_derive::napi;

/// Does nothing (napi-rs `#[napi] fn`).
#[napi(catch_unwind)]
pub fn boundary_noop() {}

/// Returns `a + b` (napi-rs `#[napi] fn` with two numbers).
#[napi(catch_unwind)]
pub fn boundary_add(a: i32, b: i32) -> i32 {
  a.wrapping_add(b)
}

/// Returns the UTF-8 length of `s` (napi-rs, the string copied into a `String`).
#[napi(catch_unwind)]
pub fn boundary_str_len(s: String) -> u32 {
  s.len() as u32
}

/// An object whose method returns a number (napi-rs class method, `this` unwrapped).
#[napi]
pub struct BoundaryProbe {
  value: u32,
}

#[napi]
impl BoundaryProbe {
  /// A probe that returns `value`.
  #[napi(constructor, catch_unwind)]
  pub fn new(value: u32) -> Self {
    Self { value }
  }

  /// Returns the value given to the constructor.
  #[napi(catch_unwind)]
  pub fn get(&self) -> u32 {
    self.value
  }

  /// Test hook for panics in a class method (see [`panic_probe`]).
  #[napi(catch_unwind, js_name = "__panicProbe")]
  pub fn panic_probe(&self) -> bool {
    panic_if_armed("BoundaryProbe.__panicProbe")
  }
}

/// Panics on purpose when the environment variable `BULKHEAD_PANIC_PROBE`
/// is `1` (tests set it to prove no panic crosses into Node); otherwise
/// does nothing and returns `false`.
fn panic_if_armed(what: &str) -> bool {
  if std::env::var_os("BULKHEAD_PANIC_PROBE").is_some_and(|v| v == "1") {
    panic!("panic probe: {what}");
  }
  false
}

/// Test hook: panics inside a `#[napi]` function when the environment
/// variable `BULKHEAD_PANIC_PROBE` is `1`; otherwise returns `false`.
/// Not part of the API.
#[napi(catch_unwind, js_name = "__panicProbe")]
pub fn panic_probe() -> bool {
  panic_if_armed("__panicProbe")
}

// ---------------------------------------------------------------------------
// Hand-registered Node-API functions.
//
// Safety argument, for every callback below: Node calls them on the JS thread
// of the environment `env`, with a valid `info` for the current call, and the
// values they create live in the current handle scope, which Node opened for
// the call. They never keep a `napi_value` past the call. Arguments are read
// with `napi_get_cb_info` into fixed arrays of the declared length (Node fills
// missing ones with `undefined`), and every Node-API status is checked: on a
// failure the callback throws a `TypeError` and returns null, which Node turns
// into the pending exception.
// ---------------------------------------------------------------------------

const STR_BUF_LEN: usize = 256;

unsafe extern "C" fn raw_noop(
  env: sys::napi_env,
  _info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    // A null return is `undefined` to the caller.
    ptr::null_mut()
  })
}

unsafe extern "C" fn raw_add(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  guard::raw(env, || {
    let Some([a, b]) = args::<2>(env, info) else {
      return throw_type_error(env, c"rawAdd: cannot read arguments");
    };
    let (mut x, mut y) = (0i32, 0i32);
    if sys::napi_get_value_int32(env, a, &mut x) != sys::Status::napi_ok
      || sys::napi_get_value_int32(env, b, &mut y) != sys::Status::napi_ok
    {
      return throw_type_error(env, c"rawAdd: a and b must be numbers");
    }
    let mut result = ptr::null_mut();
    sys::napi_create_int32(env, x.wrapping_add(y), &mut result);
    result
  })
}

unsafe extern "C" fn raw_str_len(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let Some([s]) = args::<1>(env, info) else {
      return throw_type_error(env, c"rawStrLen: cannot read arguments");
    };
    let mut buf = [0 as c_char; STR_BUF_LEN];
    let mut len = 0usize;
    if sys::napi_get_value_string_utf8(env, s, buf.as_mut_ptr(), STR_BUF_LEN, &mut len)
      != sys::Status::napi_ok
    {
      return throw_type_error(env, c"rawStrLen: s must be a string");
    }
    let mut result = ptr::null_mut();
    sys::napi_create_uint32(env, len as u32, &mut result);
    result
  })
}

unsafe extern "C" fn raw_panic_probe(
  env: sys::napi_env,
  _info: sys::napi_callback_info,
) -> sys::napi_value {
  guard::raw(env, || {
    let mut result = ptr::null_mut();
    sys::napi_get_boolean(env, panic_if_armed("__panicProbeRaw"), &mut result);
    result
  })
}

const RAW_FUNCTIONS: [(&CStr, RawCallback); 4] = [
  (c"__panicProbeRaw", raw_panic_probe),
  (c"boundaryRawNoop", raw_noop),
  (c"boundaryRawAdd", raw_add),
  (c"boundaryRawStrLen", raw_str_len),
];

/// Adds the hand-registered functions to the module's exports.
#[napi(module_exports)]
pub fn register_raw_boundary_functions(exports: Object, env: Env) -> napi::Result<()> {
  guard::install(env.raw());
  // SAFETY: `env` and `exports` are the live environment and exports object
  // Node passed to module init.
  unsafe { define_functions(env.raw(), exports.raw(), &RAW_FUNCTIONS) }
}
