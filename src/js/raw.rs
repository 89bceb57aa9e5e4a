//! Helpers shared by the hand-registered Node-API functions (boundary.rs,
//! lru_cache.rs, limiter.rs). Each caller's file carries the safety argument
//! for its own callbacks; these helpers only read what Node passed in.

use std::ffi::CStr;
use std::ptr;

use napi::sys;

/// Throws a `TypeError` with `message` and returns null, which Node turns
/// into the pending exception when the callback returns it.
///
/// # Safety
/// `env` must be the environment of the current callback, on its JS thread.
pub(crate) unsafe fn throw_type_error(env: sys::napi_env, message: &CStr) -> sys::napi_value {
  sys::napi_throw_type_error(env, ptr::null(), message.as_ptr());
  ptr::null_mut()
}

/// The first `N` arguments of the current call (Node fills missing ones with
/// `undefined`), or `None` if Node could not read them.
///
/// # Safety
/// `env` and `info` must be those of the current callback, on its JS thread.
pub(crate) unsafe fn args<const N: usize>(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> Option<[sys::napi_value; N]> {
  let mut argc = N;
  let mut argv = [ptr::null_mut(); N];
  let status = sys::napi_get_cb_info(
    env,
    info,
    &mut argc,
    argv.as_mut_ptr(),
    ptr::null_mut(),
    ptr::null_mut(),
  );
  (status == sys::Status::napi_ok).then_some(argv)
}

/// The signature of a hand-registered Node-API callback.
pub(crate) type RawCallback =
  unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Creates each `(name, callback)` as a JS function and sets it on `target`
/// under that name.
///
/// # Safety
/// `env` must be the live environment of the current call on its JS thread,
/// and `target` an object value in the current handle scope.
pub(crate) unsafe fn define_functions(
  env: sys::napi_env,
  target: sys::napi_value,
  functions: &[(&CStr, RawCallback)],
) -> napi::Result<()> {
  for (name, callback) in functions {
    let mut function = ptr::null_mut();
    let status = sys::napi_create_function(
      env,
      name.as_ptr(),
      name.to_bytes().len() as isize,
      Some(*callback),
      ptr::null_mut(),
      &mut function,
    );
    if status != sys::Status::napi_ok {
      return Err(napi::Error::from_reason("napi_create_function failed"));
    }
    if sys::napi_set_named_property(env, target, name.as_ptr(), function) != sys::Status::napi_ok {
      return Err(napi::Error::from_reason("napi_set_named_property failed"));
    }
  }
  Ok(())
}
